//! The statistics of experiment results: sufficient statistics, the two-sample tests of
//! GrowthBook's `gbstats`, multiple-testing control, the sample-ratio check and power.

pub mod holm;
pub mod power;
pub mod srm;
pub mod summary;
pub mod ttest;

pub use summary::{CompensatedSum, Summary};
pub use ttest::{compare, Comparison, DifferenceType, Estimate, TestSettings};
