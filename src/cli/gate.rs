//! `llmops gate ...`: release gates. A gate on a prompt's label (or on `active`, its
//! active version) lets the label move only to a version that passed its evaluation.

use std::io::{self, Write};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::cli::output::number;
use crate::cli::output::{self, emit, table, write_table, yes_no};
use crate::cli::paging::collect_pages;
use crate::cli::values::rfc3339;
use crate::cli::{connect, status_error, ClientOptions};
use crate::pb;
use crate::pb::evaluation_service_client::EvaluationServiceClient;

/// Guard prompt labels with release gates: a gated label (or the active version) only
/// moves to a version whose evaluation run passed.
#[derive(Args, Debug, Clone)]
pub struct GateArgs {
    /// What to do.
    #[command(subcommand)]
    command: GateCommand,
}

/// The `llmops gate` subcommands.
#[derive(Subcommand, Debug, Clone)]
enum GateCommand {
    /// Create or replace the gate of a prompt's label, and print it.
    ///
    /// Then moving LABEL to a version (`llmops prompt label set`; `llmops prompt
    /// activate` for `active`) is refused unless a completed run of exactly that version,
    /// on the dataset at its current version and with the model, reached the minimum pass
    /// rate (and, with `--no-regression`, did not fall more than 5 points below the pass
    /// rate of the version the label points to now). `--override-reason` on those commands bypasses the gate
    /// and is recorded in the label history.
    Set(SetArgs),
    /// Show the gate of a prompt's label.
    Show(GatedLabel),
    /// List gates, by prompt name then label (all of them, page after page).
    List {
        /// Only this prompt's gates.
        #[arg(long = "prompt", value_name = "NAME")]
        prompt_name: Option<String>,
    },
    /// Remove the gate of a prompt's label; the label moves freely again.
    Delete(GatedLabel),
}

/// The label a gate guards.
#[derive(Args, Debug, Clone)]
struct GatedLabel {
    /// The prompt's name.
    #[arg(value_name = "PROMPT")]
    prompt_name: String,
    /// The label (`production`); `active` for the prompt's active version.
    #[arg(value_name = "LABEL")]
    label: String,
}

/// `gate set`: the label and what a version must pass.
#[derive(Args, Debug, Clone)]
struct SetArgs {
    #[command(flatten)]
    target: GatedLabel,
    /// The dataset the version must be evaluated on (at the dataset's current version).
    #[arg(long = "dataset", value_name = "ID")]
    dataset_id: String,
    /// The model the run must have used: a configured provider entry, or `echo`.
    #[arg(long, value_name = "NAME")]
    model: String,
    /// The pass rate the run must reach, from 0 to 1 (`0.9` for 90%).
    #[arg(
        long,
        value_name = "RATE",
        value_parser = parse_pass_rate,
        allow_negative_numbers = true
    )]
    min_pass_rate: f64,
    /// Also refuse a version whose pass rate is more than 5 points below that of the
    /// version the label points to now (same dataset version and model).
    #[arg(long)]
    no_regression: bool,
}

impl SetArgs {
    /// The gate these flags describe, as `SetReleaseGate` takes it.
    fn into_gate(self) -> pb::ReleaseGate {
        pb::ReleaseGate {
            prompt_name: self.target.prompt_name,
            label: self.target.label,
            dataset_id: self.dataset_id,
            model: self.model,
            min_pass_rate: self.min_pass_rate,
            no_regression: self.no_regression,
            ..Default::default()
        }
    }
}

/// Parses `--min-pass-rate`: a share from 0 to 1.
fn parse_pass_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "expected a pass rate from 0 to 1 (0.9 for 90%), got {text:?}"
        )),
    }
}

type Client = EvaluationServiceClient<crate::cli::Connection>;

/// Runs a `llmops gate` subcommand against the server in `options`.
pub async fn run(args: GateArgs, options: &ClientOptions) -> anyhow::Result<()> {
    execute(args.command, options).await
}

