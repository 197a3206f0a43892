//! `ExperimentStore`: definitions round-trip and are replaced whole; group-committed
//! exposures and records tell new writes from repeats (within one batch and across
//! batches), are stored whole or not at all, and everything reloads after a restart.

use llmops_experiments::{
    AnalysisUnit, Experiment, ExperimentSpec, ExperimentStatus, ExperimentStore, Exposure,
    MetricDefinition, MetricDirection, MetricKind, MetricRecord, MetricRole, StoreError, Variant,
};

use crate::database::TestDatabase;
use crate::fixtures::now;

fn experiment(id: &str) -> Experiment {
    let spec = ExperimentSpec {
        created_by: String::new(),
        serves_prompt: String::new(),
        serves_label: String::new(),
        name: id.into(),
        variants: vec![Variant::new("a"), Variant::new("b")],
        ..ExperimentSpec::default()
    };
    Experiment::draft(spec, id.into(), 100, now())
}

/// An experiment with every field away from its default.
fn detailed_experiment(id: &str) -> Experiment {
    let control = Variant {
        is_control: true,
        prompt_name: "greeting".into(),
        prompt_version: "1.2.0".into(),
        weight: Some(0.25),
        ..Variant::new("control")
    };
    let treatment = Variant {
        description: "the shorter prompt".into(),
        model: "gpt-small".into(),
        parameters: serde_json::json!({"temperature": 0.2, "stop": ["\n"]})
            .as_object()
            .unwrap()
            .clone(),
        weight: Some(0.75),
        ..Variant::new("treatment")
    };
    let spec = ExperimentSpec {
        created_by: String::new(),
        serves_prompt: String::new(),
        serves_label: String::new(),
        name: format!("{id} name"),
        description: "does shorter help?".into(),
        seed: "seed-1".into(),
        coverage: Some(0.5),
        variants: vec![control, treatment],
        metrics: vec![
            MetricDefinition::new(
                "quality",
                MetricKind::Mean,
                MetricDirection::HigherIsBetter,
                MetricRole::Primary,
            ),
            MetricDefinition::new(
                "error",
                MetricKind::Proportion,
                MetricDirection::LowerIsBetter,
                MetricRole::Guardrail,
            ),
        ],
        alpha: Some(0.01),
        min_samples: Some(250),
        sequential: true,
        sequential_tuning: Some(1234.5),
        analysis_unit: AnalysisUnit::User,
        metadata: [("team".to_owned(), "search".to_owned())].into(),
        ..ExperimentSpec::default()
    };
    Experiment::draft(spec, id.into(), 100, now())
}

fn exposure(experiment: &str, user: &str) -> Exposure {
    Exposure {
        experiment_id: experiment.into(),
        user_id: user.into(),
        variant_id: "a".into(),
        time: now(),
    }
}

fn record(experiment: &str, record_id: &str, value: f64) -> MetricRecord {
    MetricRecord {
        experiment_id: experiment.into(),
        variant_id: "b".into(),
        metric: "m".into(),
        value,
        user_id: String::new(),
        record_id: record_id.into(),
        time: now(),
    }
}

/// Every record of `experiment` as the visitor sees it: (variant, metric, value, user).
async fn visited(
    store: &dyn ExperimentStore,
    experiment: &str,
) -> Vec<(String, String, f64, String)> {
    let mut seen = Vec::new();
    store
        .visit_records(experiment, None, &mut |variant, metric, value, user| {
            seen.push((variant.into(), metric.into(), value, user.into()));
        })
        .await
        .unwrap();
    seen
}

/// An experiment's exposures, sorted by user.
async fn exposures(store: &dyn ExperimentStore, experiment: &str) -> Vec<(String, String)> {
    let mut exposures = store.load_exposures(experiment, None).await.unwrap();
    exposures.sort();
    exposures
}

