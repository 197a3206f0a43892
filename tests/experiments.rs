//! ExperimentService end to end over real gRPC: lifecycle and error codes, assignment
//! that matches the documented hash, exposures, durable metrics, results, restarts and
//! concurrent recording.

mod common;

use common::backend::{Backend, TestDatabase};

use std::collections::BTreeMap;

use std::sync::Arc;

use common::TestServer;
use llmops::pb;
use llmops_core::ManualClock;
use serde::Deserialize;
use tonic::Code;
use tonic_types::StatusExt;

/// GrowthBook's own answers, from its Python SDK (`growthbook.core`'s `gbhash`,
/// `getBucketRanges` and `chooseVariation`), recorded by
/// `crates/experiments/tests/vectors/generate.py`. The server must give the same: not
/// just what this crate's `assign` computes, which could share its mistakes.
#[derive(Deserialize)]
struct GrowthBook {
    hash: Vec<ReferenceHash>,
    bucket_ranges: Vec<ReferenceRanges>,
    assignments: Vec<ReferenceAssignment>,
}

#[derive(Deserialize)]
struct ReferenceHash {
    seed: String,
    value: String,
    version: u8,
    n: f64,
}

#[derive(Deserialize)]
struct ReferenceRanges {
    num_variations: usize,
    coverage: f64,
    weights: Option<Vec<f64>>,
    ranges: Vec<(f64, f64)>,
}

#[derive(Deserialize)]
struct ReferenceAssignment {
    seed: String,
    user_id: String,
    num_variations: usize,
    coverage: f64,
    weights: Option<Vec<f64>>,
    /// The variant's index, or -1 when coverage leaves the user out.
    variation: i64,
}

impl ReferenceAssignment {
    /// Whether an experiment can be defined this way: a seed of its own (an empty one
    /// means "the id"), an id the server takes, coverage in [0, 1], 2 to 32 variants and
    /// either no weights or one per variant, >= 0, summing to 1 within 0.01. The vectors
    /// also hold inputs the SDK repairs (coverage 1.5, weights [1.2, -0.2]), which the
    /// server refuses instead.
    fn definable(&self) -> bool {
        let weights_ok = self.weights.as_ref().is_none_or(|w| {
            w.len() == self.num_variations
                && w.iter().all(|x| *x >= 0.0)
                && (w.iter().sum::<f64>() - 1.0).abs() <= 0.01
        });
        !self.seed.is_empty()
            && !self.user_id.is_empty()
            && self.user_id.len() <= 256
            && (0.0..=1.0).contains(&self.coverage)
            && (2..=32).contains(&self.num_variations)
            && weights_ok
    }
}

fn growthbook() -> GrowthBook {
    let text = include_str!("../crates/experiments/tests/vectors/growthbook_assignment.json");
    serde_json::from_str(text).expect("the GrowthBook vectors parse")
}

fn fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

fn variant(id: &str, weight: Option<f64>) -> pb::Variant {
    pb::Variant {
        id: id.into(),
        name: id.into(),
        weight,
        ..Default::default()
    }
}

fn metric(
    name: &str,
    kind: pb::MetricKind,
    direction: pb::MetricDirection,
    role: pb::MetricRole,
) -> pb::MetricDefinition {
    pb::MetricDefinition {
        name: name.into(),
        kind: kind.into(),
        direction: direction.into(),
        role: role.into(),
        ..Default::default()
    }
}

/// A two-arm experiment: quality (mean, primary), converted (proportion, secondary),
/// latency (mean, lower is better, guardrail).
fn experiment(id: &str) -> pb::Experiment {
    pb::Experiment {
        id: id.into(),
        name: format!("experiment {id}"),
        variants: vec![variant("control", None), variant("treatment", None)],
        metrics: vec![
            metric(
                "quality",
                pb::MetricKind::Mean,
                pb::MetricDirection::HigherIsBetter,
                pb::MetricRole::Primary,
            ),
            metric(
                "converted",
                pb::MetricKind::Proportion,
                pb::MetricDirection::HigherIsBetter,
                pb::MetricRole::Secondary,
            ),
            metric(
                "latency",
                pb::MetricKind::Mean,
                pb::MetricDirection::LowerIsBetter,
                pb::MetricRole::Guardrail,
            ),
        ],
        min_samples: Some(20),
        ..Default::default()
    }
}

async fn create(
    server: &TestServer,
    experiment: pb::Experiment,
) -> Result<pb::Experiment, tonic::Status> {
    server
        .experiments()
        .create_experiment(pb::CreateExperimentRequest {
            experiment: Some(experiment),
        })
        .await
        .map(|r| r.into_inner().experiment.unwrap())
}

async fn start(server: &TestServer, id: &str) -> Result<pb::Experiment, tonic::Status> {
    server
        .experiments()
        .start_experiment(pb::StartExperimentRequest {
            experiment_id: id.into(),
        })
        .await
        .map(|r| r.into_inner().experiment.unwrap())
}

fn record(id: &str, variant: &str, metric: &str, value: f64) -> pb::RecordMetricRequest {
    pb::RecordMetricRequest {
        experiment_id: id.into(),
        variant_id: variant.into(),
        metric: metric.into(),
        value,
        ..Default::default()
    }
}

