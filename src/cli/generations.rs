//! `llmops generations list|get|tail`: the generations applications logged.

use std::io::{self, Write};

use clap::{Args, Subcommand};
use tokio_stream::StreamExt as _;

use crate::cli::output::{emit, message, message_line, messages, number, table, write_table};
use crate::cli::paging::collect_pages;
use crate::cli::values::rfc3339;
use crate::cli::{connect, status_error, ClientOptions};
use crate::grpc::convert::timestamp;
use crate::pb;
use crate::pb::generation_service_client::GenerationServiceClient;

/// `llmops generations`.
#[derive(Debug, Args)]
pub struct GenerationsArgs {
    #[command(subcommand)]
    command: GenerationsCommand,
}

#[derive(Debug, Subcommand)]
enum GenerationsCommand {
    /// List generations, newest first.
    List(ListArgs),
    /// Show one generation whole (input and output included).
    Get {
        /// The generation's id.
        generation_id: String,
    },
    /// Print each generation as it is stored, until interrupted.
    Tail(Filters),
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    filters: Filters,
    /// Only generations that started at or after this RFC 3339 time.
    #[arg(long)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only generations that started before this RFC 3339 time.
    #[arg(long)]
    until: Option<chrono::DateTime<chrono::Utc>>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

#[derive(Debug, Args)]
struct Filters {
    /// Only this prompt.
    #[arg(long)]
    prompt: Option<String>,
    /// Only this prompt version.
    #[arg(long)]
    version: Option<String>,
    /// Only this model.
    #[arg(long)]
    model: Option<String>,
    /// Only this experiment.
    #[arg(long)]
    experiment: Option<String>,
    /// Only this variant.
    #[arg(long)]
    variant: Option<String>,
    /// Only this user.
    #[arg(long)]
    user: Option<String>,
    /// Only `ok` or `error` generations.
    #[arg(long, value_parser = ["ok", "error"])]
    status: Option<String>,
}

impl Filters {
    fn request(self) -> pb::ListGenerationsRequest {
        let status = match self.status.as_deref() {
            Some("ok") => pb::GenerationStatus::Ok,
            Some("error") => pb::GenerationStatus::Error,
            _ => pb::GenerationStatus::Unspecified,
        };
        pb::ListGenerationsRequest {
            prompt_name: self.prompt.unwrap_or_default(),
            prompt_version: self.version.unwrap_or_default(),
            model: self.model.unwrap_or_default(),
            experiment_id: self.experiment.unwrap_or_default(),
            variant_id: self.variant.unwrap_or_default(),
            user_id: self.user.unwrap_or_default(),
            status: status.into(),
            ..Default::default()
        }
    }
}

/// Runs an `llmops generations` command.
pub async fn run(args: GenerationsArgs, options: &ClientOptions) -> anyhow::Result<()> {
    let mut client = GenerationServiceClient::new(connect(options).await?);
    match args.command {
        GenerationsCommand::List(list) => {
            let request = pb::ListGenerationsRequest {
                since: list.since.map(timestamp),
                until: list.until.map(timestamp),
                ..list.filters.request()
            };
            let generations = collect_pages(Some(list.limit), |page_size, page_token| {
                let mut client = client.clone();
                let request = pb::ListGenerationsRequest {
                    page_size: u32::try_from(page_size).unwrap_or(0),
                    page_token,
                    ..request.clone()
                };
                async move {
                    let page = client.list_generations(request).await?.into_inner();
                    Ok((page.generations, page.next_page_token))
                }
            })
            .await?;
            if options.json {
                return emit(|out| messages(out, &generations));
            }
            emit(|out| generations_table(out, &generations))
        }
        GenerationsCommand::Get { generation_id } => {
            let generation = client
                .get_generation(pb::GetGenerationRequest { generation_id })
                .await
                .map_err(status_error)?
                .into_inner()
                .generation
                .unwrap_or_default();
            if options.json {
                return emit(|out| message(out, &generation));
            }
            emit(|out| describe(out, &generation))
        }
        GenerationsCommand::Tail(filters) => {
            let mut stream = client
                .tail_generations(pb::TailGenerationsRequest {
                    filter: Some(filters.request()),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            while let Some(item) = stream.next().await {
                let generation = item.map_err(status_error)?.generation.unwrap_or_default();
                let stdout = io::stdout();
                let mut out = stdout.lock();
                if options.json {
                    message_line(&mut out, &generation)?;
                } else {
                    writeln!(out, "{}", line(&generation))?;
                }
                out.flush()?;
            }
            Ok(())
        }
    }
}

fn status_name(generation: &pb::Generation) -> &'static str {
    match generation.status() {
        pb::GenerationStatus::Error => "error",
        _ => "ok",
    }
}

fn cost(generation: &pb::Generation) -> String {
    generation
        .cost
        .map(number)
        .unwrap_or_else(|| "-".to_owned())
}

/// One line of `tail`.
fn line(g: &pb::Generation) -> String {
    format!(
        "{} {} {}@{} {} {} {} ms {}/{} tokens cost {}",
        rfc3339(g.start_time.as_ref()),
        g.id,
        g.prompt_name,
        g.prompt_version,
        g.model,
        status_name(g),
        number(g.latency_ms),
        g.input_tokens,
        g.output_tokens,
        cost(g)
    )
}

fn generations_table(out: &mut dyn Write, generations: &[pb::Generation]) -> io::Result<()> {
    let mut rows = table(&[
        "STARTED",
        "ID",
        "PROMPT",
        "MODEL",
        "STATUS",
        "LATENCY MS",
        "TOKENS IN/OUT",
        "COST",
    ]);
    for g in generations {
        rows.add_row(vec![
            rfc3339(g.start_time.as_ref()),
            g.id.clone(),
            format!("{}@{}", g.prompt_name, g.prompt_version),
            g.model.clone(),
            status_name(g).to_owned(),
            number(g.latency_ms),
            format!("{}/{}", g.input_tokens, g.output_tokens),
            cost(g),
        ]);
    }
    write_table(out, rows)
}

fn describe(out: &mut dyn Write, g: &pb::Generation) -> io::Result<()> {
    writeln!(out, "{}", line(g))?;
    for (name, value) in [
        ("user", &g.user_id),
        ("experiment", &g.experiment_id),
        ("variant", &g.variant_id),
        ("provider", &g.provider),
        ("error", &g.error),
    ] {
        if !value.is_empty() {
            writeln!(out, "{name}: {value}")?;
        }
    }
    let cut = |truncated: bool| {
        if truncated {
            " (cut to the size limit)"
        } else {
            ""
        }
    };
    writeln!(out, "input{}:\n{}", cut(g.input_truncated), g.input)?;
    writeln!(out, "output{}:\n{}", cut(g.output_truncated), g.output)
}
