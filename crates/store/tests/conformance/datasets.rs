//! `DatasetStore`: definitions round-trip; every change makes a version, and every
//! version stays readable; an import is invisible until committed and leaves nothing
//! when abandoned; deleting a dataset takes its samples with it.

use std::time::Duration;

use llmops_evaluator::datasets::{Dataset, DatasetStore, DatasetType, Sample, StoredSample};
use llmops_evaluator::StoreError;

use crate::database::TestDatabase;
use crate::fixtures::{ids, now};

/// A dataset at version 1 with no samples, every field set.
pub(crate) fn dataset(id: &str) -> Dataset {
    Dataset {
        id: id.into(),
        name: format!("{id} name"),
        description: format!("what {id} checks"),
        dataset_type: DatasetType::Regression,
        metadata: [("owner".to_owned(), "ada".to_owned())].into(),
        sample_count: 0,
        version: 1,
        content_hash: "empty".into(),
        created_at: now(),
        updated_at: now(),
    }
}

/// `dataset` as of `version`, holding `count` samples.
fn at_version(dataset: &Dataset, version: u64, count: u64) -> Dataset {
    Dataset {
        version,
        sample_count: count,
        content_hash: format!("hash-{version}-{count}"),
        updated_at: now(),
        ..dataset.clone()
    }
}

fn sample(id: &str) -> Sample {
    Sample {
        id: id.into(),
        input: serde_json::json!({"question": format!("what is {id}?"), "n": [1, 2.5]}),
        expected_output: format!("{id} is a sample"),
        context: format!("context of {id}"),
        metadata: [("source".to_owned(), id.to_owned())].into(),
    }
}

fn samples(ids: &[&str]) -> Vec<Sample> {
    ids.iter().map(|id| sample(id)).collect()
}

/// The samples of a page, without their positions.
fn contents(page: &[StoredSample]) -> Vec<Sample> {
    page.iter().map(|stored| stored.sample.clone()).collect()
}

/// Every sample of the dataset as of `version`, read in pages of `page` samples.
async fn all_samples_at(
    store: &dyn DatasetStore,
    dataset_id: &str,
    version: u64,
    page: usize,
) -> Vec<StoredSample> {
    let mut all: Vec<StoredSample> = Vec::new();
    loop {
        let after = all.last().map_or(0, |last| last.position);
        let next = store
            .samples_at(dataset_id, version, after, page)
            .await
            .unwrap();
        assert!(next.len() <= page, "a page holds at most its limit");
        assert!(
            next.iter().all(|stored| stored.position > after),
            "a page holds only samples after {after}"
        );
        if next.is_empty() {
            return all;
        }
        all.extend(next);
    }
}

/// The dataset with this id, as loaded.
async fn loaded(store: &dyn DatasetStore, id: &str) -> Option<Dataset> {
    let datasets = store.load_datasets().await.unwrap();
    datasets.into_iter().find(|dataset| dataset.id == id)
}

/// The ids of `samples`, sorted (for answers whose order the trait leaves open).
fn sorted_ids<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Vec<String> {
    let mut ids: Vec<String> = samples.into_iter().map(|s| s.id.clone()).collect();
    ids.sort();
    ids
}

pub(crate) async fn a_dataset_round_trips_with_every_field(db: TestDatabase) {
    let store = db.open().await.datasets;
    let first = dataset("d1");
    let mut second = dataset("d2");
    second.dataset_type = DatasetType::Benchmark;
    second.metadata.clear();
    store.insert_dataset(&first).await.unwrap();
    store.insert_dataset(&second).await.unwrap();
    let mut all = store.load_datasets().await.unwrap();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(all, [first.clone(), second.clone()]);

    let committed = Dataset {
        description: "an import replaced this".into(),
        ..at_version(&first, 2, 0)
    };
    store.update_dataset(&committed).await.unwrap();
    assert_eq!(loaded(&*store, "d1").await, Some(committed));
    assert_eq!(loaded(&*store, "d2").await, Some(second));
    assert!(
        matches!(
            store.update_dataset(&dataset("never-inserted")).await,
            Err(StoreError::NotFound(_))
        ),
        "an update does not create"
    );
    assert_eq!(loaded(&*store, "never-inserted").await, None);
}