pub(crate) async fn batches_report_which_writes_were_new(db: TestDatabase) {
    let storage = db.open().await;
    let store = storage.experiments.clone();
    store.insert_experiment(&experiment("e1")).await.unwrap();
    store.insert_experiment(&experiment("e2")).await.unwrap();
    let duplicate = store
        .insert_experiment(&experiment("e1"))
        .await
        .unwrap_err();
    assert!(matches!(duplicate, StoreError::Duplicate(_)));

    let committed = store
        .commit_writes(
            &[
                exposure("e1", "u1"),
                exposure("e1", "u1"),
                exposure("e2", "u1"),
                exposure("e1", "u2"),
            ],
            &[
                record("e1", "r1", 1.0),
                record("e1", "", 2.0),
                record("e1", "r1", 3.0),
                record("e2", "r1", 4.0),
                record("e1", "", 5.0),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        committed.exposures,
        [true, false, true, true],
        "a user repeated in one batch counts once"
    );
    assert_eq!(
        committed.records,
        [true, true, false, true, true],
        "record ids are per experiment"
    );

    let again = store
        .commit_writes(
            &[exposure("e1", "u2"), exposure("e1", "u3")],
            &[record("e1", "r1", 9.0), record("e1", "r2", 9.0)],
        )
        .await
        .unwrap();
    assert_eq!(again.exposures, [false, true]);
    assert_eq!(again.records, [false, true]);

    // Batches larger than one statement keep their order.
    let many: Vec<_> = (0..2500)
        .map(|i| record("e2", &format!("big-{}", i % 2000), i as f64))
        .collect();
    let big = store.commit_writes(&[], &many).await.unwrap();
    assert_eq!(big.records.iter().filter(|new| **new).count(), 2000);
    assert!(
        big.records[..2000].iter().all(|new| *new) && big.records[2000..].iter().all(|new| !*new)
    );

    let storage = db.reopen(storage).await;
    let store = storage.experiments;
    let mut values = Vec::new();
    store
        .visit_records("e1", None, &mut |variant, metric, value, _user| {
            assert_eq!((variant, metric), ("b", "m"));
            values.push(value);
        })
        .await
        .unwrap();
    assert_eq!(
        values,
        [1.0, 2.0, 5.0, 9.0],
        "stored values, in the order they were stored"
    );
    let mut users: Vec<_> = store
        .load_exposures("e1", None)
        .await
        .unwrap()
        .into_iter()
        .map(|(u, _)| u)
        .collect();
    users.sort();
    assert_eq!(users, ["u1", "u2", "u3"]);
    assert_eq!(store.load_experiments().await.unwrap().len(), 2);
}

pub(crate) async fn an_experiment_round_trips_and_an_update_replaces_it(db: TestDatabase) {
    let storage = db.open().await;
    let store = storage.experiments.clone();
    let draft = detailed_experiment("e1");
    let other = experiment("e2");
    store.insert_experiment(&draft).await.unwrap();
    store.insert_experiment(&other).await.unwrap();
    let mut loaded = store.load_experiments().await.unwrap();
    loaded.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(loaded, [draft.clone(), other.clone()]);

    let started = now();
    let mut running = Experiment {
        status: ExperimentStatus::Running,
        start_time: Some(started),
        updated_at: started,
        ..draft.clone()
    };
    running.variants[1].weight = Some(0.5);
    store.update_experiment(&running).await.unwrap();
    let completed = Experiment {
        status: ExperimentStatus::Completed,
        end_time: Some(now()),
        winner_variant_id: "treatment".into(),
        updated_at: now(),
        ..running
    };
    store.update_experiment(&completed).await.unwrap();

    let missing = experiment("never-inserted");
    assert!(
        matches!(
            store.update_experiment(&missing).await,
            Err(StoreError::NotFound(_))
        ),
        "an update does not create"
    );
    let refused = store.insert_experiment(&detailed_experiment("e1")).await;
    assert!(
        matches!(refused, Err(StoreError::Duplicate(_))),
        "{refused:?}"
    );

    let storage = db.reopen(storage).await;
    let mut loaded = storage.experiments.load_experiments().await.unwrap();
    loaded.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        loaded,
        [completed, other],
        "the last update, whole; the other untouched"
    );
}

pub(crate) async fn exposures_and_records_survive_a_reopen_and_are_visited(db: TestDatabase) {
    let storage = db.open().await;
    let store = storage.experiments.clone();
    store.insert_experiment(&experiment("e1")).await.unwrap();
    store.insert_experiment(&experiment("e2")).await.unwrap();
    let mut treated = exposure("e1", "u2");
    treated.variant_id = "b".into();
    let mut by_user = record("e1", "r1", 0.25);
    by_user.user_id = "u2".into();
    by_user.metric = "quality".into();
    let committed = store
        .commit_writes(
            &[exposure("e1", "u1"), treated, exposure("e2", "u9")],
            &[
                by_user,
                record("e2", "r1", 7.0),
                record("e1", "", -1.5),
                record("e1", "", -1.5),
            ],
        )
        .await
        .unwrap();
    assert_eq!(committed.exposures, [true, true, true]);
    assert_eq!(
        committed.records,
        [true, true, true, true],
        "records without an id never repeat"
    );

    let storage = db.reopen(storage).await;
    let store = &*storage.experiments;
    assert_eq!(
        exposures(store, "e1").await,
        [("u1".into(), "a".into()), ("u2".into(), "b".into())]
    );
    assert_eq!(exposures(store, "e2").await, [("u9".into(), "a".into())]);
    let row = |variant: &str, metric: &str, value: f64, user: &str| {
        (
            variant.to_owned(),
            metric.to_owned(),
            value,
            user.to_owned(),
        )
    };
    assert_eq!(
        visited(store, "e1").await,
        [
            row("b", "quality", 0.25, "u2"),
            row("b", "m", -1.5, ""),
            row("b", "m", -1.5, ""),
        ]
    );
    assert_eq!(visited(store, "e2").await, [row("b", "m", 7.0, "")]);
    assert!(visited(store, "never-inserted").await.is_empty());

    let repeat = store
        .commit_writes(&[exposure("e1", "u1")], &[record("e1", "r1", 99.0)])
        .await
        .unwrap();
    assert_eq!(
        (repeat.exposures, repeat.records),
        (vec![false], vec![false]),
        "what was stored before a restart is still known after it"
    );
    assert_eq!(visited(store, "e1").await.len(), 3);
}

