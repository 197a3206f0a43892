//! `llmops bench`: a load tool that measures what the server costs per request.
//!
//! Each [`Scenario`] is run in turn against one server: a setup step (creating the data
//! it reads), then `--connections` separate HTTP/2 connections, each carrying `--streams`
//! concurrent requests in a closed loop, for `--warmup` (not recorded) plus `--duration`.
//! The `health` scenario (`grpc.health.v1.Health/Check`) runs first: it is the floor set
//! by the transport and framework, and every other scenario's throughput is reported as a
//! ratio of it, measured in the same run on the same machine.
//!
//! Without `--server` the tool starts its own server (this same executable, `serve`, on a
//! free port with a temporary data directory) and stops it when it is done.
//!
//! The `fanout` scenario is different, and runs only when named: thousands of alert
//! subscribers while alerts are created at a fixed rate, reporting delivery latency and
//! the server's memory per subscriber (see `fanout`). It runs after the others.
//!
//! The `eval` scenario, also only when named, runs one evaluation run against a mock
//! OpenAI-compatible provider with a fixed latency and reports its wall time as a ratio
//! of the ideal (see `eval`).
//!
//! The pieces: [`Scenario`] and its requests live in `scenario`, the closed-loop driver
//! and latency histograms in `load`, the fan-out scenario in `fanout`, the spawned server
//! in `server`, output in `report`.

mod eval;
mod fanout;
mod import;
mod load;
pub mod mock_provider;
mod online_judge;
mod report;
mod scenario;
mod server;

use std::time::Duration;

use anyhow::{bail, Context as _};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Endpoint;

use self::eval::{EvalRow, EvalShape};
use self::fanout::FanoutShape;
use self::import::ImportRow;
use self::load::{Call as _, LoadShape};
use self::mock_provider::MockProvider;
use self::online_judge::{OnlineJudgeRow, OnlineJudgeShape};
use self::report::{FanoutRow, Row};
pub use self::scenario::Scenario;
use self::server::SpawnedServer;

