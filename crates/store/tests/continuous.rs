//! The schedule and release gate stores on SQLite: records round-trip whole (including a
//! pending run), ids are unique, replacing and deleting work, and everything reloads.

use chrono::Utc;
use llmops_evaluator::gates::{GateStore, ReleaseGate};
use llmops_evaluator::runs::RunSpec;
use llmops_evaluator::schedules::{PendingRun, Schedule, ScheduleStore, Trigger};
use llmops_evaluator::StoreError;
use llmops_store::{Durability, SqliteStore};

fn schedule(id: &str) -> Schedule {
    let now = Utc::now();
    Schedule {
        id: id.into(),
        template: RunSpec {
            dataset_id: "d".into(),
            prompt_name: "p".into(),
            model: "echo".into(),
            ..RunSpec::default()
        },
        schedule: "@every 90s".into(),
        on_prompt_change: true,
        watch_label: "staging".into(),
        paused: false,
        next_run_at: Some(now),
        last_run_id: String::new(),
        skipped_ticks: 0,
        runs_started: 0,
        last_error: String::new(),
        watched_version: "1.0.0".into(),
        pending: None,
        created_at: now,
        updated_at: now,
    }
}

fn gate(label: &str, min_pass_rate: f64) -> ReleaseGate {
    ReleaseGate {
        prompt_name: "p".into(),
        label: label.into(),
        dataset_id: "d".into(),
        model: "echo".into(),
        min_pass_rate,
        no_regression: true,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

#[tokio::test]
async fn schedules_round_trip_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Full)
        .await
        .unwrap();
    store.insert_schedule(&schedule("a")).await.unwrap();
    store.insert_schedule(&schedule("b")).await.unwrap();
    assert!(matches!(
        store.insert_schedule(&schedule("a")).await,
        Err(StoreError::Duplicate(_))
    ));
    let mut changed = schedule("a");
    changed.skipped_ticks = 3;
    changed.pending = Some(PendingRun {
        spec: RunSpec {
            id: "run-1".into(),
            ..changed.template.clone()
        },
        trigger: Trigger::PromptChange {
            from: "1.0.0".into(),
            to: "1.1.0".into(),
        },
    });
    store.update_schedule(&changed).await.unwrap();
    assert!(store.delete_schedule("b").await.unwrap());
    assert!(!store.delete_schedule("b").await.unwrap());
    assert!(matches!(
        store.update_schedule(&schedule("b")).await,
        Err(StoreError::Unavailable(_))
    ));
    store.close().await;

    let store = SqliteStore::open(dir.path(), Durability::Full)
        .await
        .unwrap();
    let loaded = store.load_schedules().await.unwrap();
    assert_eq!(loaded, vec![changed]);
}

#[tokio::test]
async fn a_gate_per_prompt_and_label_is_replaced_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Full)
        .await
        .unwrap();
    store.upsert_gate(&gate("production", 0.8)).await.unwrap();
    store.upsert_gate(&gate("active", 0.5)).await.unwrap();
    let replaced = gate("production", 0.95);
    store.upsert_gate(&replaced).await.unwrap();
    store.close().await;

    let store = SqliteStore::open(dir.path(), Durability::Full)
        .await
        .unwrap();
    let loaded = store.load_gates().await.unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[1], replaced, "sorted by label; replaced in place");
    assert!(store.delete_gate("p", "active").await.unwrap());
    assert!(!store.delete_gate("p", "active").await.unwrap());
    assert_eq!(store.load_gates().await.unwrap(), vec![replaced]);
}