pub(crate) async fn a_taken_id_or_name_is_a_duplicate(db: TestDatabase) {
    let store = db.open().await.datasets;
    let original = dataset("d1");
    store.insert_dataset(&original).await.unwrap();
    let same_id = Dataset {
        name: "another name".into(),
        ..dataset("d1")
    };
    let same_name = Dataset {
        name: original.name.clone(),
        ..dataset("d2")
    };
    for refused in [same_id, same_name] {
        let err = store.insert_dataset(&refused).await.unwrap_err();
        assert!(matches!(err, StoreError::Duplicate(_)), "{err:?}");
    }
    assert_eq!(store.load_datasets().await.unwrap(), [original]);
}

pub(crate) async fn every_change_makes_a_version_and_old_versions_stay_readable(db: TestDatabase) {
    let store = db.open().await.datasets;
    let d1 = dataset("d1");
    store.insert_dataset(&d1).await.unwrap();
    let v2 = at_version(&d1, 2, 3);
    store
        .change_samples(&v2, &samples(&["a", "b", "c"]), &[])
        .await
        .unwrap();
    let v3 = at_version(&d1, 3, 3);
    store
        .change_samples(&v3, &samples(&["d"]), &ids(&["b"]))
        .await
        .unwrap();
    assert_eq!(loaded(&*store, "d1").await, Some(v3.clone()));

    // Pages of one sample, then of two: the same samples in the order they were added.
    let version2 = all_samples_at(&*store, "d1", 2, 1).await;
    assert_eq!(contents(&version2), samples(&["a", "b", "c"]));
    assert!(version2.windows(2).all(|w| w[0].position < w[1].position));
    let version3 = all_samples_at(&*store, "d1", 3, 2).await;
    assert_eq!(contents(&version3), samples(&["a", "c", "d"]));
    assert_eq!(
        (version3[0].position, version3[1].position),
        (version2[0].position, version2[2].position),
        "a sample keeps its position in every version"
    );
    assert!(version3[2].position > version2[2].position);
    assert!(all_samples_at(&*store, "d1", 1, 10).await.is_empty());

    let page = store
        .samples_at("d1", 3, version3[0].position, 1)
        .await
        .unwrap();
    assert_eq!(page, version3[1..2], "a page resumes after its position");

    let by_id = |version, wanted: &[&str]| {
        let store = store.clone();
        let wanted = ids(wanted);
        async move {
            let mut found = store
                .samples_by_id_at("d1", version, &wanted)
                .await
                .unwrap();
            found.sort_by_key(|stored| stored.position);
            found
        }
    };
    assert_eq!(
        by_id(2, &["b", "d", "zz"]).await,
        [version2[1].clone()],
        "b is in version 2, d is not yet"
    );
    assert_eq!(by_id(3, &["b", "d"]).await, [version3[2].clone()]);
    assert!(by_id(1, &["a"]).await.is_empty());

    let current = store
        .current_samples("d1", &ids(&["a", "b", "d", "zz"]))
        .await
        .unwrap();
    assert_eq!(sorted_ids(&current), ["a", "d"]);
    assert_eq!(
        current.iter().find(|s| s.id == "a"),
        Some(&sample("a")),
        "whole samples"
    );

    // A deleted id may come back with new content; version 2 keeps the old one.
    let returned = Sample {
        expected_output: "b, rewritten".into(),
        ..sample("b")
    };
    let v4 = at_version(&d1, 4, 4);
    store
        .change_samples(&v4, std::slice::from_ref(&returned), &[])
        .await
        .unwrap();
    assert_eq!(
        contents(&all_samples_at(&*store, "d1", 4, 10).await),
        [sample("a"), sample("c"), sample("d"), returned]
    );
    assert_eq!(all_samples_at(&*store, "d1", 2, 10).await, version2);
}

