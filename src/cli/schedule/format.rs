//! How schedules look: one as `key: value` lines, several as a table, and as JSON for
//! `--json` (the proto's field names; the run template as `llmops eval get --json`
//! prints a run; times as RFC 3339 strings, null when unset).

use std::io::{self, Write};
use std::time::Duration;

use crate::cli::eval::format::prompt_ref;
use crate::cli::eval::metric::spec_text;
use crate::cli::output::{clip, short_duration};
use crate::cli::output::{table, write_table, yes_no};
use crate::cli::values::rfc3339;
use crate::pb;

/// The widest a last error is shown in the table, in characters.
const ERROR_WIDTH: usize = 40;

/// The expression, or what an empty one means.
fn expression(s: &pb::Schedule, short: bool) -> String {
    match (s.schedule.is_empty(), short) {
        (false, _) => s.schedule.clone(),
        (true, true) => "default".to_owned(),
        (true, false) => {
            "default (the server's [evaluation] interval when auto-evaluation is on)".to_owned()
        }
    }
}

/// What the prompt trigger watches: `no`, `active version` or `label <L>`.
fn prompt_trigger(s: &pb::Schedule) -> String {
    if !s.on_prompt_change {
        "no".to_owned()
    } else if s.watch_label.is_empty() {
        "active version".to_owned()
    } else {
        format!("label {}", s.watch_label)
    }
}

/// When the next timed run is due, or why there is none.
fn next_run(s: &pb::Schedule) -> String {
    match &s.next_run_at {
        Some(time) => rfc3339(Some(time)),
        None if s.paused => "none (paused)".to_owned(),
        None => "none (no timed trigger)".to_owned(),
    }
}

fn or_none(text: &str, none: &str) -> String {
    if text.is_empty() {
        none.to_owned()
    } else {
        text.to_owned()
    }
}

/// One schedule: its triggers, what each run evaluates, its state and its history.
pub(super) fn schedule_details(out: &mut dyn Write, s: &pb::Schedule) -> io::Result<()> {
    let mut fields = table(&[]);
    let mut field = |key: &str, value: String| {
        fields.add_row(vec![format!("{key}:"), value]);
    };
    field("id", s.id.clone());
    field("schedule", expression(s, false));
    field("on prompt change", prompt_trigger(s));
    if let Some(run) = &s.run_template {
        field("prompt", prompt_ref(run));
        field("dataset", run.dataset_id.clone());
        field("model", run.model.clone());
        let metrics: Vec<String> = run.metrics.iter().map(spec_text).collect();
        field("metrics", metrics.join(", "));
        if !run.name.is_empty() {
            field("run name", run.name.clone());
        }
        if run.concurrency > 0 {
            field("concurrency", run.concurrency.to_string());
        }
        if let Some(timeout) = run.sample_timeout.and_then(|d| Duration::try_from(d).ok()) {
            field("sample timeout", short_duration(timeout));
        }
        if !run.baseline_run_id.is_empty() {
            field("baseline", run.baseline_run_id.clone());
        }
    }
    field("paused", yes_no(s.paused).to_owned());
    field("next run", next_run(s));
    field("last run", or_none(&s.last_run_id, "none yet"));
    field("runs started", s.runs_started.to_string());
    field("skipped ticks", s.skipped_ticks.to_string());
    field("last error", or_none(&s.last_error, "none"));
    if s.on_prompt_change && !s.watched_version.is_empty() {
        field("watched version", s.watched_version.clone());
    }
    field("created", rfc3339(s.created_at.as_ref()));
    if s.updated_at.is_some() {
        field("updated", rfc3339(s.updated_at.as_ref()));
    }
    write_table(out, fields)
}

