//! JSONL sample files: one JSON object per line with `id`, `input`, `expected_output`,
//! `context` and `metadata`. `export` writes what `import` reads.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;
use serde_json::Value as JsonValue;

use super::samples::{check_unique_ids, input_value, kind, ParsedSample, Problems};
use crate::cli::values::json_from_value;
use crate::pb;

/// The keys a line may have, for the unknown-key error.
const KEYS: &str = "id, input, expected_output, context or metadata";

/// Parses JSONL `text` read from `source` (the name problems carry). Blank lines are
/// skipped; every problem of every line is reported, with its line number.
pub(crate) fn parse(source: &str, text: &str) -> anyhow::Result<Vec<ParsedSample>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut problems = Problems::new(source);
    let mut samples = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(sample) => samples.push(ParsedSample {
                line: index + 1,
                sample,
            }),
            Err(found) => {
                for problem in found {
                    problems.add(index + 1, problem);
                }
            }
        }
    }
    check_unique_ids(&mut problems, &samples);
    problems.finish(samples)
}

/// One line as a sample, or its problems (`input: missing`).
fn parse_line(line: &str) -> Result<pb::Sample, Vec<String>> {
    let value: JsonValue = serde_json::from_str(line).map_err(|err| vec![json_problem(&err)])?;
    let JsonValue::Object(fields) = value else {
        return Err(vec![format!("must be a JSON object, not {}", kind(&value))]);
    };
    let mut problems = Vec::new();
    let mut sample = pb::Sample::default();
    let mut input = JsonValue::Null;
    for (key, value) in fields {
        match key.as_str() {
            "id" => set_text(&mut problems, "id", value, &mut sample.id),
            "input" => input = value,
            "expected_output" => set_text(
                &mut problems,
                "expected_output",
                value,
                &mut sample.expected_output,
            ),
            "context" => set_text(&mut problems, "context", value, &mut sample.context),
            "metadata" => match value {
                JsonValue::Null => {}
                JsonValue::Object(entries) => {
                    for (name, value) in entries {
                        match value {
                            JsonValue::String(text) => {
                                sample.metadata.insert(name, text);
                            }
                            other => problems.push(format!(
                                "metadata.{name}: must be a string, not {}",
                                kind(&other)
                            )),
                        }
                    }
                }
                other => problems.push(format!(
                    "metadata: must be an object of strings, not {}",
                    kind(&other)
                )),
            },
            _ => problems.push(format!("{key}: unknown key (expected {KEYS})")),
        }
    }
    match input_value(input) {
        Ok(input) => sample.input = Some(input),
        Err(problem) => problems.push(format!("input: {problem}")),
    }
    if problems.is_empty() {
        Ok(sample)
    } else {
        Err(problems)
    }
}

/// A string field; null means empty.
fn set_text(problems: &mut Vec<String>, field: &str, value: JsonValue, into: &mut String) {
    match value {
        JsonValue::Null => {}
        JsonValue::String(text) => *into = text,
        other => problems.push(format!("{field}: must be a string, not {}", kind(&other))),
    }
}

/// A JSON syntax error without serde's `at line 1` (the line is the file's).
fn json_problem(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let position = format!(" at line {} column {}", err.line(), err.column());
    match text.strip_suffix(&position) {
        Some(message) => format!("not valid JSON (column {}): {message}", err.column()),
        None => format!("not valid JSON: {text}"),
    }
}

/// One exported line, keys in reading order.
#[derive(Serialize)]
struct SampleLine<'a> {
    id: &'a str,
    input: JsonValue,
    expected_output: &'a str,
    context: &'a str,
    metadata: BTreeMap<&'a str, &'a str>,
}

