//! `llmops dataset ...`: the client commands of the evaluation service's datasets.
//!
//! The pieces: the arguments here, the calls in `commands`, sample files in `samples`
//! (what JSONL and CSV share: the parsed sample, problems that point at file lines,
//! batching) with the two formats in `jsonl` and `csv_file`, printing in `format`
//! (tables and summaries) and `json` (JSON).

mod commands;
mod csv_file;
mod format;
mod jsonl;
mod samples;

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::ClientOptions;
use crate::pb;

/// Manage evaluation datasets: create them, import and export their samples (JSONL or
/// CSV), list, inspect and delete them. Every change to a dataset's samples makes a new
/// version with its own content hash.
#[derive(Args, Debug, Clone)]
pub struct DatasetArgs {
    /// What to do.
    #[command(subcommand)]
    command: DatasetCommand,
}

/// The `llmops dataset` subcommands.
#[derive(Subcommand, Debug, Clone)]
enum DatasetCommand {
    /// Create an empty dataset (version 1).
    Create {
        /// The dataset's unique name.
        #[arg(value_name = "NAME")]
        name: String,
        /// Free text about the dataset.
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// What the dataset is for [default: golden].
        #[arg(long = "type", value_enum, value_name = "TYPE")]
        dataset_type: Option<TypeArg>,
        /// The dataset's id (default: generated). Letters, digits and `._:/-`.
        #[arg(long, value_name = "ID")]
        id: Option<String>,
        /// A metadata entry (repeatable).
        #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
        metadata: Vec<(String, String)>,
    },
    /// List datasets, newest first.
    List {
        /// Only datasets of this type.
        #[arg(long = "type", value_enum, value_name = "TYPE")]
        dataset_type: Option<TypeArg>,
        /// Show at most this many datasets.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
    },
    /// Show one dataset: type, sample count, version, content hash and times.
    Get {
        /// The dataset's id.
        #[arg(value_name = "ID")]
        dataset_id: String,
    },
    /// Delete a dataset and all its samples.
    Delete {
        /// The dataset's id.
        #[arg(value_name = "ID")]
        dataset_id: String,
    },
    /// Import samples from a JSONL or CSV file as one new version.
    ///
    /// JSONL: one JSON object per line with `input` (a string, or an object of template
    /// variables; required) and optionally `id` (default: generated),
    /// `expected_output`, `context` (strings) and `metadata` (an object of strings).
    /// Other keys are refused; blank lines are skipped.
    ///
    /// CSV: a header row, then one sample per row. Columns `id`, `input` (a string) or
    /// `input_json` (JSON: a string or an object), `expected_output` and `context`; any
    /// other column `x` becomes metadata `x` (empty cells are left out).
    ///
    /// The whole file is checked before anything is sent; problems name the file line
    /// (`data.jsonl:17: input: missing`). Nothing changes unless every sample is
    /// accepted.
    Import {
        /// The dataset's id.
        #[arg(value_name = "ID")]
        dataset_id: String,
        /// The file: `.jsonl`/`.ndjson` or `.csv`; `-` reads JSONL from stdin.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The file's format, whatever its name.
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<FormatArg>,
    },
    /// Write a dataset's samples as JSONL (which `import` reads back) or CSV.
    ///
    /// CSV has the columns `id`, `input` (`input_json` when an input is an object),
    /// `expected_output`, `context`, then one column per metadata key.
    #[command(disable_version_flag = true)]
    Export {
        /// The dataset's id.
        #[arg(value_name = "ID")]
        dataset_id: String,
        /// An earlier version to export (default: the current one).
        #[arg(long, value_name = "V", value_parser = clap::value_parser!(u64).range(1..))]
        version: Option<u64>,
        /// The output format.
        #[arg(long, value_enum, value_name = "FORMAT", default_value_t = FormatArg::Jsonl)]
        format: FormatArg,
        /// Write to this file instead of stdout (replaced only once the export is
        /// complete).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// List the samples of the current version, in the order they were added.
    Samples {
        /// The dataset's id.
        #[arg(value_name = "ID")]
        dataset_id: String,
        /// Show at most this many samples.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
    },
    /// Delete samples by id as one new version; an unknown id deletes nothing.
    DeleteSamples {
        /// The dataset's id.
        #[arg(value_name = "ID")]
        dataset_id: String,
        /// The ids of the samples to delete.
        #[arg(value_name = "SAMPLE_ID", required = true)]
        sample_ids: Vec<String>,
    },
}

/// Dataset types as command-line values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TypeArg {
    /// Curated reference answers.
    Golden,
    /// Cases that once failed and must keep passing.
    Regression,
    /// A standard benchmark.
    Benchmark,
    /// Collected from users.
    User,
}

