//! `llmops usage`: generations, errors, tokens, cost and latency per group and bucket.

use std::io::{self, Write};

use clap::{Args, ValueEnum};

use crate::cli::output::{emit, message, millis, number, table, write_table};
use crate::cli::values::rfc3339;
use crate::cli::{connect, status_error, ClientOptions};
use crate::grpc::convert::timestamp;
use crate::pb;
use crate::pb::generation_service_client::GenerationServiceClient;

/// `llmops usage`.
#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Group by these (comma-separated or repeated); none for one total per bucket.
    #[arg(long, value_enum, value_delimiter = ',')]
    by: Vec<Dimension>,
    /// From this RFC 3339 time (rounded down to its bucket); default 24 hours before
    /// `--until`.
    #[arg(long)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Until this RFC 3339 time (exclusive; rounded up to a bucket); default now.
    #[arg(long)]
    until: Option<chrono::DateTime<chrono::Utc>>,
    /// The buckets' width.
    #[arg(long, value_enum, default_value_t = Bucket::Hour)]
    bucket: Bucket,
    /// Only this prompt.
    #[arg(long)]
    prompt: Option<String>,
    /// Only this model.
    #[arg(long)]
    model: Option<String>,
    /// Only this experiment.
    #[arg(long)]
    experiment: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Dimension {
    /// The prompt.
    Prompt,
    /// The prompt and its version.
    Version,
    /// The model.
    Model,
    /// The end user.
    User,
    /// The experiment and its variant.
    Variant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Bucket {
    Hour,
    Day,
}

impl Dimension {
    fn to_pb(self) -> pb::UsageDimension {
        match self {
            Self::Prompt => pb::UsageDimension::Prompt,
            Self::Version => pb::UsageDimension::PromptVersion,
            Self::Model => pb::UsageDimension::Model,
            Self::User => pb::UsageDimension::User,
            Self::Variant => pb::UsageDimension::ExperimentVariant,
        }
    }
}

/// Runs `llmops usage`.
pub async fn run(args: UsageArgs, options: &ClientOptions) -> anyhow::Result<()> {
    let mut client = GenerationServiceClient::new(connect(options).await?);
    let request = pb::GetUsageRequest {
        group_by: args.by.iter().map(|d| d.to_pb() as i32).collect(),
        since: args.since.map(timestamp),
        until: args.until.map(timestamp),
        bucket: match args.bucket {
            Bucket::Hour => pb::UsageBucket::Hour,
            Bucket::Day => pb::UsageBucket::Day,
        } as i32,
        prompt_name: args.prompt.unwrap_or_default(),
        model: args.model.unwrap_or_default(),
        experiment_id: args.experiment.unwrap_or_default(),
    };
    let usage = client
        .get_usage(request)
        .await
        .map_err(status_error)?
        .into_inner();
    if options.json {
        return emit(|out| message(out, &usage));
    }
    emit(|out| usage_table(out, &args.by, &usage.rows))
}

/// One line per group and bucket, with a column for each dimension grouped by.
fn usage_table(out: &mut dyn Write, by: &[Dimension], rows: &[pb::UsageRow]) -> io::Result<()> {
    let mut header = vec!["BUCKET"];
    for dimension in by {
        header.push(match dimension {
            Dimension::Prompt => "PROMPT",
            Dimension::Version => "VERSION",
            Dimension::Model => "MODEL",
            Dimension::User => "USER",
            Dimension::Variant => "VARIANT",
        });
    }
    header.extend([
        "COUNT",
        "ERRORS",
        "TOKENS IN/OUT",
        "COST",
        "P50 MS",
        "P95 MS",
        "P99 MS",
    ]);
    let mut lines = table(&header);
    for row in rows {
        let mut line = vec![rfc3339(row.bucket_start.as_ref())];
        for dimension in by {
            line.push(match dimension {
                Dimension::Prompt => row.prompt_name.clone(),
                Dimension::Version => format!("{}@{}", row.prompt_name, row.prompt_version),
                Dimension::Model => row.model.clone(),
                Dimension::User => row.user_id.clone(),
                Dimension::Variant => format!("{}/{}", row.experiment_id, row.variant_id),
            });
        }
        line.extend([
            row.count.to_string(),
            row.errors.to_string(),
            format!("{}/{}", row.input_tokens, row.output_tokens),
            number(row.cost),
            millis(row.latency_p50_ms),
            millis(row.latency_p95_ms),
            millis(row.latency_p99_ms),
        ]);
        lines.add_row(line);
    }
    write_table(out, lines)
}
