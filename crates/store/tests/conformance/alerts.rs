//! `AlertStore`, through the alert service: dedup and escalation, acknowledgement and
//! resolution, every listing filter, subscriptions that resume, retention, the outbox.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use llmops_alerts::webhook::{DeliveryOutcome, WebhookReceiver};
use llmops_alerts::{
    AlertError, AlertEvent, AlertFilter, AlertService, AlertSeverity, AlertSink, AlertStatus,
    AlertType, NewAlert, Subscription, SubscriptionFilter,
};
use llmops_store::Storage;
use proptest::prelude::{prop_assert_eq, ProptestConfig};
use proptest::test_runner::{TestCaseError, TestRunner};

use crate::database::TestDatabase;
use crate::fixtures::now;

fn new_alert(source_id: &str, severity: AlertSeverity) -> NewAlert {
    NewAlert {
        alert_type: AlertType::Regression,
        severity,
        message: format!("pass rate dropped on {source_id}"),
        source: "evaluation".into(),
        source_id: source_id.into(),
        metric: "pass_rate".into(),
        threshold: Some(0.85),
        actual_value: Some(0.7),
        labels: BTreeMap::from([("prompt".to_owned(), "p".to_owned())]),
        metadata: BTreeMap::new(),
        fingerprint: String::new(),
    }
}

async fn service(storage: &Storage, receivers: Vec<WebhookReceiver>) -> AlertService {
    AlertService::open(storage.alerts.clone(), receivers, String::new())
        .await
        .unwrap()
}

/// How long a subscriber waits for an event that was committed: a lost event fails the
/// case instead of hanging it.
const EVENT_WAIT: Duration = Duration::from_secs(5);

/// The subscription's next event; `None` if none came within [`EVENT_WAIT`].
async fn next_event(subscription: &mut Subscription<AlertEvent>) -> Option<Arc<AlertEvent>> {
    let next = tokio::time::timeout(EVENT_WAIT, subscription.next()).await;
    next.ok()
        .map(|event| event.unwrap().expect("the feed is open"))
}

fn receiver(min_severity: Option<AlertSeverity>) -> WebhookReceiver {
    WebhookReceiver {
        name: "ops".into(),
        url: "http://127.0.0.1:9/hook".into(),
        secret: None,
        filter: SubscriptionFilter {
            min_severity,
            ..Default::default()
        },
        timeout: Duration::from_secs(1),
        max_attempts: 3,
    }
}

pub(crate) async fn a_repeated_problem_updates_the_open_alert_and_only_raises_severity(
    db: TestDatabase,
) {
    let service = service(&db.open().await, vec![]).await;
    let first = service
        .create(new_alert("ds1", AlertSeverity::Warning))
        .await
        .unwrap();
    assert!(!first.deduplicated);
    let mut again = new_alert("ds1", AlertSeverity::Critical);
    again.actual_value = Some(0.5);
    let second = service.create(again).await.unwrap();
    assert!(second.deduplicated);
    assert_eq!(second.alert.id, first.alert.id);
    assert_eq!(
        (
            second.alert.occurrences,
            second.alert.severity,
            second.alert.actual_value
        ),
        (2, AlertSeverity::Critical, Some(0.5))
    );
    let third = service
        .create(new_alert("ds1", AlertSeverity::Info))
        .await
        .unwrap();
    assert_eq!(
        third.alert.severity,
        AlertSeverity::Critical,
        "severity is never lowered"
    );
    assert_eq!(third.alert.occurrences, 3);
    assert!(third.alert.last_seen_at >= third.alert.first_seen_at);

    // Once resolved, the same problem opens a new alert.
    service.resolve(first.alert.id).await.unwrap();
    let reopened = service
        .create(new_alert("ds1", AlertSeverity::Warning))
        .await
        .unwrap();
    assert!(!reopened.deduplicated);
    assert_ne!(reopened.alert.id, first.alert.id);
    assert_eq!(reopened.alert.occurrences, 1);
}

