//! Answers as JSON for `--json`, built by hand (protobuf types do not derive serde).
//! Field names are the proto's (snake_case); enums are the short lowercase names the
//! tables show; times are RFC 3339 strings; unset optional numbers are null.

use serde_json::{json, Map, Value as JsonValue};

use super::format::{direction_name, kind_name, role_name, status_name, unit_name};
use crate::cli::values::{json_from_struct, json_time};
use crate::pb;

/// An experiment.
pub(crate) fn experiment(e: &pb::Experiment) -> JsonValue {
    let mut metadata: Vec<_> = e.metadata.iter().collect();
    metadata.sort();
    json!({
        "id": e.id,
        "name": e.name,
        "description": e.description,
        "seed": e.seed,
        "status": status_name(e.status),
        "coverage": e.coverage,
        "alpha": e.alpha,
        "min_samples": e.min_samples,
        "sequential": e.sequential,
        "sequential_tuning": e.sequential_tuning,
        "analysis_unit": unit_name(e.analysis_unit),
        "variants": e.variants.iter().map(variant).collect::<Vec<_>>(),
        "metrics": e.metrics.iter().map(|m| json!({
            "name": m.name,
            "kind": kind_name(m.kind),
            "direction": direction_name(m.direction),
            "role": role_name(m.role),
        })).collect::<Vec<_>>(),
        "winner_variant_id": e.winner_variant_id,
        "metadata": metadata.into_iter().map(|(k, v)| (k.clone(), JsonValue::from(v.as_str()))).collect::<Map<_, _>>(),
        "start_time": json_time(e.start_time.as_ref()),
        "end_time": json_time(e.end_time.as_ref()),
        "created_at": json_time(e.created_at.as_ref()),
        "updated_at": json_time(e.updated_at.as_ref()),
    })
}

/// A variant.
pub(crate) fn variant(v: &pb::Variant) -> JsonValue {
    json!({
        "id": v.id,
        "name": v.name,
        "description": v.description,
        "is_control": v.is_control,
        "prompt_name": v.prompt_name,
        "prompt_version": v.prompt_version,
        "model": v.model,
        "parameters": v.parameters.as_ref().map(json_from_struct).unwrap_or_default(),
        "weight": v.weight,
    })
}

/// An assignment.
pub(crate) fn assignment(a: &pb::AssignVariantResponse) -> JsonValue {
    json!({
        "in_experiment": a.in_experiment,
        "variant": a.variant.as_ref().map(variant),
        "bucket": a.bucket,
    })
}

/// An effect.
fn effect(e: &pb::Effect) -> JsonValue {
    json!({
        "estimate": e.estimate,
        "ci_lower": e.ci_lower,
        "ci_upper": e.ci_upper,
        "p_value": e.p_value,
        "computable": e.computable,
        "reason": e.reason,
    })
}

/// Results, in full.
pub(crate) fn results(r: &pb::GetExperimentResultsResponse) -> JsonValue {
    json!({
        "experiment": r.experiment.as_ref().map(experiment),
        "stats": r.stats.iter().map(|s| json!({
            "variant_id": s.variant_id,
            "metric": s.metric,
            "n": s.n,
            "mean": s.mean,
            "std_dev": s.std_dev,
            "min": s.min,
            "max": s.max,
            "sum": s.sum,
            "sum_squares": s.sum_squares,
        })).collect::<Vec<_>>(),
        "comparisons": r.comparisons.iter().map(|c| json!({
            "variant_id": c.variant_id,
            "metric": c.metric,
            "role": role_name(c.role),
            "absolute": c.absolute.as_ref().map(effect),
            "relative": c.relative.as_ref().map(effect),
            "adjusted_p_value": c.adjusted_p_value,
            "significant": c.significant,
            "improves": c.improves,
        })).collect::<Vec<_>>(),
        "srm": r.srm.as_ref().map(|s| json!({
            "p_value": s.p_value,
            "detected": s.detected,
            "observed": s.observed,
            "expected": s.expected,
        })),
        "winner_variant_id": r.winner_variant_id,
        "recommendation": r.recommendation,
        "reasons": r.reasons,
        "confidence": r.confidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_experiment_uses_short_enum_names_and_null_for_unset_numbers() {
        let e = pb::Experiment {
            id: "e1".into(),
            status: pb::ExperimentStatus::Paused as i32,
            coverage: Some(0.5),
            variants: vec![pb::Variant {
                id: "a".into(),
                is_control: true,
                ..Default::default()
            }],
            metrics: vec![pb::MetricDefinition {
                name: "m".into(),
                direction: pb::MetricDirection::HigherIsBetter as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        let value = experiment(&e);
        assert_eq!(value["status"], "paused");
        assert_eq!(value["coverage"], 0.5);
        assert_eq!(value["alpha"], JsonValue::Null);
        assert_eq!(value["analysis_unit"], "record");
        assert_eq!(value["variants"][0]["is_control"], true);
        assert_eq!(value["variants"][0]["weight"], JsonValue::Null);
        assert_eq!(value["metrics"][0]["direction"], "higher_is_better");
        assert_eq!(value["metrics"][0]["role"], "secondary");
        assert_eq!(value["created_at"], JsonValue::Null);
    }
}
