//! The experiment file `llmops experiment create -f` reads, and its conversion to
//! protobuf.
//!
//! The file is YAML or JSON (chosen as for prompt files). Unknown keys are refused with
//! their path (`variants[1]: unknown field `wieght`, ...`), so a typo cannot silently
//! drop a setting.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::anyhow;
use serde::Deserialize;
use serde_json::{Map, Value as JsonValue};

use crate::cli::files::read_document;
use crate::cli::values::struct_from_json;
use crate::pb;

/// An experiment as a file writes it. Only `name` is required here; the server checks
/// the rest (at least two variants, weights, one primary metric, ...).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExperimentFile {
    /// Unique id; the server generates one when empty.
    #[serde(default)]
    id: String,
    /// Display name.
    name: String,
    /// Free text.
    #[serde(default)]
    description: String,
    /// The hash seed; the id when empty.
    #[serde(default)]
    seed: String,
    /// Share of users in the experiment, 0..1.
    #[serde(default)]
    coverage: Option<f64>,
    /// Significance level.
    #[serde(default)]
    alpha: Option<f64>,
    /// Observations each variant needs on the primary metric before a winner is named.
    #[serde(default)]
    min_samples: Option<u64>,
    /// Use the sequential (peeking-safe) test.
    #[serde(default)]
    sequential: bool,
    /// The sequential test's tuning parameter.
    #[serde(default)]
    sequential_tuning: Option<f64>,
    /// What one observation is.
    #[serde(default)]
    analysis_unit: Option<AnalysisUnit>,
    /// Free-form.
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    /// The arms.
    #[serde(default)]
    variants: Vec<VariantFile>,
    /// What is measured.
    #[serde(default)]
    metrics: Vec<MetricFile>,
}

/// One arm.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VariantFile {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    control: bool,
    #[serde(default)]
    prompt_name: String,
    #[serde(default)]
    prompt_version: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    parameters: Map<String, JsonValue>,
    #[serde(default)]
    weight: Option<f64>,
}

