//! Following a run to its end with WatchRun (`llmops eval run --watch`): a live progress
//! bar when stdout is a terminal, one plain line per update (at most one a second) when
//! it is not, and one JSON object per update with `--json`.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use super::commands::Client;
use super::format::{has_ended, progress_line, status_name};
use crate::cli::output::{emit, message_line};
use crate::cli::output::{ratio, short_duration};
use crate::cli::status_error;
use crate::pb;

/// The least time between two plain progress lines (the final state always prints).
const LINE_INTERVAL: Duration = Duration::from_secs(1);

/// How often the bar redraws between updates (spinner, elapsed time, ETA).
const TICK: Duration = Duration::from_millis(200);

/// Follows run `run_id` until it ends, showing its progress, and returns its final
/// state.
pub(crate) async fn watch(
    client: &mut Client,
    run_id: &str,
    as_json: bool,
) -> anyhow::Result<pb::Run> {
    let mut stream = client
        .watch_run(pb::WatchRunRequest {
            run_id: run_id.to_owned(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let mut display = Display::new(as_json);
    let mut last = None;
    let followed = async {
        while let Some(update) = stream.message().await.map_err(status_error)? {
            let run = update.run.context("the server sent no run")?;
            display.update(&run)?;
            let ended = has_ended(run.status);
            last = Some(run);
            if ended {
                break;
            }
        }
        anyhow::Ok(())
    }
    .await;
    display.finish();
    followed?;
    if let Some(run) = last.filter(|run| has_ended(run.status)) {
        return Ok(run);
    }
    // The stream ended early (a server shutting down): the run's state now, if final.
    let run = client
        .get_run(pb::GetRunRequest {
            run_id: run_id.to_owned(),
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .run
        .context("the server sent no run")?;
    if !has_ended(run.status) {
        bail!(
            "the server stopped the watch before run {run_id} ended (it is {}); follow it with `llmops eval get {run_id}`",
            status_name(run.status)
        );
    }
    Ok(run)
}

/// How updates are shown.
enum Display {
    /// One JSON object per update.
    Json,
    /// A live bar on a terminal.
    Bar(ProgressBar),
    /// Plain lines for logs.
    Lines(Lines),
}

impl Display {
    fn new(as_json: bool) -> Self {
        if as_json {
            Self::Json
        } else if std::io::stdout().is_terminal() {
            Self::Bar(bar())
        } else {
            Self::Lines(Lines::default())
        }
    }

    fn update(&mut self, run: &pb::Run) -> anyhow::Result<()> {
        let progress = run.progress.unwrap_or_default();
        match self {
            Self::Json => emit(|out| message_line(out, run)),
            Self::Bar(bar) => {
                bar.set_length(progress.total);
                bar.set_position(progress.done);
                bar.set_message(bar_message(&progress));
                Ok(())
            }
            Self::Lines(lines) => {
                let now = Instant::now();
                let eta = lines.eta.estimate(now, progress.done, progress.total);
                if lines.should_print(now, progress.done, has_ended(run.status)) {
                    let line = progress_line(&progress, eta);
                    emit(|out| writeln!(out, "{line}"))?;
                }
                Ok(())
            }
        }
    }

    /// Clears the bar, so that what follows starts on a clean line.
    fn finish(&self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// A bar: spinner, bar, done/total, pass rate so far, errored, elapsed and ETA.
fn bar() -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}, eta {short_eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .with_key(
        "short_eta",
        |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let eta = match state.len() {
                Some(len) if state.pos() > 0 && state.pos() < len => short_duration(state.eta()),
                Some(len) if len > 0 && state.pos() >= len => "0s".to_owned(),
                _ => "-".to_owned(),
            };
            let _ = w.write_str(&eta);
        },
    )
    .progress_chars("=> ");
    let bar =
        ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stdout()).with_style(style);
    bar.set_message(bar_message(&pb::RunProgress::default()));
    bar.enable_steady_tick(TICK);
    bar
}

/// `pass rate 87.5% (35/40), 2 errored`.
fn bar_message(p: &pb::RunProgress) -> String {
    let mut message = format!(
        "pass rate {} ({}/{})",
        ratio(p.passed, p.done),
        p.passed,
        p.done
    );
    let _ = write!(message, ", {} errored", p.errored);
    message
}

/// Plain progress lines: when the last one was printed, and the ETA estimate.
#[derive(Default)]
struct Lines {
    last: Option<(Instant, u64)>,
    eta: Eta,
}

impl Lines {
    /// Whether to print now: the first update, the final one, and otherwise a change at
    /// least [`LINE_INTERVAL`] after the last line.
    fn should_print(&mut self, now: Instant, done: u64, ended: bool) -> bool {
        let print = match self.last {
            None => true,
            Some(_) if ended => true,
            Some((at, last_done)) => done != last_done && now.duration_since(at) >= LINE_INTERVAL,
        };
        if print {
            self.last = Some((now, done));
        }
        print
    }
}

/// The time left, from the rate of samples finished since the first update seen.
#[derive(Default)]
struct Eta {
    first: Option<(Instant, u64)>,
}

impl Eta {
    fn estimate(&mut self, now: Instant, done: u64, total: u64) -> Option<Duration> {
        let (since, done_then) = *self.first.get_or_insert((now, done));
        remaining_time(
            now.duration_since(since),
            done.saturating_sub(done_then),
            total.saturating_sub(done),
        )
    }
}

/// How long `remaining` samples take when `finished` took `elapsed`; `None` before
/// anything finished.
fn remaining_time(elapsed: Duration, finished: u64, remaining: u64) -> Option<Duration> {
    if finished == 0 || elapsed.is_zero() {
        return None;
    }
    Some(elapsed.mul_f64(remaining as f64 / finished as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eta_follows_the_rate_since_the_first_update() {
        assert_eq!(remaining_time(Duration::from_secs(10), 0, 50), None);
        assert_eq!(
            remaining_time(Duration::from_secs(10), 20, 50),
            Some(Duration::from_secs(25))
        );
        assert_eq!(
            remaining_time(Duration::from_secs(10), 20, 0),
            Some(Duration::ZERO)
        );
        let mut eta = Eta::default();
        let start = Instant::now();
        // Watching a run already at 40: only what finishes from then on counts.
        assert_eq!(eta.estimate(start, 40, 100), None);
        assert_eq!(
            eta.estimate(start + Duration::from_secs(6), 70, 100),
            Some(Duration::from_secs(6))
        );
    }

    #[test]
    fn plain_lines_are_at_most_one_a_second_and_always_the_last() {
        let mut lines = Lines::default();
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        assert!(lines.should_print(at(0), 0, false));
        assert!(!lines.should_print(at(500), 5, false));
        assert!(lines.should_print(at(1000), 10, false));
        // No change, no line.
        assert!(!lines.should_print(at(3000), 10, false));
        assert!(lines.should_print(at(3100), 10, true));
    }

    #[test]
    fn the_bar_message_shows_the_pass_rate_so_far() {
        let p = pb::RunProgress {
            total: 100,
            done: 40,
            passed: 35,
            failed: 3,
            errored: 2,
        };
        assert_eq!(bar_message(&p), "pass rate 87.5% (35/40), 2 errored");
        assert_eq!(
            bar_message(&pb::RunProgress::default()),
            "pass rate - (0/0), 0 errored"
        );
    }
}
