//! The scheduler: schedules start evaluation runs when they fall due and when their
//! prompt changes, exactly once each time.
//!
//! Schedules live in memory behind one lock and in storage; every change is stored
//! before it is visible. Starting a run is two-phase: the schedule first stores the run
//! it decided on (`pending`, with the run's id) together with its advanced due time or
//! watched version, then creates and starts the run, then clears `pending`. A crash
//! after the first step finishes the pending run at the next start (creating a run
//! whose id exists, or starting one that runs, counts as done), so a due time is
//! neither lost nor repeated. A schedule due while the server was down fires once at
//! start-up, and its next due time is computed from then, not from every missed tick.
//!
//! Prompt-change triggers follow the registry's change feed, which starts with a
//! snapshot: comparing each schedule's watched version with the registry's after the
//! snapshot also catches changes made while the server was down (see [`watcher`]).

mod firing;
mod watcher;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex as SyncMutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use llmops_core::Clock;
use llmops_registry::Registry;
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::expression::ScheduleExpression;
use super::model::{PendingRun, Schedule, Trigger};
use super::store::ScheduleStore;
use crate::error::{EvaluationError, FieldViolation};
use crate::paging::newest_first;
use crate::providers::selection::AUTO;
use crate::runs::{RunService, RunSpec, RunStatus};

/// Counter of runs schedules started or failed to start, by `trigger` (`tick`,
/// `prompt_change`) and `outcome` (`started`, `failed`).
pub const SCHEDULED_RUNS_TOTAL: &str = "llmops_scheduled_runs_total";
/// Counter of ticks skipped because the schedule's previous run was still going.
pub const SKIPPED_TICKS_TOTAL: &str = "llmops_schedule_skipped_ticks_total";

/// The most schedules one server keeps.
pub const MAX_SCHEDULES: usize = 1000;
/// The longest schedule id.
const ID_BYTES: usize = 128;
/// Schedules per list page by default, and at most.
const DEFAULT_PAGE_SIZE: usize = 100;
const MAX_PAGE_SIZE: usize = 1000;
/// The longest the tick loop sleeps before looking again (so a wall-clock jump delays a
/// due run by at most this much).
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// The pause before retrying after storage failed.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Settings that come from configuration (`[evaluation]`), and the clock due times are
/// read from.
#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    /// Whether schedules with an empty expression run every `interval`.
    pub auto_evaluation: bool,
    /// The interval of schedules with an empty expression.
    pub interval: Duration,
    /// Where "now" comes from: the system clock in the server, a manual one in tests.
    pub clock: Arc<dyn Clock>,
    /// When several processes share the database: the scheduler role, without which
    /// this process fires no due time (`None`: it always fires).
    pub leadership: Option<llmops_cluster::Leadership>,
}

/// What a client gives to create a schedule.
#[derive(Debug, Clone, Default)]
pub struct NewSchedule {
    /// Generated when empty.
    pub id: String,
    /// The run each trigger starts (its id must be empty).
    pub template: RunSpec,
    /// The schedule expression.
    pub schedule: String,
    /// Start a run when the prompt's active version (or `watch_label`) changes.
    pub on_prompt_change: bool,
    /// The label to watch instead of the active version.
    pub watch_label: String,
    /// Who creates it; empty when unknown.
    pub created_by: String,
}

use self::watcher::Pointers;

struct Inner {
    store: Arc<dyn ScheduleStore>,
    runs: Arc<RunService>,
    registry: Arc<Registry>,
    settings: ScheduleSettings,
    /// Held across storage writes and run starts: schedules change one at a time.
    schedules: Mutex<BTreeMap<String, Schedule>>,
    /// What reads see: a copy updated after each stored change, so Get and List never
    /// wait for runs being started.
    view: RwLock<BTreeMap<String, Schedule>>,
    /// Where each prompt's pointers stand as far as the watcher has followed the feed:
    /// (prompt, label or "" for the active version) -> version. Watched versions are read
    /// from here, not from the registry, so a schedule and the events still queued for
    /// the watcher agree on what is a change.
    pointers: SyncMutex<Pointers>,
    /// Wakes the tick loop when due times change.
    wake: Notify,
    shutdown: CancellationToken,
}

/// The schedule service and its background loops.
pub struct ScheduleService {
    inner: Arc<Inner>,
    tasks: SyncMutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for ScheduleService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduleService").finish_non_exhaustive()
    }
}

