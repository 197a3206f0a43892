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
            Ok(ended) => {
                tracing::info!(run_id = %ended.id, status = ended.status.as_str(), pass_rate = ended.results.as_ref().map(|r| r.pass_rate), "evaluation run ended");
                if ended.status == RunStatus::Completed {
                    self.raise_alerts(&ended).await;
                }
            }
            Err(err) => {
                tracing::error!(run_id = %run.id, error = %err, "storing the end of an evaluation run failed; it resumes at the next start")
            }
        }
    }

    /// Runs the samples that have no result yet. Ok(true) when all have one, Ok(false)
    /// when cancelled, Err when the run cannot go on.
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
        let prompt = PreparedPrompt::resolve(&self.registry, &run.prompt_name, &run.prompt_version)
            .map_err(|err| format!("prompt {} {}: {err}", run.prompt_name, run.prompt_version))?;
        let scoring = self.scoring(run).map_err(|err| err.to_string())?;
        let context = SampleContext {
            scoring,
            model,
            prompt: Arc::new(prompt),
        };
        let done: HashSet<String> = self
            .all_results(&run.id)
            .await
            .map_err(|err| format!("reading stored results: {err}"))?
            .into_iter()
            .map(|r| r.sample_id)
            .collect();
        // No more samples in flight than the model takes at once: the rest would wait
        // for the provider inside their time limit and could time out unsent.
        let concurrency = (run.concurrency.max(1) as usize)
            .min(context.model.max_concurrency().unwrap_or(usize::MAX).max(1));
        let (sender, receiver) = mpsc::channel(concurrency * 2);
        let writer_failed = CancellationToken::new();
        let writer = tokio::spawn(self.clone().write_results(
            run.id.clone(),
            receiver,
            writer_failed.clone(),
        ));
        let slots = Arc::new(Semaphore::new(concurrency));
        let mut tasks = JoinSet::new();
        let mut failure = None;
        let mut after = 0;
        'pages: loop {
            let page = match self
                .datasets
                .export_page(&run.dataset_id, run.dataset_version, after, SAMPLE_PAGE)
                .await
            {
                Ok(page) => page,
                Err(err) => {
                    failure = Some(format!("reading dataset {}: {err}", run.dataset_id));
                    break;
                }
            };
            let Some(last) = page.last() else {
                break;
            };
            after = last.position;
            for sample in page {
                if done.contains(&sample.sample.id) {
                    continue;
                }
                let slot = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break 'pages,
                    _ = writer_failed.cancelled() => break 'pages,
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                };
                let context = context.clone();
                let sender = sender.clone();
                let timeout = run.sample_timeout;
                tasks.spawn(async move {
                    let result = evaluate(&context, &sample, timeout).await;
                    let _ = sender.send(result).await;
                    drop(slot);
                });
                while tasks.try_join_next().is_some() {}
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
                        failure = Some("evaluating a sample panicked; this is a bug, please report it".to_owned());
                    }
                    Some(_) => {}
                },
                _ = cancel.cancelled(), if !aborted => {}
                _ = writer_failed.cancelled(), if !aborted => {}
            }
        }
        match writer.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(err),
            Err(err) => return Err(format!("the result writer stopped: {err}")),
        }
        if let Some(failure) = failure {
            return Err(failure);
        }
        Ok(!cancel.is_cancelled())
    }

    /// Stores results as they arrive, in batches of whatever is ready, and counts them
    /// into the run's progress once stored.
    pub(super) async fn write_results(
        self: Arc<Self>,
        run_id: String,
        mut receiver: mpsc::Receiver<SampleResult>,
        failed: CancellationToken,
    ) -> Result<(), String> {
        while let Some(first) = receiver.recv().await {
            let mut batch = vec![first];
            while batch.len() < WRITE_BATCH {
                match receiver.try_recv() {
                    Ok(result) => batch.push(result),
                    Err(_) => break,
                }
            }
            if let Err(err) = self.store.insert_results(&run_id, &batch).await {
                failed.cancel();
                return Err(format!("storing results: {err}"));
            }
            self.count(&run_id, &batch);
        }
        Ok(())
    }
}

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
    /// Cancels the executor and waits until it has exited.
    pub(super) async fn stop(mut self) {
        self.cancel.cancel();
        let _ = self.stopped.wait_for(|stopped| *stopped).await;
    }
}
