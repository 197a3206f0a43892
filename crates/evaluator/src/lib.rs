//! Evaluation of model outputs.
//!
//! [`datasets`] hold versioned, content-hashed samples; [`runs`] render a prompt version
//! for each sample, call a model from [`providers`], and score the output with
//! [`scorers`] (local) or [`judges`] (models), then compare runs and raise regression
//! alerts, using [`mcnemar`]'s exact test on paired pass/fail outcomes.

pub mod dataset_users;
pub mod datasets;
mod error;
pub mod gates;
pub mod judges;
pub mod mcnemar;
pub mod online;
mod paging;
pub mod providers;
pub mod runs;
pub mod schedules;
pub mod scorers;

pub use error::{EvaluationError, FieldViolation, StoreError};
pub use scorers::{Scorer, ScorerError};
