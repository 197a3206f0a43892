//! `OnlineStore`: samples are queued by the transaction that stores their generation (new
//! generations only, up to the limit); a claim is held by one worker until it lapses; a
//! verdict is stored and counted once, whoever completes it; deleting an evaluation takes
//! its queue, scores and aggregates with it.

use std::collections::HashSet;

use chrono::Duration;
use llmops_evaluator::online::{
    CompletedSample, OnlineEvaluation, OnlineFilter, OnlineThresholds, OnlineTotals, MINUTE_US,
};
use llmops_evaluator::runs::MetricConfig;
use llmops_generations::{Generation, GenerationScore, QueuedSample, UsageKey};

use crate::database::TestDatabase;
use crate::fixtures::now;

fn evaluation(id: &str) -> OnlineEvaluation {
    OnlineEvaluation {
        id: id.into(),
        name: id.into(),
        filter: OnlineFilter {
            prompt_name: "greet".into(),
            ..OnlineFilter::default()
        },
        sample_rate: 1.0,
        metrics: vec![MetricConfig {
            name: "json".into(),
            scorer: "json_valid".into(),
            params: Default::default(),
            threshold: 0.7,
        }],
        thresholds: OnlineThresholds::default(),
        window: std::time::Duration::from_secs(3600),
        min_samples: 50,
        paused: false,
        created_at: now(),
        updated_at: now(),
    }
}

fn generation(id: &str) -> Generation {
    Generation {
        id: id.into(),
        prompt_name: "greet".into(),
        prompt_version: "1.0.0".into(),
        model: "m".into(),
        output: "{}".into(),
        latency_ms: 100.0,
        start_time: Some(now()),
        logged_at: Some(now()),
        ..Generation::default()
    }
}

fn samples(evaluation: &str, ids: &[&str]) -> Vec<QueuedSample> {
    ids.iter()
        .map(|id| QueuedSample {
            evaluation_id: evaluation.into(),
            generation_id: (*id).into(),
        })
        .collect()
}

fn completed(evaluation: &str, generation: &str, passed: bool) -> CompletedSample {
    let mut totals = OnlineTotals {
        scored: 1,
        passed: u64::from(passed),
        ..OnlineTotals::default()
    };
    totals.latency.record(100.0);
    let time = now();
    CompletedSample {
        evaluation_id: evaluation.into(),
        generation_id: generation.into(),
        minute_us: time.timestamp_micros() - time.timestamp_micros().rem_euclid(MINUTE_US),
        key: UsageKey::from_parts(["greet", "1.0.0", "m", "", "", ""]),
        user_id: String::new(),
        time,
        score: GenerationScore {
            online_evaluation_id: evaluation.into(),
            scores: [("json".to_owned(), if passed { 1.0 } else { 0.0 })].into(),
            passed,
            scored_at: Some(time),
            ..GenerationScore::default()
        },
        totals,
    }
}

fn window() -> (i64, i64) {
    let at = now().timestamp_micros();
    (at - 3_600_000_000, at + 3_600_000_000)
}

pub(crate) async fn samples_are_queued_with_new_generations_up_to_the_limit(db: TestDatabase) {
    let storage = db.open().await;
    storage
        .online
        .insert_online_evaluation(&evaluation("oe"))
        .await
        .unwrap();
    let first: Vec<Generation> = ["a", "b", "c"].iter().map(|id| generation(id)).collect();
    let inserted = storage
        .generations
        .insert_sampled_generations(&first, &samples("oe", &["a", "b", "c"]), 4)
        .await
        .unwrap();
    assert_eq!((inserted.queued, inserted.skipped), (3, 0));
    // A repeated generation queues nothing; past the limit, samples are skipped.
    let second: Vec<Generation> = ["a", "d", "e"].iter().map(|id| generation(id)).collect();
    let inserted = storage
        .generations
        .insert_sampled_generations(&second, &samples("oe", &["a", "d", "e"]), 4)
        .await
        .unwrap();
    assert_eq!(inserted.new, ["d", "e"]);
    assert_eq!((inserted.queued, inserted.skipped), (1, 1));
    assert_eq!(storage.online.online_queue_depth().await.unwrap(), 4);
    let (since, until) = window();
    let queued = storage
        .online
        .queued_online_samples("oe", since, until)
        .await
        .unwrap();
    assert_eq!(queued.len(), 4);

    // The queue survives a reopen.
    let storage = db.reopen(storage).await;
    assert_eq!(storage.online.online_queue_depth().await.unwrap(), 4);
}