/// How long a single request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Measure request throughput and latency of a server, scenario by scenario.
///
/// Prints, for every scenario, the requests completed, requests per second, p50 and p99
/// latency, errors, and throughput as a fraction of the `health` scenario (the floor
/// set by gRPC itself). Runs against `--server`, or starts a temporary server.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// The server to load, e.g. `http://127.0.0.1:50051` or `host:port`. Without it, a
    /// server is started on a free port with a temporary data directory and stopped at the
    /// end. `LLMOPS_SERVER` and the global `--server` count as given.
    //
    // The binary's global `--server` has a default, and clap fills a subcommand's
    // same-named argument with a parent's value unless the subcommand's own value ranks
    // at least as high (command line > environment > default). This empty default ranks
    // level with the global default, so only an explicit server is loaded; None and
    // empty both mean "start one".
    #[arg(
        long,
        value_name = "URL",
        default_value = "",
        hide_default_value = true
    )]
    pub server: Option<String>,
    /// The scenarios to run, comma-separated. `health` always runs first. `import`,
    /// `create-alert`, `render-served`, `render-served-new-user`, `log-generations`, `otlp-export`, `log-generations-online`, `fanout` (10,000 subscriptions), `eval` (an evaluation run against a mock
    /// provider) and `online-judge` (online evaluation judged by it) are not in the default list: ask for them by name, e.g.
    /// `--scenarios eval`.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "health,get-prompt,render,assign,record-metric"
    )]
    pub scenarios: Vec<Scenario>,
    /// Separate HTTP/2 connections to open.
    #[arg(long, value_name = "C", default_value_t = 4)]
    pub connections: usize,
    /// Concurrent in-flight requests per connection.
    #[arg(long, value_name = "S", default_value_t = 16)]
    pub streams: usize,
    /// How long each scenario is measured, e.g. `10s`, `1m`.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// How long each scenario runs before measuring starts (not recorded).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// `fanout`: concurrent Subscribe streams, each matching every alert.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub subscribers: usize,
    /// `fanout`: separate HTTP/2 connections the subscribers are spread over.
    #[arg(long, value_name = "C", default_value_t = 100)]
    pub subscriber_connections: usize,
    /// `fanout`: alerts created per second.
    #[arg(long, value_name = "PER_SECOND", default_value_t = 5.0)]
    pub alert_rate: f64,
    /// `eval`: samples in the evaluation run's dataset (at most 10,000).
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub eval_samples: usize,
    /// `eval`: the run's concurrency.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub eval_concurrency: u32,
    /// `eval`: the mock provider's latency per request, e.g. `50ms`.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    pub eval_latency: Duration,
    /// `eval` against `--server`: the configured provider to run (it should answer
    /// after `--eval-latency`). Without `--server`, the started server gets a provider
    /// pointing at a mock in this process.
    #[arg(long, value_name = "NAME")]
    pub eval_provider: Option<String>,
    /// Only serve the mock provider (answering after `--eval-latency`) on this address
    /// until interrupted, for the providers of a deployment started apart (e.g.
    /// `base_url = "http://127.0.0.1:18080/v1"`) to point at; runs no scenario.
    #[arg(long, value_name = "ADDRESS")]
    pub serve_mock: Option<std::net::SocketAddr>,
    /// `online-judge`: generations logged (every one judged once).
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub online_samples: usize,
    /// `online-judge`: the spawned server's `online_max_concurrency` (with `--server`:
    /// what that server has, for the ideal).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub online_concurrency: usize,
    /// `import`: samples to import in one stream.
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    pub import_samples: usize,
    /// `fanout`: how long alerts are created for, e.g. `30s`.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub fanout_duration: Duration,
    /// `fanout`: create the alerts on this server instead, another replica of the
    /// deployment the subscribers are on; the delivery latency is then the replication
    /// delay (a write on one replica to the event on another).
    #[arg(long, value_name = "URL")]
    pub fanout_publisher: Option<String>,
    /// `fanout`: other replicas of the deployment to spread the subscribers over, with
    /// the server (round-robin by connection), e.g. `http://b:50051,http://c:50051`.
    #[arg(long, value_name = "URL,...", value_delimiter = ',')]
    pub fanout_spread: Vec<String>,
    /// The API key to call with: the global `--api-key` (or `LLMOPS_API_KEY`).
    #[arg(skip)]
    pub api_key: Option<crate::cli::ApiKeySecret>,
    /// The CA certificate to verify an `https://` server with: the global `--ca-cert`.
    #[arg(skip)]
    pub ca_cert: Option<std::path::PathBuf>,
    /// Print the results as a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark described by `args` and prints its results to stdout (progress