pub(crate) async fn acknowledgement_is_idempotent_and_refused_once_resolved(db: TestDatabase) {
    let service = service(&db.open().await, vec![]).await;
    let alert = service
        .create(new_alert("ds1", AlertSeverity::Warning))
        .await
        .unwrap()
        .alert;
    let acked = service
        .acknowledge(alert.id, "ada", "looking")
        .await
        .unwrap();
    assert_eq!(
        (
            acked.status,
            acked.acknowledged_by.as_str(),
            acked.ack_comment.as_str()
        ),
        (AlertStatus::Acknowledged, "ada", "looking")
    );
    let again = service
        .acknowledge(alert.id, "bob", "me too")
        .await
        .unwrap();
    assert_eq!(
        (again.acknowledged_by.as_str(), again.acknowledged_at),
        ("ada", acked.acknowledged_at)
    );

    let resolved = service.resolve(alert.id).await.unwrap();
    assert_eq!(resolved.status, AlertStatus::Resolved);
    let resolved_again = service.resolve(alert.id).await.unwrap();
    assert_eq!(
        resolved_again.resolved_at, resolved.resolved_at,
        "resolve is idempotent"
    );
    assert!(matches!(
        service.acknowledge(alert.id, "x", "").await,
        Err(AlertError::FailedPrecondition(_))
    ));
    assert!(matches!(
        service.acknowledge(uuid::Uuid::now_v7(), "x", "").await,
        Err(AlertError::NotFound(_))
    ));
    assert!(matches!(
        service.resolve(uuid::Uuid::now_v7()).await,
        Err(AlertError::NotFound(_))
    ));
}

pub(crate) async fn every_filter_narrows_the_newest_first_listing(db: TestDatabase) {
    let service = service(&db.open().await, vec![]).await;
    let a = service
        .create(new_alert("ds1", AlertSeverity::Warning))
        .await
        .unwrap()
        .alert;
    let mut threshold = new_alert("ds2", AlertSeverity::Critical);
    threshold.alert_type = AlertType::Threshold;
    threshold.source = "experiments".into();
    let b = service.create(threshold).await.unwrap().alert;
    let c = service
        .create(new_alert("ds3", AlertSeverity::Info))
        .await
        .unwrap()
        .alert;
    service.acknowledge(c.id, "ada", "").await.unwrap();
    service.resolve(a.id).await.unwrap();

    let ids =
        |alerts: Vec<llmops_alerts::Alert>| alerts.into_iter().map(|a| a.id).collect::<Vec<_>>();
    let list = |filter: AlertFilter| {
        let service = &service;
        async move { ids(service.list(&filter, None, 100).await.unwrap()) }
    };
    assert_eq!(list(AlertFilter::default()).await, [c.id, b.id, a.id]);
    assert_eq!(
        list(AlertFilter {
            types: vec![AlertType::Threshold],
            ..Default::default()
        })
        .await,
        [b.id]
    );
    assert_eq!(
        list(AlertFilter {
            severities: vec![AlertSeverity::Info, AlertSeverity::Warning],
            ..Default::default()
        })
        .await,
        [c.id, a.id]
    );
    assert_eq!(
        list(AlertFilter {
            statuses: vec![AlertStatus::Resolved],
            ..Default::default()
        })
        .await,
        [a.id]
    );
    assert_eq!(
        list(AlertFilter {
            source: Some("experiments".into()),
            ..Default::default()
        })
        .await,
        [b.id]
    );
    assert_eq!(
        list(AlertFilter {
            source_id: Some("ds3".into()),
            ..Default::default()
        })
        .await,
        [c.id]
    );
    assert_eq!(
        list(AlertFilter {
            unacknowledged_only: true,
            ..Default::default()
        })
        .await,
        [b.id, a.id]
    );
    assert_eq!(
        list(AlertFilter {
            since: Some(b.created_at),
            ..Default::default()
        })
        .await,
        [c.id, b.id]
    );
    assert_eq!(
        list(AlertFilter {
            until: Some(b.created_at),
            ..Default::default()
        })
        .await,
        [a.id]
    );

    let first_page = service
        .list(&AlertFilter::default(), None, 2)
        .await
        .unwrap();
    let last = first_page.last().unwrap();
    let second_page = service
        .list(&AlertFilter::default(), Some((last.created_at, last.id)), 2)
        .await
        .unwrap();
    assert_eq!(ids(second_page), [a.id]);
}

