//! `llmops alerts ...`: list, inspect, acknowledge and resolve alerts, and `tail` the
//! alert stream, which reconnects by itself and resumes from the last sequence it
//! printed (kept in a local state file), so nothing is missed across restarts of either
//! side.

mod format;
mod tail;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};

use crate::cli::output::emit;
use crate::cli::{connect, status_error, ClientOptions};
use crate::pb;
use crate::pb::alert_service_client::AlertServiceClient;

/// `llmops alerts`.
#[derive(Debug, Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    command: AlertsCommand,
}

#[derive(Debug, Subcommand)]
enum AlertsCommand {
    /// List alerts, newest first.
    List(ListArgs),
    /// Show one alert.
    Get {
        /// The alert's id.
        alert_id: String,
    },
    /// Acknowledge an open alert.
    Ack {
        /// The alert's id.
        alert_id: String,
        /// Who takes it [default: $USER].
        #[arg(long = "by")]
        acknowledged_by: Option<String>,
        /// A comment.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Resolve an alert.
    Resolve {
        /// The alert's id.
        alert_id: String,
    },
    /// Follow the alert stream; reconnects and resumes by itself.
    Tail(tail::TailArgs),
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only these types (repeatable).
    #[arg(long = "type", value_enum)]
    types: Vec<TypeArg>,
    /// Only these severities (repeatable).
    #[arg(long = "severity", value_enum)]
    severities: Vec<SeverityArg>,
    /// Only these statuses (repeatable).
    #[arg(long = "status", value_enum)]
    statuses: Vec<StatusArg>,
    /// Only alerts from this source.
    #[arg(long)]
    source: Option<String>,
    /// Only alerts about this source id.
    #[arg(long)]
    source_id: Option<String>,
    /// Only alerts nobody has acknowledged.
    #[arg(long)]
    unacked: bool,
    /// Only alerts created at or after this RFC 3339 time.
    #[arg(long)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// At most this many alerts.
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

/// Alert types as command-line values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum TypeArg {
    /// Quality dropped.
    Regression,
    /// A threshold was crossed.
    Threshold,
    /// Something unusual.
    Anomaly,
    /// An experiment needs attention.
    Experiment,
}

/// Severities as command-line values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SeverityArg {
    /// For information.
    Info,
    /// Needs a look.
    Warning,
    /// Needs action now.
    Critical,
}

/// Statuses as command-line values.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum StatusArg {
    Firing,
    Acknowledged,
    Resolved,
}

impl From<TypeArg> for pb::AlertType {
    fn from(value: TypeArg) -> Self {
        match value {
            TypeArg::Regression => Self::Regression,
            TypeArg::Threshold => Self::Threshold,
            TypeArg::Anomaly => Self::Anomaly,
            TypeArg::Experiment => Self::Experiment,
        }
    }
}

impl From<SeverityArg> for pb::AlertSeverity {
    fn from(value: SeverityArg) -> Self {
        match value {
            SeverityArg::Info => Self::Info,
            SeverityArg::Warning => Self::Warning,
            SeverityArg::Critical => Self::Critical,
        }
    }
}

impl From<StatusArg> for pb::AlertStatus {
    fn from(value: StatusArg) -> Self {
        match value {
            StatusArg::Firing => Self::Firing,
            StatusArg::Acknowledged => Self::Acknowledged,
            StatusArg::Resolved => Self::Resolved,
        }
    }
}

/// Runs an `llmops alerts` command.
pub async fn run(args: AlertsArgs, options: &ClientOptions) -> anyhow::Result<()> {
    if let AlertsCommand::Tail(tail) = args.command {
        return tail::run(tail, options).await;
    }
    let mut client = AlertServiceClient::new(connect(options).await?);
    match args.command {
        AlertsCommand::List(list) => {
            let alerts = list_alerts(&mut client, list).await?;
            if options.json {
                emit(|out| crate::cli::output::messages(out, &alerts))
            } else {
                emit(|out| format::alert_table(out, &alerts))
            }
        }
        AlertsCommand::Get { alert_id } => {
            let response = client
                .get_alert(pb::GetAlertRequest { alert_id })
                .await
                .map_err(status_error)?;
            print_alert(options.json, response.into_inner().alert)
        }
        AlertsCommand::Ack {
            alert_id,
            acknowledged_by,
            comment,
        } => {
            let acknowledged_by = acknowledged_by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_default();
            let request = pb::AcknowledgeAlertRequest {
                alert_id,
                acknowledged_by,
                comment,
            };
            let response = client
                .acknowledge_alert(request)
                .await
                .map_err(status_error)?;
            print_alert(options.json, response.into_inner().alert)
        }
        AlertsCommand::Resolve { alert_id } => {
            let response = client
                .resolve_alert(pb::ResolveAlertRequest { alert_id })
                .await
                .map_err(status_error)?;
            print_alert(options.json, response.into_inner().alert)
        }
        AlertsCommand::Tail(_) => unreachable!("handled above"),
    }
}

async fn list_alerts(
    client: &mut AlertServiceClient<crate::cli::Connection>,
    args: ListArgs,
) -> anyhow::Result<Vec<pb::Alert>> {
    let mut alerts = Vec::new();
    let mut page_token = String::new();
    loop {
        let remaining = args.limit as usize - alerts.len();
        let request = pb::ListAlertsRequest {
            types: args
                .types
                .iter()
                .map(|t| pb::AlertType::from(*t).into())
                .collect(),
            severities: args
                .severities
                .iter()
                .map(|s| pb::AlertSeverity::from(*s).into())
                .collect(),
            statuses: args
                .statuses
                .iter()
                .map(|s| pb::AlertStatus::from(*s).into())
                .collect(),
            source: args.source.clone().unwrap_or_default(),
            source_id: args.source_id.clone().unwrap_or_default(),
            unacknowledged_only: args.unacked,
            since: args.since.map(crate::grpc::convert::timestamp),
            until: None,
            page_size: remaining.min(1000) as i32,
            page_token,
        };
        let page = client
            .list_alerts(request)
            .await
            .map_err(status_error)?
            .into_inner();
        alerts.extend(page.alerts);
        if page.next_page_token.is_empty() || alerts.len() >= args.limit as usize {
            return Ok(alerts);
        }
        page_token = page.next_page_token;
    }
}

fn print_alert(as_json: bool, alert: Option<pb::Alert>) -> anyhow::Result<()> {
    let alert = alert.context("the server sent no alert")?;
    if as_json {
        emit(|out| crate::cli::output::message(out, &alert))
    } else {
        emit(|out| format::alert_details(out, &alert))
    }
}

/// Where `tail` keeps the last sequence it printed, per server.
fn default_state_file(server: &str) -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    let name: String = server
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    base.join("llmops").join(format!("alerts-tail-{name}.seq"))
}
