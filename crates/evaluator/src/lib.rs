//! Evaluation of model outputs.
//!
//! So far this crate holds [`datasets`] (versioned, content-hashed samples) and the
//! [`scorers`]: each turns a model's output (and the sample's
//! expected output) into a score in [0, 1], configured by name and parameters as a run's
//! metric configs name them, and [`mcnemar`], the exact test on paired pass/fail
//! outcomes that run comparisons use. Datasets, runs, providers and judges build on them.

pub mod datasets;
mod error;
pub mod mcnemar;
pub mod providers;
pub mod scorers;

pub use error::{EvaluationError, EvaluationStoreError, Violation};
pub use scorers::{Scorer, ScorerError};
