//! The registry service: validation, the in-memory cache, writes through the store and
//! the change feed.
//!
//! Reads (get, list, render, diff) are served from memory. Writes are serialised by one
//! lock: each checks its preconditions against the cache, commits through the store, and
//! only then updates the cache and publishes the event, so the cache never shows a change
//! that is not durable and events reach the live feed in sequence order.

mod follow;
mod paging;
mod pointers;
mod state;
mod versions;
mod watch;

use self::versions::invalid;

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
    /// Where this process is in the feed shared with other processes.
    follower: std::sync::Mutex<llmops_feed::FollowCursor>,
}

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
            follower: std::sync::Mutex::new(llmops_feed::FollowCursor::default()),
        };
        registry.reload().await?;
        Ok(registry)
    }

    /// Replaces the cache with what storage holds; following resumes after the state
    /// loaded.
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
        self.follower().restart_at(state.head_sequence);
        Ok(())
    }

    /// The sequence of the last committed event.
    pub fn head_sequence(&self) -> u64 {
        self.feed.head()
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
            actor: None,
        }
    }

    fn publish(&self, mut event: PromptEvent, sequence: u64) {
        event.sequence = sequence;
        self.record_local_commit(sequence);
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
}

/// The current time at the microsecond precision storage keeps, so a client sees the
/// same timestamps before and after a restart.
fn now() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::microseconds(1))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests;
