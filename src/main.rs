//! The `llmops` binary: `llmops serve` runs the server; the other subcommands are
//! clients of a running server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use llmops::config::{LoadedConfig, LogFormat};
use llmops::{bench, cli, server, telemetry};

/// llmops: prompt registry, experiments, evaluation and alerting for LLM applications.
#[derive(Debug, Parser)]
#[command(name = "llmops", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    client: cli::ClientOptions,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (SQLite under ./llmops-data, gRPC on 127.0.0.1:50051).
    Serve(ServeArgs),
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage prompt versions, labels, renders and diffs.
    Prompt(cli::prompt::PromptArgs),
    /// List, acknowledge and resolve alerts; follow the alert stream.
    Alerts(cli::alerts::AlertsArgs),
    /// Create and run A/B experiments: assign users, record metrics, read the results.
    Experiment(cli::experiment::ExperimentArgs),
    /// Manage evaluation datasets: create, import and export samples (JSONL or CSV), inspect.
    Dataset(cli::dataset::DatasetArgs),
    /// Run prompts over datasets and score them: start, follow, inspect and compare runs.
    Eval(cli::eval::EvalArgs),
    /// Evaluate continuously: start runs on a schedule and when a prompt changes.
    Schedule(cli::schedule::ScheduleArgs),
    /// Guard prompt labels: a gated label only moves to a version that passed its evaluation.
    Gate(cli::gate::GateArgs),
    /// Show the model providers' health and scores, and the one `auto` would use.
    Providers(cli::providers::ProvidersArgs),
    /// Show the replicas serving this deployment and the background roles each holds.
    Cluster(cli::cluster::ClusterArgs),
    /// Manage API keys: the first admin key, then keys for every caller.
    Auth(AuthArgs),
    /// Show the audit log: who changed what, and how each call ended (ROLE_ADMIN).
    Audit(cli::audit::AuditArgs),
    /// Show what applications asked models and what they answered (logged generations).
    Generations(cli::generations::GenerationsArgs),
    /// Generations, errors, tokens, cost and latency percentiles per group and bucket.
    Usage(cli::usage::UsageArgs),
    /// Score production traffic continuously: sampled generations, alerts on live quality.
    #[command(name = "online-eval")]
    OnlineEval(cli::online_eval::OnlineEvalArgs),
    /// Copy a whole deployment into an empty database (e.g. SQLite to PostgreSQL) and verify it.
    Migrate(cli::migrate::MigrateArgs),
    /// Drive load against a server and report throughput and latency.
    Bench(bench::BenchArgs),
}

#[derive(Debug, Args)]
struct AuthArgs {
    #[command(subcommand)]
    command: AuthCommand,
}

