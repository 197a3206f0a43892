//! What uses a dataset, and deleting one only while nothing does: a running run, a
//! schedule or a release gate would otherwise fail later, far from the cause.
//!
//! The check and the delete happen under the datasets' claim, which starting a run,
//! creating a schedule and setting a gate also hold while they check that their dataset
//! exists: either the delete sees the new user and refuses, or the user sees the dataset
//! gone.

use std::sync::Arc;

use crate::datasets::DatasetService;
use crate::error::EvaluationError;
use crate::gates::GateService;
use crate::runs::{RunService, RunStatus};
use crate::schedules::ScheduleService;

/// Deletes datasets that nothing uses.
#[derive(Debug, Clone)]
pub struct DatasetUsers {
    datasets: Arc<DatasetService>,
    runs: Arc<RunService>,
    schedules: Arc<ScheduleService>,
    gates: Arc<GateService>,
}

impl DatasetUsers {
    /// Over every service that can use a dataset.
    pub fn new(
        datasets: Arc<DatasetService>,
        runs: Arc<RunService>,
        schedules: Arc<ScheduleService>,
        gates: Arc<GateService>,
    ) -> Self {
        Self {
            datasets,
            runs,
            schedules,
            gates,
        }
    }

    /// What uses dataset `id`, in words (empty when nothing does).
    pub async fn users_of(&self, id: &str) -> Vec<String> {
        let mut users = Vec::new();
        if let Some(run) = self.runs.find_latest(|run| {
            run.dataset_id == id && run.status == RunStatus::Running && !run.submitted_outputs
        }) {
            users.push(format!("run {} is {}", run.id, run.status.as_str()));
        }
        for schedule in self.schedules.using_dataset(id) {
            users.push(format!("schedule {schedule} evaluates it"));
        }
        for (prompt, label) in self.gates.using_dataset(id).await {
            users.push(format!(
                "the release gate of {prompt:?} {label:?} requires it"
            ));
        }
        users
    }

    /// Deletes dataset `id` and its samples; FAILED_PRECONDITION, naming them, while a
    /// run, a schedule or a release gate uses it.
    pub async fn delete_unused(&self, id: &str) -> Result<(), EvaluationError> {
        let _claim = self.datasets.claim().await;
        let users = self.users_of(id).await;
        if !users.is_empty() {
            return Err(EvaluationError::FailedPrecondition(format!(
                "dataset {id} is in use: {}; cancel, delete or change those first",
                users.join(", ")
            )));
        }
        self.datasets.delete(id).await
    }
}
