//! How runs, their results, per-sample results and comparisons look on a terminal.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use super::metric::spec_text;
use crate::cli::output::{
    clip, cost, duration_ms, millis, number, p_value, percent, points, ratio, short_duration,
    signed, signed_percent, table, write_table, Fields,
};
use crate::cli::values::rfc3339;
use crate::pb;

/// The widest an output or a reason is shown in the results table, in characters.
const CELL_WIDTH: usize = 40;

pub(crate) fn status_name(value: i32) -> &'static str {
    match pb::RunStatus::try_from(value) {
        Ok(pb::RunStatus::Pending) => "pending",
        Ok(pb::RunStatus::Running) => "running",
        Ok(pb::RunStatus::Completed) => "completed",
        Ok(pb::RunStatus::Failed) => "failed",
        Ok(pb::RunStatus::Cancelled) => "cancelled",
        _ => "unspecified",
    }
}

/// Whether a run has ended (completed, failed or cancelled).
pub(crate) fn has_ended(status: i32) -> bool {
    matches!(
        pb::RunStatus::try_from(status),
        Ok(pb::RunStatus::Completed | pb::RunStatus::Failed | pb::RunStatus::Cancelled)
    )
}

/// The prompt a run renders: `name@version`, else `name@label`, else `name` (its
/// active version).
pub(crate) fn prompt_ref(run: &pb::Run) -> String {
    if !run.prompt_version.is_empty() {
        format!("{}@{}", run.prompt_name, run.prompt_version)
    } else if !run.prompt_label.is_empty() {
        format!("{}@{}", run.prompt_name, run.prompt_label)
    } else {
        run.prompt_name.clone()
    }
}

/// `40/100 done: 35 passed, 3 failed, 2 errored`.
pub(crate) fn progress_text(p: &pb::RunProgress) -> String {
    format!(
        "{}/{} done: {} passed, {} failed, {} errored",
        p.done, p.total, p.passed, p.failed, p.errored
    )
}

/// One line of progress for logs: `40/100 done (40.0%), pass rate 87.5% (35/40), 2
/// errored, eta 12s`.
pub(crate) fn progress_line(p: &pb::RunProgress, eta: Option<Duration>) -> String {
    let share = if p.total == 0 {
        String::new()
    } else {
        format!(" ({})", percent(p.done as f64 / p.total as f64))
    };
    let mut line = format!(
        "{}/{} done{share}, pass rate {} ({}/{}), {} errored",
        p.done,
        p.total,
        ratio(p.passed, p.done),
        p.passed,
        p.done,
        p.errored
    );
    if let Some(eta) = eta {
        line.push_str(", eta ");
        line.push_str(&short_duration(eta));
    }
    line
}

/// The `list` table.
pub(crate) fn run_table(out: &mut dyn Write, runs: &[pb::Run]) -> io::Result<()> {
    let mut rows = table(&[
        "ID",
        "NAME",
        "PROMPT",
        "MODEL",
        "STATUS",
        "PASS RATE",
        "CREATED",
    ]);
    for run in runs {
        let status = match &run.progress {
            Some(p) if run.status == pb::RunStatus::Running as i32 => {
                format!("running {}/{}", p.done, p.total)
            }
            _ => status_name(run.status).to_owned(),
        };
        let pass_rate = match (&run.results, &run.progress) {
            (Some(results), _) => percent(results.pass_rate),
            (None, Some(p)) if p.done > 0 => format!("{} so far", ratio(p.passed, p.done)),
            _ => String::new(),
        };
        rows.add_row(vec![
            run.id.clone(),
            run.name.clone(),
            prompt_ref(run),
            run.model.clone(),
            status,
            pass_rate,
            rfc3339(run.created_at.as_ref()),
        ]);
    }
    write_table(out, rows)
}