impl From<TypeArg> for pb::DatasetType {
    fn from(value: TypeArg) -> Self {
        match value {
            TypeArg::Golden => Self::Golden,
            TypeArg::Regression => Self::Regression,
            TypeArg::Benchmark => Self::Benchmark,
            TypeArg::User => Self::User,
        }
    }
}

/// Sample file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
}

/// Parses a `KEY=VALUE` metadata entry (the value may itself contain `=`).
fn parse_meta(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// Runs a `llmops dataset` subcommand against the server in `options`.
pub async fn run(args: DatasetArgs, options: &ClientOptions) -> anyhow::Result<()> {
    commands::run(args.command, options).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::testing::{self, assert_refused};

    /// `llmops dataset <args>...` parsed as the binary does.
    fn parse(args: &[&str]) -> Result<DatasetCommand, clap::Error> {
        testing::parse::<DatasetArgs>("dataset", args).map(|args| args.command)
    }

    #[test]
    fn the_command_tree_is_consistent() {
        testing::command::<DatasetArgs>("dataset").debug_assert();
    }

    #[test]
    fn create_takes_a_type_an_id_and_metadata() {
        let DatasetCommand::Create {
            name,
            description,
            dataset_type,
            id,
            metadata,
        } = parse(&[
            "create",
            "qa",
            "--type",
            "regression",
            "--id",
            "qa-1",
            "--meta",
            "owner=me",
            "--meta",
            "q=a=b",
        ])
        .unwrap()
        else {
            panic!("not create")
        };
        assert_eq!((name.as_str(), id.as_deref()), ("qa", Some("qa-1")));
        assert_eq!(description, None);
        assert_eq!(dataset_type, Some(TypeArg::Regression));
        assert_eq!(
            metadata,
            vec![("owner".into(), "me".into()), ("q".into(), "a=b".into())]
        );
        assert_refused(parse(&["create", "qa", "--type", "gold"]), "--type");
        assert_refused(parse(&["create", "qa", "--meta", "novalue"]), "--meta");
        assert_refused(parse(&["create", "qa", "--meta", "=v"]), "--meta");
    }

    #[test]
    fn export_takes_a_version_a_format_and_a_file() {
        let DatasetCommand::Export {
            dataset_id,
            version,
            format,
            output,
        } = parse(&[
            "export",
            "ds",
            "--version",
            "3",
            "--format",
            "csv",
            "-o",
            "out.csv",
        ])
        .unwrap()
        else {
            panic!("not export")
        };
        assert_eq!(dataset_id, "ds");
        assert_eq!(version, Some(3));
        assert_eq!(format, FormatArg::Csv);
        assert_eq!(output, Some(PathBuf::from("out.csv")));
        let DatasetCommand::Export { format, output, .. } = parse(&["export", "ds"]).unwrap()
        else {
            panic!("not export")
        };
        assert_eq!((format, output), (FormatArg::Jsonl, None));
        assert_refused(parse(&["export", "ds", "--version", "0"]), "--version");
    }

    #[test]
    fn import_reads_a_file_or_stdin() {
        let DatasetCommand::Import {
            dataset_id,
            file,
            format,
        } = parse(&["import", "ds", "-", "--format", "jsonl"]).unwrap()
        else {
            panic!("not import")
        };
        assert_eq!(dataset_id, "ds");
        assert_eq!(file, PathBuf::from("-"));
        assert_eq!(format, Some(FormatArg::Jsonl));
        assert_refused(parse(&["import", "ds"]), "<FILE>");
    }

    #[test]
    fn delete_samples_needs_at_least_one_id() {
        let DatasetCommand::DeleteSamples {
            dataset_id,
            sample_ids,
        } = parse(&["delete-samples", "ds", "a", "b"]).unwrap()
        else {
            panic!("not delete-samples")
        };
        assert_eq!(dataset_id, "ds");
        assert_eq!(sample_ids, vec!["a", "b"]);
        assert_refused(parse(&["delete-samples", "ds"]), "<");
    }

    #[test]
    fn list_filters_by_type_and_limits() {
        let DatasetCommand::List {
            dataset_type,
            limit,
        } = parse(&["list", "--type", "user", "--limit", "5", "--json"]).unwrap()
        else {
            panic!("not list")
        };
        assert_eq!(dataset_type, Some(TypeArg::User));
        assert_eq!(limit, Some(5));
        assert_refused(parse(&["list", "--limit", "0"]), "--limit");
    }
}
