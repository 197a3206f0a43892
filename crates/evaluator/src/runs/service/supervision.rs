//! Executor supervision: one task per started run pages through the dataset snapshot,
//! keeps up to `concurrency` samples in flight and hands finished results to a writer
//! that stores them in batches; cancelling or shutting down stops it.

use super::*;

impl Inner {
    /// The scorers of a run.
    pub(super) fn scoring(&self, run: &Run) -> Result<Scoring, EvaluationError> {
        let metrics: Vec<CompiledMetric> = run
            .metrics
            .iter()
            .enumerate()
            .map(|(index, config)| {
                compile_metric(config, index, self.providers.providers(), &self.registry)
            })
            .collect::<Result<_, _>>()
            .map_err(|violation| {
                EvaluationError::FailedPrecondition(format!(
                    "the run's metrics no longer work with this server's configuration: {violation}"
                ))
            })?;
        Ok(Scoring {
            registry: self.registry.clone(),
            providers: self.providers.providers().clone(),
            metrics: Arc::new(metrics),
            thresholds: Arc::new(thresholds(run)),
            keep_reasoning: false,
        })
    }

    /// Starts (or resumes) a RUNNING run's executor.
    pub(super) fn spawn_executor(self: &Arc<Self>, run: Run) {
        let cancel = self.shutdown.child_token();
        let (stopped_sender, stopped) = watch::channel(false);
        self.executors.lock().expect("executors lock").insert(
            run.id.clone(),
            Executor {
                cancel: cancel.clone(),
                stopped,
            },
        );
        let inner = self.clone();
        tokio::spawn(async move {
            let id = run.id.clone();
            inner.execute(run, cancel).await;
            inner.executors.lock().expect("executors lock").remove(&id);
            stopped_sender.send_replace(true);
        });
    }

    pub(super) async fn execute(self: &Arc<Self>, run: Run, cancel: CancellationToken) {
        let outcome = self.run_samples(&run, &cancel).await;
        let (status, error) = match outcome {
            // Cancelled or shutting down: CancelRun ends the run, or the next start
            // resumes it.
            Ok(false) => return,
            Ok(true) => (RunStatus::Completed, String::new()),
            Err(error) => (RunStatus::Failed, error),
        };
        // The samples are done, so the stored results are final: summarise them before
        // taking the lock every run's changes share.
        let results = match self.all_results(&run.id).await {
            Ok(results) => results,
            Err(err) => {
                tracing::error!(run_id = %run.id, error = %err, "reading a finished run's results failed; it resumes at the next start");
                return;
            }
        };
        let ended = {
            let _guard = self.transitions.lock().await;
            match self.get(&run.id) {
                Ok(current) if current.status == RunStatus::Running => {
                    self.end(current, status, error, &results).await
                }
                _ => return,
            }
        };
        match ended {
            Ok(Some(ended)) => {
                tracing::info!(run_id = %ended.id, status = ended.status.as_str(), pass_rate = ended.results.as_ref().map(|r| r.pass_rate), "evaluation run ended");
                if ended.status == RunStatus::Completed {
                    self.raise_alerts(&ended).await;
                }
            }
            // Another replica ended it first (each worker finds the last chunk finished).
            Ok(None) => {}
            Err(err) => {
                tracing::error!(run_id = %run.id, error = %err, "storing the end of an evaluation run failed; another replica's worker, or this one when it joins the run again, ends it")
            }
        }
    }

    /// Evaluates the run's samples with the other workers (every replica's executor of
    /// the run): claims a chunk of samples at a time and evaluates those without a
    /// result. Ok(true) when every chunk is finished, Ok(false) when cancelled, Err when
    /// the run cannot go on.
    /// The run's prompt version. A worker on another replica than the one that started
    /// the run may not have seen the version yet (its registry follows the shared change
    /// feed, which can lag under load): a version it does not know is looked up again
    /// until [`PROMPT_CATCH_UP`] has passed before the run fails.
    async fn resolve_prompt_in_time(
        &self,
        run: &Run,
        cancel: &CancellationToken,
    ) -> Result<PreparedPrompt, String> {
        let deadline = tokio::time::Instant::now() + PROMPT_CATCH_UP;
        loop {
            match PreparedPrompt::resolve(&self.registry, &run.prompt_name, &run.prompt_version) {
                Ok(prompt) => return Ok(prompt),
                Err(llmops_registry::RegistryError::NotFound(_))
                    if tokio::time::Instant::now() < deadline && !cancel.is_cancelled() =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => {
                    return Err(format!(
                        "prompt {} {}: {err}",
                        run.prompt_name, run.prompt_version
                    ))
                }
            }
        }
    }

