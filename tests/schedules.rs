//! Continuous evaluation end to end: schedules firing by themselves (`@every`), pause,
//! resume and delete, overlap skipping, catch-up after a restart, prompt-change triggers
//! with a regression alert naming both versions, and release gates refusing, allowing
//! and being overridden (with the override in the label history).

mod common;

use common::backend::{Backend, TestDatabase};

use std::time::Duration;

use common::eval::{dataset, fields, next_alert, prompt, run, subscribe, watch, with_mock};
use common::TestServer;
use llmops::bench::mock_provider::MockProvider;
use llmops::pb;
use llmops_core::{Clock as _, ManualClock};
use tonic::Code;

async fn schedule(
    server: &TestServer,
    template: pb::Run,
    expression: &str,
    on_prompt_change: bool,
    watch_label: &str,
) -> Result<pb::Schedule, tonic::Status> {
    server
        .evaluation()
        .schedule_run(pb::ScheduleRunRequest {
            run_template: Some(template),
            schedule: expression.into(),
            on_prompt_change,
            watch_label: watch_label.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().schedule.unwrap())
}

async fn get_schedule(server: &TestServer, id: &str) -> pb::Schedule {
    server
        .evaluation()
        .get_schedule(pb::GetScheduleRequest {
            schedule_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .schedule
        .unwrap()
}

/// Polls the schedule until `done` holds (30 s at most), calling `between` after each
/// look that did not satisfy it.
async fn poll_schedule(
    server: &TestServer,
    id: &str,
    what: &str,
    done: impl Fn(&pb::Schedule) -> bool,
    between: impl Fn(),
) -> pb::Schedule {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let schedule = get_schedule(server, id).await;
        if done(&schedule) {
            return schedule;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "schedule {id} never {what}: {schedule:?}"
        );
        between();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the schedule until `done` holds, while time passes by itself.
async fn wait_for(
    server: &TestServer,
    id: &str,
    what: &str,
    done: impl Fn(&pb::Schedule) -> bool,
) -> pb::Schedule {
    poll_schedule(server, id, what, done, || {}).await
}

/// Moves `clock` a second at a time (each a tick of an `@every 1s` schedule) until the
/// schedule satisfies `done`.
async fn tick_until(
    server: &TestServer,
    clock: &ManualClock,
    id: &str,
    what: &str,
    done: impl Fn(&pb::Schedule) -> bool,
) -> pb::Schedule {
    poll_schedule(server, id, what, done, || {
        clock.advance(Duration::from_secs(1))
    })
    .await
}

/// Moves `clock` far past every due time, then gives the tick loop a moment of real
/// time to act on it.
async fn let_time_pass(clock: &ManualClock) {
    clock.advance(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(150)).await;
}

async fn runs_of(server: &TestServer, dataset_id: &str) -> Vec<pb::Run> {
    server
        .evaluation()
        .list_runs(pb::ListRunsRequest {
            dataset_id: dataset_id.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .runs
}

async fn get_run(server: &TestServer, id: &str) -> pb::Run {
    server
        .evaluation()
        .get_run(pb::GetRunRequest { run_id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap()
}

/// The value of the metric line that starts with `series` (0 when absent).
fn metric_value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn seconds(timestamp: &Option<prost_types::Timestamp>) -> i64 {
    timestamp.as_ref().map_or(0, |t| t.seconds)
}

async fn an_every_schedule_runs_by_itself_until_paused_and_resumes_from_now(backend: Backend) {
    let clock = ManualClock::starting_now();
    let server = TestServer::start_at_on(backend, &clock, |_| {}).await;
    prompt(&server, "p", "1.0.0", "{{input}}").await;
    let dataset_id = dataset(&server, "d", vec![("a", "one", "one")]).await;
    let before = clock.now().timestamp();
    let created = schedule(
        &server,
        run(&dataset_id, "p", "", "echo"),
        "@every 1s",
        false,
        "",
    )
    .await
    .unwrap();
    assert!(!created.paused);
    assert_eq!(created.runs_started, 0, "nothing runs at creation");
    let next = seconds(&created.next_run_at);
    assert!(next == before + 1, "due a second after creation");
    assert!(created.run_template.as_ref().unwrap().id.is_empty());

    let fired = tick_until(&server, &clock, &created.id, "ran twice", |s| {
        s.runs_started >= 2
    })
    .await;
    let metrics = server.metrics_text().await;
    assert!(
        metric_value(
            &metrics,
            "llmops_scheduled_runs_total{trigger=\"tick\",outcome=\"started\"}"
        ) >= 2.0,
        "{metrics}"
    );
    let last = watch(&server, &fired.last_run_id).await.pop().unwrap();
    assert_eq!(last.status, pb::RunStatus::Completed as i32);
    assert_eq!(last.prompt_version, "1.0.0");
    assert!(
        last.description.contains("schedule") && last.description.contains(&created.id),
        "the run says which schedule started it: {:?}",
        last.description
    );
    assert_eq!(last.created_by, format!("schedule/{}", created.id));

    let paused = server
        .evaluation()
        .pause_schedule(pb::PauseScheduleRequest {
            schedule_id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .schedule
        .unwrap();
    assert!(paused.paused);
    assert!(paused.next_run_at.is_none());
    let started = paused.runs_started;
    let_time_pass(&clock).await;
    let still = get_schedule(&server, &created.id).await;
    assert_eq!(
        still.runs_started, started,
        "a paused schedule starts nothing"
    );
    assert_eq!(runs_of(&server, &dataset_id).await.len() as u64, started);

    let before = clock.now().timestamp();
    let resumed = server
        .evaluation()
        .resume_schedule(pb::ResumeScheduleRequest {
            schedule_id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .schedule
        .unwrap();
    assert!(!resumed.paused);
    assert!(
        seconds(&resumed.next_run_at) >= before,
        "missed ticks are not made up"
    );
    tick_until(&server, &clock, &created.id, "ran after resuming", |s| {
        s.runs_started > started
    })
    .await;

    let listed = server
        .evaluation()
        .list_schedules(pb::ListSchedulesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.schedules.len(), 1);
    assert_eq!(listed.schedules[0].id, created.id);

    server
        .evaluation()
        .delete_schedule(pb::DeleteScheduleRequest {
            schedule_id: created.id.clone(),
        })
        .await
        .unwrap();
    let gone = server
        .evaluation()
        .get_schedule(pb::GetScheduleRequest {
            schedule_id: created.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let count = runs_of(&server, &dataset_id).await.len();
    let_time_pass(&clock).await;
    assert_eq!(
        runs_of(&server, &dataset_id).await.len(),
        count,
        "a deleted schedule starts nothing; its runs stay"
    );
}

#[tokio::test]
async fn a_tick_while_the_previous_run_is_still_going_is_skipped_and_counted() {
    let mock = MockProvider::start(Duration::ZERO).await.unwrap();
    let clock = ManualClock::starting_now();
    let server = TestServer::start_at(&clock, with_mock(&mock)).await;
    prompt(&server, "slow", "1.0.0", "{{input}}").await;
    // The one sample takes far longer than the ticks (its run is stopped at shutdown).
    let dataset_id = dataset(&server, "slow", vec![("a", "[[sleep:30000]] x", "x")]).await;
    let created = schedule(
        &server,
        run(&dataset_id, "slow", "", "mock"),
        "@every 1s",
        false,
        "",
    )
    .await
    .unwrap();
    let skipping = tick_until(&server, &clock, &created.id, "skipped two ticks", |s| {
        s.skipped_ticks >= 2
    })
    .await;
    assert_eq!(skipping.runs_started, 1, "one run at a time");
    let metrics = server.metrics_text().await;
    assert!(
        metric_value(&metrics, "llmops_schedule_skipped_ticks_total") >= 2.0,
        "{metrics}"
    );
    let running = get_run(&server, &skipping.last_run_id).await;
    assert_eq!(running.status, pb::RunStatus::Running as i32);
    assert_eq!(runs_of(&server, &dataset_id).await.len(), 1);

    // The dataset cannot be deleted from under the run and the schedule.
    let refused = server
        .evaluation()
        .delete_dataset(pb::DeleteDatasetRequest {
            dataset_id: dataset_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains(&running.id) && refused.message().contains(&created.id),
        "{}",
        refused.message()
    );
}

/// Starts a server in `dir`, schedules an echo evaluation with `expression`, and stops
/// the server; returns the dataset and the schedule.
async fn schedule_then_stop(
    database: &TestDatabase,
    clock: &ManualClock,
    expression: &str,
) -> (String, pb::Schedule) {
    let mut server = TestServer::start_on_clock(
        database.data_dir(),
        std::sync::Arc::new(clock.clone()),
        |config| database.configure(config),
    )
    .await;
    prompt(&server, "p", "1.0.0", "{{input}}").await;
    let dataset_id = dataset(&server, "d", vec![("a", "one", "one")]).await;
    let created = schedule(
        &server,
        run(&dataset_id, "p", "", "echo"),
        expression,
        false,
        "",
    )
    .await
    .unwrap();
    server.begin_shutdown().await.unwrap().unwrap();
    drop(server);
    (dataset_id, created)
}

async fn a_schedule_due_while_the_server_was_down_runs_once_after_the_restart(backend: Backend) {
    let dir = TestDatabase::new(backend).await;
    let clock = ManualClock::starting_now();
    let (dataset_id, created) = schedule_then_stop(&dir, &clock, "@every 3s").await;
    assert_eq!(
        stored_runs_started(&dir, &created.id).await,
        0,
        "the clock stood still: nothing fell due before the stop"
    );
    // Two ticks fall due while the server is down.
    let first_due = seconds(&created.next_run_at);
    clock.set(chrono::DateTime::from_timestamp(first_due + 4, 0).unwrap());

    let restarted_at = clock.now().timestamp();
    let server = TestServer::start_on_clock(
        dir.data_dir(),
        std::sync::Arc::new(clock.clone()),
        |config| dir.configure(config),
    )
    .await;
    let caught_up = wait_for(&server, &created.id, "caught up", |s| s.runs_started > 0).await;
    assert_eq!(
        seconds(&caught_up.next_run_at),
        restarted_at + 3,
        "the next due time counts from the restart, not from the missed ticks"
    );
    // The clock stands still after the restart, so every run is the catch-up.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let runs = runs_of(&server, &dataset_id).await;
    assert_eq!(
        runs.len(),
        1,
        "one catch-up run, not one per missed tick: {runs:?}"
    );
    let caught_up = get_schedule(&server, &created.id).await;
    assert_eq!((caught_up.runs_started, caught_up.skipped_ticks), (1, 0));
}

#[tokio::test]
async fn a_new_active_version_is_evaluated_and_its_regression_alert_names_both_versions() {
    let server = TestServer::start().await;
    prompt(&server, "answer", "1.0.0", "{{input}}").await;
    prompt(&server, "answer", "1.1.0", "I think {{input}}").await;
    let dataset_id = dataset(
        &server,
        "golden",
        vec![
            ("a", "one", "one"),
            ("b", "two", "two"),
            ("c", "three", "three"),
        ],
    )
    .await;
    let mut regressions = subscribe(&server, pb::AlertType::Regression).await;
    // The schedule only fires on prompt changes (an empty expression with a day's
    // default interval).
    let created = schedule(
        &server,
        run(&dataset_id, "answer", "", "echo"),
        "",
        true,
        "",
    )
    .await
    .unwrap();
    assert_eq!(created.watched_version, "1.0.0");

    // The current version's run is the baseline the trigger's run is checked against.
    let baseline = server
        .evaluation()
        .create_run(pb::CreateRunRequest {
            run: Some(run(&dataset_id, "answer", "1.0.0", "echo")),
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    server
        .evaluation()
        .start_run(pb::StartRunRequest {
            run_id: baseline.id.clone(),
        })
        .await
        .unwrap();
    watch(&server, &baseline.id).await;

    server
        .prompts()
        .activate_prompt_version(pb::ActivatePromptVersionRequest {
            name: "answer".into(),
            version: "1.1.0".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let fired = wait_for(&server, &created.id, "fired on the change", |s| {
        s.runs_started == 1
    })
    .await;
    assert_eq!(fired.watched_version, "1.1.0");
    let triggered = watch(&server, &fired.last_run_id).await.pop().unwrap();
    assert_eq!(triggered.prompt_version, "1.1.0");
    assert_eq!(triggered.status, pb::RunStatus::Completed as i32);
    assert_eq!(triggered.compared_with_run_id, baseline.id);

    let alert = next_alert(&mut regressions, pb::AlertEventKind::Created).await;
    assert!(
        alert.message.contains("1.1.0") && alert.message.contains("1.0.0"),
        "the alert names both versions: {}",
        alert.message
    );
    assert_eq!(alert.metadata["prompt_version"], "1.1.0");
    assert_eq!(alert.metadata["baseline_prompt_version"], "1.0.0");
}

async fn set_label(
    server: &TestServer,
    label: &str,
    version: &str,
    override_reason: &str,
) -> Result<pb::SetPromptLabelResponse, tonic::Status> {
    server
        .prompts()
        .set_prompt_label(pb::SetPromptLabelRequest {
            name: "g".into(),
            label: label.into(),
            version: version.into(),
            override_reason: override_reason.into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn activate(
    server: &TestServer,
    version: &str,
    override_reason: &str,
) -> Result<(), tonic::Status> {
    server
        .prompts()
        .activate_prompt_version(pb::ActivatePromptVersionRequest {
            name: "g".into(),
            version: version.into(),
            override_reason: override_reason.into(),
        })
        .await
        .map(|_| ())
}

fn gate(dataset_id: &str, label: &str, min_pass_rate: f64, no_regression: bool) -> pb::ReleaseGate {
    pb::ReleaseGate {
        prompt_name: "g".into(),
        label: label.into(),
        dataset_id: dataset_id.into(),
        model: "echo".into(),
        min_pass_rate,
        no_regression,
        ..Default::default()
    }
}

async fn set_gate(
    server: &TestServer,
    gate: pb::ReleaseGate,
) -> Result<pb::ReleaseGate, tonic::Status> {
    server
        .evaluation()
        .set_release_gate(pb::SetReleaseGateRequest { gate: Some(gate) })
        .await
        .map(|r| r.into_inner().gate.unwrap())
}

/// Moves `staging` and waits for the run its schedule starts to finish.
async fn stage(server: &TestServer, schedule_id: &str, version: &str) -> pb::Run {
    let before = get_schedule(server, schedule_id).await.runs_started;
    set_label(server, "staging", version, "").await.unwrap();
    let fired = wait_for(server, schedule_id, "fired on the label move", |s| {
        s.runs_started > before
    })
    .await;
    let run = watch(server, &fired.last_run_id).await.pop().unwrap();
    assert_eq!(run.prompt_version, version);
    run
}

async fn release_gates_refuse_allow_and_record_overrides_in_the_label_history(backend: Backend) {
    let server = TestServer::start_on_backend(backend, |_| {}).await;
    prompt(&server, "g", "1.0.0", "{{input}}").await;
    prompt(&server, "g", "1.1.0", "I think {{input}}").await;
    prompt(&server, "g", "1.2.0", "{{ input }}").await;
    let dataset_id = dataset(
        &server,
        "gate-set",
        vec![("a", "one", "one"), ("b", "two", "two")],
    )
    .await;

    let production = set_gate(&server, gate(&dataset_id, "production", 0.9, false))
        .await
        .unwrap();
    assert!(production.created_at.is_some());
    let refused = set_label(&server, "production", "1.0.0", "")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains("no completed run of version 1.0.0"),
        "{}",
        refused.message()
    );
    // Outputs a client submitted, however good, do not vouch for a version.
    let mut submitted = run(&dataset_id, "g", "1.0.0", "echo");
    submitted.submitted_outputs = true;
    let submitted = server
        .evaluation()
        .create_run(pb::CreateRunRequest {
            run: Some(submitted),
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    let outputs = [("a", "one"), ("b", "two")]
        .into_iter()
        .map(|(id, text)| pb::SubmittedOutput {
            sample_id: id.into(),
            output: text.into(),
            ..Default::default()
        })
        .collect();
    let graded = server
        .evaluation()
        .submit_run_outputs(pb::SubmitRunOutputsRequest {
            run_id: submitted.id,
            outputs,
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(graded.results.unwrap().pass_rate, 1.0);
    let refused = set_label(&server, "production", "1.0.0", "")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);

    // A schedule watching `staging` evaluates each version staged.
    let watcher = schedule(
        &server,
        run(&dataset_id, "g", "", "echo"),
        "",
        true,
        "staging",
    )
    .await
    .unwrap();
    assert_eq!(
        watcher.run_template.as_ref().unwrap().prompt_label,
        "staging"
    );
    let bad = stage(&server, &watcher.id, "1.1.0").await;
    assert_eq!(bad.results.unwrap().pass_rate, 0.0);
    let refused = set_label(&server, "production", "1.1.0", "")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains(&bad.id) && refused.message().contains("0.0%"),
        "the reason names the run and its figure: {}",
        refused.message()
    );

    let good = stage(&server, &watcher.id, "1.2.0").await;
    assert_eq!(good.results.unwrap().pass_rate, 1.0);
    let moved = set_label(&server, "production", "1.2.0", "").await.unwrap();
    assert_eq!(moved.prompt_version.unwrap().version, "1.2.0");

    // The active pointer, gated with no_regression: 1.1.0 regresses against 1.0.0 once
    // 1.0.0 has a run; without one, the gate says so.
    set_gate(&server, gate(&dataset_id, "active", 0.0, true))
        .await
        .unwrap();
    let refused = activate(&server, "1.1.0", "").await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("current version 1.0.0"),
        "{}",
        refused.message()
    );
    stage(&server, &watcher.id, "1.0.0").await;
    let refused = activate(&server, "1.1.0", "").await.unwrap_err();
    assert!(
        refused.message().contains("no_regression"),
        "{}",
        refused.message()
    );
    activate(&server, "1.2.0", "").await.unwrap();

    // An override moves the pointer anyway and is recorded.
    activate(&server, "1.1.0", "hotfix for incident 42")
        .await
        .unwrap();
    let history = server
        .prompts()
        .list_label_history(pb::ListLabelHistoryRequest {
            name: "g".into(),
            label: "active".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let last = history.last().unwrap();
    assert_eq!(last.prompt_version.as_ref().unwrap().version, "1.1.0");
    assert_eq!(last.previous_version, "1.2.0");
    assert_eq!(last.override_reason, "hotfix for incident 42");
    assert!(last.time.is_some());
    assert!(history[..history.len() - 1]
        .iter()
        .all(|e| e.override_reason.is_empty()));
    let everything = server
        .prompts()
        .list_label_history(pb::ListLabelHistoryRequest {
            name: "g".into(),
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(everything.events.len(), 2);
    assert!(!everything.next_page_token.is_empty());

    // Gate management.
    let listed = server
        .evaluation()
        .list_release_gates(pb::ListReleaseGatesRequest {
            prompt_name: "g".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .gates;
    let labels: Vec<&str> = listed.iter().map(|g| g.label.as_str()).collect();
    assert_eq!(labels, ["active", "production"]);
    let invalid = set_gate(&server, gate(&dataset_id, "production", 1.5, false))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert_eq!(fields(&invalid), ["gate.min_pass_rate"]);
    server
        .evaluation()
        .delete_release_gate(pb::DeleteReleaseGateRequest {
            prompt_name: "g".into(),
            label: "production".into(),
        })
        .await
        .unwrap();
    let missing = server
        .evaluation()
        .get_release_gate(pb::GetReleaseGateRequest {
            prompt_name: "g".into(),
            label: "production".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    set_label(&server, "production", "1.1.0", "")
        .await
        .expect("an ungated label moves freely");

    // A gate on `active` covers a prompt's first version, which becomes active.
    let fresh = pb::ReleaseGate {
        prompt_name: "fresh".into(),
        ..gate(&dataset_id, "active", 0.5, false)
    };
    set_gate(&server, fresh).await.unwrap();
    let refused = server
        .prompts()
        .create_prompt_version(pb::CreatePromptVersionRequest {
            prompt_version: Some(pb::PromptVersion {
                name: "fresh".into(),
                version: "1.0.0".into(),
                template: "{{input}}".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("delete the gate"),
        "{}",
        refused.message()
    );
    let auto_gate = pb::ReleaseGate {
        model: "auto".into(),
        ..gate(&dataset_id, "production", 0.5, false)
    };
    let unknown_model = set_gate(&server, auto_gate).await.unwrap_err();
    assert_eq!(fields(&unknown_model), ["gate.model"]);
}

#[tokio::test]
async fn every_move_of_a_watched_label_is_evaluated_even_in_quick_succession() {
    let server = TestServer::start().await;
    prompt(&server, "g", "1.0.0", "{{input}}").await;
    prompt(&server, "g", "1.1.0", "I think {{input}}").await;
    prompt(&server, "g", "1.2.0", "{{ input }}").await;
    let dataset_id = dataset(&server, "moves", vec![("a", "one", "one")]).await;
    let watcher = schedule(
        &server,
        run(&dataset_id, "g", "", "echo"),
        "",
        true,
        "staging",
    )
    .await
    .unwrap();
    for version in ["1.0.0", "1.1.0", "1.2.0"] {
        set_label(&server, "staging", version, "").await.unwrap();
    }
    wait_for(&server, &watcher.id, "evaluated three moves", |s| {
        s.runs_started == 3
    })
    .await;
    let mut versions: Vec<String> = runs_of(&server, &dataset_id)
        .await
        .into_iter()
        .map(|r| r.prompt_version)
        .collect();
    versions.sort();
    assert_eq!(versions, ["1.0.0", "1.1.0", "1.2.0"]);
}

#[tokio::test]
async fn bad_schedules_are_refused_with_the_field_at_fault() {
    let server = TestServer::start_with(|config| config.evaluation.auto_evaluation = false).await;
    prompt(&server, "p", "1.0.0", "{{input}}").await;
    let dataset_id = dataset(&server, "d", vec![("a", "one", "one")]).await;
    let template = || run(&dataset_id, "p", "", "echo");

    let bad_cron = schedule(&server, template(), "61 * * * *", false, "")
        .await
        .unwrap_err();
    assert_eq!(bad_cron.code(), Code::InvalidArgument);
    assert_eq!(fields(&bad_cron), ["schedule"]);
    let never = schedule(&server, template(), "0 0 30 2 *", false, "")
        .await
        .unwrap_err();
    assert!(
        never.message().contains("never fires"),
        "{}",
        never.message()
    );
    let silent = schedule(&server, template(), "", false, "")
        .await
        .unwrap_err();
    assert_eq!(fields(&silent), ["schedule"]);
    assert!(
        silent.message().contains("auto_evaluation"),
        "{}",
        silent.message()
    );

    let mut with_id = template();
    with_id.id = "fixed".into();
    let err = schedule(&server, with_id, "@hourly", false, "")
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["run_template.id"]);
    let mut bad_model = template();
    bad_model.model = "nope".into();
    let err = schedule(&server, bad_model, "@hourly", false, "")
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["run_template.model"]);
    let err = schedule(&server, template(), "@hourly", false, "staging")
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["watch_label"]);
    let mut pinned = template();
    pinned.prompt_version = "1.0.0".into();
    let err = schedule(&server, pinned, "", true, "").await.unwrap_err();
    assert_eq!(fields(&err), ["run_template.prompt_version"]);
    let err = server
        .evaluation()
        .schedule_run(pb::ScheduleRunRequest::default())
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["run_template"]);

    // With auto-evaluation off, an empty schedule that watches the prompt is fine and
    // never due by time.
    let on_change = schedule(&server, template(), "", true, "").await.unwrap();
    assert!(on_change.next_run_at.is_none());
    for call in ["get", "pause", "resume", "delete"] {
        let id = "missing".to_owned();
        let evaluation = &mut server.evaluation();
        let err = match call {
            "get" => evaluation
                .get_schedule(pb::GetScheduleRequest { schedule_id: id })
                .await
                .map(|_| ()),
            "pause" => evaluation
                .pause_schedule(pb::PauseScheduleRequest { schedule_id: id })
                .await
                .map(|_| ()),
            "resume" => evaluation
                .resume_schedule(pb::ResumeScheduleRequest { schedule_id: id })
                .await
                .map(|_| ()),
            _ => evaluation
                .delete_schedule(pb::DeleteScheduleRequest { schedule_id: id })
                .await
                .map(|_| ()),
        }
        .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{call}");
    }
}

/// A stopped server's stored schedule.
async fn stored_schedule(
    store: &llmops_store::Storage,
    schedule_id: &str,
) -> llmops_evaluator::schedules::Schedule {
    store
        .schedules
        .load_schedules()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id == schedule_id)
        .unwrap()
}

async fn stored_runs_started(database: &TestDatabase, schedule_id: &str) -> u64 {
    let store = database.open_storage().await;
    let started = stored_schedule(&store, schedule_id).await.runs_started;
    store.close().await;
    started
}

/// Rewrites a stored schedule while the server is down, as a crash would have left it.
async fn store_pending_run(database: &TestDatabase, schedule_id: &str, run_id: &str) {
    use llmops_evaluator::schedules::{PendingRun, Trigger};
    let store = database.open_storage().await;
    let mut schedule = stored_schedule(&store, schedule_id).await;
    let mut spec = schedule.template.clone();
    spec.id = run_id.into();
    schedule.pending = Some(PendingRun {
        spec,
        trigger: Trigger::Tick {
            due: chrono::Utc::now(),
        },
    });
    store.schedules.update_schedule(&schedule).await.unwrap();
    store.close().await;
}

async fn a_run_decided_on_before_a_crash_is_started_once_at_the_next_start(backend: Backend) {
    let dir = TestDatabase::new(backend).await;
    // A crash after the schedule stored its decision, before the run was created.
    let (dataset_id, created) =
        schedule_then_stop(&dir, &ManualClock::starting_now(), "@yearly").await;
    store_pending_run(&dir, &created.id, "decided-before-crash").await;
    let mut server = TestServer::start_on(&dir, |_| {}).await;
    let finished = get_schedule(&server, &created.id).await;
    assert_eq!(finished.last_run_id, "decided-before-crash");
    assert_eq!(finished.runs_started, 1);
    let done = watch(&server, "decided-before-crash").await.pop().unwrap();
    assert_eq!(done.status, pb::RunStatus::Completed as i32);

    // A crash after the run was created, before the schedule recorded it: the run is
    // started, not created again.
    let mut second = run(&dataset_id, "p", "", "echo");
    second.id = "created-before-crash".into();
    server
        .evaluation()
        .create_run(pb::CreateRunRequest { run: Some(second) })
        .await
        .unwrap();
    server.begin_shutdown().await.unwrap().unwrap();
    drop(server);
    store_pending_run(&dir, &created.id, "created-before-crash").await;
    let server = TestServer::start_on(&dir, |_| {}).await;
    let finished = get_schedule(&server, &created.id).await;
    assert_eq!(finished.last_run_id, "created-before-crash");
    assert_eq!(finished.runs_started, 2);
    let done = watch(&server, "created-before-crash").await.pop().unwrap();
    assert_eq!(done.status, pb::RunStatus::Completed as i32);
    assert_eq!(
        runs_of(&server, &dataset_id).await.len(),
        2,
        "nothing twice"
    );
}

/// DeletePrompt ignored release gates: the prompt went, the gate was left guarding
/// nothing, and whatever was created under the name next would be released unchecked.
/// It is refused, naming the gated labels, until the gates are deleted.
#[tokio::test]
async fn a_gated_prompt_is_not_deleted_until_its_gates_are() {
    let server = TestServer::start().await;
    prompt(&server, "g", "1.0.0", "{{input}}").await;
    let golden = dataset(&server, "golden", vec![("a", "4", "4")]).await;
    set_gate(&server, gate(&golden, "production", 0.9, false))
        .await
        .unwrap();
    let refused = server
        .prompts()
        .delete_prompt(pb::DeletePromptRequest { name: "g".into() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("\"production\"") && refused.message().contains("gate"),
        "{}",
        refused.message()
    );
    let still = server
        .prompts()
        .get_prompt_version(pb::GetPromptVersionRequest {
            name: "g".into(),
            ..Default::default()
        })
        .await;
    assert!(still.is_ok(), "the refused delete removed nothing");

    server
        .evaluation()
        .delete_release_gate(pb::DeleteReleaseGateRequest {
            prompt_name: "g".into(),
            label: "production".into(),
        })
        .await
        .unwrap();
    server
        .prompts()
        .delete_prompt(pb::DeletePromptRequest { name: "g".into() })
        .await
        .expect("without gates the prompt is deleted");
}

/// Deleting a dataset while a schedule on it is being created: either the schedule is
/// refused (its dataset is gone) or the delete is (the dataset is in use), never both
/// accepted, which would leave a schedule evaluating a dataset that no longer exists.
#[tokio::test]
async fn a_dataset_is_never_deleted_from_under_a_schedule_created_at_the_same_time() {
    let server = TestServer::start().await;
    prompt(&server, "p", "1.0.0", "{{input}}").await;
    for round in 0..20 {
        let dataset_id = dataset(&server, &format!("d{round}"), vec![("a", "one", "one")]).await;
        let mut evaluation = server.evaluation();
        let delete = evaluation.delete_dataset(pb::DeleteDatasetRequest {
            dataset_id: dataset_id.clone(),
        });
        let create = schedule(
            &server,
            run(&dataset_id, "p", "", "echo"),
            "@yearly",
            false,
            "",
        );
        let (deleted, created) = tokio::join!(delete, create);
        match (deleted, created) {
            (Ok(_), Err(refused)) => assert_eq!(refused.code(), Code::NotFound, "{refused:?}"),
            (Err(refused), Ok(_)) => {
                assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}")
            }
            (deleted, created) => panic!(
                "round {round}: the delete and the schedule must not both succeed or both fail: {deleted:?} {created:?}"
            ),
        }
    }
}

on_both_backends!(
    an_every_schedule_runs_by_itself_until_paused_and_resumes_from_now,
    release_gates_refuse_allow_and_record_overrides_in_the_label_history,
    a_schedule_due_while_the_server_was_down_runs_once_after_the_restart,
    a_run_decided_on_before_a_crash_is_started_once_at_the_next_start,
);
