//! Schedule records: a run template plus the triggers that start runs of it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::runs::RunSpec;

/// A schedule: the unit of continuous evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// UUID v7 unless given.
    pub id: String,
    /// What each run evaluates (its `id` is always empty: every run gets a new one).
    pub template: RunSpec,
    /// The schedule expression as given (see [`super::ScheduleExpression`]).
    pub schedule: String,
    /// Start a run when the template's prompt gets a new active version (or, with
    /// `watch_label`, when that label moves).
    pub on_prompt_change: bool,
    /// The label whose moves trigger runs; empty: the active version.
    pub watch_label: String,
    /// Paused schedules start nothing.
    pub paused: bool,
    /// When the next timed run is due; None when it never fires by time or is paused.
    pub next_run_at: Option<DateTime<Utc>>,
    /// The run started last.
    pub last_run_id: String,
    /// Ticks skipped because the previous run was still going.
    pub skipped_ticks: u64,
    /// Runs started so far.
    pub runs_started: u64,
    /// Why the last attempt to start a run failed; empty when it did not.
    pub last_error: String,
    /// The version the prompt trigger last saw (active, or where `watch_label` pointed).
    pub watched_version: String,
    /// A run decided on but not yet known to be created and started. Stored before the
    /// run is created, so a crash in between finishes it on restart instead of losing
    /// or repeating it.
    pub pending: Option<PendingRun>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Who created it; empty when unknown (or stored before it was recorded).
    #[serde(default)]
    pub created_by: String,
}

/// A run a schedule decided to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingRun {
    /// The run to create (with its id).
    pub spec: RunSpec,
    /// What started it, for logs and the run's description.
    pub trigger: Trigger,
}

/// Why a schedule starts a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The schedule fell due at this time.
    Tick {
        /// The due time.
        due: DateTime<Utc>,
    },
    /// The watched version changed.
    PromptChange {
        /// The version before (empty when there was none).
        from: String,
        /// The version now.
        to: String,
    },
}

impl Trigger {
    /// One line for logs and run descriptions.
    pub fn describe(&self) -> String {
        match self {
            Self::Tick { due } => format!("scheduled run due at {}", due.to_rfc3339()),
            Self::PromptChange { from, to } if from.is_empty() => {
                format!("prompt change to version {to}")
            }
            Self::PromptChange { from, to } => {
                format!("prompt change from version {from} to {to}")
            }
        }
    }
}
