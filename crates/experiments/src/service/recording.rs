//! Metric records: checked per record, committed in groups, and folded into the
//! in-memory statistics only once their batch is durable.

use super::*;

impl ExperimentService {
    /// Records metric values, durably, all or none: a batch with any bad record changes
    /// nothing, and the error names each bad record.
    pub async fn record_metrics(
        &self,
        inputs: Vec<RecordInput>,
        naming: RecordNaming,
    ) -> Result<RecordOutcome, ExperimentError> {
        if inputs.len() > MAX_RECORDS_PER_CALL {
            return Err(ExperimentError::invalid(
                "records",
                format!("at most {MAX_RECORDS_PER_CALL} records per call"),
            ));
        }
        // Hold every involved experiment's gate (in id order, so two batches cannot wait
        // on each other) from the status checks until the commit.
        let mut involved: Vec<&str> = inputs.iter().map(|r| r.experiment_id.as_str()).collect();
        involved.sort_unstable();
        involved.dedup();
        let mut _writes = Vec::with_capacity(involved.len());
        for id in involved {
            if let Ok(live) = self.live(id) {
                _writes.push(live.gate.clone().read_owned().await);
            }
        }
        let mut violations = Violations::default();
        let mut records = Vec::with_capacity(inputs.len());
        let now = Utc::now();
        for (i, input) in inputs.into_iter().enumerate() {
            let prefix = match naming {
                RecordNaming::Single => String::new(),
                RecordNaming::Batch { first_index } => format!("records[{}].", first_index + i),
            };
            match self.check_record(&prefix, &input) {
                Ok(()) => records.push(MetricRecord {
                    experiment_id: input.experiment_id,
                    variant_id: input.variant_id,
                    metric: input.metric,
                    value: input.value,
                    user_id: input.user_id,
                    record_id: input.record_id,
                    time: input.time.unwrap_or(now),
                }),
                Err(ExperimentError::InvalidArgument(found)) => violations.extend(found),
                // Name the record in a batch, as field violations do.
                Err(other) if prefix.is_empty() => return Err(other),
                Err(ExperimentError::NotFound(message)) => {
                    return Err(ExperimentError::NotFound(format!(
                        "{}: {message}",
                        prefix.trim_end_matches('.')
                    )))
                }
                Err(ExperimentError::FailedPrecondition(message)) => {
                    return Err(ExperimentError::FailedPrecondition(format!(
                        "{}: {message}",
                        prefix.trim_end_matches('.')
                    )))
                }
                Err(other) => return Err(other),
            }
        }
        violations.into_result()?;
        if records.is_empty() {
            return Ok(RecordOutcome::default());
        }
        let committed = self
            .writer
            .commit(Writes {
                exposures: Vec::new(),
                records,
            })
            .await?;
        let accepted = committed.records.iter().filter(|new| **new).count() as u64;
        Ok(RecordOutcome {
            accepted,
            duplicates: committed.records.len() as u64 - accepted,
        })
    }

    fn check_record(&self, prefix: &str, input: &RecordInput) -> Result<(), ExperimentError> {
        let field = |name: &str| format!("{prefix}{name}");
        if input.experiment_id.is_empty() {
            return Err(ExperimentError::invalid(
                field("experiment_id"),
                "is required",
            ));
        }
        let live = self.live(&input.experiment_id)?;
        let snapshot = live.snapshot();
        let experiment = &snapshot.experiment;
        if !experiment.status.accepts_metrics() {
            return Err(ExperimentError::FailedPrecondition(format!(
                "experiment {} is {}; metrics are recorded only while it is running or paused",
                experiment.id,
                experiment.status.as_str()
            )));
        }
        let mut violations = Violations::default();
        if experiment.variant_index(&input.variant_id).is_none() {
            violations.add(
                field("variant_id"),
                format!(
                    "{:?} is not a variant of experiment {}",
                    input.variant_id, experiment.id
                ),
            );
        }
        match experiment.metric(&input.metric) {
            None => violations.add(
                field("metric"),
                format!(
                    "{:?} is not declared by experiment {} (declared: {})",
                    input.metric,
                    experiment.id,
                    experiment
                        .metrics
                        .iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Some(metric) => {
                if !(input.value.is_finite() && input.value.abs() <= MAX_ABS_VALUE) {
                    violations.add(
                        field("value"),
                        format!(
                            "{} is not a finite number within +-{MAX_ABS_VALUE:e}",
                            input.value
                        ),
                    );
                } else if metric.kind == MetricKind::Proportion
                    && input.value != 0.0
                    && input.value != 1.0
                {
                    violations.add(
                        field("value"),
                        format!(
                            "{} is a proportion: values are 0 or 1, not {}",
                            metric.name, input.value
                        ),
                    );
                }
            }
        }
        if experiment.analysis_unit == AnalysisUnit::User && input.user_id.is_empty() {
            violations.add(
                field("user_id"),
                "is required: the experiment is analysed per user",
            );
        }
        if input.user_id.len() > limits::USER_ID_BYTES {
            violations.add(
                field("user_id"),
                format!("is longer than {} bytes", limits::USER_ID_BYTES),
            );
        }
        if input.record_id.len() > limits::RECORD_ID_BYTES {
            violations.add(
                field("record_id"),
                format!("is longer than {} bytes", limits::RECORD_ID_BYTES),
            );
        }
        for (name, text) in [("user_id", &input.user_id), ("record_id", &input.record_id)] {
            if text.contains('\0') {
                violations.add(field(name), llmops_core::NUL_REFUSED);
            }
        }
        violations.into_result()
    }
}

/// A metric record as a caller gives it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordInput {
    /// The experiment.
    pub experiment_id: String,
    /// The variant observed.
    pub variant_id: String,
    /// A declared metric.
    pub metric: String,
    /// The value.
    pub value: f64,
    /// The user (required for per-user analysis).
    pub user_id: String,
    /// Idempotency key; empty for none.
    pub record_id: String,
    /// When observed; now when unset.
    pub time: Option<DateTime<Utc>>,
}

/// How errors name the records of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordNaming {
    /// One record: fields are named bare (`value`).
    Single,
    /// A batch, or a chunk of a stream starting at `first_index`: `records[7].value`.
    Batch {
        /// The index of the chunk's first record in the whole call.
        first_index: usize,
    },
}

/// What a batch of records did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordOutcome {
    /// Records stored and counted.
    pub accepted: u64,
    /// Records whose id was seen before: acknowledged, not counted again.
    pub duplicates: u64,
}

/// Folds committed writes into the in-memory state; runs in the writer before any
/// caller of the batch is answered.
pub(super) fn fold_into(experiments: Arc<Experiments>) -> OnCommit {
    Box::new(move |writes: &Writes, committed: &Committed| {
        let live = |id: &str| experiments.get(id).map(|e| e.value().clone());
        for (exposure, &new) in writes.exposures.iter().zip(&committed.exposures) {
            if let Some(live) = live(&exposure.experiment_id) {
                live.fold_exposure(exposure, new);
            }
        }
        for (record, &new) in writes.records.iter().zip(&committed.records) {
            if let (true, Some(live)) = (new, live(&record.experiment_id)) {
                live.fold_record(record);
            }
        }
    })
}