async fn results(server: &TestServer, id: &str) -> pb::GetExperimentResultsResponse {
    server
        .experiments()
        .get_experiment_results(pb::GetExperimentResultsRequest {
            experiment_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

fn stats<'a>(
    results: &'a pb::GetExperimentResultsResponse,
    variant: &str,
    metric: &str,
) -> &'a pb::VariantMetricStats {
    results
        .stats
        .iter()
        .find(|s| s.variant_id == variant && s.metric == metric)
        .unwrap()
}

#[tokio::test]
async fn creation_fills_defaults_and_refuses_bad_or_duplicate_definitions() {
    let server = TestServer::start().await;
    let created = create(&server, experiment("exp-1")).await.unwrap();
    assert_eq!(created.status, pb::ExperimentStatus::Draft as i32);
    assert_eq!(created.seed, "exp-1", "the seed defaults to the id");
    assert_eq!(created.coverage, Some(1.0));
    assert_eq!(created.alpha, Some(0.05));
    assert_eq!(created.sequential_tuning, Some(5000.0));
    assert!(
        created.variants[0].is_control,
        "the first variant is control when none is marked"
    );

    let duplicate = create(&server, experiment("exp-1")).await.unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);

    let mut bad = experiment("exp-2");
    bad.name = String::new();
    bad.variants = vec![
        variant("a", Some(0.7)),
        variant("b", Some(0.2)),
        variant("b", Some(0.1)),
    ];
    bad.metrics[1].direction = 0;
    let status = create(&server, bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let found = fields(&status);
    assert!(
        found.contains(&"experiment.metrics[1].direction".to_owned()),
        "{found:?}"
    );

    let mut bad = experiment("exp-3");
    bad.variants = vec![variant("a", Some(0.7)), variant("b", Some(0.2))];
    let status = create(&server, bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("sum to"), "{}", status.message());

    let mut bad = experiment("exp-4");
    bad.variants = vec![variant("a", None), variant("a", None)];
    let status = create(&server, bad).await.unwrap_err();
    assert!(fields(&status).contains(&"experiment.variants[1].id".to_owned()));

    let missing = server
        .experiments()
        .get_experiment(pb::GetExperimentRequest {
            experiment_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    // Nothing of the refused experiments was stored.
    let listed = server
        .experiments()
        .list_experiments(pb::ListExperimentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.experiments.len(), 1);
}

#[tokio::test]
async fn the_lifecycle_allows_only_its_moves() {
    let server = TestServer::start().await;
    let mut client = server.experiments();
    create(&server, experiment("life")).await.unwrap();
    let id = || "life".to_owned();

    let early = client
        .assign_variant(pb::AssignVariantRequest {
            experiment_id: id(),
            user_id: "u".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        early.code(),
        Code::FailedPrecondition,
        "no assignment in draft"
    );
    let early = client
        .record_metric(record("life", "control", "quality", 1.0))
        .await
        .unwrap_err();
    assert_eq!(
        early.code(),
        Code::FailedPrecondition,
        "no metrics in draft"
    );

    let running = start(&server, "life").await.unwrap();
    assert!(running.start_time.is_some());
    client
        .pause_experiment(pb::PauseExperimentRequest {
            experiment_id: id(),
        })
        .await
        .unwrap();
    let paused = client
        .assign_variant(pb::AssignVariantRequest {
            experiment_id: id(),
            user_id: "u".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(paused.code(), Code::FailedPrecondition);
    client
        .record_metric(record("life", "control", "quality", 1.0))
        .await
        .expect("late metrics are recorded while paused");
    start(&server, "life").await.expect("paused -> running");

    let bad_winner = client
        .complete_experiment(pb::CompleteExperimentRequest {
            experiment_id: id(),
            winner_variant_id: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_winner.code(), Code::InvalidArgument);
    let completed = client
        .complete_experiment(pb::CompleteExperimentRequest {
            experiment_id: id(),
            winner_variant_id: "treatment".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .experiment
        .unwrap();
    assert_eq!(completed.winner_variant_id, "treatment");
    assert!(completed.end_time.is_some());

    let restart = start(&server, "life").await.unwrap_err();
    assert_eq!(restart.code(), Code::FailedPrecondition);
    assert!(
        restart.message().contains("completed") && restart.message().contains("running"),
        "{}",
        restart.message()
    );
    let cancel = client
        .cancel_experiment(pb::CancelExperimentRequest {
            experiment_id: id(),
        })
        .await
        .unwrap_err();
    assert_eq!(cancel.code(), Code::FailedPrecondition);
    let late = client
        .record_metric(record("life", "control", "quality", 1.0))
        .await
        .unwrap_err();
    assert_eq!(
        late.code(),
        Code::FailedPrecondition,
        "no metrics once completed"
    );
}

#[tokio::test]
async fn started_experiments_change_only_coverage_description_and_metadata() {
    let server = TestServer::start().await;
    let mut client = server.experiments();
    let mut definition = experiment("upd");
    definition.coverage = Some(0.5);
    create(&server, definition).await.unwrap();
    let update = |experiment: pb::Experiment, mask: &[&str]| pb::UpdateExperimentRequest {
        experiment_id: "upd".into(),
        experiment: Some(experiment),
        update_mask: mask.iter().map(|m| m.to_string()).collect(),
    };
    let draft = client
        .update_experiment(update(
            pb::Experiment {
                variants: vec![variant("a", Some(0.5)), variant("b", Some(0.5))],
                ..Default::default()
            },
            &["variants"],
        ))
        .await
        .unwrap()
        .into_inner()
        .experiment
        .unwrap();
    assert_eq!(draft.variants[1].id, "b");

    start(&server, "upd").await.unwrap();
    let frozen = client
        .update_experiment(update(
            pb::Experiment {
                variants: vec![variant("x", None), variant("y", None)],
                ..Default::default()
            },
            &["variants"],
        ))
        .await
        .unwrap_err();
    assert_eq!(frozen.code(), Code::FailedPrecondition);
    let lower = client
        .update_experiment(update(
            pb::Experiment {
                coverage: Some(0.2),
                ..Default::default()
            },
            &["coverage"],
        ))
        .await
        .unwrap_err();
    assert_eq!(lower.code(), Code::FailedPrecondition);

    // Users in at 50% coverage keep their variant when coverage rises.
    let mut before = Vec::new();
    for i in 0..200 {
        let user = format!("user-{i}");
        let answer = client
            .assign_variant(pb::AssignVariantRequest {
                experiment_id: "upd".into(),
                user_id: user.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        before.push((user, answer.in_experiment, answer.variant.unwrap().id));
    }
    let raised = client
        .update_experiment(update(
            pb::Experiment {
                coverage: Some(1.0),
                description: "all in".into(),
                ..Default::default()
            },
            &["coverage", "description"],
        ))
        .await
        .unwrap()
        .into_inner()
        .experiment
        .unwrap();
    assert_eq!(
        (raised.coverage, raised.description.as_str()),
        (Some(1.0), "all in")
    );
    for (user, was_in, was) in before {
        let answer = client
            .assign_variant(pb::AssignVariantRequest {
                experiment_id: "upd".into(),
                user_id: user.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(answer.in_experiment, "everyone is in at full coverage");
        if was_in {
            assert_eq!(answer.variant.unwrap().id, was, "{user} kept its variant");
        }
    }
}

#[tokio::test]
async fn assignment_equals_growthbooks_sdk_and_counts_each_user_once() {
    let server = TestServer::start().await;
    let mut client = server.experiments();
    let cases: Vec<ReferenceAssignment> = growthbook()
        .assignments
        .into_iter()
        .filter(ReferenceAssignment::definable)
        .collect();
    // Seeds and ids with non-ASCII text, weights, partial and zero coverage, up to 10
    // variants: the filter must not leave only the easy cases.
    assert!(cases.len() >= 400, "{} reference cases", cases.len());
    assert!(cases
        .iter()
        .any(|c| !c.user_id.is_ascii() && c.variation >= 0));
    assert!(cases.iter().any(|c| !c.seed.is_ascii() && c.variation >= 0));
    for (i, case) in cases.iter().enumerate() {
        // One experiment per case: each has its own seed, variants and split.
        let id = format!("hash-{i}");
        let mut definition = experiment(&id);
        definition.seed = case.seed.clone();
        definition.coverage = Some(case.coverage);
        definition.variants = (0..case.num_variations)
            .map(|v| variant(&format!("v{v}"), case.weights.as_ref().map(|w| w[v])))
            .collect();
        create(&server, definition).await.unwrap();
        start(&server, &id).await.unwrap();
        let label = format!(
            "seed {:?}, user {:?}, {} variants, coverage {}, weights {:?}",
            case.seed, case.user_id, case.num_variations, case.coverage, case.weights
        );
        let reference = usize::try_from(case.variation).ok();
        for _ in 0..2 {
            let answer = client
                .assign_variant(pb::AssignVariantRequest {
                    experiment_id: id.clone(),
                    user_id: case.user_id.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(answer.in_experiment, reference.is_some(), "{label}");
            let variant = answer.variant.unwrap().id;
            match reference {
                Some(index) => assert_eq!(variant, format!("v{index}"), "{label}"),
                None => assert_eq!(variant, "v0", "{label}: users outside coverage get control"),
            }
        }
        let mut exposed = vec![0u64; case.num_variations];
        if let Some(index) = reference {
            exposed[index] = 1;
        }
        assert_eq!(
            results(&server, &id).await.srm.unwrap().observed,
            exposed,
            "{label}: a user is one exposure, however often assigned"
        );
    }

    let empty = client
        .assign_variant(pb::AssignVariantRequest {
            experiment_id: "hash-0".into(),
            user_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    let long = client
        .assign_variant(pb::AssignVariantRequest {
            experiment_id: "hash-0".into(),
            user_id: "x".repeat(257),
        })
        .await
        .unwrap_err();
    assert_eq!(long.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn locally_assigned_exposures_must_agree_with_the_hash() {
    let server = TestServer::start().await;
    let mut client = server.experiments();
    // Users whose hashes under this seed GrowthBook's SDK recorded, placed in the SDK's
    // own ranges for an even two-way split at full coverage.
    const SEED: &str = "sequential";
    let vectors = growthbook();
    let ranges = &vectors
        .bucket_ranges
        .iter()
        .find(|r| r.num_variations == 2 && r.coverage == 1.0 && r.weights.is_none())
        .expect("the vectors hold the even split")
        .ranges;
    let reference: BTreeMap<&str, usize> = vectors
        .hash
        .iter()
        .filter(|h| h.seed == SEED && h.version == 2)
        .map(|h| {
            let index = ranges
                .iter()
                .position(|&(start, end)| start <= h.n && h.n < end)
                .expect("full coverage places everyone");
            (h.value.as_str(), index)
        })
        .collect();
    let users = ["user-0", "user-1", "user-2"];
    assert_eq!(
        users.map(|u| reference[u]),
        [1, 0, 1],
        "the vectors put them on both sides"
    );
    let mut definition = experiment("local");
    definition.seed = SEED.into();
    create(&server, definition).await.unwrap();
    start(&server, "local").await.unwrap();
    let names = ["control", "treatment"];
    let right = |user: &str| names[reference[user]].to_owned();
    let wrong = |user: &str| names[1 - reference[user]].to_owned();

    let refused = client
        .record_exposures(pb::RecordExposuresRequest {
            experiment_id: "local".into(),
            exposures: vec![
                pb::Exposure {
                    user_id: users[0].into(),
                    variant_id: right(users[0]),
                },
                pb::Exposure {
                    user_id: users[1].into(),
                    variant_id: wrong(users[1]),
                },
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(fields(&refused), vec!["exposures[1].variant_id".to_owned()]);
    assert_eq!(
        results(&server, "local").await.srm.unwrap().observed,
        vec![0, 0],
        "nothing recorded"
    );

    let exposures = users
        .map(|u| pb::Exposure {
            user_id: u.into(),
            variant_id: right(u),
        })
        .to_vec();
    let first = client
        .record_exposures(pb::RecordExposuresRequest {
            experiment_id: "local".into(),
            exposures: exposures.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((first.recorded, first.already_exposed), (3, 0));
    let again = client
        .record_exposures(pb::RecordExposuresRequest {
            experiment_id: "local".into(),
            exposures,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.recorded, again.already_exposed), (0, 3));
}

/// Deterministic values with a clear quality gain for treatment.
fn quality(variant: &str, i: usize) -> f64 {
    let base = if variant == "treatment" { 0.8 } else { 0.6 };
    base + ((i * 7919) % 100) as f64 / 1000.0
}

async fn recorded_metrics_drive_results_and_a_justified_recommendation(backend: Backend) {
    let server = TestServer::start_on_backend(backend, |_| {}).await;
    let mut client = server.experiments();
    create(&server, experiment("ab")).await.unwrap();
    start(&server, "ab").await.unwrap();

    let mut records = Vec::new();
    for v in ["control", "treatment"] {
        for i in 0..60 {
            records.push(record("ab", v, "quality", quality(v, i)));
            records.push(record(
                "ab",
                v,
                "converted",
                f64::from(u8::from(i % 3 == 0)),
            ));
            records.push(record("ab", v, "latency", 1000.0 + ((i * 31) % 50) as f64));
        }
    }
    let answer = client
        .record_metrics(pb::RecordMetricsRequest { records })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.recorded, 360);

    let bad = client
        .record_metrics(pb::RecordMetricsRequest {
            records: vec![
                record("ab", "control", "quality", 0.5),
                record("ab", "control", "converted", 0.5),
                record("ab", "control", "unknown", 1.0),
                record("ab", "nope", "quality", f64::NAN),
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let bad_fields = fields(&bad);
    for field in [
        "records[1].value",
        "records[2].metric",
        "records[3].variant_id",
        "records[3].value",
    ] {
        assert!(
            bad_fields.contains(&field.to_owned()),
            "{field} in {bad_fields:?}"
        );
    }

    let results = results(&server, "ab").await;
    let control = stats(&results, "control", "quality");
    assert_eq!(control.n, 60, "the refused batch changed nothing");
    let expected_mean = (0..60).map(|i| quality("control", i)).sum::<f64>() / 60.0;
    assert!((control.mean - expected_mean).abs() < 1e-12);
    assert!((stats(&results, "treatment", "converted").mean - 20.0 / 60.0).abs() < 1e-12);

    let lift = results
        .comparisons
        .iter()
        .find(|c| c.variant_id == "treatment" && c.metric == "quality")
        .unwrap();
    let relative = lift.relative.as_ref().unwrap();
    assert!(relative.computable && relative.estimate > 0.3 && relative.p_value < 1e-6);
    assert!(
        lift.adjusted_p_value.unwrap() >= relative.p_value,
        "Holm never lowers a p-value"
    );
    let converted = results
        .comparisons
        .iter()
        .find(|c| c.metric == "converted")
        .unwrap();
    assert!(
        !converted.significant,
        "equal conversion is not significant"
    );
    assert_eq!(results.winner_variant_id, "treatment");
    assert!(
        results
            .recommendation
            .starts_with("Deploy variant treatment with ")
            && results.recommendation.ends_with("% confidence"),
        "{}",
        results.recommendation
    );
    assert!(
        results.reasons[0].contains("improves quality"),
        "{:?}",
        results.reasons
    );
}

#[tokio::test]
async fn too_few_samples_or_a_worse_guardrail_block_the_winner() {
    let server = TestServer::start().await;
    let mut client = server.experiments();
    let mut definition = experiment("guard");
    definition.min_samples = Some(1000);
    create(&server, definition).await.unwrap();
    start(&server, "guard").await.unwrap();
    let mut records = Vec::new();
    for v in ["control", "treatment"] {
        for i in 0..60 {
            records.push(record("guard", v, "quality", quality(v, i)));
            let slow = if v == "treatment" { 500.0 } else { 0.0 };
            records.push(record(
                "guard",
                v,
                "latency",
                1000.0 + slow + ((i * 31) % 50) as f64,
            ));
        }
    }
    client
        .record_metrics(pb::RecordMetricsRequest { records })
        .await
        .unwrap();
    let results = results(&server, "guard").await;
    assert_eq!(results.winner_variant_id, "");
    assert_eq!(
        results.recommendation,
        "Continue experiment - insufficient confidence"
    );
    let reasons = results.reasons.join("\n");
    assert!(
        reasons.contains("not enough samples on quality"),
        "{reasons}"
    );
    assert!(
        reasons.contains("guardrail latency is significantly worse in treatment"),
        "{reasons}"
    );
}

async fn retried_records_with_an_id_count_once(backend: Backend) {
    let server = TestServer::start_on_backend(backend, |_| {}).await;
    let mut client = server.experiments();
    create(&server, experiment("idem")).await.unwrap();
    start(&server, "idem").await.unwrap();
    let mut retried = record("idem", "control", "quality", 0.9);
    retried.record_id = "req-1".into();
    assert!(
        client
            .record_metric(retried.clone())
            .await
            .unwrap()
            .into_inner()
            .recorded
    );
    assert!(
        !client
            .record_metric(retried.clone())
            .await
            .unwrap()
            .into_inner()
            .recorded
    );
    let batch = client
        .record_metrics(pb::RecordMetricsRequest {
            records: vec![retried.clone(), retried],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((batch.recorded, batch.duplicates), (0, 2));
    assert_eq!(
        stats(&results(&server, "idem").await, "control", "quality").n,
        1
    );
}

#[tokio::test]
async fn a_stream_of_records_is_ingested_in_full() {
    let server = TestServer::start().await;
    let mut client = server.experiments();
    create(&server, experiment("stream")).await.unwrap();
    start(&server, "stream").await.unwrap();
    let records: Vec<_> = (0..2500)
        .map(|i| {
            record(
                "stream",
                ["control", "treatment"][i % 2],
                "quality",
                (i % 10) as f64 / 10.0,
            )
        })
        .collect();
    let answer = client
        .ingest_metrics(tokio_stream::iter(records))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.recorded, 2500);
    let results = results(&server, "stream").await;
    assert_eq!(stats(&results, "control", "quality").n, 1250);
    assert_eq!(stats(&results, "treatment", "quality").n, 1250);

    let bad: Vec<_> = (0..1500)
        .map(|i| {
            record(
                "stream",
                "control",
                "quality",
                if i == 1200 { f64::INFINITY } else { 0.5 },
            )
        })
        .collect();
    let status = client
        .ingest_metrics(tokio_stream::iter(bad))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        fields(&status),
        vec!["records[1200].value".to_owned()],
        "named by its place in the stream"
    );
}

async fn many_clients_recording_at_once_are_counted_exactly(backend: Backend) {
    let server = TestServer::start_on_backend(backend, |_| {}).await;
    create(&server, experiment("busy")).await.unwrap();
    start(&server, "busy").await.unwrap();
    let mut tasks = Vec::new();
    for client_index in 0..16 {
        let mut client = server.experiments();
        tasks.push(tokio::spawn(async move {
            for i in 0..100 {
                let variant = ["control", "treatment"][(client_index + i) % 2];
                client
                    .record_metric(record("busy", variant, "quality", 1.0))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let results = results(&server, "busy").await;
    let total = stats(&results, "control", "quality").n + stats(&results, "treatment", "quality").n;
    assert_eq!(total, 1600);
    assert_eq!(stats(&results, "control", "quality").n, 800);
}

async fn experiments_exposures_and_statistics_survive_a_restart(backend: Backend) {
    let dir = TestDatabase::new(backend).await;
    let server = TestServer::start_on(&dir, |_| {}).await;
    let mut definition = experiment("durable");
    definition.analysis_unit = pb::AnalysisUnit::User.into();
    create(&server, definition).await.unwrap();
    start(&server, "durable").await.unwrap();
    let mut client = server.experiments();
    for i in 0..50 {
        let user = format!("user-{i}");
        let variant = client
            .assign_variant(pb::AssignVariantRequest {
                experiment_id: "durable".into(),
                user_id: user.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .variant
            .unwrap()
            .id;
        for value in [0.2, 0.4] {
            let mut r = record("durable", &variant, "quality", value + i as f64 / 100.0);
            r.user_id = user.clone();
            client.record_metric(r).await.unwrap();
        }
    }
    let missing_user = client
        .record_metric(record("durable", "control", "quality", 1.0))
        .await
        .unwrap_err();
    assert_eq!(
        fields(&missing_user),
        vec!["user_id".to_owned()],
        "per-user analysis needs the user"
    );
    let before = results(&server, "durable").await;
    server.stop().await;

    let server = TestServer::start_on(&dir, |_| {}).await;
    let after = results(&server, "durable").await;
    assert_eq!(
        after.experiment.as_ref().unwrap().status,
        pb::ExperimentStatus::Running as i32
    );
    assert_eq!(after.stats, before.stats, "statistics are rebuilt exactly");
    assert_eq!(after.srm, before.srm);
    let users: u64 = after.srm.as_ref().unwrap().observed.iter().sum();
    assert_eq!(users, 50);
    let control = stats(&after, "control", "quality");
    assert_eq!(
        control.n + stats(&after, "treatment", "quality").n,
        50,
        "n counts users"
    );

    // A known user keeps the variant and adds no exposure.
    let mut client = server.experiments();
    client
        .assign_variant(pb::AssignVariantRequest {
            experiment_id: "durable".into(),
            user_id: "user-3".into(),
        })
        .await
        .unwrap();
    assert_eq!(results(&server, "durable").await.srm, after.srm);
}

#[tokio::test]
async fn prompt_experiments_register_prompts_and_model_experiments_split_evenly() {
    let server = TestServer::start_with(|config| {
        for name in ["small", "large"] {
            config.providers.push(llmops::config::ProviderConfig {
                name: name.into(),
                kind: "openai".into(),
                base_url: "http://127.0.0.1:9/v1".into(),
                model: format!("{name}-model"),
                api_key_env: None,
                max_concurrency: None,
                requests_per_minute: None,
                input_price_per_1k: None,
                output_price_per_1k: None,
                parameters: Default::default(),
                timeout: std::time::Duration::from_secs(5),
                max_retries: 0,
                score: None,
                health_url: None,
            });
        }
    })
    .await;
    let mut client = server.experiments();
    let prompt = |version: &str, template: &str| pb::PromptVersion {
        name: "greeting".into(),
        version: version.into(),
        template: template.into(),
        ..Default::default()
    };
    let request = |id: &str, treatment: pb::PromptVersion| pb::CreatePromptExperimentRequest {
        name: "greeting test".into(),
        control: Some(prompt("1.0.0", "Hello {{name}}")),
        treatment: Some(treatment),
        treatment_share: Some(0.2),
        experiment_id: id.into(),
        description: String::new(),
        ..Default::default()
    };
    let created = client
        .create_prompt_experiment(request("p1", prompt("1.1.0", "Hi there, {{name}}!")))
        .await
        .unwrap()
        .into_inner()
        .experiment
        .unwrap();
    let weights: Vec<_> = created.variants.iter().map(|v| v.weight.unwrap()).collect();
    assert!((weights[0] - 0.8).abs() < 1e-12 && (weights[1] - 0.2).abs() < 1e-12);
    assert_eq!(created.variants[1].prompt_version, "1.1.0");
    let primary: Vec<_> = created
        .metrics
        .iter()
        .filter(|m| m.role == pb::MetricRole::Primary as i32)
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(primary, ["quality"]);
    let registered = server
        .prompts()
        .get_prompt_version(pb::GetPromptVersionRequest {
            name: "greeting".into(),
            version: "1.1.0".into(),
            label: String::new(),
            user_id: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(
        registered.into_inner().prompt_version.unwrap().template,
        "Hi there, {{name}}!"
    );

    // Identical versions are reused; a different template under a taken version is refused.
    client
        .create_prompt_experiment(request("p2", prompt("1.1.0", "Hi there, {{name}}!")))
        .await
        .expect("identical versions are reused");
    let clash = client
        .create_prompt_experiment(request("p3", prompt("1.1.0", "Yo {{name}}")))
        .await
        .unwrap_err();
    assert_eq!(clash.code(), Code::AlreadyExists);
    assert!(
        clash.message().contains("different template"),
        "{}",
        clash.message()
    );

    let models = client
        .create_model_experiment(pb::CreateModelExperimentRequest {
            name: "models".into(),
            models: vec!["small".into(), "large".into(), "echo".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .experiment
        .unwrap();
    assert_eq!(models.variants.len(), 3);
    assert!(models.variants[0].is_control && models.variants.iter().all(|v| v.weight.is_none()));
    let cost = models.metrics.iter().find(|m| m.name == "cost").unwrap();
    assert_eq!(cost.direction, pb::MetricDirection::LowerIsBetter as i32);
    let one = client
        .create_model_experiment(pb::CreateModelExperimentRequest {
            name: "one".into(),
            models: vec!["solo".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(one.code(), Code::InvalidArgument);
    let unknown = client
        .create_model_experiment(pb::CreateModelExperimentRequest {
            name: "unknown".into(),
            models: vec!["small".into(), "gpt-9".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert_eq!(fields(&unknown), vec!["variants[1].model".to_owned()]);
}

/// A proportion of 30 ones in 300 summed to 30.00000000000003 (a running mean), so two
/// variants with identical data differed and the tie counted as an improvement. Sums are
/// exact, and an exact tie is neither better nor worse (as in gbstats: estimate 0).
#[tokio::test]
async fn identical_variants_tie_exactly() {
    let server = TestServer::start().await;
    create(&server, experiment("tie")).await.unwrap();
    start(&server, "tie").await.unwrap();
    let records: Vec<_> = ["control", "treatment"]
        .into_iter()
        .flat_map(|variant| {
            // The same values, in the opposite order for the treatment.
            let order: Vec<usize> = if variant == "control" {
                (0..300).collect()
            } else {
                (0..300).rev().collect()
            };
            order.into_iter().flat_map(move |i| {
                [
                    record(
                        "tie",
                        variant,
                        "converted",
                        f64::from(u8::from(i % 10 == 0)),
                    ),
                    record("tie", variant, "quality", [0.1, 0.7, 0.2][i % 3]),
                ]
            })
        })
        .collect();
    for chunk in records.chunks(500) {
        server
            .experiments()
            .record_metrics(pb::RecordMetricsRequest {
                records: chunk.to_vec(),
            })
            .await
            .unwrap();
    }
    let results = results(&server, "tie").await;
    for variant in ["control", "treatment"] {
        let converted = stats(&results, variant, "converted");
        assert_eq!((converted.n, converted.sum), (300, 30.0), "{converted:?}");
        assert_eq!(converted.mean, 0.1);
    }
    for metric in ["converted", "quality"] {
        let comparison = results
            .comparisons
            .iter()
            .find(|c| c.metric == metric)
            .unwrap();
        let absolute = comparison.absolute.as_ref().unwrap();
        assert_eq!(absolute.estimate, 0.0, "{metric}: {comparison:?}");
        assert!(!comparison.improves, "{metric}: a tie is no improvement");
        assert!(!comparison.significant, "{metric}");
    }
}

/// A refused prompt experiment writes nothing: not the control version, not the prompt,
/// not the experiment (before, a valid control stayed registered and active).
/// Prompt experiments racing for one id: exactly one is created, and the losers' versions
/// are not left behind in the registry (the versions and the experiment are stored under
/// one lock, after the id is known to be free).
async fn racing_prompt_experiments_for_one_id_leave_only_the_winners_versions(backend: Backend) {
    let server = TestServer::start_on_backend(backend, |_| {}).await;
    let attempts: Vec<_> = (0..8)
        .map(|i| {
            let mut client = server.experiments();
            tokio::spawn(async move {
                let version = |version: &str, template: String| pb::PromptVersion {
                    name: "raced".into(),
                    version: version.into(),
                    template,
                    ..Default::default()
                };
                client
                    .create_prompt_experiment(pb::CreatePromptExperimentRequest {
                        experiment_id: "one-id".into(),
                        name: "race".into(),
                        control: Some(version("1.0.0", "Hello {{ name }}".into())),
                        treatment: Some(version(
                            &format!("2.0.{i}"),
                            format!("Hi {{{{ name }}}} #{i}"),
                        )),
                        ..Default::default()
                    })
                    .await
            })
        })
        .collect();
    let mut created = Vec::new();
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(response) => created.push(response.into_inner().experiment.unwrap()),
            Err(status) => assert_eq!(status.code(), Code::AlreadyExists, "{status:?}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one wins");
    let winner = created[0].variants[1].prompt_version.clone();
    let versions: Vec<String> = server
        .prompts()
        .list_prompt_versions(pb::ListPromptVersionsRequest {
            name: "raced".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .prompt_versions
        .into_iter()
        .map(|v| v.version)
        .collect();
    let mut versions = versions;
    versions.sort();
    assert_eq!(versions, ["1.0.0".to_owned(), winner]);
}

#[tokio::test]
async fn a_refused_prompt_experiment_writes_nothing() {
    let server = TestServer::start().await;
    let mut client = server.experiments();
    let prompt = |name: &str, version: &str, template: &str| pb::PromptVersion {
        name: name.into(),
        version: version.into(),
        template: template.into(),
        ..Default::default()
    };
    let request = |control: pb::PromptVersion, treatment: pb::PromptVersion| {
        pb::CreatePromptExperimentRequest {
            name: "half".into(),
            control: Some(control),
            treatment: Some(treatment),
            experiment_id: "half".into(),
            ..Default::default()
        }
    };
    let refused = client
        .create_prompt_experiment(request(
            prompt("fresh", "1.0.0", "Hello {{ name }}"),
            prompt("fresh", "", "Hi {{ name }}"),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(fields(&refused), vec!["treatment.version".to_owned()]);

    // A treatment that clashes with a stored version is refused the same way.
    server
        .prompts()
        .create_prompt_version(pb::CreatePromptVersionRequest {
            prompt_version: Some(prompt("taken", "2.0.0", "stored {{ x }}")),
        })
        .await
        .unwrap();
    let clash = client
        .create_prompt_experiment(request(
            prompt("fresh", "1.0.0", "Hello {{ name }}"),
            prompt("taken", "2.0.0", "different {{ x }}"),
        ))
        .await
        .unwrap_err();
    assert_eq!(clash.code(), Code::AlreadyExists);

    let prompts = server
        .prompts()
        .list_prompts(pb::ListPromptsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .prompts;
    let names: Vec<_> = prompts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["taken"],
        "nothing of the refused requests was written"
    );
    let missing = client
        .get_experiment(pb::GetExperimentRequest {
            experiment_id: "half".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

/// The experiment monitor's interval in the tests that move its clock.
const CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Lets the experiment monitor check five more times.
async fn let_checks_run(clock: &ManualClock) {
    for _ in 0..5 {
        clock.advance(CHECK_INTERVAL);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_sample_ratio_mismatch_blocks_the_winner_and_raises_one_warning() {
    let clock = ManualClock::starting_now();
    let server = TestServer::start_at(&clock, |config| {
        config.experiments.alert_check_interval = CHECK_INTERVAL;
    })
    .await;
    let mut client = server.experiments();
    create(&server, experiment("srm")).await.unwrap();
    start(&server, "srm").await.unwrap();
    // 300 users, all of whom hash to control: a broken 50/50 split. The server finds
    // them in a second experiment with the same seed and split (assignment itself is
    // checked against GrowthBook's SDK above); assigning them in "srm" would add
    // exposures there.
    let mut probe = experiment("srm-probe");
    probe.seed = "srm".into();
    create(&server, probe).await.unwrap();
    start(&server, "srm-probe").await.unwrap();
    let mut exposures = Vec::new();
    for i in 0.. {
        let user = format!("user-{i}");
        let answer = client
            .assign_variant(pb::AssignVariantRequest {
                experiment_id: "srm-probe".into(),
                user_id: user.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        if answer.variant.unwrap().id == "control" {
            exposures.push(pb::Exposure {
                user_id: user,
                variant_id: "control".into(),
            });
            if exposures.len() == 300 {
                break;
            }
        }
    }
    client
        .record_exposures(pb::RecordExposuresRequest {
            experiment_id: "srm".into(),
            exposures,
        })
        .await
        .unwrap();
    let mut records = Vec::new();
    for v in ["control", "treatment"] {
        for i in 0..60 {
            records.push(record("srm", v, "quality", quality(v, i)));
        }
    }
    client
        .record_metrics(pb::RecordMetricsRequest { records })
        .await
        .unwrap();

    let results = results(&server, "srm").await;
    let srm = results.srm.unwrap();
    assert!(srm.detected && srm.p_value < 1e-10, "{srm:?}");
    assert_eq!(srm.observed, vec![300, 0]);
    assert_eq!(
        results.winner_variant_id, "",
        "no winner while the split is broken"
    );
    assert!(
        results.reasons[0].starts_with("sample ratio mismatch"),
        "{:?}",
        results.reasons
    );

    // The monitor raises it once (checked several times meanwhile).
    let list = || pb::ListAlertsRequest {
        source: "experiments".into(),
        source_id: "srm".into(),
        ..Default::default()
    };
    let mut alerts = Vec::new();
    for _ in 0..100 {
        alerts = server
            .alerts()
            .list_alerts(list())
            .await
            .unwrap()
            .into_inner()
            .alerts;
        if !alerts.is_empty() {
            break;
        }
        clock.advance(CHECK_INTERVAL);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let_checks_run(&clock).await;
    let alerts = {
        let again = server
            .alerts()
            .list_alerts(list())
            .await
            .unwrap()
            .into_inner()
            .alerts;
        assert_eq!(again.len(), alerts.len());
        again
    };
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].severity, pb::AlertSeverity::Warning as i32);
    assert_eq!(
        alerts[0].occurrences, 1,
        "a persisting condition is not raised again"
    );
    assert!(alerts[0].message.contains("sample ratio mismatch"));
}

/// The winner alert was raised again at every start (its occurrences grew by one per
/// restart). A restart creates or updates no alert by itself: the monitor starts from
/// the open experiment alerts.
#[tokio::test]
async fn restarts_do_not_raise_the_winner_alert_again() {
    let data_dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let on_clock = || -> Arc<dyn llmops_core::Clock> { Arc::new(clock.clone()) };
    let fast_checks = |config: &mut llmops::config::Config| {
        config.experiments.alert_check_interval = CHECK_INTERVAL;
    };
    let server = TestServer::start_on_clock(data_dir.path(), on_clock(), fast_checks).await;
    create(&server, experiment("win")).await.unwrap();
    start(&server, "win").await.unwrap();
    let mut records = Vec::new();
    for v in ["control", "treatment"] {
        for i in 0..60 {
            records.push(record("win", v, "quality", quality(v, i)));
        }
    }
    server
        .experiments()
        .record_metrics(pb::RecordMetricsRequest { records })
        .await
        .unwrap();
    let list = || pb::ListAlertsRequest {
        source: "experiments".into(),
        source_id: "win".into(),
        ..Default::default()
    };
    let winner_alert = |alerts: Vec<pb::Alert>| {
        alerts
            .into_iter()
            .find(|a| a.labels.get("condition").map(String::as_str) == Some("winner"))
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let first = loop {
        let alerts = server.alerts().list_alerts(list()).await.unwrap();
        if let Some(alert) = winner_alert(alerts.into_inner().alerts) {
            break alert;
        }
        assert!(tokio::time::Instant::now() < deadline, "no winner alert");
        clock.advance(CHECK_INTERVAL);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(first.occurrences, 1);
    server.stop().await;

    for _ in 0..3 {
        let server = TestServer::start_on_clock(data_dir.path(), on_clock(), fast_checks).await;
        // Several checks run; the one that follows the start must find the alert open.
        let mut events = server
            .alerts()
            .subscribe(pb::SubscribeRequest {
                after_sequence: Some(0),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let_checks_run(&clock).await;
        let alert = winner_alert(
            server
                .alerts()
                .list_alerts(list())
                .await
                .unwrap()
                .into_inner()
                .alerts,
        )
        .expect("the winner alert is still open");
        assert_eq!(alert.occurrences, 1, "a restart raised it again");
        // The feed holds only the first creation: nothing was appended at the start.
        let mut sequences = Vec::new();
        while let Ok(Ok(Some(event))) =
            tokio::time::timeout(std::time::Duration::from_millis(200), events.message()).await
        {
            if event.kind != pb::AlertEventKind::Heartbeat as i32 {
                sequences.push(event.sequence);
            }
        }
        assert_eq!(sequences.len(), 1, "events after restarts: {sequences:?}");
        server.stop().await;
    }
}

/// A NUL in a user or record id is refused with the field on every backend (PostgreSQL's
/// text cannot hold one; it must not surface as a retryable database failure).
async fn nul_characters_in_user_and_record_ids_are_refused(backend: Backend) {
    let server = TestServer::start_on_backend(backend, |_| {}).await;
    common::process::start_quality_experiment(server.channel.clone(), "nul").await;
    let refused = server
        .experiments()
        .assign_variant(pb::AssignVariantRequest {
            experiment_id: "nul".into(),
            user_id: "u\0".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert_eq!(common::eval::fields(&refused), ["user_id"]);
    for (user_id, record_id, field) in [("u\0", "r", "user_id"), ("u", "r\0", "record_id")] {
        let refused = server
            .experiments()
            .record_metric(pb::RecordMetricRequest {
                user_id: user_id.into(),
                record_id: record_id.into(),
                ..record("nul", "control", "quality", 1.0)
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        assert_eq!(common::eval::fields(&refused), [field]);
    }
}

on_both_backends!(
    nul_characters_in_user_and_record_ids_are_refused,
    recorded_metrics_drive_results_and_a_justified_recommendation,
    retried_records_with_an_id_count_once,
    many_clients_recording_at_once_are_counted_exactly,
    experiments_exposures_and_statistics_survive_a_restart,
    racing_prompt_experiments_for_one_id_leave_only_the_winners_versions,
);
