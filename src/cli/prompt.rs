//! `llmops prompt ...`: the prompt registry's client commands.
//!
//! The pieces: the arguments here, the calls in `commands`, file-to-protobuf conversion in
//! `convert`, `--var` parsing and coercion in `vars`, and printing in `output` (tables)
//! and `json` (JSON).

mod commands;
mod convert;
mod output;
mod vars;

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::ClientOptions;

/// Manage prompt templates: create versions, activate and label them, render and diff.
#[derive(Args, Debug, Clone)]
pub struct PromptArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: PromptCommand,
}

/// The `llmops prompt` subcommands.
///
/// Those with a `version` argument disable the `--version` flag the binary propagates to
/// every subcommand (the two would clash).
#[derive(Subcommand, Debug, Clone)]
pub enum PromptCommand {
    /// Create a prompt version from a YAML or JSON file.
    ///
    /// The file holds `name`, `version` (semver), `template` and/or `messages`
    /// (`role`, `template`), and optionally `variables` (`name`, `type`: string, int,
    /// float, bool, list/array or object, `required`, `default_value`, `description`,
    /// `validation`), `model_config` (`model`, `parameters`), `tags`, `metadata`,
    /// `author`, `description` and `commit_message`.
    Create {
        /// The file: `.yaml`/`.yml` or `.json` (other names: JSON if it parses, else YAML).
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Show one version: the active one, or the one given by --version or --label.
    #[command(disable_version_flag = true)]
    Get {
        /// The prompt's name.
        name: String,
        /// Which version.
        #[command(flatten)]
        selector: Selector,
    },
    /// Show the version with the highest semver precedence (pre-releases only when there
    /// is nothing else).
    Latest {
        /// The prompt's name.
        name: String,
    },
    /// List every prompt with its active and latest version, version count and labels.
    List {
        /// Show at most this many prompts.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
    },
    /// List the versions of one prompt (newest first), or of every prompt.
    Versions {
        /// The prompt's name; without it, every prompt's versions.
        name: Option<String>,
        /// Show at most this many versions.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
    },
    /// Make a version the active one.
    #[command(disable_version_flag = true)]
    Activate {
        /// The prompt's name.
        name: String,
        /// The version to make active.
        version: String,
        /// Bypass the release gate on `active`, saying why (recorded in the label
        /// history).
        #[arg(long)]
        override_reason: Option<String>,
    },
    /// Set, move or delete labels (named pointers to versions).
    Label {
        /// What to do with the label.
        #[command(subcommand)]
        command: LabelCommand,
    },
    /// Delete one version, or with --all the whole prompt.
    ///
    /// The active version and labelled versions cannot be deleted: activate another
    /// version or move the labels first.
    #[command(disable_version_flag = true)]
    Delete {
        /// The prompt's name.
        name: String,
        /// The version to delete.
        #[arg(required_unless_present = "all")]
        version: Option<String>,
        /// Delete the whole prompt: every version, label and the active pointer.
        #[arg(long, conflicts_with = "version")]
        all: bool,
    },
    /// Render a version with variables and print the result.
    ///
    /// `--var` values are strings converted to each variable's declared type (int,
    /// float and bool are parsed; list and object are parsed as JSON). `--vars-file`
    /// values keep their JSON/YAML types; `--var` overrides them.
    #[command(disable_version_flag = true)]
    Render {
        /// The prompt's name.
        name: String,
        /// Which version (default: the active one).
        #[command(flatten)]
        selector: Selector,
        /// A variable's value (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = vars::parse_assignment)]
        vars: Vec<(String, String)>,
        /// A JSON or YAML file with an object of variable values.
        #[arg(long, value_name = "FILE")]
        vars_file: Option<PathBuf>,
        /// The end user: while an experiment serves the label, render the user's
        /// variant's version (and say which, on stderr).
        #[arg(long, value_name = "USER")]
        user: Option<String>,
    },
    /// Show how two versions differ: a unified diff and the variable changes.
    Diff {
        /// The prompt's name.
        name: String,
        /// The older version.
        from: String,
        /// The newer version.
        to: String,
    },
    /// Follow registry changes, one line per event, until interrupted.
    ///
    /// Without --after, first prints a snapshot of the current state (a `snapshot` event
    /// per version, then `snapshot-end`). To resume, pass the last sequence seen.
    Watch {
        /// Only this prompt's events.
        name: Option<String>,
        /// Replay the events after this sequence instead of starting with a snapshot.
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
    },
}

/// The `llmops prompt label` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum LabelCommand {
    /// Point a label at a version, creating or moving it.
    #[command(disable_version_flag = true)]
    Set {
        /// The prompt's name.
        name: String,
        /// The label (not `active`, which always means the active version).
        label: String,
        /// The version the label should point at.
        version: String,
        /// Bypass the label's release gate, saying why (recorded in the label history).
        #[arg(long)]
        override_reason: Option<String>,
    },
    /// Remove a label.
    Delete {
        /// The prompt's name.
        name: String,
        /// The label to remove.
        label: String,
    },
    /// Show every move of a prompt's pointers, oldest first: activations, label moves
    /// and deletions, with the version before and any release gate override's reason.
    History {
        /// The prompt's name.
        name: String,
        /// Only this label (`active` for activations).
        #[arg(long)]
        label: Option<String>,
    },
}