fn not_found(id: &str) -> EvaluationError {
    EvaluationError::NotFound(format!("schedule {id:?} not found"))
}

impl ScheduleService {
    /// Loads every schedule, finishes runs a crash left half-started, and starts the
    /// tick loop and the prompt-change watcher, which stop when `shutdown` is cancelled
    /// (or at `close`).
    pub async fn open(
        store: Arc<dyn ScheduleStore>,
        runs: Arc<RunService>,
        registry: Arc<Registry>,
        settings: ScheduleSettings,
        shutdown: &CancellationToken,
    ) -> Result<Self, EvaluationError> {
        let inner = Arc::new(Inner {
            store,
            runs,
            registry,
            settings,
            schedules: Mutex::new(BTreeMap::new()),
            view: RwLock::new(BTreeMap::new()),
            pointers: SyncMutex::new(Pointers::new()),
            wake: Notify::new(),
            shutdown: shutdown.child_token(),
        });
        {
            let mut schedules = inner.schedules.lock().await;
            let now = inner.settings.clock.now();
            for mut schedule in inner.store.load_schedules().await? {
                if let Some(pending) = schedule.pending.clone() {
                    tracing::info!(schedule_id = %schedule.id, run_id = %pending.spec.id, "finishing a run a restart interrupted");
                    inner.launch(&mut schedule, pending).await?;
                }
                // The configured default interval may have changed (or been turned on or
                // off) since the due time was stored: never wait longer than it says now.
                if !schedule.paused && schedule.schedule.trim().is_empty() {
                    let due = match (schedule.next_run_at, inner.next_due(&schedule, now)) {
                        (Some(stored), Some(fresh)) => Some(stored.min(fresh)),
                        (_, fresh) => fresh,
                    };
                    if due != schedule.next_run_at {
                        schedule.next_run_at = due;
                        inner.store.update_schedule(&schedule).await?;
                    }
                }
                inner.show(&schedule);
                schedules.insert(schedule.id.clone(), schedule);
            }
        }
        // The registry's state is known before the first request: a schedule created
        // now watches the version the feed is at.
        let subscription = inner.subscribe().await?;
        let ticks = tokio::spawn(inner.clone().tick_loop());
        let watcher = tokio::spawn(inner.clone().watch_prompts(subscription));
        Ok(Self {
            inner,
            tasks: SyncMutex::new(vec![ticks, watcher]),
        })
    }

    /// Reloads schedule `id` from storage after another process changed it.
    pub async fn refresh(&self, id: &str) -> Result<(), EvaluationError> {
        let inner = &self.inner;
        let mut schedules = inner.schedules.lock().await;
        match inner.store.get_schedule(id).await? {
            Some(stored) => {
                inner.show(&stored);
                schedules.insert(id.to_owned(), stored);
            }
            None => {
                schedules.remove(id);
                inner.view.write().expect("view lock").remove(id);
            }
        }
        inner.wake.notify_one();
        Ok(())
    }

    /// Reloads every schedule from storage (after falling too far behind the change log
    /// to know what changed).
    pub async fn refresh_all(&self) -> Result<(), EvaluationError> {
        let inner = &self.inner;
        let mut schedules = inner.schedules.lock().await;
        let stored = inner.store.load_schedules().await?;
        let mut view = inner.view.write().expect("view lock");
        schedules.clear();
        view.clear();
        for schedule in stored {
            view.insert(schedule.id.clone(), schedule.clone());
            schedules.insert(schedule.id.clone(), schedule);
        }
        drop(view);
        inner.wake.notify_one();
        Ok(())
    }

