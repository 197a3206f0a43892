//! `RunStore`: runs round-trip and change status only from the status their writer saw;
//! results are stored a batch at a time, all or none, counted with the run, paged in
//! dataset order, and never twice for one sample; samples are claimed in chunks under
//! leases that lapse.

use std::time::Duration;

use chrono::TimeDelta;
use llmops_evaluator::runs::{
    JudgeScore, MetricConfig, MetricSummary, OnDuplicate, ResultCounts, Run, RunProgress,
    RunResults, RunStatus, RunStore, SampleChunk, SampleResult,
};
use llmops_evaluator::StoreError;

use crate::database::TestDatabase;
use crate::fixtures::{ids, now};

/// A pending run, every field that a pending run has set.
fn run(id: &str) -> Run {
    Run {
        id: id.into(),
        name: format!("{id} name"),
        description: "nightly".into(),
        dataset_id: "d1".into(),
        prompt_name: "greeting".into(),
        prompt_version: String::new(),
        prompt_label: "staging".into(),
        model: "echo".into(),
        requested_model: "auto".into(),
        metrics: vec![MetricConfig {
            name: "exact".into(),
            scorer: "exact_match".into(),
            params: serde_json::json!({"case_sensitive": false})
                .as_object()
                .unwrap()
                .clone(),
            threshold: 0.5,
        }],
        concurrency: 4,
        sample_timeout: Duration::from_millis(2500),
        baseline_run_id: "r0".into(),
        submitted_outputs: false,
        status: RunStatus::Pending,
        results: None,
        dataset_version: 0,
        dataset_hash: String::new(),
        progress: RunProgress::default(),
        error: String::new(),
        compared_with_run_id: String::new(),
        created_by: "ci".into(),
        created_at: now(),
        started_at: None,
        finished_at: None,
    }
}

/// A run that is running, inserted into `store`.
async fn insert_running(store: &dyn RunStore, id: &str) -> Run {
    let running = Run {
        status: RunStatus::Running,
        started_at: Some(now()),
        ..run(id)
    };
    store.insert_run(&running).await.unwrap();
    running
}

/// The result of the sample at `position`: passed, failed, or (`error`) errored.
fn result(sample_id: &str, position: i64, passed: bool, error: &str) -> SampleResult {
    SampleResult {
        sample_id: sample_id.into(),
        position,
        input: serde_json::json!({"question": sample_id}),
        expected_output: format!("answer {sample_id}"),
        output: format!("output {sample_id}"),
        scores: [("exact".to_owned(), if passed { 1.0 } else { 0.0 })].into(),
        passed,
        latency: Some(Duration::from_micros(1_234_567)),
        error: error.into(),
        failure_reason: if passed { "" } else { "below threshold" }.into(),
        input_tokens: 12,
        output_tokens: 34,
        cost: Some(0.0042),
        judge_scores: vec![JudgeScore {
            metric: "helpful".into(),
            judge: "judge-a".into(),
            score: 0.75,
            reasoning: String::new(),
        }],
        panel_spread: [("helpful".to_owned(), 0.125)].into(),
    }
}

/// Every result of a run (or only those that did not pass), read in pages of `page`.
async fn all_results(
    store: &dyn RunStore,
    run_id: &str,
    failed_only: bool,
    page: usize,
) -> Vec<SampleResult> {
    let mut all: Vec<SampleResult> = Vec::new();
    loop {
        let after = all.last().map_or(0, |last| last.position);
        let next = store
            .results_page(run_id, failed_only, after, page)
            .await
            .unwrap();
        assert!(next.len() <= page, "a page holds at most its limit");
        assert!(
            next.iter().all(|result| result.position > after),
            "a page holds only results after {after}"
        );
        if next.is_empty() {
            return all;
        }
        all.extend(next);
    }
}

/// Of `sample_ids`, those with a result in the run, sorted.
async fn existing(store: &dyn RunStore, run_id: &str, sample_ids: &[&str]) -> Vec<String> {
    let mut found = store
        .existing_results(run_id, &ids(sample_ids))
        .await
        .unwrap();
    found.sort();
    found
}

async fn load(store: &dyn RunStore, id: &str) -> Option<Run> {
    let runs = store.load_runs().await.unwrap();
    runs.into_iter().find(|run| run.id == id)
}

