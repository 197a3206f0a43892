//! Usage end to end: GetUsage counts every logged generation once (a repeated id
//! counts once), per group and bucket, with latency percentiles equal to the nearest
//! rank of the logged latencies within 1%, and keeps its answer across a restart; on
//! both backends.

mod common;

use std::collections::BTreeMap;

use common::backend::{Backend, TestDatabase};
use common::TestServer;
use llmops::pb;
use llmops::pb::generation_service_client::GenerationServiceClient;
use tonic::transport::Channel;
use tonic::Code;
use tonic_types::StatusExt as _;

/// An hour boundary (1,800,000,000 s is 500,000 hours after the epoch).
const START: i64 = 1_800_000_000;

fn client(server: &TestServer) -> GenerationServiceClient<Channel> {
    GenerationServiceClient::new(server.channel.clone())
}

fn at(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: START + seconds,
        nanos: 0,
    }
}

/// Generation `i` of the test's traffic: two versions, two models, ten users, over two
/// hours, every 13th failing, latencies spread over 1-997 ms.
fn generation(i: i64) -> pb::Generation {
    pb::Generation {
        id: format!("g-{i}"),
        prompt_name: "greet".into(),
        prompt_version: if i % 3 == 0 { "1.1.0" } else { "1.0.0" }.into(),
        model: if i % 2 == 0 { "m-a" } else { "m-b" }.into(),
        user_id: format!("u{}", i % 10),
        output: "Hi!".into(),
        status: if i % 13 == 0 {
            pb::GenerationStatus::Error
        } else {
            pb::GenerationStatus::Ok
        } as i32,
        error: if i % 13 == 0 {
            "timeout".into()
        } else {
            String::new()
        },
        latency_ms: ((i * 37) % 997 + 1) as f64,
        input_tokens: i as u64,
        output_tokens: 2 * i as u64,
        cost: Some(0.001 * i as f64),
        start_time: Some(at(i * 24)),
        ..Default::default()
    }
}

const COUNT: i64 = 300;

async fn log_all(server: &TestServer, generations: Vec<pb::Generation>) {
    for batch in generations.chunks(100) {
        client(server)
            .log_generations(pb::LogGenerationsRequest {
                generations: batch.to_vec(),
            })
            .await
            .unwrap();
    }
}

async fn usage(
    server: &TestServer,
    request: pb::GetUsageRequest,
) -> Result<pb::GetUsageResponse, tonic::Status> {
    client(server)
        .get_usage(request)
        .await
        .map(tonic::Response::into_inner)
}

fn by_version_and_model() -> pb::GetUsageRequest {
    pb::GetUsageRequest {
        group_by: vec![
            pb::UsageDimension::PromptVersion as i32,
            pb::UsageDimension::Model as i32,
        ],
        since: Some(at(0)),
        until: Some(at(2 * 3600)),
        ..Default::default()
    }
}

/// The nearest-rank percentile of `values` (sorted).
fn nearest_rank(values: &[f64], quantile: f64) -> f64 {
    let rank = ((quantile * values.len() as f64).ceil() as usize).max(1);
    values[rank - 1]
}

/// What GetUsage by version and model must say, computed from the generations.
fn expected(generations: &[pb::Generation]) -> BTreeMap<(i64, String, String), pb::UsageRow> {
    let mut groups: BTreeMap<(i64, String, String), (pb::UsageRow, Vec<f64>)> = BTreeMap::new();
    for g in generations {
        let hour = (g.start_time.unwrap().seconds - START) / 3600;
        let (row, latencies) = groups
            .entry((hour, g.prompt_version.clone(), g.model.clone()))
            .or_default();
        row.count += 1;
        row.errors += u64::from(g.status == pb::GenerationStatus::Error as i32);
        row.input_tokens += g.input_tokens;
        row.output_tokens += g.output_tokens;
        row.cost += g.cost.unwrap();
        latencies.push(g.latency_ms);
    }
    groups
        .into_iter()
        .map(|(key, (mut row, mut latencies))| {
            latencies.sort_by(f64::total_cmp);
            row.latency_p50_ms = nearest_rank(&latencies, 0.50);
            row.latency_p95_ms = nearest_rank(&latencies, 0.95);
            row.latency_p99_ms = nearest_rank(&latencies, 0.99);
            (key, row)
        })
        .collect()
}

