//! What the sample file formats share: the parsed sample with its file line, problems
//! that point at file lines, reading a file (or stdin) in the right format, batching for
//! `ImportSamples`, and pointing the server's `samples[N]` errors back at file lines.

use std::collections::HashMap;
use std::fmt::Display;
use std::io::Read as _;
use std::path::Path;

use anyhow::{anyhow, bail, Context as _};
use prost::Message as _;
use serde_json::Value as JsonValue;

use super::{csv_file, jsonl, FormatArg};
use crate::cli::values::value_from_json;
use crate::pb;

/// The most samples one `ImportSamples` message carries.
pub(crate) const BATCH_SAMPLES: usize = 1000;
/// The most encoded bytes one `ImportSamples` message carries (unless one sample is
/// larger), well under the server's default 4 MiB message limit.
const BATCH_BYTES: usize = 1 << 20;
/// The most problems an error lists; the rest are counted.
const MAX_SHOWN: usize = 20;

/// A sample and the file line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParsedSample {
    /// 1-based.
    pub(crate) line: usize,
    pub(crate) sample: pb::Sample,
}

/// A sample file, read and checked.
#[derive(Debug)]
pub(crate) struct Source {
    /// How errors name the file: its path, or `<stdin>`.
    pub(crate) name: String,
    pub(crate) samples: Vec<ParsedSample>,
}

/// Reads the samples of `path` (`-`: stdin). The format is `format`, else the one the
/// extension names (`.jsonl`/`.ndjson`, `.csv`); stdin is JSONL unless told otherwise.
pub(crate) fn read(path: &Path, format: Option<FormatArg>) -> anyhow::Result<Source> {
    let stdin = path.as_os_str() == "-";
    let (name, format) = if stdin {
        ("<stdin>".to_owned(), format.unwrap_or(FormatArg::Jsonl))
    } else {
        let name = path.display().to_string();
        let Some(format) = format.or_else(|| format_of(path)) else {
            bail!("cannot tell the format of {name} from its name: use --format jsonl or --format csv");
        };
        (name, format)
    };
    let text = if stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read stdin")?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?
    };
    let samples = match format {
        FormatArg::Jsonl => jsonl::parse(&name, &text)?,
        FormatArg::Csv => csv_file::parse(&name, &text)?,
    };
    if samples.is_empty() {
        bail!("{name} holds no samples");
    }
    Ok(Source { name, samples })
}

/// The format a file's extension names.
fn format_of(path: &Path) -> Option<FormatArg> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    match extension.as_str() {
        "jsonl" | "ndjson" => Some(FormatArg::Jsonl),
        "csv" => Some(FormatArg::Csv),
        _ => None,
    }
}

/// The problems found in a file, each as `<file>:<line>: <problem>`.
#[derive(Debug)]
pub(crate) struct Problems {
    source: String,
    shown: Vec<String>,
    count: usize,
}

impl Problems {
    pub(crate) fn new(source: &str) -> Self {
        Self {
            source: source.to_owned(),
            shown: Vec::new(),
            count: 0,
        }
    }

    /// A problem on line `line` (1-based).
    pub(crate) fn add(&mut self, line: usize, problem: impl Display) {
        self.count += 1;
        if self.shown.len() < MAX_SHOWN {
            self.shown
                .push(format!("{}:{line}: {problem}", self.source));
        }
    }

    /// `value` when there were no problems; else an error listing them, one a line.
    pub(crate) fn finish<T>(self, value: T) -> anyhow::Result<T> {
        if self.count == 0 {
            return Ok(value);
        }
        let mut text = self.shown.join("\n");
        let more = self.count - self.shown.len();
        if more > 0 {
            text.push_str(&format!(
                "\n(and {more} more problem{})",
                if more == 1 { "" } else { "s" }
            ));
        }
        Err(anyhow::Error::msg(text))
    }
}

