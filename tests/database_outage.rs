//! A PostgreSQL server that is not up yet, or goes away while llmops serves: health
//! follows it, calls that need it are UNAVAILABLE (retryable), nothing acknowledged is
//! lost, and llmops never exits over it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::outage::Outage;
use common::TestServer;
use llmops::pb;
use llmops_core::SystemClock;
use llmops_store::scratch::{ScratchSchema, DEFAULT_TEST_DATABASE_URL, TEST_DATABASE_URL_VAR};
use tonic_health::pb::health_check_response::ServingStatus;

async fn create(server: &TestServer, name: &str) -> Result<(), tonic::Status> {
    server
        .prompts()
        .create_prompt_version(pb::CreatePromptVersionRequest {
            prompt_version: Some(pb::PromptVersion {
                name: name.into(),
                version: "1.0.0".into(),
                template: "Hello {{name}}".into(),
                ..Default::default()
            }),
        })
        .await
        .map(drop)
}

async fn prompt_names(server: &TestServer) -> Vec<String> {
    server
        .prompts()
        .list_prompts(pb::ListPromptsRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .prompts
        .into_iter()
        .map(|p| p.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_database_and_nothing_acknowledged_is_lost() {
    let schema = ScratchSchema::create().await;
    let server_url = std::env::var(TEST_DATABASE_URL_VAR)
        .unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned());
    let upstream = url::Url::parse(&server_url).unwrap();
    let upstream = format!(
        "{}:{}",
        upstream.host_str().unwrap(),
        upstream.port().unwrap_or(5432)
    );
    let outage = Outage::down(upstream.clone()).await;
    let through_proxy = schema
        .url()
        .replacen(&upstream, &outage.address.to_string(), 1);
    assert_ne!(through_proxy, schema.url(), "the URL names {upstream}");

    // The database is down at start: the server waits for it instead of exiting.
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::launch(dir.path(), Arc::new(SystemClock), |config| {
        config.database_url = through_proxy.clone();
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(server.health().await, ServingStatus::NotServing);
    outage.restore();
    server
        .wait_for_health(ServingStatus::Serving, Duration::from_secs(15))
        .await;
    create(&server, "before").await.unwrap();

    // Lost while serving: writes are UNAVAILABLE, health turns NOT_SERVING.
    outage.cut();
    let refused = create(&server, "during").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    server
        .wait_for_health(ServingStatus::NotServing, Duration::from_secs(10))
        .await;

    // Back: SERVING again, the acknowledged write is there, the refused one is not.
    outage.restore();
    server
        .wait_for_health(ServingStatus::Serving, Duration::from_secs(10))
        .await;
    create(&server, "after").await.unwrap();
    assert_eq!(prompt_names(&server).await, ["after", "before"]);
    server.stop().await;
    // The server restarted on the same database sees the same.
    let server = TestServer::start_in(dir.path(), |config| {
        config.database_url = schema.url().to_owned();
    })
    .await;
    assert_eq!(prompt_names(&server).await, ["after", "before"]);
    server.stop().await;
}
