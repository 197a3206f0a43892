//! Following the shared event feeds, when other processes may write to the database.
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

use llmops_alerts::AlertService;
use llmops_registry::Registry;
use llmops_store::Storage;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The wait before listening again after the listener's connection failed.
const RELISTEN_DELAY: Duration = Duration::from_secs(1);

/// Starts following the prompt and alert feeds; nothing when the database is not shared.
pub(super) fn spawn(
    storage: &Storage,
    registry: Arc<Registry>,
    alerts: Arc<AlertService>,
    poll_interval: Duration,
    stop: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    if !storage.is_shared() {
        return Vec::new();
    }
    let prompts_wake = Arc::new(Notify::new());
    let alerts_wake = Arc::new(Notify::new());
    let wakers = Wakers {
        prompts: prompts_wake.clone(),
        alerts: alerts_wake.clone(),
    };
    vec![
        tokio::spawn(listen(storage.clone(), wakers, stop.clone())),
        tokio::spawn(follow_loop(
            "prompts",
            prompts_wake,
            poll_interval,
            stop.clone(),
            move || {
                let registry = registry.clone();
                async move { registry.follow().await.map_err(|err| err.to_string()) }
            },
        )),
        tokio::spawn(follow_loop(
            "alerts",
            alerts_wake,
            poll_interval,
            stop.clone(),
            move || {
                let alerts = alerts.clone();
                async move { alerts.follow().await.map_err(|err| err.to_string()) }
            },
        )),
    ]
}

/// The followers to wake, by the stream names the store announces.
struct Wakers {
    prompts: Arc<Notify>,
    alerts: Arc<Notify>,
}

impl Wakers {
    fn wake(&self, stream: &str) {
        match stream {
            "prompts" => self.prompts.notify_one(),
            "alerts" => self.alerts.notify_one(),
            _ => {}
        }
    }

    fn wake_all(&self) {
        self.prompts.notify_one();
        self.alerts.notify_one();
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