pub(crate) async fn a_batch_naming_a_missing_experiment_is_refused_whole(db: TestDatabase) {
    let store = db.open().await.experiments;
    store.insert_experiment(&experiment("e1")).await.unwrap();
    let err = store
        .commit_writes(
            &[exposure("e1", "u1")],
            &[record("e1", "r1", 1.0), record("missing", "r1", 2.0)],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(
        store.load_exposures("e1", None).await.unwrap().is_empty(),
        "the batch's exposures are rolled back with it"
    );
    assert!(visited(&*store, "e1").await.is_empty());
    let err = store
        .commit_writes(&[exposure("missing", "u1")], &[])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    let committed = store
        .commit_writes(&[exposure("e1", "u1")], &[record("e1", "r1", 1.0)])
        .await
        .unwrap();
    assert_eq!(
        (committed.exposures, committed.records),
        (vec![true], vec![true]),
        "a refused batch reserves nothing"
    );
}

/// `id`, serving `prompt`'s `label` (a draft).
fn serving_experiment(id: &str, prompt: &str, label: &str) -> Experiment {
    Experiment {
        serves_prompt: prompt.into(),
        serves_label: label.into(),
        ..experiment(id)
    }
}

fn with_status(experiment: &Experiment, status: ExperimentStatus) -> Experiment {
    Experiment {
        status,
        updated_at: now(),
        ..experiment.clone()
    }
}

pub(crate) async fn one_running_experiment_serves_a_label_whichever_process_starts_it(
    db: TestDatabase,
) {
    // Two processes on one database, as two replicas are.
    let first = db.open().await;
    let second = db.open().await;
    let a = serving_experiment("a", "greeting", "production");
    let b = serving_experiment("b", "greeting", "production");
    let elsewhere = serving_experiment("c", "greeting", "staging");
    for e in [&a, &b, &elsewhere] {
        first.experiments.insert_experiment(e).await.unwrap();
    }

    first
        .experiments
        .update_experiment(&with_status(&a, ExperimentStatus::Running))
        .await
        .unwrap();
    let refused = second
        .experiments
        .update_experiment(&with_status(&b, ExperimentStatus::Running))
        .await;
    match refused {
        Err(StoreError::Conflict(message)) => {
            assert!(
                message.contains("\"a\""),
                "names the one serving: {message}"
            )
        }
        other => panic!("a second running experiment on the label: {other:?}"),
    }
    // Another label, and experiments that do not run, are not in the way.
    second
        .experiments
        .update_experiment(&with_status(&elsewhere, ExperimentStatus::Running))
        .await
        .unwrap();
    second
        .experiments
        .update_experiment(&with_status(&b, ExperimentStatus::Draft))
        .await
        .unwrap();

    // Once the first stops serving (paused here), the label is free.
    first
        .experiments
        .update_experiment(&with_status(&a, ExperimentStatus::Paused))
        .await
        .unwrap();
    second
        .experiments
        .update_experiment(&with_status(&b, ExperimentStatus::Running))
        .await
        .unwrap();

    // Racing starts of two drafts on one label: exactly one runs.
    let x = serving_experiment("x", "summary", "production");
    let y = serving_experiment("y", "summary", "production");
    first.experiments.insert_experiment(&x).await.unwrap();
    first.experiments.insert_experiment(&y).await.unwrap();
    let (x_running, y_running) = (
        with_status(&x, ExperimentStatus::Running),
        with_status(&y, ExperimentStatus::Running),
    );
    let (x_started, y_started) = tokio::join!(
        first.experiments.update_experiment(&x_running),
        second.experiments.update_experiment(&y_running),
    );
    assert_eq!(
        [x_started.is_ok(), y_started.is_ok()]
            .iter()
            .filter(|ok| **ok)
            .count(),
        1,
        "{x_started:?} {y_started:?}"
    );

    // The rule holds after a restart too.
    second.close().await;
    let first = db.reopen(first).await;
    let running: Vec<String> = first
        .experiments
        .load_experiments()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.status == ExperimentStatus::Running)
        .map(|e| e.id)
        .collect();
    assert_eq!(running.len(), 3, "b, c and one of x and y: {running:?}");
    let refused = first
        .experiments
        .update_experiment(&with_status(&a, ExperimentStatus::Running))
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
}
