//! The registry service: validation, the in-memory cache, writes through the store and
//! the change feed.
//!
//! Reads (get, list, render, diff) are served from memory. Writes are serialised by one
//! lock: each checks its preconditions against the cache, commits through the store, and
//! only then updates the cache and publishes the event, so the cache never shows a change
//! that is not durable and events reach the live feed in sequence order.

mod paging;
mod state;
mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use dashmap::DashMap;
use llmops_feed::LiveFeed;
use semver::Version;
use serde_json::Value as JsonValue;
use tokio::sync::Mutex;
use uuid::Uuid;

pub use paging::Page;
use state::{CachedVersion, PromptEntry};
use watch::PromptReplay;
pub use watch::{WatchItem, WatchSubscription};

use crate::diff::{diff_versions, VersionDiff};
use crate::error::{FieldViolation, RegistryError};
use crate::event::{PromptEvent, PromptEventKind};
use crate::gate::{ReleaseCheck, ReleaseGuard, ACTIVE_POINTER};
use crate::limits::RegistryLimits;
use crate::model::{NewPromptVersion, PromptSummary, PromptVersion, PromptVersionView};
use crate::naming::{validate_label, validate_prompt_name, RESERVED_ACTIVE_LABEL};
use crate::store::{PromptChange, PromptStore};
use crate::template::{CompiledPrompt, RenderedPrompt};
use crate::version::{parse_version, precedence_key};

/// How many live events a watcher may fall behind before it catches up from storage.
const LIVE_FEED_CAPACITY: usize = 1024;
const MAX_TAG_BYTES: usize = 128;
const MAX_METADATA_KEY_BYTES: usize = 128;

/// Which version of a prompt a read refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSelector {
    /// The active version.
    Active,
    /// An exact version (build metadata ignored).
    Version(String),
    /// The version a label points at (`active` means the active version).
    Label(String),
}

impl VersionSelector {
    /// The selector for a request's `version` and `label` fields (both empty: active).
    pub fn from_fields(version: &str, label: &str) -> Result<Self, RegistryError> {
        match (version.is_empty(), label.is_empty()) {
            (true, true) => Ok(Self::Active),
            (false, true) => Ok(Self::Version(version.to_owned())),
            (true, false) => Ok(Self::Label(label.to_owned())),
            (false, false) => Err(RegistryError::invalid(
                "label",
                "give either a version or a label, not both",
            )),
        }
    }
}

/// The prompt registry.
pub struct Registry {
    store: Arc<dyn PromptStore>,
    limits: RegistryLimits,
    prompts: DashMap<String, Arc<PromptEntry>>,
    write_lock: Mutex<()>,
    feed: LiveFeed<PromptEvent>,
    /// Asked before the active pointer or a label moves; set once by the server.
    guard: std::sync::OnceLock<Arc<dyn ReleaseGuard>>,
}

