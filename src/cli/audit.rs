//! `llmops audit list`: the audit log (ROLE_ADMIN), newest first.

use std::io::{self, Write};

use clap::{Args, Subcommand};

use crate::cli::output::{emit, messages, table, write_table};
use crate::cli::paging::collect_pages;
use crate::cli::values::rfc3339;
use crate::cli::{connect, ClientOptions};
use crate::grpc::convert::timestamp;
use crate::pb;
use crate::pb::auth_service_client::AuthServiceClient;

/// `llmops audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// List audited calls (every call that changes something), newest first.
    List(ListArgs),
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only calls by this actor (a key's name or a certificate identity).
    #[arg(long)]
    actor: Option<String>,
    /// Only calls of this method (`SetPromptLabel` or its full name).
    #[arg(long)]
    method: Option<String>,
    /// Only calls on this resource or under it (`greet` matches `greet/1.0.0`).
    #[arg(long)]
    resource: Option<String>,
    /// Only calls answered at or after this RFC 3339 time.
    #[arg(long)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only calls answered before this RFC 3339 time.
    #[arg(long)]
    until: Option<chrono::DateTime<chrono::Utc>>,
    /// At most this many entries.
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

/// Runs an `llmops audit` command.
pub async fn run(args: AuditArgs, options: &ClientOptions) -> anyhow::Result<()> {
    let AuditCommand::List(list) = args.command;
    let client = AuthServiceClient::new(connect(options).await?);
    let request = pb::ListAuditEventsRequest {
        actor: list.actor.unwrap_or_default(),
        method: list.method.unwrap_or_default(),
        resource: list.resource.unwrap_or_default(),
        since: list.since.map(timestamp),
        until: list.until.map(timestamp),
        ..Default::default()
    };
    let events = collect_pages(Some(list.limit), |page_size, page_token| {
        let mut client = client.clone();
        let request = pb::ListAuditEventsRequest {
            page_size: u32::try_from(page_size).unwrap_or(0),
            page_token,
            ..request.clone()
        };
        async move {
            let page = client.list_audit_events(request).await?.into_inner();
            Ok((page.audit_events, page.next_page_token))
        }
    })
    .await?;
    if options.json {
        return emit(|out| messages(out, &events));
    }
    emit(|out| events_table(out, &events))
}

fn events_table(out: &mut dyn Write, events: &[pb::AuditEvent]) -> io::Result<()> {
    let mut rows = table(&["TIME", "ACTOR", "METHOD", "RESOURCE", "CODE", "REQUEST ID"]);
    for event in events {
        rows.add_row(vec![
            rfc3339(event.time.as_ref()),
            event.actor.clone(),
            event.method.clone(),
            event.resource.clone(),
            event.code.clone(),
            event.request_id.clone(),
        ]);
    }
    write_table(out, rows)
}