pub(crate) async fn subscribers_resume_from_any_sequence_across_a_restart(db: TestDatabase) {
    let storage = db.open().await;
    let service = self::service(&storage, vec![]).await;
    let alert = service
        .create(new_alert("ds1", AlertSeverity::Warning))
        .await
        .unwrap()
        .alert;
    service
        .create(new_alert("ds1", AlertSeverity::Warning))
        .await
        .unwrap();
    service.acknowledge(alert.id, "ada", "").await.unwrap();
    drop(service);

    let storage = db.reopen(storage).await;
    let service = self::service(&storage, vec![]).await;
    assert_eq!(service.head_sequence(), 3, "sequences survive a restart");
    let mut subscription = service
        .subscribe(SubscriptionFilter::default(), Some(1))
        .await
        .unwrap();
    service.resolve(alert.id).await.unwrap();
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let event = next_event(&mut subscription)
            .await
            .unwrap_or_else(|| panic!("no event after {kinds:?}"));
        kinds.push((event.sequence, event.kind));
    }
    use llmops_alerts::AlertEventKind::*;
    assert_eq!(kinds, [(2, Updated), (3, Acknowledged), (4, Resolved)]);

    let mut critical_only = service
        .subscribe(
            SubscriptionFilter {
                min_severity: Some(AlertSeverity::Critical),
                ..Default::default()
            },
            Some(0),
        )
        .await
        .unwrap();
    service
        .create(new_alert("ds2", AlertSeverity::Info))
        .await
        .unwrap();
    service
        .create(new_alert("ds3", AlertSeverity::Critical))
        .await
        .unwrap();
    let event = next_event(&mut critical_only)
        .await
        .expect("the critical event");
    assert_eq!((event.sequence, event.alert.source_id.as_str()), (6, "ds3"));
}

pub(crate) async fn retention_prunes_resolved_alerts_and_refuses_resuming_below_it(
    db: TestDatabase,
) {
    let storage = db.open().await;
    let service = service(&storage, vec![]).await;
    let old = service
        .create(new_alert("ds1", AlertSeverity::Warning))
        .await
        .unwrap()
        .alert;
    service.resolve(old.id).await.unwrap();
    let open_alert = service
        .create(new_alert("ds2", AlertSeverity::Warning))
        .await
        .unwrap()
        .alert;
    let pruned = service
        .prune(now() + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    assert!(storage.alerts.get_alert(old.id).await.unwrap().is_none());
    assert!(
        storage
            .alerts
            .get_alert(open_alert.id)
            .await
            .unwrap()
            .is_some(),
        "open alerts are kept"
    );
    assert!(matches!(
        service
            .subscribe(SubscriptionFilter::default(), Some(0))
            .await,
        Err(AlertError::OutOfRange(_))
    ));
    assert!(service
        .subscribe(SubscriptionFilter::default(), Some(service.head_sequence()))
        .await
        .is_ok());
}

pub(crate) async fn matching_events_are_queued_for_webhooks_in_the_same_commit(db: TestDatabase) {
    let storage = db.open().await;
    let store = storage.alerts.clone();
    let service = service(&storage, vec![receiver(Some(AlertSeverity::Warning))]).await;
    service
        .create(new_alert("ds1", AlertSeverity::Info))
        .await
        .unwrap();
    let alert = service
        .create(new_alert("ds2", AlertSeverity::Critical))
        .await
        .unwrap()
        .alert;
    let due = store.due_deliveries(now(), 10).await.unwrap();
    assert_eq!(
        due.len(),
        1,
        "the INFO alert is below the receiver's minimum severity"
    );
    let body: serde_json::Value = serde_json::from_str(&due[0].body).unwrap();
    assert_eq!(body["version"], "4");
    assert_eq!(body["receiver"], "ops");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["alerts"][0]["fingerprint"], alert.fingerprint.as_str());
    assert_eq!(body["alerts"][0]["labels"]["severity"], "critical");
    assert_eq!(body["llmops"]["sequence"], 2);

    let later = now() + chrono::Duration::seconds(60);
    store
        .record_delivery(
            due[0].id,
            &DeliveryOutcome::Retry {
                attempts: 1,
                next_attempt_at: later,
                error: "503".into(),
            },
        )
        .await
        .unwrap();
    assert!(
        store.due_deliveries(now(), 10).await.unwrap().is_empty(),
        "not due before its retry time"
    );
    let retried = store.due_deliveries(later, 10).await.unwrap();
    assert_eq!((retried.len(), retried[0].attempts), (1, 1));
    store
        .record_delivery(
            due[0].id,
            &DeliveryOutcome::Delivered {
                at: now(),
                attempts: 2,
            },
        )
        .await
        .unwrap();
    assert!(store.due_deliveries(later, 10).await.unwrap().is_empty());
}