pub(crate) async fn a_change_adding_a_current_id_is_refused_whole(db: TestDatabase) {
    let store = db.open().await.datasets;
    let d1 = dataset("d1");
    store.insert_dataset(&d1).await.unwrap();
    let v2 = at_version(&d1, 2, 2);
    store
        .change_samples(&v2, &samples(&["a", "b"]), &[])
        .await
        .unwrap();

    let err = store
        .change_samples(&at_version(&d1, 3, 3), &samples(&["c", "a"]), &ids(&["b"]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate(_)), "{err:?}");
    assert_eq!(
        loaded(&*store, "d1").await,
        Some(v2),
        "the definition is unchanged"
    );
    assert_eq!(
        contents(&all_samples_at(&*store, "d1", 3, 10).await),
        samples(&["a", "b"]),
        "neither the addition nor the deletion happened"
    );

    // Larger than one statement: the duplicate comes after the first 2,000 rows.
    let mut many: Vec<Sample> = (0..2500).map(|i| sample(&format!("s{i:04}"))).collect();
    many.push(sample("b"));
    let err = store
        .change_samples(&at_version(&d1, 3, 2503), &many, &[])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate(_)), "{err:?}");
    assert_eq!(all_samples_at(&*store, "d1", 3, 1000).await.len(), 2);
}

pub(crate) async fn large_changes_are_stored_whole_and_in_order(db: TestDatabase) {
    let store = db.open().await.datasets;
    let d1 = dataset("d1");
    store.insert_dataset(&d1).await.unwrap();
    let many: Vec<Sample> = (0..2500).map(|i| sample(&format!("s{i:04}"))).collect();
    let every_id: Vec<String> = many.iter().map(|s| s.id.clone()).collect();
    store
        .change_samples(&at_version(&d1, 2, 2500), &many, &[])
        .await
        .unwrap();
    let stored = all_samples_at(&*store, "d1", 2, 1000).await;
    assert_eq!(contents(&stored), many);

    let mut asked = every_id.clone();
    asked.push("missing".into());
    let current = store.current_samples("d1", &asked).await.unwrap();
    assert_eq!(sorted_ids(&current), every_id);
    let mut by_id = store.samples_by_id_at("d1", 2, &asked).await.unwrap();
    by_id.sort_by_key(|stored| stored.position);
    assert_eq!(by_id, stored);

    // Deleting more ids than one statement takes.
    store
        .change_samples(&at_version(&d1, 3, 1), &[], &every_id[1..])
        .await
        .unwrap();
    assert_eq!(
        all_samples_at(&*store, "d1", 3, 1000).await,
        stored[..1],
        "only the first sample is left"
    );
    assert_eq!(all_samples_at(&*store, "d1", 2, 1000).await.len(), 2500);
}

