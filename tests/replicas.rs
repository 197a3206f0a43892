//! Several `llmops serve` processes on one PostgreSQL database, as replicas behind a
//! load balancer: a write on any replica is read and streamed on every other, in one
//! order, and the database's invariants hold across them. Real binaries, real kills.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::backend::Backend;
use common::cluster::Cluster;
use llmops::bench::mock_provider::MockProvider;
use llmops::pb;
use llmops::pb::alert_service_client::AlertServiceClient;
use llmops::pb::cluster_service_client::ClusterServiceClient;
use llmops::pb::evaluation_service_client::EvaluationServiceClient;
use llmops::pb::prompt_service_client::PromptServiceClient;
use llmops::pb::provider_service_client::ProviderServiceClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

/// How long a change may take to reach another replica before a test gives up. The
/// contract is 1 s at p99 under load; a shared test machine gets slack, and the figure
/// itself is measured by the load tool.
const PROPAGATION_LIMIT: Duration = Duration::from_secs(10);

/// The counter of samples a replica evaluated and stored.
const SAMPLES_EVALUATED: &str = "llmops_run_samples_evaluated_total";

async fn prompts(cluster: &Cluster, replica: usize) -> PromptServiceClient<Channel> {
    PromptServiceClient::new(cluster.channel(replica).await)
}

async fn alerts(cluster: &Cluster, replica: usize) -> AlertServiceClient<Channel> {
    AlertServiceClient::new(cluster.channel(replica).await)
}

async fn create_version(
    client: &mut PromptServiceClient<Channel>,
    name: &str,
    version: &str,
) -> Result<pb::PromptVersion, tonic::Status> {
    client
        .create_prompt_version(pb::CreatePromptVersionRequest {
            prompt_version: Some(pb::PromptVersion {
                name: name.into(),
                version: version.into(),
                template: format!("version {version}"),
                ..Default::default()
            }),
        })
        .await
        .map(|r| r.into_inner().prompt_version.unwrap())
}

