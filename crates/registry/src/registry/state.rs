//! The in-memory state of one prompt. Entries are immutable: a write builds a new entry
//! and swaps it in after the store commits, so readers never see a half-applied change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use semver::Version;
use uuid::Uuid;

use crate::error::RegistryError;
use crate::limits::RegistryLimits;
use crate::model::{PromptSummary, PromptVersion, PromptVersionView};
use crate::template::CompiledPrompt;
use crate::version::precedence_key;

/// A stored version with its compiled templates.
#[derive(Debug)]
pub(crate) struct CachedVersion {
    pub(crate) record: PromptVersion,
    pub(crate) compiled: Arc<CompiledPrompt>,
}

/// One prompt: its versions by precedence key, the active pointer and labels.
#[derive(Debug, Clone)]
pub(crate) struct PromptEntry {
    pub(crate) versions: BTreeMap<Version, Arc<CachedVersion>>,
    pub(crate) active: Version,
    pub(crate) labels: BTreeMap<String, Version>,
}

impl PromptEntry {
    pub(crate) fn first(key: Version, version: Arc<CachedVersion>) -> Self {
        Self {
            versions: BTreeMap::from([(key.clone(), version)]),
            active: key,
            labels: BTreeMap::new(),
        }
    }

    pub(crate) fn with_version(&self, key: Version, version: Arc<CachedVersion>) -> Self {
        let mut next = self.clone();
        next.versions.insert(key, version);
        next
    }

    pub(crate) fn with_active(
        &self,
        version: &CachedVersion,
        at: DateTime<Utc>,
    ) -> (Self, Arc<CachedVersion>) {
        let (mut next, key, touched) = self.with_touched(version, at);
        next.active = key;
        (next, touched)
    }

    pub(crate) fn with_label(
        &self,
        label: &str,
        version: &CachedVersion,
        at: DateTime<Utc>,
    ) -> (Self, Arc<CachedVersion>) {
        let (mut next, key, touched) = self.with_touched(version, at);
        next.labels.insert(label.to_owned(), key);
        (next, touched)
    }

    /// A copy holding `version` with `updated_at` set to `at` (its activation or labels
    /// are about to change), with the version's key and new record.
    fn with_touched(
        &self,
        version: &CachedVersion,
        at: DateTime<Utc>,
    ) -> (Self, Version, Arc<CachedVersion>) {
        let mut next = self.clone();
        let key = precedence_key(&version.record.version);
        let touched = touch(version, at);
        next.versions.insert(key.clone(), touched.clone());
        (next, key, touched)
    }

    pub(crate) fn without_label(&self, label: &str) -> Self {
        let mut next = self.clone();
        next.labels.remove(label);
        next
    }

    pub(crate) fn without_version(&self, key: &Version) -> Self {
        let mut next = self.clone();
        next.versions.remove(key);
        next
    }

    pub(crate) fn labels_of(&self, key: &Version) -> Vec<String> {
        self.labels
            .iter()
            .filter(|(_, k)| *k == key)
            .map(|(label, _)| label.clone())
            .collect()
    }

    pub(crate) fn view(&self, version: &CachedVersion) -> PromptVersionView {
        let key = precedence_key(&version.record.version);
        PromptVersionView {
            version: version.record.clone(),
            is_active: self.active == key,
            labels: self.labels_of(&key),
        }
    }

    /// Highest precedence, skipping pre-releases unless there are only pre-releases.
    pub(crate) fn latest(&self) -> Arc<CachedVersion> {
        let newest_release = self
            .versions
            .iter()
            .rev()
            .find(|(key, _)| key.pre.is_empty());
        let (_, version) = newest_release
            .or_else(|| self.versions.iter().next_back())
            .expect("a prompt has at least one version");
        version.clone()
    }

    pub(crate) fn summary(&self, name: &str) -> PromptSummary {
        let version_of = |key: &Version| self.versions[key].record.version.clone();
        PromptSummary {
            name: name.to_owned(),
            active_version: version_of(&self.active),
            labels: self
                .labels
                .iter()
                .map(|(label, key)| (label.clone(), version_of(key)))
                .collect(),
            version_count: self.versions.len(),
            latest_version: self.latest().record.version.clone(),
            updated_at: self
                .versions
                .values()
                .map(|v| v.record.updated_at)
                .max()
                .unwrap_or_else(Utc::now),
        }
    }
}

fn touch(version: &CachedVersion, at: DateTime<Utc>) -> Arc<CachedVersion> {
    let mut record = version.record.clone();
    record.updated_at = at;
    Arc::new(CachedVersion {
        record,
        compiled: version.compiled.clone(),
    })
}

/// Builds every prompt's entry from what storage loaded, compiling each template.
pub(crate) fn build_entries(
    versions: Vec<PromptVersion>,
    active: &[(String, Uuid)],
    labels: &[(String, String, Uuid)],
    limits: &RegistryLimits,
) -> Result<HashMap<String, PromptEntry>, RegistryError> {
    // Stored versions passed the size limits in force when they were created; lowering a
    // limit later must not make them unloadable.
    let load_limits = RegistryLimits {
        max_template_bytes: usize::MAX,
        max_variables: usize::MAX,
        max_messages: usize::MAX,
        ..limits.clone()
    };
    let mut keys_by_id = HashMap::new();
    let mut by_prompt: HashMap<String, BTreeMap<Version, Arc<CachedVersion>>> = HashMap::new();
    for record in versions {
        let (compiled, _) = CompiledPrompt::compile(
            &record.template,
            &record.messages,
            &record.variables,
            &load_limits,
        )
        .map_err(|problems| {
            RegistryError::Storage(format!(
                "stored version {}@{} no longer compiles: {}",
                record.name,
                record.version,
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        })?;
        let key = precedence_key(&record.version);
        keys_by_id.insert(record.id, (record.name.clone(), key.clone()));
        by_prompt.entry(record.name.clone()).or_default().insert(
            key,
            Arc::new(CachedVersion {
                record,
                compiled: Arc::new(compiled),
            }),
        );
    }
    let mut entries = HashMap::new();
    for (name, version_id) in active {
        let (Some(versions), Some((_, key))) = (by_prompt.remove(name), keys_by_id.get(version_id))
        else {
            return Err(RegistryError::Storage(format!(
                "prompt {name:?} points at a missing active version"
            )));
        };
        entries.insert(
            name.clone(),
            PromptEntry {
                versions,
                active: key.clone(),
                labels: BTreeMap::new(),
            },
        );
    }
    if let Some(orphan) = by_prompt.keys().next() {
        return Err(RegistryError::Storage(format!(
            "prompt {orphan:?} has versions but no active version"
        )));
    }
    for (name, label, version_id) in labels {
        let (Some(entry), Some((_, key))) = (entries.get_mut(name), keys_by_id.get(version_id))
        else {
            return Err(RegistryError::Storage(format!(
                "label {label:?} of {name:?} points at a missing version"
            )));
        };
        entry.labels.insert(label.clone(), key.clone());
    }
    Ok(entries)
}
