//! The experiment store on SQLite: group-committed exposures and records tell new writes
//! from repeats (within one batch and across batches), and everything reloads.

use chrono::Utc;
use llmops_experiments::{
    Experiment, ExperimentSpec, ExperimentStore, Exposure, MetricRecord, StoreError, Variant,
};
use llmops_store::{Durability, SqliteStore};

fn experiment(id: &str) -> Experiment {
    let spec = ExperimentSpec {
        name: id.into(),
        variants: vec![Variant::new("a"), Variant::new("b")],
        ..ExperimentSpec::default()
    };
    Experiment::draft(spec, id.into(), 100, Utc::now())
}

fn exposure(experiment: &str, user: &str) -> Exposure {
    Exposure {
        experiment_id: experiment.into(),
        user_id: user.into(),
        variant_id: "a".into(),
        time: Utc::now(),
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
        time: Utc::now(),
    }
}

#[tokio::test]
async fn batches_report_which_writes_were_new() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Full)
        .await
        .unwrap();
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

    store.close().await;
    let store = SqliteStore::open(dir.path(), Durability::Full)
        .await
        .unwrap();
    let mut values = Vec::new();
    store
        .visit_records("e1", &mut |variant, metric, value, _user| {
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
        .load_exposures("e1")
        .await
        .unwrap()
        .into_iter()
        .map(|(u, _)| u)
        .collect();
    users.sort();
    assert_eq!(users, ["u1", "u2", "u3"]);
    assert_eq!(store.load_experiments().await.unwrap().len(), 2);
}