pub(crate) async fn a_run_round_trips_and_a_transition_replaces_it(db: TestDatabase) {
    let storage = db.open().await;
    let store = storage.runs.clone();
    let pending = run("r1");
    let other = run("r2");
    store.insert_run(&pending).await.unwrap();
    store.insert_run(&other).await.unwrap();
    let mut all = store.load_runs().await.unwrap();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(all, [pending.clone(), other.clone()]);

    // Times a microsecond apart from the creation time.
    let started = pending.created_at + TimeDelta::microseconds(1);
    let running = Run {
        status: RunStatus::Running,
        prompt_version: "1.2.3".into(),
        dataset_version: 7,
        dataset_hash: "abc123".into(),
        started_at: Some(started),
        progress: RunProgress {
            total: 10,
            ..RunProgress::default()
        },
        ..pending.clone()
    };
    assert_eq!(
        store
            .transition_run(&running, RunStatus::Pending)
            .await
            .unwrap(),
        Some(0)
    );
    assert_eq!(load(&*store, "r1").await, Some(running.clone()));
    assert_eq!(
        store
            .transition_run(&running, RunStatus::Pending)
            .await
            .unwrap(),
        None,
        "a second start finds the run running"
    );

    let finished = started + TimeDelta::microseconds(2_000_001);
    let completed = Run {
        status: RunStatus::Completed,
        finished_at: Some(finished),
        progress: RunProgress {
            done: 10,
            passed: 7,
            failed: 2,
            ..running.progress
        },
        results: Some(RunResults {
            total: 10,
            passed: 7,
            failed: 2,
            errored: 1,
            pass_rate: 0.7,
            metrics: [(
                "exact".to_owned(),
                MetricSummary {
                    mean: 0.7,
                    std: 0.48,
                    count: 10,
                    min: 0.0,
                    max: 1.0,
                    pass_rate: 0.7,
                },
            )]
            .into(),
            input_tokens: 120,
            output_tokens: 340,
            cost: 0.042,
            failure_reasons: [("below threshold".to_owned(), 2)].into(),
            ..RunResults::default()
        }),
        compared_with_run_id: "r0".into(),
        ..running
    };
    assert_eq!(
        store
            .transition_run(&completed, RunStatus::Running)
            .await
            .unwrap(),
        Some(0)
    );
    let cancelled = Run {
        status: RunStatus::Cancelled,
        ..completed.clone()
    };
    assert_eq!(
        store
            .transition_run(&cancelled, RunStatus::Running)
            .await
            .unwrap(),
        None,
        "a cancel decided on a running copy loses to the completion"
    );
    let err = store.insert_run(&run("r1")).await.unwrap_err();
    assert!(matches!(err, StoreError::Duplicate(_)), "{err:?}");
    assert_eq!(
        store
            .transition_run(&run("never-inserted"), RunStatus::Pending)
            .await
            .unwrap(),
        None,
        "a transition does not create"
    );

    let storage = db.reopen(storage).await;
    let loaded = load(&*storage.runs, "r1").await.unwrap();
    assert_eq!(loaded, completed, "the last update, whole");
    assert_eq!(
        (loaded.started_at, loaded.finished_at),
        (Some(started), Some(finished)),
        "to the microsecond"
    );
    assert_eq!(load(&*storage.runs, "r2").await, Some(other));
    assert_eq!(load(&*storage.runs, "never-inserted").await, None);
}

pub(crate) async fn results_are_paged_in_dataset_order(db: TestDatabase) {
    let store = db.open().await.runs;
    insert_running(&*store, "r1").await;
    insert_running(&*store, "r2").await;
    // Stored out of order, in two batches.
    let s1 = result("s1", 10, false, "");
    let s2 = result("s2", 20, true, "");
    let s3 = result("s3", 30, true, "");
    let s4 = result("s4", 40, false, "model timed out");
    let s5 = result("s5", 50, false, "");
    store
        .insert_results("r1", &[s3.clone(), s1.clone()], OnDuplicate::Refuse)
        .await
        .unwrap();
    store
        .insert_results(
            "r1",
            &[s5.clone(), s2.clone(), s4.clone()],
            OnDuplicate::Refuse,
        )
        .await
        .unwrap();
    // The same samples in another run do not mix in.
    store
        .insert_results("r2", &[result("s1", 10, true, "")], OnDuplicate::Refuse)
        .await
        .unwrap();

    let every = [s1.clone(), s2, s3, s4.clone(), s5.clone()];
    assert_eq!(all_results(&*store, "r1", false, 2).await, every);
    assert_eq!(all_results(&*store, "r1", false, 100).await, every);
    assert_eq!(
        store.results_page("r1", false, 20, 2).await.unwrap(),
        every[2..4],
        "a page resumes after its position"
    );
    assert_eq!(
        all_results(&*store, "r1", true, 1).await,
        [s1, s4, s5],
        "failed only: failed and errored"
    );
    assert_eq!(
        all_results(&*store, "r2", false, 10).await,
        [result("s1", 10, true, "")]
    );
    assert!(all_results(&*store, "never-inserted", false, 10)
        .await
        .is_empty());
}