/// One run: what it evaluates, how far it got and, once it has ended, its results.
pub(crate) fn run_details(out: &mut dyn Write, run: &pb::Run) -> io::Result<()> {
    let mut fields = Fields::new();
    fields.add("id", run.id.clone(), true);
    fields.add("name", run.name.clone(), true);
    fields.add("status", status_name(run.status).to_owned(), true);
    fields.add("error", run.error.clone(), false);
    fields.add("description", run.description.clone(), false);
    let prompt = if !run.prompt_version.is_empty() {
        format!("{} version {}", run.prompt_name, run.prompt_version)
    } else if !run.prompt_label.is_empty() {
        format!("{} label {}", run.prompt_name, run.prompt_label)
    } else {
        format!("{} (active version)", run.prompt_name)
    };
    fields.add("prompt", prompt, true);
    let dataset = if run.dataset_version == 0 {
        format!("{} (version resolved at start)", run.dataset_id)
    } else if run.dataset_hash.is_empty() {
        format!("{} version {}", run.dataset_id, run.dataset_version)
    } else {
        format!(
            "{} version {} (content hash {})",
            run.dataset_id, run.dataset_version, run.dataset_hash
        )
    };
    fields.add("dataset", dataset, true);
    let model = if run.submitted_outputs {
        format!("{} (outputs submitted by the client)", run.model)
    } else if !run.requested_model.is_empty() && run.requested_model != run.model {
        format!("{} (selected for {})", run.model, run.requested_model)
    } else {
        run.model.clone()
    };
    fields.add("model", model, true);
    let metrics: Vec<String> = run.metrics.iter().map(spec_text).collect();
    fields.add("metrics", metrics.join(", "), false);
    if !run.submitted_outputs {
        fields.add(
            "concurrency",
            match run.concurrency {
                0 => "8 (default)".to_owned(),
                n => n.to_string(),
            },
            true,
        );
        fields.add(
            "sample timeout",
            run.sample_timeout.as_ref().map_or_else(
                || "120s (default)".to_owned(),
                |d| short_duration(Duration::from_secs_f64(duration_ms(d).max(0.0) / 1000.0)),
            ),
            true,
        );
    }
    fields.add("baseline", run.baseline_run_id.clone(), false);
    fields.add("compared with", run.compared_with_run_id.clone(), false);
    fields.add("created", rfc3339(run.created_at.as_ref()), false);
    fields.add("started", rfc3339(run.started_at.as_ref()), false);
    fields.add("finished", rfc3339(run.finished_at.as_ref()), false);
    if let Some(p) = &run.progress {
        if p.total > 0 || p.done > 0 {
            fields.add("progress", progress_text(p), true);
        }
    }
    fields.write(out)?;
    if let Some(results) = &run.results {
        writeln!(out)?;
        results_summary(out, results)?;
    }
    Ok(())
}

