//! Dataset and sample records.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a dataset is for (the seed's four types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetType {
    /// Curated reference answers.
    #[default]
    Golden,
    /// Cases that once failed and must keep passing.
    Regression,
    /// A standard benchmark.
    Benchmark,
    /// Collected from users.
    User,
}

/// A dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// Unique id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// What it is for.
    pub dataset_type: DatasetType,
    /// Free-form.
    pub metadata: BTreeMap<String, String>,
    /// Samples in the current version.
    pub sample_count: u64,
    /// Bumped by every change to the samples; 1 when created.
    pub version: u64,
    /// Order-independent hash of the current samples.
    pub content_hash: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// What a caller gives to create a dataset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatasetSpec {
    /// Generated when empty.
    pub id: String,
    /// Required and unique.
    pub name: String,
    /// Free text.
    pub description: String,
    /// What it is for.
    pub dataset_type: DatasetType,
    /// Free-form.
    pub metadata: BTreeMap<String, String>,
}

/// One sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Unique in its dataset.
    pub id: String,
    /// A string (the template variable `input`) or an object of template variables.
    pub input: Value,
    /// The reference answer.
    pub expected_output: String,
    /// Grounding context.
    pub context: String,
    /// Free-form.
    pub metadata: BTreeMap<String, String>,
}
