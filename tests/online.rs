//! Online evaluation end to end: definitions are checked and kept; a deterministic share
//! of matching generations is queued with them and scored exactly once, with judges'
//! reasoning on the generation; the queue's bound skips and counts; windows below their
//! thresholds raise alerts that a good window resolves.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use common::backend::{Backend, TestDatabase};
use common::eval::{fields, metric, with_mock};
use common::TestServer;
use llmops::bench::mock_provider::MockProvider;
use llmops::pb;
use llmops::pb::generation_service_client::GenerationServiceClient;
use llmops_core::ManualClock;
use sha2::{Digest as _, Sha256};
use tonic::Code;

/// Whether online evaluation `evaluation` samples generation `generation` at `rate`, as
/// the proto documents it (what any client can compute).
fn documented_sample(evaluation: &str, generation: &str, rate: f64) -> bool {
    let digest = Sha256::digest(format!("{evaluation}/{generation}").as_bytes());
    let point = u64::from_be_bytes(digest[..8].try_into().unwrap()) as f64 / 2f64.powi(64);
    point < rate
}

async fn create_prompt(server: &TestServer, version: &str) {
    common::eval::prompt(server, "support", version, "Answer: {{ input }}").await;
}

fn online(id: &str, rate: f64, metrics: Vec<pb::MetricConfig>) -> pb::OnlineEvaluation {
    pb::OnlineEvaluation {
        id: id.into(),
        filter: Some(pb::OnlineEvaluationFilter {
            prompt_name: "support".into(),
            ..Default::default()
        }),
        sample_rate: rate,
        metrics,
        ..Default::default()
    }
}

