//! Firing schedules: the tick loop sleeps on the clock until the earliest due time, and
//! each trigger (a tick or a prompt change) decides on a run, stores that decision, then
//! creates and starts the run, so a crash in between finishes it once at the next start.

use super::*;

impl Inner {
    /// Fires every schedule that is due, until shutdown.
    pub(super) async fn tick_loop(self: Arc<Self>) {
        loop {
            let next = {
                let schedules = self.schedules.lock().await;
                schedules
                    .values()
                    .filter(|s| !s.paused)
                    .filter_map(|s| s.next_run_at)
                    .min()
            };
            let clock = &self.settings.clock;
            let latest = clock.now() + chrono::Duration::from_std(MAX_SLEEP).unwrap_or_default();
            let until = next.map_or(latest, |at| at.min(latest));
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.wake.notified() => continue,
                _ = clock.sleep_until(until) => {}
            }
            if let Some(leadership) = &self.settings.leadership {
                if !leadership.is_held() {
                    // Another replica fires due times; wait to take over from it.
                    let mut leadership = leadership.clone();
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = leadership.wait_until_held() => continue,
                    }
                }
            }
            if let Err(err) = self.fire_due().await {
                tracing::warn!(error = %err, "starting scheduled runs failed; will retry");
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = self.settings.clock.sleep(RETRY_AFTER) => {}
                }
            }
        }
    }

    /// Fires each schedule whose due time has come, once.
    pub(super) async fn fire_due(&self) -> Result<(), EvaluationError> {
        let mut schedules = self.schedules.lock().await;
        let now = self.settings.clock.now();
        let due: Vec<(String, DateTime<Utc>)> = schedules
            .values()
            .filter(|s| !s.paused)
            .filter_map(|s| Some((s.id.clone(), s.next_run_at.filter(|at| *at <= now)?)))
            .collect();
        for (id, due) in due {
            if self.shutdown.is_cancelled() {
                break;
            }
            let schedule = schedules.get_mut(&id).expect("a due schedule exists");
            self.fire(schedule, Trigger::Tick { due }).await?;
        }
        Ok(())
    }

    /// Starts a run of `schedule` for `trigger`, or counts a skipped tick when its last
    /// run is still going. Called under the schedules lock.
    pub(super) async fn fire(
        &self,
        schedule: &mut Schedule,
        trigger: Trigger,
    ) -> Result<(), EvaluationError> {
        let now = self.settings.clock.now();
        let mut next = schedule.clone();
        next.updated_at = now;
        if let Trigger::Tick { due } = &trigger {
            next.next_run_at = self.next_due(schedule, now.max(*due));
            // The previous run is still going only if it executes here: every replica
            // works on every running run, so one that does not execute here was left
            // pending (the replica that held this role died between creating and
            // starting it) or is being ended, and must not hold the schedule back.
            let previous = self.runs.get(&schedule.last_run_id).ok();
            let going =
                previous.filter(|run| !run.status.is_terminal() && self.runs.executes(&run.id));
            if let Some(previous) = going {
                next.skipped_ticks += 1;
                if !self.claim_firing(schedule, next).await? {
                    return Ok(());
                }
                metrics::counter!(SKIPPED_TICKS_TOTAL).increment(1);
                tracing::info!(schedule_id = %schedule.id, run_id = %previous.id, skipped_ticks = schedule.skipped_ticks, "skipped a tick: the previous run is still going");
                return Ok(());
            }
        }
        let mut spec = schedule.template.clone();
        spec.id = Uuid::now_v7().to_string();
        spec.created_by = format!("schedule/{}", schedule.id);
        if spec.description.is_empty() {
            spec.description = format!("{} (schedule {})", trigger.describe(), schedule.id);
        }
        if let Trigger::PromptChange { from, to } = &trigger {
            next.watched_version = to.clone();
            // The new version's run is checked against the previous version's latest run.
            spec.prompt_version = to.clone();
            spec.prompt_label.clear();
            if spec.baseline_run_id.is_empty() && !from.is_empty() {
                // An `auto` template's runs record the provider they got.
                let baseline = self.runs.find_latest(|run| {
                    run.status == RunStatus::Completed
                        && run.dataset_id == spec.dataset_id
                        && run.prompt_name == spec.prompt_name
                        && run.prompt_version == *from
                        && (run.model == spec.model
                            || (spec.model == AUTO && run.requested_model == AUTO))
                });
                if let Some(baseline) = baseline {
                    spec.baseline_run_id = baseline.id;
                }
            }
        }
        let pending = PendingRun { spec, trigger };
        next.pending = Some(pending.clone());
        if !self.claim_firing(schedule, next).await? {
            return Ok(());
        }
        self.launch(schedule, pending).await
    }

    /// Stores `next` in place of `schedule` if no other process changed it since this
    /// one read it; so of several processes firing one due time (or one prompt change),
    /// exactly one does. When another won, `schedule` is reloaded and false returned.
    async fn claim_firing(
        &self,
        schedule: &mut Schedule,
        next: Schedule,
    ) -> Result<bool, EvaluationError> {
        if self
            .store
            .replace_schedule(schedule.updated_at, &next)
            .await?
        {
            self.show(&next);
            *schedule = next;
            return Ok(true);
        }
        tracing::info!(schedule_id = %schedule.id, "another replica fired or changed the schedule first");
        if let Some(stored) = self.store.get_schedule(&schedule.id).await? {
            self.show(&stored);
            *schedule = stored;
        }
        Ok(false)
    }

    /// Creates and starts a pending run, then records the outcome. Idempotent: a run
    /// that already exists or already started (before a crash) counts as launched.
    pub(super) async fn launch(
        &self,
        schedule: &mut Schedule,
        pending: PendingRun,
    ) -> Result<(), EvaluationError> {
        let id = pending.spec.id.clone();
        let outcome = self.create_and_start(pending.spec).await;
        let trigger = match pending.trigger {
            Trigger::Tick { .. } => "tick",
            Trigger::PromptChange { .. } => "prompt_change",
        };
        let counted = if outcome.is_ok() { "started" } else { "failed" };
        metrics::counter!(SCHEDULED_RUNS_TOTAL, "trigger" => trigger, "outcome" => counted)
            .increment(1);
        let mut next = schedule.clone();
        next.pending = None;
        next.updated_at = self.settings.clock.now();
        match outcome {
            Ok(()) => {
                tracing::info!(schedule_id = %schedule.id, run_id = %id, trigger = %pending.trigger.describe(), "scheduled run started");
                next.last_run_id = id;
                next.runs_started += 1;
                next.last_error.clear();
            }
            Err(err) => {
                tracing::warn!(schedule_id = %schedule.id, run_id = %id, trigger = %pending.trigger.describe(), error = %err, "a scheduled run could not start");
                if self.runs.get(&id).is_ok() {
                    next.last_run_id = id;
                }
                next.last_error = format!("{}: {err}", pending.trigger.describe());
            }
        }
        self.store.update_schedule(&next).await?;
        self.show(&next);
        *schedule = next;
        Ok(())
    }

    pub(super) async fn create_and_start(&self, spec: RunSpec) -> Result<(), EvaluationError> {
        let id = spec.id.clone();
        // A run created before a crash is not created again (nor checked again: its
        // provider may be gone, and then it is abandoned below, not left pending).
        if self.runs.get(&id).is_err() {
            match self.runs.create(spec).await {
                Ok(_) | Err(EvaluationError::AlreadyExists(_)) => {}
                Err(err) => return Err(err),
            }
        }
        let Err(err) = self.runs.start(&id).await else {
            return Ok(());
        };
        match self.runs.get(&id) {
            // Started before a crash: it resumed on its own.
            Ok(run) if run.status != RunStatus::Pending => Ok(()),
            _ => {
                // Leave no pending run behind for overlap checks to wait on.
                if let Err(abandon) = self
                    .runs
                    .abandon(&id, format!("the schedule could not start it: {err}"))
                    .await
                {
                    tracing::warn!(run_id = %id, error = %abandon, "marking an unstartable run failed");
                }
                Err(err)
            }
        }
    }
}
