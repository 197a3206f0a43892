//! AlertService end to end: codes, dedup, subscriptions, heartbeats, retention, webhooks
//! to a real HTTP receiver, and restarts.

mod common;

use common::backend::{Backend, TestDatabase};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TestServer;
use llmops::config::WebhookConfig;
use llmops::pb;
use tokio_stream::StreamExt;
use tonic::Code;

fn alert(source_id: &str, severity: pb::AlertSeverity) -> pb::Alert {
    pb::Alert {
        r#type: pb::AlertType::Regression.into(),
        severity: severity.into(),
        message: format!("pass rate dropped on {source_id}"),
        source: "evaluation".into(),
        source_id: source_id.into(),
        metric: "pass_rate".into(),
        actual_value: Some(0.7),
        threshold: Some(0.85),
        labels: [("prompt".to_owned(), "p".to_owned())].into(),
        ..Default::default()
    }
}

async fn create(server: &TestServer, a: pb::Alert) -> pb::CreateAlertResponse {
    server
        .alerts()
        .create_alert(pb::CreateAlertRequest { alert: Some(a) })
        .await
        .unwrap()
        .into_inner()
}

async fn create_dedups_and_every_rpc_answers_with_the_right_code(backend: Backend) {
    let server = TestServer::start_on_backend(backend, |_| {}).await;
    let mut client = server.alerts();
    let first = create(&server, alert("ds1", pb::AlertSeverity::Warning)).await;
    assert!(!first.deduplicated);
    let first = first.alert.unwrap();
    assert_eq!(
        (first.status, first.occurrences),
        (pb::AlertStatus::Firing as i32, 1)
    );
    assert_eq!(first.fingerprint.len(), 32);
    let again = create(&server, alert("ds1", pb::AlertSeverity::Critical)).await;
    assert!(again.deduplicated);
    let again = again.alert.unwrap();
    assert_eq!(
        (again.id.as_str(), again.occurrences, again.severity),
        (first.id.as_str(), 2, pb::AlertSeverity::Critical as i32)
    );

    let missing_type = pb::Alert {
        r#type: 0,
        ..alert("x", pb::AlertSeverity::Info)
    };
    let status = client
        .create_alert(pb::CreateAlertRequest {
            alert: Some(missing_type),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let no_message = pb::Alert {
        message: String::new(),
        ..alert("x", pb::AlertSeverity::Info)
    };
    assert_eq!(
        client
            .create_alert(pb::CreateAlertRequest {
                alert: Some(no_message)
            })
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        client
            .create_alert(pb::CreateAlertRequest { alert: None })
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        client
            .get_alert(pb::GetAlertRequest {
                alert_id: "nope".into()
            })
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        client
            .get_alert(pb::GetAlertRequest {
                alert_id: unknown.clone()
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let ack = |id: &str| pb::AcknowledgeAlertRequest {
        alert_id: id.into(),
        acknowledged_by: "ada".into(),
        comment: "on it".into(),
    };
    assert_eq!(
        client
            .acknowledge_alert(ack(&unknown))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    let acked = client
        .acknowledge_alert(ack(&first.id))
        .await
        .unwrap()
        .into_inner()
        .alert
        .unwrap();
    assert_eq!(
        (acked.status, acked.acknowledged_by.as_str()),
        (pb::AlertStatus::Acknowledged as i32, "ada")
    );
    let resolved = client
        .resolve_alert(pb::ResolveAlertRequest {
            alert_id: first.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .alert
        .unwrap();
    assert_eq!(resolved.status, pb::AlertStatus::Resolved as i32);
    assert_eq!(
        client
            .acknowledge_alert(ack(&first.id))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    let got = client
        .get_alert(pb::GetAlertRequest {
            alert_id: first.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .alert
        .unwrap();
    assert_eq!(got, resolved);
}

async fn listing_filters_and_pages_newest_first(backend: Backend) {
    let server = TestServer::start_on_backend(backend, |_| {}).await;
    let mut ids = Vec::new();
    for (i, severity) in [
        pb::AlertSeverity::Info,
        pb::AlertSeverity::Warning,
        pb::AlertSeverity::Critical,
    ]
    .into_iter()
    .enumerate()
    {
        ids.push(
            create(&server, alert(&format!("ds{i}"), severity))
                .await
                .alert
                .unwrap()
                .id,
        );
    }
    let mut client = server.alerts();
    let page = client
        .list_alerts(pb::ListAlertsRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page.alerts.iter().map(|a| a.id.clone()).collect::<Vec<_>>(),
        [ids[2].clone(), ids[1].clone()]
    );
    let rest = client
        .list_alerts(pb::ListAlertsRequest {
            page_size: 2,
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rest.alerts.iter().map(|a| a.id.clone()).collect::<Vec<_>>(),
        [ids[0].clone()]
    );
    assert!(rest.next_page_token.is_empty());
    let critical = client
        .list_alerts(pb::ListAlertsRequest {
            severities: vec![pb::AlertSeverity::Critical.into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(critical.alerts.len(), 1);
    let bad = client
        .list_alerts(pb::ListAlertsRequest {
            page_token: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
}

async fn a_subscriber_resuming_mid_stream_sees_every_event_once_while_alerts_are_created(
    backend: Backend,
) {
    let server = TestServer::start_on_backend(backend, |_| {}).await;
    for i in 0..10 {
        create(
            &server,
            alert(&format!("before{i}"), pb::AlertSeverity::Warning),
        )
        .await;
    }
    let mut stream = server
        .alerts()
        .subscribe(pb::SubscribeRequest {
            after_sequence: Some(3),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let mut client = server.alerts();
            tokio::spawn(async move {
                for i in 0..10 {
                    client
                        .create_alert(pb::CreateAlertRequest {
                            alert: Some(alert(&format!("w{w}-{i}"), pb::AlertSeverity::Info)),
                        })
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut sequences = Vec::new();
    while sequences.len() < 47 {
        let event = stream.next().await.unwrap().unwrap();
        if event.kind != pb::AlertEventKind::Heartbeat as i32 {
            sequences.push(event.sequence);
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(sequences, (4..=50).collect::<Vec<u64>>());
}

#[tokio::test]
async fn subscriptions_filter_and_send_heartbeats_with_a_safe_checkpoint() {
    let server = TestServer::start_with(|config| {
        config.alerts.heartbeat_interval = Duration::from_millis(100)
    })
    .await;
    let mut stream = server
        .alerts()
        .subscribe(pb::SubscribeRequest {
            min_severity: pb::AlertSeverity::Critical.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    create(&server, alert("quiet", pb::AlertSeverity::Info)).await;
    create(&server, alert("loud", pb::AlertSeverity::Critical)).await;
    let event = stream.next().await.unwrap().unwrap();
    assert_eq!(event.kind, pb::AlertEventKind::Created as i32);
    assert_eq!(event.alert.unwrap().source_id, "loud");
    let heartbeat = loop {
        let event = stream.next().await.unwrap().unwrap();
        if event.kind == pb::AlertEventKind::Heartbeat as i32 {
            break event;
        }
    };
    assert_eq!(heartbeat.sequence, 2);
    assert!(heartbeat.alert.is_none());
}

async fn resuming_below_retention_is_out_of_range(backend: Backend) {
    let server = TestServer::start_on_backend(backend, |config| {
        config.alerts.retention = Duration::ZERO;
        config.alerts.prune_interval = Duration::from_secs(1);
    })
    .await;
    let created = create(&server, alert("ds1", pb::AlertSeverity::Warning))
        .await
        .alert
        .unwrap();
    server
        .alerts()
        .resolve_alert(pb::ResolveAlertRequest {
            alert_id: created.id.clone(),
        })
        .await
        .unwrap();
    let mut client = server.alerts();
    let mut pruned = false;
    for _ in 0..50 {
        if client
            .get_alert(pb::GetAlertRequest {
                alert_id: created.id.clone(),
            })
            .await
            .is_err()
        {
            pruned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pruned, "the resolved alert was never pruned");
    let status = client
        .subscribe(pb::SubscribeRequest {
            after_sequence: Some(0),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange);
}

/// A receiver that answers 503 to the first `failures` deliveries, then 200.
struct Receiver {
    url: String,
    hits: Arc<AtomicUsize>,
    accepted: Arc<Mutex<Vec<(String, http::HeaderMap)>>>,
}

async fn receiver(failures: usize) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let (hits, accepted) = (hits.clone(), accepted.clone());
            move |headers: http::HeaderMap, body: String| async move {
                if hits.fetch_add(1, Ordering::SeqCst) < failures {
                    return http::StatusCode::SERVICE_UNAVAILABLE;
                }
                accepted.lock().unwrap().push((body, headers));
                http::StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver {
        url,
        hits,
        accepted,
    }
}

fn webhook(url: &str) -> WebhookConfig {
    WebhookConfig {
        name: "ops".into(),
        url: url.into(),
        secret_env: Some("LLMOPS_TEST_WEBHOOK_SECRET".into()),
        min_severity: Some("WARNING".into()),
        types: vec![],
        sources: vec![],
        timeout: Duration::from_secs(2),
        max_attempts: 8,
    }
}

async fn wait_for(accepted: &Mutex<Vec<(String, http::HeaderMap)>>, count: usize) {
    for _ in 0..200 {
        if accepted.lock().unwrap().len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the webhook was not delivered in time");
}

#[tokio::test]
async fn webhooks_are_retried_until_delivered_signed_and_alertmanager_shaped() {
    std::env::set_var("LLMOPS_TEST_WEBHOOK_SECRET", "s3cret");
    let receiver = receiver(2).await;
    let server =
        TestServer::start_with(|config| config.webhooks = vec![webhook(&receiver.url)]).await;
    create(&server, alert("below-minimum", pb::AlertSeverity::Info)).await;
    let created = create(&server, alert("ds1", pb::AlertSeverity::Critical))
        .await
        .alert
        .unwrap();
    wait_for(&receiver.accepted, 1).await;
    assert_eq!(
        receiver.hits.load(Ordering::SeqCst),
        3,
        "two failures, then success"
    );
    let (body, headers) = receiver.accepted.lock().unwrap()[0].clone();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["version"], "4");
    assert_eq!(json["status"], "firing");
    assert_eq!(
        json["alerts"][0]["fingerprint"],
        created.fingerprint.as_str()
    );
    assert_eq!(
        json["alerts"][0]["labels"]["alertname"],
        "llmops_regression"
    );
    assert_eq!(json["llmops"]["alert_id"], created.id.as_str());
    assert!(headers.get("idempotency-key").is_some());
    let signature = headers
        .get("x-llmops-signature")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let (t, v1) = signature
        .strip_prefix("t=")
        .unwrap()
        .split_once(",v1=")
        .unwrap();
    assert_eq!(
        signature,
        llmops_alerts::webhook::signature_header("s3cret", t.parse().unwrap(), &body)
    );
    assert_eq!(v1.len(), 64);
}

async fn a_restart_keeps_alerts_sequences_and_pending_deliveries(backend: Backend) {
    std::env::set_var("LLMOPS_TEST_WEBHOOK_SECRET", "s3cret");
    let data_dir = TestDatabase::new(backend).await;
    // Nothing listens on the first URL: the delivery stays pending.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let server = TestServer::start_on(&data_dir, |config| {
        config.webhooks = vec![webhook(&dead_url)]
    })
    .await;
    let created = create(&server, alert("ds1", pb::AlertSeverity::Critical))
        .await
        .alert
        .unwrap();
    create(&server, alert("ds1", pb::AlertSeverity::Critical)).await;
    server.stop().await;

    let receiver = receiver(0).await;
    let server = TestServer::start_on(&data_dir, |config| {
        config.webhooks = vec![webhook(&receiver.url)]
    })
    .await;
    wait_for(&receiver.accepted, 2).await;
    let got = server
        .alerts()
        .get_alert(pb::GetAlertRequest {
            alert_id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .alert
        .unwrap();
    assert_eq!(got.occurrences, 2);
    let third = create(&server, alert("ds1", pb::AlertSeverity::Critical)).await;
    assert!(
        third.deduplicated,
        "the open alert's fingerprint survives the restart"
    );
    let mut stream = server
        .alerts()
        .subscribe(pb::SubscribeRequest {
            after_sequence: Some(0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut sequences = Vec::new();
    while sequences.len() < 3 {
        sequences.push(stream.next().await.unwrap().unwrap().sequence);
    }
    assert_eq!(sequences, [1, 2, 3]);
}

/// With a receiver failing every delivery slowly and a backlog that keeps every batch
/// full, the sender never looked at shutdown: SIGTERM never finished. Shutdown now ends
/// within the grace period plus a margin, and the undelivered alerts stay in the outbox
/// for the next start.
#[tokio::test]
async fn shutdown_finishes_while_a_failing_receiver_has_a_backlog() {
    std::env::set_var("LLMOPS_TEST_WEBHOOK_SECRET", "s3cret");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let failing_url = format!("http://{}/hook", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let hits = hits.clone();
            move || async move {
                hits.fetch_add(1, Ordering::SeqCst);
                // Slow enough that the sender is always mid-batch.
                tokio::time::sleep(Duration::from_millis(200)).await;
                http::StatusCode::SERVICE_UNAVAILABLE
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let data_dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_in(data_dir.path(), |config| {
        config.webhooks = vec![webhook(&failing_url)];
        config.shutdown_grace = Duration::from_secs(1);
    })
    .await;
    for index in 0..600 {
        create(
            &server,
            alert(&format!("ds{index}"), pb::AlertSeverity::Critical),
        )
        .await;
    }
    // The sender is working through full batches.
    while hits.load(Ordering::SeqCst) < 64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopping = server.begin_shutdown();
    // The bound is the behaviour under test: the 1 s grace plus a margin for a loaded
    // two-core machine. Before the fix the sender kept sending for minutes.
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown finished within the grace period plus a margin")
        .unwrap()
        .unwrap();

    // Nothing was lost: a working receiver gets the backlog after a restart.
    let receiver = receiver(0).await;
    let _server = TestServer::start_in(data_dir.path(), |config| {
        config.webhooks = vec![webhook(&receiver.url)]
    })
    .await;
    wait_for(&receiver.accepted, 1).await;
}

/// PostgreSQL's text cannot hold NUL; a NUL in a stored field or a filter is the
/// client's mistake on any backend, answered INVALID_ARGUMENT with the field, never a
/// retryable database failure.
async fn nul_characters_are_refused_with_the_field(backend: Backend) {
    let server = TestServer::start_on_backend(backend, |_| {}).await;
    let mut bad = alert("ds\0x", pb::AlertSeverity::Warning);
    let refused = server
        .alerts()
        .create_alert(pb::CreateAlertRequest {
            alert: Some(bad.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert_eq!(common::eval::fields(&refused), ["alert.source_id"]);
    bad.source_id = "ds".into();
    bad.source = "eval\0".into();
    let refused = server
        .alerts()
        .create_alert(pb::CreateAlertRequest { alert: Some(bad) })
        .await
        .unwrap_err();
    assert_eq!(common::eval::fields(&refused), ["alert.source"]);
    let listed = server
        .alerts()
        .list_alerts(pb::ListAlertsRequest {
            source: "eval\0".into(),
            ..Default::default()
        })
        .await;
    match listed {
        Ok(page) => assert!(page.into_inner().alerts.is_empty()),
        Err(status) => assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}"),
    }
}

on_both_backends!(
    create_dedups_and_every_rpc_answers_with_the_right_code,
    listing_filters_and_pages_newest_first,
    a_subscriber_resuming_mid_stream_sees_every_event_once_while_alerts_are_created,
    resuming_below_retention_is_out_of_range,
    a_restart_keeps_alerts_sequences_and_pending_deliveries,
    nul_characters_are_refused_with_the_field,
);