/// goes to stderr). A server started by the tool is stopped before this returns, also
/// on error.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(address) = args.serve_mock {
        let mock = MockProvider::start_on(address, args.eval_latency)
            .await
            .with_context(|| format!("starting the mock provider on {address}"))?;
        eprintln!(
            "mock provider at {} answering after {:?}; interrupt to stop",
            mock.base_url(),
            args.eval_latency
        );
        tokio::signal::ctrl_c()
            .await
            .context("waiting for an interrupt")?;
        eprintln!("mock provider answered {} requests", mock.requests());
        return Ok(());
    }
    if args.connections == 0 || args.streams == 0 {
        bail!("--connections and --streams must be at least 1");
    }
    if args.duration.is_zero() {
        bail!("--duration must be longer than zero");
    }
    let scenarios = scenario::run_order(&args.scenarios);
    let fanout = args.fanout_shape()?;
    let closed_loop: Vec<_> = scenarios
        .into_iter()
        .filter(|scenario| scenario.is_closed_loop())
        .collect();
    let shape = LoadShape {
        connections: args.connections,
        streams: args.streams,
        warmup: args.warmup,
        duration: args.duration,
    };

    // Declared first so that they are dropped (the server killed) last, also on error.
    let wants_eval = args.scenarios.contains(&Scenario::Eval);
    let wants_judge = args.scenarios.contains(&Scenario::OnlineJudge);
    let mock = if (wants_eval || wants_judge) && args.eval_provider.is_none() {
        Some(
            MockProvider::start(args.eval_latency)
                .await
                .context("starting the mock provider")?,
        )
    } else {
        None
    };
    let mut spawned: Option<SpawnedServer> = None;
    let url = match args.target() {
        Some(url) => {
            if (wants_eval || wants_judge) && args.eval_provider.is_none() {
                bail!("eval and online-judge against --server need --eval-provider: a provider the server has configured");
            }
            url
        }
        None => {
            eprintln!("starting a server...");
            // Top-level keys come before the provider tables.
            let config = mock.as_ref().map(|mock| {
                format!(
                    "online_max_concurrency = {}\n{}",
                    args.online_concurrency,
                    eval::provider_config(mock)
                )
            });
            let server = SpawnedServer::start(config.as_deref()).await?;
            let url = server.url().to_owned();
            eprintln!("server listening on {url}");
            spawned = Some(server);
            url
        }
    };
    let mut endpoint = Endpoint::from_shared(url.clone())
        .with_context(|| format!("invalid server URL {url:?}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT);
    if url.starts_with("https://") {
        let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
        if let Some(path) = &args.ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("--ca-cert: cannot read {}", path.display()))?;
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        endpoint = endpoint.tls_config(tls).context("configuring TLS")?;
    }

    let publisher = args
        .fanout_publisher
        .as_deref()
        .map(|url| {
            Endpoint::from_shared(url.to_owned())
                .with_context(|| format!("invalid --fanout-publisher URL {url:?}"))
                .map(|e| e.connect_timeout(CONNECT_TIMEOUT).timeout(REQUEST_TIMEOUT))
        })
        .transpose()?;
    let mut subscriber_endpoints = vec![endpoint.clone()];
    for url in &args.fanout_spread {
        subscriber_endpoints.push(
            Endpoint::from_shared(url.clone())
                .with_context(|| format!("invalid --fanout-spread URL {url:?}"))?
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT),
        );
    }
    let server_pid = spawned.as_ref().map(SpawnedServer::pid);
    let import_samples = args
        .scenarios
        .contains(&Scenario::Import)
        .then_some(args.import_samples);
    let eval_model = args
        .eval_provider
        .clone()
        .unwrap_or_else(|| eval::MOCK_PROVIDER.to_owned());
    let eval_shape = wants_eval.then_some(EvalShape {
        samples: args.eval_samples,
        concurrency: args.eval_concurrency,
        latency: args.eval_latency,
    });
    let judge_shape = wants_judge.then_some(OnlineJudgeShape {
        samples: args.online_samples,
        concurrency: args.online_concurrency,
        latency: args.eval_latency,
    });
    let (rows, fanout, import, evaluation, judged) = tokio::select! {
        results = async {
            let rows = run_all(&endpoint, &closed_loop, shape, args.api_key.as_ref().map(crate::cli::ApiKeySecret::expose)).await?;
            let import = match import_samples {
                Some(samples) => Some(import::run(&endpoint, samples).await.context("running scenario import")?),
                None => None,
            };
            let evaluation = match eval_shape {
                Some(shape) => {
                    eprintln!("running scenario eval...");
                    Some(eval::run(&endpoint, &eval_model, shape).await.context("running scenario eval")?)
                }
                None => None,
            };
            let judged = match judge_shape {
                Some(shape) => {
                    eprintln!("running scenario online-judge...");
                    Some(online_judge::run(&endpoint, &eval_model, shape).await.context("running scenario online-judge")?)
                }
                None => None,
            };
            let fanout = match fanout {
                Some(fanout) => Some(run_fanout(&subscriber_endpoints, publisher.as_ref(), fanout, server_pid).await?),
                None => None,
            };
            anyhow::Ok((rows, fanout, import, evaluation, judged))
        } => results?,
        // Returning (rather than dying of the signal) stops and removes a spawned server.
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    };
    if args.json {
        report::print_json(&rows, fanout.as_ref(), import.as_ref(), evaluation.as_ref())?;
    } else {
        if !rows.is_empty() {
            report::print_table(&rows, shape, &url);
        }
        if let Some(import) = &import {
            print_import(import, &url);
        }
        if let Some(evaluation) = &evaluation {
            print_eval(evaluation, &url);
        }
        if let Some(judged) = &judged {
            print_online_judge(judged, &url);
        }
        if let Some(fanout) = &fanout {
            report::print_fanout(fanout, &url);
        }
    }
    if let (true, Some(judged)) = (args.json, &judged) {
        println!("{}", serde_json::to_string(judged)?);
    }
    drop(spawned);
    Ok(())
}

