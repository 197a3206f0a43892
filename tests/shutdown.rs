//! Shutdown of the real binary by SIGTERM, as an orchestrator stops a pod: health says
//! NOT_SERVING from the first moment, calls in flight finish, open streams end, a call
//! that outlasts `shutdown_grace` is cut off, every acknowledged write is there after a
//! restart, and the process exits 0.
//!
//! Deadlines here are generous on purpose: the machines running the suite have two
//! shared cores. Each deadline is several times what the behaviour needs, and each
//! test also checks an ordering (NOT_SERVING before the exit, the process still
//! running while a call is in flight) that a deadline alone could not.

mod common;

use std::collections::HashSet;
use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::process::ServerProcess;
use llmops::pb;
use llmops::pb::alert_service_client::AlertServiceClient;
use llmops::pb::evaluation_service_client::EvaluationServiceClient;
use llmops::pb::experiment_service_client::ExperimentServiceClient;
use llmops::pb::prompt_service_client::PromptServiceClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Far more than any shutdown here needs; a shutdown that hangs fails at this point.
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

/// A Watch of the overall health status, after its first answer (SERVING).
async fn watch_health(channel: Channel) -> tonic::Streaming<tonic_health::pb::HealthCheckResponse> {
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    watch
}

/// Whether a failed call is one the server never answered: UNAVAILABLE (refused by the
/// draining server), or an error tonic's client makes itself when the connection goes
/// away under a request it has not had an answer to: CANCELLED for a request it still
/// held, INTERNAL "h2 protocol error" for a stream the server's GOAWAY refused (HTTP/2
/// guarantees such a stream was not processed; other gRPC clients report both as
/// UNAVAILABLE). Any status the server itself sent, other than UNAVAILABLE, is not.
fn refused_before_it_started(status: &tonic::Status) -> bool {
    let from_the_client_transport = status
        .source()
        .and_then(|source| source.downcast_ref::<tonic::transport::Error>())
        .is_some();
    match status.code() {
        Code::Unavailable => true,
        Code::Cancelled | Code::Internal => from_the_client_transport,
        _ => false,
    }
}