/// Writes `sample` as one JSONL line.
pub(crate) fn write_sample(out: &mut dyn Write, sample: &pb::Sample) -> io::Result<()> {
    let line = SampleLine {
        id: &sample.id,
        input: sample
            .input
            .as_ref()
            .map_or(JsonValue::Null, json_from_value),
        expected_output: &sample.expected_output,
        context: &sample.context,
        metadata: sample
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
    };
    serde_json::to_writer(&mut *out, &line)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cli::values::value_from_json;

    fn problems(text: &str) -> String {
        parse("data.jsonl", text).unwrap_err().to_string()
    }

    #[test]
    fn inputs_are_strings_or_objects() {
        let text = concat!(
            r#"{"id": "a", "input": "What is 2+2?", "expected_output": "4"}"#,
            "\n",
            r#"{"input": {"question": "Capital of France?", "n": 2}, "context": "Europe", "metadata": {"topic": "geo"}}"#,
            "\n",
        );
        let samples = parse("data.jsonl", text).unwrap();
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].line, 1);
        assert_eq!(samples[0].sample.id, "a");
        assert_eq!(
            samples[0].sample.input,
            Some(value_from_json(&json!("What is 2+2?")))
        );
        assert_eq!(samples[0].sample.expected_output, "4");
        assert_eq!(samples[1].line, 2);
        assert_eq!(samples[1].sample.id, "");
        assert_eq!(
            samples[1].sample.input,
            Some(value_from_json(
                &json!({"question": "Capital of France?", "n": 2})
            ))
        );
        assert_eq!(samples[1].sample.context, "Europe");
        assert_eq!(samples[1].sample.metadata["topic"], "geo");
    }

    #[test]
    fn blank_lines_are_skipped_and_lines_keep_their_numbers() {
        let text = "\u{feff}\n{\"input\": \"a\"}\n   \n\r\n{\"input\": \"b\", \"id\": null}\r\n\n";
        let samples = parse("data.jsonl", text).unwrap();
        let lines: Vec<usize> = samples.iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![2, 5]);
        assert_eq!(samples[1].sample.input, Some(value_from_json(&json!("b"))));
        assert!(parse("data.jsonl", "\n \n").unwrap().is_empty());
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_line() {
        let text = "{\"input\": \"a\"}\n\n{\"input\": \"b\", \"expected\": \"x\"}\n";
        assert_eq!(
            problems(text),
            "data.jsonl:3: expected: unknown key (expected id, input, expected_output, context or metadata)"
        );
    }

    #[test]
    fn every_problem_names_its_line_and_field() {
        let text = [
            r#"{"input": "ok"}"#,
            r#"{"id": "x"}"#,
            r#"{"input": 3, "id": 7}"#,
            r#"{"input": "a", "metadata": {"k": 1}, "context": ["c"]}"#,
            r#"{"input": "a", "metadata": "k=v"}"#,
            r#"["input"]"#,
            r#"{"input": "a",}"#,
            r#"{"input": null, "id": "x"}"#,
        ]
        .join("\n");
        assert_eq!(
            problems(&text),
            [
                "data.jsonl:2: input: missing",
                "data.jsonl:3: id: must be a string, not a number",
                "data.jsonl:3: input: must be a string or an object of template variables, not a number",
                "data.jsonl:4: context: must be a string, not a list",
                "data.jsonl:4: metadata.k: must be a string, not a number",
                "data.jsonl:5: metadata: must be an object of strings, not a string",
                "data.jsonl:6: must be a JSON object, not a list",
                "data.jsonl:7: not valid JSON (column 15): trailing comma",
                "data.jsonl:8: input: missing",
            ]
            .join("\n")
        );
    }

    #[test]
    fn a_repeated_id_is_refused() {
        let text = "{\"id\": \"a\", \"input\": \"1\"}\n{\"id\": \"a\", \"input\": \"2\"}\n";
        assert_eq!(problems(text), "data.jsonl:2: id: \"a\" is also on line 1");
    }

    #[test]
    fn an_export_reads_back_as_the_same_samples() {
        let originals = vec![
            pb::Sample {
                id: "s1".into(),
                input: Some(value_from_json(&json!("line one\nline \"two\" ✓"))),
                expected_output: "4".into(),
                context: String::new(),
                metadata: [("topic".to_owned(), "math".to_owned())].into(),
            },
            pb::Sample {
                id: "s2".into(),
                input: Some(value_from_json(
                    &json!({"q": "x", "n": 2, "f": 0.5, "nested": {"l": [1, null, true]}}),
                )),
                expected_output: String::new(),
                context: "ctx".into(),
                metadata: Default::default(),
            },
        ];
        let mut text = Vec::new();
        for sample in &originals {
            write_sample(&mut text, sample).unwrap();
        }
        let text = String::from_utf8(text).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(
            text.starts_with(r#"{"id":"s1","input":"line one\nline \"two\" ✓","expected_output":"4","context":"","metadata":{"topic":"math"}}"#),
            "{text}"
        );
        let parsed = parse("export.jsonl", &text).unwrap();
        let samples: Vec<pb::Sample> = parsed.into_iter().map(|p| p.sample).collect();
        assert_eq!(samples, originals);
    }

    fn text_sample() -> impl proptest::strategy::Strategy<Value = pb::Sample> {
        use proptest::prelude::*;
        ("[a-z0-9]{0,8}", "\\PC{1,40}", "\\PC{0,40}", "\\PC{0,20}").prop_map(
            |(id, input, expected, context)| pb::Sample {
                id,
                input: Some(value_from_json(&json!(input))),
                expected_output: expected,
                context,
                ..Default::default()
            },
        )
    }

    proptest::proptest! {
        /// Any text is samples or an error naming the file; never a panic.
        #[test]
        fn any_text_is_samples_or_an_error(text in "\\PC{0,300}") {
            if let Err(err) = parse("data.jsonl", &text) {
                proptest::prop_assert!(err.to_string().contains("data.jsonl"), "{err}");
            }
        }

        /// What export writes, import reads back the same.
        #[test]
        fn written_samples_read_back(mut samples in proptest::collection::vec(text_sample(), 1..8)) {
            // A dataset's ids are unique (import refuses repeats), so an export never repeats one.
            for (index, sample) in samples.iter_mut().enumerate() {
                sample.id = format!("{index}{}", sample.id);
            }
            let mut text = Vec::new();
            for sample in &samples {
                write_sample(&mut text, sample).unwrap();
            }
            let parsed = parse("data.jsonl", std::str::from_utf8(&text).unwrap()).unwrap();
            let read: Vec<pb::Sample> = parsed.into_iter().map(|p| p.sample).collect();
            proptest::prop_assert_eq!(read, samples);
        }
    }
}
