//! `llmops providers ...`: the model providers' health and scores, and the one the
//! server would choose.

use std::io::{self, Write};

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::cli::output::{duration_ms, millis, number, percent};
use crate::cli::output::{emit, json, table, write_table};
use crate::cli::values::rfc3339;
use crate::cli::{connect, status_error, ClientOptions};
use crate::pb;
use crate::pb::provider_service_client::ProviderServiceClient;

/// `llmops providers`.
#[derive(Debug, Args)]
pub struct ProvidersArgs {
    #[command(subcommand)]
    command: ProvidersCommand,
}

#[derive(Debug, Subcommand)]
enum ProvidersCommand {
    /// List the providers with their health, score, median latency and error rate.
    ///
    /// Health comes from periodic probes (`[providers_health]`); the score is the
    /// entry's configured `score`, else the mean pass rate of its recent completed
    /// evaluation runs, else 0. Latency and error rate cover the last 100 requests.
    List,
    /// Print the provider the model `auto` would use now: the healthy candidate with
    /// the highest score, the earliest configured on a tie.
    ///
    /// Prints the name alone (for scripts: `--model "$(llmops providers select)"`), or
    /// the provider with `--json`. Fails when no candidate is healthy.
    Select {
        /// Provider names to choose among [default: every configured provider; `echo`
        /// only when named].
        #[arg(value_name = "NAME")]
        candidates: Vec<String>,
    },
}

/// Runs an `llmops providers` command.
pub async fn run(args: ProvidersArgs, options: &ClientOptions) -> anyhow::Result<()> {
    let mut client = ProviderServiceClient::new(connect(options).await?);
    match args.command {
        ProvidersCommand::List => {
            let providers = client
                .list_providers(pb::ListProvidersRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .providers;
            if options.json {
                emit(|out| json(out, &crate::cli::proto_json::messages(&providers)))
            } else {
                emit(|out| provider_table(out, &providers))
            }
        }
        ProvidersCommand::Select { candidates } => {
            let provider = client
                .select_provider(pb::SelectProviderRequest { candidates })
                .await
                .map_err(status_error)?
                .into_inner()
                .provider
                .context("the server sent no provider")?;
            if options.json {
                emit(|out| crate::cli::output::message(out, &provider))
            } else {
                emit(|out| writeln!(out, "{}", provider.name))
            }
        }
    }
}

fn score_source_name(value: i32) -> &'static str {
    match pb::ProviderScoreSource::try_from(value) {
        Ok(pb::ProviderScoreSource::Config) => "config",
        Ok(pb::ProviderScoreSource::PassRate) => "pass rate",
        Ok(pb::ProviderScoreSource::None) => "none",
        _ => "unspecified",
    }
}

fn provider_table(out: &mut dyn Write, providers: &[pb::Provider]) -> io::Result<()> {
    let mut rows = table(&[
        "NAME",
        "KIND",
        "MODEL",
        "HEALTH",
        "SCORE",
        "P50 MS",
        "ERRORS",
        "LAST PROBE",
        "LAST ERROR",
    ]);
    for p in providers {
        let health = match (p.healthy, p.consecutive_failures) {
            (true, 0) => "healthy".to_owned(),
            (true, failures) => format!("healthy ({failures} failed)"),
            (false, failures) => format!("unhealthy ({failures} failed)"),
        };
        let errors = if p.recent_requests == 0 {
            "-".to_owned()
        } else {
            format!("{} of {}", percent(p.error_rate), p.recent_requests)
        };
        rows.add_row(vec![
            p.name.clone(),
            p.kind.clone(),
            p.model.clone(),
            health,
            format!(
                "{} ({})",
                number(p.score),
                score_source_name(p.score_source)
            ),
            p.latency_p50
                .as_ref()
                .map_or_else(|| "-".to_owned(), |d| millis(duration_ms(d))),
            errors,
            rfc3339(p.last_probe_at.as_ref()),
            p.last_error.clone(),
        ]);
    }
    write_table(out, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::testing::text;

    fn provider(name: &str, healthy: bool) -> pb::Provider {
        pb::Provider {
            name: name.into(),
            kind: "openai".into(),
            model: format!("{name}-model"),
            healthy,
            score: 0.875,
            score_source: pb::ProviderScoreSource::PassRate as i32,
            latency_p50: Some(prost_types::Duration {
                seconds: 0,
                nanos: 120_000_000,
            }),
            error_rate: 0.25,
            recent_requests: 8,
            consecutive_failures: if healthy { 0 } else { 3 },
            last_error: if healthy {
                String::new()
            } else {
                "HTTP 503: down".into()
            },
            ..Default::default()
        }
    }

    #[test]
    fn the_table_shows_health_score_source_latency_and_errors() {
        let out = text(|out| {
            provider_table(
                out,
                &[
                    provider("a", true),
                    provider("b", false),
                    pb::Provider {
                        name: "echo".into(),
                        kind: "echo".into(),
                        model: "echo".into(),
                        healthy: true,
                        score_source: pb::ProviderScoreSource::None as i32,
                        ..Default::default()
                    },
                ],
            )
        });
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{out}");
        let cells = |line: &str| -> Vec<String> {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(
            cells(lines[1]),
            [
                "a",
                "openai",
                "a-model",
                "healthy",
                "0.875 (pass rate)",
                "120",
                "25.0% of 8"
            ],
            "{out}"
        );
        assert_eq!(
            cells(lines[2])[3..],
            [
                "unhealthy (3 failed)",
                "0.875 (pass rate)",
                "120",
                "25.0% of 8",
                "HTTP 503: down"
            ],
            "{out}"
        );
        assert_eq!(
            cells(lines[3])[3..],
            ["healthy", "0 (none)", "-", "-"],
            "{out}"
        );
    }
}