/// Which version of a prompt: an exact version, a label, or (neither) the active one.
#[derive(Args, Debug, Clone, Default)]
pub struct Selector {
    /// An exact version, e.g. `1.2.0`.
    #[arg(long, value_name = "VERSION", conflicts_with = "label")]
    pub version: Option<String>,
    /// A label, e.g. `production` (`active` means the active version).
    #[arg(long, value_name = "LABEL")]
    pub label: Option<String>,
}

/// Runs a `llmops prompt` subcommand against the server in `options`.
pub async fn run(args: PromptArgs, options: &ClientOptions) -> anyhow::Result<()> {
    commands::run(args.command, options).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::testing::{self, assert_refused};

    /// `llmops prompt <args>...` parsed as the binary does.
    fn parse(args: &[&str]) -> Result<PromptCommand, clap::Error> {
        testing::parse::<PromptArgs>("prompt", args).map(|args| args.command)
    }

    #[test]
    fn the_command_tree_is_consistent() {
        testing::command::<PromptArgs>("prompt").debug_assert();
    }

    #[test]
    fn get_takes_a_version_or_a_label_but_not_both() {
        let PromptCommand::Get { name, selector } =
            parse(&["get", "greet", "--version", "1.0.0"]).unwrap()
        else {
            panic!("not get")
        };
        assert_eq!(name, "greet");
        assert_eq!(selector.version.as_deref(), Some("1.0.0"));
        assert_refused(
            parse(&["get", "greet", "--version", "1.0.0", "--label", "prod"]),
            "--label",
        );
    }

    #[test]
    fn render_collects_vars() {
        let PromptCommand::Render { vars, .. } = parse(&[
            "render", "greet", "--var", "a=1", "--var", "b=x=y", "--label", "prod",
        ])
        .unwrap() else {
            panic!("not render")
        };
        assert_eq!(
            vars,
            vec![("a".into(), "1".into()), ("b".into(), "x=y".into())]
        );
        assert_refused(parse(&["render", "greet", "--var", "novalue"]), "--var");
    }

    #[test]
    fn deleting_a_whole_prompt_needs_all() {
        assert_refused(parse(&["delete", "greet"]), "<VERSION>");
        assert_refused(parse(&["delete", "greet", "1.0.0", "--all"]), "--all");
        assert!(matches!(
            parse(&["delete", "greet", "--all"]).unwrap(),
            PromptCommand::Delete {
                all: true,
                version: None,
                ..
            }
        ));
        assert!(matches!(
            parse(&["delete", "greet", "1.0.0"]).unwrap(),
            PromptCommand::Delete {
                all: false,
                version: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn client_options_are_global() {
        let matches = testing::command::<PromptArgs>("prompt")
            .try_get_matches_from(["llmops", "prompt", "list", "--json", "--server", "h:1"])
            .unwrap();
        let client = <ClientOptions as clap::FromArgMatches>::from_arg_matches(&matches).unwrap();
        assert!(client.json);
        assert_eq!(client.server, "h:1");
    }
}
