//! The prompt-change trigger: follows the registry's change feed and fires the
//! schedules whose watched pointer (the active version, or a label) moved.
//!
//! The watcher keeps its own copy of where every pointer stands, built from the feed's
//! snapshot and then from its events in feed order. Watched versions are read from that
//! copy, never from the registry directly, so a schedule and the events still queued for
//! the watcher agree on what counts as a change: every move fires once, in order, even
//! when several come in quick succession.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use llmops_registry::{
    PromptEvent, PromptEventKind, PromptVersionView, WatchItem, WatchSubscription,
};

use super::{Inner, RETRY_AFTER};
use crate::error::EvaluationError;
use crate::schedules::model::{Schedule, Trigger};

/// (prompt, label or "" for the active version) -> version.
pub(super) type Pointers = HashMap<(String, String), String>;

/// Records where a snapshot version's pointers stand.
fn note_view(pointers: &mut Pointers, view: &PromptVersionView) {
    let name = &view.version.name;
    let version = view.version.version.to_string();
    if view.is_active {
        pointers.insert((name.clone(), String::new()), version.clone());
    }
    for label in &view.labels {
        pointers.insert((name.clone(), label.clone()), version.clone());
    }
}

/// The pointer an event moved ("" for the active version) and the version it holds now
/// (None when a label was deleted).
fn moved_pointer(event: &PromptEvent) -> Option<(String, Option<String>)> {
    let version = event
        .version
        .as_ref()
        .map(|v| v.version.version.to_string());
    let label = || event.label.clone().unwrap_or_default();
    match event.kind {
        PromptEventKind::VersionActivated => Some((String::new(), version)),
        // A prompt's first version becomes its active version.
        PromptEventKind::VersionCreated if event.version.as_ref().is_some_and(|v| v.is_active) => {
            Some((String::new(), version))
        }
        PromptEventKind::LabelMoved => Some((label(), version)),
        PromptEventKind::LabelDeleted => Some((label(), None)),
        _ => None,
    }
}

/// Moves the pointers a registry event moved.
fn note_event(pointers: &mut Pointers, event: &PromptEvent) {
    let name = &event.prompt_name;
    if event.kind == PromptEventKind::PromptDeleted {
        pointers.retain(|(prompt, _), _| prompt != name);
        return;
    }
    match moved_pointer(event) {
        Some((pointer, Some(version))) => {
            pointers.insert((name.clone(), pointer), version);
        }
        Some((pointer, None)) => {
            pointers.remove(&(name.clone(), pointer));
        }
        None => {}
    }
}

impl Inner {
    /// The version the prompt trigger watches now (None when the label is not set).
    pub(super) fn watched_version(&self, schedule: &Schedule) -> Option<String> {
        self.pointers
            .lock()
            .expect("pointers lock")
            .get(&(
                schedule.template.prompt_name.clone(),
                schedule.watch_label.clone(),
            ))
            .cloned()
    }

    /// Subscribes to the registry feed and reads its snapshot into `pointers`.
    pub(super) async fn subscribe(&self) -> Result<WatchSubscription, EvaluationError> {
        let storage =
            |err: llmops_registry::RegistryError| EvaluationError::Storage(err.to_string());
        let mut subscription = self.registry.watch(None, None).await.map_err(storage)?;
        let mut pointers = Pointers::new();
        loop {
            match subscription.next().await.map_err(storage)? {
                Some(WatchItem::Snapshot { version, .. }) => note_view(&mut pointers, &version),
                Some(WatchItem::SnapshotEnd { .. }) => break,
                Some(WatchItem::Event(_)) => {}
                None => return Err(EvaluationError::Storage("the registry closed".into())),
            }
        }
        *self.pointers.lock().expect("pointers lock") = pointers;
        Ok(subscription)
    }

    /// Follows the registry and starts runs of schedules whose watched version changed.
    pub(super) async fn watch_prompts(self: Arc<Self>, mut subscription: WatchSubscription) {
        // Set when starting a run failed: every schedule is compared with the pointers
        // again after a pause, so the change is not lost.
        let mut recheck_at: Option<tokio::time::Instant> = None;
        // First, whatever changed while the server was down.
        let mut outcome = self.check_prompt_changes().await;
        loop {
            if let Err(err) = outcome {
                tracing::warn!(error = %err, "starting runs for a prompt change failed; will retry");
                recheck_at.get_or_insert_with(|| tokio::time::Instant::now() + RETRY_AFTER);
            }
            let recheck = recheck_at.unwrap_or_else(tokio::time::Instant::now);
            let item = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(recheck), if recheck_at.is_some() => {
                    recheck_at = None;
                    outcome = self.check_prompt_changes().await;
                    continue;
                }
                item = subscription.next() => item,
            };
            outcome = match item {
                Ok(Some(WatchItem::Event(event))) => {
                    note_event(&mut self.pointers.lock().expect("pointers lock"), &event);
                    self.follow(&event).await
                }
                Ok(Some(_)) => Ok(()),
                Ok(None) => return,
                Err(err) => {
                    tracing::warn!(error = %err, "the registry feed failed; resubscribing");
                    loop {
                        match self.subscribe().await {
                            Ok(fresh) => {
                                subscription = fresh;
                                break;
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, "watching the registry failed; will retry");
                                tokio::select! {
                                    _ = self.shutdown.cancelled() => return,
                                    _ = tokio::time::sleep(RETRY_AFTER) => {}
                                }
                            }
                        }
                    }
                    // Events may have been missed: compare everything.
                    self.check_prompt_changes().await
                }
            };
        }
    }

    /// Fires the prompt trigger of the schedules a registry event moved: each move is
    /// evaluated, even when the next one follows before the watcher gets here.
    async fn follow(&self, event: &PromptEvent) -> Result<(), EvaluationError> {
        let Some((pointer, Some(version))) = moved_pointer(event) else {
            return Ok(());
        };
        let mut schedules = self.schedules.lock().await;
        let changes = schedules
            .values()
            .filter(|s| s.on_prompt_change && !s.paused)
            .filter(|s| s.template.prompt_name == event.prompt_name && s.watch_label == pointer)
            .filter(|s| s.watched_version != version)
            .map(|s| (s.id.clone(), version.clone()))
            .collect();
        self.fire_prompt_changes(&mut schedules, changes).await
    }

    /// Fires the prompt trigger of each schedule whose watched version is no longer
    /// where its pointer stands.
    async fn check_prompt_changes(&self) -> Result<(), EvaluationError> {
        let mut schedules = self.schedules.lock().await;
        let changes = schedules
            .values()
            .filter(|s| s.on_prompt_change && !s.paused)
            .filter_map(|s| {
                let current = self.watched_version(s)?;
                (current != s.watched_version).then(|| (s.id.clone(), current))
            })
            .collect();
        self.fire_prompt_changes(&mut schedules, changes).await
    }

    /// Starts a run of each (schedule, new version). Called under the schedules lock.
    async fn fire_prompt_changes(
        &self,
        schedules: &mut BTreeMap<String, Schedule>,
        changes: Vec<(String, String)>,
    ) -> Result<(), EvaluationError> {
        for (id, version) in changes {
            let schedule = schedules.get_mut(&id).expect("a changed schedule exists");
            let trigger = Trigger::PromptChange {
                from: schedule.watched_version.clone(),
                to: version,
            };
            self.fire(schedule, trigger).await?;
        }
        Ok(())
    }
}
