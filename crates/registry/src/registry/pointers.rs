//! The active version and labels: moving them through the release gate, and their
//! history.

use super::*;
use crate::gate::ReleaseBasis;

impl Registry {
    /// Installs the release guard asked before pointer moves. Set once, at start-up.
    pub fn set_release_guard(&self, guard: Arc<dyn ReleaseGuard>) {
        if self.guard.set(guard).is_err() {
            tracing::warn!("a release guard was already installed; keeping the first");
        }
    }

    /// Asks the release guard whether `request` may happen, unless the call overrides
    /// it with a reason (which is logged and recorded in the event).
    pub(super) async fn check_release(
        &self,
        request: ReleaseCheck<'_>,
        override_reason: Option<&str>,
    ) -> Result<Released, RegistryError> {
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
            return Ok(Released {
                override_reason: Some(reason.to_owned()),
                basis: None,
            });
        }
        let basis = match self.guard.get() {
            Some(guard) => Some(guard.check(&request).await.map_err(|reason| {
                RegistryError::FailedPrecondition(format!(
                    "release gate of {prompt:?} {pointer:?}: {reason}; pass override_reason to release anyway"
                ))
            })?),
            None => None,
        };
        Ok(Released {
            override_reason: None,
            basis,
        })
    }

    /// Makes `version` the prompt's active version, if its release gate allows (or
    /// `override_reason` says why not to ask).
    pub async fn activate(
        &self,
        name: &str,
        version: &str,
        override_reason: Option<&str>,
    ) -> Result<PromptVersionView, RegistryError> {
        self.activate_by(name, version, override_reason, None).await
    }

    /// [`Registry::activate`], recording `actor` as who did it.
    pub async fn activate_by(
        &self,
        name: &str,
        version: &str,
        override_reason: Option<&str>,
        actor: Option<&str>,
    ) -> Result<PromptVersionView, RegistryError> {
        let _guard = self.write_lock.lock().await;
        let entry = self.entry(name)?;
        let cached = self.select(&entry, name, &VersionSelector::Version(version.to_owned()))?;
        let previous = entry
            .versions
            .get(&entry.active)
            .map(|v| v.record.version.to_string());
        let released = self
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
            basis: released.basis,
        };
        let mut event = self.event(
            PromptEventKind::VersionActivated,
            name,
            Some(view.clone()),
            None,
        );
        event.previous_version = previous;
        event.override_reason = released.override_reason;
        event.actor = actor.map(str::to_owned);
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
        self.set_label_by(name, label, version, override_reason, None)
            .await
    }

    /// [`Registry::set_label`], recording `actor` as who did it.
    pub async fn set_label_by(
        &self,
        name: &str,
        label: &str,
        version: &str,
        override_reason: Option<&str>,
        actor: Option<&str>,
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
        let released = self
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
            basis: released.basis,
        };
        let mut event = self.event(
            PromptEventKind::LabelMoved,
            name,
            Some(view.clone()),
            Some(label),
        );
        event.previous_version = previous.as_ref().map(ToString::to_string);
        event.override_reason = released.override_reason;
        event.actor = actor.map(str::to_owned);
        self.commit(change, event, entry).await?;
        Ok((view, previous))
    }

    /// Removes a label; returns the version it pointed at.
    pub async fn delete_label(&self, name: &str, label: &str) -> Result<Version, RegistryError> {
        self.delete_label_by(name, label, None).await
    }

    /// [`Registry::delete_label`], recording `actor` as who did it.
    pub async fn delete_label_by(
        &self,
        name: &str,
        label: &str,
        actor: Option<&str>,
    ) -> Result<Version, RegistryError> {
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
        event.actor = actor.map(str::to_owned);
        self.commit(change, event, entry).await?;
        Ok(cached.record.version.clone())
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
}

/// The longest override reason kept.
pub(super) const MAX_OVERRIDE_REASON_BYTES: usize = 1024;

/// What [`Registry::check_release`] decided a pointer move may rest on.
pub(super) struct Released {
    /// The override's reason, when the gate was skipped.
    pub(super) override_reason: Option<String>,
    /// What the guard's decision rested on, for the commit to check again.
    pub(super) basis: Option<ReleaseBasis>,
}
