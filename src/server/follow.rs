//! Following the shared event feeds and the change log, when other processes may write
//! to the database.
//!
//! Each replica serves reads from caches and streams from its own live feeds, so what
//! another replica commits must reach it. PostgreSQL announces every append to an event
//! stream (`NOTIFY`, delivered at commit); a listener wakes the stream's follower, which
//! reads every event after its cursor, refreshes the cache and publishes the events to
//! local subscribers. Each follower also wakes every `feed_poll_interval`, so a lost
//! announcement (a listener reconnecting) delays a change by at most that long.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use llmops_access::KeyService;
use llmops_alerts::AlertService;
use llmops_cluster::ClusterStore;
use llmops_evaluator::datasets::DatasetService;
use llmops_evaluator::gates::GateService;
use llmops_evaluator::online::OnlineEvaluationService;
use llmops_evaluator::runs::RunService;
use llmops_evaluator::schedules::ScheduleService;
use llmops_experiments::ExperimentService;
use llmops_registry::Registry;
use llmops_store::Storage;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The wait before listening again after the listener's connection failed.
const RELISTEN_DELAY: Duration = Duration::from_secs(1);

/// What a replica keeps in memory that other processes change.
pub(super) struct Followed {
    pub(super) registry: Arc<Registry>,
    pub(super) alerts: Arc<AlertService>,
    pub(super) schedules: Arc<ScheduleService>,
    pub(super) datasets: Arc<DatasetService>,
    pub(super) gates: Arc<GateService>,
    pub(super) experiments: Arc<ExperimentService>,
    pub(super) runs: Arc<RunService>,
    pub(super) keys: Arc<KeyService>,
    pub(super) online: Arc<OnlineEvaluationService>,
    /// The change log's head before the caches were loaded.
    pub(super) change_head: u64,
}

/// Starts following the prompt and alert feeds and the change log; nothing when the
/// database is not shared.
pub(super) fn spawn(
    storage: &Storage,
    followed: Followed,
    poll_interval: Duration,
    stop: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    if !storage.is_shared() {
        return Vec::new();
    }
    let wakers = Wakers {
        prompts: Arc::new(Notify::new()),
        alerts: Arc::new(Notify::new()),
        changes: Arc::new(Notify::new()),
        experiment_writes: Arc::new(Notify::new()),
    };
    let Followed {
        registry,
        alerts,
        schedules,
        datasets,
        gates,
        experiments,
        runs,
        keys,
        online,
        change_head,
    } = followed;
    let changes = Arc::new(ChangeFollower {
        cluster: storage.cluster.clone(),
        schedules,
        datasets,
        gates,
        experiments: experiments.clone(),
        runs,
        keys,
        online,
        cursor: tokio::sync::Mutex::new(change_head),
    });
    vec![
        tokio::spawn(follow_loop(
            "prompts",
            wakers.prompts.clone(),
            poll_interval,
            stop.clone(),
            move || {
                let registry = registry.clone();
                async move { registry.follow().await.map_err(|err| err.to_string()) }
            },
        )),
        tokio::spawn(follow_loop(
            "alerts",
            wakers.alerts.clone(),
            poll_interval,
            stop.clone(),
            move || {
                let alerts = alerts.clone();
                async move { alerts.follow().await.map_err(|err| err.to_string()) }
            },
        )),
        tokio::spawn(follow_loop(
            "changes",
            wakers.changes.clone(),
            poll_interval,
            stop.clone(),
            move || {
                let changes = changes.clone();
                async move { changes.follow().await }
            },
        )),
        tokio::spawn(follow_loop(
            "experiment writes",
            wakers.experiment_writes.clone(),
            poll_interval,
            stop.clone(),
            move || {
                let experiments = experiments.clone();
                async move { experiments.follow().await.map_err(|err| err.to_string()) }
            },
        )),
        tokio::spawn(listen(storage.clone(), wakers, stop.clone())),
    ]
}

/// Follows the change log of cached definitions (schedules, datasets, release gates,
/// experiments, evaluation runs), reloading each changed one.
struct ChangeFollower {
    cluster: Arc<dyn ClusterStore>,
    schedules: Arc<ScheduleService>,
    datasets: Arc<DatasetService>,
    gates: Arc<GateService>,
    experiments: Arc<ExperimentService>,
    runs: Arc<RunService>,
    keys: Arc<KeyService>,
    online: Arc<OnlineEvaluationService>,
    /// The sequence of the last change applied.
    cursor: tokio::sync::Mutex<u64>,
}