    pub(super) async fn run_samples(
        self: &Arc<Self>,
        run: &Run,
        cancel: &CancellationToken,
    ) -> Result<bool, String> {
        let model = self
            .providers
            .providers()
            .get(&run.model)
            .ok_or_else(|| format!("model {:?} is no longer configured", run.model))?;
        let prompt = self.resolve_prompt_in_time(run, cancel).await?;
        let scoring = self.scoring(run).map_err(|err| err.to_string())?;
        let context = SampleContext {
            scoring,
            model,
            prompt: Arc::new(prompt),
        };
        // No more samples in flight than the model takes at once: the rest would wait
        // for the provider inside their time limit and could time out unsent.
        let concurrency = (run.concurrency.max(1) as usize)
            .min(context.model.max_concurrency().unwrap_or(usize::MAX).max(1));
        // About two rounds of the worker's concurrency per new chunk, so a replica that
        // dies leaves little claimed and unstarted, and the snapshot spreads over the
        // replicas.
        let chunk_size = (concurrency * 2).clamp(MIN_CHUNK, SAMPLE_PAGE);
        let (sender, receiver) = mpsc::channel(concurrency * 2 + 1);
        let writer_failed = CancellationToken::new();
        let chunk_finished = Arc::new(Notify::new());
        let writer = tokio::spawn(self.clone().write_results(
            run.id.clone(),
            receiver,
            writer_failed.clone(),
            chunk_finished.clone(),
        ));
        let held = CancellationToken::new();
        let renewal = tokio::spawn(self.clone().renew_claims(run.id.clone(), held.clone()));
        let slots = Arc::new(Semaphore::new(concurrency));
        let mut tasks = JoinSet::new();
        let mut failure = None;
        let mut finished = false;
        'work: loop {
            while let Some(joined) = tasks.try_join_next() {
                if matches!(joined, Err(err) if err.is_panic()) {
                    failure = Some(PANICKED.to_owned());
                    break 'work;
                }
            }
            let claimed = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = writer_failed.cancelled() => break,
                claimed = self.claim(run, chunk_size) => claimed,
            };
            let (chunk, samples) = match claimed {
                Ok(Some(claimed)) => claimed,
                Ok(None) => {
                    // Nothing left to claim: the run is done once every chunk is
                    // finished (this worker's by its writer, the others' by theirs, or
                    // after their lease lapses, by whoever claims them again).
                    match self.store.unfinished_chunks(&run.id).await {
                        Ok(0) => {
                            finished = true;
                            break;
                        }
                        Ok(_) => {}
                        Err(err) => {
                            failure = Some(format!("reading the run's claims: {err}"));
                            break;
                        }
                    }
                    // This worker's own last chunk usually finishes the run: look again as
                    // soon as its writer finishes one, else after a while.
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = writer_failed.cancelled() => break,
                        _ = chunk_finished.notified() => continue,
                        _ = tokio::time::sleep(CLAIM_POLL) => continue,
                    }
                }
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            };
            let announced = Work::Chunk {
                after: chunk.after,
                pending: samples.len(),
            };
            if sender.send(announced).await.is_err() {
                break;
            }
            for sample in samples {
                let slot = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break 'work,
                    _ = writer_failed.cancelled() => break 'work,
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                };
                let context = context.clone();
                let sender = sender.clone();
                let timeout = run.sample_timeout;
                tasks.spawn(async move {
                    let result = evaluate(&context, &sample, timeout).await;
                    let _ = sender
                        .send(Work::Result {
                            chunk: chunk.after,
                            result: Box::new(result),
                        })
                        .await;
                    drop(slot);
                });
            }
        }
        drop(sender);
        // Samples in flight finish, unless the run is being stopped: then they are
        // dropped (aborted once; their results were never stored, so they run again on
        // resume).
        let mut aborted = false;
        loop {
            if !aborted
                && (failure.is_some() || cancel.is_cancelled() || writer_failed.is_cancelled())
            {
                tasks.abort_all();
                aborted = true;
            }
            tokio::select! {
                joined = tasks.join_next() => match joined {
                    None => break,
                    Some(Err(err)) if err.is_panic() && failure.is_none() => {
                        failure = Some(PANICKED.to_owned());
                    }
                    Some(_) => {}
                },
                _ = cancel.cancelled(), if !aborted => {}
                _ = writer_failed.cancelled(), if !aborted => {}
            }
        }
        let written = writer.await;
        held.cancel();
        let _ = renewal.await;
        if !finished {
            // What this worker claimed and did not finish is for the others at once,
            // not after its lease.
            if let Err(err) = self
                .store
                .release_chunks(&run.id, &self.settings.worker)
                .await
            {
                tracing::warn!(run_id = %run.id, error = %err, "releasing claimed samples failed; other replicas take them when the claim lapses");
            }
        }
        match written {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(err),
            Err(err) => return Err(format!("the result writer stopped: {err}")),
        }
        if let Some(failure) = failure {
            return Err(failure);
        }
        Ok(finished)
    }

    /// Claims the next chunk of samples for this worker: one whose claim lapsed, else a
    /// new one past the others; with those of its samples that have no result yet.
    /// None when the snapshot is divided up and no claim lapsed.
    async fn claim(
        &self,
        run: &Run,
        chunk_size: usize,
    ) -> Result<Option<(SampleChunk, Vec<StoredSample>)>, String> {
        let (worker, lease) = (&self.settings.worker, self.settings.claim_lease);
        let read = |err: EvaluationError| format!("reading dataset {}: {err}", run.dataset_id);
        let claim_failed = |err: StoreError| format!("claiming samples: {err}");
        let (chunk, samples) = loop {
            if let Some(chunk) = self
                .store
                .claim_lapsed_chunk(&run.id, worker, lease)
                .await
                .map_err(claim_failed)?
            {
                break (chunk, self.chunk_samples(run, chunk).await.map_err(read)?);
            }
            let frontier = self
                .store
                .chunk_frontier(&run.id)
                .await
                .map_err(claim_failed)?;
            let page = self
                .datasets
                .export_page(&run.dataset_id, run.dataset_version, frontier, chunk_size)
                .await
                .map_err(read)?;
            let Some(last) = page.last() else {
                return Ok(None);
            };
            let chunk = SampleChunk {
                after: frontier,
                through: last.position,
            };
            // Another worker may have claimed a chunk starting there first: look again.
            if self
                .store
                .claim_new_chunk(&run.id, chunk, worker, lease)
                .await
                .map_err(claim_failed)?
            {
                break (chunk, page);
            }
        };
        // A chunk claimed again holds the results its first worker stored.
        let ids: Vec<String> = samples.iter().map(|s| s.sample.id.clone()).collect();
        let done: HashSet<String> = self
            .store
            .existing_results(&run.id, &ids)
            .await
            .map_err(|err| format!("reading stored results: {err}"))?
            .into_iter()
            .collect();
        let pending = samples
            .into_iter()
            .filter(|s| !done.contains(&s.sample.id))
            .collect();
        Ok(Some((chunk, pending)))
    }

    /// The samples of a chunk.
    async fn chunk_samples(
        &self,
        run: &Run,
        chunk: SampleChunk,
    ) -> Result<Vec<StoredSample>, EvaluationError> {
        let mut samples = Vec::new();
        let mut after = chunk.after;
        while after < chunk.through {
            let page = self
                .datasets
                .export_page(&run.dataset_id, run.dataset_version, after, SAMPLE_PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.position;
            samples.extend(page.into_iter().filter(|s| s.position <= chunk.through));
        }
        Ok(samples)
    }

    /// Renews this worker's claims in the run until `held` is cancelled, so they lapse
    /// only if this process dies.
    async fn renew_claims(self: Arc<Self>, run_id: String, held: CancellationToken) {
        let (worker, lease) = (&self.settings.worker, self.settings.claim_lease);
        loop {
            tokio::select! {
                _ = held.cancelled() => return,
                _ = tokio::time::sleep(lease / 3) => {}
            }
            if let Err(err) = self.store.renew_chunks(&run_id, worker, lease).await {
                tracing::warn!(run_id = %run_id, error = %err, "renewing claimed samples failed; another replica may evaluate them too");
            }
        }
    }

    /// Stores results as they arrive, in batches of whatever is ready, takes the run's
    /// counts of stored results as its progress, and marks chunks finished once each
    /// of their samples has a result (and says so on `chunk_finished`).
    pub(super) async fn write_results(
        self: Arc<Self>,
        run_id: String,
        mut receiver: mpsc::Receiver<Work>,
        failed: CancellationToken,
        chunk_finished: Arc<Notify>,
    ) -> Result<(), String> {
        // Per claimed chunk, its samples without a stored result.
        let mut pending: HashMap<i64, usize> = HashMap::new();
        while let Some(first) = receiver.recv().await {
            let mut work = vec![first];
            while work.len() < WRITE_BATCH {
                match receiver.try_recv() {
                    Ok(more) => work.push(more),
                    Err(_) => break,
                }
            }
            let mut results = Vec::new();
            let mut chunks = Vec::new();
            let mut finished = Vec::new();
            for item in work {
                match item {
                    Work::Chunk { after, pending: 0 } => finished.push(after),
                    Work::Chunk { after, pending: n } => {
                        pending.insert(after, n);
                    }
                    Work::Result { chunk, result } => {
                        chunks.push(chunk);
                        results.push(*result);
                    }
                }
            }
            if !results.is_empty() {
                match self
                    .store
                    .insert_results(&run_id, &results, OnDuplicate::Skip)
                    .await
                {
                    Ok(stored) => {
                        metrics::counter!(SAMPLES_EVALUATED_TOTAL)
                            .increment(stored.stored.len() as u64);
                        self.take_counts(&run_id, stored.counts);
                    }
                    Err(err) => {
                        failed.cancel();
                        return Err(format!("storing results: {err}"));
                    }
                }
                for chunk in chunks {
                    if let Some(left) = pending.get_mut(&chunk) {
                        *left -= 1;
                        if *left == 0 {
                            pending.remove(&chunk);
                            finished.push(chunk);
                        }
                    }
                }
            }
            if let Err(err) = self.store.finish_chunks(&run_id, &finished).await {
                failed.cancel();
                return Err(format!("recording finished samples: {err}"));
            }
            if !finished.is_empty() {
                chunk_finished.notify_one();
            }
        }
        Ok(())
    }
}

