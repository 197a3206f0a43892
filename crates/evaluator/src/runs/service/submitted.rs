//! Runs whose outputs the client submits (SubmitRunOutputs): checked, scored with the
//! run's metrics, stored, and the run completed once every sample has a result.

use super::*;

impl RunService {
    /// Scores outputs a client produced; the first call starts the run and the run
    /// completes when every sample of its snapshot has a result.
    pub async fn submit_outputs(
        &self,
        id: &str,
        outputs: Vec<SubmittedOutput>,
    ) -> Result<(Run, Vec<SampleResult>), EvaluationError> {
        let inner = &self.inner;
        check_outputs(&outputs)?;
        let mut run = inner.get(id)?;
        if !run.submitted_outputs {
            return Err(EvaluationError::FailedPrecondition(format!(
                "run {id} runs its model on the server; outputs can only be submitted to a run created with submitted_outputs"
            )));
        }
        // A first call is checked against the dataset as it is now; the run only starts
        // (pinning that version) once the call is accepted.
        match run.status {
            RunStatus::Pending => {
                let dataset = inner.datasets.get(&run.dataset_id)?;
                run.dataset_version = dataset.version;
                run.prompt_version = inner.resolve_prompt(
                    &run.prompt_name,
                    &run.prompt_version,
                    &run.prompt_label,
                )?;
            }
            RunStatus::Running => {}
            other => {
                return Err(EvaluationError::FailedPrecondition(format!(
                    "run {id} is already {}",
                    other.as_str()
                )))
            }
        }
        let ids: Vec<String> = outputs.iter().map(|o| o.sample_id.clone()).collect();
        let samples = inner
            .datasets
            .samples_by_id_at(&run.dataset_id, run.dataset_version, &ids)
            .await?;
        let by_id: HashMap<&str, &crate::datasets::StoredSample> =
            samples.iter().map(|s| (s.sample.id.as_str(), s)).collect();
        if let Some(index) = ids.iter().position(|id| !by_id.contains_key(id.as_str())) {
            return Err(EvaluationError::NotFound(format!(
                "outputs[{index}].sample_id: dataset {} has no sample {:?} at version {}",
                run.dataset_id, ids[index], run.dataset_version
            )));
        }
        let taken = inner.store.existing_results(id, &ids).await?;
        if let Some(index) = ids.iter().position(|id| taken.contains(id)) {
            return Err(EvaluationError::AlreadyExists(format!(
                "outputs[{index}].sample_id: sample {:?} already has an output in run {id}",
                ids[index]
            )));
        }
        let scoring = inner.scoring(&run)?;
        let prompt =
            PreparedPrompt::resolve(&inner.registry, &run.prompt_name, &run.prompt_version).ok();
        let results: Vec<SampleResult> = stream::iter(outputs)
            .map(|output| {
                let sample = by_id[output.sample_id.as_str()];
                let scoring = &scoring;
                let prompt = prompt.as_ref();
                let registry = &inner.registry;
                async move {
                    let mut result = blank_result(sample);
                    result.output = output.output;
                    result.latency = output.latency;
                    result.scores = output.scores;
                    if !output.error.is_empty() {
                        set_error(&mut result, "client error", output.error);
                        return result;
                    }
                    // Judges see the prompt as the run's version renders it.
                    let prompt_text = prompt
                        .and_then(|p| executor::render(registry, p, sample).ok())
                        .map(|messages| executor::transcript(&messages))
                        .unwrap_or_else(|| match &sample.sample.input {
                            serde_json::Value::String(text) => text.clone(),
                            other => other.to_string(),
                        });
                    executor::score(
                        scoring,
                        &prompt_text,
                        &sample.sample.context,
                        &mut result,
                        // Submitted outputs have no time limit to protect.
                        &QueueClock::default(),
                    )
                    .await;
                    result
                }
            })
            .buffered(SUBMIT_CONCURRENCY)
            .collect()
            .await;
        let guard = inner.transitions.lock().await;
        let current = inner.get(id)?;
        match current.status {
            RunStatus::Running if current.dataset_version == run.dataset_version => {}
            RunStatus::Pending => {
                let started = inner.begin(current).await?;
                if started.dataset_version != run.dataset_version {
                    return Err(EvaluationError::FailedPrecondition(format!(
                        "dataset {} changed while these outputs were scored; submit them again",
                        run.dataset_id
                    )));
                }
            }
            other => {
                return Err(EvaluationError::FailedPrecondition(format!(
                    "run {id} was {} while these outputs were scored",
                    other.as_str()
                )))
            }
        }
        let stored = match inner
            .store
            .insert_results(id, &results, OnDuplicate::Refuse)
            .await
        {
            Ok(stored) => stored,
            Err(StoreError::Duplicate(_)) => {
                return Err(EvaluationError::AlreadyExists(format!(
                    "another call submitted outputs for some of these samples to run {id} meanwhile"
                )))
            }
            Err(StoreError::Conflict(_)) => {
                let now = inner.reload(id).await?;
                return Err(EvaluationError::FailedPrecondition(format!(
                    "run {id} was {} while these outputs were scored",
                    now.status.as_str()
                )));
            }
            Err(other) => return Err(other.into()),
        };
        let progress = inner.take_counts(id, stored.counts);
        // The call that stores the last outputs (on whichever replica) completes the run.
        let completed = if progress.done >= progress.total {
            inner.complete_submitted(id).await?
        } else {
            None
        };
        drop(guard);
        let run = match completed {
            Some(ended) => {
                inner.raise_alerts(&ended).await;
                ended
            }
            None => inner.get(id)?,
        };
        Ok((run, results))
    }
}