#[derive(Debug, Subcommand)]
enum AuthCommand {
    /// Create the first admin key in the configured database and print its secret once.
    ///
    /// Run against the database, like a migration, not through the API (nobody has a
    /// key yet). Refused when a usable admin key exists.
    Bootstrap {
        #[command(flatten)]
        config: ServeArgs,
        /// The key's name.
        #[arg(long, default_value = "admin")]
        name: String,
    },
    #[command(flatten)]
    Api(cli::auth::AuthApiCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print every key's effective value and where it came from.
    Show(ServeArgs),
}

/// Flags override `LLMOPS_*` variables, which override the TOML file.
#[derive(Debug, Args)]
struct ServeArgs {
    /// A TOML configuration file.
    #[arg(long, env = "LLMOPS_CONFIG")]
    config: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50051].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory of the embedded database [default: ./llmops-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The database, e.g. sqlite:///var/lib/llmops/llmops.db [default: llmops.db in the
    /// data directory].
    #[arg(long)]
    database_url: Option<String>,
    /// Prometheus /metrics listen address [default: 127.0.0.1:9464].
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Log format [default: human].
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

impl ServeArgs {
    fn load(&self) -> anyhow::Result<LoadedConfig> {
        let mut flags = Vec::new();
        if let Some(listen) = self.listen {
            flags.push((
                "listen",
                toml::Value::String(listen.to_string()),
                "--listen",
            ));
        }
        if let Some(dir) = &self.data_dir {
            flags.push((
                "data_dir",
                toml::Value::String(dir.display().to_string()),
                "--data-dir",
            ));
        }
        if let Some(url) = &self.database_url {
            flags.push((
                "database_url",
                toml::Value::String(url.clone()),
                "--database-url",
            ));
        }
        if let Some(listen) = self.metrics_listen {
            flags.push((
                "metrics_listen",
                toml::Value::String(listen.to_string()),
                "--metrics-listen",
            ));
        }
        if let Some(format) = self.log_format {
            let name = match format {
                LogFormat::Human => "human",
                LogFormat::Json => "json",
            };
            flags.push((
                "log_format",
                toml::Value::String(name.to_owned()),
                "--log-format",
            ));
        }
        Ok(LoadedConfig::load(
            self.config.as_deref(),
            std::env::vars(),
            flags,
        )?)
    }
}

/// Runtime thread stacks: a default-limits render's stack plus room for the code that
/// calls it.
const RUNTIME_THREAD_STACK: usize = 144 * 1024 * 1024;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Renders run on these threads; with the stack a render under the default
        // limits may need (see llmops_registry::render_stack_size), none has to switch
        // to a stack of its own. Only touched pages take memory.
        .thread_stack_size(RUNTIME_THREAD_STACK)
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let json = cli.client.json;
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped reading (`| head`) is not a failure of the command.
        Err(err) if cli::is_closed_stdout(&err) => ExitCode::SUCCESS,
        Err(err) if json => {
            eprintln!("{}", cli::error_json(&err));
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Config {
            command: ConfigCommand::Show(args),
        } => cli::show_config(&args.load()?, cli.client.json),
        Command::Prompt(args) => cli::prompt::run(args, &cli.client).await,
        Command::Alerts(args) => cli::alerts::run(args, &cli.client).await,
        Command::Experiment(args) => cli::experiment::run(args, &cli.client).await,
        Command::Dataset(args) => cli::dataset::run(args, &cli.client).await,
        Command::Eval(args) => cli::eval::run(args, &cli.client).await,
        Command::Schedule(args) => cli::schedule::run(args, &cli.client).await,
        Command::Gate(args) => cli::gate::run(args, &cli.client).await,
        Command::Providers(args) => cli::providers::run(args, &cli.client).await,
        Command::Cluster(args) => cli::cluster::run(args, &cli.client).await,
        Command::Auth(AuthArgs {
            command: AuthCommand::Bootstrap { config, name },
        }) => cli::auth::bootstrap(&config.load()?.config, &name, cli.client.json).await,
        Command::Auth(AuthArgs {
            command: AuthCommand::Api(command),
        }) => cli::auth::run(command, &cli.client).await,
        Command::Audit(args) => cli::audit::run(args, &cli.client).await,
        Command::Generations(args) => cli::generations::run(args, &cli.client).await,
        Command::Usage(args) => cli::usage::run(args, &cli.client).await,
        Command::OnlineEval(args) => cli::online_eval::run(args, &cli.client).await,
        Command::Bench(mut args) => {
            args.api_key.clone_from(&cli.client.api_key);
            args.ca_cert.clone_from(&cli.client.ca_cert);
            bench::run(args).await
        }
        Command::Migrate(args) => cli::migrate::run(args, cli.client.json).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.load()?.config;
    telemetry::init_logging(config.log_format);
    let grpc = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on {}: {err}", config.listen))?;
    let metrics = telemetry::bind_metrics(config.metrics_listen).await?;
    server::serve(config, grpc, metrics, server::termination_signal()).await
}

#[cfg(test)]
mod tests {
    use llmops_registry::{render_stack_size, RegistryLimits};

    /// A render under the default limits fits on a runtime thread, so it never maps a
    /// stack of its own on the hot path.
    #[test]
    fn runtime_threads_hold_a_default_render() {
        let render = render_stack_size(&RegistryLimits::default());
        assert!(super::RUNTIME_THREAD_STACK >= render + 4 * 1024 * 1024);
    }
}
