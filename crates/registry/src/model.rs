//! The registry's records.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::variable::PromptVariable;

/// One message of a chat prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool` or `developer`.
    pub role: String,
    /// The message's template.
    pub template: String,
}

/// The model a prompt version was written for.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelConfig {
    /// The model or provider name.
    #[serde(default)]
    pub model: String,
    /// Free-form parameters (temperature, max_tokens, ...).
    #[serde(default)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
}

/// What a client gives to create a version. Everything else is assigned by the registry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPromptVersion {
    /// The prompt's name.
    pub name: String,
    /// A semantic version string.
    pub version: String,
    /// The text template.
    #[serde(default)]
    pub template: String,
    /// Chat message templates.
    #[serde(default)]
    pub messages: Vec<ChatMessage>,
    /// Declared variables; empty means "infer from the templates".
    #[serde(default)]
    pub variables: Vec<PromptVariable>,
    /// The model this version was written for.
    #[serde(default)]
    pub model_config: Option<ModelConfig>,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Who wrote it.
    #[serde(default)]
    pub author: String,
    /// What the prompt does.
    #[serde(default)]
    pub description: String,
    /// Why this version was made.
    #[serde(default)]
    pub commit_message: String,
}

/// A stored, immutable prompt version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptVersion {
    /// UUID v7.
    pub id: Uuid,
    /// The prompt's name.
    pub name: String,
    /// The version as given (build metadata included).
    pub version: semver::Version,
    /// The text template.
    pub template: String,
    /// Chat message templates.
    pub messages: Vec<ChatMessage>,
    /// Declared (or inferred) variables.
    pub variables: Vec<PromptVariable>,
    /// The model this version was written for.
    pub model_config: Option<ModelConfig>,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Free-form metadata.
    pub metadata: BTreeMap<String, String>,
    /// Who wrote it.
    pub author: String,
    /// What the prompt does.
    pub description: String,
    /// Why this version was made.
    pub commit_message: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its activation or labels last changed.
    pub updated_at: DateTime<Utc>,
}

/// A version as clients see it: the record plus its place in the prompt's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptVersionView {
    /// The stored record.
    pub version: PromptVersion,
    /// Whether it is the prompt's active version.
    pub is_active: bool,
    /// The labels pointing at it, sorted.
    pub labels: Vec<String>,
}

/// A prompt, summarised for listings.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptSummary {
    /// The prompt's name.
    pub name: String,
    /// The active version.
    pub active_version: semver::Version,
    /// Labels and the versions they point at.
    pub labels: BTreeMap<String, semver::Version>,
    /// How many versions exist.
    pub version_count: usize,
    /// The "latest" version (highest precedence, pre-releases skipped when possible).
    pub latest_version: semver::Version,
    /// When the prompt last changed.
    pub updated_at: DateTime<Utc>,
}
