//! `llmops alerts tail`: follows the alert stream, printing one line per event. It
//! resumes from the last sequence it printed, kept in a state file, so a restart of the
//! tail, a dropped connection or a server restart loses nothing and repeats nothing.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio_stream::StreamExt as _;
use tonic::Code;

use super::format::event_line;
use super::{default_state_file, SeverityArg, TypeArg};
use crate::cli::{connect, ClientOptions};
use crate::pb;
use crate::pb::alert_service_client::AlertServiceClient;

const MAX_RECONNECT_WAIT: Duration = Duration::from_secs(10);

/// `llmops alerts tail`.
#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// Only these types (repeatable).
    #[arg(long = "type", value_enum)]
    types: Vec<TypeArg>,
    /// Only alerts at least this severe.
    #[arg(long, value_enum)]
    min_severity: Option<SeverityArg>,
    /// Only alerts from these sources (repeatable).
    #[arg(long = "source")]
    sources: Vec<String>,
    /// Where the last printed sequence is kept [default: under $XDG_STATE_HOME/llmops].
    #[arg(long)]
    state_file: Option<PathBuf>,
    /// Replay every event the server still holds instead of resuming.
    #[arg(long)]
    from_start: bool,
    /// Never colour the output (it is coloured only on a terminal anyway).
    #[arg(long)]
    no_color: bool,
}

pub(crate) async fn run(args: TailArgs, options: &ClientOptions) -> anyhow::Result<()> {
    let state = StateFile(
        args.state_file
            .clone()
            .unwrap_or_else(|| default_state_file(&options.server)),
    );
    let mut cursor = if args.from_start {
        Some(0)
    } else {
        state.read()?
    };
    let use_colour = !args.no_color && std::io::stdout().is_terminal();
    let mut wait = Duration::from_millis(500);
    loop {
        match follow(&args, options, &state, &mut cursor, use_colour).await {
            Ok(()) => eprintln!(
                "the server ended the stream; reconnecting from #{}",
                cursor.unwrap_or(0)
            ),
            Err(Failure::Gap(message)) => {
                eprintln!("warning: {message}\nwarning: run `llmops alerts list` for the current state; continuing live");
                cursor = None;
                state.clear()?;
                continue;
            }
            Err(Failure::Fatal(err)) => return Err(err),
            Err(Failure::Retry(why)) => eprintln!("{why}; retrying in {wait:?}"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_RECONNECT_WAIT);
    }
}

enum Failure {
    /// The server no longer holds the events after our cursor.
    Gap(String),
    /// Connection trouble: try again.
    Retry(String),
    /// Something retrying will not fix (a bad argument, an unwritable state file).
    Fatal(anyhow::Error),
}

async fn follow(
    args: &TailArgs,
    options: &ClientOptions,
    state: &StateFile,
    cursor: &mut Option<u64>,
    use_colour: bool,
) -> Result<(), Failure> {
    let channel = connect(options)
        .await
        .map_err(|err| Failure::Retry(format!("{err:#}")))?;
    let request = pb::SubscribeRequest {
        types: args
            .types
            .iter()
            .map(|t| pb::AlertType::from(*t).into())
            .collect(),
        min_severity: args
            .min_severity
            .map_or(0, |s| pb::AlertSeverity::from(s).into()),
        sources: args.sources.clone(),
        after_sequence: *cursor,
    };
    let mut stream = match AlertServiceClient::new(channel).subscribe(request).await {
        Ok(response) => response.into_inner(),
        Err(status) if status.code() == Code::OutOfRange => {
            return Err(Failure::Gap(status.message().to_owned()))
        }
        Err(status)
            if matches!(
                status.code(),
                Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded
            ) =>
        {
            return Err(Failure::Retry(status.message().to_owned()))
        }
        Err(status) => return Err(Failure::Fatal(crate::cli::status_error(status))),
    };
    while let Some(item) = stream.next().await {
        let event = item
            .map_err(|status| Failure::Retry(format!("the stream broke: {}", status.message())))?;
        if event.kind != pb::AlertEventKind::Heartbeat as i32 {
            print_event(&event, options.json, use_colour).map_err(Failure::Fatal)?;
        }
        // Heartbeats carry a safe checkpoint too: everything up to it was delivered or
        // filtered out.
        if cursor.is_none_or(|c| event.sequence > c) {
            *cursor = Some(event.sequence);
            state.write(event.sequence).map_err(Failure::Fatal)?;
        }
    }
    Ok(())
}

fn print_event(event: &pb::AlertEvent, as_json: bool, use_colour: bool) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if as_json {
        crate::cli::output::message_line(&mut out, event)?;
    } else {
        writeln!(out, "{}", event_line(event, use_colour))?;
    }
    out.flush()?;
    Ok(())
}

/// The last sequence printed, in a small text file written atomically (a crash leaves
/// the old value or the new one, never a torn one).
struct StateFile(PathBuf);

impl StateFile {
    fn read(&self) -> anyhow::Result<Option<u64>> {
        match std::fs::read_to_string(&self.0) {
            Ok(text) => {
                let sequence = text.trim().parse().with_context(|| {
                    format!("state file {} does not hold a sequence", self.0.display())
                })?;
                Ok(Some(sequence))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => {
                Err(err).with_context(|| format!("reading state file {}", self.0.display()))
            }
        }
    }

    fn write(&self, sequence: u64) -> anyhow::Result<()> {
        let directory = self.0.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(directory)
            .with_context(|| format!("creating {}", directory.display()))?;
        let temporary = self.0.with_extension("tmp");
        std::fs::write(&temporary, format!("{sequence}\n"))
            .with_context(|| format!("writing {}", temporary.display()))?;
        std::fs::rename(&temporary, &self.0)
            .with_context(|| format!("replacing {}", self.0.display()))
    }

    fn clear(&self) -> anyhow::Result<()> {
        match std::fs::remove_file(&self.0) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(err).with_context(|| format!("removing {}", self.0.display()))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_round_trips_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile(dir.path().join("nested/tail.seq"));
        assert_eq!(state.read().unwrap(), None);
        state.write(41).unwrap();
        state.write(42).unwrap();
        assert_eq!(state.read().unwrap(), Some(42));
        state.clear().unwrap();
        assert_eq!(state.read().unwrap(), None);
        std::fs::write(&state.0, "garbage").unwrap();
        assert!(state.read().is_err());
    }
}