pub(crate) async fn existing_results_are_reported_and_never_stored_twice(db: TestDatabase) {
    let store = db.open().await.runs;
    insert_running(&*store, "r1").await;
    insert_running(&*store, "r2").await;
    let a = result("a", 1, true, "");
    let b = result("b", 2, false, "");
    store
        .insert_results("r1", &[a.clone(), b.clone()], OnDuplicate::Refuse)
        .await
        .unwrap();
    assert_eq!(
        existing(&*store, "r1", &["a", "b", "c", "zz"]).await,
        ["a", "b"]
    );
    assert!(existing(&*store, "r2", &["a", "b"]).await.is_empty());

    // A retried batch: the new sample is not stored without the repeated one.
    let retried_a = SampleResult {
        output: "a second answer".into(),
        ..a.clone()
    };
    let err = store
        .insert_results(
            "r1",
            &[result("c", 3, true, ""), retried_a.clone()],
            OnDuplicate::Refuse,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate(_)), "{err:?}");
    assert_eq!(existing(&*store, "r1", &["a", "b", "c"]).await, ["a", "b"]);
    assert_eq!(
        all_results(&*store, "r1", false, 10).await,
        [a.clone(), b.clone()],
        "the first result stays, unchanged"
    );

    // Larger than one statement: the repeat comes after the first thousand rows.
    let mut many: Vec<SampleResult> = (0..1500)
        .map(|i| result(&format!("m{i:04}"), 100 + i, true, ""))
        .collect();
    many.push(b.clone());
    let err = store
        .insert_results("r1", &many, OnDuplicate::Refuse)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate(_)), "{err:?}");
    assert_eq!(all_results(&*store, "r1", false, 1000).await.len(), 2);

    many.pop();
    store
        .insert_results("r1", &many, OnDuplicate::Refuse)
        .await
        .unwrap();
    let every_id: Vec<String> = many.iter().map(|r| r.sample_id.clone()).collect();
    let found = store.existing_results("r1", &every_id).await.unwrap();
    assert_eq!(
        found.len(),
        1500,
        "asked for more ids than one statement takes"
    );
    let stored = all_results(&*store, "r1", false, 1000).await;
    assert_eq!(stored[..2], [a.clone(), b]);
    assert_eq!(stored[2..], many);

    // A worker whose claim lapsed stores what it evaluated: the repeats are passed over,
    // the first results stay, and only the new one is counted.
    let c = result("c", 3, false, "model timed out");
    let skipped = store
        .insert_results("r1", &[retried_a, c.clone()], OnDuplicate::Skip)
        .await
        .unwrap();
    assert_eq!(skipped.stored, ["c"]);
    assert_eq!(
        skipped.counts,
        ResultCounts {
            done: 1503,
            passed: 1501,
            failed: 1,
            errored: 1
        }
    );
    assert_eq!(
        store.results_page("r1", false, 0, 3).await.unwrap(),
        [a, result("b", 2, false, ""), c],
        "the first results stay, unchanged"
    );
}

pub(crate) async fn results_are_counted_and_refused_once_the_run_ended(db: TestDatabase) {
    let store = db.open().await.runs;
    let running = insert_running(&*store, "r1").await;
    let stored = store
        .insert_results(
            "r1",
            &[result("a", 1, true, ""), result("b", 2, false, "")],
            OnDuplicate::Refuse,
        )
        .await
        .unwrap();
    assert_eq!(stored.stored, ["a", "b"]);
    let counts = ResultCounts {
        done: 2,
        passed: 1,
        failed: 1,
        errored: 0,
    };
    assert_eq!(stored.counts, counts);
    assert_eq!(
        store
            .get_run("r1")
            .await
            .unwrap()
            .unwrap()
            .progress
            .counts(),
        counts,
        "a running run's progress is its stored results, whoever stored them"
    );

    let cancelled = Run {
        status: RunStatus::Cancelled,
        ..running
    };
    assert_eq!(
        store
            .transition_run(&cancelled, RunStatus::Running)
            .await
            .unwrap(),
        Some(2),
        "the results counted when it ended"
    );
    let err = store
        .insert_results("r1", &[result("c", 3, true, "")], OnDuplicate::Skip)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(existing(&*store, "r1", &["a", "b", "c"]).await, ["a", "b"]);
}

