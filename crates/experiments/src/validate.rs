//! Validation of experiment definitions: every problem is reported at once, with the
//! field at fault, and nothing is stored unless all is well.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};

use crate::error::{ExperimentError, FieldViolation};
use crate::model::{AnalysisUnit, MetricDefinition, MetricRole, Variant};

/// Limits on the sizes of what an experiment holds.
pub mod limits {
    /// Experiment, variant and metric ids and names.
    pub const ID_BYTES: usize = 128;
    /// Display names.
    pub const NAME_BYTES: usize = 256;
    /// Descriptions.
    pub const DESCRIPTION_BYTES: usize = 4096;
    /// Hash seeds.
    pub const SEED_BYTES: usize = 256;
    /// Variants per experiment.
    pub const VARIANTS: usize = 32;
    /// Metrics per experiment.
    pub const METRICS: usize = 64;
    /// Metadata entries.
    pub const METADATA_ENTRIES: usize = 64;
    /// One metadata key or value.
    pub const METADATA_BYTES: usize = 1024;
    /// A variant's parameters, as JSON.
    pub const PARAMETERS_BYTES: usize = 16 * 1024;
    /// User ids.
    pub const USER_ID_BYTES: usize = 256;
    /// Record ids (idempotency keys).
    pub const RECORD_ID_BYTES: usize = 128;
}

/// The weights must sum to 1 within this.
pub(crate) const WEIGHT_SUM_TOLERANCE: f64 = 0.01;

/// What a caller may set on an experiment; unset options take defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExperimentSpec {
    /// Unique id; generated when empty.
    pub id: String,
    /// Who creates it (an API key's name or a certificate identity); empty when unknown.
    pub created_by: String,
    /// The prompt and label it serves while running (prompt experiments); empty for none.
    pub serves_prompt: String,
    /// See `serves_prompt`.
    pub serves_label: String,
    /// Completed by the experiment monitor once a decision is justified.
    pub auto_complete: bool,
    /// An automatic completion moves the served label to the winner's version.
    pub promote_winner: bool,
    /// Required.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Hash seed; the id when empty.
    pub seed: String,
    /// Default 1.
    pub coverage: Option<f64>,
    /// At least two.
    pub variants: Vec<Variant>,
    /// What is measured.
    pub metrics: Vec<MetricDefinition>,
    /// Default 0.05.
    pub alpha: Option<f64>,
    /// Default from configuration.
    pub min_samples: Option<u64>,
    /// Sequential testing.
    pub sequential: bool,
    /// Default 5000.
    pub sequential_tuning: Option<f64>,
    /// Default per record.
    pub analysis_unit: AnalysisUnit,
    /// Free-form.
    pub metadata: BTreeMap<String, String>,
}

/// Collects violations.
#[derive(Debug, Default)]
pub(crate) struct Violations(Vec<FieldViolation>);

impl Violations {
    pub(crate) fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    pub(crate) fn extend(&mut self, found: Vec<FieldViolation>) {
        self.0.extend(found);
    }

    pub(crate) fn into_result(self) -> Result<(), ExperimentError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ExperimentError::InvalidArgument(self.0))
        }
    }
}

/// Whether `id` is usable as an identifier: 1..=128 bytes of letters, digits, `.`, `_`,
/// `-`, `:`, `/`, starting with a letter or digit.
pub(crate) fn check_identifier(violations: &mut Violations, field: &str, id: &str) {
    if id.is_empty() {
        violations.add(field, "is required");
    } else if id.len() > limits::ID_BYTES {
        violations.add(field, format!("is longer than {} bytes", limits::ID_BYTES));
    } else if !id.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'))
    {
        violations.add(
            field,
            format!("{id:?} must start with a letter or digit and use only letters, digits, '.', '_', '-', ':', '/'"),
        );
    }
}

pub(crate) fn check_length(violations: &mut Violations, field: &str, text: &str, max: usize) {
    if text.len() > max {
        violations.add(field, format!("is longer than {max} bytes"));
    }
}

pub(crate) fn check_metadata(violations: &mut Violations, metadata: &BTreeMap<String, String>) {
    if metadata.len() > limits::METADATA_ENTRIES {
        violations.add(
            "metadata",
            format!("has more than {} entries", limits::METADATA_ENTRIES),
        );
    }
    for (key, value) in metadata {
        if key.is_empty() {
            violations.add("metadata", "keys must not be empty");
        }
        if key.len() > limits::METADATA_BYTES || value.len() > limits::METADATA_BYTES {
            violations.add(
                format!("metadata[{key}]"),
                format!(
                    "keys and values are at most {} bytes",
                    limits::METADATA_BYTES
                ),
            );
        }
    }
}

pub(crate) fn check_coverage(violations: &mut Violations, coverage: f64) {
    if !(coverage.is_finite() && (0.0..=1.0).contains(&coverage)) {
        violations.add("coverage", format!("{coverage} is not between 0 and 1"));
    }
}