impl Inner {
    /// Completes a submitted-outputs run whose every sample has a result; None when
    /// another process completed it first. Called under the transitions lock.
    pub(super) async fn complete_submitted(
        &self,
        id: &str,
    ) -> Result<Option<Run>, EvaluationError> {
        let results = self.all_results(id).await?;
        self.end(self.get(id)?, RunStatus::Completed, String::new(), &results)
            .await
    }
}

/// Submitted outputs scored at once (judges may be slow).
pub(super) const SUBMIT_CONCURRENCY: usize = 8;

/// One output a client produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubmittedOutput {
    /// The sample.
    pub sample_id: String,
    /// The output.
    pub output: String,
    /// Scores from elsewhere, kept as given.
    pub scores: BTreeMap<String, f64>,
    /// The client's model latency.
    pub latency: Option<Duration>,
    /// Why there is no output.
    pub error: String,
}

pub(super) fn check_outputs(outputs: &[SubmittedOutput]) -> Result<(), EvaluationError> {
    let mut violations = Vec::new();
    if outputs.is_empty() {
        violations.push(FieldViolation::new(
            "outputs",
            "at least one output is required",
        ));
    }
    if outputs.len() > limits::SUBMITTED_OUTPUTS {
        violations.push(FieldViolation::new(
            "outputs",
            format!("at most {} outputs per call", limits::SUBMITTED_OUTPUTS),
        ));
    }
    let mut seen = HashSet::new();
    for (index, output) in outputs.iter().enumerate() {
        let field = |rest: &str| format!("outputs[{index}].{rest}");
        if output.sample_id.is_empty() {
            violations.push(FieldViolation::new(field("sample_id"), "is required"));
        } else if !seen.insert(output.sample_id.as_str()) {
            violations.push(FieldViolation::new(
                field("sample_id"),
                format!("{:?} appears twice in this call", output.sample_id),
            ));
        }
        if output.output.len() > limits::OUTPUT_BYTES || output.error.len() > limits::OUTPUT_BYTES {
            violations.push(FieldViolation::new(
                field("output"),
                format!(
                    "outputs and errors are at most {} bytes",
                    limits::OUTPUT_BYTES
                ),
            ));
        }
        for (name, score) in &output.scores {
            if let Some(violation) = check_submitted_score(&field("scores"), name, *score) {
                violations.push(violation);
            }
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(EvaluationError::InvalidArgument(violations))
    }
}
