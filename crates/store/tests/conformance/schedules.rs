//! `ScheduleStore`: records round-trip whole (including a pending run), ids are unique,
//! replacing and deleting work, and everything reloads after a restart.

use llmops_evaluator::runs::RunSpec;
use llmops_evaluator::schedules::{PendingRun, Schedule, Trigger};
use llmops_evaluator::StoreError;

use crate::database::TestDatabase;
use crate::fixtures::now;

fn schedule(id: &str) -> Schedule {
    let now = now();
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
        created_by: "ci".into(),
    }
}

pub(crate) async fn schedules_round_trip_and_survive_a_reopen(db: TestDatabase) {
    let storage = db.open().await;
    let store = storage.schedules.clone();
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
        Err(StoreError::NotFound(_))
    ));
    drop(store);

    let storage = db.reopen(storage).await;
    let loaded = storage.schedules.load_schedules().await.unwrap();
    assert_eq!(loaded, vec![changed]);
}

pub(crate) async fn deleting_a_missing_schedule_reports_false_and_keeps_the_others(
    db: TestDatabase,
) {
    let storage = db.open().await;
    let store = storage.schedules.clone();
    assert!(!store.delete_schedule("never-inserted").await.unwrap());
    let kept = Schedule {
        paused: true,
        next_run_at: None,
        last_run_id: "run-9".into(),
        runs_started: 9,
        last_error: "dataset d is empty".into(),
        pending: Some(PendingRun {
            spec: RunSpec {
                id: "run-10".into(),
                ..schedule("kept").template
            },
            trigger: Trigger::Tick { due: now() },
        }),
        ..schedule("kept")
    };
    store.insert_schedule(&kept).await.unwrap();
    store.insert_schedule(&schedule("gone")).await.unwrap();
    assert!(!store.delete_schedule("never-inserted").await.unwrap());
    assert!(
        !store.delete_schedule("KEPT").await.unwrap(),
        "ids are exact"
    );
    assert!(store.delete_schedule("gone").await.unwrap());
    drop(store);

    let storage = db.reopen(storage).await;
    assert_eq!(
        storage.schedules.load_schedules().await.unwrap(),
        [kept],
        "the deletion is durable; the other schedule is whole"
    );
    assert!(!storage.schedules.delete_schedule("gone").await.unwrap());
}