fn record(index: u64) -> pb::RecordMetricRequest {
    pb::RecordMetricRequest {
        experiment_id: "drain".into(),
        variant_id: ["control", "treatment"][(index % 2) as usize].into(),
        metric: "quality".into(),
        value: (index % 10) as f64 / 10.0,
        record_id: format!("record-{index}"),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_calls_and_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::spawn(dir.path(), &[]);
    let channel = server.channel().await;
    common::process::start_quality_experiment(channel.clone(), "drain").await;
    let client = ExperimentServiceClient::new(channel.clone());
    let mut health = watch_health(channel.clone()).await;

    // Eight writers record until the server stops taking calls. Each records what it
    // was told and how its last call ended.
    let acknowledged = Arc::new(Mutex::new(HashSet::new()));
    let mut writers = Vec::new();
    for writer in 0..8u64 {
        let mut client = client.clone();
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let index = i * 8 + writer;
                match client.record_metric(record(index)).await {
                    Ok(_) => {
                        acknowledged.lock().unwrap().insert(index);
                    }
                    Err(status) => return status,
                }
            }
            unreachable!("the loop ends with the server")
        }));
    }
    while acknowledged.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.terminate();

    // NOT_SERVING is the first thing health says after the signal, and it says it
    // before the process is gone (a load balancer must see it to stop sending).
    let next = tokio::time::timeout(EXIT_DEADLINE, health.next())
        .await
        .expect("health said nothing after SIGTERM");
    let next = next.expect("health ended without NOT_SERVING").unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);

    // A call either completed or was refused as retryable: none was cut off mid-way
    // with an answer a client would not retry.
    for writer in writers {
        let status = writer.await.unwrap();
        assert!(
            refused_before_it_started(&status),
            "a call during the drain ended with {status:?}"
        );
    }
    let exit = server
        .wait_for_exit(EXIT_DEADLINE)
        .await
        .expect("the server did not exit after SIGTERM");
    assert!(exit.success(), "exit status {exit:?}");
    let acknowledged = acknowledged.lock().unwrap().clone();

    // Every acknowledged record is on disk: re-sending them stores nothing new.
    let server = ServerProcess::spawn(dir.path(), &[]);
    let mut client = ExperimentServiceClient::new(server.channel().await);
    let retry = client
        .record_metrics(pb::RecordMetricsRequest {
            records: acknowledged.iter().map(|&i| record(i)).collect(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry.recorded, 0, "an acknowledged record was lost");
    assert_eq!(retry.duplicates, acknowledged.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_outlasts_the_grace_is_cut_off_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let grace = Duration::from_secs(3);
    let mut server = ServerProcess::spawn(dir.path(), &[("LLMOPS_SHUTDOWN_GRACE", "3s")]);
    let channel = server.channel().await;
    let mut evaluation = EvaluationServiceClient::new(channel.clone());
    let dataset = evaluation
        .create_dataset(pb::CreateDatasetRequest {
            dataset: Some(pb::Dataset {
                name: "held".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .dataset
        .unwrap();
    let mut health = watch_health(channel.clone()).await;

    // An import whose client sends one batch and then holds the stream open: a call in
    // flight that never finishes on its own.
    let (batches, stream) = tokio::sync::mpsc::channel(1);
    batches
        .send(pb::ImportSamplesRequest {
            dataset_id: dataset.id.clone(),
            samples: vec![pb::Sample {
                id: "s1".into(),
                input: Some(common::string_value("question")),
                expected_output: "answer".into(),
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    let import = tokio::spawn({
        let mut evaluation = evaluation.clone();
        async move {
            evaluation
                .import_samples(tokio_stream::wrappers::ReceiverStream::new(stream))
                .await
        }
    });
    // Let the batch reach the server (loopback: milliseconds) before the signal.
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.terminate();
    let started = std::time::Instant::now();

    let next = tokio::time::timeout(EXIT_DEADLINE, health.next())
        .await
        .expect("health said nothing after SIGTERM")
        .expect("health ended without NOT_SERVING")
        .unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    // The drain waits for the call in flight (how long is checked against the grace
    // below).
    assert!(
        server.is_running(),
        "the server exited without waiting for the call in flight"
    );
    let exit = server
        .wait_for_exit(EXIT_DEADLINE)
        .await
        .expect("the server waited past its grace for a call that never ends");
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        started.elapsed() >= grace,
        "the server exited {:?} after SIGTERM, before its grace of {grace:?}",
        started.elapsed()
    );
    let answer = import.await.unwrap();
    let status = answer.expect_err("a cut-off import cannot have succeeded");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    drop(batches);

    // The cut-off import left no sample behind.
    let server = ServerProcess::spawn(dir.path(), &[]);
    let mut evaluation = EvaluationServiceClient::new(server.channel().await);
    let samples = evaluation
        .list_samples(pb::ListSamplesRequest {
            dataset_id: dataset.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .samples;
    assert!(samples.is_empty(), "{samples:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_end_and_do_not_hold_the_drain() {
    let dir = tempfile::tempdir().unwrap();
    // A grace far longer than the deadline below: if a stream held the drain, the
    // process would outlive the deadline.
    let mut server = ServerProcess::spawn(dir.path(), &[("LLMOPS_SHUTDOWN_GRACE", "120s")]);
    let channel = server.channel().await;
    let mut prompts = PromptServiceClient::new(channel.clone())
        .watch_prompts(pb::WatchPromptsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        prompts.next().await.unwrap().unwrap().kind,
        pb::PromptEventKind::SnapshotEnd as i32
    );
    let mut alerts = AlertServiceClient::new(channel.clone())
        .subscribe(pb::SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut health = watch_health(channel).await;
    server.terminate();

    let deadline = Duration::from_secs(20);
    for (name, ended) in [
        (
            "WatchPrompts",
            tokio::time::timeout(deadline, async {
                while let Some(Ok(_)) = prompts.next().await {}
            })
            .await,
        ),
        (
            "Subscribe",
            tokio::time::timeout(deadline, async {
                while let Some(Ok(_)) = alerts.next().await {}
            })
            .await,
        ),
        (
            "Health.Watch",
            tokio::time::timeout(deadline, async {
                while let Some(Ok(_)) = health.next().await {}
            })
            .await,
        ),
    ] {
        assert!(ended.is_ok(), "{name} did not end after SIGTERM");
    }
    let exit = server
        .wait_for_exit(deadline)
        .await
        .expect("open streams held the drain");
    assert!(exit.success(), "exit status {exit:?}");
}