/// One metric; `direction` is required (the server refuses a metric without one).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricFile {
    name: String,
    #[serde(default)]
    kind: Option<MetricKind>,
    direction: MetricDirection,
    #[serde(default)]
    role: Option<MetricRole>,
    /// `client` (the default), `latency_ms`, `cost`, `output_tokens`, `error` or
    /// `online_score`.
    #[serde(default)]
    source: Option<MetricSource>,
    /// With `online_score`: the online evaluation that feeds it.
    #[serde(default)]
    online_evaluation_id: String,
    /// With `online_score`: the online evaluation's metric (or `pass`); empty: `name`.
    #[serde(default)]
    online_metric: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum MetricSource {
    Client,
    LatencyMs,
    Cost,
    OutputTokens,
    Error,
    OnlineScore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum AnalysisUnit {
    Record,
    User,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum MetricKind {
    Mean,
    Proportion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum MetricDirection {
    HigherIsBetter,
    LowerIsBetter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum MetricRole {
    Primary,
    Secondary,
    Guardrail,
}

/// Reads an experiment file as the `experiment` of a create request.
pub(crate) fn read(path: &Path) -> anyhow::Result<pb::Experiment> {
    let document: JsonValue = read_document(path)?;
    from_document(path, document).map(experiment_to_pb)
}

/// Checks a parsed document against the file format; errors name the file and the
/// offending key's path.
fn from_document(path: &Path, document: JsonValue) -> anyhow::Result<ExperimentFile> {
    serde_path_to_error::deserialize(document).map_err(|err| {
        let key = err.path().to_string();
        let shown = path.display();
        if key == "." {
            anyhow!("{shown} is not valid: {}", err.inner())
        } else {
            anyhow!("{shown} is not valid: {key}: {}", err.inner())
        }
    })
}

/// The file's experiment as protobuf; unset enums stay UNSPECIFIED (the server's
/// defaults: record, mean, secondary).
fn experiment_to_pb(file: ExperimentFile) -> pb::Experiment {
    pb::Experiment {
        id: file.id,
        name: file.name,
        description: file.description,
        seed: file.seed,
        coverage: file.coverage,
        variants: file.variants.into_iter().map(variant_to_pb).collect(),
        metrics: file.metrics.into_iter().map(metric_to_pb).collect(),
        alpha: file.alpha,
        min_samples: file.min_samples,
        sequential: file.sequential,
        sequential_tuning: file.sequential_tuning,
        analysis_unit: file
            .analysis_unit
            .map_or(pb::AnalysisUnit::Unspecified, |unit| match unit {
                AnalysisUnit::Record => pb::AnalysisUnit::Record,
                AnalysisUnit::User => pb::AnalysisUnit::User,
            }) as i32,
        metadata: file.metadata.into_iter().collect(),
        ..pb::Experiment::default()
    }
}

fn variant_to_pb(variant: VariantFile) -> pb::Variant {
    pb::Variant {
        id: variant.id,
        name: variant.name,
        description: variant.description,
        is_control: variant.control,
        prompt_name: variant.prompt_name,
        prompt_version: variant.prompt_version,
        model: variant.model,
        parameters: (!variant.parameters.is_empty()).then(|| struct_from_json(&variant.parameters)),
        weight: variant.weight,
    }
}

fn metric_to_pb(metric: MetricFile) -> pb::MetricDefinition {
    pb::MetricDefinition {
        name: metric.name,
        kind: metric
            .kind
            .map_or(pb::MetricKind::Unspecified, |kind| match kind {
                MetricKind::Mean => pb::MetricKind::Mean,
                MetricKind::Proportion => pb::MetricKind::Proportion,
            }) as i32,
        direction: match metric.direction {
            MetricDirection::HigherIsBetter => pb::MetricDirection::HigherIsBetter,
            MetricDirection::LowerIsBetter => pb::MetricDirection::LowerIsBetter,
        } as i32,
        role: metric
            .role
            .map_or(pb::MetricRole::Unspecified, |role| match role {
                MetricRole::Primary => pb::MetricRole::Primary,
                MetricRole::Secondary => pb::MetricRole::Secondary,
                MetricRole::Guardrail => pb::MetricRole::Guardrail,
            }) as i32,
        source: metric
            .source
            .map_or(pb::MetricSource::Unspecified, |source| match source {
                MetricSource::Client => pb::MetricSource::Client,
                MetricSource::LatencyMs => pb::MetricSource::LatencyMs,
                MetricSource::Cost => pb::MetricSource::Cost,
                MetricSource::OutputTokens => pb::MetricSource::OutputTokens,
                MetricSource::Error => pb::MetricSource::Error,
                MetricSource::OnlineScore => pb::MetricSource::OnlineScore,
            }) as i32,
        online_evaluation_id: metric.online_evaluation_id,
        online_metric: metric.online_metric,
    }
}

#[cfg(test)]
mod tests {
    use prost_types::value::Kind;

    use super::*;
    use crate::cli::files::parse_document;

    const YAML: &str = r#"
id: reply-tone
name: Reply tone
description: Friendly or formal?
seed: s1
coverage: 0.5
alpha: 0.01
min_samples: 200
sequential: true
sequential_tuning: 10000
analysis_unit: user
metadata:
  team: care
variants:
  - id: formal
    name: Formal
    control: true
    prompt_name: support/reply
    prompt_version: 1.0.0
    model: openai
    weight: 0.4
  - id: friendly
    prompt_name: support/reply
    prompt_version: 1.1.0
    parameters:
      temperature: 0.7
    weight: 0.6
metrics:
  - name: quality
    kind: mean
    direction: higher_is_better
    role: primary
  - name: latency
    direction: lower_is_better
    role: guardrail
  - name: thumbs_up
    kind: proportion
    direction: higher_is_better
"#;

    fn parse(path: &str, text: &str) -> anyhow::Result<pb::Experiment> {
        let path = Path::new(path);
        let document: JsonValue = parse_document(path, text)?;
        from_document(path, document).map(experiment_to_pb)
    }

    #[test]
    fn a_yaml_file_becomes_a_create_request() {
        let e = parse("e.yaml", YAML).unwrap();
        assert_eq!(e.id, "reply-tone");
        assert_eq!(e.name, "Reply tone");
        assert_eq!(e.seed, "s1");
        assert_eq!(e.coverage, Some(0.5));
        assert_eq!(e.alpha, Some(0.01));
        assert_eq!(e.min_samples, Some(200));
        assert!(e.sequential);
        assert_eq!(e.sequential_tuning, Some(10000.0));
        assert_eq!(e.analysis_unit, pb::AnalysisUnit::User as i32);
        assert_eq!(e.metadata["team"], "care");

        assert_eq!(e.variants.len(), 2);
        assert!(e.variants[0].is_control);
        assert!(!e.variants[1].is_control);
        assert_eq!(e.variants[0].prompt_version, "1.0.0");
        assert_eq!(e.variants[0].model, "openai");
        assert_eq!(e.variants[0].weight, Some(0.4));
        assert_eq!(e.variants[0].parameters, None);
        assert_eq!(
            e.variants[1].parameters.as_ref().unwrap().fields["temperature"].kind,
            Some(Kind::NumberValue(0.7))
        );

        let metric = |i: usize| {
            let m = &e.metrics[i];
            (m.name.as_str(), m.kind, m.direction, m.role)
        };
        assert_eq!(
            metric(0),
            (
                "quality",
                pb::MetricKind::Mean as i32,
                pb::MetricDirection::HigherIsBetter as i32,
                pb::MetricRole::Primary as i32
            )
        );
        assert_eq!(
            metric(1),
            (
                "latency",
                pb::MetricKind::Unspecified as i32,
                pb::MetricDirection::LowerIsBetter as i32,
                pb::MetricRole::Guardrail as i32
            )
        );
        assert_eq!(metric(2).1, pb::MetricKind::Proportion as i32);
        assert_eq!(metric(2).3, pb::MetricRole::Unspecified as i32);
    }

    #[test]
    fn a_minimal_json_file_leaves_the_defaults_to_the_server() {
        let e = parse(
            "e.json",
            r#"{"name": "x", "variants": [{"id": "a"}, {"id": "b"}]}"#,
        )
        .unwrap();
        assert_eq!(e.id, "");
        assert_eq!(e.coverage, None);
        assert_eq!(e.alpha, None);
        assert_eq!(e.min_samples, None);
        assert_eq!(e.sequential_tuning, None);
        assert_eq!(e.analysis_unit, pb::AnalysisUnit::Unspecified as i32);
        assert_eq!(e.variants[1].weight, None);
        assert!(e.metrics.is_empty());
    }

    #[test]
    fn an_unknown_key_is_refused_naming_it_and_where_it_is() {
        let err = parse(
            "e.yaml",
            "name: x\nvariants:\n  - id: a\n  - id: b\n    wieght: 0.5\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("e.yaml is not valid: variants[1]"), "{err}");
        assert!(err.contains("unknown field `wieght`"), "{err}");

        let err = parse("e.json", r#"{"name": "x", "covrage": 0.5}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `covrage`"), "{err}");
    }

    #[test]
    fn directions_are_the_two_snake_case_names_and_required() {
        let metric = |direction: &str| {
            parse(
                "e.yaml",
                &format!("name: x\nmetrics:\n  - name: m\n    direction: {direction}\n"),
            )
        };
        assert_eq!(
            metric("higher_is_better").unwrap().metrics[0].direction,
            pb::MetricDirection::HigherIsBetter as i32
        );
        assert_eq!(
            metric("lower_is_better").unwrap().metrics[0].direction,
            pb::MetricDirection::LowerIsBetter as i32
        );
        let err = metric("lower").unwrap_err().to_string();
        assert!(
            err.starts_with("e.yaml is not valid: metrics[0].direction: "),
            "{err}"
        );
        assert!(err.contains("unknown variant `lower`"), "{err}");

        let err = parse("e.yaml", "name: x\nmetrics:\n  - name: m\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrics[0]"), "{err}");
        assert!(err.contains("missing field `direction`"), "{err}");
    }

    #[test]
    fn a_wrong_type_names_the_key() {
        let err = parse("e.yaml", "name: x\ncoverage: all\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("e.yaml is not valid: coverage: invalid type"),
            "{err}"
        );
    }
}