/// A run's results: counts and pass rate, per-metric statistics, latency, tokens, cost
/// and the failure reasons, most frequent first.
pub(crate) fn results_summary(out: &mut dyn Write, r: &pb::RunResults) -> io::Result<()> {
    writeln!(
        out,
        "results: {} sample{}: {} passed, {} failed, {} errored; pass rate {}",
        r.total,
        if r.total == 1 { "" } else { "s" },
        r.passed,
        r.failed,
        r.errored,
        percent(r.pass_rate)
    )?;
    if r.total == 0 {
        return Ok(());
    }
    if !r.metrics.is_empty() {
        writeln!(out)?;
        let mut rows = table(&["METRIC", "MEAN", "STD", "MIN", "MAX", "PASS RATE", "N"]);
        for (name, m) in sorted(&r.metrics) {
            // Without scores the numbers are placeholders: leave them out.
            let value = |x: f64| {
                if m.count == 0 {
                    String::new()
                } else {
                    number(x)
                }
            };
            rows.add_row(vec![
                name.clone(),
                value(m.mean),
                value(m.std),
                value(m.min),
                value(m.max),
                if m.count == 0 {
                    String::new()
                } else {
                    percent(m.pass_rate)
                },
                m.count.to_string(),
            ]);
        }
        write_table(out, rows)?;
    }
    writeln!(out)?;
    let mut fields = table(&[]);
    if let Some(l) = &r.latency {
        fields.add_row(vec![
            "latency:".to_owned(),
            format!(
                "p50 {} ms, p95 {} ms, p99 {} ms (mean {} ms, max {} ms)",
                millis(l.p50_ms),
                millis(l.p95_ms),
                millis(l.p99_ms),
                millis(l.mean_ms),
                millis(l.max_ms)
            ),
        ]);
    }
    let tokens = r.tokens.unwrap_or_default();
    fields.add_row(vec![
        "tokens:".to_owned(),
        format!("{} in, {} out", tokens.input, tokens.output),
    ]);
    fields.add_row(vec!["cost:".to_owned(), cost(r.cost)]);
    write_table(out, fields)?;
    if !r.failure_reasons.is_empty() {
        writeln!(out, "\nfailure reasons:")?;
        let mut reasons: Vec<_> = r.failure_reasons.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let mut rows = table(&["COUNT", "REASON"]);
        for (reason, count) in reasons {
            rows.add_row(vec![count.to_string(), reason.clone()]);
        }
        write_table(out, rows)?;
    }
    Ok(())
}

/// The `results` table: one row per sample.
pub(crate) fn sample_table(out: &mut dyn Write, results: &[pb::SampleResult]) -> io::Result<()> {
    let mut rows = table(&[
        "SAMPLE",
        "RESULT",
        "SCORES",
        "LATENCY MS",
        "ERROR OR REASON",
        "OUTPUT",
    ]);
    for r in results {
        let outcome = if !r.error.is_empty() {
            "error"
        } else if r.passed {
            "pass"
        } else {
            "fail"
        };
        let scores: Vec<String> = sorted(&r.scores)
            .into_iter()
            .map(|(name, score)| format!("{name}={}", number(*score)))
            .collect();
        let reason = if r.error.is_empty() {
            &r.failure_reason
        } else {
            &r.error
        };
        rows.add_row(vec![
            r.sample_id.clone(),
            outcome.to_owned(),
            scores.join(" "),
            r.latency
                .as_ref()
                .map(|d| millis(duration_ms(d)))
                .unwrap_or_default(),
            clip(reason, CELL_WIDTH),
            clip(&r.output, CELL_WIDTH),
        ]);
    }
    write_table(out, rows)
}

/// A comparison: the summary, the pass rates, each metric's change, the regressed and
/// improved metrics, and the samples that changed outcome with McNemar's p.
pub(crate) fn comparison(
    out: &mut dyn Write,
    baseline: &str,
    candidate: &str,
    c: &pb::CompareRunsResponse,
) -> io::Result<()> {
    writeln!(out, "baseline {baseline}, candidate {candidate}")?;
    if !c.summary.is_empty() {
        writeln!(out, "{}", c.summary)?;
    }
    writeln!(
        out,
        "\npass rate: {} -> {} ({})",
        percent(c.baseline_pass_rate),
        percent(c.candidate_pass_rate),
        points(c.pass_rate_change)
    )?;
    if !c.metric_changes.is_empty() {
        writeln!(out)?;
        let mut rows = table(&["METRIC", "BASELINE", "CANDIDATE", "CHANGE", "RELATIVE"]);
        for (name, m) in sorted(&c.metric_changes) {
            rows.add_row(vec![
                name.clone(),
                number(m.baseline),
                number(m.candidate),
                signed(m.absolute_change),
                m.relative_change
                    .map_or_else(|| "n/a".to_owned(), signed_percent),
            ]);
        }
        write_table(out, rows)?;
    }
    let list = |names: &[String]| {
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    };
    writeln!(out)?;
    let mut fields = table(&[]);
    fields.add_row(vec!["regressed:".to_owned(), list(&c.regressed_metrics)]);
    fields.add_row(vec!["improved:".to_owned(), list(&c.improved_metrics)]);
    fields.add_row(vec![
        "newly failing:".to_owned(),
        c.newly_failing.len().to_string(),
    ]);
    fields.add_row(vec![
        "newly passing:".to_owned(),
        c.newly_passing.len().to_string(),
    ]);
    fields.add_row(vec![
        "McNemar p:".to_owned(),
        c.mcnemar_p_value.map_or_else(
            || "n/a (the runs are not over the same dataset)".to_owned(),
            p_value,
        ),
    ]);
    write_table(out, fields)
}

