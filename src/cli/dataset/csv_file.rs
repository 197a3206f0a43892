//! CSV sample files: a header row, then one sample per row. Columns `id`, `input` (a
//! string) or `input_json` (JSON), `expected_output` and `context`; any other column is
//! a metadata key.

use std::collections::{BTreeSet, HashSet};
use std::io::Write;

use anyhow::bail;
use prost_types::value::Kind;
use serde_json::Value as JsonValue;

use super::samples::{check_unique_ids, input_value, ParsedSample, Problems};
use crate::cli::values::{json_from_value, value_from_json};
use crate::pb;

/// The column names that are not metadata.
const FIELDS: [&str; 5] = ["id", "input", "input_json", "expected_output", "context"];

/// What a column holds.
#[derive(Debug, Clone, PartialEq)]
enum Column {
    Id,
    /// The input as a string.
    Input,
    /// The input as JSON: a string or an object.
    InputJson,
    ExpectedOutput,
    Context,
    /// A metadata entry with this key.
    Metadata(String),
}

/// Parses CSV `text` read from `source` (the name problems carry). Every problem is
/// reported with its line number (a row's first line when a quoted cell spans lines).
pub(crate) fn parse(source: &str, text: &str) -> anyhow::Result<Vec<ParsedSample>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header = match records.next() {
        None => bail!("{source} is empty: a CSV file needs a header row"),
        Some(Err(err)) => bail!("{source}: {err}"),
        Some(Ok(header)) => header,
    };
    let mut problems = Problems::new(source);
    let header_line = line_of(text, &header);
    let columns = columns(&mut problems, header_line, &header);
    let columns = problems.finish(columns)?;

    let mut problems = Problems::new(source);
    let mut samples = Vec::new();
    for record in records {
        let record = match record {
            Ok(record) => record,
            Err(err) => {
                let line = err.position().map_or(0, |p| p.line() as usize);
                problems.add(line, err);
                continue;
            }
        };
        let line = line_of(text, &record);
        if record.len() != columns.len() {
            problems.add(
                line,
                format!(
                    "has {} field{}, the header has {}",
                    record.len(),
                    if record.len() == 1 { "" } else { "s" },
                    columns.len()
                ),
            );
            continue;
        }
        let mut sample = pb::Sample::default();
        let mut fine = true;
        for (column, cell) in columns.iter().zip(record.iter()) {
            match column {
                Column::Id => sample.id = cell.to_owned(),
                Column::Input => sample.input = Some(value_from_json(&JsonValue::from(cell))),
                Column::InputJson => match json_input(cell) {
                    Ok(input) => sample.input = Some(input),
                    Err(problem) => {
                        problems.add(line, format!("input_json: {problem}"));
                        fine = false;
                    }
                },
                Column::ExpectedOutput => sample.expected_output = cell.to_owned(),
                Column::Context => sample.context = cell.to_owned(),
                Column::Metadata(key) => {
                    if !cell.is_empty() {
                        sample.metadata.insert(key.clone(), cell.to_owned());
                    }
                }
            }
        }
        if fine {
            samples.push(ParsedSample { line, sample });
        }
    }
    check_unique_ids(&mut problems, &samples);
    problems.finish(samples)
}

/// The line a record starts on. The reader's position is where it started looking, so
/// it counts the blank lines it then skipped too.
fn line_of(text: &str, record: &csv::StringRecord) -> usize {
    let Some(position) = record.position() else {
        return 0;
    };
    let skipped = text
        .get(usize::try_from(position.byte()).unwrap_or(usize::MAX)..)
        .unwrap_or_default()
        .bytes()
        .take_while(|b| matches!(b, b'\n' | b'\r'))
        .filter(|b| *b == b'\n')
        .count();
    position.line() as usize + skipped
}

/// The header row's columns; their problems go to `problems`.
fn columns(problems: &mut Problems, line: usize, header: &csv::StringRecord) -> Vec<Column> {
    let mut seen = HashSet::new();
    let mut columns = Vec::new();
    for (index, name) in header.iter().enumerate() {
        let name = name.trim();
        if name.is_empty() {
            problems.add(line, format!("column {} has no name", index + 1));
            continue;
        }
        if !seen.insert(name) {
            problems.add(line, format!("column {name:?} appears twice"));
            continue;
        }
        columns.push(match name {
            "id" => Column::Id,
            "input" => Column::Input,
            "input_json" => Column::InputJson,
            "expected_output" => Column::ExpectedOutput,
            "context" => Column::Context,
            other => Column::Metadata(other.to_owned()),
        });
    }
    match (seen.contains("input"), seen.contains("input_json")) {
        (true, true) => problems.add(
            line,
            "both an input and an input_json column: keep one (input_json holds JSON)",
        ),
        (false, false) => problems.add(
            line,
            "no input column: name one `input` (a string) or `input_json` (JSON)",
        ),
        _ => {}
    }
    columns
}