/// How many changes one read takes.
const CHANGE_BATCH: usize = 500;

impl ChangeFollower {
    async fn follow(&self) -> Result<usize, String> {
        let mut cursor = self.cursor.lock().await;
        let mut read = 0;
        loop {
            let batch = self
                .cluster
                .changes_after(*cursor, CHANGE_BATCH)
                .await
                .map_err(|err| err.to_string())?;
            if batch.first().is_some_and(|c| c.sequence > *cursor + 1) {
                // The log was pruned past this replica's place (it was cut off from
                // the database for long): what changed is unknown, so reload it all.
                tracing::warn!(
                    cursor = *cursor,
                    "fell behind the change log; reloading every definition"
                );
                self.datasets
                    .refresh_all()
                    .await
                    .map_err(|err| err.to_string())?;
                self.schedules
                    .refresh_all()
                    .await
                    .map_err(|err| err.to_string())?;
                self.gates
                    .refresh_all()
                    .await
                    .map_err(|err| err.to_string())?;
                self.experiments
                    .refresh_all()
                    .await
                    .map_err(|err| err.to_string())?;
                self.runs
                    .refresh_all()
                    .await
                    .map_err(|err| err.to_string())?;
                self.keys
                    .refresh_all()
                    .await
                    .map_err(|err| err.to_string())?;
                self.online.reload().await.map_err(|err| err.to_string())?;
            }
            read += batch.len();
            for change in &batch {
                let refreshed = match change.entity.as_str() {
                    "dataset" => self.datasets.refresh(&change.key).await,
                    "schedule" => self.schedules.refresh(&change.key).await,
                    "gate" => self.gates.refresh_all().await,
                    "experiment" => self.experiments.refresh(&change.key).await,
                    "run" => self.runs.refresh(&change.key).await,
                    "api_key" => self.keys.refresh(&change.key).await,
                    "online_evaluation" => self.online.refresh(&change.key).await,
                    _ => Ok(()),
                };
                refreshed.map_err(|err| err.to_string())?;
                *cursor = change.sequence;
            }
            if batch.len() < CHANGE_BATCH {
                return Ok(read);
            }
        }
    }
}

/// The followers to wake, by the stream names the store announces.
struct Wakers {
    prompts: Arc<Notify>,
    alerts: Arc<Notify>,
    changes: Arc<Notify>,
    experiment_writes: Arc<Notify>,
}

impl Wakers {
    fn wake(&self, stream: &str) {
        match stream {
            "prompts" => self.prompts.notify_one(),
            "alerts" => self.alerts.notify_one(),
            "changes" => self.changes.notify_one(),
            "experiment_writes" => self.experiment_writes.notify_one(),
            _ => {}
        }
    }

    fn wake_all(&self) {
        self.prompts.notify_one();
        self.alerts.notify_one();
        self.changes.notify_one();
        self.experiment_writes.notify_one();
    }
}

/// Wakes followers on the database's announcements until `stop`. After a lost
/// connection every follower is woken, since announcements may have been missed.
async fn listen(storage: Storage, wakers: Wakers, stop: CancellationToken) {
    loop {
        let listener = tokio::select! {
            () = stop.cancelled() => return,
            listener = storage.listen_for_appends() => listener,
        };
        match listener {
            Ok(Some(mut listener)) => loop {
                let next = tokio::select! {
                    () = stop.cancelled() => return,
                    next = listener.next() => next,
                };
                match next {
                    Ok(Some(stream)) => wakers.wake(&stream),
                    Ok(None) => wakers.wake_all(),
                    Err(err) => {
                        tracing::warn!(error = %err, "lost the database's feed announcements; following by polling until they are back");
                        wakers.wake_all();
                        break;
                    }
                }
            },
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for the database's feed announcements; following by polling meanwhile");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RELISTEN_DELAY) => {}
        }
    }
}

/// Calls `follow` at start, whenever `wake` is notified, and every `poll_interval`,
/// until `stop`.
async fn follow_loop<F, Fut>(
    feed: &'static str,
    wake: Arc<Notify>,
    poll_interval: Duration,
    stop: CancellationToken,
    follow: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<usize, String>>,
{
    let mut failing = false;
    loop {
        match follow().await {
            Ok(_) if failing => {
                tracing::info!(feed, "following the shared feed again");
                failing = false;
            }
            Ok(_) => {}
            Err(err) if !failing => {
                tracing::warn!(feed, error = %err, "following the shared feed failed; retrying");
                failing = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(poll_interval) => {}
        }
    }
}