    /// Stops the loops and waits for them; a run being started finishes starting.
    pub async fn close(&self) {
        self.inner.shutdown.cancel();
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.tasks.lock().expect("tasks lock"));
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Creates a schedule after checking its template as `CreateRun` would.
    pub async fn create(&self, new: NewSchedule) -> Result<Schedule, EvaluationError> {
        let inner = &self.inner;
        let mut new = new;
        if new.id.is_empty() {
            new.id = Uuid::now_v7().to_string();
        }
        let expression = inner.check(&mut new)?;
        let now = inner.settings.clock.now();
        let mut schedule = Schedule {
            id: new.id,
            template: new.template,
            schedule: new.schedule.trim().to_owned(),
            on_prompt_change: new.on_prompt_change,
            watch_label: new.watch_label,
            paused: false,
            next_run_at: None,
            last_run_id: String::new(),
            skipped_ticks: 0,
            runs_started: 0,
            last_error: String::new(),
            watched_version: String::new(),
            pending: None,
            created_at: now,
            updated_at: now,
            created_by: new.created_by,
        };
        schedule.next_run_at = expression.next_after(now, inner.default_interval());
        let mut schedules = inner.schedules.lock().await;
        // A schedule uses its dataset: creating one must not interleave with deleting the
        // dataset (see `DatasetUsers`), so its existence is checked again under the claim.
        let datasets = inner.runs.datasets();
        let _claim = datasets.claim().await;
        datasets.get(&schedule.template.dataset_id)?;
        // Read under the lock the watcher fires under, so a change is either seen here
        // or fires the new schedule.
        schedule.watched_version = inner.watched_version(&schedule).unwrap_or_default();
        if schedules.contains_key(&schedule.id) {
            return Err(EvaluationError::AlreadyExists(format!(
                "schedule {:?} already exists",
                schedule.id
            )));
        }
        if schedules.len() >= MAX_SCHEDULES {
            return Err(EvaluationError::FailedPrecondition(format!(
                "this server already has {MAX_SCHEDULES} schedules; delete one first"
            )));
        }
        inner.store.insert_schedule(&schedule).await?;
        inner.show(&schedule);
        schedules.insert(schedule.id.clone(), schedule.clone());
        inner.wake.notify_one();
        tracing::info!(schedule_id = %schedule.id, schedule = %schedule.schedule, next_run_at = ?schedule.next_run_at, "schedule created");
        Ok(schedule)
    }

    /// One schedule.
    pub fn get(&self, id: &str) -> Result<Schedule, EvaluationError> {
        self.inner
            .view
            .read()
            .expect("view lock")
            .get(id)
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    /// Schedules newest first.
    pub fn list(
        &self,
        page_size: usize,
        page_token: &str,
    ) -> Result<(Vec<Schedule>, String), EvaluationError> {
        let schedules: Vec<Schedule> = self
            .inner
            .view
            .read()
            .expect("view lock")
            .values()
            .cloned()
            .collect();
        let page_size = if page_size == 0 {
            DEFAULT_PAGE_SIZE
        } else {
            page_size
        };
        newest_first(
            schedules,
            |s| (s.created_at.timestamp_micros(), s.id.clone()),
            page_size,
            page_token,
            MAX_PAGE_SIZE,
        )
    }

    /// The schedules whose runs evaluate `dataset_id`.
    pub fn using_dataset(&self, dataset_id: &str) -> Vec<String> {
        self.inner
            .view
            .read()
            .expect("view lock")
            .values()
            .filter(|s| s.template.dataset_id == dataset_id)
            .map(|s| s.id.clone())
            .collect()
    }

    /// Pauses a schedule: it starts nothing until resumed. Pausing a paused schedule
    /// changes nothing.
    pub async fn pause(&self, id: &str) -> Result<Schedule, EvaluationError> {
        self.inner
            .change(id, |schedule, _| {
                schedule.paused = true;
                schedule.next_run_at = None;
            })
            .await
    }

    /// Resumes a schedule. Ticks that fell due while it was paused are not made up, and
    /// prompt changes made meanwhile do not start a run: it carries on from now.
    pub async fn resume(&self, id: &str) -> Result<Schedule, EvaluationError> {
        self.inner
            .change(id, |schedule, inner| {
                if !schedule.paused {
                    return;
                }
                schedule.paused = false;
                schedule.next_run_at = inner.next_due(schedule, inner.settings.clock.now());
                if let Some(version) = inner.watched_version(schedule) {
                    schedule.watched_version = version;
                }
            })
            .await
    }

    /// Deletes a schedule; the runs it started stay.
    pub async fn delete(&self, id: &str) -> Result<(), EvaluationError> {
        let inner = &self.inner;
        let mut schedules = inner.schedules.lock().await;
        if !schedules.contains_key(id) {
            return Err(not_found(id));
        }
        inner.store.delete_schedule(id).await?;
        schedules.remove(id);
        inner.view.write().expect("view lock").remove(id);
        inner.wake.notify_one();
        tracing::info!(schedule_id = %id, "schedule deleted");
        Ok(())
    }
}

impl Inner {
    /// Makes a stored change visible to reads.
    fn show(&self, schedule: &Schedule) {
        self.view
            .write()
            .expect("view lock")
            .insert(schedule.id.clone(), schedule.clone());
    }