pub(crate) async fn an_import_is_invisible_until_committed_and_an_abandoned_one_leaves_nothing(
    db: TestDatabase,
) {
    let store = db.open().await.datasets;
    let d1 = dataset("d1");
    store.insert_dataset(&d1).await.unwrap();
    let v2 = at_version(&d1, 2, 1);
    store
        .change_samples(&v2, &samples(&["a"]), &[])
        .await
        .unwrap();

    store
        .stage_samples("d1", 3, &samples(&["b", "c"]))
        .await
        .unwrap();
    assert_eq!(
        contents(&all_samples_at(&*store, "d1", 2, 10).await),
        samples(&["a"]),
        "readers of the dataset's version do not see the import"
    );
    assert_eq!(loaded(&*store, "d1").await, Some(v2.clone()));
    for taken in ["c", "a"] {
        let err = store
            .stage_samples("d1", 3, &samples(&["e", taken]))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Duplicate(_)),
            "{taken} is taken by an earlier batch or the dataset: {err:?}"
        );
    }
    assert!(
        store
            .samples_by_id_at("d1", 3, &ids(&["e"]))
            .await
            .unwrap()
            .is_empty(),
        "a refused batch is stored not at all"
    );

    // Abandoned: nothing of it is left, at any version, and its ids are free again.
    store.discard_samples_after("d1", 2).await.unwrap();
    assert_eq!(
        contents(&all_samples_at(&*store, "d1", 3, 10).await),
        samples(&["a"])
    );
    assert!(store
        .samples_by_id_at("d1", 3, &ids(&["b", "c", "e"]))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(loaded(&*store, "d1").await, Some(v2.clone()));

    // Retried and committed: visible at the new version, the old one unchanged.
    store
        .stage_samples("d1", 3, &samples(&["c"]))
        .await
        .unwrap();
    store
        .stage_samples("d1", 3, &samples(&["b"]))
        .await
        .unwrap();
    let v3 = at_version(&d1, 3, 3);
    store.update_dataset(&v3).await.unwrap();
    assert_eq!(loaded(&*store, "d1").await, Some(v3));
    assert_eq!(
        contents(&all_samples_at(&*store, "d1", 3, 2).await),
        samples(&["a", "c", "b"]),
        "in the order the batches were staged"
    );
    assert_eq!(
        contents(&all_samples_at(&*store, "d1", 2, 10).await),
        samples(&["a"])
    );
    store.discard_samples_after("d1", 3).await.unwrap();
    assert_eq!(
        all_samples_at(&*store, "d1", 3, 10).await.len(),
        3,
        "discarding after the committed version keeps what was committed"
    );
}

pub(crate) async fn deleting_a_dataset_removes_it_and_its_samples(db: TestDatabase) {
    let store = db.open().await.datasets;
    let (d1, d2) = (dataset("d1"), dataset("d2"));
    store.insert_dataset(&d1).await.unwrap();
    store.insert_dataset(&d2).await.unwrap();
    store
        .change_samples(&at_version(&d1, 2, 2), &samples(&["a", "b"]), &[])
        .await
        .unwrap();
    store
        .change_samples(&at_version(&d1, 3, 1), &[], &ids(&["b"]))
        .await
        .unwrap();
    let v2 = at_version(&d2, 2, 2);
    store
        .change_samples(&v2, &samples(&["a", "b"]), &[])
        .await
        .unwrap();

    store.delete_dataset("d1").await.unwrap();
    assert_eq!(store.load_datasets().await.unwrap(), [v2]);
    for version in 1..=3 {
        assert!(all_samples_at(&*store, "d1", version, 10).await.is_empty());
    }
    assert!(store
        .current_samples("d1", &ids(&["a", "b"]))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        contents(&all_samples_at(&*store, "d2", 2, 10).await),
        samples(&["a", "b"]),
        "another dataset's samples with the same ids stay"
    );

    // The id and name are free again, and nothing of the old dataset comes back.
    store.insert_dataset(&d1).await.unwrap();
    for version in 1..=3 {
        assert!(all_samples_at(&*store, "d1", version, 10).await.is_empty());
    }
    assert!(store
        .samples_by_id_at("d1", 2, &ids(&["a", "b"]))
        .await
        .unwrap()
        .is_empty());
}

pub(crate) async fn everything_survives_a_reopen(db: TestDatabase) {
    let storage = db.open().await;
    let store = storage.datasets.clone();
    let d1 = dataset("d1");
    store.insert_dataset(&d1).await.unwrap();
    store
        .change_samples(&at_version(&d1, 2, 2), &samples(&["a", "b"]), &[])
        .await
        .unwrap();
    let v3 = at_version(&d1, 3, 2);
    store
        .change_samples(&v3, &samples(&["c"]), &ids(&["a"]))
        .await
        .unwrap();
    let version2 = all_samples_at(&*store, "d1", 2, 10).await;
    let version3 = all_samples_at(&*store, "d1", 3, 10).await;
    store
        .stage_samples("d1", 4, &samples(&["d"]))
        .await
        .unwrap();
    drop(store);

    let storage = db.reopen(storage).await;
    let store = storage.datasets;
    assert_eq!(store.load_datasets().await.unwrap(), [v3]);
    assert_eq!(all_samples_at(&*store, "d1", 2, 10).await, version2);
    assert_eq!(all_samples_at(&*store, "d1", 3, 10).await, version3);
    assert_eq!(
        contents(&version3),
        samples(&["b", "c"]),
        "the versions were what they should be"
    );
    // A restart finds the uncommitted import's batch, and discards it.
    assert_eq!(
        contents(&all_samples_at(&*store, "d1", 4, 10).await),
        samples(&["b", "c", "d"])
    );
    store.discard_samples_after("d1", 3).await.unwrap();
    assert_eq!(all_samples_at(&*store, "d1", 4, 10).await, version3);
    store
        .stage_samples("d1", 4, &samples(&["d"]))
        .await
        .unwrap();
}