fn assert_matches(answer: &pb::GetUsageResponse, generations: &[pb::Generation]) {
    let expected = expected(generations);
    assert_eq!(answer.rows.len(), expected.len(), "{answer:?}");
    for row in &answer.rows {
        let hour = (row.bucket_start.unwrap().seconds - START) / 3600;
        let key = (hour, row.prompt_version.clone(), row.model.clone());
        let want = &expected[&key];
        assert_eq!(row.prompt_name, "greet");
        assert_eq!(row.user_id, "", "not grouped by user");
        assert_eq!(
            (row.count, row.errors, row.input_tokens, row.output_tokens),
            (
                want.count,
                want.errors,
                want.input_tokens,
                want.output_tokens
            ),
            "{key:?}"
        );
        assert!((row.cost - want.cost).abs() < 1e-9, "{key:?}: {row:?}");
        for (got, exact) in [
            (row.latency_p50_ms, want.latency_p50_ms),
            (row.latency_p95_ms, want.latency_p95_ms),
            (row.latency_p99_ms, want.latency_p99_ms),
        ] {
            assert!(
                (got - exact).abs() <= exact * 0.01,
                "{key:?}: {got} vs {exact}"
            );
        }
    }
}

async fn usage_counts_each_generation_once_per_group_and_bucket(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let server = TestServer::start_on(&database, |_| {}).await;
    let generations: Vec<pb::Generation> = (0..COUNT).map(generation).collect();
    log_all(&server, generations.clone()).await;

    let answer = usage(&server, by_version_and_model()).await.unwrap();
    assert_matches(&answer, &generations);
    assert_eq!(answer.since, Some(at(0)));
    assert_eq!(answer.until, Some(at(7200)));

    // A retried batch changes nothing.
    log_all(&server, generations[..100].to_vec()).await;
    assert_eq!(
        usage(&server, by_version_and_model()).await.unwrap(),
        answer
    );

    // By user, per day: the ten users, 30 generations each, in one bucket.
    let users = usage(
        &server,
        pb::GetUsageRequest {
            group_by: vec![pb::UsageDimension::User as i32],
            bucket: pb::UsageBucket::Day as i32,
            since: Some(at(0)),
            until: Some(at(2 * 3600)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let counts: Vec<(String, u64)> = users
        .rows
        .iter()
        .map(|row| (row.user_id.clone(), row.count))
        .collect();
    let want: Vec<(String, u64)> = (0..10).map(|u| (format!("u{u}"), 30)).collect();
    assert_eq!(counts, want);
    assert_eq!(users.rows[0].bucket_start, Some(at(-(START % 86_400))));

    // Filters: one model only, no grouping.
    let one_model = usage(
        &server,
        pb::GetUsageRequest {
            model: "m-a".into(),
            since: Some(at(0)),
            until: Some(at(2 * 3600)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let per_hour: Vec<u64> = one_model.rows.iter().map(|row| row.count).collect();
    assert_eq!(per_hour, [75, 75]);

    // The aggregates are stored: the same answer after a restart, and more traffic
    // adds to them.
    server.stop().await;
    let server = TestServer::start_on(&database, |_| {}).await;
    assert_eq!(
        usage(&server, by_version_and_model()).await.unwrap(),
        answer
    );
    let more: Vec<pb::Generation> = (COUNT..COUNT + 50)
        .map(|i| pb::Generation {
            start_time: Some(at((i - COUNT) * 100 + 12)),
            ..generation(i)
        })
        .collect();
    log_all(&server, more.clone()).await;
    let all: Vec<pb::Generation> = generations.into_iter().chain(more).collect();
    assert_matches(&usage(&server, by_version_and_model()).await.unwrap(), &all);
    server.stop().await;
}

on_both_backends!(usage_counts_each_generation_once_per_group_and_bucket);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_usage_query_names_the_field_at_fault() {
    let server = TestServer::start().await;
    let field = |status: tonic::Status| {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        status
            .get_details_bad_request()
            .map(|b| b.field_violations[0].field.clone())
            .unwrap_or_default()
    };
    let cases = [
        (
            pb::GetUsageRequest {
                group_by: vec![pb::UsageDimension::Model as i32, 0],
                ..Default::default()
            },
            "group_by[1]",
        ),
        (
            pb::GetUsageRequest {
                group_by: vec![42],
                ..Default::default()
            },
            "group_by[0]",
        ),
        (
            pb::GetUsageRequest {
                since: Some(at(3600)),
                until: Some(at(0)),
                ..Default::default()
            },
            "until",
        ),
        (
            pb::GetUsageRequest {
                since: Some(at(0)),
                until: Some(at(400 * 86_400)),
                ..Default::default()
            },
            "since",
        ),
        (
            pb::GetUsageRequest {
                bucket: 9,
                ..Default::default()
            },
            "bucket",
        ),
    ];
    for (request, want) in cases {
        let status = usage(&server, request).await.unwrap_err();
        assert_eq!(field(status), want);
    }
    // Nothing logged: no rows, not an error.
    let empty = usage(&server, pb::GetUsageRequest::default())
        .await
        .unwrap();
    assert!(empty.rows.is_empty());
    server.stop().await;
}
