//! How datasets and samples look on a terminal, and the short names of dataset types
//! (the command line's: `golden`, `regression`, ...).

use std::io::{self, Write};

use prost_types::value::Kind;

use crate::cli::output::{clip, table, write_table, Fields};
use crate::cli::values::{json_from_value, rfc3339};
use crate::pb;

/// The widest an input or expected output is shown in the samples table, in characters.
const CELL_WIDTH: usize = 48;

/// Unset means golden.
pub(crate) fn type_name(value: i32) -> &'static str {
    match pb::DatasetType::try_from(value) {
        Ok(pb::DatasetType::Unspecified | pb::DatasetType::Golden) => "golden",
        Ok(pb::DatasetType::Regression) => "regression",
        Ok(pb::DatasetType::Benchmark) => "benchmark",
        Ok(pb::DatasetType::User) => "user",
        Err(_) => "unknown",
    }
}

/// The `list` table.
pub(crate) fn dataset_table(out: &mut dyn Write, datasets: &[pb::Dataset]) -> io::Result<()> {
    let mut rows = table(&["ID", "NAME", "TYPE", "SAMPLES", "VERSION", "UPDATED"]);
    for d in datasets {
        rows.add_row(vec![
            d.id.clone(),
            d.name.clone(),
            type_name(d.r#type).to_owned(),
            d.sample_count.to_string(),
            d.version.to_string(),
            rfc3339(d.updated_at.as_ref()),
        ]);
    }
    write_table(out, rows)
}

/// One dataset, a field a line.
pub(crate) fn dataset_details(out: &mut dyn Write, d: &pb::Dataset) -> io::Result<()> {
    let mut fields = Fields::new();
    fields.add("id", d.id.clone(), true);
    fields.add("name", d.name.clone(), true);
    fields.add("type", type_name(d.r#type).to_owned(), true);
    fields.add("description", d.description.clone(), false);
    fields.add("samples", d.sample_count.to_string(), true);
    fields.add("version", d.version.to_string(), true);
    fields.add("content hash", d.content_hash.clone(), true);
    fields.add("created", rfc3339(d.created_at.as_ref()), false);
    fields.add("updated", rfc3339(d.updated_at.as_ref()), false);
    let mut metadata: Vec<_> = d.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
    metadata.sort();
    fields.add("metadata", metadata.join(", "), false);
    fields.write(out)
}

/// The `samples` table: inputs and expected outputs cut to one short line.
pub(crate) fn sample_table(out: &mut dyn Write, samples: &[pb::Sample]) -> io::Result<()> {
    let mut rows = table(&["ID", "INPUT", "EXPECTED"]);
    for s in samples {
        rows.add_row(vec![
            s.id.clone(),
            clip(&input_text(s.input.as_ref()), CELL_WIDTH),
            clip(&s.expected_output, CELL_WIDTH),
        ]);
    }
    write_table(out, rows)
}

/// A string input as itself; an object as compact JSON.
fn input_text(input: Option<&prost_types::Value>) -> String {
    match input {
        Some(prost_types::Value {
            kind: Some(Kind::StringValue(text)),
        }) => text.clone(),
        Some(value) => json_from_value(value).to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cli::values::value_from_json;

    #[test]
    fn long_or_multi_line_text_is_clipped() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("a\n  b\tc ", 10), "a b c");
        assert_eq!(clip("0123456789abc", 10), "012345678…");
        assert_eq!(clip("ééééééééééé", 5), "éééé…");
    }

    #[test]
    fn the_samples_table_shows_objects_as_json() {
        let samples = [
            pb::Sample {
                id: "s1".into(),
                input: Some(value_from_json(&json!({"q": "x"}))),
                expected_output: "y".into(),
                ..Default::default()
            },
            pb::Sample {
                id: "s2".into(),
                input: Some(value_from_json(&json!("hello\nworld"))),
                ..Default::default()
            },
        ];
        let mut out = Vec::new();
        sample_table(&mut out, &samples).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["ID", "INPUT", "EXPECTED"]
        );
        assert!(
            lines[1].starts_with("s1")
                && lines[1].contains(r#"{"q":"x"}"#)
                && lines[1].ends_with('y'),
            "{text}"
        );
        assert!(lines[2].contains("hello world"), "{text}");
    }

    #[test]
    fn an_unset_type_is_golden() {
        assert_eq!(type_name(0), "golden");
        assert_eq!(type_name(pb::DatasetType::Benchmark as i32), "benchmark");
        assert_eq!(type_name(99), "unknown");
    }
}
