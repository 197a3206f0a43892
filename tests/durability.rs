//! Durability of the real binary: an acknowledged write has reached the disk, not only
//! the page cache, and survives a SIGKILL.
//!
//! A SIGKILL leaves the operating system's page cache intact, so crash tests alone
//! would pass with `synchronous=OFF`. The first test therefore watches the system calls:
//! with `strace` attached, every acknowledged write is followed by an fsync or fdatasync
//! before the next one starts. `.ci/run` installs strace; without it the test fails.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::process::ServerProcess;
use llmops::pb;
use llmops::pb::alert_service_client::AlertServiceClient;
use llmops::pb::evaluation_service_client::EvaluationServiceClient;
use llmops::pb::experiment_service_client::ExperimentServiceClient;
use llmops::pb::prompt_service_client::PromptServiceClient;
use tonic::transport::Channel;

/// `strace -f -p PID` counting the fsync and fdatasync calls of every thread of a
/// running process.
struct SyncCounter {
    strace: Child,
    syncs: Arc<AtomicU64>,
}

impl SyncCounter {
    async fn attach(pid: u32) -> Self {
        let mut strace = Command::new("strace")
            .args(["-f", "-e", "trace=fsync,fdatasync", "-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("strace runs (.ci/run installs it)");
        let syncs = Arc::new(AtomicU64::new(0));
        let attached = Arc::new(AtomicBool::new(false));
        let output = strace.stderr.take().unwrap();
        {
            let syncs = syncs.clone();
            let attached = attached.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(output).lines() {
                    let Ok(line) = line else { break };
                    if line.contains(" attached") {
                        attached.store(true, Ordering::SeqCst);
                    }
                    // An interrupted call is printed twice ("<unfinished ...>", then
                    // "<... fsync resumed>"); only the first has the parenthesis.
                    if line.contains("fsync(") || line.contains("fdatasync(") {
                        syncs.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
        // Owned from here: dropping the counter (also on the panic below) stops strace.
        let counter = Self { strace, syncs };
        for _ in 0..1500 {
            if attached.load(Ordering::SeqCst) {
                return counter;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("strace did not attach to the server within 30 s");
    }

    fn count(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }
}

impl Drop for SyncCounter {
    fn drop(&mut self) {
        let _ = self.strace.kill();
        let _ = self.strace.wait();
    }
}

/// Waits until `counter` has seen at least `at_least` syncs, or 10 s (strace reports
/// a call a moment after it returns).
async fn syncs_reach(counter: &SyncCounter, at_least: u64) -> u64 {
    for _ in 0..500 {
        if counter.count() >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    counter.count()
}

fn alert(index: usize) -> pb::Alert {
    pb::Alert {
        r#type: pb::AlertType::Threshold.into(),
        severity: pb::AlertSeverity::Warning.into(),
        message: format!("latency above the threshold on service {index}"),
        source: "durability".into(),
        source_id: format!("service-{index}"),
        metric: "latency_ms".into(),
        ..Default::default()
    }
}

/// Creates alerts until the server stops answering, keeping the ids of those
/// acknowledged in `created`.
fn spawn_alert_writer(
    channel: Channel,
    created: Arc<Mutex<BTreeSet<String>>>,
) -> tokio::task::JoinHandle<()> {
    let mut client = AlertServiceClient::new(channel);
    tokio::spawn(async move {
        for index in 0.. {
            let Ok(answer) = client
                .create_alert(pb::CreateAlertRequest {
                    alert: Some(alert(index)),
                })
                .await
            else {
                return;
            };
            let id = answer.into_inner().alert.unwrap().id;
            created.lock().unwrap().insert(id);
        }
    })
}

fn prompt_version(index: usize) -> pb::CreatePromptVersionRequest {
    pb::CreatePromptVersionRequest {
        prompt_version: Some(pb::PromptVersion {
            name: "durable".into(),
            version: format!("1.{index}.0"),
            template: format!("Version {index} says {{{{ greeting }}}}"),
            ..Default::default()
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_is_synced_to_disk_before_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    // The default durability: what a user gets without configuring anything.
    let server = ServerProcess::spawn(dir.path(), &[]);
    let channel = server.channel().await;
    common::process::start_quality_experiment(channel.clone(), "durable").await;
    let mut experiments = ExperimentServiceClient::new(channel.clone());
    let mut prompts = PromptServiceClient::new(channel.clone());
    let mut alerts = AlertServiceClient::new(channel.clone());
    let counter = SyncCounter::attach(server.pid()).await;

    // One write at a time, each acknowledged before the next is sent, so each is its
    // own commit; each kind goes through a different path to the store.
    let mut writes = 0u64;
    for index in 0..10 {
        let before = counter.count();
        experiments
            .record_metric(pb::RecordMetricRequest {
                experiment_id: "durable".into(),
                variant_id: "control".into(),
                metric: "quality".into(),
                value: 1.0,
                record_id: format!("record-{index}"),
                ..Default::default()
            })
            .await
            .unwrap();
        writes += 1;
        let after = syncs_reach(&counter, before + 1).await;
        assert!(
            after > before,
            "RecordMetric {index} was acknowledged without an fsync"
        );

        let before = counter.count();
        prompts
            .create_prompt_version(prompt_version(index))
            .await
            .unwrap();
        writes += 1;
        let after = syncs_reach(&counter, before + 1).await;
        assert!(
            after > before,
            "CreatePromptVersion {index} was acknowledged without an fsync"
        );

        let before = counter.count();
        alerts
            .create_alert(pb::CreateAlertRequest {
                alert: Some(alert(index)),
            })
            .await
            .unwrap();
        writes += 1;
        let after = syncs_reach(&counter, before + 1).await;
        assert!(
            after > before,
            "CreateAlert {index} was acknowledged without an fsync"
        );
    }
    assert_eq!(writes, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_prompts_alerts_and_imports_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::spawn(dir.path(), &[]);
    let channel = server.channel().await;
    let mut evaluation = EvaluationServiceClient::new(channel.clone());
    let dataset = evaluation
        .create_dataset(pb::CreateDatasetRequest {
            dataset: Some(pb::Dataset {
                name: "durable".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .dataset
        .unwrap();

    // Three writers, one per kind, write until the server dies under them; each keeps
    // what was acknowledged.
    let versions = Arc::new(Mutex::new(BTreeSet::new()));
    let alerts = Arc::new(Mutex::new(BTreeSet::new()));
    let imports = Arc::new(Mutex::new(Vec::new()));
    let prompt_writer = {
        let mut prompts = PromptServiceClient::new(channel.clone());
        let versions = versions.clone();
        tokio::spawn(async move {
            for index in 0.. {
                match prompts.create_prompt_version(prompt_version(index)).await {
                    Ok(_) => versions.lock().unwrap().insert(format!("1.{index}.0")),
                    Err(_) => return,
                };
            }
        })
    };
    let alert_writer = spawn_alert_writer(channel.clone(), alerts.clone());
    let import_writer = {
        let mut evaluation = evaluation.clone();
        let imports = imports.clone();
        let dataset_id = dataset.id.clone();
        tokio::spawn(async move {
            for index in 0.. {
                let batch = pb::ImportSamplesRequest {
                    dataset_id: dataset_id.clone(),
                    samples: vec![pb::Sample {
                        id: format!("sample-{index}"),
                        input: Some(common::string_value(&format!("question {index}"))),
                        expected_output: format!("answer {index}"),
                        ..Default::default()
                    }],
                };
                match evaluation.import_samples(tokio_stream::iter([batch])).await {
                    Ok(answer) => imports.lock().unwrap().push((
                        format!("sample-{index}"),
                        answer.into_inner().dataset.unwrap().version,
                    )),
                    Err(_) => return,
                };
            }
        })
    };
    // Until each kind has had a fair number of writes acknowledged.
    common::process::wait_until(|| {
        versions.lock().unwrap().len() >= 20
            && alerts.lock().unwrap().len() >= 20
            && imports.lock().unwrap().len() >= 10
    })
    .await;
    server.kill();
    for writer in [prompt_writer, alert_writer, import_writer] {
        writer.await.unwrap();
    }
    drop(server);
    let versions = versions.lock().unwrap().clone();
    let alerts = alerts.lock().unwrap().clone();
    let imports = imports.lock().unwrap().clone();
    assert!(
        versions.len() >= 20 && alerts.len() >= 20 && imports.len() >= 10,
        "the load ran: {} versions, {} alerts, {} imports acknowledged",
        versions.len(),
        alerts.len(),
        imports.len()
    );

    let server = ServerProcess::spawn(dir.path(), &[]);
    let channel = server.channel().await;
    let mut prompts = PromptServiceClient::new(channel.clone());
    for version in &versions {
        prompts
            .get_prompt_version(pb::GetPromptVersionRequest {
                name: "durable".into(),
                version: version.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|status| panic!("acknowledged version {version} is gone: {status:?}"));
    }
    let mut client = AlertServiceClient::new(channel.clone());
    for id in &alerts {
        client
            .get_alert(pb::GetAlertRequest {
                alert_id: id.clone(),
            })
            .await
            .unwrap_or_else(|status| panic!("acknowledged alert {id} is gone: {status:?}"));
    }
    // Each import made a version holding every sample imported so far; the dataset is
    // at least at the last acknowledged one, with all of their samples.
    let (_, last_version) = imports.last().unwrap().clone();
    let mut evaluation = EvaluationServiceClient::new(channel);
    let stored = evaluation
        .get_dataset(pb::GetDatasetRequest {
            dataset_id: dataset.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .dataset
        .unwrap();
    assert!(
        stored.version >= last_version,
        "the dataset is at version {} but version {last_version} was acknowledged",
        stored.version
    );
    let mut ids = BTreeSet::new();
    let mut page_token = String::new();
    loop {
        let page = evaluation
            .list_samples(pb::ListSamplesRequest {
                dataset_id: dataset.id.clone(),
                page_size: 1000,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        ids.extend(page.samples.into_iter().map(|s| s.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    for (id, _) in &imports {
        assert!(ids.contains(id), "acknowledged sample {id} is gone");
    }
}

/// A webhook receiver that refuses every delivery (503) until `open` is set, then
/// accepts them and keeps the alert ids they carry.
struct Receiver {
    url: String,
    open: Arc<AtomicBool>,
    delivered: Arc<Mutex<BTreeSet<String>>>,
}

async fn receiver() -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let open = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(Mutex::new(BTreeSet::new()));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let (open, delivered) = (open.clone(), delivered.clone());
            move |body: String| async move {
                if !open.load(Ordering::SeqCst) {
                    return http::StatusCode::SERVICE_UNAVAILABLE;
                }
                let body: serde_json::Value = serde_json::from_str(&body).unwrap();
                let id = body["llmops"]["alert_id"].as_str().unwrap().to_owned();
                delivered.lock().unwrap().insert(id);
                http::StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver {
        url,
        open,
        delivered,
    }
}

/// The webhook outbox is written with the alert: alerts acknowledged to their clients
/// before a SIGKILL, whose deliveries the receiver had refused until then, are all
/// delivered after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_deliveries_of_acknowledged_alerts_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = receiver().await;
    let config = dir.path().join("llmops.toml");
    std::fs::write(
        &config,
        format!(
            "[[webhooks]]\nname = \"ops\"\nurl = \"{}\"\ntimeout = \"2s\"\nmax_attempts = 1000\n",
            receiver.url
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let data = dir.path().join("data");
    let env = [("LLMOPS_CONFIG", config.as_str())];
    let mut server = ServerProcess::spawn(&data, &env);
    let channel = server.channel().await;

    let created = Arc::new(Mutex::new(BTreeSet::new()));
    let writer = spawn_alert_writer(channel, created.clone());
    common::process::wait_until(|| created.lock().unwrap().len() >= 30).await;
    server.kill();
    writer.await.unwrap();
    drop(server);
    let created = created.lock().unwrap().clone();
    assert!(created.len() >= 30, "{} alerts acknowledged", created.len());
    assert!(
        receiver.delivered.lock().unwrap().is_empty(),
        "the receiver accepted nothing before the kill"
    );

    receiver.open.store(true, Ordering::SeqCst);
    let _server = ServerProcess::spawn(&data, &env);
    // Retries back off (with jitter) from the refusals before the kill: a generous
    // deadline, checked by polling what arrived.
    for _ in 0..1200 {
        if created.is_subset(&receiver.delivered.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered = receiver.delivered.lock().unwrap().clone();
    let missing: Vec<_> = created.difference(&delivered).collect();
    panic!(
        "{} of {} acknowledged alerts were never delivered: {missing:?}",
        missing.len(),
        created.len()
    );
}