fn print_eval(row: &EvalRow, url: &str) {
    println!(
        "{url}: eval: {} samples at concurrency {} with {:.0} ms provider latency in {:.2} s; ideal {:.2} s; ratio {:.3} (pass rate {:.3})",
        row.samples, row.concurrency, row.latency_ms, row.seconds, row.ideal_seconds, row.ratio, row.pass_rate
    );
}

fn print_online_judge(row: &OnlineJudgeRow, url: &str) {
    println!(
        "{url}: online-judge: {} samples at online_max_concurrency {} with {:.0} ms judge latency in {:.2} s = {:.1} samples/s; ideal {:.1} samples/s ({:.2} s); ratio {:.3}",
        row.samples, row.concurrency, row.latency_ms, row.seconds, row.samples_per_second, row.ideal_samples_per_second, row.ideal_seconds, row.ratio
    );
}

fn print_import(row: &ImportRow, url: &str) {
    println!(
        "{url}: import: {} samples in {:.2} s = {:.0} samples/s",
        row.samples, row.seconds, row.samples_per_second
    );
}

/// Runs the fanout scenario with subscribers spread over `endpoints` (the first is the
/// server), publishing on `publisher` when given (else on the server); `server_pid` is
/// the server's process when the tool started it (for its memory).
async fn run_fanout(
    endpoints: &[Endpoint],
    publisher: Option<&Endpoint>,
    shape: FanoutShape,
    server_pid: Option<u32>,
) -> anyhow::Result<FanoutRow> {
    let outcome = fanout::run(endpoints, publisher, shape, server_pid)
        .await
        .context("running scenario fanout")?;
    if let Some(error) = &outcome.first_error {
        eprintln!(
            "fanout: {} stream errors; the first: {error}",
            outcome.stream_errors
        );
    }
    Ok(FanoutRow::new(&outcome))
}