pub(crate) async fn the_sink_resolves_by_fingerprint(db: TestDatabase) {
    let service = service(&db.open().await, vec![]).await;
    let raised = service
        .raise(new_alert("ds1", AlertSeverity::Warning))
        .await
        .unwrap();
    let resolved = service
        .resolve_fingerprint(&raised.alert.fingerprint)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resolved.status, AlertStatus::Resolved);
    assert!(service
        .resolve_fingerprint(&raised.alert.fingerprint)
        .await
        .unwrap()
        .is_none());
}

pub(crate) async fn bad_alerts_are_refused_with_the_field(db: TestDatabase) {
    let service = service(&db.open().await, vec![]).await;
    let mut alert = new_alert("ds1", AlertSeverity::Warning);
    alert.message.clear();
    assert!(
        matches!(service.create(alert).await, Err(AlertError::InvalidArgument { field, .. }) if field == "alert.message")
    );
    let mut alert = new_alert("ds1", AlertSeverity::Warning);
    alert.actual_value = Some(f64::NAN);
    assert!(
        matches!(service.create(alert).await, Err(AlertError::InvalidArgument { field, .. }) if field == "alert.actual_value")
    );
    assert!(service
        .list(&AlertFilter::default(), None, 10)
        .await
        .unwrap()
        .is_empty());
}

