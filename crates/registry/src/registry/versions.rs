//! Creating and deleting versions: each new version is validated, compiled and checked
//! against the stored ones (precedence, identical reuse, a release gate on a new prompt)
//! before anything is written.

use super::*;

impl Registry {
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

    pub(super) async fn create_or_reuse(
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
    pub(super) fn prepare_version(
        &self,
        new: NewPromptVersion,
    ) -> Result<PreparedVersion, RegistryError> {
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
    pub(super) async fn plan_version(
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
    pub(super) async fn apply_plan(
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

    pub(super) fn validate_new_version(
        &self,
        new: &NewPromptVersion,
    ) -> Result<Version, RegistryError> {
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
}

pub(super) const MAX_TAG_BYTES: usize = 128;

pub(super) const MAX_METADATA_KEY_BYTES: usize = 128;

pub(super) fn invalid(violation: FieldViolation) -> RegistryError {
    RegistryError::InvalidArgument(vec![violation])
}

/// A new version, validated and compiled.
pub(super) struct PreparedVersion {
    key: Version,
    record: PromptVersion,
    compiled: CompiledPrompt,
}

/// What writing a prepared version does.
pub(super) enum VersionPlan {
    /// An identical version exists: nothing is written.
    Reuse,
    /// The version is new.
    Create,
}