pub(crate) async fn samples_are_claimed_in_chunks_under_leases(db: TestDatabase) {
    let store = db.open().await.runs;
    let running = insert_running(&*store, "r1").await;
    insert_running(&*store, "r2").await;
    let long = Duration::from_secs(3600);
    let first = SampleChunk {
        after: 0,
        through: 8,
    };
    let second = SampleChunk {
        after: 8,
        through: 16,
    };
    assert_eq!(store.chunk_frontier("r1").await.unwrap(), 0);
    assert!(store
        .claim_new_chunk("r1", first, "w1", long)
        .await
        .unwrap());
    assert!(
        !store
            .claim_new_chunk("r1", first, "w2", long)
            .await
            .unwrap(),
        "one claim per chunk"
    );
    assert_eq!(store.chunk_frontier("r1").await.unwrap(), 8);
    assert!(store
        .claim_new_chunk("r1", second, "w2", long)
        .await
        .unwrap());
    assert_eq!(store.chunk_frontier("r2").await.unwrap(), 0, "per run");
    assert_eq!(store.unfinished_chunks("r1").await.unwrap(), 2);
    assert_eq!(
        store.claim_lapsed_chunk("r1", "w3", long).await.unwrap(),
        None,
        "held claims are not taken"
    );

    // w2 stops and gives its chunk up; w1 dies and its claim lapses.
    store.release_chunks("r1", "w2").await.unwrap();
    assert_eq!(
        store.claim_lapsed_chunk("r1", "w3", long).await.unwrap(),
        Some(second)
    );
    store
        .renew_chunks("r1", "w1", Duration::ZERO)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        store.claim_lapsed_chunk("r1", "w3", long).await.unwrap(),
        Some(first)
    );
    store.renew_chunks("r1", "w1", long).await.unwrap();
    assert_eq!(
        store.claim_lapsed_chunk("r1", "w4", long).await.unwrap(),
        None,
        "a renewal by the worker that lost the claim does not take it back"
    );

    store.finish_chunks("r1", &[0]).await.unwrap();
    assert_eq!(store.unfinished_chunks("r1").await.unwrap(), 1);
    store.release_chunks("r1", "w3").await.unwrap();
    assert_eq!(
        store.claim_lapsed_chunk("r1", "w4", long).await.unwrap(),
        Some(second),
        "a finished chunk is never claimed again"
    );

    let completed = Run {
        status: RunStatus::Completed,
        ..running
    };
    store
        .transition_run(&completed, RunStatus::Running)
        .await
        .unwrap();
    assert_eq!(store.unfinished_chunks("r1").await.unwrap(), 0);
    assert_eq!(
        store.chunk_frontier("r1").await.unwrap(),
        0,
        "an ended run's claims go"
    );
}

pub(crate) async fn concurrent_claimers_take_different_chunks(db: TestDatabase) {
    let store = db.open().await.runs;
    insert_running(&*store, "r1").await;
    for index in 0..12 {
        let chunk = SampleChunk {
            after: index * 10,
            through: index * 10 + 10,
        };
        assert!(store
            .claim_new_chunk("r1", chunk, "dead", Duration::ZERO)
            .await
            .unwrap());
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let claims: Vec<_> = (0..12)
        .map(|worker| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .claim_lapsed_chunk("r1", &format!("w{worker}"), Duration::from_secs(60))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for claim in claims {
        let chunk = claim
            .await
            .unwrap()
            .expect("a lapsed chunk for every claimer");
        claimed.push(chunk.after);
    }
    claimed.sort_unstable();
    assert_eq!(claimed, (0..12).map(|i| i * 10).collect::<Vec<_>>());
}

pub(crate) async fn a_result_for_a_missing_run_is_a_conflict(db: TestDatabase) {
    let store = db.open().await.runs;
    let err = store
        .insert_results(
            "never-inserted",
            &[result("a", 1, true, "")],
            OnDuplicate::Skip,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(existing(&*store, "never-inserted", &["a"]).await.is_empty());
}

pub(crate) async fn runs_and_results_survive_a_reopen(db: TestDatabase) {
    let storage = db.open().await;
    let mut running = insert_running(&*storage.runs, "r1").await;
    let results = [result("a", 1, true, ""), result("b", 2, false, "boom")];
    storage
        .runs
        .insert_results("r1", &results, OnDuplicate::Refuse)
        .await
        .unwrap();

    let storage = db.reopen(storage).await;
    let store = &*storage.runs;
    running.progress.set_counts(ResultCounts {
        done: 2,
        passed: 1,
        failed: 0,
        errored: 1,
    });
    assert_eq!(store.load_runs().await.unwrap(), [running]);
    assert_eq!(all_results(store, "r1", false, 10).await, results);
    assert_eq!(all_results(store, "r1", true, 10).await, results[1..]);
    assert_eq!(existing(store, "r1", &["a", "b", "c"]).await, ["a", "b"]);
    let err = store
        .insert_results("r1", &results[..1], OnDuplicate::Refuse)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate(_)), "{err:?}");
}