/// Checks the variants: at least two, unique ids, at most one control, and either no
/// weights (an equal split) or one per variant, each >= 0, summing to 1 within 0.01.
pub(crate) fn check_variants(violations: &mut Violations, variants: &[Variant]) {
    if variants.len() < 2 {
        violations.add("variants", "an experiment needs at least 2 variants");
    }
    if variants.len() > limits::VARIANTS {
        violations.add(
            "variants",
            format!("has more than {} variants", limits::VARIANTS),
        );
    }
    let mut ids = HashSet::new();
    for (i, variant) in variants.iter().enumerate() {
        check_identifier(violations, &format!("variants[{i}].id"), &variant.id);
        if !variant.id.is_empty() && !ids.insert(variant.id.as_str()) {
            violations.add(
                format!("variants[{i}].id"),
                format!("{:?} is used by another variant", variant.id),
            );
        }
        check_length(
            violations,
            &format!("variants[{i}].name"),
            &variant.name,
            limits::NAME_BYTES,
        );
        check_length(
            violations,
            &format!("variants[{i}].description"),
            &variant.description,
            limits::DESCRIPTION_BYTES,
        );
        check_length(
            violations,
            &format!("variants[{i}].prompt_name"),
            &variant.prompt_name,
            limits::ID_BYTES,
        );
        check_length(
            violations,
            &format!("variants[{i}].prompt_version"),
            &variant.prompt_version,
            limits::ID_BYTES,
        );
        if !variant.prompt_version.is_empty() && variant.prompt_name.is_empty() {
            violations.add(
                format!("variants[{i}].prompt_name"),
                "is required when prompt_version is set",
            );
        }
        check_length(
            violations,
            &format!("variants[{i}].model"),
            &variant.model,
            limits::ID_BYTES,
        );
        if parameters_size(&variant.parameters) > limits::PARAMETERS_BYTES {
            violations.add(
                format!("variants[{i}].parameters"),
                format!("is larger than {} bytes as JSON", limits::PARAMETERS_BYTES),
            );
        }
    }
    let controls = variants.iter().filter(|v| v.is_control).count();
    if controls > 1 {
        violations.add(
            "variants",
            format!("{controls} variants are marked as control; mark one"),
        );
    }

    let set = variants.iter().filter(|v| v.weight.is_some()).count();
    if set == 0 {
        return; // an equal split
    }
    if set < variants.len() {
        violations.add(
            "variants",
            "every variant needs a weight when any has one (leave all unset for an equal split)",
        );
        return;
    }
    let mut usable = true;
    for (i, variant) in variants.iter().enumerate() {
        let weight = variant.weight.unwrap_or_default();
        if !weight.is_finite() || weight < 0.0 {
            violations.add(
                format!("variants[{i}].weight"),
                format!("{weight} is not a number >= 0"),
            );
            usable = false;
        }
    }
    let sum: f64 = variants.iter().filter_map(|v| v.weight).sum();
    if usable && (sum - 1.0).abs() > WEIGHT_SUM_TOLERANCE {
        violations.add(
            "variants",
            format!("weights sum to {sum}; they must sum to 1 (within {WEIGHT_SUM_TOLERANCE}) and are used as given"),
        );
    }
}

fn parameters_size(parameters: &Map<String, Value>) -> usize {
    serde_json::to_vec(parameters).map_or(usize::MAX, |bytes| bytes.len())
}

/// Checks the metrics: unique names, at most one primary.
pub(crate) fn check_metrics(violations: &mut Violations, metrics: &[MetricDefinition]) {
    if metrics.len() > limits::METRICS {
        violations.add(
            "metrics",
            format!("has more than {} metrics", limits::METRICS),
        );
    }
    let mut names = HashSet::new();
    for (i, metric) in metrics.iter().enumerate() {
        check_identifier(violations, &format!("metrics[{i}].name"), &metric.name);
        if !metric.name.is_empty() && !names.insert(metric.name.as_str()) {
            violations.add(
                format!("metrics[{i}].name"),
                format!("{:?} is declared twice", metric.name),
            );
        }
    }
    let primaries = metrics
        .iter()
        .filter(|m| m.role == MetricRole::Primary)
        .count();
    if primaries > 1 {
        violations.add(
            "metrics",
            format!("{primaries} metrics are primary; at most one may be"),
        );
    }
}

/// Checks the statistical settings.
pub(crate) fn check_analysis(
    violations: &mut Violations,
    alpha: f64,
    min_samples: u64,
    sequential_tuning: f64,
) {
    if !(alpha.is_finite() && alpha > 0.0 && alpha < 1.0) {
        violations.add(
            "alpha",
            format!("{alpha} is not between 0 and 1 (exclusive)"),
        );
    }
    if min_samples == 0 {
        violations.add("min_samples", "must be at least 1");
    }
    if !(sequential_tuning.is_finite() && sequential_tuning > 0.0) {
        violations.add(
            "sequential_tuning",
            format!("{sequential_tuning} is not a positive number"),
        );
    }
}