/// A map's entries sorted by key.
fn sorted<V>(map: &BTreeMap<String, V>) -> Vec<(&String, &V)> {
    map.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::testing::text;

    fn results() -> pb::RunResults {
        pb::RunResults {
            total: 10,
            passed: 7,
            failed: 2,
            errored: 1,
            pass_rate: 0.7,
            metrics: [
                (
                    "f1".to_owned(),
                    pb::MetricSummary {
                        mean: 0.81234,
                        std: 0.1,
                        count: 9,
                        min: 0.25,
                        max: 1.0,
                        pass_rate: 7.0 / 9.0,
                    },
                ),
                (
                    "exact".to_owned(),
                    pb::MetricSummary {
                        mean: 0.5,
                        count: 9,
                        max: 1.0,
                        pass_rate: 0.5,
                        ..Default::default()
                    },
                ),
            ]
            .into(),
            latency: Some(pb::LatencySummary {
                p50_ms: 120.0,
                p95_ms: 300.26,
                p99_ms: 450.0,
                mean_ms: 150.5,
                max_ms: 500.0,
            }),
            tokens: Some(pb::TokenUsage {
                input: 1200,
                output: 300,
            }),
            cost: 0.0125,
            failure_reasons: [
                ("timeout".to_owned(), 1),
                ("exact_match below 0.7".to_owned(), 2),
            ]
            .into(),
        }
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(0.0), "0");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.123456), "0.1235");
        assert_eq!(number(-0.00001), "0");
        assert_eq!(signed(0.05), "+0.05");
        assert_eq!(signed(-0.25), "-0.25");
        assert_eq!(signed(0.0), "0");
        assert_eq!(percent(0.875), "87.5%");
        assert_eq!(percent(1.0), "100.0%");
        assert_eq!(signed_percent(0.0626), "+6.3%");
        assert_eq!(signed_percent(-0.12), "-12.0%");
        assert_eq!(points(0.05), "+5.0 points");
        assert_eq!(points(-0.005), "-0.5 points");
        assert_eq!(ratio(35, 40), "87.5%");
        assert_eq!(ratio(0, 0), "-");
        assert_eq!(millis(120.0), "120");
        assert_eq!(millis(300.26), "300.3");
        assert_eq!(millis(3.46), "3.46");
        assert_eq!(millis(0.0043), "0.004");
        assert_eq!(millis(0.0), "0");
        assert_eq!(cost(0.0125), "0.0125");
        assert_eq!(cost(0.0), "0");
        assert_eq!(p_value(0.00001), "<0.0001");
        assert_eq!(p_value(0.10937), "0.1094");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(Duration::ZERO), "0s");
        assert_eq!(short_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(short_duration(Duration::from_secs(45)), "45s");
        assert_eq!(short_duration(Duration::from_secs(125)), "2m05s");
        assert_eq!(short_duration(Duration::from_secs(120)), "2m");
        assert_eq!(short_duration(Duration::from_secs(3720)), "1h02m");
        assert_eq!(short_duration(Duration::from_secs(7230)), "2h");
        let d = prost_types::Duration {
            seconds: 1,
            nanos: 250_000_000,
        };
        assert_eq!(duration_ms(&d), 1250.0);
    }

    #[test]
    fn progress_reads_as_one_line() {
        let p = pb::RunProgress {
            total: 100,
            done: 40,
            passed: 35,
            failed: 3,
            errored: 2,
        };
        assert_eq!(
            progress_line(&p, Some(Duration::from_secs(12))),
            "40/100 done (40.0%), pass rate 87.5% (35/40), 2 errored, eta 12s"
        );
        assert_eq!(
            progress_line(&pb::RunProgress::default(), None),
            "0/0 done, pass rate - (0/0), 0 errored"
        );
        assert_eq!(
            progress_text(&p),
            "40/100 done: 35 passed, 3 failed, 2 errored"
        );
    }

    #[test]
    fn prompts_read_with_their_version_or_label() {
        let mut run = pb::Run {
            prompt_name: "greet".into(),
            ..Default::default()
        };
        assert_eq!(prompt_ref(&run), "greet");
        run.prompt_label = "production".into();
        assert_eq!(prompt_ref(&run), "greet@production");
        run.prompt_version = "1.2.0".into();
        assert_eq!(prompt_ref(&run), "greet@1.2.0");
    }

    #[test]
    fn results_show_counts_metrics_latency_and_reasons() {
        let out = text(|out| results_summary(out, &results()));
        assert!(
            out.starts_with(
                "results: 10 samples: 7 passed, 2 failed, 1 errored; pass rate 70.0%\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("exact   0.5     0    0     1    50.0%      9"),
            "{out}"
        );
        assert!(
            out.contains("f1      0.8123  0.1  0.25  1    77.8%      9"),
            "{out}"
        );
        assert!(
            out.contains(
                "latency:  p50 120 ms, p95 300.3 ms, p99 450 ms (mean 150.5 ms, max 500 ms)"
            ),
            "{out}"
        );
        assert!(out.contains("tokens:   1200 in, 300 out\n"), "{out}");
        assert!(out.contains("cost:     0.0125\n"), "{out}");
        assert!(
            out.ends_with(
                "failure reasons:\nCOUNT  REASON\n2      exact_match below 0.7\n1      timeout\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn details_show_versions_progress_and_results() {
        let run = pb::Run {
            id: "r1".into(),
            name: "greet on qa".into(),
            dataset_id: "qa".into(),
            dataset_version: 3,
            dataset_hash: "abc".into(),
            prompt_name: "greet".into(),
            prompt_version: "1.2.0".into(),
            model: "echo".into(),
            metrics: vec![pb::MetricConfig {
                name: "f1".into(),
                scorer: "token_f1".into(),
                threshold: Some(0.5),
                params: None,
            }],
            status: pb::RunStatus::Completed as i32,
            progress: Some(pb::RunProgress {
                total: 10,
                done: 10,
                passed: 7,
                failed: 2,
                errored: 1,
            }),
            results: Some(results()),
            ..Default::default()
        };
        let out = text(|out| run_details(out, &run));
        assert!(out.contains("status:          completed\n"), "{out}");
        assert!(
            out.contains("prompt:          greet version 1.2.0\n"),
            "{out}"
        );
        assert!(
            out.contains("dataset:         qa version 3 (content hash abc)\n"),
            "{out}"
        );
        assert!(out.contains("metrics:         f1=token_f1:0.5\n"), "{out}");
        assert!(out.contains("concurrency:     8 (default)\n"), "{out}");
        assert!(out.contains("sample timeout:  120s (default)\n"), "{out}");
        assert!(
            out.contains("progress:        10/10 done: 7 passed, 2 failed, 1 errored\n"),
            "{out}"
        );
        assert!(out.contains("\nresults: 10 samples"), "{out}");
    }

    #[test]
    fn the_list_shows_pass_rates_or_progress() {
        let runs = [
            pb::Run {
                id: "r2".into(),
                prompt_name: "p".into(),
                status: pb::RunStatus::Running as i32,
                progress: Some(pb::RunProgress {
                    total: 10,
                    done: 4,
                    passed: 3,
                    ..Default::default()
                }),
                ..Default::default()
            },
            pb::Run {
                id: "r1".into(),
                prompt_name: "p".into(),
                prompt_version: "1".into(),
                status: pb::RunStatus::Completed as i32,
                results: Some(results()),
                ..Default::default()
            },
        ];
        let out = text(|out| run_table(out, &runs));
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].contains("running 4/10  75.0% so far"), "{out}");
        assert!(
            lines[2].contains("p@1") && lines[2].contains("completed     70.0%"),
            "{out}"
        );
    }

    #[test]
    fn sample_rows_show_the_outcome_scores_and_the_reason() {
        let results = [
            pb::SampleResult {
                sample_id: "s1".into(),
                output: "a long\noutput that goes on and on and on and on and on".into(),
                scores: [("f1".to_owned(), 0.5), ("exact".to_owned(), 0.0)].into(),
                latency: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 12_500_000,
                }),
                failure_reason: "exact below 0.7".into(),
                ..Default::default()
            },
            pb::SampleResult {
                sample_id: "s2".into(),
                error: "timeout".into(),
                ..Default::default()
            },
        ];
        let out = text(|out| sample_table(out, &results));
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[1].starts_with("s1      fail    exact=0 f1=0.5  12.5        exact below 0.7"),
            "{out}"
        );
        assert!(
            lines[1].ends_with("a long output that goes on and on and o…"),
            "{out}"
        );
        assert!(lines[2].starts_with("s2      error"), "{out}");
        assert!(lines[2].contains("timeout"), "{out}");
    }

    #[test]
    fn comparisons_show_changes_and_n_a_relative_changes() {
        let c = pb::CompareRunsResponse {
            pass_rate_change: 0.05,
            baseline_pass_rate: 0.8,
            candidate_pass_rate: 0.85,
            metric_changes: [
                (
                    "exact".to_owned(),
                    pb::MetricChange {
                        baseline: 0.8,
                        candidate: 0.85,
                        absolute_change: 0.05,
                        relative_change: Some(0.0626),
                    },
                ),
                (
                    "f1".to_owned(),
                    pb::MetricChange {
                        baseline: 0.0,
                        candidate: 0.2,
                        absolute_change: 0.2,
                        relative_change: None,
                    },
                ),
            ]
            .into(),
            improved_metrics: vec!["exact".into(), "f1".into()],
            newly_failing: vec!["s1".into()],
            newly_passing: vec!["s2".into(), "s3".into()],
            mcnemar_p_value: Some(1.0),
            summary: "pass rate up 5.0 points".into(),
            ..Default::default()
        };
        let out = text(|out| comparison(out, "a", "b", &c));
        assert!(
            out.starts_with("baseline a, candidate b\npass rate up 5.0 points\n"),
            "{out}"
        );
        assert!(
            out.contains("pass rate: 80.0% -> 85.0% (+5.0 points)"),
            "{out}"
        );
        assert!(
            out.contains("exact   0.8       0.85       +0.05   +6.3%"),
            "{out}"
        );
        assert!(
            out.contains("f1      0         0.2        +0.2    n/a"),
            "{out}"
        );
        assert!(out.contains("regressed:      none\n"), "{out}");
        assert!(out.contains("improved:       exact, f1\n"), "{out}");
        assert!(out.contains("newly failing:  1\n"), "{out}");
        assert!(out.contains("newly passing:  2\n"), "{out}");
        assert!(out.contains("McNemar p:      1.0000\n"), "{out}");
        let no_pairs = pb::CompareRunsResponse::default();
        let out = text(|out| comparison(out, "a", "b", &no_pairs));
        assert!(out.contains("McNemar p:      n/a"), "{out}");
    }
}