/// Flags a sample id given twice in the file (the server would refuse the whole import).
pub(crate) fn check_unique_ids(problems: &mut Problems, samples: &[ParsedSample]) {
    let mut first_line: HashMap<&str, usize> = HashMap::new();
    for parsed in samples {
        let id = parsed.sample.id.as_str();
        if id.is_empty() {
            continue;
        }
        if let Some(first) = first_line.get(id) {
            problems.add(parsed.line, format!("id: {id:?} is also on line {first}"));
        } else {
            first_line.insert(id, parsed.line);
        }
    }
}

/// An input as the server wants it: a string or an object. The error is the problem
/// without the field name (`missing`).
pub(crate) fn input_value(value: JsonValue) -> Result<prost_types::Value, String> {
    match value {
        JsonValue::Null => Err("missing".to_owned()),
        JsonValue::String(_) | JsonValue::Object(_) => Ok(value_from_json(&value)),
        other => Err(format!(
            "must be a string or an object of template variables, not {}",
            kind(&other)
        )),
    }
}

/// What a JSON value is, for errors: `a number`.
pub(crate) fn kind(value: &JsonValue) -> &'static str {
    match value {
        JsonValue::Null => "null",
        JsonValue::Bool(_) => "a boolean",
        JsonValue::Number(_) => "a number",
        JsonValue::String(_) => "a string",
        JsonValue::Array(_) => "a list",
        JsonValue::Object(_) => "an object",
    }
}

/// The `ImportSamples` messages for `samples`: at most [`BATCH_SAMPLES`] samples and
/// (unless one sample is larger) [`BATCH_BYTES`] bytes each.
pub(crate) fn batches(dataset_id: &str, samples: Vec<pb::Sample>) -> Vec<pb::ImportSamplesRequest> {
    let mut batches = Vec::new();
    let mut batch: Vec<pb::Sample> = Vec::new();
    let mut bytes = 0;
    for sample in samples {
        let size = sample.encoded_len() + 8;
        if !batch.is_empty() && (batch.len() == BATCH_SAMPLES || bytes + size > BATCH_BYTES) {
            batches.push(pb::ImportSamplesRequest {
                dataset_id: dataset_id.to_owned(),
                samples: std::mem::take(&mut batch),
            });
            bytes = 0;
        }
        bytes += size;
        batch.push(sample);
    }
    if !batch.is_empty() {
        batches.push(pb::ImportSamplesRequest {
            dataset_id: dataset_id.to_owned(),
            samples: batch,
        });
    }
    batches
}

/// The server's error about an import with each `samples[N].field` (N counts samples
/// across the whole stream) turned into `<file>:<line>: field`.
pub(crate) fn locate_error(err: &anyhow::Error, source: &str, lines: &[usize]) -> anyhow::Error {
    anyhow!(locate(&err.to_string(), source, lines))
}

