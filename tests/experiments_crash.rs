//! Crash safety of metric recording: the real binary is killed with SIGKILL while
//! clients record metrics; after a restart every acknowledged record is counted, and
//! each exactly once.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use common::process::ServerProcess;
use llmops::pb;
use llmops::pb::experiment_service_client::ExperimentServiceClient;
use tonic::transport::Channel;

async fn connect(server: &ServerProcess) -> ExperimentServiceClient<Channel> {
    ExperimentServiceClient::new(server.channel().await)
}

/// The server, with every commit synced to disk before it is acknowledged.
fn spawn(data_dir: &std::path::Path) -> ServerProcess {
    ServerProcess::spawn(data_dir, &[("LLMOPS_DURABILITY", "full")])
}

fn record(index: u64) -> pb::RecordMetricRequest {
    pb::RecordMetricRequest {
        experiment_id: "crash".into(),
        variant_id: ["control", "treatment"][(index % 2) as usize].into(),
        metric: "quality".into(),
        value: (index % 10) as f64 / 10.0,
        record_id: format!("record-{index}"),
        ..Default::default()
    }
}

async fn count(client: &mut ExperimentServiceClient<Channel>) -> u64 {
    client
        .get_experiment_results(pb::GetExperimentResultsRequest {
            experiment_id: "crash".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .iter()
        .map(|s| s.n)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_record_survives_kill_9_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn(dir.path());
    common::process::start_quality_experiment(server.channel().await, "crash").await;
    let client = connect(&server).await;

    // Eight writers record until the server dies under them.
    let acknowledged = Arc::new(Mutex::new(HashSet::new()));
    let attempted = Arc::new(Mutex::new(0u64));
    let mut writers = Vec::new();
    for writer in 0..8u64 {
        let mut client = client.clone();
        let acknowledged = acknowledged.clone();
        let attempted = attempted.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let index = i * 8 + writer;
                {
                    let mut attempted = attempted.lock().unwrap();
                    *attempted = (*attempted).max(index + 1);
                }
                match client.record_metric(record(index)).await {
                    Ok(_) => {
                        acknowledged.lock().unwrap().insert(index);
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    // Kill once a good number of records is acknowledged, however slow the machine.
    common::process::wait_until(|| acknowledged.lock().unwrap().len() >= 200).await;
    server.kill();
    for writer in writers {
        writer.await.unwrap();
    }
    drop(server);
    let acknowledged = acknowledged.lock().unwrap().clone();
    let attempted = *attempted.lock().unwrap();
    assert!(
        acknowledged.len() > 100,
        "the load ran: {} acknowledged",
        acknowledged.len()
    );

    let server = spawn(dir.path());
    let mut client = connect(&server).await;
    let counted = count(&mut client).await;
    assert!(
        counted >= acknowledged.len() as u64,
        "{counted} counted but {} were acknowledged",
        acknowledged.len()
    );
    assert!(
        counted <= attempted,
        "{counted} counted, only {attempted} sent"
    );
    // Every acknowledged record is stored: a retry is a duplicate, and counts nothing.
    let retry = client
        .record_metrics(pb::RecordMetricsRequest {
            records: acknowledged.iter().map(|&i| record(i)).collect(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry.recorded, 0, "an acknowledged record was lost");
    assert_eq!(retry.duplicates, acknowledged.len() as u64);
    // Re-sending everything attempted leaves each record counted exactly once.
    let all: Vec<_> = (0..attempted).map(record).collect();
    for chunk in all.chunks(5000) {
        client
            .record_metrics(pb::RecordMetricsRequest {
                records: chunk.to_vec(),
            })
            .await
            .unwrap();
    }
    assert_eq!(count(&mut client).await, attempted);
}
