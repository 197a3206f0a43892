//! `PromptStore`: versions, the active pointer, labels and the gapless event feed.

use llmops_registry::{
    PromptChange, PromptEvent, PromptEventKind, PromptStore, PromptVersion, ReleaseBasis,
    StoreError,
};
use uuid::Uuid;

use crate::database::TestDatabase;
use crate::fixtures::now;

fn version(name: &str, version: &str) -> PromptVersion {
    PromptVersion {
        id: Uuid::now_v7(),
        name: name.into(),
        version: semver::Version::parse(version).unwrap(),
        template: format!("template of {name} {version}"),
        messages: vec![],
        variables: vec![],
        model_config: None,
        tags: vec!["t".into()],
        metadata: [("k".to_owned(), "v".to_owned())].into(),
        author: "ada".into(),
        description: String::new(),
        commit_message: String::new(),
        created_at: now(),
        updated_at: now(),
    }
}

fn event(kind: PromptEventKind, name: &str) -> PromptEvent {
    PromptEvent {
        sequence: 0,
        kind,
        prompt_name: name.into(),
        version: None,
        label: None,
        time: now(),
        previous_version: None,
        override_reason: None,
        // Stored in the event's payload: a reload must keep it.
        actor: Some("ci".into()),
    }
}

async fn create(store: &dyn PromptStore, record: &PromptVersion) -> Result<u64, StoreError> {
    store
        .commit_prompt_change(
            &PromptChange::CreateVersion(Box::new(record.clone())),
            &event(PromptEventKind::VersionCreated, &record.name),
        )
        .await
}

pub(crate) async fn versions_round_trip_and_the_first_is_active(db: TestDatabase) {
    let store = db.open().await.prompts;
    let a = version("p", "1.0.0+b.1");
    let b = version("p", "2.0.0-rc.1");
    create(&*store, &a).await.unwrap();
    create(&*store, &b).await.unwrap();
    let state = store.load_registry().await.unwrap();
    assert_eq!(state.versions.len(), 2);
    let loaded = state.versions.iter().find(|v| v.id == a.id).unwrap();
    assert_eq!(
        loaded.version.to_string(),
        "1.0.0+b.1",
        "build metadata is kept"
    );
    assert_eq!(
        (&loaded.tags, &loaded.metadata, &loaded.template),
        (&a.tags, &a.metadata, &a.template)
    );
    assert_eq!(state.active, [("p".to_owned(), a.id)]);
    assert_eq!(state.head_sequence, 2);
}

pub(crate) async fn duplicates_in_precedence_are_refused(db: TestDatabase) {
    let store = db.open().await.prompts;
    create(&*store, &version("p", "1.0.0+a")).await.unwrap();
    let err = create(&*store, &version("p", "1.0.0+b")).await.unwrap_err();
    assert!(matches!(err, StoreError::Duplicate(_)), "{err:?}");
    let state = store.load_registry().await.unwrap();
    assert_eq!(
        (state.versions.len(), state.head_sequence),
        (1, 1),
        "a refused change appends no event"
    );
}