    fn default_interval(&self) -> Option<Duration> {
        self.settings
            .auto_evaluation
            .then_some(self.settings.interval)
    }

    /// When `schedule` is next due by time after `after` (None: never by time).
    fn next_due(&self, schedule: &Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Stored expressions were checked when the schedule was created.
        ScheduleExpression::parse(&schedule.schedule)
            .ok()?
            .next_after(after, self.default_interval())
    }

    /// Checks a new schedule, filling in what the template leaves to the schedule, and
    /// returns its parsed expression.
    fn check(&self, new: &mut NewSchedule) -> Result<ScheduleExpression, EvaluationError> {
        let mut violations = Vec::new();
        if new.id.len() > ID_BYTES || new.id.chars().any(char::is_control) {
            violations.push(FieldViolation::new(
                "id",
                format!("at most {ID_BYTES} bytes, without control characters"),
            ));
        }
        let expression = match ScheduleExpression::parse(&new.schedule) {
            Ok(expression) => Some(expression),
            Err(reason) => {
                violations.push(FieldViolation::new("schedule", reason));
                None
            }
        };
        let template = &mut new.template;
        if !template.id.is_empty() {
            violations.push(FieldViolation::new(
                "run_template.id",
                "each run gets a new id; leave it empty",
            ));
        }
        if template.submitted_outputs {
            violations.push(FieldViolation::new(
                "run_template.submitted_outputs",
                "a schedule runs its model on the server; submitted outputs cannot be scheduled",
            ));
        }
        if !new.watch_label.is_empty() {
            if !new.on_prompt_change {
                violations.push(FieldViolation::new(
                    "watch_label",
                    "only applies with on_prompt_change = true",
                ));
            }
            if let Err(violation) = llmops_registry::validate_label("watch_label", &new.watch_label)
            {
                violations.push(FieldViolation::new(violation.field, violation.description));
            }
        }
        if new.on_prompt_change && !template.prompt_version.is_empty() {
            violations.push(FieldViolation::new(
                "run_template.prompt_version",
                "a schedule with on_prompt_change evaluates each new version; leave the version empty",
            ));
        }
        if let Some(expression) = &expression {
            if !new.on_prompt_change
                && expression
                    .next_after(self.settings.clock.now(), self.default_interval())
                    .is_none()
            {
                violations.push(FieldViolation::new(
                    "schedule",
                    "would never fire: it is empty, automatic evaluation is off on this server ([evaluation] auto_evaluation = false), and on_prompt_change is false",
                ));
            }
        }
        // The template is checked only once the schedule's own fields are right: its
        // checks look up the dataset and the prompt (the watched label may not be set
        // yet, so it is not looked up).
        if violations.is_empty() {
            if let Err(err) = self.runs.check(template) {
                return Err(match err {
                    EvaluationError::InvalidArgument(inner) => EvaluationError::InvalidArgument(
                        inner
                            .into_iter()
                            .map(|v| {
                                FieldViolation::new(
                                    format!("run_template.{}", v.field),
                                    v.description,
                                )
                            })
                            .collect(),
                    ),
                    other => other,
                });
            }
        }
        // A schedule watching a label evaluates that label on its timed runs too, unless
        // the template chose a version or label itself.
        if !new.watch_label.is_empty()
            && template.prompt_version.is_empty()
            && template.prompt_label.is_empty()
        {
            template.prompt_label = new.watch_label.clone();
        }
        match expression {
            Some(expression) if violations.is_empty() => Ok(expression),
            _ => Err(EvaluationError::InvalidArgument(violations)),
        }
    }

    /// Applies `edit` to a schedule and stores it.
    async fn change(
        &self,
        id: &str,
        edit: impl FnOnce(&mut Schedule, &Inner),
    ) -> Result<Schedule, EvaluationError> {
        let mut schedules = self.schedules.lock().await;
        let current = schedules.get(id).ok_or_else(|| not_found(id))?;
        let mut schedule = current.clone();
        edit(&mut schedule, self);
        if schedule == *current {
            return Ok(schedule);
        }
        schedule.updated_at = self.settings.clock.now();
        self.store.update_schedule(&schedule).await?;
        self.show(&schedule);
        schedules.insert(id.to_owned(), schedule.clone());
        self.wake.notify_one();
        Ok(schedule)
    }
}