/// An `input_json` cell: JSON holding a string or an object.
fn json_input(cell: &str) -> Result<prost_types::Value, String> {
    if cell.trim().is_empty() {
        return Err("missing".to_owned());
    }
    let value: JsonValue =
        serde_json::from_str(cell).map_err(|err| format!("not valid JSON: {err}"))?;
    input_value(value)
}

/// Writes `samples` as CSV: `id`, `input` (or `input_json` when an input is not a
/// string), `expected_output`, `context`, then one column per metadata key, sorted.
///
/// Fails, before writing anything, when a metadata key cannot be a column (it is one of
/// the sample fields' names, empty, or has surrounding spaces).
pub(crate) fn write(out: &mut dyn Write, samples: &[pb::Sample]) -> anyhow::Result<()> {
    let as_json = samples.iter().any(|s| {
        !matches!(
            s.input.as_ref().and_then(|v| v.kind.as_ref()),
            Some(Kind::StringValue(_))
        )
    });
    let keys: BTreeSet<&str> = samples
        .iter()
        .flat_map(|s| s.metadata.keys().map(String::as_str))
        .collect();
    for key in &keys {
        if FIELDS.contains(key) || key.trim() != *key || key.is_empty() {
            let id = samples
                .iter()
                .find(|s| s.metadata.contains_key(*key))
                .map_or("", |s| s.id.as_str());
            bail!("sample {id:?} has metadata key {key:?}, which cannot be a CSV column; export as JSONL instead");
        }
    }
    let mut writer = csv::Writer::from_writer(Vec::new());
    let input_column = if as_json { "input_json" } else { "input" };
    let mut header = vec!["id", input_column, "expected_output", "context"];
    header.extend(keys.iter().copied());
    writer.write_record(&header)?;
    for sample in samples {
        let input = match sample.input.as_ref() {
            Some(value) if as_json => json_from_value(value).to_string(),
            Some(prost_types::Value {
                kind: Some(Kind::StringValue(text)),
            }) => text.clone(),
            _ => String::new(),
        };
        let mut row = vec![
            sample.id.as_str(),
            input.as_str(),
            sample.expected_output.as_str(),
            sample.context.as_str(),
        ];
        row.extend(
            keys.iter()
                .map(|key| sample.metadata.get(*key).map_or("", String::as_str)),
        );
        writer.write_record(&row)?;
    }
    let bytes = writer.into_inner().map_err(|err| err.into_error())?;
    out.write_all(&bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn problems(text: &str) -> String {
        parse("data.csv", text).unwrap_err().to_string()
    }

    fn input(value: JsonValue) -> Option<prost_types::Value> {
        Some(value_from_json(&value))
    }

    #[test]
    fn other_columns_are_metadata() {
        let text = "id,input,expected_output,context,topic,difficulty\n\
                    q1,What is 2+2?,4,,math,easy\n\
                    ,\"Say \"\"hi\"\", twice\",hi hi,greeting,,\n";
        let samples = parse("data.csv", text).unwrap();
        assert_eq!(samples.len(), 2);
        let first = &samples[0];
        assert_eq!(first.line, 2);
        assert_eq!(first.sample.id, "q1");
        assert_eq!(first.sample.input, input(json!("What is 2+2?")));
        assert_eq!(first.sample.expected_output, "4");
        assert_eq!(first.sample.context, "");
        assert_eq!(
            first.sample.metadata,
            [
                ("topic".to_owned(), "math".to_owned()),
                ("difficulty".to_owned(), "easy".to_owned())
            ]
            .into()
        );
        let second = &samples[1];
        assert_eq!(second.line, 3);
        assert_eq!(second.sample.id, "");
        assert_eq!(second.sample.input, input(json!("Say \"hi\", twice")));
        assert_eq!(second.sample.context, "greeting");
        // Empty cells are left out of the metadata.
        assert!(second.sample.metadata.is_empty());
    }

    #[test]
    fn input_json_is_parsed_as_json() {
        let text = "input_json,expected_output\n\
                    \"{\"\"question\"\": \"\"Capital?\"\", \"\"n\"\": 1}\",Paris\n\
                    \"\"\"plain\"\"\",x\n";
        let samples = parse("data.csv", text).unwrap();
        assert_eq!(
            samples[0].sample.input,
            input(json!({"question": "Capital?", "n": 1}))
        );
        assert_eq!(samples[0].sample.expected_output, "Paris");
        assert_eq!(samples[1].sample.input, input(json!("plain")));

        let bad = "input_json\n{not json}\n[1]\n\n\"\"\n";
        let text = problems(bad);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("data.csv:2: input_json: not valid JSON: "),
            "{text}"
        );
        assert_eq!(
            lines[1..],
            [
                "data.csv:3: input_json: must be a string or an object of template variables, not a list",
                "data.csv:5: input_json: missing",
            ]
        );
    }

    #[test]
    fn rows_are_numbered_by_their_first_line() {
        let text = "input,note\n\"multi\nline\",a\n\nlast,b\nshort\n";
        let err = problems(text);
        assert_eq!(err, "data.csv:6: has 1 field, the header has 2");
        let samples = parse("data.csv", "input,note\n\"multi\nline\",a\n\nlast,b\n").unwrap();
        let lines: Vec<usize> = samples.iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![2, 5]);
        assert_eq!(samples[0].sample.input, input(json!("multi\nline")));
        // Blank lines (before the header too) are skipped but counted.
        let samples = parse("data.csv", "\r\n\ninput\n\nx\n").unwrap();
        assert_eq!(samples[0].line, 5);
        assert_eq!(
            problems("\ninput,note\n\n\nx\n"),
            "data.csv:5: has 1 field, the header has 2"
        );
    }

    #[test]
    fn the_header_must_name_one_input_column_and_no_column_twice() {
        assert_eq!(
            problems("id,question\nq,x\n"),
            "data.csv:1: no input column: name one `input` (a string) or `input_json` (JSON)"
        );
        assert_eq!(
            problems("input,input_json\na,\"\"\"b\"\"\"\n"),
            "data.csv:1: both an input and an input_json column: keep one (input_json holds JSON)"
        );
        assert_eq!(
            problems("input,x,,x\n"),
            "data.csv:1: column 3 has no name\ndata.csv:1: column \"x\" appears twice"
        );
        assert_eq!(
            parse("data.csv", "").unwrap_err().to_string(),
            "data.csv is empty: a CSV file needs a header row"
        );
        // A header alone is a file with no samples.
        assert!(parse("data.csv", "\u{feff}input\n").unwrap().is_empty());
    }

    #[test]
    fn an_export_reads_back_as_the_same_samples() {
        let originals = vec![
            pb::Sample {
                id: "s1".into(),
                input: input(json!("a, \"quoted\"\nmulti-line input")),
                expected_output: "4".into(),
                context: String::new(),
                metadata: [("topic".to_owned(), "math".to_owned())].into(),
            },
            pb::Sample {
                id: "s2".into(),
                input: input(json!("plain")),
                expected_output: String::new(),
                context: "ctx".into(),
                metadata: [("level".to_owned(), "2".to_owned())].into(),
            },
        ];
        let mut bytes = Vec::new();
        write(&mut bytes, &originals).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with("id,input,expected_output,context,level,topic\n"),
            "{text}"
        );
        let samples: Vec<pb::Sample> = parse("export.csv", &text)
            .unwrap()
            .into_iter()
            .map(|p| p.sample)
            .collect();
        assert_eq!(samples, originals);

        // An object input switches the column to input_json, strings included.
        let mut with_object = originals.clone();
        with_object[1].input = input(json!({"q": "x", "n": 2}));
        let mut bytes = Vec::new();
        write(&mut bytes, &with_object).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with("id,input_json,expected_output,context,level,topic\n"),
            "{text}"
        );
        let samples: Vec<pb::Sample> = parse("export.csv", &text)
            .unwrap()
            .into_iter()
            .map(|p| p.sample)
            .collect();
        assert_eq!(samples, with_object);
    }

    #[test]
    fn a_metadata_key_that_cannot_be_a_column_is_refused() {
        let sample = pb::Sample {
            id: "s1".into(),
            input: input(json!("x")),
            metadata: [("context".to_owned(), "v".to_owned())].into(),
            ..Default::default()
        };
        let err = write(&mut Vec::new(), &[sample]).unwrap_err().to_string();
        assert_eq!(
            err,
            "sample \"s1\" has metadata key \"context\", which cannot be a CSV column; export as JSONL instead"
        );
    }

    proptest::proptest! {
        /// Any text is samples or an error naming the file; never a panic.
        #[test]
        fn any_text_is_samples_or_an_error(text in "(id|input|expected_output|,|\"|\\n|[a-z ]|\\PC){0,200}") {
            if let Err(err) = parse("data.csv", &text) {
                proptest::prop_assert!(err.to_string().contains("data.csv"), "{err}");
            }
        }
    }
}