pub(crate) async fn active_and_labelled_versions_cannot_be_deleted(db: TestDatabase) {
    let store = db.open().await.prompts;
    let a = version("p", "1.0.0");
    let b = version("p", "2.0.0");
    create(&*store, &a).await.unwrap();
    create(&*store, &b).await.unwrap();
    let delete = |id| PromptChange::DeleteVersion {
        name: "p".into(),
        version_id: id,
    };
    let err = store
        .commit_prompt_change(&delete(a.id), &event(PromptEventKind::VersionDeleted, "p"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    let label = PromptChange::SetLabel {
        name: "p".into(),
        label: "prod".into(),
        version_id: b.id,
        at: now(),
        basis: None,
    };
    store
        .commit_prompt_change(&label, &event(PromptEventKind::LabelMoved, "p"))
        .await
        .unwrap();
    let err = store
        .commit_prompt_change(&delete(b.id), &event(PromptEventKind::VersionDeleted, "p"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    let unlabel = PromptChange::DeleteLabel {
        name: "p".into(),
        label: "prod".into(),
    };
    store
        .commit_prompt_change(&unlabel, &event(PromptEventKind::LabelDeleted, "p"))
        .await
        .unwrap();
    store
        .commit_prompt_change(&delete(b.id), &event(PromptEventKind::VersionDeleted, "p"))
        .await
        .unwrap();
    let err = store
        .commit_prompt_change(&delete(b.id), &event(PromptEventKind::VersionDeleted, "p"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(store.load_registry().await.unwrap().versions.len(), 1);
}

pub(crate) async fn activation_and_labels_persist(db: TestDatabase) {
    let store = db.open().await.prompts;
    let a = version("p", "1.0.0");
    let b = version("p", "2.0.0");
    create(&*store, &a).await.unwrap();
    create(&*store, &b).await.unwrap();
    let at = now();
    let activate = PromptChange::Activate {
        name: "p".into(),
        version_id: b.id,
        at,
        basis: None,
    };
    store
        .commit_prompt_change(&activate, &event(PromptEventKind::VersionActivated, "p"))
        .await
        .unwrap();
    for (label, id) in [("prod", a.id), ("prod", b.id), ("staging", a.id)] {
        let change = PromptChange::SetLabel {
            name: "p".into(),
            label: label.into(),
            version_id: id,
            at,
            basis: None,
        };
        store
            .commit_prompt_change(&change, &event(PromptEventKind::LabelMoved, "p"))
            .await
            .unwrap();
    }
    let state = store.load_registry().await.unwrap();
    assert_eq!(state.active, [("p".to_owned(), b.id)]);
    let mut labels = state.labels.clone();
    labels.sort();
    assert_eq!(
        labels,
        [
            ("p".into(), "prod".into(), b.id),
            ("p".into(), "staging".into(), a.id)
        ]
    );
    let loaded_b = state.versions.iter().find(|v| v.id == b.id).unwrap();
    assert_eq!(
        loaded_b.updated_at.timestamp_micros(),
        at.timestamp_micros()
    );
}

pub(crate) async fn events_are_sequenced_and_filtered(db: TestDatabase) {
    let store = db.open().await.prompts;
    for (name, v) in [
        ("a", "1.0.0"),
        ("b", "1.0.0"),
        ("a", "2.0.0"),
        ("b", "2.0.0"),
    ] {
        create(&*store, &version(name, v)).await.unwrap();
    }
    let all = store.prompt_events_after(0, None, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert!(
        all.iter().all(|e| e.actor.as_deref() == Some("ci")),
        "an event's actor is stored with it"
    );
    let only_a = store.prompt_events_after(1, Some("a"), 100).await.unwrap();
    assert_eq!(only_a.iter().map(|e| e.sequence).collect::<Vec<_>>(), [3]);
    let limited = store.prompt_events_after(0, None, 2).await.unwrap();
    assert_eq!(limited.len(), 2);
}

pub(crate) async fn concurrent_commits_get_distinct_gapless_sequences(db: TestDatabase) {
    let store = db.open().await.prompts;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                create(&*store, &version(&format!("p{i}"), "1.0.0"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut sequences = Vec::new();
    for task in tasks {
        sequences.push(task.await.unwrap());
    }
    sequences.sort_unstable();
    assert_eq!(sequences, (1..=20).collect::<Vec<u64>>());
    let stored = store.prompt_events_after(0, None, 100).await.unwrap();
    assert_eq!(stored.len(), 20);
}

/// The feed's promise to a subscriber resuming "after N": nothing at or below N ever
/// appears later. Writers on two independently opened stores (two processes, on a
/// shared database) race while a reader polls; every read must continue exactly where
/// the last one stopped. A sequence handed out before commit (a bare database sequence)
/// fails this: the reader sees N+1 committed while N is still in flight.
pub(crate) async fn readers_never_see_a_gap_that_is_later_filled(db: TestDatabase) {
    const WRITERS_PER_STORE: usize = 8;
    const COMMITS_PER_WRITER: usize = 40;
    let stores = [db.open().await.prompts, db.open().await.prompts];
    let total = (stores.len() * WRITERS_PER_STORE * COMMITS_PER_WRITER) as u64;
    let mut writers = Vec::new();
    for (s, store) in stores.iter().enumerate() {
        for w in 0..WRITERS_PER_STORE {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                for c in 0..COMMITS_PER_WRITER {
                    let record = version(&format!("p{s}-{w}-{c}"), "1.0.0");
                    create(&*store, &record).await.unwrap();
                }
            }));
        }
    }
    let reader = stores[0].clone();
    let mut last = 0_u64;
    let mut reads = 0_u32;
    while last < total {
        let events = reader.prompt_events_after(last, None, 1000).await.unwrap();
        for event in &events {
            assert_eq!(
                event.sequence,
                last + 1,
                "read {reads}: after {last} the feed showed {} (a gap a late commit would fill)",
                event.sequence
            );
            last = event.sequence;
        }
        reads += 1;
        tokio::task::yield_now().await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(last, total);
    assert!(reads > 10, "the reader raced the writers ({reads} reads)");
}

/// A gated pointer moves only while what its gate's decision rested on still holds: the
/// gate checked (or its absence) and the dataset version its evidence ran on. Another
/// process changing either between the check and the commit fails the move whole.
pub(crate) async fn a_gated_move_commits_only_on_the_basis_it_was_checked_on(db: TestDatabase) {
    let storage = db.open().await;
    let store = storage.prompts.clone();
    let a = version("p", "1.0.0");
    create(&*store, &a).await.unwrap();
    let dataset = crate::datasets::dataset("d");
    storage.datasets.insert_dataset(&dataset).await.unwrap();
    let mut gate = llmops_evaluator::gates::ReleaseGate {
        prompt_name: "p".into(),
        label: "prod".into(),
        dataset_id: "d".into(),
        model: "echo".into(),
        min_pass_rate: 0.9,
        no_regression: false,
        created_at: now(),
        updated_at: now(),
    };
    storage.gates.upsert_gate(&gate).await.unwrap();
    let checked = ReleaseBasis {
        gate_updated_at: Some(gate.updated_at),
        dataset: Some(("d".into(), dataset.version)),
    };
    let move_with = |basis: ReleaseBasis| PromptChange::SetLabel {
        name: "p".into(),
        label: "prod".into(),
        version_id: a.id,
        at: now(),
        basis: Some(basis),
    };
    let moved = |store: std::sync::Arc<dyn PromptStore>, basis| async move {
        store
            .commit_prompt_change(&move_with(basis), &event(PromptEventKind::LabelMoved, "p"))
            .await
    };
    // Checked while the pointer had no gate, committed after one was set.
    let err = moved(store.clone(), ReleaseBasis::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // The gate changed after the check.
    gate.updated_at += chrono::Duration::seconds(1);
    storage.gates.upsert_gate(&gate).await.unwrap();
    let err = moved(store.clone(), checked.clone()).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // The dataset moved on to a version the evidence did not run on.
    let current = ReleaseBasis {
        gate_updated_at: Some(gate.updated_at),
        ..checked
    };
    let stale_dataset = ReleaseBasis {
        dataset: Some(("d".into(), dataset.version + 1)),
        ..current.clone()
    };
    let err = moved(store.clone(), stale_dataset).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let state = store.load_registry().await.unwrap();
    assert!(state.labels.is_empty(), "no refused move left a label");
    assert_eq!(state.head_sequence, 1, "nor an event");
    // On the basis as it stands, the move commits.
    moved(store.clone(), current).await.unwrap();
    let state = store.load_registry().await.unwrap();
    assert_eq!(state.labels, [("p".to_owned(), "prod".to_owned(), a.id)]);
}

pub(crate) async fn deleting_a_prompt_removes_everything(db: TestDatabase) {
    let store = db.open().await.prompts;
    let a = version("p", "1.0.0");
    create(&*store, &a).await.unwrap();
    create(&*store, &version("p", "2.0.0")).await.unwrap();
    create(&*store, &version("keep", "1.0.0")).await.unwrap();
    let label = PromptChange::SetLabel {
        name: "p".into(),
        label: "prod".into(),
        version_id: a.id,
        at: now(),
        basis: None,
    };
    store
        .commit_prompt_change(&label, &event(PromptEventKind::LabelMoved, "p"))
        .await
        .unwrap();
    store
        .commit_prompt_change(
            &PromptChange::DeletePrompt { name: "p".into() },
            &event(PromptEventKind::PromptDeleted, "p"),
        )
        .await
        .unwrap();
    let state = store.load_registry().await.unwrap();
    assert_eq!(
        state
            .versions
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>(),
        ["keep"]
    );
    assert!(state.labels.is_empty());
    assert_eq!(state.active.len(), 1);
}

pub(crate) async fn everything_survives_a_reopen(db: TestDatabase) {
    let storage = db.open().await;
    let a = version("p", "1.0.0");
    create(&*storage.prompts, &a).await.unwrap();
    let label = PromptChange::SetLabel {
        name: "p".into(),
        label: "prod".into(),
        version_id: a.id,
        at: now(),
        basis: None,
    };
    storage
        .prompts
        .commit_prompt_change(&label, &event(PromptEventKind::LabelMoved, "p"))
        .await
        .unwrap();
    let storage = db.reopen(storage).await;
    let state = storage.prompts.load_registry().await.unwrap();
    assert_eq!((state.versions.len(), state.head_sequence), (1, 2));
    assert_eq!(state.versions[0].id, a.id);
    assert_eq!(state.active, [("p".to_owned(), a.id)]);
    assert_eq!(state.labels, [("p".into(), "prod".into(), a.id)]);
    assert_eq!(
        create(&*storage.prompts, &version("p", "2.0.0"))
            .await
            .unwrap(),
        3,
        "the sequence goes on where it stopped"
    );
}