/// Runs `scenarios` in order, each compared with the health floor if it ran before.
async fn run_all(
    endpoint: &Endpoint,
    scenarios: &[Scenario],
    shape: LoadShape,
    api_key: Option<&str>,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::with_capacity(scenarios.len());
    let mut health_rps = None;
    for &scenario in scenarios {
        let row = run_scenario(endpoint, scenario, shape, health_rps, api_key).await?;
        if scenario == Scenario::Health {
            health_rps = Some(row.rps);
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Sets up, probes and loads one scenario.
async fn run_scenario(
    endpoint: &Endpoint,
    scenario: Scenario,
    shape: LoadShape,
    health_rps: Option<f64>,
    api_key: Option<&str>,
) -> anyhow::Result<Row> {
    let name = scenario.name();
    let setup_channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", endpoint.uri()))?;
    let credentials = crate::cli::Credentials::new(api_key)?;
    scenario
        .setup(InterceptedService::new(
            setup_channel.clone(),
            credentials.clone(),
        ))
        .await
        .with_context(|| format!("setting up scenario {name}"))?;
    // One request before the load, so that a scenario that cannot work fails with its
    // reason instead of a table full of errors.
    scenario
        .caller(setup_channel, &credentials)
        .call()
        .await
        .map_err(|status| anyhow::anyhow!("scenario {name}: the first request failed: {status}"))?;

    eprintln!(
        "running {name}: {} connections x {} streams, {} warm-up + {}",
        shape.connections,
        shape.streams,
        humantime::format_duration(shape.warmup),
        humantime::format_duration(shape.duration),
    );
    let outcome = load::drive(endpoint, shape, |channel| {
        scenario.caller(channel, &credentials)
    })
    .await
    .with_context(|| format!("running scenario {name}"))?;
    if let Some(status) = &outcome.first_error {
        eprintln!("{name}: {} errors; the first: {status}", outcome.errors);
    }
    Ok(Row::new(name, &outcome, health_rps))
}

impl BenchArgs {
    /// The fanout scenario's shape, when it was asked for.
    fn fanout_shape(&self) -> anyhow::Result<Option<FanoutShape>> {
        if !self.scenarios.contains(&Scenario::Fanout) {
            return Ok(None);
        }
        if self.subscribers == 0 || self.subscriber_connections == 0 {
            bail!("--subscribers and --subscriber-connections must be at least 1");
        }
        if !(self.alert_rate.is_finite() && self.alert_rate > 0.0) {
            bail!("--alert-rate must be a number above zero");
        }
        if self.fanout_duration.is_zero() {
            bail!("--fanout-duration must be longer than zero");
        }
        Ok(Some(FanoutShape {
            subscribers: self.subscribers,
            connections: self.subscriber_connections,
            alert_rate: self.alert_rate,
            duration: self.fanout_duration,
        }))
    }

    /// The URL of the server to load, `None` to start one.
    fn target(&self) -> Option<String> {
        self.server
            .as_deref()
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(normalise_url)
    }
}

/// Accepts `host:port` as well as a full URL.
fn normalise_url(url: &str) -> String {
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[test]
    fn defaults_run_the_read_and_experiment_scenarios_but_not_fanout_or_alerts() {
        let args = Cli::parse_from(["bench"]).bench;
        // create-alert and log-generations leave thousands of rows behind: only when named.
        let defaults: Vec<_> = Scenario::CLOSED_LOOP
            .into_iter()
            .filter(|s| {
                !matches!(
                    s,
                    Scenario::CreateAlert
                        | Scenario::LogGenerations
                        | Scenario::OtlpExport
                        | Scenario::LogGenerationsOnline
                        | Scenario::RenderServed
                        | Scenario::RenderServedNewUser
                )
            })
            .collect();
        assert_eq!(args.scenarios, defaults);
        assert_eq!((args.connections, args.streams), (4, 16));
        assert_eq!(args.duration, Duration::from_secs(10));
        assert_eq!(args.warmup, Duration::from_secs(2));
        assert!(args.target().is_none() && !args.json);
        assert_eq!(args.fanout_shape().unwrap(), None);
    }

    #[test]
    fn fanout_flags_parse_with_the_issues_defaults() {
        let args = Cli::parse_from(["bench", "--scenarios", "fanout"]).bench;
        let shape = args.fanout_shape().unwrap().unwrap();
        assert_eq!((shape.subscribers, shape.connections), (10_000, 100));
        assert_eq!(shape.alert_rate, 5.0);
        assert_eq!(shape.duration, Duration::from_secs(30));

        let small = [
            "bench",
            "--scenarios",
            "health,fanout",
            "--subscribers",
            "1000",
            "--subscriber-connections",
            "10",
            "--alert-rate",
            "2.5",
            "--fanout-duration",
            "5s",
        ];
        let args = Cli::parse_from(small).bench;
        assert_eq!(
            scenario::run_order(&args.scenarios),
            [Scenario::Health, Scenario::Fanout]
        );
        let shape = args.fanout_shape().unwrap().unwrap();
        assert_eq!((shape.subscribers, shape.connections), (1000, 10));
        assert_eq!(shape.alerts(), 13);

        for bad in [
            ["--subscribers", "0"],
            ["--alert-rate", "0"],
            ["--alert-rate", "NaN"],
            ["--fanout-duration", "0s"],
        ] {
            let args = Cli::parse_from(["bench", "--scenarios", "fanout", bad[0], bad[1]]).bench;
            assert!(args.fanout_shape().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scenarios_and_durations_parse_and_health_runs_first() {
        let args = Cli::parse_from([
            "bench",
            "--scenarios",
            "render,health,render",
            "--duration",
            "1m 30s",
            "--warmup",
            "500ms",
        ])
        .bench;
        assert_eq!(
            scenario::run_order(&args.scenarios),
            [Scenario::Health, Scenario::Render]
        );
        assert_eq!(args.duration, Duration::from_secs(90));
        assert_eq!(args.warmup, Duration::from_millis(500));
    }

    /// The binary's shape: a global `--server` (with a default and `LLMOPS_SERVER`) and
    /// `--json` for the client subcommands, and `bench` as a subcommand.
    #[derive(Parser)]
    struct Binary {
        #[command(subcommand)]
        command: Sub,
        #[command(flatten)]
        client: crate::cli::ClientOptions,
    }

    #[derive(clap::Subcommand)]
    enum Sub {
        Bench(BenchArgs),
    }

    fn bench_args(argv: &[&str]) -> BenchArgs {
        let Sub::Bench(args) = Binary::try_parse_from(argv).unwrap().command;
        args
    }

    #[test]
    fn the_global_server_default_does_not_stop_bench_from_starting_its_own() {
        assert_eq!(bench_args(&["llmops", "bench"]).target(), None);
        let explicit = ["llmops", "bench", "--server", "127.0.0.1:1"];
        assert_eq!(
            bench_args(&explicit).target().as_deref(),
            Some("http://127.0.0.1:1")
        );
        let global = ["llmops", "--server", "127.0.0.1:2", "bench"];
        assert_eq!(
            bench_args(&global).target().as_deref(),
            Some("http://127.0.0.1:2")
        );
        assert!(bench_args(&["llmops", "bench", "--json"]).json);
        assert!(bench_args(&["llmops", "--json", "bench"]).json);
        assert!(!bench_args(&["llmops", "bench"]).json);
    }

    #[test]
    fn unknown_scenarios_are_rejected() {
        assert!(Cli::try_parse_from(["bench", "--scenarios", "nope"]).is_err());
    }

    /// The whole tool against the real server, in-process (the `serve` subprocess path
    /// needs the `llmops` binary and is covered by running `llmops bench`). Runs twice
    /// against one server: the second setup finds the bench prompt already there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_scenario_runs_against_a_live_server_twice() {
        let temp = tempfile::tempdir().unwrap();
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = crate::config::Config {
            data_dir: temp.path().to_owned(),
            listen: grpc.local_addr().unwrap(),
            metrics_listen: metrics.local_addr().unwrap(),
            ..crate::config::Config::default()
        };
        let url = format!("http://{}", config.listen);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::server::serve(config, grpc, metrics, async move {
            let _ = stopped.await;
        }));

        let endpoint = Endpoint::from_shared(url).unwrap();
        let shape = LoadShape {
            connections: 2,
            streams: 2,
            // Long enough for a durable batch of 100 generations or spans to complete on
            // a machine busy with other tests (200 ms once saw none).
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(600),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while Scenario::Health
            .caller(
                endpoint.connect_lazy(),
                &crate::cli::Credentials::new(None).unwrap(),
            )
            .call()
            .await
            .is_err()
        {
            assert!(std::time::Instant::now() < deadline, "server never served");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for _ in 0..2 {
            let rows = run_all(&endpoint, &Scenario::CLOSED_LOOP, shape, None)
                .await
                .unwrap();
            let names: Vec<_> = rows.iter().map(|row| row.scenario).collect();
            assert_eq!(
                names,
                [
                    "health",
                    "get-prompt",
                    "render",
                    "assign",
                    "record-metric",
                    "create-alert",
                    "render-served",
                    "render-served-new-user",
                    "log-generations",
                    "otlp-export",
                    "log-generations-online"
                ]
            );
            for row in &rows {
                assert_eq!(row.errors, 0, "{row:?}");
                assert!(
                    row.requests > 0 && row.rps > 0.0 && row.p99_ms > 0.0,
                    "{row:?}"
                );
                assert!(row.vs_health.is_some_and(|ratio| ratio > 0.0), "{row:?}");
            }
        }

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[test]
    fn bare_addresses_get_a_scheme() {
        assert_eq!(normalise_url("127.0.0.1:1"), "http://127.0.0.1:1");
        assert_eq!(normalise_url("https://x:1"), "https://x:1");
    }
}
