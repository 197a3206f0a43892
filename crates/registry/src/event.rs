//! The registry's change feed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::PromptVersionView;

/// What a [`PromptEvent`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptEventKind {
    /// A version was created.
    VersionCreated,
    /// A version became active.
    VersionActivated,
    /// A label was set or moved.
    LabelMoved,
    /// A label was removed.
    LabelDeleted,
    /// A version was deleted.
    VersionDeleted,
    /// A whole prompt was deleted.
    PromptDeleted,
}

/// A committed change, with the durable sequence it was committed under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptEvent {
    /// Strictly increasing, assigned in commit order.
    pub sequence: u64,
    /// What happened.
    pub kind: PromptEventKind,
    /// The prompt concerned.
    pub prompt_name: String,
    /// The version concerned, as it was right after the change (`None` for a deleted prompt).
    pub version: Option<PromptVersionView>,
    /// For label events, the label.
    pub label: Option<String>,
    /// When the change was made.
    pub time: DateTime<Utc>,
    /// For pointer moves (activation, label set or deleted), the version it held before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    /// Why a release gate was bypassed, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_reason: Option<String>,
    /// Who made a pointer move (the calling API key's name), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}
