//! Evaluation runs end to end: rendering, model calls (the built-in echo and a mock
//! OpenAI-compatible server on loopback), scoring, results, cancellation, restarts,
//! submitted outputs, judges, comparisons, regression and threshold alerts on a
//! `Subscribe` stream, and the error codes.

mod common;

use common::backend::{Backend, TestDatabase};

use std::collections::BTreeMap;
use std::time::Duration;

use common::eval::{
    create_run, dataset, fields, metric, next_alert, prompt, provider, run, start, subscribe,
    watch, with_mock,
};
use common::{string_value, TestServer};
use llmops::bench::mock_provider::MockProvider;
use llmops::config::ProviderConfig;
use llmops::pb;
use prost_types::value::Kind;
use tonic::Code;

async fn run_to_end(server: &TestServer, run: pb::Run) -> pb::Run {
    let created = create_run(server, run).await.unwrap();
    start(server, &created.id).await.unwrap();
    let states = watch(server, &created.id).await;
    states.last().unwrap().clone()
}

async fn results(server: &TestServer, id: &str, failed_only: bool) -> Vec<pb::SampleResult> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = server
            .evaluation()
            .list_run_results(pb::ListRunResultsRequest {
                run_id: id.into(),
                failed_only,
                page_size: 7,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.results);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

async fn wait_for_progress(server: &TestServer, id: &str, done: u64) {
    for _ in 0..600 {
        let run = server
            .evaluation()
            .get_run(pb::GetRunRequest { run_id: id.into() })
            .await
            .unwrap()
            .into_inner()
            .run
            .unwrap();
        if run.progress.unwrap().done >= done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("run {id} never reached {done} samples");
}

async fn a_run_renders_each_sample_calls_the_model_and_summarises_the_scores(backend: Backend) {
    let server = TestServer::start_on_backend(backend, |_| {}).await;
    prompt(&server, "echo-q", "1.0.0", "Q: {{input}}").await;
    let dataset_id = dataset(
        &server,
        "qa",
        vec![
            ("a", "one", "Q: one"),
            ("b", "two", "Q: two"),
            ("c", "three", "Q: three"),
            ("d", "four", "something else"),
        ],
    )
    .await;
    let mut spec = run(&dataset_id, "echo-q", "", "echo");
    spec.metrics.push(metric(
        "has-q",
        "contains",
        serde_json::json!({"value": "Q:"}),
    ));
    let created = create_run(&server, spec).await.unwrap();
    assert_eq!(created.status, pb::RunStatus::Pending as i32);
    assert_eq!(created.concurrency, 8, "the default concurrency");
    assert_eq!(
        created.metrics[0].threshold,
        Some(0.7),
        "the default threshold"
    );
    let started = start(&server, &created.id).await.unwrap();
    assert_eq!(started.status, pb::RunStatus::Running as i32);
    assert_eq!(
        started.prompt_version, "1.0.0",
        "the active version, resolved at start"
    );
    assert_eq!(started.dataset_version, 2);
    assert_eq!(started.progress.unwrap().total, 4);

    let states = watch(&server, &created.id).await;
    let done = states.last().unwrap();
    assert_eq!(done.status, pb::RunStatus::Completed as i32);
    assert!(states
        .windows(2)
        .all(|w| w[0].progress.unwrap().done <= w[1].progress.unwrap().done));
    let results_summary = done.results.clone().unwrap();
    assert_eq!(
        (
            results_summary.total,
            results_summary.passed,
            results_summary.failed,
            results_summary.errored
        ),
        (4, 3, 1, 0)
    );
    assert_eq!(results_summary.pass_rate, 0.75);
    assert_eq!(results_summary.metrics["exact"].mean, 0.75);
    assert_eq!(results_summary.metrics["has-q"].mean, 1.0);
    assert!(
        (results_summary.metrics["exact"].std - 0.5).abs() < 1e-12,
        "sample std of 1,1,1,0"
    );
    assert_eq!(results_summary.failure_reasons["exact below 0.7"], 1);
    assert!(results_summary.tokens.unwrap().output >= 8);

    let all = results(&server, &created.id, false).await;
    assert_eq!(
        all.iter().map(|r| r.sample_id.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c", "d"],
        "in dataset order"
    );
    assert_eq!(
        all[0].output, "Q: one",
        "the template was rendered with the sample's input"
    );
    let failed = results(&server, &created.id, true).await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].sample_id, "d");
    assert_eq!(failed[0].failure_reason, "exact below 0.7");
}

#[tokio::test]
async fn object_inputs_fill_template_variables_and_runs_snapshot_the_dataset() {
    let server = TestServer::start().await;
    prompt(&server, "greet", "1.0.0", "Hello {{name}} from {{city}}").await;
    let dataset_id = dataset(&server, "people", vec![]).await;
    let mut input = prost_types::Struct::default();
    input.fields.insert("name".into(), string_value("Ada"));
    input.fields.insert("city".into(), string_value("London"));
    input
        .fields
        .insert("unused".into(), string_value("extra fields are ignored"));
    server
        .evaluation()
        .add_samples(pb::AddSamplesRequest {
            dataset_id: dataset_id.clone(),
            samples: vec![pb::Sample {
                id: "ada".into(),
                input: Some(prost_types::Value {
                    kind: Some(Kind::StructValue(input)),
                }),
                expected_output: "Hello Ada from London".into(),
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    let created = create_run(&server, run(&dataset_id, "greet", "1.0.0", "echo"))
        .await
        .unwrap();
    let started = start(&server, &created.id).await.unwrap();
    // A change after the start is not seen by the run.
    server
        .evaluation()
        .delete_samples(pb::DeleteSamplesRequest {
            dataset_id: dataset_id.clone(),
            sample_ids: vec!["ada".into()],
        })
        .await
        .unwrap();
    let done = watch(&server, &created.id).await.pop().unwrap();
    assert_eq!(done.dataset_version, started.dataset_version);
    let summary = done.results.unwrap();
    assert_eq!((summary.total, summary.passed), (1, 1));
}

#[tokio::test]
async fn model_failures_and_timeouts_are_errors_of_their_samples_not_of_the_run() {
    let mock = MockProvider::start(Duration::from_millis(1)).await.unwrap();
    let server = TestServer::start_with(with_mock(&mock)).await;
    prompt(&server, "p", "1.0.0", "{{input}}").await;
    let dataset_id = dataset(
        &server,
        "flaky",
        vec![
            ("ok", "fine", "fine"),
            ("refused", "[[status:400]]", "x"),
            ("broken", "[[malformed]]", "x"),
            ("slow", "[[sleep:4000]]", "x"),
            ("down", "[[status:503]]", "x"),
        ],
    )
    .await;
    let mut spec = run(&dataset_id, "p", "1.0.0", "mock");
    // Long enough for the 503's one retry (500 ms backoff), shorter than the slow answer.
    spec.sample_timeout = Some(prost_types::Duration {
        seconds: 2,
        nanos: 0,
    });
    let done = run_to_end(&server, spec).await;
    assert_eq!(done.status, pb::RunStatus::Completed as i32);
    let summary = done.results.unwrap();
    assert_eq!((summary.total, summary.passed, summary.errored), (5, 1, 4));
    for reason in [
        "model call refused (HTTP 400)",
        "unreadable model answer",
        "timeout",
        "model call failed after retries",
    ] {
        assert_eq!(
            summary.failure_reasons.get(reason),
            Some(&1),
            "{reason}: {:?}",
            summary.failure_reasons
        );
    }
    let failed = results(&server, &done.id, true).await;
    assert!(failed.iter().all(|r| !r.error.is_empty() && !r.passed));
    // The timed-out sample counts in the latency figures with its time limit.
    assert!(
        summary.latency.unwrap().max_ms >= 2000.0,
        "{:?}",
        summary.latency
    );
}

#[tokio::test]
async fn cancelling_keeps_the_results_of_finished_samples() {
    let mock = MockProvider::start(Duration::from_millis(150))
        .await
        .unwrap();
    let server = TestServer::start_with(with_mock(&mock)).await;
    prompt(&server, "p", "1.0.0", "{{input}}").await;
    let samples: Vec<(String, String)> = (0..40)
        .map(|i| (format!("s{i:02}"), format!("text {i}")))
        .collect();
    let dataset_id = dataset(
        &server,
        "many",
        samples
            .iter()
            .map(|(id, text)| (id.as_str(), text.as_str(), text.as_str()))
            .collect(),
    )
    .await;
    let mut spec = run(&dataset_id, "p", "1.0.0", "mock");
    spec.concurrency = 2;
    let created = create_run(&server, spec).await.unwrap();
    start(&server, &created.id).await.unwrap();
    wait_for_progress(&server, &created.id, 4).await;
    let cancelled = server
        .evaluation()
        .cancel_run(pb::CancelRunRequest {
            run_id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(cancelled.status, pb::RunStatus::Cancelled as i32);
    let summary = cancelled.results.unwrap();
    assert!(
        summary.total >= 4 && summary.total < 40,
        "partial: {}",
        summary.total
    );
    assert_eq!(summary.passed, summary.total);
    assert_eq!(
        results(&server, &created.id, false).await.len() as u64,
        summary.total
    );
    let again = server
        .evaluation()
        .cancel_run(pb::CancelRunRequest {
            run_id: created.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    // Nothing more runs after the cancel.
    let requests = mock.requests();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(mock.requests(), requests);
}

async fn a_run_that_was_running_at_shutdown_resumes_its_remaining_samples(backend: Backend) {
    let mock = MockProvider::start(Duration::from_millis(100))
        .await
        .unwrap();
    let dir = TestDatabase::new(backend).await;
    let mut server = TestServer::start_on(&dir, with_mock(&mock)).await;
    prompt(&server, "p", "1.0.0", "{{input}}").await;
    let samples: Vec<(String, String)> = (0..30)
        .map(|i| (format!("s{i:02}"), format!("text {i}")))
        .collect();
    let dataset_id = dataset(
        &server,
        "resumable",
        samples
            .iter()
            .map(|(id, text)| (id.as_str(), text.as_str(), text.as_str()))
            .collect(),
    )
    .await;
    let mut spec = run(&dataset_id, "p", "1.0.0", "mock");
    spec.concurrency = 2;
    let created = create_run(&server, spec).await.unwrap();
    start(&server, &created.id).await.unwrap();
    wait_for_progress(&server, &created.id, 4).await;
    server.begin_shutdown().await.unwrap().unwrap();
    drop(server);

    let server = TestServer::start_on(&dir, with_mock(&mock)).await;
    let done = watch(&server, &created.id).await.pop().unwrap();
    assert_eq!(done.status, pb::RunStatus::Completed as i32);
    let summary = done.results.unwrap();
    assert_eq!((summary.total, summary.passed), (30, 30));
    let all = results(&server, &created.id, false).await;
    // Every row counts: a sample resumed and run again would show as a second row.
    let mut rows_per_sample: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &all {
        *rows_per_sample.entry(row.sample_id.as_str()).or_default() += 1;
    }
    let once_each: BTreeMap<&str, usize> = samples.iter().map(|(id, _)| (id.as_str(), 1)).collect();
    assert_eq!(rows_per_sample, once_each, "every sample exactly once");
    assert!(
        mock.requests() < 60,
        "finished samples were not run again: {} requests",
        mock.requests()
    );
}

async fn regressions_and_threshold_breaches_reach_subscribers_and_resolve_when_fixed(
    backend: Backend,
) {
    let server = TestServer::start_on_backend(backend, |_| {}).await;
    prompt(&server, "answer", "1.0.0", "{{input}}").await;
    prompt(&server, "answer", "1.1.0", "I think {{input}}").await;
    let dataset_id = dataset(
        &server,
        "golden",
        vec![
            ("a", "one", "one"),
            ("b", "two", "two"),
            ("c", "three", "three"),
            ("d", "four", "four"),
        ],
    )
    .await;
    let mut regressions = subscribe(&server, pb::AlertType::Regression).await;
    let mut thresholds = subscribe(&server, pb::AlertType::Threshold).await;

    let good = run_to_end(&server, run(&dataset_id, "answer", "1.0.0", "echo")).await;
    assert_eq!(good.results.as_ref().unwrap().pass_rate, 1.0);
    assert!(
        good.compared_with_run_id.is_empty(),
        "the first run has no baseline"
    );

    let bad = run_to_end(&server, run(&dataset_id, "answer", "1.1.0", "echo")).await;
    assert_eq!(bad.results.as_ref().unwrap().pass_rate, 0.0);
    assert_eq!(bad.compared_with_run_id, good.id);

    let mut raised = [
        next_alert(&mut regressions, pb::AlertEventKind::Created).await,
        next_alert(&mut regressions, pb::AlertEventKind::Created).await,
    ];
    raised.sort_by(|a, b| a.metric.cmp(&b.metric));
    let (metric_alert, pass_rate_alert) = (&raised[0], &raised[1]);
    assert_eq!(pass_rate_alert.metric, "pass_rate");
    assert_eq!(
        pass_rate_alert.severity,
        pb::AlertSeverity::Critical as i32,
        "a 100-point drop"
    );
    assert_eq!(pass_rate_alert.source_id, dataset_id);
    assert_eq!(pass_rate_alert.labels["prompt"], "answer");
    assert_eq!(pass_rate_alert.labels["model"], "echo");
    assert_eq!(pass_rate_alert.labels["metric"], "pass_rate");
    assert_eq!(pass_rate_alert.metadata["baseline_run_id"], good.id);
    assert_eq!(pass_rate_alert.metadata["prompt_version"], "1.1.0");
    assert_eq!(pass_rate_alert.metadata["baseline_prompt_version"], "1.0.0");
    // Four samples passed before and fail now: 2 * 0.5^4.
    assert_eq!(pass_rate_alert.metadata["mcnemar_p_value"], "0.125000");
    assert_eq!(metric_alert.metric, "exact");
    assert_eq!(metric_alert.severity, pb::AlertSeverity::Warning as i32);

    let breach = next_alert(&mut thresholds, pb::AlertEventKind::Created).await;
    assert_eq!(breach.metric, "pass_rate");
    assert_eq!(breach.threshold, Some(0.85));
    assert_eq!(breach.actual_value, Some(0.0));

    // The same problem again is one alert with another occurrence, not a new alert.
    run_to_end(&server, run(&dataset_id, "answer", "1.1.0", "echo")).await;
    let fixed = run_to_end(&server, run(&dataset_id, "answer", "1.0.0", "echo")).await;
    assert_eq!(fixed.results.unwrap().pass_rate, 1.0);
    let resolved = next_alert(&mut thresholds, pb::AlertEventKind::Resolved).await;
    assert_eq!(resolved.id, breach.id);
    let open = server
        .alerts()
        .list_alerts(pb::ListAlertsRequest {
            source: "evaluation".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert!(
        open.iter().all(|a| a.resolved_at.is_some()),
        "a run that no longer breaches resolves every open evaluation alert: {open:?}"
    );

    let comparison = server
        .evaluation()
        .compare_runs(pb::CompareRunsRequest {
            baseline_run_id: good.id.clone(),
            candidate_run_id: bad.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(comparison.pass_rate_change, -1.0);
    assert_eq!(comparison.newly_failing, ["a", "b", "c", "d"]);
    assert!(comparison.newly_passing.is_empty());
    assert!((comparison.mcnemar_p_value.unwrap() - 0.125).abs() < 1e-12);
    assert_eq!(comparison.regressed_metrics, ["exact"]);
    assert_eq!(
        comparison.metric_changes["exact"].relative_change,
        Some(-1.0)
    );
    let reverse = server
        .evaluation()
        .compare_runs(pb::CompareRunsRequest {
            baseline_run_id: bad.id.clone(),
            candidate_run_id: good.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reverse.metric_changes["exact"].relative_change, None,
        "no relative change from 0"
    );
    assert_eq!(reverse.improved_metrics, ["exact"]);
    assert!(
        reverse.summary.contains("+100.0 points"),
        "{}",
        reverse.summary
    );
}

#[tokio::test]
async fn submitted_outputs_are_scored_and_external_scores_are_kept() {
    let server = TestServer::start().await;
    prompt(&server, "p", "1.0.0", "{{input}}").await;
    let dataset_id = dataset(
        &server,
        "byo",
        vec![("a", "1+1", "2"), ("b", "2+2", "4"), ("c", "3+3", "6")],
    )
    .await;
    let mut spec = run(&dataset_id, "p", "1.0.0", "my-own-model");
    spec.submitted_outputs = true;
    let created = create_run(&server, spec).await.unwrap();
    let refused = start(&server, &created.id).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);

    let submit = |outputs: Vec<pb::SubmittedOutput>| {
        let mut client = server.evaluation();
        let run_id = created.id.clone();
        async move {
            client
                .submit_run_outputs(pb::SubmitRunOutputsRequest { run_id, outputs })
                .await
                .map(|r| r.into_inner())
        }
    };
    let output = |id: &str, text: &str| pb::SubmittedOutput {
        sample_id: id.into(),
        output: text.into(),
        ..Default::default()
    };
    let first = submit(vec![output("a", "2"), output("b", "5")])
        .await
        .unwrap();
    assert_eq!(
        first.run.as_ref().unwrap().status,
        pb::RunStatus::Running as i32
    );
    assert_eq!(first.results[0].scores["exact"], 1.0);
    assert_eq!(first.results[1].scores["exact"], 0.0);

    let unknown = submit(vec![output("zzz", "?")]).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(
        unknown.message().contains("outputs[0].sample_id"),
        "{}",
        unknown.message()
    );
    let twice = submit(vec![output("a", "2")]).await.unwrap_err();
    assert_eq!(twice.code(), Code::AlreadyExists);
    let bad_score = submit(vec![pb::SubmittedOutput {
        scores: [("human".to_owned(), 1.5)].into(),
        ..output("c", "6")
    }])
    .await
    .unwrap_err();
    assert_eq!(bad_score.code(), Code::InvalidArgument);
    assert_eq!(fields(&bad_score), ["outputs[0].scores[human]"]);

    // A human's scores are kept as given, in place of the metric of the same name.
    let last = submit(vec![pb::SubmittedOutput {
        scores: [("human".to_owned(), 0.9), ("exact".to_owned(), 0.8)].into(),
        ..output("c", "wrong but graded by hand")
    }])
    .await
    .unwrap();
    assert_eq!(last.results[0].scores["human"], 0.9);
    assert_eq!(last.results[0].scores["exact"], 0.8);
    let done = last.run.unwrap();
    assert_eq!(done.status, pb::RunStatus::Completed as i32);
    let summary = done.results.unwrap();
    assert_eq!((summary.total, summary.passed, summary.failed), (3, 2, 1));
    let after = submit(vec![output("a", "2")]).await.unwrap_err();
    assert_eq!(after.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn judges_and_panels_score_through_providers_and_record_each_verdict() {
    let mock = MockProvider::start(Duration::from_millis(1)).await.unwrap();
    let server = TestServer::start_with(with_mock(&mock)).await;
    prompt(&server, "p", "1.0.0", "{{input}}").await;
    let dataset_id = dataset(
        &server,
        "judged",
        vec![
            ("good", "fine [[score:a=0.9]] [[score:b=0.7]]", ""),
            ("split", "meh [[score:a=0.9]] [[score:b=0.1]]", ""),
            ("bad-judge", "odd [[score:a=7]]", ""),
        ],
    )
    .await;
    let mut spec = run(&dataset_id, "p", "1.0.0", "mock");
    spec.metrics = vec![
        metric(
            "helpful",
            "llm_judge",
            serde_json::json!({"judge": "judge-a"}),
        ),
        metric(
            "panel",
            "panel",
            serde_json::json!({"judges": ["judge-a", "judge-b"], "consensus": "median", "out_of_range": "clamp"}),
        ),
    ];
    let done = run_to_end(&server, spec).await;
    let all = results(&server, &done.id, false).await;
    let good = &all[0];
    assert_eq!(good.scores["helpful"], 0.9);
    assert!(
        (good.scores["panel"] - 0.8).abs() < 1e-12,
        "the median of 0.9 and 0.7"
    );
    assert!((good.panel_spread["panel"] - 0.2).abs() < 1e-12);
    assert_eq!(good.judge_scores.len(), 3);
    assert!(good.passed);
    let split = &all[1];
    assert!((split.scores["panel"] - 0.5).abs() < 1e-12);
    assert!(!split.passed);
    assert_eq!(split.failure_reason, "panel below 0.7");
    let bad = &all[2];
    assert!(bad.error.contains("outside [0, 1]"), "{}", bad.error);
    assert_eq!(bad.failure_reason, "judge error (helpful)");
}

#[tokio::test]
async fn panels_are_refused_when_panel_evaluation_is_off() {
    let mock = MockProvider::start(Duration::from_millis(1)).await.unwrap();
    let server = TestServer::start_with(|config| {
        with_mock(&mock)(config);
        config.evaluation.panel_evaluation = false;
    })
    .await;
    prompt(&server, "p", "1.0.0", "{{input}}").await;
    let dataset_id = dataset(&server, "d", vec![("a", "x", "x")]).await;
    let mut spec = run(&dataset_id, "p", "1.0.0", "mock");
    spec.metrics = vec![metric(
        "panel",
        "panel",
        serde_json::json!({"judges": ["judge-a", "judge-b"]}),
    )];
    let err = create_run(&server, spec).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("panel_evaluation"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn bad_requests_get_the_right_codes_and_name_the_field() {
    let server = TestServer::start().await;
    prompt(&server, "p", "1.0.0", "{{input}}").await;
    let dataset_id = dataset(&server, "d", vec![("a", "x", "x")]).await;
    let empty_id = dataset(&server, "empty", vec![]).await;

    let err = create_run(&server, pb::Run::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        fields(&err),
        [
            "run.dataset_id",
            "run.prompt_name",
            "run.model",
            "run.metrics"
        ]
    );

    let mut spec = run(&dataset_id, "p", "1.0.0", "echo");
    spec.metrics = vec![
        metric("a", "no_such_scorer", serde_json::json!({})),
        metric("b", "regex", serde_json::json!({"pattern": "("})),
        metric("b", "exact_match", serde_json::json!({"trim": "yes"})),
    ];
    spec.metrics[0].threshold = Some(1.5);
    let err = create_run(&server, spec).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        fields(&err),
        [
            "run.metrics[0].threshold",
            "run.metrics[2].name",
            "run.metrics[0].scorer",
            "run.metrics[1].params.pattern",
            "run.metrics[2].params.trim"
        ]
    );

    let err = create_run(&server, run(&dataset_id, "p", "1.0.0", "gpt-9"))
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["run.model"]);
    let err = create_run(&server, run("nope", "p", "1.0.0", "echo"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = create_run(&server, run(&dataset_id, "nope", "", "echo"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = create_run(&server, run(&dataset_id, "p", "9.9.9", "echo"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let mut spec = run(&dataset_id, "p", "1.0.0", "echo");
    spec.id = "fixed-id".into();
    create_run(&server, spec.clone()).await.unwrap();
    assert_eq!(
        create_run(&server, spec).await.unwrap_err().code(),
        Code::AlreadyExists
    );

    let on_empty = create_run(&server, run(&empty_id, "p", "1.0.0", "echo"))
        .await
        .unwrap();
    let err = start(&server, &on_empty.id).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("no samples"), "{}", err.message());

    let done = run_to_end(&server, run(&dataset_id, "p", "1.0.0", "echo")).await;
    assert_eq!(
        start(&server, &done.id).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    let pending = create_run(&server, run(&dataset_id, "p", "1.0.0", "echo"))
        .await
        .unwrap();
    let err = server
        .evaluation()
        .compare_runs(pb::CompareRunsRequest {
            baseline_run_id: done.id.clone(),
            candidate_run_id: pending.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = server
        .evaluation()
        .get_run(pb::GetRunRequest {
            run_id: "missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = server
        .evaluation()
        .list_run_results(pb::ListRunResultsRequest {
            run_id: done.id.clone(),
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["page_token"]);
}

#[tokio::test]
async fn runs_list_newest_first_with_filters_and_pages() {
    let server = TestServer::start().await;
    prompt(&server, "p", "1.0.0", "{{input}}").await;
    prompt(&server, "q", "1.0.0", "{{input}}").await;
    let dataset_id = dataset(&server, "d", vec![("a", "x", "x")]).await;
    let mut ids = Vec::new();
    for name in ["p", "q", "p", "p"] {
        ids.push(
            create_run(&server, run(&dataset_id, name, "1.0.0", "echo"))
                .await
                .unwrap()
                .id,
        );
    }
    let done = run_to_end(&server, run(&dataset_id, "p", "1.0.0", "echo")).await;
    let list = |request: pb::ListRunsRequest| {
        let mut client = server.evaluation();
        async move { client.list_runs(request).await.unwrap().into_inner() }
    };
    let page = list(pb::ListRunsRequest {
        prompt_name: "p".into(),
        status: pb::RunStatus::Pending.into(),
        page_size: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(
        page.runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        [ids[3].clone(), ids[2].clone()]
    );
    let rest = list(pb::ListRunsRequest {
        prompt_name: "p".into(),
        status: pb::RunStatus::Pending.into(),
        page_size: 2,
        page_token: page.next_page_token,
        ..Default::default()
    })
    .await;
    assert_eq!(
        rest.runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        [ids[0].clone()]
    );
    assert!(rest.next_page_token.is_empty());
    let completed = list(pb::ListRunsRequest {
        status: pb::RunStatus::Completed.into(),
        ..Default::default()
    })
    .await;
    assert_eq!(completed.runs.len(), 1);
    assert_eq!(completed.runs[0].id, done.id);
    let none = list(pb::ListRunsRequest {
        created_before: done.created_at,
        model: "echo".into(),
        dataset_id: dataset_id.clone(),
        ..Default::default()
    })
    .await;
    assert_eq!(none.runs.len(), 4, "created before the last run");
}

/// Runs `samples` samples at once, each with a 600 ms limit, on the provider `capped`
/// that `limit` caps, and asserts every one passed: queueing for the provider is not
/// the sample's time.
async fn all_pass_behind_a_capped_provider(
    latency: Duration,
    samples: usize,
    limit: impl FnOnce(&mut ProviderConfig),
) {
    let mock = MockProvider::start(latency).await.unwrap();
    let server = TestServer::start_with(|config| {
        let mut capped = provider("capped", &mock.base_url(), "m");
        limit(&mut capped);
        config.providers = vec![capped];
    })
    .await;
    prompt(&server, "p", "1.0.0", "{{input}}").await;
    let texts: Vec<(String, String)> = (0..samples)
        .map(|i| (format!("s{i}"), format!("text {i}")))
        .collect();
    let dataset_id = dataset(
        &server,
        "capped",
        texts
            .iter()
            .map(|(id, text)| (id.as_str(), text.as_str(), text.as_str()))
            .collect(),
    )
    .await;
    let mut spec = run(&dataset_id, "p", "1.0.0", "capped");
    spec.concurrency = samples as u32;
    // Each call's own time (the mock's latency) has over a second of room on a loaded
    // machine; the queue in front of the last samples is longer than the limit, so a
    // limit that counted queueing would fail them.
    spec.sample_timeout = Some(prost_types::Duration {
        seconds: 1,
        nanos: 500_000_000,
    });
    let done = run_to_end(&server, spec).await;
    let summary = done.results.unwrap();
    assert_eq!(
        (summary.total, summary.passed, summary.errored),
        (samples as u64, samples as u64, 0),
        "{:?}",
        summary.failure_reasons
    );
}

#[tokio::test]
async fn samples_do_not_queue_past_their_time_limit_behind_a_capped_provider() {
    // Twenty samples at once behind a cap of two: the last wait 2.25 s for a slot.
    all_pass_behind_a_capped_provider(Duration::from_millis(250), 20, |capped| {
        capped.max_concurrency = Some(2);
    })
    .await;
}

#[tokio::test]
async fn waiting_for_a_rate_limited_turn_does_not_count_against_the_time_limit() {
    // One request every 250 ms: the twelfth sample's turn comes after 2.75 s.
    all_pass_behind_a_capped_provider(Duration::from_millis(50), 12, |capped| {
        capped.requests_per_minute = Some(240);
    })
    .await;
}

on_both_backends!(
    a_run_renders_each_sample_calls_the_model_and_summarises_the_scores,
    a_run_that_was_running_at_shutdown_resumes_its_remaining_samples,
    regressions_and_threshold_breaches_reach_subscribers_and_resolve_when_fixed,
);