pub(crate) async fn an_import_reservation_excludes_other_changes_until_it_ends_or_lapses(
    db: TestDatabase,
) {
    let storage = db.open().await;
    let store = &storage.datasets;
    let long = Duration::from_secs(60);
    let v1 = dataset("d1");
    store.insert_dataset(&v1).await.unwrap();
    let conflict = |result: Result<(), StoreError>| matches!(result, Err(StoreError::Conflict(_)));

    // A reservation is taken only at the stored version, and only once.
    assert!(conflict(store.begin_import("d1", 7, "a", long).await));
    store.begin_import("d1", 1, "a", long).await.unwrap();
    assert!(conflict(store.begin_import("d1", 1, "b", long).await));
    store
        .stage_samples("d1", 2, &[sample("staged")])
        .await
        .unwrap();
    // Nothing else changes the dataset meanwhile.
    let v2 = at_version(&v1, 2, 1);
    assert!(conflict(
        store.change_samples(&v2, &[sample("other")], &[]).await
    ));
    assert!(conflict(store.delete_dataset("d1").await));
    assert!(store.renew_import("d1", "a", long).await.unwrap());
    assert!(!store.renew_import("d1", "b", long).await.unwrap());
    // Only the holder commits it.
    assert!(conflict(store.commit_import(&v2, "b").await));
    store.commit_import(&v2, "a").await.unwrap();
    assert_eq!(store.get_dataset("d1").await.unwrap().unwrap().version, 2);
    // A change built on an old version is refused.
    assert!(conflict(
        store.change_samples(&v2, &[sample("late")], &[]).await
    ));

    // A reservation that lapsed gives way: its staged samples go, the change goes in,
    // and the late holder can neither commit nor discard anything of the new change.
    store
        .begin_import("d1", 2, "a", Duration::from_millis(100))
        .await
        .unwrap();
    store
        .stage_samples("d1", 3, &[sample("orphan")])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let v3 = at_version(&v1, 3, 2);
    store
        .change_samples(
            &v3,
            &[Sample {
                context: "again".into(),
                ..sample("orphan")
            }],
            &[],
        )
        .await
        .unwrap();
    assert!(conflict(store.commit_import(&v3, "a").await));
    store.abandon_import("d1", 2, "a").await.unwrap();
    let ids: Vec<String> = store
        .samples_at("d1", 3, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|stored| format!("{} ({})", stored.sample.id, stored.sample.context))
        .collect();
    assert_eq!(ids, vec!["staged (context of staged)", "orphan (again)"]);

    // At start, a live reservation's staged samples stay unless the process is alone.
    store.begin_import("d1", 3, "c", long).await.unwrap();
    store
        .stage_samples("d1", 4, &[sample("pending")])
        .await
        .unwrap();
    store.discard_abandoned_import("d1", false).await.unwrap();
    assert_eq!(
        store
            .current_samples("d1", &["pending".into()])
            .await
            .unwrap()
            .len(),
        1
    );
    store.discard_abandoned_import("d1", true).await.unwrap();
    assert!(store
        .current_samples("d1", &["pending".into()])
        .await
        .unwrap()
        .is_empty());
    store.begin_import("d1", 3, "d", long).await.unwrap();
}