async fn execute(command: GateCommand, options: &ClientOptions) -> anyhow::Result<()> {
    let as_json = options.json;
    let mut client = EvaluationServiceClient::new(connect(options).await?);
    let gate = match command {
        GateCommand::Set(set) => {
            client
                .set_release_gate(pb::SetReleaseGateRequest {
                    gate: Some(set.into_gate()),
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .gate
        }
        GateCommand::Show(GatedLabel { prompt_name, label }) => {
            client
                .get_release_gate(pb::GetReleaseGateRequest { prompt_name, label })
                .await
                .map_err(status_error)?
                .into_inner()
                .gate
        }
        GateCommand::List { prompt_name } => {
            let gates = list(&client, prompt_name.unwrap_or_default()).await?;
            return if as_json {
                emit(|out| output::messages(out, &gates))
            } else {
                emit(|out| gate_table(out, &gates))
            };
        }
        GateCommand::Delete(GatedLabel { prompt_name, label }) => {
            client
                .delete_release_gate(pb::DeleteReleaseGateRequest {
                    prompt_name: prompt_name.clone(),
                    label: label.clone(),
                })
                .await
                .map_err(status_error)?;
            return if as_json {
                let value = json!({"prompt_name": prompt_name, "label": label, "deleted": true});
                emit(|out| output::json(out, &value))
            } else {
                emit(|out| writeln!(out, "deleted the gate of {prompt_name} label {label}"))
            };
        }
    };
    let gate = gate.context("the server sent no gate")?;
    if as_json {
        emit(|out| output::message(out, &gate))
    } else {
        emit(|out| gate_details(out, &gate))
    }
}

/// Every gate (of one prompt when `prompt_name` is not empty), following the pages.
async fn list(client: &Client, prompt_name: String) -> anyhow::Result<Vec<pb::ReleaseGate>> {
    collect_pages(None, |page_size, page_token| {
        let mut client = client.clone();
        let prompt_name = prompt_name.clone();
        async move {
            let page = client
                .list_release_gates(pb::ListReleaseGatesRequest {
                    prompt_name,
                    page_size,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((page.gates, page.next_page_token))
        }
    })
    .await
}

/// One gate as `key: value` lines.
fn gate_details(out: &mut dyn Write, g: &pb::ReleaseGate) -> io::Result<()> {
    let mut fields = table(&[]);
    for (key, value) in [
        ("prompt", g.prompt_name.clone()),
        ("label", g.label.clone()),
        ("dataset", g.dataset_id.clone()),
        ("model", g.model.clone()),
        ("min pass rate", number(g.min_pass_rate)),
        ("no regression", yes_no(g.no_regression).to_owned()),
        ("created", rfc3339(g.created_at.as_ref())),
        ("updated", rfc3339(g.updated_at.as_ref())),
    ] {
        if !value.is_empty() {
            fields.add_row(vec![format!("{key}:"), value]);
        }
    }
    write_table(out, fields)
}

/// The `list` table.
fn gate_table(out: &mut dyn Write, gates: &[pb::ReleaseGate]) -> io::Result<()> {
    let mut rows = table(&[
        "PROMPT",
        "LABEL",
        "DATASET",
        "MODEL",
        "MIN PASS RATE",
        "NO REGRESSION",
        "UPDATED",
    ]);
    for g in gates {
        rows.add_row(vec![
            g.prompt_name.clone(),
            g.label.clone(),
            g.dataset_id.clone(),
            g.model.clone(),
            number(g.min_pass_rate),
            yes_no(g.no_regression).to_owned(),
            rfc3339(g.updated_at.as_ref()),
        ]);
    }
    write_table(out, rows)
}

#[cfg(test)]
mod tests {
    use prost_types::Timestamp;

    use super::*;
    use crate::cli::testing::assert_refused;
    use crate::cli::testing::{self, text};

    fn parse(args: &[&str]) -> Result<GateCommand, clap::Error> {
        testing::parse::<GateArgs>("gate", args).map(|args| args.command)
    }

    fn gate() -> pb::ReleaseGate {
        pb::ReleaseGate {
            prompt_name: "greet".into(),
            label: "production".into(),
            dataset_id: "qa".into(),
            model: "echo".into(),
            min_pass_rate: 0.9,
            no_regression: true,
            updated_at: Some(Timestamp {
                seconds: 1_767_323_045,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_command_tree_is_consistent() {
        testing::command::<GateArgs>("gate").debug_assert();
    }

    #[test]
    fn set_builds_the_gate() {
        let GateCommand::Set(set) = parse(&[
            "set",
            "greet",
            "production",
            "--dataset",
            "qa",
            "--model",
            "echo",
            "--min-pass-rate",
            "0.9",
            "--no-regression",
        ])
        .unwrap() else {
            panic!("not set")
        };
        let mut expected = gate();
        expected.updated_at = None;
        assert_eq!(set.into_gate(), expected);
        let GateCommand::Set(set) = parse(&[
            "set",
            "greet",
            "active",
            "--dataset",
            "qa",
            "--model",
            "echo",
            "--min-pass-rate",
            "1",
        ])
        .unwrap() else {
            panic!("not set")
        };
        let gate = set.into_gate();
        assert_eq!((gate.label.as_str(), gate.min_pass_rate), ("active", 1.0));
        assert!(!gate.no_regression);
    }

    #[test]
    fn set_needs_everything_and_a_rate_from_0_to_1() {
        let base = [
            "set",
            "greet",
            "production",
            "--dataset",
            "qa",
            "--model",
            "echo",
        ];
        let with = |extra: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            parse(&args)
        };
        assert_refused(with(&[]), "--min-pass-rate");
        assert!(with(&["--min-pass-rate", "0"]).is_ok());
        for bad in ["90", "-0.1", "1.5", "NaN", "high"] {
            let err = with(&["--min-pass-rate", bad]).unwrap_err().to_string();
            assert!(err.contains("expected a pass rate from 0 to 1"), "{err}");
        }
        assert_refused(parse(&["set", "greet", "--dataset", "qa"]), "<");
    }

    #[test]
    fn show_list_and_delete_take_a_prompt_and_a_label() {
        let GateCommand::Show(target) = parse(&["show", "greet", "production"]).unwrap() else {
            panic!("not show")
        };
        assert_eq!(
            (target.prompt_name.as_str(), target.label.as_str()),
            ("greet", "production")
        );
        assert!(matches!(
            parse(&["delete", "greet", "active"]).unwrap(),
            GateCommand::Delete(GatedLabel { label, .. }) if label == "active"
        ));
        assert_refused(parse(&["show", "greet"]), "<LABEL>");
        assert_refused(parse(&["delete", "greet"]), "<LABEL>");
        assert!(matches!(
            parse(&["list", "--prompt", "greet", "--json"]).unwrap(),
            GateCommand::List { prompt_name: Some(name) } if name == "greet"
        ));
        assert!(matches!(
            parse(&["list"]).unwrap(),
            GateCommand::List { prompt_name: None }
        ));
    }

    #[test]
    fn a_gate_prints_as_lines_and_a_table() {
        let out = text(|out| gate_details(out, &gate()));
        assert_eq!(
            out,
            "prompt:         greet\nlabel:          production\ndataset:        qa\n\
             model:          echo\nmin pass rate:  0.9\nno regression:  yes\n\
             updated:        2026-01-02T03:04:05Z\n"
        );
        let out = text(|out| gate_table(out, &[gate()]));
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("PROMPT  LABEL"), "{out}");
        assert_eq!(
            lines[1],
            "greet   production  qa       echo   0.9            yes            2026-01-02T03:04:05Z"
        );
    }
}
