//! A disconnected subscriber frees everything: the server's subscriber gauge returns to
//! zero. (Its own test binary, because the gauge is process-wide.)

mod common;

use std::time::Duration;

use common::TestServer;
use llmops::pb;
use tokio_stream::StreamExt;

fn gauge(metrics: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with("llmops_alert_subscribers "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

#[tokio::test]
async fn disconnecting_subscribers_are_cleaned_up() {
    let server = TestServer::start_with(|config| {
        config.alerts.heartbeat_interval = Duration::from_millis(50)
    })
    .await;
    let mut streams = Vec::new();
    for _ in 0..20 {
        let mut stream = server
            .alerts()
            .subscribe(pb::SubscribeRequest::default())
            .await
            .unwrap()
            .into_inner();
        // The first heartbeat proves the subscription is running.
        stream.next().await.unwrap().unwrap();
        streams.push(stream);
    }
    assert_eq!(gauge(&server.metrics_text().await), Some(20.0));
    drop(streams);
    for _ in 0..100 {
        if gauge(&server.metrics_text().await) == Some(0.0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "subscribers were not cleaned up: {:?}",
        gauge(&server.metrics_text().await)
    );
}