/// What an executor tells its result writer.
pub(super) enum Work {
    /// A chunk claimed, with `pending` samples to evaluate (0: it is finished already).
    Chunk { after: i64, pending: usize },
    /// A sample's result, of the chunk after `chunk`.
    Result {
        chunk: i64,
        result: Box<SampleResult>,
    },
}

/// Counter of samples this process evaluated and stored (its share of every run).
pub(super) const SAMPLES_EVALUATED_TOTAL: &str = "llmops_run_samples_evaluated_total";

/// The error of a run whose sample evaluation panicked.
const PANICKED: &str = "evaluating a sample panicked; this is a bug, please report it";

/// The fewest samples in a chunk.
const MIN_CHUNK: usize = 8;

/// How often a worker with nothing to claim looks again (another worker's claim may
/// lapse), until every chunk is finished.
const CLAIM_POLL: Duration = Duration::from_millis(250);
/// How long a worker waits for its registry to learn of a run's prompt version that
/// another replica created (see `resolve_prompt_in_time`).
const PROMPT_CATCH_UP: Duration = Duration::from_secs(10);

/// Samples read from the dataset per page while a run goes.
pub(super) const SAMPLE_PAGE: usize = 500;

/// Results stored per transaction at most.
pub(super) const WRITE_BATCH: usize = 500;

/// A running executor. It removes itself from the map when it exits, then signals
/// `stopped`, so an entry in the map is always a live executor.
#[derive(Clone)]
pub(super) struct Executor {
    cancel: CancellationToken,
    stopped: watch::Receiver<bool>,
}

impl Executor {
    /// Cancels the executor; it exits soon after.
    pub(super) fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Cancels the executor and waits until it has exited.
    pub(super) async fn stop(mut self) {
        self.cancel.cancel();
        let _ = self.stopped.wait_for(|stopped| *stopped).await;
    }
}
