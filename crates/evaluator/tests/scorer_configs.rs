//! Scorers as a run's metric configs build them: names, parameters, and refusals that
//! name the parameter at fault.

use llmops_evaluator::{Scorer, ScorerError};
use serde_json::{json, Map, Value};

fn params(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("params are objects"),
    }
}

fn scorer(name: &str, value: Value) -> Scorer {
    Scorer::from_config(name, &params(value), "quality").unwrap()
}

#[test]
fn exact_and_substring_scorers_follow_their_options() {
    assert_eq!(
        scorer("exact_match", json!({})).score(" Paris\n", "Paris"),
        1.0,
        "trimmed by default"
    );
    assert_eq!(
        scorer("exact_match", json!({"trim": false})).score(" Paris", "Paris"),
        0.0
    );
    assert_eq!(
        scorer("exact_match", json!({})).score("paris", "Paris"),
        0.0
    );
    assert_eq!(
        scorer("exact_match", json!({"ignore_case": true})).score("paris", "Paris"),
        1.0
    );
    assert_eq!(
        scorer("contains", json!({})).score("It is Paris.", "Paris"),
        1.0,
        "the expected output by default"
    );
    assert_eq!(
        scorer("contains", json!({"value": "Lyon"})).score("It is Paris.", "Paris"),
        0.0
    );
    assert_eq!(
        scorer(
            "contains_any",
            json!({"values": ["lyon", "paris"], "ignore_case": true})
        )
        .score("Paris!", ""),
        1.0
    );
    assert_eq!(
        scorer("contains_all", json!({"values": ["a", "b", "c", "d"]})).score("a b", ""),
        0.5
    );
}

#[test]
fn regex_searches_or_matches_the_whole_output() {
    assert_eq!(
        scorer("regex", json!({"pattern": r"\d{3}"})).score("call 555 now", ""),
        1.0
    );
    assert_eq!(
        scorer("regex", json!({"pattern": r"\d{3}", "full_match": true})).score("call 555 now", ""),
        0.0
    );
    // Leftmost-first alternation would find "a"; a full match must still see "ab".
    assert_eq!(
        scorer("regex", json!({"pattern": "a|ab", "full_match": true})).score("ab", ""),
        1.0
    );
}

#[test]
fn json_scorers_parse_and_compare_structurally() {
    assert_eq!(
        scorer("json_valid", json!({})).score(r#"{"a": [1, 2]}"#, ""),
        1.0
    );
    assert_eq!(scorer("json_valid", json!({})).score("{a: 1}", ""), 0.0);
    assert_eq!(
        scorer("json_match", json!({})).score(r#"{"b": 2, "a": 1}"#, r#"{"a": 1, "b": 2}"#),
        1.0
    );
}

#[test]
fn every_score_is_between_zero_and_one() {
    let configs = [
        ("levenshtein", json!({})),
        ("token_f1", json!({})),
        ("rouge_l", json!({})),
        ("heuristic", json!({"profile": "completeness"})),
    ];
    for (name, config) in configs {
        let s = scorer(name, config);
        for (output, expected) in [
            ("", ""),
            ("the cat", "a cat sat"),
            ("完全に違う", "totally different"),
            ("x", ""),
        ] {
            let score = s.score(output, expected);
            assert!((0.0..=1.0).contains(&score), "{name}: {score}");
        }
    }
}

#[test]
fn bad_configs_name_the_scorer_or_parameter() {
    let err = Scorer::from_config("exactmatch", &Map::new(), "m").unwrap_err();
    assert!(matches!(err, ScorerError::Unknown(ref name) if name == "exactmatch"));
    assert!(
        err.to_string().contains("exact_match"),
        "lists the known scorers: {err}"
    );

    let refused =
        |name: &str, value: Value| Scorer::from_config(name, &params(value), "m").unwrap_err();
    let param_of = |err: ScorerError| match err {
        ScorerError::InvalidParam { param, .. } => param,
        other => panic!("{other}"),
    };
    assert_eq!(
        param_of(refused("regex", json!({"pattern": "("}))),
        "pattern"
    );
    assert_eq!(param_of(refused("regex", json!({}))), "pattern");
    assert_eq!(
        param_of(refused("exact_match", json!({"trim": "yes"}))),
        "trim"
    );
    assert_eq!(
        param_of(refused("exact_match", json!({"ignorecase": true}))),
        "ignorecase"
    );
    assert_eq!(
        param_of(refused("contains_all", json!({"values": []}))),
        "values"
    );
    assert_eq!(param_of(refused("bleu", json!({"n": 4}))), "n");
    assert_eq!(
        param_of(refused("heuristic", json!({"profile": "vibes"}))),
        "profile"
    );
}
