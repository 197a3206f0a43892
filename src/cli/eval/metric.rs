//! The `--metric` syntax, `NAME=SCORER[:THRESHOLD][@PARAMS]`, both ways: parsing it
//! into a `MetricConfig`, and writing a `MetricConfig` back in it for display.

use serde_json::Value as JsonValue;

use crate::cli::values::{json_from_struct, struct_from_json};
use crate::pb;

/// What a `--metric` SPEC looks like, for error messages.
const SYNTAX: &str = "expected NAME=SCORER[:THRESHOLD][@PARAMS], e.g. exact=exact_match, \
                      f1=token_f1:0.5 or judge=llm_judge@{\"judge\":\"gpt\"}";

/// Parses a `--metric` SPEC: the metric's name, `=`, the scorer, optionally `:` and the
/// pass threshold, optionally `@` and the scorer's parameters as a JSON object (last,
/// since JSON may hold any of the other separators).
pub(crate) fn parse(spec: &str) -> Result<pb::MetricConfig, String> {
    let (head, params) = match spec.split_once('@') {
        Some((head, params)) => (head, Some(params)),
        None => (spec, None),
    };
    let Some((name, rest)) = head.split_once('=') else {
        return Err(format!("no `=` after the metric's name: {SYNTAX}"));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("the metric's name is empty: {SYNTAX}"));
    }
    let (scorer, threshold) = match rest.split_once(':') {
        Some((scorer, threshold)) => (scorer.trim(), Some(parse_threshold(threshold)?)),
        None => (rest.trim(), None),
    };
    if scorer.is_empty() {
        return Err(format!("metric {name:?} has no scorer: {SYNTAX}"));
    }
    if let Some(bad) = scorer
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "scorer {scorer:?} of metric {name:?} has a {bad:?}: {SYNTAX}"
        ));
    }
    let params = params.map(parse_params).transpose()?;
    Ok(pb::MetricConfig {
        name: name.to_owned(),
        scorer: scorer.to_owned(),
        params,
        threshold,
    })
}

fn parse_threshold(text: &str) -> Result<f64, String> {
    let text = text.trim();
    match text.parse::<f64>() {
        Ok(threshold) if threshold.is_finite() => Ok(threshold),
        _ => Err(format!(
            "the threshold {text:?} is not a number (such as 0.5): {SYNTAX}"
        )),
    }
}

fn parse_params(text: &str) -> Result<prost_types::Struct, String> {
    match serde_json::from_str::<JsonValue>(text) {
        Ok(JsonValue::Object(map)) => Ok(struct_from_json(&map)),
        Ok(_) => Err(format!(
            "the parameters after `@` must be a JSON object, got {text}"
        )),
        Err(err) => Err(format!(
            "the parameters after `@` are not valid JSON ({err}); put them last and quote the SPEC"
        )),
    }
}

/// A metric in the `--metric` syntax: `f1=token_f1:0.5@{"k":1}` (threshold and
/// parameters only when set).
pub(crate) fn spec_text(metric: &pb::MetricConfig) -> String {
    let mut text = format!("{}={}", metric.name, metric.scorer);
    if let Some(threshold) = metric.threshold {
        text.push(':');
        text.push_str(&threshold.to_string());
    }
    if let Some(params) = metric.params.as_ref().map(json_from_struct) {
        if !params.is_empty() {
            text.push('@');
            text.push_str(&JsonValue::Object(params).to_string());
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn params(metric: &pb::MetricConfig) -> JsonValue {
        JsonValue::Object(json_from_struct(metric.params.as_ref().unwrap()))
    }

    #[test]
    fn a_name_and_a_scorer_are_enough() {
        let metric = parse("exact=exact_match").unwrap();
        assert_eq!(metric.name, "exact");
        assert_eq!(metric.scorer, "exact_match");
        assert_eq!(metric.threshold, None);
        assert_eq!(metric.params, None);
    }

    #[test]
    fn a_threshold_follows_a_colon() {
        let metric = parse("f1=token_f1:0.5").unwrap();
        assert_eq!(
            (metric.scorer.as_str(), metric.threshold),
            ("token_f1", Some(0.5))
        );
        assert_eq!(parse("f1 = token_f1 : 1").unwrap().threshold, Some(1.0));
    }

    #[test]
    fn parameters_are_a_json_object_after_an_at_sign() {
        let metric = parse(r#"judge=llm_judge@{"judge":"gpt","rubric":"a=b: c@d"}"#).unwrap();
        assert_eq!(metric.scorer, "llm_judge");
        assert_eq!(metric.threshold, None);
        assert_eq!(
            params(&metric),
            json!({"judge": "gpt", "rubric": "a=b: c@d"})
        );
        let metric = parse(r#"m=regex:0.9@{"pattern":"^\\d+$"}"#).unwrap();
        assert_eq!(metric.threshold, Some(0.9));
        assert_eq!(params(&metric), json!({"pattern": "^\\d+$"}));
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let err = |spec: &str| parse(spec).unwrap_err();
        assert!(err("exact").starts_with("no `=` after the metric's name: expected NAME=SCORER"));
        assert!(err("=exact_match").starts_with("the metric's name is empty"));
        assert!(err("a=").starts_with("metric \"a\" has no scorer"));
        assert!(err("a=:0.5").starts_with("metric \"a\" has no scorer"));
        assert!(err("a=b:high").starts_with("the threshold \"high\" is not a number"));
        assert!(err("a=b:NaN").starts_with("the threshold \"NaN\" is not a number"));
        assert!(err("a=b c").contains("has a ' '"));
        assert!(err("a=b@[1]").starts_with("the parameters after `@` must be a JSON object"));
        assert!(err("a=b@{oops}").starts_with("the parameters after `@` are not valid JSON"));
        // Parameters go last: a threshold after them is part of the JSON.
        assert!(err(r#"a=b@{"k":1}:0.5"#).contains("not valid JSON"));
    }

    #[test]
    fn specs_print_back_in_the_same_syntax() {
        for spec in [
            "exact=exact_match",
            "f1=token_f1:0.5",
            r#"judge=llm_judge:0.8@{"judge":"gpt"}"#,
        ] {
            assert_eq!(spec_text(&parse(spec).unwrap()), spec);
        }
        let empty_params = parse("a=b@{}").unwrap();
        assert_eq!(spec_text(&empty_params), "a=b");
    }
}