/// The text replica `client` renders for `name`'s active version, if it knows the prompt.
async fn rendered(client: &mut PromptServiceClient<Channel>, name: &str) -> Option<String> {
    client
        .render_prompt(pb::RenderPromptRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .ok()
        .map(|r| r.into_inner().text)
}

/// Waits until replica `client` renders `expected` for `name`; returns how long it took.
async fn wait_for_render(
    cluster: &Cluster,
    client: &mut PromptServiceClient<Channel>,
    name: &str,
    expected: &str,
) -> Duration {
    let start = Instant::now();
    loop {
        if rendered(client, name).await.as_deref() == Some(expected) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < PROPAGATION_LIMIT,
            "the change never reached the replica; logs:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_on_one_replica_is_rendered_by_the_others() {
    // A poll interval longer than the test: only the database's announcements can
    // bring the change to the other replicas in time.
    let cluster = Cluster::start(3, &[("LLMOPS_FEED_POLL_INTERVAL", "1h")]).await;
    let mut a = prompts(&cluster, 0).await;
    create_version(&mut a, "greeting", "1.0.0").await.unwrap();
    for replica in [1, 2] {
        let mut client = prompts(&cluster, replica).await;
        wait_for_render(&cluster, &mut client, "greeting", "version 1.0.0").await;
    }
    create_version(&mut a, "greeting", "1.1.0").await.unwrap();
    a.activate_prompt_version(pb::ActivatePromptVersionRequest {
        name: "greeting".into(),
        version: "1.1.0".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    // At once on the replica that acknowledged it.
    assert_eq!(
        rendered(&mut a, "greeting").await.as_deref(),
        Some("version 1.1.0")
    );
    for replica in [1, 2] {
        let mut client = prompts(&cluster, replica).await;
        let took = wait_for_render(&cluster, &mut client, "greeting", "version 1.1.0").await;
        eprintln!("replica {replica} rendered the activation after {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_announcements_the_poll_still_brings_every_change() {
    // Announcements reach only listeners; a replica that missed them (its listener
    // reconnecting) catches up at its next poll. Here the poll is the only path that
    // is guaranteed, so it must suffice: delete the prompt on A, and B stops serving it.
    let cluster = Cluster::start(2, &[("LLMOPS_FEED_POLL_INTERVAL", "100ms")]).await;
    let mut a = prompts(&cluster, 0).await;
    let mut b = prompts(&cluster, 1).await;
    create_version(&mut a, "doomed", "1.0.0").await.unwrap();
    wait_for_render(&cluster, &mut b, "doomed", "version 1.0.0").await;
    a.delete_prompt(pb::DeletePromptRequest {
        name: "doomed".into(),
    })
    .await
    .unwrap();
    let start = Instant::now();
    loop {
        let answer = b
            .render_prompt(pb::RenderPromptRequest {
                name: "doomed".into(),
                ..Default::default()
            })
            .await;
        match answer {
            Err(status) if status.code() == Code::NotFound => break,
            _ => assert!(
                start.elapsed() < PROPAGATION_LIMIT,
                "B still serves a deleted prompt"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_on_different_replicas_keep_one_winner() {
    let cluster = Cluster::start(3, &[]).await;
    let mut clients = Vec::new();
    for replica in 0..3 {
        clients.push(prompts(&cluster, replica).await);
    }
    // The same new version created on three replicas at once: exactly one wins.
    let racing = clients.iter().cloned().map(|mut client| {
        tokio::spawn(async move { create_version(&mut client, "raced", "1.0.0").await })
    });
    let answers: Vec<_> = futures_util::future::join_all(racing)
        .await
        .into_iter()
        .map(|joined| joined.unwrap())
        .collect();
    let won = answers.iter().filter(|a| a.is_ok()).count();
    assert_eq!(won, 1, "{answers:?}");
    for answer in &answers {
        if let Err(status) = answer {
            assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
        }
    }

    // Three versions, then racing activations of different ones on different replicas:
    // every replica ends up rendering the same single active version.
    for version in ["1.1.0", "1.2.0"] {
        create_version(&mut clients[0], "raced", version)
            .await
            .unwrap();
    }
    // Every replica knows all three versions before they are activated there.
    for client in &mut clients {
        let start = Instant::now();
        loop {
            let listed = client
                .list_prompt_versions(pb::ListPromptVersionsRequest {
                    name: "raced".into(),
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().prompt_versions.len())
                .unwrap_or(0);
            if listed == 3 {
                break;
            }
            assert!(
                start.elapsed() < PROPAGATION_LIMIT,
                "versions never arrived"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let activations = ["1.0.0", "1.1.0", "1.2.0"].into_iter().zip(clients.clone());
    let racing = activations.map(|(version, mut client)| {
        tokio::spawn(async move {
            client
                .activate_prompt_version(pb::ActivatePromptVersionRequest {
                    name: "raced".into(),
                    version: version.into(),
                    ..Default::default()
                })
                .await
        })
    });
    for joined in futures_util::future::join_all(racing).await {
        joined.unwrap().unwrap();
    }
    let start = Instant::now();
    loop {
        let mut seen = Vec::new();
        for client in &mut clients {
            let listed = client
                .list_prompt_versions(pb::ListPromptVersionsRequest {
                    name: "raced".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .prompt_versions;
            let active: Vec<_> = listed
                .iter()
                .filter(|v| v.is_active)
                .map(|v| v.version.clone())
                .collect();
            assert_eq!(active.len(), 1, "exactly one active version: {active:?}");
            seen.push(active[0].clone());
        }
        if seen.iter().all(|v| *v == seen[0]) {
            break;
        }
        assert!(
            start.elapsed() < PROPAGATION_LIMIT,
            "replicas disagree on the active version: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn alert(source_id: String) -> pb::Alert {
    pb::Alert {
        r#type: pb::AlertType::Threshold.into(),
        severity: pb::AlertSeverity::Warning.into(),
        message: "latency above threshold".into(),
        source: "replica-test".into(),
        source_id,
        metric: "latency_p99".into(),
        ..Default::default()
    }
}

/// The next `count` alert events (heartbeats skipped) as (sequence, alert id).
async fn next_events(
    stream: &mut tonic::Streaming<pb::AlertEvent>,
    count: usize,
) -> Vec<(u64, String)> {
    let mut events = Vec::new();
    while events.len() < count {
        let event = tokio::time::timeout(PROPAGATION_LIMIT, stream.next())
            .await
            .expect("an event arrives in time")
            .expect("the stream stays open")
            .expect("no stream error");
        if let Some(alert) = event.alert {
            events.push((event.sequence, alert.id));
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_on_every_replica_see_every_alert_once_in_one_order() {
    let cluster = Cluster::start(3, &[]).await;
    let mut streams = Vec::new();
    for replica in [1, 2] {
        let stream = alerts(&cluster, replica)
            .await
            .subscribe(pb::SubscribeRequest {
                after_sequence: Some(0),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        streams.push(stream);
    }
    const PER_REPLICA: usize = 12;
    let mut writers = Vec::new();
    for replica in 0..3 {
        let client = alerts(&cluster, replica).await;
        writers.push(tokio::spawn(async move {
            let mut created = Vec::new();
            for n in 0..PER_REPLICA {
                let answer = client
                    .clone()
                    .create_alert(pb::CreateAlertRequest {
                        alert: Some(alert(format!("replica-{replica}-{n}"))),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                created.push(answer.alert.unwrap().id);
            }
            created
        }));
    }
    let mut created: Vec<String> = Vec::new();
    for writer in futures_util::future::join_all(writers).await {
        created.extend(writer.unwrap());
    }
    let total = 3 * PER_REPLICA;
    let on_b = next_events(&mut streams[0], total).await;
    let on_c = next_events(&mut streams[1], total).await;
    assert_eq!(on_b, on_c, "both replicas deliver one order");
    let sequences: Vec<u64> = on_b.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        sequences,
        (1..=total as u64).collect::<Vec<_>>(),
        "no gap, no repeat"
    );
    let mut delivered: Vec<String> = on_b.iter().map(|(_, id)| id.clone()).collect();
    delivered.sort();
    created.sort();
    assert_eq!(
        delivered, created,
        "every alert created on any replica, once"
    );

    // A resume point from one replica is valid on another: resume on C after the
    // tenth event B delivered.
    let (cursor, _) = on_b[9];
    let mut resumed = alerts(&cluster, 2)
        .await
        .subscribe(pb::SubscribeRequest {
            after_sequence: Some(cursor),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let rest = next_events(&mut resumed, total - 10).await;
    assert_eq!(rest, on_b[10..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_raises_of_one_problem_on_three_replicas_give_one_alert() {
    let cluster = Cluster::start(3, &[]).await;
    let mut clients = Vec::new();
    for replica in 0..3 {
        clients.push(alerts(&cluster, replica).await);
    }
    let racing = (0..48).map(|n| {
        let mut client = clients[n % 3].clone();
        tokio::spawn(async move {
            client
                .create_alert(pb::CreateAlertRequest {
                    alert: Some(alert("the-same-problem".into())),
                })
                .await
                .unwrap()
                .into_inner()
        })
    });
    let answers: Vec<pb::CreateAlertResponse> = futures_util::future::join_all(racing)
        .await
        .into_iter()
        .map(|joined| joined.unwrap())
        .collect();
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|a| a.alert.as_ref().unwrap().id.clone())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(answers.iter().filter(|a| !a.deduplicated).count(), 1);
    let id = ids.into_iter().next().unwrap();
    for client in &mut clients {
        let stored = client
            .get_alert(pb::GetAlertRequest {
                alert_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .alert
            .unwrap();
        assert_eq!(stored.occurrences, 48);
    }
}

async fn cluster_status(cluster: &Cluster, replica: usize) -> pb::ListReplicasResponse {
    ClusterServiceClient::new(cluster.channel(replica).await)
        .list_replicas(pb::ListReplicasRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// The index of the replica holding `role`'s unexpired lease, as replica `asking` sees it.
async fn holder_of(cluster: &Cluster, asking: usize, role: &str) -> Option<usize> {
    let status = cluster_status(cluster, asking).await;
    let lease = status.leases.iter().find(|l| l.role == role && l.held)?;
    let replica = status.replicas.iter().find(|r| r.id == lease.replica_id)?;
    cluster.index_of(&replica.address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_background_role_has_one_holder_and_a_dead_ones_roles_move_within_the_lease() {
    let lease = Duration::from_secs(2);
    let mut cluster = Cluster::start(3, &[("LLMOPS_LEADER_LEASE", "2s")]).await;
    let status = cluster_status(&cluster, 0).await;
    assert_eq!(status.replicas.len(), 3);
    assert!(status
        .replicas
        .iter()
        .all(|r| r.state == pb::ReplicaState::Alive as i32));
    assert_eq!(status.replicas.iter().filter(|r| r.is_self).count(), 1);
    let roles = [
        "scheduler",
        "webhook-sender",
        "retention",
        "experiment-monitor",
        "provider-prober",
    ];
    for role in roles {
        let holders = status
            .replicas
            .iter()
            .filter(|r| r.roles.iter().any(|held| held == role))
            .count();
        assert_eq!(holders, 1, "{role}: {status:?}");
    }
    // Every replica tells the same story.
    for replica in [1, 2] {
        let other = cluster_status(&cluster, replica).await;
        let ids = |s: &pb::ListReplicasResponse| -> Vec<String> {
            s.replicas.iter().map(|r| r.id.clone()).collect()
        };
        assert_eq!(ids(&other), ids(&status));
    }

    let leader = holder_of(&cluster, 0, "scheduler").await.unwrap();
    let survivor = (leader + 1) % 3;
    cluster.kill(leader);
    let killed_at = Instant::now();
    let taken_by = loop {
        if let Some(holder) = holder_of(&cluster, survivor, "scheduler").await {
            if holder != leader {
                break holder;
            }
        }
        assert!(
            killed_at.elapsed() < lease * 3,
            "no replica took over within the lease; logs:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = killed_at.elapsed();
    eprintln!("replica {taken_by} took the scheduler {took:?} after the kill");
    assert!(
        took <= lease + lease / 3 + Duration::from_secs(1),
        "{took:?}"
    );
    assert!(cluster.is_running(taken_by));
    let status = cluster_status(&cluster, survivor).await;
    let dead: Vec<_> = status
        .replicas
        .iter()
        .filter(|r| r.state == pb::ReplicaState::Dead as i32)
        .collect();
    assert_eq!(dead.len(), 1, "{status:?}");
    assert!(dead[0].roles.is_empty(), "a dead replica holds nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_once_per_due_time_across_replicas_and_through_a_takeover() {
    let mut cluster = Cluster::start(3, &[("LLMOPS_LEADER_LEASE", "2s")]).await;
    let leader = holder_of(&cluster, 0, "scheduler").await.unwrap();
    let other = (leader + 1) % 3;
    let channel = cluster.channel(other).await;
    let mut evaluation = EvaluationServiceClient::new(channel.clone());
    let mut prompts = PromptServiceClient::new(channel);
    create_version(&mut prompts, "scheduled", "1.0.0")
        .await
        .unwrap();
    let dataset_id = one_sample_dataset(&mut evaluation, "ticks").await;
    // Created on a replica that does not hold the scheduler role.
    let schedule = evaluation
        .schedule_run(pb::ScheduleRunRequest {
            run_template: Some(echo_run(&dataset_id, "scheduled")),
            schedule: "@every 1s".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .schedule
        .unwrap();
    wait_for_runs(&cluster, other, &schedule.id, 3).await;

    cluster.kill(leader);
    let before = runs_started(&cluster, other, &schedule.id).await;
    wait_for_runs(&cluster, other, &schedule.id, before + 3).await;

    // Each due time started one run, whichever replica fired it.
    let storage = cluster.database().open_storage().await;
    let runs = storage.runs.load_runs().await.unwrap();
    let mut due_times: Vec<&str> = runs.iter().map(|r| r.description.as_str()).collect();
    assert!(due_times.len() >= 6, "{due_times:?}");
    due_times.sort_unstable();
    let total = due_times.len();
    due_times.dedup();
    assert_eq!(due_times.len(), total, "a due time fired twice");
    storage.close().await;
}

/// How many runs schedule `id` has started, as replica `replica` sees it.
async fn runs_started(cluster: &Cluster, replica: usize, id: &str) -> u64 {
    EvaluationServiceClient::new(cluster.channel(replica).await)
        .get_schedule(pb::GetScheduleRequest {
            schedule_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .schedule
        .unwrap()
        .runs_started
}

async fn wait_for_runs(cluster: &Cluster, replica: usize, id: &str, target: u64) {
    let start = Instant::now();
    while runs_started(cluster, replica, id).await < target {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the schedule stopped firing; logs:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_lists_itself_holding_every_role_and_a_clean_stop_frees_them_at_once() {
    // Embedded SQLite: one process, every role its own, nothing written for it.
    let server = common::TestServer::start_on_backend(Backend::Sqlite, |_| {}).await;
    let status = ClusterServiceClient::new(server.channel.clone())
        .list_replicas(pb::ListReplicasRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.replicas.len(), 1);
    let replica = &status.replicas[0];
    assert!(replica.is_self);
    assert_eq!(replica.state, pb::ReplicaState::Alive as i32);
    assert_eq!(replica.address, server.address.to_string());
    assert_eq!(replica.roles.len(), 5, "{replica:?}");
    server.stop().await;

    // On PostgreSQL a replica that stops cleanly frees its roles: another takes them at
    // its next renewal (every third of the lease), not after the lease.
    let lease = Duration::from_secs(9);
    let mut cluster = Cluster::start(2, &[("LLMOPS_LEADER_LEASE", "9s")]).await;
    let leader = holder_of(&cluster, 0, "scheduler").await.unwrap();
    let other = 1 - leader;
    cluster.terminate(leader).await;
    let stopped_at = Instant::now();
    while holder_of(&cluster, other, "scheduler").await != Some(other) {
        assert!(
            stopped_at.elapsed() < lease * 2 / 3,
            "the stopped replica's role was not freed; logs:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = cluster_status(&cluster, other).await;
    let states: Vec<i32> = status.replicas.iter().map(|r| r.state).collect();
    assert!(
        states.contains(&(pb::ReplicaState::Stopped as i32)),
        "{status:?}"
    );
}

/// What a webhook receiver got: (Idempotency-Key, the event's sequence) per request.
type Deliveries = Arc<Mutex<Vec<(String, u64)>>>;

async fn webhook_receiver() -> (String, Deliveries) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let deliveries: Deliveries = Arc::default();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let deliveries = deliveries.clone();
            move |headers: http::HeaderMap, body: String| async move {
                let key = headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let sequence = json["llmops"]["sequence"].as_u64().unwrap_or_default();
                deliveries.lock().unwrap().push((key, sequence));
                http::StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, deliveries)
}

async fn create_alerts(cluster: &Cluster, replicas: &[usize], prefix: &str, count: usize) {
    for n in 0..count {
        let replica = replicas[n % replicas.len()];
        alerts(cluster, replica)
            .await
            .create_alert(pb::CreateAlertRequest {
                alert: Some(alert(format!("{prefix}-{n}"))),
            })
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_webhook_is_delivered_through_a_sender_takeover_with_one_key_per_event() {
    let (url, deliveries) = webhook_receiver().await;
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!("[[webhooks]]\nname = \"ops\"\nurl = \"{url}\"\n"),
    )
    .unwrap();
    let config_path = config.path().to_str().unwrap().to_owned();
    let mut cluster = Cluster::start(
        3,
        &[
            ("LLMOPS_LEADER_LEASE", "2s"),
            ("LLMOPS_CONFIG", config_path.as_str()),
        ],
    )
    .await;
    create_alerts(&cluster, &[0, 1, 2], "before", 15).await;
    let sender = holder_of(&cluster, 0, "webhook-sender").await.unwrap();
    cluster.kill(sender);
    let survivors: Vec<usize> = (0..3).filter(|r| *r != sender).collect();
    create_alerts(&cluster, &survivors, "after", 15).await;

    let start = Instant::now();
    loop {
        let delivered: std::collections::BTreeSet<u64> =
            deliveries.lock().unwrap().iter().map(|(_, s)| *s).collect();
        if delivered.len() == 30 {
            assert_eq!(delivered, (1..=30).collect(), "every event, no other");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} of 30 events delivered; logs:\n{}",
            delivered.len(),
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A delivery repeated across the takeover carries the key it was first sent with.
    let received = deliveries.lock().unwrap().clone();
    let mut keys: std::collections::BTreeMap<u64, std::collections::BTreeSet<String>> =
        Default::default();
    for (key, sequence) in &received {
        assert!(!key.is_empty());
        keys.entry(*sequence).or_default().insert(key.clone());
    }
    assert!(keys.values().all(|k| k.len() == 1), "{keys:?}");
    // Only one replica sends: an event committed after the takeover went out once.
    for sequence in 16..=30 {
        let sent = received.iter().filter(|(_, s)| *s == sequence).count();
        assert_eq!(sent, 1, "event {sequence} was sent {sent} times");
    }
    eprintln!(
        "{} requests for 30 events ({} repeated across the takeover)",
        received.len(),
        received.len() - 30
    );
}

async fn experiments_client(
    cluster: &Cluster,
    replica: usize,
) -> llmops::pb::experiment_service_client::ExperimentServiceClient<Channel> {
    llmops::pb::experiment_service_client::ExperimentServiceClient::new(
        cluster.channel(replica).await,
    )
}

/// Replica `replica`'s results of `id`, without the evaluation time that differs per call.
async fn results(cluster: &Cluster, replica: usize, id: &str) -> pb::GetExperimentResultsResponse {
    let mut results = experiments_client(cluster, replica)
        .await
        .get_experiment_results(pb::GetExperimentResultsRequest {
            experiment_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    results.experiment = None;
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_results_agree_on_every_replica_and_a_completion_anywhere_stops_writes_everywhere(
) {
    let cluster = Cluster::start(3, &[]).await;
    common::process::start_quality_experiment(cluster.channel(0).await, "shared").await;
    // Every replica knows the running experiment.
    for replica in [1, 2] {
        let start = Instant::now();
        loop {
            let known = experiments_client(&cluster, replica)
                .await
                .get_experiment(pb::GetExperimentRequest {
                    experiment_id: "shared".into(),
                })
                .await
                .is_ok_and(|r| {
                    r.into_inner().experiment.unwrap().status
                        == pb::ExperimentStatus::Running as i32
                });
            if known {
                break;
            }
            assert!(
                start.elapsed() < PROPAGATION_LIMIT,
                "replica {replica} never saw it"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Exposures and records on all three replicas, in parallel; one record id repeated
    // on two replicas counts once.
    let mut writers = Vec::new();
    for replica in 0..3 {
        let mut client = experiments_client(&cluster, replica).await;
        writers.push(tokio::spawn(async move {
            for n in 0..20 {
                let user = format!("user-{replica}-{n}");
                let assigned = client
                    .assign_variant(pb::AssignVariantRequest {
                        experiment_id: "shared".into(),
                        user_id: user.clone(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                client
                    .record_metric(pb::RecordMetricRequest {
                        experiment_id: "shared".into(),
                        variant_id: assigned.variant.unwrap().id,
                        metric: "quality".into(),
                        value: f64::from(n % 7),
                        user_id: user,
                        record_id: if n == 0 {
                            "the-same-everywhere".into()
                        } else {
                            String::new()
                        },
                        ..Default::default()
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    for writer in futures_util::future::join_all(writers).await {
        writer.unwrap();
    }
    let start = Instant::now();
    let agreed = loop {
        let all = [
            results(&cluster, 0, "shared").await,
            results(&cluster, 1, "shared").await,
            results(&cluster, 2, "shared").await,
        ];
        let count: u64 = all[0].stats.iter().map(|s| s.n).sum();
        if all[1] == all[0] && all[2] == all[0] && count > 0 {
            break all[0].clone();
        }
        assert!(
            start.elapsed() < PROPAGATION_LIMIT,
            "results differ between replicas: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let records: u64 = agreed.stats.iter().map(|s| s.n).sum();
    // 60 records, the repeated id stored once (only one of the n == 0 records had the id
    // first; the other two were repeats).
    assert_eq!(records, 58, "{agreed:?}");

    // Completed on B: a record sent to C afterwards is refused, whether or not C has
    // heard of the completion yet, and the results stay as they were.
    experiments_client(&cluster, 1)
        .await
        .complete_experiment(pb::CompleteExperimentRequest {
            experiment_id: "shared".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let refused = experiments_client(&cluster, 2)
        .await
        .record_metric(pb::RecordMetricRequest {
            experiment_id: "shared".into(),
            variant_id: "control".into(),
            metric: "quality".into(),
            value: 1.0,
            user_id: "late".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let after: u64 = results(&cluster, 0, "shared")
        .await
        .stats
        .iter()
        .map(|s| s.n)
        .sum();
    assert_eq!(after, records);
}

/// A dataset named `name` holding one sample; returns its id.
async fn one_sample_dataset(
    evaluation: &mut EvaluationServiceClient<Channel>,
    name: &str,
) -> String {
    dataset_of(evaluation, name, [("a".to_owned(), "x".to_owned())]).await
}

/// A sample of a text input.
fn text_sample(id: &str, input: &str) -> pb::Sample {
    pb::Sample {
        id: id.into(),
        input: Some(prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue(input.into())),
        }),
        ..Default::default()
    }
}

/// A dataset named `name` holding samples of (id, text input); returns its id.
async fn dataset_of(
    evaluation: &mut EvaluationServiceClient<Channel>,
    name: &str,
    samples: impl IntoIterator<Item = (String, String)>,
) -> String {
    let dataset = evaluation
        .create_dataset(pb::CreateDatasetRequest {
            dataset: Some(pb::Dataset {
                name: name.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .dataset
        .unwrap();
    evaluation
        .add_samples(pb::AddSamplesRequest {
            dataset_id: dataset.id.clone(),
            samples: samples
                .into_iter()
                .map(|(id, input)| text_sample(&id, &input))
                .collect(),
        })
        .await
        .unwrap();
    dataset.id
}

/// A run of `prompt`'s active version on the built-in echo model, scored by exact match.
fn echo_run(dataset_id: &str, prompt: &str) -> pb::Run {
    pb::Run {
        dataset_id: dataset_id.into(),
        prompt_name: prompt.into(),
        model: "echo".into(),
        metrics: vec![pb::MetricConfig {
            name: "exact".into(),
            scorer: "exact_match".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Creates `run` and starts it; returns its id.
async fn start_run(evaluation: &mut EvaluationServiceClient<Channel>, run: pb::Run) -> String {
    let run = evaluation
        .create_run(pb::CreateRunRequest { run: Some(run) })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    evaluation
        .start_run(pb::StartRunRequest {
            run_id: run.id.clone(),
        })
        .await
        .unwrap();
    run.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_on_one_replica_is_read_on_the_others_once_it_ends() {
    let cluster = Cluster::start(3, &[]).await;
    let channel = cluster.channel(0).await;
    let mut prompts = PromptServiceClient::new(channel.clone());
    let mut evaluation = EvaluationServiceClient::new(channel);
    create_version(&mut prompts, "evaluated", "1.0.0")
        .await
        .unwrap();
    let dataset_id = one_sample_dataset(&mut evaluation, "evaluated").await;
    let run_id = start_run(&mut evaluation, echo_run(&dataset_id, "evaluated")).await;
    for replica in [1, 2] {
        let mut client = EvaluationServiceClient::new(cluster.channel(replica).await);
        let start = Instant::now();
        loop {
            let seen = client
                .get_run(pb::GetRunRequest {
                    run_id: run_id.clone(),
                })
                .await
                .ok()
                .and_then(|r| r.into_inner().run);
            if let Some(seen) = seen.filter(|r| r.status == pb::RunStatus::Completed as i32) {
                assert_eq!(seen.progress.unwrap().done, 1);
                break;
            }
            assert!(
                start.elapsed() < PROPAGATION_LIMIT,
                "replica {replica} never saw the run end; logs:\n{}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A configuration file naming the mock model `mock`, for replicas to read.
fn mock_provider_config(dir: &std::path::Path, mock: &MockProvider) -> std::path::PathBuf {
    let path = dir.join("llmops.toml");
    std::fs::write(
        &path,
        format!(
            "[[providers]]\nname = \"mock\"\nkind = \"openai\"\nbase_url = {:?}\nmodel = \"m\"\ntimeout = \"10s\"\nmax_retries = 0\n",
            mock.base_url()
        ),
    )
    .unwrap();
    path
}

/// The ids of every result of a run, read from replica `replica`.
async fn result_ids(cluster: &Cluster, replica: usize, run_id: &str) -> Vec<String> {
    let mut client = EvaluationServiceClient::new(cluster.channel(replica).await);
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_run_results(pb::ListRunResultsRequest {
                run_id: run_id.into(),
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        ids.extend(page.results.into_iter().map(|r| r.sample_id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        page_token = page.next_page_token;
    }
}

/// Three replicas reading the configuration file `config`, with a 2 s lease.
async fn three_replicas_reading(config: &std::path::Path) -> Cluster {
    Cluster::start(
        3,
        &[
            ("LLMOPS_CONFIG", config.to_str().unwrap()),
            ("LLMOPS_LEADER_LEASE", "2s"),
        ],
    )
    .await
}

/// Three replicas sharing a mock model at `latency`, and a started run of `samples`
/// samples on it at `concurrency` (per replica); returns the run's id. The directory
/// holds the replicas' configuration.
async fn shared_run(
    samples: usize,
    concurrency: u32,
    latency: Duration,
) -> (Cluster, MockProvider, String, tempfile::TempDir) {
    let mock = MockProvider::start(latency).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = mock_provider_config(dir.path(), &mock);
    let cluster = three_replicas_reading(&config).await;
    let channel = cluster.channel(0).await;
    let mut prompts = PromptServiceClient::new(channel.clone());
    let mut evaluation = EvaluationServiceClient::new(channel);
    create_version(&mut prompts, "shared-run", "1.0.0")
        .await
        .unwrap();
    let dataset_id = dataset_of(
        &mut evaluation,
        "shared-run",
        (0..samples).map(|i| (format!("s{i:03}"), format!("q{i}"))),
    )
    .await;
    let run = pb::Run {
        model: "mock".into(),
        concurrency,
        ..echo_run(&dataset_id, "shared-run")
    };
    let run_id = start_run(&mut evaluation, run).await;
    (cluster, mock, run_id, dir)
}

/// Run `id` as replica `replica` shows it.
async fn run_on(cluster: &Cluster, replica: usize, id: &str) -> pb::Run {
    EvaluationServiceClient::new(cluster.channel(replica).await)
        .get_run(pb::GetRunRequest { run_id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap()
}

/// Run `id` once it ended, as replica `replica` shows it (polled, for up to a minute).
async fn run_ended(cluster: &Cluster, replica: usize, id: &str) -> pb::Run {
    let start = Instant::now();
    loop {
        let seen = run_on(cluster, replica, id).await;
        if seen.status != pb::RunStatus::Running as i32 {
            return seen;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "run {id} never ended; logs:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_shared_by_every_replica_and_finishes_when_one_is_killed_mid_run() {
    const SAMPLES: usize = 500;
    const CONCURRENCY: u32 = 4;
    let (mut cluster, mock, run_id, _config) =
        shared_run(SAMPLES, CONCURRENCY, Duration::from_millis(40)).await;
    // Every replica takes a share; replica 2's progress counts the others' results.
    let mut watcher = EvaluationServiceClient::new(cluster.channel(2).await);
    let start = Instant::now();
    let killed_share = loop {
        let share = cluster.counter(1, SAMPLES_EVALUATED).await;
        let progress = watcher
            .get_run(pb::GetRunRequest {
                run_id: run_id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .run
            .unwrap()
            .progress
            .unwrap();
        let others_shown = progress.done as f64 > cluster.counter(2, SAMPLES_EVALUATED).await;
        if share > 0.0 && progress.done >= 100 && others_shown {
            break share;
        }
        assert!(
            start.elapsed() < PROPAGATION_LIMIT && progress.done < SAMPLES as u64,
            "replica 1 took no share, or replica 2 never showed the others' progress; logs:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    cluster.kill(1);

    let ended = run_ended(&cluster, 0, &run_id).await;
    assert_eq!(
        ended.status,
        pb::RunStatus::Completed as i32,
        "{ended:?}\n{}",
        cluster.logs()
    );
    assert_eq!(ended.progress.unwrap().done, SAMPLES as u64);
    assert_eq!(ended.results.unwrap().total, SAMPLES as u64);
    let mut ids = result_ids(&cluster, 2, &run_id).await;
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), SAMPLES, "one result per sample");

    // Each sample was asked of the model once, apart from those the killed replica had
    // sent and not yet stored, which another replica evaluated again: its calls in
    // flight (its concurrency), and the results queued for its writer (twice its
    // concurrency, plus one) and in the batch being committed (as many).
    let calls = mock.requests();
    let queued = 2 * u64::from(CONCURRENCY) + 1;
    let in_flight = u64::from(CONCURRENCY) + 2 * queued;
    assert!(
        (SAMPLES as u64..=SAMPLES as u64 + in_flight).contains(&calls),
        "{calls} model calls for {SAMPLES} samples"
    );
    let shares = [
        cluster.counter(0, SAMPLES_EVALUATED).await,
        killed_share,
        cluster.counter(2, SAMPLES_EVALUATED).await,
    ];
    assert!(shares.iter().all(|share| *share > 0.0), "shares {shares:?}");
    assert!(
        shares.iter().sum::<f64>() <= SAMPLES as f64,
        "shares {shares:?}: a stored result counts once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cancelled_on_one_replica_stops_on_every_replica_with_its_results_summarised() {
    let (cluster, mock, run_id, _config) = shared_run(500, 4, Duration::from_millis(40)).await;
    let start = Instant::now();
    while run_on(&cluster, 0, &run_id).await.progress.unwrap().done < 60 {
        assert!(start.elapsed() < PROPAGATION_LIMIT, "{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled = EvaluationServiceClient::new(cluster.channel(1).await)
        .cancel_run(pb::CancelRunRequest {
            run_id: run_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(cancelled.status, pb::RunStatus::Cancelled as i32);
    let summarised = cancelled.results.unwrap().total;
    assert!(summarised < 500, "cancelled mid-run: {summarised}");

    // Every replica stops: the model hears no more, and nothing is stored after the end.
    let mut calls = mock.requests();
    let start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = mock.requests();
        if now == calls {
            break;
        }
        calls = now;
        assert!(
            start.elapsed() < PROPAGATION_LIMIT,
            "replicas kept calling the model after the cancel; logs:\n{}",
            cluster.logs()
        );
    }
    for replica in 0..3 {
        let seen = run_on(&cluster, replica, &run_id).await;
        assert_eq!(
            seen.status,
            pb::RunStatus::Cancelled as i32,
            "replica {replica}"
        );
        assert_eq!(seen.results.unwrap().total, summarised, "replica {replica}");
    }
    assert_eq!(
        result_ids(&cluster, 2, &run_id).await.len() as u64,
        summarised,
        "the summary counts every stored result, and none was stored after it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_caps_hold_for_the_whole_deployment_not_per_replica() {
    // Two models: one capped at 3 calls in flight, one at 1,200 calls a minute (20/s).
    // Each replica alone stays under either cap; three together would not, were the caps
    // counted per replica.
    const IN_FLIGHT_CAP: u64 = 3;
    const PER_SECOND_CAP: f64 = 20.0;
    let concurrent = MockProvider::start(Duration::from_millis(60))
        .await
        .unwrap();
    let paced = MockProvider::start(Duration::from_millis(5)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("llmops.toml");
    let entry = |name: &str, mock: &MockProvider, cap: &str| {
        format!(
            "[[providers]]\nname = {name:?}\nkind = \"openai\"\nbase_url = {:?}\nmodel = \"m\"\n\
             timeout = \"10s\"\nmax_retries = 0\n{cap}\n",
            mock.base_url()
        )
    };
    std::fs::write(
        &config,
        entry(
            "concurrent",
            &concurrent,
            &format!("max_concurrency = {IN_FLIGHT_CAP}"),
        ) + &entry("paced", &paced, "requests_per_minute = 1200"),
    )
    .unwrap();
    let cluster = three_replicas_reading(&config).await;
    let channel = cluster.channel(0).await;
    let mut prompts = PromptServiceClient::new(channel.clone());
    let mut evaluation = EvaluationServiceClient::new(channel);
    create_version(&mut prompts, "capped", "1.0.0")
        .await
        .unwrap();

    let dataset_id = dataset_of(
        &mut evaluation,
        "capped-concurrency",
        (0..150).map(|i| (format!("s{i:03}"), format!("q{i}"))),
    )
    .await;
    let run = pb::Run {
        model: "concurrent".into(),
        concurrency: 8,
        ..echo_run(&dataset_id, "capped")
    };
    let run_id = start_run(&mut evaluation, run).await;
    let ended = run_ended(&cluster, 0, &run_id).await;
    assert_eq!(ended.status, pb::RunStatus::Completed as i32, "{ended:?}");
    let shares = [
        cluster.counter(0, SAMPLES_EVALUATED).await,
        cluster.counter(1, SAMPLES_EVALUATED).await,
        cluster.counter(2, SAMPLES_EVALUATED).await,
    ];
    assert!(
        shares.iter().filter(|share| **share > 0.0).count() >= 2,
        "the run was shared, so the cap was shared: shares {shares:?}"
    );
    assert!(
        concurrent.peak_in_flight() <= IN_FLIGHT_CAP,
        "{} calls in flight at once under a deployment cap of {IN_FLIGHT_CAP}",
        concurrent.peak_in_flight()
    );
    assert_eq!(
        concurrent.peak_in_flight(),
        IN_FLIGHT_CAP,
        "the cap is used whole"
    );

    let dataset_id = dataset_of(
        &mut evaluation,
        "capped-rate",
        (0..81).map(|i| (format!("s{i:03}"), format!("q{i}"))),
    )
    .await;
    let run = pb::Run {
        model: "paced".into(),
        concurrency: 8,
        ..echo_run(&dataset_id, "capped")
    };
    let run_id = start_run(&mut evaluation, run).await;
    let ended = run_ended(&cluster, 1, &run_id).await;
    assert_eq!(ended.status, pb::RunStatus::Completed as i32, "{ended:?}");
    let arrivals = paced.arrivals();
    assert_eq!(arrivals.len(), 81);
    let span = arrivals[80].duration_since(arrivals[0]).as_secs_f64();
    let rate = 80.0 / span;
    assert!(
        rate <= PER_SECOND_CAP * 1.1,
        "{rate:.1} calls/s under a deployment cap of {PER_SECOND_CAP}/s"
    );
    assert!(
        rate >= PER_SECOND_CAP * 0.8,
        "{rate:.1} calls/s: the cap of {PER_SECOND_CAP}/s was not used"
    );
}

/// Whether replica `replica` shows provider `name` healthy, and whether it was probed.
async fn provider_health(cluster: &Cluster, replica: usize, name: &str) -> (bool, bool) {
    let providers = ProviderServiceClient::new(cluster.channel(replica).await)
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner()
        .providers;
    let provider = providers
        .into_iter()
        .find(|provider| provider.name == name)
        .unwrap();
    (provider.healthy, provider.last_probe_at.is_some())
}

/// Waits until every replica shows provider `name` probed, healthy or not as `healthy`.
async fn wait_for_health(cluster: &Cluster, name: &str, healthy: bool) {
    let start = Instant::now();
    for replica in 0..3 {
        while provider_health(cluster, replica, name).await != (healthy, true) {
            assert!(
                start.elapsed() < PROPAGATION_LIMIT,
                "replica {replica} never showed {name} healthy = {healthy}; logs:\n{}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_probes_a_provider_for_all_and_every_replica_shows_its_health() {
    let interval = Duration::from_millis(200);
    let mock = MockProvider::start(Duration::from_millis(1)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = mock_provider_config(dir.path(), &mock);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[providers_health]\ninterval = \"200ms\"\nfailure_threshold = 2\n");
    std::fs::write(&config, text).unwrap();
    let cluster = three_replicas_reading(&config).await;
    wait_for_health(&cluster, "mock", true).await;

    // One replica probes: about one probe a round, where three probing replicas would
    // send three.
    let (before, start) = (mock.probes(), Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let probes = mock.probes() - before;
    let rounds = start.elapsed().as_secs_f64() / interval.as_secs_f64();
    assert!(
        (probes as f64) <= rounds + 2.0,
        "{probes} probes in {rounds:.0} rounds: more than one replica probes"
    );
    assert!(probes > 0, "nobody probes");

    // What the prober finds, every replica shows.
    mock.set_down(true);
    wait_for_health(&cluster, "mock", false).await;
    mock.set_down(false);
    wait_for_health(&cluster, "mock", true).await;
}

/// A batch of an import into `dataset_id`: samples `{prefix}{i}` for `range`.
fn import_batch(
    dataset_id: &str,
    prefix: &str,
    range: std::ops::Range<usize>,
) -> pb::ImportSamplesRequest {
    pb::ImportSamplesRequest {
        dataset_id: dataset_id.into(),
        samples: range
            .map(|i| text_sample(&format!("{prefix}{i}"), "q"))
            .collect(),
    }
}

/// Opens an import on replica `replica` whose stream stays open until the sender is
/// dropped (which commits it), and waits until the import holds the dataset.
async fn open_import(
    cluster: &Cluster,
    replica: usize,
    first: pb::ImportSamplesRequest,
) -> (
    tokio::sync::mpsc::Sender<pb::ImportSamplesRequest>,
    tokio::task::JoinHandle<Result<tonic::Response<pb::ImportSamplesResponse>, tonic::Status>>,
) {
    let dataset_id = first.dataset_id.clone();
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    sender.send(first).await.unwrap();
    let mut client = EvaluationServiceClient::new(cluster.channel(replica).await);
    let call = tokio::spawn(async move {
        client
            .import_samples(tokio_stream::wrappers::ReceiverStream::new(receiver))
            .await
    });
    // The importing replica refuses any other change of the dataset once its import
    // holds it (a delete of a missing sample is refused before it is looked for).
    let start = Instant::now();
    let mut importer = EvaluationServiceClient::new(cluster.channel(replica).await);
    loop {
        let refused = importer
            .delete_samples(pb::DeleteSamplesRequest {
                dataset_id: dataset_id.clone(),
                sample_ids: vec!["no-such-sample".into()],
            })
            .await
            .unwrap_err();
        if refused.code() == Code::FailedPrecondition {
            return (sender, call);
        }
        assert!(
            start.elapsed() < PROPAGATION_LIMIT,
            "the import never began"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Adds sample `id` to the dataset through replica `replica`.
async fn add_one(
    cluster: &Cluster,
    replica: usize,
    dataset_id: &str,
    id: &str,
) -> Result<pb::Dataset, tonic::Status> {
    EvaluationServiceClient::new(cluster.channel(replica).await)
        .add_samples(pb::AddSamplesRequest {
            dataset_id: dataset_id.into(),
            samples: vec![text_sample(id, "q")],
        })
        .await
        .map(|response| response.into_inner().dataset.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_holds_its_dataset_on_every_replica_until_it_ends_or_its_replica_dies() {
    let mut cluster = Cluster::start(3, &[("LLMOPS_LEADER_LEASE", "2s")]).await;
    let mut evaluation = EvaluationServiceClient::new(cluster.channel(0).await);
    let id = dataset_of(
        &mut evaluation,
        "imported",
        [("s0".to_owned(), "q".to_owned())],
    )
    .await;

    let (sender, call) = open_import(&cluster, 0, import_batch(&id, "a", 0..100)).await;
    let refused = add_one(&cluster, 1, &id, "x").await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("import"),
        "{}",
        refused.message()
    );
    let competing = EvaluationServiceClient::new(cluster.channel(2).await)
        .import_samples(tokio_stream::iter([import_batch(&id, "b", 0..10)]))
        .await
        .unwrap_err();
    assert_eq!(competing.code(), Code::FailedPrecondition, "{competing:?}");
    let delete = EvaluationServiceClient::new(cluster.channel(2).await)
        .delete_dataset(pb::DeleteDatasetRequest {
            dataset_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(delete.code(), Code::FailedPrecondition, "{delete:?}");

    sender.send(import_batch(&id, "a", 100..200)).await.unwrap();
    drop(sender);
    let imported = call.await.unwrap().unwrap().into_inner().dataset.unwrap();
    assert_eq!((imported.version, imported.sample_count), (3, 201));
    // Another replica builds on the import at once, whether or not it has heard of it.
    let added = add_one(&cluster, 1, &id, "x").await.unwrap();
    assert_eq!((added.version, added.sample_count), (4, 202));

    // An import whose replica dies holds the dataset until its reservation lapses; then
    // its staged samples are gone and the next change goes through.
    let (_sender, _call) = open_import(&cluster, 2, import_batch(&id, "c", 0..100)).await;
    cluster.kill(2);
    let killed_at = Instant::now();
    let after = loop {
        match add_one(&cluster, 1, &id, "c0").await {
            Ok(dataset) => break dataset,
            Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "the dead replica's import still holds the dataset; logs:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // "c0" was staged by the dead import; it is added now, as the only new sample.
    assert_eq!((after.version, after.sample_count), (5, 203));
}

/// Experiment `id`'s status as replica `replica` shows it.
async fn experiment_status(cluster: &Cluster, replica: usize, id: &str) -> Option<i32> {
    experiments_client(cluster, replica)
        .await
        .get_experiment(pb::GetExperimentRequest {
            experiment_id: id.into(),
        })
        .await
        .ok()
        .map(|response| response.into_inner().experiment.unwrap().status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_missed_pruned_changes_reloads_every_definition() {
    let cluster = Cluster::start(2, &[]).await;
    common::process::start_quality_experiment(cluster.channel(0).await, "gap").await;
    let running = Some(pb::ExperimentStatus::Running as i32);
    let start = Instant::now();
    while experiment_status(&cluster, 1, "gap").await != running {
        assert!(
            start.elapsed() < PROPAGATION_LIMIT,
            "replica 1 never saw it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Replica 1 is cut off while the experiment completes, and the change log loses
    // that change (as retention prunes it after a day); a later change arrives.
    cluster.pause(1);
    experiments_client(&cluster, 0)
        .await
        .complete_experiment(pb::CompleteExperimentRequest {
            experiment_id: "gap".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let storage = cluster.database().open_storage().await;
    storage.cluster.prune_changes(Duration::ZERO).await.unwrap();
    let mut evaluation = EvaluationServiceClient::new(cluster.channel(0).await);
    dataset_of(
        &mut evaluation,
        "after-the-gap",
        [("s0".to_owned(), "q".to_owned())],
    )
    .await;
    cluster.resume(1);

    let completed = Some(pb::ExperimentStatus::Completed as i32);
    let start = Instant::now();
    while experiment_status(&cluster, 1, "gap").await != completed {
        assert!(
            start.elapsed() < PROPAGATION_LIMIT,
            "replica 1 never learned of the pruned completion; logs:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
