//! What the registry needs from storage. Implemented in `llmops-store` for SQLite and
//! PostgreSQL; the registry never sees SQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
pub use llmops_core::StoreError;
use uuid::Uuid;

use crate::event::PromptEvent;
use crate::gate::ReleaseBasis;
use crate::model::PromptVersion;

/// One atomic change to the registry. The store applies it together with appending its
/// event, in one transaction, or not at all.
#[derive(Debug, Clone)]
pub enum PromptChange {
    /// Insert a version; it becomes the active one if the prompt has none.
    CreateVersion(Box<PromptVersion>),
    /// Point the prompt's active pointer at a version.
    Activate {
        /// The prompt.
        name: String,
        /// The version to activate.
        version_id: Uuid,
        /// When.
        at: DateTime<Utc>,
        /// What the release gate's decision rested on, checked again in the commit
        /// (`None`: no guard was asked, or an override skipped it).
        basis: Option<ReleaseBasis>,
    },
    /// Create or move a label.
    SetLabel {
        /// The prompt.
        name: String,
        /// The label.
        label: String,
        /// The version it points at.
        version_id: Uuid,
        /// When.
        at: DateTime<Utc>,
        /// What the release gate's decision rested on, checked again in the commit.
        basis: Option<ReleaseBasis>,
    },
    /// Remove a label.
    DeleteLabel {
        /// The prompt.
        name: String,
        /// The label.
        label: String,
    },
    /// Delete a version that is neither active nor labelled.
    DeleteVersion {
        /// The prompt.
        name: String,
        /// The version.
        version_id: Uuid,
    },
    /// Delete a prompt with all its versions and labels.
    DeletePrompt {
        /// The prompt.
        name: String,
    },
}

/// Everything the registry holds, as loaded at start-up.
#[derive(Debug, Clone, Default)]
pub struct RegistryState {
    /// Every stored version.
    pub versions: Vec<PromptVersion>,
    /// (prompt name, active version id) for every prompt.
    pub active: Vec<(String, Uuid)>,
    /// (prompt name, label, version id) for every label.
    pub labels: Vec<(String, String, Uuid)>,
    /// The sequence of the last committed event (0 when there is none).
    pub head_sequence: u64,
}

/// Durable storage of prompts and their change feed.
#[async_trait]
pub trait PromptStore: Send + Sync + 'static {
    /// Loads every prompt, version and label.
    async fn load_registry(&self) -> Result<RegistryState, StoreError>;

    /// The stored state of one prompt (no versions when it does not exist), with the
    /// head sequence of the same snapshot. A replica reloads a prompt that another
    /// process changed with this.
    async fn load_prompt(&self, name: &str) -> Result<RegistryState, StoreError>;

    /// Applies `change` and appends `event` in one transaction. The event's sequence is
    /// assigned by the store's sequencer in commit order and returned; the `sequence`
    /// field of `event` is ignored.
    async fn commit_prompt_change(
        &self,
        change: &PromptChange,
        event: &PromptEvent,
    ) -> Result<u64, StoreError>;

    /// Up to `limit` events with a sequence greater than `after`, oldest first, only for
    /// `prompt_name` when given.
    async fn prompt_events_after(
        &self,
        after: u64,
        prompt_name: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PromptEvent>, StoreError>;
}