pub(crate) async fn a_claim_is_held_once_and_a_verdict_counts_once(db: TestDatabase) {
    let one = db.open().await;
    let two = db.open().await;
    one.online
        .insert_online_evaluation(&evaluation("oe"))
        .await
        .unwrap();
    let ids: Vec<String> = (0..40).map(|i| format!("g{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let generations: Vec<Generation> = refs.iter().map(|id| generation(id)).collect();
    one.generations
        .insert_sampled_generations(&generations, &samples("oe", &refs), 1000)
        .await
        .unwrap();
    let at = now().timestamp_micros();
    let lease = Duration::minutes(1).num_microseconds().unwrap();
    let evaluations = vec!["oe".to_owned()];
    // Two replicas claiming at once take different samples.
    let (a, b) = tokio::join!(
        one.online
            .claim_online_samples(&evaluations, "one", at, at + lease, 25),
        two.online
            .claim_online_samples(&evaluations, "two", at, at + lease, 25),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let claimed_a: HashSet<&str> = a.iter().map(|c| c.generation_id.as_str()).collect();
    let claimed_b: HashSet<&str> = b.iter().map(|c| c.generation_id.as_str()).collect();
    assert!(claimed_a.is_disjoint(&claimed_b));
    assert_eq!(claimed_a.len() + claimed_b.len(), 40);
    assert!(a.iter().all(|c| c
        .generation
        .as_ref()
        .is_some_and(|g| g.id == c.generation_id)));
    // Nothing is left to claim until the claims lapse.
    let none = one
        .online
        .claim_online_samples(&evaluations, "three", at, at + lease, 100)
        .await
        .unwrap();
    assert!(none.is_empty());
    let later = at + lease + 1;
    let lapsed = one
        .online
        .claim_online_samples(&evaluations, "three", later, later + lease, 100)
        .await
        .unwrap();
    assert_eq!(lapsed.len(), 40);

    // Both the old and the new holder complete the same sample: counted once.
    let first = a[0].generation_id.clone();
    let new = one
        .online
        .complete_online_samples(&[completed("oe", &first, true)], &[])
        .await
        .unwrap();
    assert_eq!(new, 1);
    let again = two
        .online
        .complete_online_samples(&[completed("oe", &first, false)], &[])
        .await
        .unwrap();
    assert_eq!(again, 0);
    let rest: Vec<CompletedSample> = ids
        .iter()
        .filter(|id| **id != first)
        .enumerate()
        .map(|(i, id)| completed("oe", id, i % 3 != 0))
        .collect();
    let (half, other) = rest.split_at(20);
    let (x, y) = tokio::join!(
        one.online.complete_online_samples(half, &[]),
        two.online.complete_online_samples(other, &[]),
    );
    assert_eq!(x.unwrap() + y.unwrap(), 39);
    let (since, until) = window();
    let aggregates = one
        .online
        .online_aggregates("oe", since, until, 1000)
        .await
        .unwrap();
    let none = one
        .online
        .online_aggregates("oe", since, until, 0)
        .await
        .unwrap();
    assert!(none.is_empty(), "the limit holds");
    let mut totals = OnlineTotals::default();
    for row in &aggregates {
        totals.merge(&row.totals);
    }
    let passed = 1 + (0..39).filter(|i| i % 3 != 0).count() as u64;
    assert_eq!((totals.scored, totals.passed), (40, passed));
    assert_eq!(totals.latency.len(), 40);
    assert_eq!(one.online.online_queue_depth().await.unwrap(), 0);
    // The verdict is on the generation: the first one stored.
    let stored = one
        .generations
        .get_generation(&first)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.scores.len(), 1);
    assert!(stored.scores[0].passed);
}

pub(crate) async fn deleting_an_evaluation_takes_its_queue_scores_and_aggregates(db: TestDatabase) {
    let storage = db.open().await;
    for id in ["keep", "drop"] {
        storage
            .online
            .insert_online_evaluation(&evaluation(id))
            .await
            .unwrap();
    }
    let generations: Vec<Generation> = ["a", "b"].iter().map(|id| generation(id)).collect();
    let mut queued = samples("keep", &["a", "b"]);
    queued.extend(samples("drop", &["a", "b"]));
    storage
        .generations
        .insert_sampled_generations(&generations, &queued, 100)
        .await
        .unwrap();
    storage
        .online
        .complete_online_samples(
            &[completed("drop", "a", true), completed("keep", "a", true)],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(storage.online.online_queue_depth().await.unwrap(), 2);
    assert!(storage
        .online
        .delete_online_evaluation("drop")
        .await
        .unwrap());
    assert!(!storage
        .online
        .delete_online_evaluation("drop")
        .await
        .unwrap());
    // A verdict that was being scored when its evaluation went is dropped.
    let late = storage
        .online
        .complete_online_samples(&[completed("drop", "b", true)], &[])
        .await
        .unwrap();
    assert_eq!(late, 0);
    assert_eq!(storage.online.online_queue_depth().await.unwrap(), 1);
    let (since, until) = window();
    assert!(storage
        .online
        .online_aggregates("drop", since, until, 1000)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        storage
            .online
            .online_aggregates("keep", since, until, 1000)
            .await
            .unwrap()
            .len(),
        1
    );
    let a = storage
        .generations
        .get_generation("a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.scores.len(), 1);
    assert_eq!(a.scores[0].online_evaluation_id, "keep");
    let remaining: Vec<String> = storage
        .online
        .load_online_evaluations()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(remaining, ["keep"]);
}
