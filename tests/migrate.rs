//! `llmops migrate`: a deployment moved from the embedded SQLite to PostgreSQL and back
//! keeps everything a client can see, and a subscriber resumes across the move.

mod common;

use std::process::Command;
use std::time::Duration;

use common::backend::{Backend, TestDatabase};
use common::eval::{create_run, dataset, prompt, run, start, watch};
use common::TestServer;
use llmops::pb;
use tokio_stream::StreamExt;

/// Everything a client reads back that the move must keep.
#[derive(Debug, PartialEq)]
struct Visible {
    prompts: Vec<pb::PromptSummary>,
    alerts: Vec<pb::Alert>,
    dataset: pb::Dataset,
    results: pb::GetExperimentResultsResponse,
    run: pb::Run,
}

async fn visible(server: &TestServer, dataset_id: &str, run_id: &str) -> Visible {
    let prompts = server
        .prompts()
        .list_prompts(pb::ListPromptsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .prompts;
    let alerts = server
        .alerts()
        .list_alerts(pb::ListAlertsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .alerts;
    let dataset = server
        .evaluation()
        .get_dataset(pb::GetDatasetRequest {
            dataset_id: dataset_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .dataset
        .unwrap();
    let results = server
        .experiments()
        .get_experiment_results(pb::GetExperimentResultsRequest {
            experiment_id: "moved".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let run = server
        .evaluation()
        .get_run(pb::GetRunRequest {
            run_id: run_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    Visible {
        prompts,
        alerts,
        dataset,
        results,
        run,
    }
}

fn alert(source_id: &str) -> pb::CreateAlertRequest {
    pb::CreateAlertRequest {
        alert: Some(pb::Alert {
            r#type: pb::AlertType::Threshold.into(),
            severity: pb::AlertSeverity::Warning.into(),
            message: format!("latency high on {source_id}"),
            source: "ops".into(),
            source_id: source_id.into(),
            metric: "latency_p99".into(),
            ..Default::default()
        }),
    }
}

/// The highest alert event sequence so far: what a subscriber that replayed from the
/// start has seen when the first heartbeat (nothing more to send) arrives.
async fn alert_head(server: &TestServer) -> u64 {
    let mut stream = server
        .alerts()
        .subscribe(pb::SubscribeRequest {
            after_sequence: Some(0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut head = 0;
    while let Some(event) = stream.next().await {
        let event = event.unwrap();
        if event.kind == pb::AlertEventKind::Heartbeat as i32 {
            return head;
        }
        head = event.sequence;
    }
    head
}

/// Runs `llmops migrate`; returns (success, stdout, stderr).
fn migrate(from: &str, to: &str) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_llmops"))
        .args(["migrate", "--from", from, "--to", to])
        .output()
        .expect("the llmops binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn sqlite_url(database: &TestDatabase) -> String {
    format!("sqlite://{}/llmops.db", database.data_dir().display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_moves_to_postgres_and_back_with_everything_it_had() {
    let embedded = TestDatabase::new(Backend::Sqlite).await;
    let quick_heartbeats = |config: &mut llmops::config::Config| {
        config.alerts.heartbeat_interval = Duration::from_millis(200);
    };
    let server = TestServer::start_on(&embedded, quick_heartbeats).await;
    prompt(&server, "greet", "1.0.0", "Hello {{input}}").await;
    prompt(&server, "greet", "1.1.0", "Hi {{input}}").await;
    server
        .prompts()
        .set_prompt_label(pb::SetPromptLabelRequest {
            name: "greet".into(),
            label: "production".into(),
            version: "1.1.0".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let dataset_id = dataset(
        &server,
        "moved",
        vec![("a", "one", "Hi one"), ("b", "two", "Hi two")],
    )
    .await;
    let created = create_run(&server, run(&dataset_id, "greet", "1.1.0", "echo"))
        .await
        .unwrap();
    start(&server, &created.id).await.unwrap();
    watch(&server, &created.id).await;
    common::process::start_quality_experiment(server.channel.clone(), "moved").await;
    for user in 0..20 {
        let variant = if user % 2 == 0 {
            "control"
        } else {
            "treatment"
        };
        server
            .experiments()
            .record_metric(pb::RecordMetricRequest {
                experiment_id: "moved".into(),
                variant_id: variant.into(),
                metric: "quality".into(),
                value: f64::from(user),
                user_id: format!("u{user}"),
                record_id: format!("r{user}"),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    for i in 0..3 {
        server
            .alerts()
            .create_alert(alert(&format!("s{i}")))
            .await
            .unwrap();
    }
    let before = visible(&server, &dataset_id, &created.id).await;
    let head = alert_head(&server).await;
    assert!(head >= 3, "alert events were written ({head})");
    server.stop().await;

    let postgres = TestDatabase::new(Backend::Postgres).await;
    let (ok, stdout, stderr) = migrate(&sqlite_url(&embedded), &postgres.url());
    assert!(ok, "migrate failed: {stderr}");
    assert!(
        stdout.contains("verified") && stdout.contains("1 dataset hashes"),
        "{stdout}"
    );
    assert!(
        stderr.contains("prompt_versions: 2/2 rows"),
        "progress is shown: {stderr}"
    );

    // A second copy into the now populated target is refused and changes nothing.
    let (ok, _, stderr) = migrate(&sqlite_url(&embedded), &postgres.url());
    assert!(!ok);
    assert!(stderr.contains("already holds data"), "{stderr}");

    // A mistyped source is refused, not copied as an empty deployment.
    let (ok, _, stderr) = migrate("sqlite:///no/such/llmops.db", &postgres.url());
    assert!(!ok);
    assert!(stderr.contains("does not exist"), "{stderr}");
    // An existing but empty database is refused too.
    let empty = TestDatabase::new(Backend::Postgres).await;
    let (ok, _, stderr) = migrate(
        &empty.url(),
        &sqlite_url(&TestDatabase::new(Backend::Sqlite).await),
    );
    assert!(!ok);
    assert!(stderr.contains("holds no llmops data"), "{stderr}");

    let server = TestServer::start_on(&postgres, |_| {}).await;
    assert_eq!(visible(&server, &dataset_id, &created.id).await, before);
    // A subscriber that resumes with the old server's sequence continues without a gap.
    let mut resumed = server
        .alerts()
        .subscribe(pb::SubscribeRequest {
            after_sequence: Some(head),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    server
        .alerts()
        .create_alert(alert("after-the-move"))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = resumed.next().await.unwrap().unwrap();
            if event.kind != pb::AlertEventKind::Heartbeat as i32 {
                return event;
            }
        }
    })
    .await
    .expect("the new alert's event arrives");
    assert_eq!(next.sequence, head + 1);
    assert_eq!(next.alert.unwrap().source_id, "after-the-move");
    // Keys the database generates continue after the copied ones.
    server
        .evaluation()
        .add_samples(pb::AddSamplesRequest {
            dataset_id: dataset_id.clone(),
            samples: vec![pb::Sample {
                id: "c".into(),
                input: Some(common::string_value("three")),
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    server
        .experiments()
        .record_metric(pb::RecordMetricRequest {
            experiment_id: "moved".into(),
            variant_id: "control".into(),
            metric: "quality".into(),
            value: 1.0,
            user_id: "u-new".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let moved = visible(&server, &dataset_id, &created.id).await;
    assert_eq!(moved.dataset.sample_count, before.dataset.sample_count + 1);
    server.stop().await;

    // And back, as a backup would be taken.
    let backup = TestDatabase::new(Backend::Sqlite).await;
    let (ok, _, stderr) = migrate(&postgres.url(), &sqlite_url(&backup));
    assert!(ok, "migrate back failed: {stderr}");
    let server = TestServer::start_on(&backup, |_| {}).await;
    assert_eq!(visible(&server, &dataset_id, &created.id).await, moved);
    server.stop().await;
}