async fn create(
    server: &TestServer,
    evaluation: pb::OnlineEvaluation,
) -> Result<pb::OnlineEvaluation, tonic::Status> {
    server
        .evaluation()
        .create_online_evaluation(pb::CreateOnlineEvaluationRequest {
            online_evaluation: Some(evaluation),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().online_evaluation.unwrap())
}

fn generation(id: &str, version: &str, output: &str, start: DateTime<Utc>) -> pb::Generation {
    pb::Generation {
        id: id.into(),
        prompt_name: "support".into(),
        prompt_version: version.into(),
        model: "gpt-x".into(),
        input: format!("question {id}"),
        output: output.into(),
        latency_ms: 100.0,
        start_time: Some(prost_types::Timestamp {
            seconds: start.timestamp(),
            nanos: 0,
        }),
        ..Default::default()
    }
}

async fn log(server: &TestServer, generations: Vec<pb::Generation>) -> pb::LogGenerationsResponse {
    GenerationServiceClient::new(server.channel.clone())
        .log_generations(pb::LogGenerationsRequest { generations })
        .await
        .unwrap()
        .into_inner()
}

async fn get_generation(server: &TestServer, id: &str) -> pb::Generation {
    GenerationServiceClient::new(server.channel.clone())
        .get_generation(pb::GetGenerationRequest {
            generation_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .generation
        .unwrap()
}

/// The stats of `id` in one group, summed over the weeks around `around`.
async fn totals_around(server: &TestServer, id: &str, around: DateTime<Utc>) -> pb::OnlineStatsRow {
    let rows = server
        .evaluation()
        .get_online_evaluation_stats(pb::GetOnlineEvaluationStatsRequest {
            online_evaluation_id: id.into(),
            since: Some(prost_types::Timestamp {
                seconds: around.timestamp() - 7 * 24 * 3600,
                nanos: 0,
            }),
            until: Some(prost_types::Timestamp {
                seconds: around.timestamp() + 7 * 24 * 3600,
                nanos: 0,
            }),
            bucket: Some(prost_types::Duration {
                seconds: 7 * 24 * 3600,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    let mut total = pb::OnlineStatsRow::default();
    let mut passed = 0.0;
    for row in rows {
        total.sampled += row.sampled;
        total.scored += row.scored;
        total.failed += row.failed;
        total.queued += row.queued;
        passed += row.pass_rate * row.scored as f64;
        total.metrics.extend(row.metrics);
    }
    if total.scored > 0 {
        total.pass_rate = passed / total.scored as f64;
    }
    total
}

async fn totals(server: &TestServer, id: &str) -> pb::OnlineStatsRow {
    totals_around(server, id, Utc::now()).await
}

/// Waits until `id` has no sample queued and `done` samples scored or failed.
async fn wait_until_scored(server: &TestServer, id: &str, done: u64) -> pb::OnlineStatsRow {
    wait_until_scored_around(server, id, done, Utc::now()).await
}

async fn wait_until_scored_around(
    server: &TestServer,
    id: &str,
    done: u64,
    around: DateTime<Utc>,
) -> pb::OnlineStatsRow {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let row = totals_around(server, id, around).await;
        if row.scored + row.failed >= done && row.queued == 0 {
            return row;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "samples still unscored: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn definitions_are_checked_field_by_field_and_kept() {
    let mock = MockProvider::start(Duration::from_millis(1)).await.unwrap();
    let server = TestServer::start_with(with_mock(&mock)).await;
    create_prompt(&server, "1.0.0").await;
    let judged = metric(
        "helpful",
        "llm_judge",
        serde_json::json!({"judge": "judge-a"}),
    );

    // Scorers that need an expected output are refused, naming the metric.
    let exact = create(
        &server,
        online(
            "",
            0.5,
            vec![metric("same", "exact_match", serde_json::json!({}))],
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(exact.code(), Code::InvalidArgument);
    assert_eq!(fields(&exact), ["online_evaluation.metrics[0].scorer"]);
    assert!(exact.message().contains("\"same\""), "{}", exact.message());
    let contains = create(
        &server,
        online(
            "",
            0.5,
            vec![metric("has", "contains", serde_json::json!({}))],
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(
        fields(&contains),
        ["online_evaluation.metrics[0].params.value"]
    );

    // Every bad field at once, nothing stored.
    let mut bad = online("", 0.0, vec![judged.clone()]);
    bad.window = Some(prost_types::Duration {
        seconds: 30,
        nanos: 0,
    });
    bad.thresholds = Some(pb::OnlineThresholds {
        min_pass_rate: Some(1.5),
        metric_minimums: [("unknown".to_owned(), 0.5)].into(),
        ..Default::default()
    });
    let refused = create(&server, bad).await.unwrap_err();
    assert_eq!(
        fields(&refused),
        [
            "online_evaluation.sample_rate",
            "online_evaluation.window",
            "online_evaluation.thresholds.min_pass_rate",
            "online_evaluation.thresholds.metric_minimums[unknown]",
        ]
    );
    let mut missing = online("", 0.5, vec![judged.clone()]);
    missing.filter.as_mut().unwrap().prompt_name = "nope".into();
    let unknown = create(&server, missing).await.unwrap_err();
    assert_eq!(fields(&unknown), ["online_evaluation.filter.prompt_name"]);
    let listed = server
        .evaluation()
        .list_online_evaluations(pb::ListOnlineEvaluationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.online_evaluations.is_empty());

    // A good one gets its defaults; a second with its id is ALREADY_EXISTS.
    let created = create(&server, online("quality", 0.25, vec![judged.clone()]))
        .await
        .unwrap();
    assert_eq!(created.window.as_ref().unwrap().seconds, 3600);
    assert_eq!(created.min_samples, 50);
    assert_eq!(created.name, "support online");
    let again = create(&server, online("quality", 0.25, vec![judged]))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);

    // Pause, change the rate, and delete.
    let updated = server
        .evaluation()
        .update_online_evaluation(pb::UpdateOnlineEvaluationRequest {
            online_evaluation_id: "quality".into(),
            sample_rate: Some(0.75),
            paused: Some(true),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .online_evaluation
        .unwrap();
    assert!(updated.paused);
    assert_eq!(updated.sample_rate, 0.75);
    let bad_rate = server
        .evaluation()
        .update_online_evaluation(pb::UpdateOnlineEvaluationRequest {
            online_evaluation_id: "quality".into(),
            sample_rate: Some(2.0),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&bad_rate), ["sample_rate"]);
    let got = server
        .evaluation()
        .get_online_evaluation(pb::GetOnlineEvaluationRequest {
            online_evaluation_id: "quality".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .online_evaluation
        .unwrap();
    assert_eq!(got, updated);
    server
        .evaluation()
        .delete_online_evaluation(pb::DeleteOnlineEvaluationRequest {
            online_evaluation_id: "quality".into(),
        })
        .await
        .unwrap();
    let gone = server
        .evaluation()
        .get_online_evaluation(pb::GetOnlineEvaluationRequest {
            online_evaluation_id: "quality".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

/// Every sampled generation is judged once; the verdict, with the judge's reasoning,
/// shows on the generation; a retried batch judges nothing again.
async fn sampled_generations_are_judged_once_and_carry_the_verdict(backend: Backend) {
    let mock = MockProvider::start(Duration::from_millis(5)).await.unwrap();
    let server = TestServer::start_on_backend(backend, with_mock(&mock)).await;
    create_prompt(&server, "1.0.0").await;
    let rate = 0.5;
    create(
        &server,
        online(
            "judged",
            rate,
            vec![
                metric(
                    "helpful",
                    "llm_judge",
                    serde_json::json!({"judge": "judge-a"}),
                ),
                metric("json", "json_valid", serde_json::json!({})),
            ],
        ),
    )
    .await
    .unwrap();
    let now = Utc::now();
    let batch: Vec<pb::Generation> = (0..200)
        .map(|i| {
            let score = if i % 4 == 0 { "0.2" } else { "0.9" };
            generation(
                &format!("g{i}"),
                "1.0.0",
                &format!("{{\"a\": \"[[score:{score}]]\"}}"),
                now,
            )
        })
        .collect();
    let expected: BTreeSet<String> = batch
        .iter()
        .map(|g| g.id.clone())
        .filter(|id| documented_sample("judged", id, rate))
        .collect();
    assert!((70..130).contains(&expected.len()), "{}", expected.len());
    let before = mock.requests();
    log(&server, batch.clone()).await;
    let row = wait_until_scored(&server, "judged", expected.len() as u64).await;
    assert_eq!(row.scored, expected.len() as u64);
    assert_eq!(row.sampled, expected.len() as u64);
    assert_eq!(
        mock.requests() - before,
        expected.len() as u64,
        "one judge call per sample"
    );
    let low = expected
        .iter()
        .filter(|id| id[1..].parse::<u32>().unwrap() % 4 == 0)
        .count() as f64;
    let pass_rate = 1.0 - low / expected.len() as f64;
    assert!((row.pass_rate - pass_rate).abs() < 1e-9, "{row:?}");
    assert!((row.metrics["json"].mean - 1.0).abs() < 1e-12);

    // The verdict is on each sampled generation and on no other.
    for g in &batch {
        let stored = get_generation(&server, &g.id).await;
        if expected.contains(&g.id) {
            assert_eq!(stored.scores.len(), 1, "{}", g.id);
            let verdict = &stored.scores[0];
            assert_eq!(verdict.online_evaluation_id, "judged");
            assert_eq!(verdict.judges.len(), 1);
            assert_eq!(verdict.judges[0].judge, "judge-a");
            assert_eq!(
                verdict.judges[0].reasoning, "Judged.",
                "the answer without its score line"
            );
            let low = g.id[1..].parse::<u32>().unwrap() % 4 == 0;
            assert_eq!(verdict.scores["helpful"], if low { 0.2 } else { 0.9 });
            assert_eq!(verdict.passed, !low);
            assert!(verdict.scored_at.is_some());
        } else {
            assert!(stored.scores.is_empty(), "{}", g.id);
        }
    }

    // Logging the batch again (a client's retry) judges nothing more.
    log(&server, batch).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mock.requests() - before, expected.len() as u64);
    assert_eq!(
        totals(&server, "judged").await.scored,
        expected.len() as u64
    );
}

on_both_backends!(sampled_generations_are_judged_once_and_carry_the_verdict);

/// The same ids sample alike after a restart, and a sample queued before the restart is
/// scored after it.
#[tokio::test]
async fn sampling_is_the_same_after_a_restart() {
    let database = TestDatabase::new(Backend::default_for_tests()).await;
    let server = TestServer::start_on(&database, |_| {}).await;
    create_prompt(&server, "1.0.0").await;
    create(
        &server,
        online(
            "steady",
            0.3,
            vec![metric("json", "json_valid", serde_json::json!({}))],
        ),
    )
    .await
    .unwrap();
    let now = Utc::now();
    let first: Vec<pb::Generation> = (0..100)
        .map(|i| generation(&format!("a{i}"), "1.0.0", "{}", now))
        .collect();
    log(&server, first.clone()).await;
    let sampled_before: BTreeSet<String> = first
        .iter()
        .map(|g| g.id.clone())
        .filter(|id| documented_sample("steady", id, 0.3))
        .collect();
    wait_until_scored(&server, "steady", sampled_before.len() as u64).await;
    server.stop().await;

    let server = TestServer::start_on(&database, |_| {}).await;
    let second: Vec<pb::Generation> = (0..100)
        .map(|i| generation(&format!("b{i}"), "1.0.0", "{}", now))
        .collect();
    log(&server, second.clone()).await;
    let sampled_after: BTreeSet<String> = second
        .iter()
        .map(|g| g.id.clone())
        .filter(|id| documented_sample("steady", id, 0.3))
        .collect();
    let total = (sampled_before.len() + sampled_after.len()) as u64;
    assert_eq!(
        wait_until_scored(&server, "steady", total).await.scored,
        total
    );
    for g in first.iter().chain(&second) {
        let scored = !get_generation(&server, &g.id).await.scores.is_empty();
        let expected = sampled_before.contains(&g.id) || sampled_after.contains(&g.id);
        assert_eq!(scored, expected, "{}", g.id);
    }
}

/// Past `online_queue_limit`, samples are skipped and counted; logging still answers.
#[tokio::test]
async fn a_burst_beyond_the_queue_limit_is_skipped_and_counted() {
    let mock = MockProvider::start(Duration::from_secs(30)).await.unwrap();
    let server = TestServer::start_with(|config| {
        with_mock(&mock)(config);
        config.online_queue_limit = 50;
        config.online_max_concurrency = 1;
    })
    .await;
    create_prompt(&server, "1.0.0").await;
    create(
        &server,
        online(
            "slow",
            1.0,
            vec![metric(
                "helpful",
                "llm_judge",
                serde_json::json!({"judge": "judge-a"}),
            )],
        ),
    )
    .await
    .unwrap();
    let now = Utc::now();
    let burst: Vec<pb::Generation> = (0..200)
        .map(|i| generation(&format!("g{i}"), "1.0.0", "fine", now))
        .collect();
    let logged = tokio::time::timeout(Duration::from_secs(10), log(&server, burst))
        .await
        .expect("logging does not wait for scoring");
    assert_eq!(logged.accepted, 200);
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains("llmops_online_samples_skipped_total 150"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("online"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let depth = server
        .evaluation()
        .get_online_evaluation(pb::GetOnlineEvaluationRequest {
            online_evaluation_id: "slow".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .queue_depth;
    assert_eq!(depth, 50);
    assert_eq!(totals(&server, "slow").await.sampled, 50);
}

/// A window below the evaluation's minimum raises a THRESHOLD alert for that prompt
/// version on Subscribe; the next window within bounds resolves it.
#[tokio::test]
async fn a_bad_window_raises_a_threshold_alert_and_a_good_one_resolves_it() {
    let start = Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 30).unwrap();
    let clock = ManualClock::new(start);
    let server = TestServer::start_at(&clock, |config| {
        config.online_check_interval = Duration::from_millis(100);
    })
    .await;
    create_prompt(&server, "1.1.0").await;
    let mut evaluation = online(
        "live",
        1.0,
        vec![metric(
            "polite",
            "contains",
            serde_json::json!({"value": "please"}),
        )],
    );
    evaluation.min_samples = 10;
    evaluation.thresholds = Some(pb::OnlineThresholds {
        min_pass_rate: Some(0.8),
        ..Default::default()
    });
    create(&server, evaluation).await.unwrap();
    let mut alerts = server
        .alerts()
        .subscribe(pb::SubscribeRequest {
            sources: vec!["online_evaluation".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    // The window [09:00, 10:00): 12 answers, 6 polite.
    let hour_ago = start - chrono::Duration::minutes(45);
    let rude: Vec<pb::Generation> = (0..12)
        .map(|i| {
            let output = if i % 2 == 0 { "please wait" } else { "no" };
            generation(&format!("r{i}"), "1.1.0", output, hour_ago)
        })
        .collect();
    log(&server, rude).await;
    wait_until_scored_around(&server, "live", 12, start).await;
    clock.advance(Duration::from_secs(1));
    let raised = common::eval::next_alert(&mut alerts, pb::AlertEventKind::Created).await;
    assert_eq!(raised.r#type, pb::AlertType::Threshold as i32);
    assert_eq!(raised.source, "online_evaluation");
    assert_eq!(raised.source_id, "live");
    assert_eq!(raised.metric, "pass_rate");
    assert_eq!(raised.labels["prompt"], "support");
    assert_eq!(raised.labels["version"], "1.1.0");
    assert_eq!(raised.labels["model"], "gpt-x");
    assert_eq!(raised.metadata["samples"], "12");
    assert_eq!(raised.actual_value, Some(0.5));

    // The window [10:00, 11:00): every answer polite.
    let polite: Vec<pb::Generation> = (0..12)
        .map(|i| {
            generation(
                &format!("p{i}"),
                "1.1.0",
                "please",
                start + chrono::Duration::minutes(10),
            )
        })
        .collect();
    log(&server, polite).await;
    wait_until_scored_around(&server, "live", 24, start).await;
    clock.set(start + chrono::Duration::hours(1));
    let resolved = common::eval::next_alert(&mut alerts, pb::AlertEventKind::Resolved).await;
    assert_eq!(resolved.id, raised.id);

    // Another bad window, then the evaluation is deleted: its alert goes with it.
    let rude_again: Vec<pb::Generation> = (0..12)
        .map(|i| {
            generation(
                &format!("again{i}"),
                "1.1.0",
                "no",
                start + chrono::Duration::minutes(70),
            )
        })
        .collect();
    log(&server, rude_again).await;
    wait_until_scored_around(&server, "live", 36, start).await;
    clock.set(start + chrono::Duration::hours(2));
    let again = common::eval::next_alert(&mut alerts, pb::AlertEventKind::Created).await;
    assert_eq!(again.metadata["samples"], "12");
    server
        .evaluation()
        .delete_online_evaluation(pb::DeleteOnlineEvaluationRequest {
            online_evaluation_id: "live".into(),
        })
        .await
        .unwrap();
    clock.advance(Duration::from_secs(1));
    let gone = common::eval::next_alert(&mut alerts, pb::AlertEventKind::Resolved).await;
    assert_eq!(gone.id, again.id);
}

/// What the application's loop does: which version it was served, and the quality the
/// scripted judge gives its answer.
struct Script {
    /// Judge scores of the control's (1.0.0) answers.
    control: f64,
    /// Judge scores of the treatment's (1.1.0) answers.
    treatment: f64,
}

/// What [`production_loop`] leaves: the server, the mock, the experiment, the sampled
/// count, the alert stream and the gate's dataset.
type Loop = (
    TestServer,
    MockProvider,
    pb::Experiment,
    u64,
    tonic::Streaming<pb::AlertEvent>,
    String,
);

/// The production loop of issue 19: `production` on 1.0.0 (with `gated`, behind a
/// release gate: a run with `echo` on a one-sample dataset, which 1.1.0 passes once it
/// has been run); a prompt experiment serving it (1.0.0 against 1.1.0) with an online
/// judge score as its primary metric and latency and cost as guardrails, completing
/// itself; an online evaluation of the label at 0.5; 2,000 users rendered and their
/// generations logged.
async fn production_loop(script: Script, gated: bool) -> Loop {
    // The checked window is the last complete hour: start well inside an hour.
    while Utc::now().timestamp().rem_euclid(3600) > 56 * 60 {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let mock = MockProvider::start(Duration::from_millis(1)).await.unwrap();
    let server = TestServer::start_with(|config| {
        with_mock(&mock)(config);
        config.online_check_interval = Duration::from_millis(100);
        config.experiments.alert_check_interval = Duration::from_secs(1);
        config.experiments.min_samples_for_significance = 100;
    })
    .await;
    create_prompt(&server, "1.0.0").await;
    server
        .prompts()
        .set_prompt_label(pb::SetPromptLabelRequest {
            name: "support".into(),
            label: "production".into(),
            version: "1.0.0".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut gate_dataset = String::new();
    if gated {
        gate_dataset = common::eval::dataset(
            &server,
            "gate-set",
            vec![("a", "my order", "Answer briefly: my order")],
        )
        .await;
        server
            .evaluation()
            .set_release_gate(pb::SetReleaseGateRequest {
                gate: Some(pb::ReleaseGate {
                    prompt_name: "support".into(),
                    label: "production".into(),
                    dataset_id: gate_dataset.clone(),
                    model: "echo".into(),
                    min_pass_rate: 0.9,
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }
    let alerts = server
        .alerts()
        .subscribe(pb::SubscribeRequest {
            sources: vec!["online_evaluation".into(), "experiments".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut evaluation = pb::OnlineEvaluation {
        id: "live".into(),
        filter: Some(pb::OnlineEvaluationFilter {
            prompt_name: "support".into(),
            label: "production".into(),
            ..Default::default()
        }),
        sample_rate: 0.5,
        metrics: vec![metric(
            "helpful",
            "llm_judge",
            serde_json::json!({"judge": "judge-a"}),
        )],
        ..Default::default()
    };
    evaluation.thresholds = Some(pb::OnlineThresholds {
        min_pass_rate: Some(0.7),
        ..Default::default()
    });
    create(&server, evaluation).await.unwrap();
    let version = |version: &str, template: &str| pb::PromptVersion {
        name: "support".into(),
        version: version.into(),
        template: template.into(),
        ..Default::default()
    };
    let guardrail = |name: &str, source: pb::MetricSource| pb::MetricDefinition {
        name: name.into(),
        kind: pb::MetricKind::Mean.into(),
        direction: pb::MetricDirection::LowerIsBetter.into(),
        role: pb::MetricRole::Guardrail.into(),
        source: source.into(),
        ..Default::default()
    };
    let experiment = server
        .experiments()
        .create_prompt_experiment(pb::CreatePromptExperimentRequest {
            name: "support 1.1".into(),
            experiment_id: "support-ab".into(),
            control: Some(version("1.0.0", "Answer: {{ input }}")),
            treatment: Some(version("1.1.0", "Answer briefly: {{ input }}")),
            prompt_name: "support".into(),
            label: "production".into(),
            metrics: vec![
                pb::MetricDefinition {
                    name: "quality".into(),
                    kind: pb::MetricKind::Mean.into(),
                    direction: pb::MetricDirection::HigherIsBetter.into(),
                    role: pb::MetricRole::Primary.into(),
                    source: pb::MetricSource::OnlineScore.into(),
                    online_evaluation_id: "live".into(),
                    online_metric: "helpful".into(),
                },
                guardrail("latency", pb::MetricSource::LatencyMs),
                guardrail("cost", pb::MetricSource::Cost),
            ],
            promote_winner: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .experiment
        .unwrap();
    server
        .experiments()
        .start_experiment(pb::StartExperimentRequest {
            experiment_id: experiment.id.clone(),
        })
        .await
        .unwrap();

    // The application: render for each user, call "the model", log what happened.
    let hour = Utc::now().timestamp() - Utc::now().timestamp().rem_euclid(3600);
    let last_hour = Utc.timestamp_opt(hour - 1800, 0).unwrap();
    let mut batch = Vec::new();
    let mut sampled = 0;
    for i in 0..2000u32 {
        let served = server
            .prompts()
            .render_prompt(pb::RenderPromptRequest {
                name: "support".into(),
                label: "production".into(),
                user_id: format!("user-{i}"),
                variables: [("input".to_owned(), common::string_value("my order"))].into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let base = if served.version == "1.0.0" {
            script.control
        } else {
            script.treatment
        };
        let quality = base + f64::from(i % 5) * 0.05;
        let id = format!("gen-{i}");
        if documented_sample("live", &id, 0.5) {
            sampled += 1;
        }
        batch.push(pb::Generation {
            id,
            render_id: served.render_id,
            user_id: format!("user-{i}"),
            model: "gpt-x".into(),
            input: served.text,
            output: format!("Here you go. [[score:{quality:.2}]]"),
            latency_ms: 100.0 + f64::from(i % 7) * 10.0,
            cost: Some(0.001 * f64::from(1 + i % 3)),
            start_time: Some(prost_types::Timestamp {
                seconds: last_hour.timestamp() + i64::from(i % 600),
                nanos: 0,
            }),
            ..Default::default()
        });
        if batch.len() == 100 {
            log(&server, std::mem::take(&mut batch)).await;
        }
    }
    wait_until_scored(&server, "live", sampled).await;
    // Now that every generation is in, the experiment may decide (were it on from the
    // start, it could end mid-loop, and the rest of the traffic would be control's).
    server
        .experiments()
        .update_experiment(pb::UpdateExperimentRequest {
            experiment_id: experiment.id.clone(),
            experiment: Some(pb::Experiment {
                auto_complete: true,
                ..Default::default()
            }),
            update_mask: vec!["auto_complete".into()],
        })
        .await
        .unwrap();
    (server, mock, experiment, sampled, alerts, gate_dataset)
}

/// The experiment named `id`, once it is no longer running.
async fn wait_until_completed(server: &TestServer, id: &str) -> pb::Experiment {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let experiment = server
            .experiments()
            .get_experiment(pb::GetExperimentRequest {
                experiment_id: id.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .experiment
            .unwrap();
        if experiment.status != pb::ExperimentStatus::Running as i32 {
            return experiment;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still running: {experiment:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn production_version(server: &TestServer) -> String {
    server
        .prompts()
        .get_prompt_version(pb::GetPromptVersionRequest {
            name: "support".into(),
            label: "production".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .prompt_version
        .unwrap()
        .version
}

/// Issue 19's loop without a person: the worse treatment is caught live (a THRESHOLD
/// alert for 1.1.0), the experiment recommends control, completes itself, and
/// `production` stays on 1.0.0. Every sampled generation was judged exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worse_treatment_is_caught_live_and_control_is_kept() {
    let (server, mock, experiment, sampled, mut alerts, _) = production_loop(
        Script {
            control: 0.7,
            treatment: 0.3,
        },
        false,
    )
    .await;
    assert!((900..1100).contains(&sampled), "{sampled}");
    assert_eq!(
        mock.requests(),
        sampled,
        "one judge call per sampled generation"
    );

    // Live quality: a THRESHOLD alert for 1.1.0's window, and a REGRESSION against 1.0.0.
    let (mut threshold, mut regression) = (None, None);
    while threshold.is_none() || regression.is_none() {
        let alert = common::eval::next_alert(&mut alerts, pb::AlertEventKind::Created).await;
        if alert.source != "online_evaluation" {
            continue;
        }
        if alert.r#type == pb::AlertType::Threshold as i32 {
            threshold = Some(alert);
        } else if alert.r#type == pb::AlertType::Regression as i32 {
            regression = Some(alert);
        }
    }
    let threshold = threshold.unwrap();
    assert_eq!(threshold.labels["version"], "1.1.0");
    assert_eq!(threshold.labels["experiment"], experiment.id);
    assert_eq!(threshold.actual_value, Some(0.0));
    let regression = regression.unwrap();
    assert_eq!(
        (
            regression.labels["version"].as_str(),
            regression.labels["previous_version"].as_str()
        ),
        ("1.1.0", "1.0.0")
    );

    let done = wait_until_completed(&server, &experiment.id).await;
    assert_eq!(done.status, pb::ExperimentStatus::Completed as i32);
    let control = done.variants.iter().find(|v| v.is_control).unwrap();
    assert_eq!(done.winner_variant_id, control.id);
    assert_eq!(
        done.status_changes.last().unwrap().actor,
        "experiment-monitor"
    );
    let results = server
        .experiments()
        .get_experiment_results(pb::GetExperimentResultsRequest {
            experiment_id: experiment.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        results.recommendation.starts_with("Keep control"),
        "{}",
        results.recommendation
    );
    let quality = results
        .stats
        .iter()
        .filter(|s| s.metric == "quality")
        .map(|s| s.n)
        .sum::<u64>();
    assert_eq!(quality, sampled, "each judged generation recorded once");
    assert_eq!(production_version(&server).await, "1.0.0");
    loop {
        let alert = common::eval::next_alert(&mut alerts, pb::AlertEventKind::Created).await;
        if alert.labels.get("condition").map(String::as_str) == Some("auto_completed") {
            assert!(
                alert.message.contains("stays on 1.0.0"),
                "{}",
                alert.message
            );
            break;
        }
    }
}

/// The same loop with the script reversed, behind a release gate: the treatment wins,
/// the gate refuses to move `production` to 1.1.0 until 1.1.0 has passed its run (the
/// experiment keeps running, an EXPERIMENT alert says why), then the experiment moves
/// it, in the label's history, and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_better_treatment_completes_the_experiment_and_moves_production() {
    let (server, _mock, experiment, _sampled, mut alerts, gate_dataset) = production_loop(
        Script {
            control: 0.3,
            treatment: 0.7,
        },
        true,
    )
    .await;
    loop {
        let alert = common::eval::next_alert(&mut alerts, pb::AlertEventKind::Created).await;
        if alert.labels.get("condition").map(String::as_str) == Some("auto_complete_blocked") {
            assert!(alert.message.contains("1.1.0"), "{}", alert.message);
            break;
        }
    }
    assert_eq!(production_version(&server).await, "1.0.0");
    let still = server
        .experiments()
        .get_experiment(pb::GetExperimentRequest {
            experiment_id: experiment.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .experiment
        .unwrap();
    assert_eq!(still.status, pb::ExperimentStatus::Running as i32);
    // 1.1.0 passes the gate's evaluation; a later check moves the label.
    let run = common::eval::create_run(
        &server,
        common::eval::run(&gate_dataset, "support", "1.1.0", "echo"),
    )
    .await
    .unwrap();
    common::eval::start(&server, &run.id).await.unwrap();
    let states = common::eval::watch(&server, &run.id).await;
    assert_eq!(
        states.last().unwrap().status,
        pb::RunStatus::Completed as i32,
        "{states:?}"
    );
    let done = wait_until_completed(&server, &experiment.id).await;
    assert_eq!(done.status, pb::ExperimentStatus::Completed as i32);
    let treatment = done.variants.iter().find(|v| !v.is_control).unwrap();
    assert_eq!(done.winner_variant_id, treatment.id);
    assert_eq!(production_version(&server).await, "1.1.0");
    let history = server
        .prompts()
        .list_label_history(pb::ListLabelHistoryRequest {
            name: "support".into(),
            label: "production".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let moved = history.last().unwrap();
    assert_eq!(moved.prompt_version.as_ref().unwrap().version, "1.1.0");
    assert_eq!(moved.previous_version, "1.0.0");
    assert_eq!(moved.actor, format!("experiment/{}", experiment.id));
    // The completion is announced, and the refusal's alert is resolved.
    let (mut announced, mut unblocked) = (false, false);
    while !(announced && unblocked) {
        let event = tokio::time::timeout(Duration::from_secs(20), alerts.message())
            .await
            .expect("an alert event arrives")
            .unwrap()
            .unwrap();
        let Some(alert) = event.alert else { continue };
        match alert.labels.get("condition").map(String::as_str) {
            Some("auto_completed") if event.kind == pb::AlertEventKind::Created as i32 => {
                assert!(
                    alert.message.contains("moved to 1.1.0"),
                    "{}",
                    alert.message
                );
                announced = true;
            }
            Some("auto_complete_blocked") if event.kind == pb::AlertEventKind::Resolved as i32 => {
                unblocked = true;
            }
            _ => {}
        }
    }
}

/// A version whose pass rate falls below the previous version's last full window (the
/// one-sided two-proportion z-test) raises a REGRESSION alert with the p-value.
#[tokio::test]
async fn a_version_worse_than_the_previous_one_raises_a_regression_alert() {
    let start = Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 30).unwrap();
    let clock = ManualClock::new(start);
    let server = TestServer::start_at(&clock, |config| {
        config.online_check_interval = Duration::from_millis(100);
    })
    .await;
    create_prompt(&server, "1.0.0").await;
    create_prompt(&server, "1.1.0").await;
    let mut evaluation = online(
        "versions",
        1.0,
        vec![metric(
            "polite",
            "contains",
            serde_json::json!({"value": "please"}),
        )],
    );
    evaluation.min_samples = 20;
    create(&server, evaluation).await.unwrap();
    let mut alerts = server
        .alerts()
        .subscribe(pb::SubscribeRequest {
            sources: vec!["online_evaluation".into()],
            types: vec![pb::AlertType::Regression.into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // In [09:00, 10:00): 1.0.0 passes 27 of 30, 1.1.0 passes 12 of 30.
    let at = start - chrono::Duration::minutes(30);
    let answers = |version: &str, polite: usize| -> Vec<pb::Generation> {
        (0..30)
            .map(|i| {
                let output = if i < polite { "please wait" } else { "no" };
                generation(&format!("{version}-{i}"), version, output, at)
            })
            .collect()
    };
    log(&server, answers("1.0.0", 27)).await;
    log(&server, answers("1.1.0", 12)).await;
    wait_until_scored_around(&server, "versions", 60, start).await;
    clock.advance(Duration::from_secs(1));
    let regression = common::eval::next_alert(&mut alerts, pb::AlertEventKind::Created).await;
    assert_eq!(regression.labels["version"], "1.1.0");
    assert_eq!(regression.labels["previous_version"], "1.0.0");
    assert_eq!(regression.metric, "pass_rate");
    // statsmodels: proportions_ztest([12, 27], [30, 30], alternative="smaller").
    let p: f64 = regression.metadata["p_value"].parse().unwrap();
    assert!(((p - 2.453_743_882_180_160_5e-5) / p).abs() < 1e-9, "{p}");
    assert!(
        regression.message.contains("two-proportion"),
        "{}",
        regression.message
    );
}
