//! Registry behaviour against an in-memory store (the SQLite store runs the same
//! scenarios end to end in the root crate's tests).

use std::sync::Mutex as StdMutex;

use async_trait::async_trait;
use serde_json::json;

use super::*;
use crate::store::{RegistryState, StoreError};
use crate::variable::{PromptVariable, VariableType};

/// Keeps events only, which is all the watch tests need from storage; `fail_next` makes
/// the next commit fail, as a full disk would.
#[derive(Default)]
struct EventLogStore {
    events: StdMutex<Vec<PromptEvent>>,
    fail_next: StdMutex<bool>,
}

#[async_trait]
impl PromptStore for EventLogStore {
    async fn load_registry(&self) -> Result<RegistryState, StoreError> {
        Ok(RegistryState::default())
    }

    async fn load_prompt(&self, _name: &str) -> Result<RegistryState, StoreError> {
        Ok(RegistryState::default())
    }

    async fn commit_prompt_change(
        &self,
        _change: &PromptChange,
        event: &PromptEvent,
    ) -> Result<u64, StoreError> {
        if std::mem::take(&mut *self.fail_next.lock().unwrap()) {
            return Err(StoreError::Unavailable("disk full".into()));
        }
        let mut events = self.events.lock().unwrap();
        let mut event = event.clone();
        event.sequence = events.len() as u64 + 1;
        events.push(event);
        Ok(events.len() as u64)
    }

    async fn prompt_events_after(
        &self,
        after: u64,
        prompt_name: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PromptEvent>, StoreError> {
        let events = self.events.lock().unwrap();
        Ok(events
            .iter()
            .filter(|e| e.sequence > after && prompt_name.is_none_or(|n| n == e.prompt_name))
            .take(limit)
            .cloned()
            .collect())
    }
}

async fn registry() -> (Arc<EventLogStore>, Registry) {
    let store = Arc::new(EventLogStore::default());
    let registry = Registry::open(store.clone(), RegistryLimits::default())
        .await
        .unwrap();
    (store, registry)
}

fn new_version(name: &str, version: &str, template: &str) -> NewPromptVersion {
    NewPromptVersion {
        name: name.into(),
        version: version.into(),
        template: template.into(),
        ..Default::default()
    }
}

fn version_strings(page: &Page<PromptVersionView>) -> Vec<String> {
    page.items
        .iter()
        .map(|v| format!("{}@{}", v.version.name, v.version.version))
        .collect()
}

#[tokio::test]
async fn the_first_version_is_active_and_activation_moves_the_single_pointer() {
    let (_, registry) = registry().await;
    let first = registry
        .create_version(new_version("p", "1.0.0", "a"))
        .await
        .unwrap();
    assert!(first.is_active);
    let second = registry
        .create_version(new_version("p", "1.1.0", "b"))
        .await
        .unwrap();
    assert!(!second.is_active, "creating a version does not activate it");

    registry.activate("p", "1.1.0", None).await.unwrap();
    let page = registry.list_versions(Some("p"), 0, "").unwrap();
    let active: Vec<_> = page
        .items
        .iter()
        .filter(|v| v.is_active)
        .map(|v| v.version.version.to_string())
        .collect();
    assert_eq!(active, ["1.1.0"]);
    assert_eq!(
        registry
            .get_version("p", &VersionSelector::Active)
            .unwrap()
            .version
            .version
            .to_string(),
        "1.1.0"
    );
}

#[tokio::test]
async fn versions_equal_in_precedence_are_duplicates() {
    let (_, registry) = registry().await;
    registry
        .create_version(new_version("p", "1.0.0+build.1", "a"))
        .await
        .unwrap();
    let err = registry
        .create_version(new_version("p", "1.0.0+build.2", "a"))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::AlreadyExists(_)), "{err}");
}

#[tokio::test]
async fn concurrent_creates_of_one_version_admit_exactly_one() {
    let (_, registry) = registry().await;
    let registry = Arc::new(registry);
    let attempts = (0..16).map(|i| {
        let registry = registry.clone();
        tokio::spawn(async move {
            registry
                .create_version(new_version("race", "1.0.0", &format!("t{i}")))
                .await
        })
    });
    let results: Vec<_> = futures_join(attempts).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, RegistryError::AlreadyExists(_))));
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn latest_is_by_precedence_and_skips_prereleases() {
    let (_, registry) = registry().await;
    registry
        .create_version(new_version("p", "2.0.0-rc.1", "a"))
        .await
        .unwrap();
    assert_eq!(
        registry
            .latest_version("p")
            .unwrap()
            .version
            .version
            .to_string(),
        "2.0.0-rc.1",
        "only pre-releases exist"
    );
    for v in ["1.10.0", "1.9.0", "2.0.0-rc.2"] {
        registry
            .create_version(new_version("p", v, "a"))
            .await
            .unwrap();
    }
    // The seed returned the active version (here 2.0.0-rc.1) instead of the newest.
    assert_eq!(
        registry
            .latest_version("p")
            .unwrap()
            .version
            .version
            .to_string(),
        "1.10.0"
    );
}

