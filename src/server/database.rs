//! The database's availability as the server sees it: opened with retries at start (a
//! mesh starts pods in any order, so a database that is not up yet is waited for, not a
//! reason to exit), then checked while serving, so health says NOT_SERVING while the
//! database is unreachable and SERVING again once it is back.

use std::time::Duration;

use llmops_store::{DatabaseUrl, Storage, StorageOptions, StoreOpenError};
use tokio_util::sync::CancellationToken;
use tonic_health::pb::health_check_response::ServingStatus;

use super::health::HealthReporter;
use super::SERVICE_NAMES;

/// The first wait after a failed attempt to reach the database; it doubles up to
/// [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);

/// How often a serving server checks that the database answers, and how long an answer
/// may take before the database counts as unreachable.
const CHECK_INTERVAL: Duration = Duration::from_secs(2);
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens the database at `url`. A PostgreSQL server that cannot be reached is retried
/// with capped exponential backoff, each failure logged with its reason, until it can
/// (the caller races this against shutdown). Anything else (a bad URL, a failed
/// migration, an unusable SQLite file) is returned at once: waiting cannot fix it.
pub(super) async fn open_with_retry(
    url: &DatabaseUrl,
    options: StorageOptions,
) -> Result<Storage, StoreOpenError> {
    let mut delay = FIRST_RETRY_DELAY;
    let mut attempt = 1_u32;
    loop {
        match Storage::open(url, options).await {
            Ok(storage) => {
                if attempt > 1 {
                    tracing::info!(%url, attempt, "the database is reachable");
                }
                return Ok(storage);
            }
            Err(StoreOpenError::Connect(err)) if matches!(url, DatabaseUrl::Postgres(_)) => {
                let reason = llmops_redact::redact_url(&err.to_string());
                tracing::warn!(%url, attempt, retry_in = ?delay, %reason, "cannot reach the database; health stays NOT_SERVING");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Checks the database every [`CHECK_INTERVAL`] until `stop`, and reports every service
/// NOT_SERVING while it does not answer (calls that need it are answered UNAVAILABLE
/// meanwhile) and SERVING when it answers again.
pub(super) async fn watch(storage: Storage, health: HealthReporter, stop: CancellationToken) {
    let mut reachable = true;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(CHECK_INTERVAL) => {}
        }
        let answer = tokio::time::timeout(CHECK_TIMEOUT, storage.ping()).await;
        let now_reachable = matches!(answer, Ok(Ok(())));
        if now_reachable == reachable || stop.is_cancelled() {
            continue;
        }
        reachable = now_reachable;
        if reachable {
            tracing::info!("the database answers again; serving");
            health.set_all(SERVICE_NAMES, ServingStatus::Serving);
        } else {
            let reason = match answer {
                Ok(Err(err)) => err.to_string(),
                _ => format!("no answer within {CHECK_TIMEOUT:?}"),
            };
            tracing::error!(%reason, "the database does not answer; NOT_SERVING until it does");
            health.set_all(SERVICE_NAMES, ServingStatus::NotServing);
        }
    }
}