/// The `list` table.
pub(super) fn schedule_table(out: &mut dyn Write, schedules: &[pb::Schedule]) -> io::Result<()> {
    let mut rows = table(&[
        "ID",
        "PROMPT",
        "DATASET",
        "SCHEDULE",
        "ON CHANGE",
        "PAUSED",
        "NEXT RUN",
        "LAST RUN",
        "SKIPPED",
        "LAST ERROR",
    ]);
    for s in schedules {
        let template = s.run_template.clone().unwrap_or_default();
        rows.add_row(vec![
            s.id.clone(),
            prompt_ref(&template),
            template.dataset_id,
            expression(s, true),
            prompt_trigger(s),
            yes_no(s.paused).to_owned(),
            s.next_run_at
                .as_ref()
                .map_or_else(|| "-".to_owned(), |t| rfc3339(Some(t))),
            or_none(&s.last_run_id, "-"),
            s.skipped_ticks.to_string(),
            clip(&s.last_error, ERROR_WIDTH),
        ]);
    }
    write_table(out, rows)
}

#[cfg(test)]
mod tests {
    use prost_types::Timestamp;

    use super::*;
    use crate::cli::testing::text;

    fn schedule() -> pb::Schedule {
        pb::Schedule {
            id: "s1".into(),
            run_template: Some(pb::Run {
                dataset_id: "qa".into(),
                prompt_name: "greet".into(),
                prompt_label: "production".into(),
                model: "echo".into(),
                metrics: vec![pb::MetricConfig {
                    name: "f1".into(),
                    scorer: "token_f1".into(),
                    threshold: Some(0.5),
                    params: None,
                }],
                sample_timeout: Some(prost_types::Duration {
                    seconds: 90,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            schedule: "@every 1h".into(),
            on_prompt_change: true,
            watch_label: "staging".into(),
            next_run_at: Some(Timestamp {
                seconds: 1_767_323_045,
                nanos: 0,
            }),
            last_run_id: "r9".into(),
            skipped_ticks: 2,
            runs_started: 7,
            last_error: "dataset qa is empty".into(),
            created_at: Some(Timestamp {
                seconds: 1_767_000_000,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn details_show_triggers_template_and_history() {
        let out = text(|out| schedule_details(out, &schedule()));
        for line in [
            "id:                s1\n",
            "schedule:          @every 1h\n",
            "on prompt change:  label staging\n",
            "prompt:            greet@production\n",
            "dataset:           qa\n",
            "model:             echo\n",
            "metrics:           f1=token_f1:0.5\n",
            "sample timeout:    1m30s\n",
            "paused:            no\n",
            "next run:          2026-01-02T03:04:05Z\n",
            "last run:          r9\n",
            "runs started:      7\n",
            "skipped ticks:     2\n",
            "last error:        dataset qa is empty\n",
        ] {
            assert!(out.contains(line), "no {line:?} in\n{out}");
        }
        assert!(!out.contains("concurrency:"), "{out}");
        assert!(!out.contains("updated:"), "{out}");
    }

    #[test]
    fn details_say_what_is_missing() {
        let s = pb::Schedule {
            id: "s2".into(),
            paused: true,
            ..Default::default()
        };
        let out = text(|out| schedule_details(out, &s));
        assert!(
            out.contains("schedule:          default (the server's [evaluation] interval"),
            "{out}"
        );
        assert!(out.contains("on prompt change:  no\n"), "{out}");
        assert!(out.contains("paused:            yes\n"), "{out}");
        assert!(out.contains("next run:          none (paused)\n"), "{out}");
        assert!(out.contains("last run:          none yet\n"), "{out}");
        assert!(out.contains("last error:        none\n"), "{out}");
    }

    #[test]
    fn the_table_has_a_row_per_schedule() {
        let other = pb::Schedule {
            id: "s2".into(),
            on_prompt_change: true,
            paused: true,
            ..Default::default()
        };
        let out = text(|out| schedule_table(out, &[schedule(), other]));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("ID  PROMPT"), "{out}");
        for cell in [
            "greet@production",
            "@every 1h",
            "label staging",
            "2026-01-02T03:04:05Z",
            "r9",
            "dataset qa is empty",
        ] {
            assert!(lines[1].contains(cell), "no {cell:?} in {}", lines[1]);
        }
        for cell in ["default", "active version", "yes"] {
            assert!(lines[2].contains(cell), "no {cell:?} in {}", lines[2]);
        }
    }
}