/// The longest override reason kept.
const MAX_OVERRIDE_REASON_BYTES: usize = 1024;

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("prompts", &self.prompts.len())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Opens the registry: loads every prompt from the store and compiles its templates.
    pub async fn open(
        store: Arc<dyn PromptStore>,
        limits: RegistryLimits,
    ) -> Result<Self, RegistryError> {
        let registry = Self {
            store,
            limits,
            prompts: DashMap::new(),
            write_lock: Mutex::new(()),
            feed: LiveFeed::new(LIVE_FEED_CAPACITY, 0),
            guard: std::sync::OnceLock::new(),
        };
        registry.reload().await?;
        Ok(registry)
    }

    /// Replaces the cache with what storage holds. Another replica sharing the database
    /// calls this (or a finer-grained successor) when it learns of changes made elsewhere.
    pub async fn reload(&self) -> Result<(), RegistryError> {
        let _guard = self.write_lock.lock().await;
        let state = self
            .store
            .load_registry()
            .await
            .map_err(RegistryError::from)?;
        let entries =
            state::build_entries(state.versions, &state.active, &state.labels, &self.limits)?;
        self.prompts.clear();
        for (name, entry) in entries {
            self.prompts.insert(name, Arc::new(entry));
        }
        self.feed.set_head(state.head_sequence);
        Ok(())
    }

    /// The sequence of the last committed event.
    pub fn head_sequence(&self) -> u64 {
        self.feed.head()
    }

    /// Creates a version. The first version of a prompt becomes its active version.
    pub async fn create_version(
        &self,
        new: NewPromptVersion,
    ) -> Result<PromptVersionView, RegistryError> {
        self.create_or_reuse(new, false).await.map(|(view, _)| view)
    }

    /// Creates a version, or returns the existing one of equal precedence when its
    /// content (template, messages, variables, model configuration) is identical; an
    /// existing version with different content is `AlreadyExists`. Returns whether the
    /// version was created.
    pub async fn ensure_version(
        &self,
        new: NewPromptVersion,
    ) -> Result<(PromptVersionView, bool), RegistryError> {
        self.create_or_reuse(new, true).await
    }

    async fn create_or_reuse(
        &self,
        new: NewPromptVersion,
        reuse_identical: bool,
    ) -> Result<(PromptVersionView, bool), RegistryError> {
        let prepared = self.prepare_version(new)?;
        let _guard = self.write_lock.lock().await;
        let plan = self.plan_version(&prepared, &[], reuse_identical).await?;
        self.apply_plan(prepared, plan).await
    }

    /// Creates several versions (of one prompt or several), or reuses identical ones,
    /// as [`Self::ensure_version`] does for one: every version is validated, compiled
    /// and checked (conflicts, a release gate on a new prompt's first version) before any
    /// is written, so a refusal writes nothing. Violations are prefixed with the field
    /// paired with each version.
    pub async fn ensure_versions(
        &self,
        news: Vec<(String, NewPromptVersion)>,
    ) -> Result<Vec<(PromptVersionView, bool)>, RegistryError> {
        let mut prepared = Vec::with_capacity(news.len());
        let mut violations = Vec::new();
        for (field, new) in news {
            match self.prepare_version(new) {
                Ok(version) => prepared.push(version),
                Err(RegistryError::InvalidArgument(found)) => {
                    violations.extend(found.into_iter().map(|v| v.prefixed(&field)));
                }
                Err(other) => return Err(other),
            }
        }
        if !violations.is_empty() {
            return Err(RegistryError::InvalidArgument(violations));
        }
        let _guard = self.write_lock.lock().await;
        let mut plans = Vec::with_capacity(prepared.len());
        for (index, version) in prepared.iter().enumerate() {
            plans.push(self.plan_version(version, &prepared[..index], true).await?);
        }
        let mut results = Vec::with_capacity(prepared.len());
        for (version, plan) in prepared.into_iter().zip(plans) {
            results.push(self.apply_plan(version, plan).await?);
        }
        Ok(results)
    }

    /// A new version validated and compiled, not yet checked against the registry.
    fn prepare_version(&self, new: NewPromptVersion) -> Result<PreparedVersion, RegistryError> {
        let version = self.validate_new_version(&new)?;
        let (compiled, variables) =
            CompiledPrompt::compile(&new.template, &new.messages, &new.variables, &self.limits)
                .map_err(RegistryError::InvalidArgument)?;
        let now = now();
        let record = PromptVersion {
            id: Uuid::now_v7(),
            name: new.name,
            version,
            template: new.template,
            messages: new.messages,
            variables,
            model_config: new.model_config,
            tags: new.tags,
            metadata: new.metadata,
            author: new.author,
            description: new.description,
            commit_message: new.commit_message,
            created_at: now,
            updated_at: now,
        };
        Ok(PreparedVersion {
            key: precedence_key(&record.version),
            record,
            compiled,
        })
    }

    /// Decides what writing `prepared` would do, given that `earlier` (of the same batch)
    /// are written first. Called under the write lock.
    async fn plan_version(
        &self,
        prepared: &PreparedVersion,
        earlier: &[PreparedVersion],
        reuse_identical: bool,
    ) -> Result<VersionPlan, RegistryError> {
        let record = &prepared.record;
        let existing = self.entry(&record.name).ok();
        let stored = existing
            .as_ref()
            .and_then(|e| e.versions.get(&prepared.key))
            .map(|found| &found.record)
            .or_else(|| {
                earlier
                    .iter()
                    .find(|e| e.record.name == record.name && e.key == prepared.key)
                    .map(|e| &e.record)
            });
        if let Some(stored) = stored {
            if reuse_identical {
                let differs = [
                    ("template", stored.template != record.template),
                    ("messages", stored.messages != record.messages),
                    ("variables", stored.variables != record.variables),
                    ("model_config", stored.model_config != record.model_config),
                ]
                .into_iter()
                .filter_map(|(field, differs)| differs.then_some(field))
                .collect::<Vec<_>>();
                if differs.is_empty() {
                    return Ok(VersionPlan::Reuse);
                }
                return Err(RegistryError::AlreadyExists(format!(
                    "prompt {:?} version {} exists with a different {}",
                    record.name,
                    stored.version,
                    differs.join(", ")
                )));
            }
            return Err(RegistryError::AlreadyExists(format!(
                "prompt {:?} already has version {} (versions differing only in build metadata are the same version)",
                record.name, stored.version
            )));
        }
        let first_of_prompt =
            existing.is_none() && !earlier.iter().any(|e| e.record.name == record.name);
        if let (true, Some(guard)) = (first_of_prompt, self.guard.get()) {
            // A prompt's first version becomes its active version: a gate on `active`
            // (set ahead, or left from a deleted prompt) is asked like any activation.
            let request = ReleaseCheck {
                prompt: &record.name,
                pointer: ACTIVE_POINTER,
                version: &record.version.to_string(),
                version_created_at: record.created_at,
                current: None,
            };
            guard.check(&request).await.map_err(|reason| {
                RegistryError::FailedPrecondition(format!(
                    "release gate of {:?} \"active\": {reason}; a prompt's first version becomes active, so delete the gate to create the prompt",
                    record.name
                ))
            })?;
        }
        Ok(VersionPlan::Create)
    }

    /// Writes (or reuses) a planned version. Called under the write lock.
    async fn apply_plan(
        &self,
        prepared: PreparedVersion,
        plan: VersionPlan,
    ) -> Result<(PromptVersionView, bool), RegistryError> {
        let existing = self.entry(&prepared.record.name).ok();
        if let VersionPlan::Reuse = plan {
            let entry = existing.ok_or_else(|| {
                RegistryError::Storage("a reused version's prompt is gone".to_owned())
            })?;
            let found = entry
                .versions
                .get(&prepared.key)
                .ok_or_else(|| RegistryError::Storage("a reused version is gone".to_owned()))?;
            return Ok((entry.view(found), false));
        }
        let cached = Arc::new(CachedVersion {
            record: prepared.record,
            compiled: Arc::new(prepared.compiled),
        });
        let entry = match &existing {
            Some(entry) => entry.with_version(prepared.key, cached.clone()),
            None => PromptEntry::first(prepared.key, cached.clone()),
        };
        let view = entry.view(&cached);
        let change = PromptChange::CreateVersion(Box::new(cached.record.clone()));
        self.commit(
            change,
            self.event(
                PromptEventKind::VersionCreated,
                &view.version.name,
                Some(view.clone()),
                None,
            ),
            entry,
        )
        .await?;
        Ok((view, true))
    }

    /// One version, chosen by `selector`.
    pub fn get_version(
        &self,
        name: &str,
        selector: &VersionSelector,
    ) -> Result<PromptVersionView, RegistryError> {
        let entry = self.entry(name)?;
        let cached = self.select(&entry, name, selector)?;
        Ok(entry.view(&cached))
    }

    /// The version with the highest precedence, skipping pre-releases unless there are
    /// only pre-releases.
    pub fn latest_version(&self, name: &str) -> Result<PromptVersionView, RegistryError> {
        let entry = self.entry(name)?;
        let latest = entry.latest();
        Ok(entry.view(&latest))
    }

    /// Versions of one prompt (newest first), or of every prompt (by name, then newest).
    pub fn list_versions(
        &self,
        name: Option<&str>,
        page_size: i32,
        page_token: &str,
    ) -> Result<Page<PromptVersionView>, RegistryError> {
        let page_size = paging::page_size(page_size)?;
        let after = paging::decode_token(page_token)?;
        let names = match name {
            Some(name) => {
                self.entry(name)?;
                vec![name.to_owned()]
            }
            None => self.sorted_names(),
        };
        let mut items = Vec::with_capacity(page_size + 1);
        'outer: for name in names {
            let Ok(entry) = self.entry(&name) else {
                continue;
            };
            for (key, cached) in entry.versions.iter().rev() {
                let position = paging::version_position(&name, key);
                if after.as_ref().is_some_and(|after| position <= *after) {
                    continue;
                }
                items.push((position, entry.view(cached)));
                if items.len() > page_size {
                    break 'outer;
                }
            }
        }
        Ok(Page::from_overfetched(items, page_size))
    }

    /// Every prompt with its active version, labels and version count, by name.
    pub fn list_prompts(
        &self,
        page_size: i32,
        page_token: &str,
    ) -> Result<Page<PromptSummary>, RegistryError> {
        let page_size = paging::page_size(page_size)?;
        let after = paging::decode_token(page_token)?;
        let items = self
            .sorted_names()
            .into_iter()
            .filter(|name| {
                after
                    .as_ref()
                    .is_none_or(|after| paging::prompt_position(name) > *after)
            })
            .filter_map(|name| {
                let entry = self.entry(&name).ok()?;
                Some((paging::prompt_position(&name), entry.summary(&name)))
            })
            .take(page_size + 1)
            .collect();
        Ok(Page::from_overfetched(items, page_size))
    }

    /// Installs the release guard asked before pointer moves. Set once, at start-up.
    pub fn set_release_guard(&self, guard: Arc<dyn ReleaseGuard>) {
        if self.guard.set(guard).is_err() {
            tracing::warn!("a release guard was already installed; keeping the first");
        }
    }

    /// Asks the release guard whether `request` may happen, unless the call overrides
    /// it with a reason (which is logged and recorded in the event).
    async fn check_release(
        &self,
        request: ReleaseCheck<'_>,
        override_reason: Option<&str>,
    ) -> Result<Option<String>, RegistryError> {
        let ReleaseCheck {
            prompt,
            pointer,
            version,
            ..
        } = request;
        if let Some(reason) = override_reason {
            let reason = reason.trim();
            if reason.is_empty() || reason.len() > MAX_OVERRIDE_REASON_BYTES {
                return Err(RegistryError::invalid(
                    "override_reason",
                    format!("when given, 1 to {MAX_OVERRIDE_REASON_BYTES} bytes saying why"),
                ));
            }
            tracing::warn!(prompt, pointer, version, reason, "release gate overridden");
            return Ok(Some(reason.to_owned()));
        }
        if let Some(guard) = self.guard.get() {
            guard.check(&request).await.map_err(|reason| {
                RegistryError::FailedPrecondition(format!(
                    "release gate of {prompt:?} {pointer:?}: {reason}; pass override_reason to release anyway"
                ))
            })?;
        }
        Ok(None)
    }

    /// Makes `version` the prompt's active version, if its release gate allows (or
    /// `override_reason` says why not to ask).
    pub async fn activate(
        &self,
        name: &str,
        version: &str,
        override_reason: Option<&str>,
    ) -> Result<PromptVersionView, RegistryError> {
        let _guard = self.write_lock.lock().await;
        let entry = self.entry(name)?;
        let cached = self.select(&entry, name, &VersionSelector::Version(version.to_owned()))?;
        let previous = entry
            .versions
            .get(&entry.active)
            .map(|v| v.record.version.to_string());
        let override_reason = self
            .check_release(
                ReleaseCheck {
                    prompt: name,
                    pointer: ACTIVE_POINTER,
                    version: &cached.record.version.to_string(),
                    version_created_at: cached.record.created_at,
                    current: previous.as_deref(),
                },
                override_reason,
            )
            .await?;
        let at = now();
        let (entry, cached) = entry.with_active(&cached, at);
        let view = entry.view(&cached);
        let change = PromptChange::Activate {
            name: name.to_owned(),
            version_id: cached.record.id,
            at,
        };
        let mut event = self.event(
            PromptEventKind::VersionActivated,
            name,
            Some(view.clone()),
            None,
        );
        event.previous_version = previous;
        event.override_reason = override_reason;
        self.commit(change, event, entry).await?;
        Ok(view)
    }

    /// Points `label` at `version`, if its release gate allows (or `override_reason`
    /// says why not to ask); returns the version and where the label pointed before.
    pub async fn set_label(
        &self,
        name: &str,
        label: &str,
        version: &str,
        override_reason: Option<&str>,
    ) -> Result<(PromptVersionView, Option<Version>), RegistryError> {
        validate_label("label", label).map_err(invalid)?;
        let _guard = self.write_lock.lock().await;
        let entry = self.entry(name)?;
        let cached = self.select(&entry, name, &VersionSelector::Version(version.to_owned()))?;
        let previous = entry
            .labels
            .get(label)
            .and_then(|key| entry.versions.get(key))
            .map(|v| v.record.version.clone());
        let override_reason = self
            .check_release(
                ReleaseCheck {
                    prompt: name,
                    pointer: label,
                    version: &cached.record.version.to_string(),
                    version_created_at: cached.record.created_at,
                    current: previous.as_ref().map(ToString::to_string).as_deref(),
                },
                override_reason,
            )
            .await?;
        let at = now();
        let (entry, cached) = entry.with_label(label, &cached, at);
        let view = entry.view(&cached);
        let change = PromptChange::SetLabel {
            name: name.to_owned(),
            label: label.to_owned(),
            version_id: cached.record.id,
            at,
        };
        let mut event = self.event(
            PromptEventKind::LabelMoved,
            name,
            Some(view.clone()),
            Some(label),
        );
        event.previous_version = previous.as_ref().map(ToString::to_string);
        event.override_reason = override_reason;
        self.commit(change, event, entry).await?;
        Ok((view, previous))
    }

    /// Removes a label; returns the version it pointed at.
    pub async fn delete_label(&self, name: &str, label: &str) -> Result<Version, RegistryError> {
        validate_label("label", label).map_err(invalid)?;
        let _guard = self.write_lock.lock().await;
        let entry = self.entry(name)?;
        let Some(key) = entry.labels.get(label).cloned() else {
            return Err(RegistryError::NotFound(format!(
                "prompt {name:?} has no label {label:?}"
            )));
        };
        let entry = entry.without_label(label);
        let cached = entry.versions[&key].clone();
        let view = entry.view(&cached);
        let change = PromptChange::DeleteLabel {
            name: name.to_owned(),
            label: label.to_owned(),
        };
        let mut event = self.event(PromptEventKind::LabelDeleted, name, Some(view), Some(label));
        event.previous_version = Some(cached.record.version.to_string());
        self.commit(change, event, entry).await?;
        Ok(cached.record.version.clone())
    }

    /// Deletes a version that is neither active nor labelled.
    pub async fn delete_version(&self, name: &str, version: &str) -> Result<(), RegistryError> {
        let _guard = self.write_lock.lock().await;
        let entry = self.entry(name)?;
        let cached = self.select(&entry, name, &VersionSelector::Version(version.to_owned()))?;
        let key = precedence_key(&cached.record.version);
        if entry.active == key {
            return Err(RegistryError::FailedPrecondition(format!(
                "version {} is the active version of {name:?}; activate another version first",
                cached.record.version
            )));
        }
        let labels = entry.labels_of(&key);
        if !labels.is_empty() {
            return Err(RegistryError::FailedPrecondition(format!(
                "version {} of {name:?} is labelled {}; move or delete the labels first",
                cached.record.version,
                labels.join(", ")
            )));
        }
        let view = entry.view(&cached);
        let entry = entry.without_version(&key);
        let change = PromptChange::DeleteVersion {
            name: name.to_owned(),
            version_id: cached.record.id,
        };
        self.commit(
            change,
            self.event(PromptEventKind::VersionDeleted, name, Some(view), None),
            entry,
        )
        .await
    }

    /// Deletes a prompt with every version and label; returns how many versions went.
    pub async fn delete_prompt(&self, name: &str) -> Result<usize, RegistryError> {
        let _guard = self.write_lock.lock().await;
        let entry = self.entry(name)?;
        if let Some(guard) = self.guard.get() {
            let gated = guard.gated_pointers(name).await;
            if !gated.is_empty() {
                return Err(RegistryError::FailedPrecondition(format!(
                    "prompt {name:?} is protected by the release gate of {}; delete the gate first",
                    gated
                        .iter()
                        .map(|pointer| format!("{pointer:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let count = entry.versions.len();
        let change = PromptChange::DeletePrompt {
            name: name.to_owned(),
        };
        let event = self.event(PromptEventKind::PromptDeleted, name, None, None);
        let sequence = self
            .store
            .commit_prompt_change(&change, &event)
            .await
            .map_err(RegistryError::from)?;
        self.prompts.remove(name);
        self.publish(event, sequence);
        Ok(count)
    }

    /// Renders the selected version with `values`; returns the exact version rendered.
    pub fn render(
        &self,
        name: &str,
        selector: &VersionSelector,
        values: &BTreeMap<String, JsonValue>,
    ) -> Result<(RenderedPrompt, Version), RegistryError> {
        let entry = self.entry(name)?;
        let cached = self.select(&entry, name, selector)?;
        let rendered = cached.compiled.render(values)?;
        Ok((rendered, cached.record.version.clone()))
    }

    /// Diffs two versions of a prompt.
    pub fn diff(&self, name: &str, from: &str, to: &str) -> Result<VersionDiff, RegistryError> {
        let entry = self.entry(name)?;
        let from = self.select_field(&entry, name, from, "from_version")?;
        let to = self.select_field(&entry, name, to, "to_version")?;
        Ok(diff_versions(&from.record, &to.record))
    }

    /// The moves of a prompt's pointers, oldest first: activations, label sets and label
    /// deletions after `after_sequence`, each with the version before and any gate
    /// override's reason. `pointer` keeps one label (`active`: activations). Returns at
    /// most `limit` events and whether more follow.
    pub async fn pointer_history(
        &self,
        name: &str,
        pointer: Option<&str>,
        after_sequence: u64,
        limit: usize,
    ) -> Result<(Vec<PromptEvent>, bool), RegistryError> {
        const SCAN_BATCH: usize = 500;
        validate_prompt_name("name", name).map_err(invalid)?;
        let matches = |event: &PromptEvent| match event.kind {
            PromptEventKind::VersionActivated => pointer.is_none_or(|p| p == ACTIVE_POINTER),
            PromptEventKind::LabelMoved | PromptEventKind::LabelDeleted => {
                pointer.is_none_or(|p| event.label.as_deref() == Some(p))
            }
            _ => false,
        };
        let mut found = Vec::new();
        let mut after = after_sequence;
        loop {
            let batch = self
                .store
                .prompt_events_after(after, Some(name), SCAN_BATCH)
                .await
                .map_err(RegistryError::from)?;
            let exhausted = batch.len() < SCAN_BATCH;
            for event in batch {
                after = event.sequence;
                if matches(&event) {
                    if found.len() == limit {
                        return Ok((found, true));
                    }
                    found.push(event);
                }
            }
            if exhausted {
                return Ok((found, false));
            }
        }
    }

    /// Subscribes to changes: after `after_sequence` when given (replayed from storage,
    /// then live), else starting with a snapshot of the current state.
    pub async fn watch(
        &self,
        prompt_name: Option<String>,
        after_sequence: Option<u64>,
    ) -> Result<WatchSubscription, RegistryError> {
        if let Some(name) = &prompt_name {
            validate_prompt_name("name", name).map_err(invalid)?;
        }
        // Subscribing to the live feed before reading storage (under the write lock, so
        // no commit is half-published) is what makes the hand-over gap-free.
        let _guard = self.write_lock.lock().await;
        let snapshot = match after_sequence {
            Some(_) => None,
            None => Some(self.snapshot(prompt_name.as_deref())),
        };
        let source = Arc::new(PromptReplay {
            store: self.store.clone(),
            prompt_name: prompt_name.clone(),
        });
        let cursor = after_sequence.unwrap_or_else(|| self.head_sequence());
        let events = self.feed.subscribe(
            source,
            cursor,
            after_sequence.is_some(),
            move |event: &PromptEvent| {
                prompt_name
                    .as_deref()
                    .is_none_or(|name| name == event.prompt_name)
            },
        );
        Ok(WatchSubscription::new(events, snapshot))
    }

    fn snapshot(&self, prompt_name: Option<&str>) -> Vec<PromptVersionView> {
        let names = match prompt_name {
            Some(name) => vec![name.to_owned()],
            None => self.sorted_names(),
        };
        names
            .iter()
            .filter_map(|name| self.entry(name).ok())
            .flat_map(|entry| {
                entry
                    .versions
                    .values()
                    .map(|cached| entry.view(cached))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    async fn commit(
        &self,
        change: PromptChange,
        event: PromptEvent,
        entry: PromptEntry,
    ) -> Result<(), RegistryError> {
        let name = event.prompt_name.clone();
        let sequence = self
            .store
            .commit_prompt_change(&change, &event)
            .await
            .map_err(RegistryError::from)?;
        self.prompts.insert(name, Arc::new(entry));
        self.publish(event, sequence);
        Ok(())
    }

    fn event(
        &self,
        kind: PromptEventKind,
        name: &str,
        version: Option<PromptVersionView>,
        label: Option<&str>,
    ) -> PromptEvent {
        PromptEvent {
            sequence: 0,
            kind,
            prompt_name: name.to_owned(),
            version,
            label: label.map(str::to_owned),
            time: now(),
            previous_version: None,
            override_reason: None,
        }
    }

    fn publish(&self, mut event: PromptEvent, sequence: u64) {
        event.sequence = sequence;
        self.feed.publish(Arc::new(event));
    }

    fn entry(&self, name: &str) -> Result<Arc<PromptEntry>, RegistryError> {
        if let Some(entry) = self.prompts.get(name) {
            return Ok(entry.clone());
        }
        validate_prompt_name("name", name).map_err(invalid)?;
        Err(RegistryError::NotFound(format!(
            "prompt {name:?} not found"
        )))
    }

    fn select(
        &self,
        entry: &PromptEntry,
        name: &str,
        selector: &VersionSelector,
    ) -> Result<Arc<CachedVersion>, RegistryError> {
        match selector {
            VersionSelector::Active => Ok(entry.versions[&entry.active].clone()),
            VersionSelector::Label(label) if label == RESERVED_ACTIVE_LABEL => {
                Ok(entry.versions[&entry.active].clone())
            }
            VersionSelector::Label(label) => match entry.labels.get(label) {
                Some(key) => Ok(entry.versions[key].clone()),
                None => Err(RegistryError::NotFound(format!(
                    "prompt {name:?} has no label {label:?}"
                ))),
            },
            VersionSelector::Version(version) => self.select_field(entry, name, version, "version"),
        }
    }

    fn select_field(
        &self,
        entry: &PromptEntry,
        name: &str,
        version: &str,
        field: &str,
    ) -> Result<Arc<CachedVersion>, RegistryError> {
        let parsed = parse_version(field, version).map_err(invalid)?;
        entry
            .versions
            .get(&precedence_key(&parsed))
            .cloned()
            .ok_or_else(|| {
                RegistryError::NotFound(format!("prompt {name:?} has no version {version}"))
            })
    }

    fn sorted_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.prompts.iter().map(|e| e.key().clone()).collect();
        names.sort_unstable();
        names
    }

    fn validate_new_version(&self, new: &NewPromptVersion) -> Result<Version, RegistryError> {
        let mut violations = Vec::new();
        if let Err(v) = validate_prompt_name("name", &new.name) {
            violations.push(v);
        }
        let version = parse_version("version", &new.version)
            .map_err(|v| violations.push(v))
            .ok();
        let limits = &self.limits;
        if new.tags.len() > limits.max_tags {
            violations.push(FieldViolation::new(
                "tags",
                format!(
                    "{} tags, over the limit of {}",
                    new.tags.len(),
                    limits.max_tags
                ),
            ));
        }
        if let Some(tag) = new
            .tags
            .iter()
            .find(|t| t.is_empty() || t.len() > MAX_TAG_BYTES)
        {
            violations.push(FieldViolation::new(
                "tags",
                format!("tag {tag:?} must be 1-{MAX_TAG_BYTES} bytes"),
            ));
        }
        if new.metadata.len() > limits.max_tags {
            violations.push(FieldViolation::new(
                "metadata",
                format!(
                    "{} entries, over the limit of {}",
                    new.metadata.len(),
                    limits.max_tags
                ),
            ));
        }
        for (key, value) in &new.metadata {
            if key.is_empty() || key.len() > MAX_METADATA_KEY_BYTES {
                violations.push(FieldViolation::new(
                    "metadata",
                    format!("key {key:?} must be 1-{MAX_METADATA_KEY_BYTES} bytes"),
                ));
            }
            if value.len() > limits.max_text_bytes {
                violations.push(FieldViolation::new(
                    format!("metadata.{key}"),
                    format!("over the limit of {} bytes", limits.max_text_bytes),
                ));
            }
        }
        for (field, text) in [
            ("author", &new.author),
            ("description", &new.description),
            ("commit_message", &new.commit_message),
        ] {
            if text.len() > limits.max_text_bytes {
                violations.push(FieldViolation::new(
                    field,
                    format!("over the limit of {} bytes", limits.max_text_bytes),
                ));
            }
        }
        match version {
            Some(version) if violations.is_empty() => Ok(version),
            _ => Err(RegistryError::InvalidArgument(violations)),
        }
    }
}

/// The current time at the microsecond precision storage keeps, so a client sees the
/// same timestamps before and after a restart.
fn now() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::microseconds(1))
        .unwrap_or(now)
}

fn invalid(violation: FieldViolation) -> RegistryError {
    RegistryError::InvalidArgument(vec![violation])
}

/// A new version, validated and compiled.
struct PreparedVersion {
    key: Version,
    record: PromptVersion,
    compiled: CompiledPrompt,
}

/// What writing a prepared version does.
enum VersionPlan {
    /// An identical version exists: nothing is written.
    Reuse,
    /// The version is new.
    Create,
}

#[cfg(test)]
mod tests;