/// A subscriber resuming from any sequence sees every later event exactly once, in
/// order, while other tasks keep creating, updating and resolving alerts.
///
/// A property test run inside the case (so on every backend): each generated scenario
/// adds its own alerts to the one database, resumes from anywhere in the log so far,
/// and failures shrink as usual.
pub(crate) async fn resuming_from_any_sequence_sees_every_later_event_once(db: TestDatabase) {
    let storage = db.open().await;
    let service = Arc::new(self::service(&storage, vec![]).await);
    let runtime = tokio::runtime::Handle::current();
    let scenarios = std::sync::atomic::AtomicU64::new(0);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 12,
        failure_persistence: None,
        // A lost event costs EVENT_WAIT per shrinking step: bound the search.
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    });
    let result = tokio::task::block_in_place(|| {
        runner.run(
            &(1u64..15, 1usize..4, 1u64..8, 0u64..1000),
            |(before, writers, per_writer, cursor_seed)| {
                let scenario = scenarios.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                runtime.block_on(resume_while_others_write(
                    service.clone(),
                    format!("s{scenario}"),
                    before,
                    writers,
                    per_writer,
                    cursor_seed,
                ))
            },
        )
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

/// One scenario: `before` events (every third an update of an open alert), a
/// subscription from a cursor picked by `cursor_seed` anywhere up to the head, then
/// `writers` tasks each creating `per_writer` alerts and resolving every second one.
async fn resume_while_others_write(
    service: Arc<AlertService>,
    prefix: String,
    before: u64,
    writers: usize,
    per_writer: u64,
    cursor_seed: u64,
) -> Result<(), TestCaseError> {
    for i in 0..before {
        let source_id = format!("{prefix}-b{}", i / 3);
        service
            .create(new_alert(&source_id, AlertSeverity::Warning))
            .await
            .unwrap();
    }
    let head_before = service.head_sequence();
    let cursor = cursor_seed % (head_before + 1);
    let mut subscription = service
        .subscribe(SubscriptionFilter::default(), Some(cursor))
        .await
        .unwrap();
    // Aborted on drop: a failed scenario leaves no writer behind for the next.
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let service = service.clone();
        let prefix = prefix.clone();
        tasks.spawn(async move {
            for i in 0..per_writer {
                let source_id = format!("{prefix}-w{w}-{i}");
                let raised = service
                    .create(new_alert(&source_id, AlertSeverity::Info))
                    .await
                    .unwrap();
                if i % 2 == 1 {
                    service.resolve(raised.alert.id).await.unwrap();
                }
            }
        });
    }
    let expected = head_before - cursor + writers as u64 * (per_writer + per_writer / 2);
    let mut seen = Vec::new();
    while (seen.len() as u64) < expected {
        let Some(event) = next_event(&mut subscription).await else {
            return Err(TestCaseError::fail(format!(
                "no event after {seen:?} (resumed from {cursor}; {expected} expected)"
            )));
        };
        seen.push(event.sequence);
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let head = service.head_sequence();
    prop_assert_eq!(seen, (cursor + 1..=head).collect::<Vec<u64>>());
    Ok(())
}

/// Two alert services on one database are two replicas: each decides dedup against its
/// own index, which the other's commits make stale. Racing raises of one problem still
/// give one alert that counts every occurrence, and every event has its own sequence.
pub(crate) async fn services_sharing_a_database_deduplicate_into_one_alert(db: TestDatabase) {
    let storage = db.open().await;
    let replicas = [
        Arc::new(service(&storage, vec![receiver(None)]).await),
        Arc::new(service(&storage, vec![receiver(None)]).await),
        Arc::new(service(&storage, vec![receiver(None)]).await),
    ];
    const PER_REPLICA: usize = 16;
    let mut racers = Vec::new();
    for replica in &replicas {
        for _ in 0..PER_REPLICA {
            let replica = replica.clone();
            racers.push(tokio::spawn(async move {
                replica
                    .create(new_alert("shared", AlertSeverity::Warning))
                    .await
                    .unwrap()
            }));
        }
    }
    let mut raised = Vec::new();
    for racer in racers {
        raised.push(racer.await.unwrap());
    }
    let ids: std::collections::BTreeSet<_> = raised.iter().map(|r| r.alert.id).collect();
    assert_eq!(ids.len(), 1, "one alert for one problem: {ids:?}");
    assert_eq!(raised.iter().filter(|r| !r.deduplicated).count(), 1);
    let stored = replicas[0].get(raised[0].alert.id).await.unwrap();
    assert_eq!(stored.occurrences, 3 * PER_REPLICA as u64);

    // One event per occurrence, each queued once for the webhook, its body naming the
    // sequence the event was stored under.
    let events = storage.alerts.alert_events_after(0, 1000).await.unwrap();
    assert_eq!(events.len(), 3 * PER_REPLICA);
    let deliveries = storage.alerts.due_deliveries(now(), 1000).await.unwrap();
    let mut sequences: Vec<u64> = deliveries
        .iter()
        .map(|d| {
            let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
            body["llmops"]["sequence"].as_u64().unwrap()
        })
        .collect();
    sequences.sort_unstable();
    assert_eq!(sequences, (1..=3 * PER_REPLICA as u64).collect::<Vec<_>>());
}

/// A service whose index holds an old copy of an alert (another service acknowledged
/// it since) neither overwrites the acknowledgement nor loses its own change.
pub(crate) async fn a_change_from_another_service_is_neither_lost_nor_overwritten(
    db: TestDatabase,
) {
    let storage = db.open().await;
    let first = service(&storage, vec![]).await;
    let second = service(&storage, vec![]).await;
    let raised = first
        .create(new_alert("p", AlertSeverity::Warning))
        .await
        .unwrap();
    // The second service's index does not hold the first's alert: it learns of it from
    // storage, and folds into it.
    let folded = second
        .create(new_alert("p", AlertSeverity::Critical))
        .await
        .unwrap();
    assert!(folded.deduplicated);
    assert_eq!(folded.alert.id, raised.alert.id);
    assert_eq!(folded.alert.occurrences, 2);
    second
        .acknowledge(raised.alert.id, "oncall", "looking")
        .await
        .unwrap();
    // The first service's copy still says one occurrence, unacknowledged.
    let again = first
        .create(new_alert("p", AlertSeverity::Warning))
        .await
        .unwrap();
    assert_eq!(again.alert.occurrences, 3);
    assert_eq!(again.alert.acknowledged_by, "oncall");
    assert_eq!(again.alert.severity, AlertSeverity::Critical);
    // Resolved on the second, it is resolved for the first too; the next raise opens
    // a new alert.
    second.resolve(raised.alert.id).await.unwrap();
    let acknowledged = first.acknowledge(raised.alert.id, "late", "").await;
    assert!(
        matches!(acknowledged, Err(AlertError::FailedPrecondition(_))),
        "{acknowledged:?}"
    );
    let reopened = first
        .create(new_alert("p", AlertSeverity::Warning))
        .await
        .unwrap();
    assert!(!reopened.deduplicated);
    assert_ne!(reopened.alert.id, raised.alert.id);
}