#[tokio::test]
async fn listing_is_newest_first_and_pages_without_repeats() {
    let (_, registry) = registry().await;
    for v in ["1.0.0", "1.2.0", "1.10.0", "0.9.0"] {
        registry
            .create_version(new_version("b", v, "x"))
            .await
            .unwrap();
    }
    registry
        .create_version(new_version("a", "3.0.0", "x"))
        .await
        .unwrap();
    let first = registry.list_versions(None, 3, "").unwrap();
    assert_eq!(version_strings(&first), ["a@3.0.0", "b@1.10.0", "b@1.2.0"]);
    let second = registry
        .list_versions(None, 3, &first.next_page_token)
        .unwrap();
    assert_eq!(version_strings(&second), ["b@1.0.0", "b@0.9.0"]);
    assert_eq!(second.next_page_token, "");
    assert!(matches!(
        registry.list_versions(None, 3, "zz"),
        Err(RegistryError::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn active_and_labelled_versions_cannot_be_deleted() {
    let (_, registry) = registry().await;
    registry
        .create_version(new_version("p", "1.0.0", "a"))
        .await
        .unwrap();
    registry
        .create_version(new_version("p", "2.0.0", "b"))
        .await
        .unwrap();
    registry
        .set_label("p", "production", "2.0.0", None)
        .await
        .unwrap();
    assert!(matches!(
        registry.delete_version("p", "1.0.0").await,
        Err(RegistryError::FailedPrecondition(_))
    ));
    let err = registry.delete_version("p", "2.0.0").await.unwrap_err();
    assert!(
        matches!(&err, RegistryError::FailedPrecondition(m) if m.contains("production")),
        "{err}"
    );
    registry.delete_label("p", "production").await.unwrap();
    registry.delete_version("p", "2.0.0").await.unwrap();
    assert!(matches!(
        registry.get_version("p", &VersionSelector::Version("2.0.0".into())),
        Err(RegistryError::NotFound(_))
    ));
}

#[tokio::test]
async fn labels_move_and_resolve() {
    let (_, registry) = registry().await;
    registry
        .create_version(new_version("p", "1.0.0", "a"))
        .await
        .unwrap();
    registry
        .create_version(new_version("p", "2.0.0", "b"))
        .await
        .unwrap();
    let (_, previous) = registry
        .set_label("p", "prod", "1.0.0", None)
        .await
        .unwrap();
    assert_eq!(previous, None);
    let (view, previous) = registry
        .set_label("p", "prod", "2.0.0", None)
        .await
        .unwrap();
    assert_eq!(previous.unwrap().to_string(), "1.0.0");
    assert_eq!(view.labels, ["prod"]);
    let by_label = registry
        .get_version("p", &VersionSelector::Label("prod".into()))
        .unwrap();
    assert_eq!(by_label.version.version.to_string(), "2.0.0");
    let active = registry
        .get_version("p", &VersionSelector::Label("active".into()))
        .unwrap();
    assert_eq!(active.version.version.to_string(), "1.0.0");
    assert!(matches!(
        registry.set_label("p", "active", "2.0.0", None).await,
        Err(RegistryError::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn a_failed_commit_changes_nothing() {
    let (store, registry) = registry().await;
    registry
        .create_version(new_version("p", "1.0.0", "a"))
        .await
        .unwrap();
    registry
        .create_version(new_version("p", "2.0.0", "b"))
        .await
        .unwrap();
    *store.fail_next.lock().unwrap() = true;
    assert!(matches!(
        registry.activate("p", "2.0.0", None).await,
        Err(RegistryError::Storage(_))
    ));
    assert_eq!(
        registry
            .get_version("p", &VersionSelector::Active)
            .unwrap()
            .version
            .version
            .to_string(),
        "1.0.0"
    );
}

#[tokio::test]
async fn render_names_the_exact_version_and_reports_all_problems() {
    let (_, registry) = registry().await;
    let mut new = new_version("p", "1.0.0", "{{ a }} {{ n }}");
    new.variables = vec![
        PromptVariable::inferred("a"),
        PromptVariable {
            var_type: VariableType::Int,
            ..PromptVariable::inferred("n")
        },
    ];
    registry.create_version(new).await.unwrap();
    let values = serde_json::from_value(json!({"a": "x", "n": 2})).unwrap();
    let (out, version) = registry
        .render("p", &VersionSelector::Active, &values)
        .unwrap();
    assert_eq!(
        (out.text.as_str(), version.to_string().as_str()),
        ("x 2", "1.0.0")
    );
    let values = serde_json::from_value(json!({"n": "two", "extra": 1})).unwrap();
    match registry.render("p", &VersionSelector::Active, &values) {
        Err(RegistryError::InvalidArgument(v)) => assert_eq!(v.len(), 3, "{v:?}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bad_input_is_refused_with_every_field_named() {
    let (_, registry) = registry().await;
    let mut new = new_version("bad name", "1.0", "x");
    new.tags = vec![String::new()];
    match registry.create_version(new).await {
        Err(RegistryError::InvalidArgument(v)) => {
            let fields: Vec<_> = v.iter().map(|v| v.field.as_str()).collect();
            assert_eq!(fields, ["name", "version", "tags"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        registry.get_version("nope", &VersionSelector::Active),
        Err(RegistryError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_watcher_resuming_from_any_sequence_sees_every_later_event_once() {
    let (_, registry) = registry().await;
    let registry = Arc::new(registry);
    for i in 0..5 {
        registry
            .create_version(new_version("p", &format!("1.0.{i}"), "x"))
            .await
            .unwrap();
    }
    for resume_after in 0..5u64 {
        let mut watch = registry.watch(None, Some(resume_after)).await.unwrap();
        let writer = {
            let registry = registry.clone();
            tokio::spawn(async move {
                for i in 0..3 {
                    registry
                        .create_version(new_version("q", &format!("{resume_after}.0.{i}"), "y"))
                        .await
                        .unwrap();
                }
            })
        };
        writer.await.unwrap();
        let head = registry.head_sequence();
        let mut seen = Vec::new();
        while seen.last().is_none_or(|s| *s < head) {
            match watch.next().await.unwrap().unwrap() {
                WatchItem::Event(event) => seen.push(event.sequence),
                other => panic!("unexpected {other:?}"),
            }
        }
        let expected: Vec<u64> = (resume_after + 1..=head).collect();
        assert_eq!(seen, expected);
    }
}

#[tokio::test]
async fn a_watcher_that_falls_behind_catches_up_from_storage() {
    let (_, registry) = registry().await;
    let mut watch = registry.watch(Some("p".into()), Some(0)).await.unwrap();
    // More events than the live feed holds, none read meanwhile.
    for i in 0..(LIVE_FEED_CAPACITY + 50) {
        registry
            .create_version(new_version("p", &format!("1.0.{i}"), "x"))
            .await
            .unwrap();
    }
    for expected in 1..=(LIVE_FEED_CAPACITY as u64 + 50) {
        match watch.next().await.unwrap().unwrap() {
            WatchItem::Event(event) => assert_eq!(event.sequence, expected),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_watch_without_a_cursor_starts_with_a_snapshot() {
    let (_, registry) = registry().await;
    registry
        .create_version(new_version("p", "1.0.0", "x"))
        .await
        .unwrap();
    registry
        .create_version(new_version("other", "1.0.0", "x"))
        .await
        .unwrap();
    let mut watch = registry.watch(Some("p".into()), None).await.unwrap();
    assert!(
        matches!(watch.next().await.unwrap(), Some(WatchItem::Snapshot { sequence: 2, ref version }) if version.is_active)
    );
    assert!(matches!(
        watch.next().await.unwrap(),
        Some(WatchItem::SnapshotEnd { sequence: 2 })
    ));
    registry
        .create_version(new_version("other", "2.0.0", "x"))
        .await
        .unwrap();
    registry.activate("p", "1.0.0", None).await.unwrap();
    match watch.next().await.unwrap().unwrap() {
        WatchItem::Event(event) => assert_eq!(
            (event.sequence, event.kind),
            (4, PromptEventKind::VersionActivated)
        ),
        other => panic!("unexpected {other:?}"),
    }
}
