//! `llmops migrate --from URL --to URL`: moves a deployment between databases (run with
//! the servers stopped, like a schema migration, not through the API).

use std::io::Write as _;

use clap::Args;
use llmops_store::{copy_database, CopyProgress, DatabaseUrl, StorageOptions};

/// Copy a whole deployment into an empty database and verify it.
#[derive(Debug, Args)]
#[command(
    long_about = "Copy everything (prompts with their ids, versions, labels and history; \
    the event feeds with their sequence numbers, so subscribers resume without a gap; \
    alerts and the webhook outbox; experiments with exposures and records; datasets with \
    every version; runs, results, schedules and gates) from one database into an empty \
    one, then verify row counts and dataset hashes on both sides.\n\n\
    Stop the servers on the source first. The target is migrated to the current schema; \
    a target that already holds data is refused, and a failed copy leaves it empty.\n\n\
    Example: llmops migrate --from sqlite:///var/lib/llmops/llmops.db \
    --to postgres://llmops@db.internal/llmops"
)]
pub struct MigrateArgs {
    /// The database to copy: sqlite:///path/llmops.db or postgres://user@host/db.
    #[arg(long)]
    from: String,
    /// The empty database to copy into.
    #[arg(long)]
    to: String,
    /// The most connections to a PostgreSQL database.
    #[arg(long, default_value_t = 4)]
    max_connections: u32,
}

/// Runs the copy, printing progress to stderr and the summary to stdout.
pub async fn run(args: MigrateArgs, json: bool) -> anyhow::Result<()> {
    let from = DatabaseUrl::parse(&args.from)?;
    let to = DatabaseUrl::parse(&args.to)?;
    if from == to {
        anyhow::bail!("--from and --to name the same database ({from})");
    }
    eprintln!("copying {from} -> {to}");
    let options = StorageOptions {
        max_connections: args.max_connections,
        ..StorageOptions::default()
    };
    let mut stderr = std::io::stderr();
    let report = copy_database(&from, &to, options, |step| {
        let _ = match step {
            CopyProgress::Rows { table, rows, total } => {
                writeln!(stderr, "  {table}: {rows}/{total} rows")
            }
            CopyProgress::Verifying => writeln!(stderr, "verifying row counts and dataset hashes"),
        };
    })
    .await?;
    let rows: u64 = report.tables.iter().map(|(_, rows)| rows).sum();
    if json {
        let tables: serde_json::Map<String, serde_json::Value> = report
            .tables
            .iter()
            .map(|(table, rows)| ((*table).to_owned(), (*rows).into()))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "from": from.to_string(),
                "to": to.to_string(),
                "rows": rows,
                "tables": tables,
                "datasetsVerified": report.datasets_verified,
            })
        );
    } else {
        println!(
            "copied {rows} rows in {} tables; verified row counts and {} dataset hashes",
            report.tables.len(),
            report.datasets_verified
        );
    }
    Ok(())
}