fn locate(text: &str, source: &str, lines: &[usize]) -> String {
    const MARK: &str = "samples[";
    let mut located = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        located.push_str(&rest[..at]);
        let after = &rest[at + MARK.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let line = after[..digits]
            .parse::<usize>()
            .ok()
            .and_then(|index| lines.get(index))
            .filter(|_| after[digits..].starts_with(']'));
        match line {
            Some(line) => {
                let tail = &after[digits + 1..];
                match tail.strip_prefix('.') {
                    Some(field) => {
                        located.push_str(&format!("{source}:{line}: "));
                        rest = field;
                    }
                    None => {
                        located.push_str(&format!("{source}:{line}"));
                        rest = tail;
                    }
                }
            }
            None => {
                located.push_str(MARK);
                rest = after;
            }
        }
    }
    located.push_str(rest);
    located
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample(id: &str) -> pb::Sample {
        pb::Sample {
            id: id.to_owned(),
            input: Some(value_from_json(&json!("x"))),
            ..Default::default()
        }
    }

    #[test]
    fn the_extension_names_the_format() {
        assert_eq!(format_of(Path::new("a/b.JSONL")), Some(FormatArg::Jsonl));
        assert_eq!(format_of(Path::new("b.ndjson")), Some(FormatArg::Jsonl));
        assert_eq!(format_of(Path::new("b.csv")), Some(FormatArg::Csv));
        assert_eq!(format_of(Path::new("b.json")), None);
        assert_eq!(format_of(Path::new("b")), None);
        let err = read(Path::new("data.txt"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot tell the format of data.txt from its name: use --format jsonl or --format csv"
        );
    }

    #[test]
    fn a_file_is_read_in_the_format_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.txt");
        std::fs::write(&path, "input,x\nhello,1\n").unwrap();
        let source = read(&path, Some(FormatArg::Csv)).unwrap();
        assert_eq!(source.samples.len(), 1);
        assert_eq!(source.samples[0].line, 2);
        let empty = dir.path().join("empty.jsonl");
        std::fs::write(&empty, "\n\n").unwrap();
        let err = read(&empty, None).unwrap_err().to_string();
        assert!(err.ends_with("empty.jsonl holds no samples"), "{err}");
    }

    #[test]
    fn problems_are_capped_and_counted() {
        let mut problems = Problems::new("f.jsonl");
        for line in 1..=MAX_SHOWN + 2 {
            problems.add(line, "input: missing");
        }
        let text = problems.finish(()).unwrap_err().to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), MAX_SHOWN + 1);
        assert_eq!(lines[0], "f.jsonl:1: input: missing");
        assert_eq!(lines[MAX_SHOWN], "(and 2 more problems)");
        assert_eq!(Problems::new("f").finish(7).unwrap(), 7);
    }

    #[test]
    fn a_repeated_id_names_both_lines() {
        let samples = vec![
            ParsedSample {
                line: 2,
                sample: sample("a"),
            },
            ParsedSample {
                line: 3,
                sample: sample(""),
            },
            ParsedSample {
                line: 4,
                sample: sample(""),
            },
            ParsedSample {
                line: 9,
                sample: sample("a"),
            },
        ];
        let mut problems = Problems::new("d.csv");
        check_unique_ids(&mut problems, &samples);
        assert_eq!(
            problems.finish(()).unwrap_err().to_string(),
            "d.csv:9: id: \"a\" is also on line 2"
        );
    }

    #[test]
    fn batches_hold_at_most_1000_samples_and_a_megabyte() {
        let samples: Vec<pb::Sample> = (0..2500).map(|i| sample(&i.to_string())).collect();
        let batches = batches("ds", samples);
        let sizes: Vec<usize> = batches.iter().map(|b| b.samples.len()).collect();
        assert_eq!(sizes, vec![1000, 1000, 500]);
        assert!(batches.iter().all(|b| b.dataset_id == "ds"));
        assert_eq!(batches[1].samples[0].id, "1000");

        let big = |id: &str| pb::Sample {
            context: "c".repeat(400 * 1024),
            ..sample(id)
        };
        let batches = super::batches("ds", vec![big("a"), big("b"), big("c"), big("d")]);
        let sizes: Vec<usize> = batches.iter().map(|b| b.samples.len()).collect();
        assert_eq!(sizes, vec![2, 2]);
        assert!(super::batches("ds", Vec::new()).is_empty());
    }

    #[test]
    fn server_errors_point_at_file_lines() {
        let lines = [3, 5, 17];
        assert_eq!(
            locate(
                "INVALID_ARGUMENT\n  samples[2].input: is required\n  samples[0].id: bad",
                "data.jsonl",
                &lines
            ),
            "INVALID_ARGUMENT\n  data.jsonl:17: input: is required\n  data.jsonl:3: id: bad"
        );
        assert_eq!(
            locate(
                "ALREADY_EXISTS: samples[1].id: dataset d already has a sample \"x\"",
                "d.csv",
                &lines
            ),
            "ALREADY_EXISTS: d.csv:5: id: dataset d already has a sample \"x\""
        );
        // Out of range or malformed references are left alone.
        assert_eq!(
            locate("samples[9].id; samples[x]; samples[1]", "f", &lines),
            "samples[9].id; samples[x]; f:5"
        );
    }
}
