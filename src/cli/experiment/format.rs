//! How experiments, assignments and results look on a terminal, and the short names of
//! the protobuf enums (the file format's: `running`, `higher_is_better`, ...).

use std::io::{self, Write};

use serde_json::Value as JsonValue;

use super::chart;
use crate::cli::output::yes_no;
use crate::cli::output::{table, write_table, Fields};
use crate::cli::values::{json_from_struct, rfc3339};
use crate::pb;

pub(crate) fn status_name(value: i32) -> &'static str {
    match pb::ExperimentStatus::try_from(value) {
        Ok(pb::ExperimentStatus::Draft) => "draft",
        Ok(pb::ExperimentStatus::Running) => "running",
        Ok(pb::ExperimentStatus::Paused) => "paused",
        Ok(pb::ExperimentStatus::Completed) => "completed",
        Ok(pb::ExperimentStatus::Cancelled) => "cancelled",
        _ => "unspecified",
    }
}

/// Unset means mean.
pub(crate) fn kind_name(value: i32) -> &'static str {
    match pb::MetricKind::try_from(value) {
        Ok(pb::MetricKind::Unspecified | pb::MetricKind::Mean) => "mean",
        Ok(pb::MetricKind::Proportion) => "proportion",
        Err(_) => "unknown",
    }
}

pub(crate) fn direction_name(value: i32) -> &'static str {
    match pb::MetricDirection::try_from(value) {
        Ok(pb::MetricDirection::HigherIsBetter) => "higher_is_better",
        Ok(pb::MetricDirection::LowerIsBetter) => "lower_is_better",
        _ => "unspecified",
    }
}

/// Unset means secondary.
pub(crate) fn role_name(value: i32) -> &'static str {
    match pb::MetricRole::try_from(value) {
        Ok(pb::MetricRole::Primary) => "primary",
        Ok(pb::MetricRole::Unspecified | pb::MetricRole::Secondary) => "secondary",
        Ok(pb::MetricRole::Guardrail) => "guardrail",
        Err(_) => "unknown",
    }
}

/// Unset means record.
pub(crate) fn unit_name(value: i32) -> &'static str {
    match pb::AnalysisUnit::try_from(value) {
        Ok(pb::AnalysisUnit::Unspecified | pb::AnalysisUnit::Record) => "record",
        Ok(pb::AnalysisUnit::User) => "user",
        Err(_) => "unknown",
    }
}

/// The control variant's index: the one marked, else the first (as the server decides).
fn control_index(variants: &[pb::Variant]) -> usize {
    variants.iter().position(|v| v.is_control).unwrap_or(0)
}

/// A number with at most four decimals and no trailing zeros; scientific for very large
/// or very small magnitudes.
pub(crate) fn number(x: f64) -> String {
    if x.is_finite() && x != 0.0 && (x.abs() >= 1e9 || x.abs() < 1e-4) {
        return format!("{x:.3e}");
    }
    crate::cli::output::number(x)
}

/// A share (0..1) in percent: `50%`, `33.33%`.
fn share(x: f64) -> String {
    format!("{}%", number((x * 100.0 * 100.0).round() / 100.0))
}

/// A signed percentage with one decimal: `+4.2%`.
fn lift_percent(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

/// A relative effect as `+4.2% [+1.0%, +7.4%]`; `None` when it cannot be computed.
pub(crate) fn lift(effect: Option<&pb::Effect>) -> Option<String> {
    effect.filter(|e| e.computable).map(|e| {
        format!(
            "{} [{}, {}]",
            lift_percent(e.estimate),
            lift_percent(e.ci_lower),
            lift_percent(e.ci_upper)
        )
    })
}

/// Why an effect cannot be computed: the server's reason.
fn why_not(effect: Option<&pb::Effect>) -> String {
    match effect {
        Some(e) if !e.reason.is_empty() => e.reason.clone(),
        _ => "not computable".to_owned(),
    }
}

/// A p-value with four decimals; `<0.0001` below that.
fn p_value(p: f64) -> String {
    if p < 0.0001 {
        "<0.0001".to_owned()
    } else {
        format!("{p:.4}")
    }
}

/// The `list` table.
pub(crate) fn experiment_table(
    out: &mut dyn Write,
    experiments: &[pb::Experiment],
) -> io::Result<()> {
    let mut rows = table(&["ID", "NAME", "STATUS", "VARIANTS", "CREATED"]);
    for e in experiments {
        rows.add_row(vec![
            e.id.clone(),
            e.name.clone(),
            status_name(e.status).to_owned(),
            e.variants
                .iter()
                .map(|v| v.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            rfc3339(e.created_at.as_ref()),
        ]);
    }
    write_table(out, rows)
}

/// One experiment: its settings, times, variants and metrics.
pub(crate) fn experiment_details(out: &mut dyn Write, e: &pb::Experiment) -> io::Result<()> {
    let mut fields = Fields::new();
    fields.add("id", e.id.clone(), true);
    fields.add("name", e.name.clone(), true);
    fields.add("status", status_name(e.status).to_owned(), true);
    fields.add("winner", e.winner_variant_id.clone(), false);
    fields.add("description", e.description.clone(), false);
    fields.add("created", rfc3339(e.created_at.as_ref()), false);
    fields.add("started", rfc3339(e.start_time.as_ref()), false);
    fields.add("ended", rfc3339(e.end_time.as_ref()), false);
    fields.add("updated", rfc3339(e.updated_at.as_ref()), false);
    fields.add("seed", e.seed.clone(), false);
    fields.add(
        "coverage",
        e.coverage
            .map_or_else(|| "100% (default)".to_owned(), share),
        true,
    );
    fields.add(
        "alpha",
        e.alpha.map_or_else(|| "0.05 (default)".to_owned(), number),
        true,
    );
    fields.add(
        "min samples",
        e.min_samples
            .map_or_else(|| "server default".to_owned(), |n| n.to_string()),
        true,
    );
    let test = if e.sequential {
        let tuning = e.sequential_tuning.map_or(5000.0, |t| t);
        format!("sequential (tuning {})", number(tuning))
    } else {
        "fixed horizon".to_owned()
    };
    fields.add("test", test, true);
    fields.add("analysis unit", unit_name(e.analysis_unit).to_owned(), true);
    let mut metadata: Vec<_> = e.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
    metadata.sort();
    fields.add("metadata", metadata.join(", "), false);
    fields.write(out)?;

    writeln!(out, "\nvariants:")?;
    let control = control_index(&e.variants);
    let equal = e.variants.iter().all(|v| v.weight.is_none());
    let mut variants = table(&[
        "ID",
        "NAME",
        "CONTROL",
        "WEIGHT",
        "PROMPT",
        "MODEL",
        "PARAMETERS",
    ]);
    for (i, v) in e.variants.iter().enumerate() {
        let weight = match v.weight {
            Some(w) => share(w),
            None if equal && !e.variants.is_empty() => {
                format!("{} (equal)", share(1.0 / e.variants.len() as f64))
            }
            None => String::new(),
        };
        let prompt = match (v.prompt_name.as_str(), v.prompt_version.as_str()) {
            ("", _) => String::new(),
            (name, "") => name.to_owned(),
            (name, version) => format!("{name}@{version}"),
        };
        let parameters = v
            .parameters
            .as_ref()
            .map(json_from_struct)
            .filter(|p| !p.is_empty())
            .map(|p| JsonValue::Object(p).to_string())
            .unwrap_or_default();
        variants.add_row(vec![
            v.id.clone(),
            v.name.clone(),
            if i == control { "yes" } else { "" }.to_owned(),
            weight,
            prompt,
            v.model.clone(),
            parameters,
        ]);
    }
    write_table(out, variants)?;

    if !e.metrics.is_empty() {
        writeln!(out, "\nmetrics:")?;
        let mut metrics = table(&["NAME", "KIND", "DIRECTION", "ROLE"]);
        for m in &e.metrics {
            metrics.add_row(vec![
                m.name.clone(),
                kind_name(m.kind).to_owned(),
                direction_name(m.direction).to_owned(),
                role_name(m.role).to_owned(),
            ]);
        }
        write_table(out, metrics)?;
    }
    Ok(())
}

/// An assignment: the variant to serve, whether the user is in, and the hash bucket.
pub(crate) fn assignment(out: &mut dyn Write, a: &pb::AssignVariantResponse) -> io::Result<()> {
    let mut fields = table(&[]);
    let variant = a.variant.as_ref().map(|v| v.id.clone()).unwrap_or_default();
    fields.add_row(vec!["variant:".to_owned(), variant]);
    fields.add_row(vec![
        "in experiment:".to_owned(),
        yes_no(a.in_experiment).to_owned(),
    ]);
    fields.add_row(vec!["bucket:".to_owned(), a.bucket.to_string()]);
    write_table(out, fields)
}

/// Results: the comparisons with control and their chart, per-variant statistics, the
/// sample-ratio check, the recommendation and its reasons.
pub(crate) fn results(out: &mut dyn Write, r: &pb::GetExperimentResultsResponse) -> io::Result<()> {
    let variants = r
        .experiment
        .as_ref()
        .map(|e| e.variants.as_slice())
        .unwrap_or_default();
    let control = variants.get(control_index(variants)).map(|v| v.id.as_str());
    if let Some(e) = &r.experiment {
        writeln!(
            out,
            "experiment {} ({}), {}",
            e.id,
            e.name,
            status_name(e.status)
        )?;
    }

    match control {
        Some(control) => writeln!(out, "\ncomparisons with control ({control}):")?,
        None => writeln!(out, "\ncomparisons with control:")?,
    }
    if r.comparisons.is_empty() {
        writeln!(out, "none yet")?;
    } else {
        comparisons(out, &r.comparisons)?;
        writeln!(out, "\nrelative lift:")?;
        lift_chart(out, &r.comparisons)?;
    }

    writeln!(out, "\nvariants:")?;
    if r.stats.is_empty() {
        writeln!(out, "no observations yet")?;
    } else {
        let mut stats = table(&["VARIANT", "METRIC", "N", "MEAN", "STD", "MIN", "MAX"]);
        for s in &r.stats {
            let variant = if control == Some(s.variant_id.as_str()) {
                format!("{} (control)", s.variant_id)
            } else {
                s.variant_id.clone()
            };
            // Without observations the numbers are placeholders: leave them out.
            let value = |x: f64| if s.n == 0 { String::new() } else { number(x) };
            stats.add_row(vec![
                variant,
                s.metric.clone(),
                s.n.to_string(),
                value(s.mean),
                value(s.std_dev),
                value(s.min),
                value(s.max),
            ]);
        }
        write_table(out, stats)?;
    }

    if let Some(srm) = &r.srm {
        writeln!(out, "\n{}", srm_line(srm, variants))?;
    }

    writeln!(out, "\nrecommendation: {}", r.recommendation)?;
    if !r.winner_variant_id.is_empty() {
        writeln!(
            out,
            "winner: {} ({}% confidence)",
            r.winner_variant_id,
            number((r.confidence * 10.0).round() / 10.0)
        )?;
    }
    if !r.reasons.is_empty() {
        writeln!(out, "reasons:")?;
        for reason in &r.reasons {
            writeln!(out, "  - {reason}")?;
        }
    }
    Ok(())
}

fn comparisons(out: &mut dyn Write, comparisons: &[pb::Comparison]) -> io::Result<()> {
    let mut rows = table(&[
        "VARIANT",
        "METRIC",
        "ROLE",
        "LIFT",
        "P",
        "ADJUSTED P",
        "SIGNIFICANT",
    ]);
    for c in comparisons {
        let relative = c.relative.as_ref();
        let computable = relative.is_some_and(|e| e.computable);
        let significant = match (computable, c.significant, c.improves) {
            (false, _, _) => "",
            (true, false, _) => "no",
            (true, true, true) => "yes (better)",
            (true, true, false) => "yes (worse)",
        };
        rows.add_row(vec![
            c.variant_id.clone(),
            c.metric.clone(),
            role_name(c.role).to_owned(),
            lift(relative).unwrap_or_else(|| "not computable".to_owned()),
            relative
                .filter(|_| computable)
                .map(|e| p_value(e.p_value))
                .unwrap_or_default(),
            c.adjusted_p_value.map(p_value).unwrap_or_default(),
            significant.to_owned(),
        ]);
    }
    write_table(out, rows)
}

/// One chart line per comparison, all on the scale of the largest absolute bound, with
/// an axis beneath; uncomputable effects show their reason instead.
fn lift_chart(out: &mut dyn Write, comparisons: &[pb::Comparison]) -> io::Result<()> {
    let scale = chart::scale(comparisons.iter().filter_map(|c| c.relative.as_ref()));
    let labels: Vec<String> = comparisons
        .iter()
        .map(|c| format!("{} {}", c.variant_id, c.metric))
        .collect();
    let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    for (c, label) in comparisons.iter().zip(&labels) {
        let relative = c.relative.as_ref();
        let line = match (relative, lift(relative)) {
            (Some(e), Some(lift)) => format!(
                "{}  {lift}",
                chart::line(e.ci_lower, e.estimate, e.ci_upper, scale)
            ),
            _ => why_not(relative),
        };
        writeln!(out, "{label:<width$}  {line}")?;
    }
    // Without a computable effect there is no scale to show.
    if scale > 0.0 {
        writeln!(out, "{:<width$}  {}", "", chart::axis(scale).trim_end())?;
    }
    Ok(())
}

/// The sample-ratio check on one line: observed and expected exposures per variant, p
/// and whether a mismatch is detected.
fn srm_line(srm: &pb::SampleRatioMismatch, variants: &[pb::Variant]) -> String {
    let name = |i: usize| {
        variants
            .get(i)
            .map_or_else(|| format!("#{i}"), |v| v.id.clone())
    };
    let observed: Vec<String> = srm
        .observed
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{}={n}", name(i)))
        .collect();
    let expected: Vec<String> = srm
        .expected
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{}={}", name(i), number((n * 10.0).round() / 10.0)))
        .collect();
    format!(
        "sample ratio: observed {} vs expected {}, p = {}, mismatch {}",
        observed.join(" "),
        expected.join(" "),
        p_value(srm.p_value),
        if srm.detected {
            "DETECTED"
        } else {
            "not detected"
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::testing::text;

    fn effect(lower: f64, estimate: f64, upper: f64) -> pb::Effect {
        pb::Effect {
            estimate,
            ci_lower: lower,
            ci_upper: upper,
            p_value: 0.01,
            computable: true,
            reason: String::new(),
        }
    }

    #[test]
    fn lifts_read_as_signed_percentages_or_the_reason() {
        assert_eq!(
            lift(Some(&effect(0.010, 0.042, 0.074))).unwrap(),
            "+4.2% [+1.0%, +7.4%]"
        );
        assert_eq!(
            lift(Some(&effect(-0.2, -0.1, 0.0))).unwrap(),
            "-10.0% [-20.0%, +0.0%]"
        );
        let uncomputable = pb::Effect {
            reason: "the control mean is 0".into(),
            ..Default::default()
        };
        assert_eq!(lift(Some(&uncomputable)), None);
        assert_eq!(why_not(Some(&uncomputable)), "the control mean is 0");
        assert_eq!(lift(None), None);
        assert_eq!(why_not(None), "not computable");
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(0.0), "0");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.123456), "0.1235");
        assert_eq!(number(-2.5), "-2.5");
        assert_eq!(number(-0.00001), "-1.000e-5");
        assert_eq!(share(0.5), "50%");
        assert_eq!(share(1.0 / 3.0), "33.33%");
        assert_eq!(p_value(0.00001), "<0.0001");
        assert_eq!(p_value(0.04567), "0.0457");
    }

    #[test]
    fn enum_names_fill_in_the_servers_defaults() {
        assert_eq!(status_name(pb::ExperimentStatus::Running as i32), "running");
        assert_eq!(kind_name(0), "mean");
        assert_eq!(role_name(0), "secondary");
        assert_eq!(unit_name(0), "record");
        assert_eq!(
            direction_name(pb::MetricDirection::LowerIsBetter as i32),
            "lower_is_better"
        );
        assert_eq!(direction_name(0), "unspecified");
    }

    #[test]
    fn results_show_comparisons_chart_stats_srm_and_the_recommendation() {
        let r = pb::GetExperimentResultsResponse {
            experiment: Some(pb::Experiment {
                id: "e1".into(),
                name: "Tone".into(),
                status: pb::ExperimentStatus::Running as i32,
                variants: vec![
                    pb::Variant {
                        id: "a".into(),
                        is_control: true,
                        ..Default::default()
                    },
                    pb::Variant {
                        id: "b".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            stats: vec![pb::VariantMetricStats {
                variant_id: "a".into(),
                metric: "quality".into(),
                n: 120,
                mean: 0.5,
                std_dev: 0.25,
                min: 0.0,
                max: 1.0,
                ..Default::default()
            }],
            comparisons: vec![
                pb::Comparison {
                    variant_id: "b".into(),
                    metric: "quality".into(),
                    relative: Some(effect(0.010, 0.042, 0.074)),
                    adjusted_p_value: Some(0.02),
                    role: pb::MetricRole::Primary as i32,
                    significant: true,
                    improves: true,
                    ..Default::default()
                },
                pb::Comparison {
                    variant_id: "b".into(),
                    metric: "cost".into(),
                    relative: Some(pb::Effect {
                        reason: "no variance".into(),
                        ..Default::default()
                    }),
                    role: pb::MetricRole::Guardrail as i32,
                    ..Default::default()
                },
            ],
            srm: Some(pb::SampleRatioMismatch {
                p_value: 0.5,
                detected: false,
                observed: vec![60, 62],
                expected: vec![61.0, 61.0],
            }),
            winner_variant_id: "b".into(),
            recommendation: "Deploy variant b with 98% confidence".into(),
            reasons: vec!["quality improved".into()],
            confidence: 98.0,
        };
        let out = text(|out| results(out, &r));
        assert!(out.starts_with("experiment e1 (Tone), running\n"), "{out}");
        assert!(
            out.contains("b        quality  primary    +4.2% [+1.0%, +7.4%]"),
            "{out}"
        );
        assert!(out.contains("0.0100  0.0200      yes (better)"), "{out}");
        assert!(
            out.contains("cost     guardrail  not computable\n"),
            "{out}"
        );
        let chart = format!(
            "b quality  {}|  [{}*{}]  +4.2% [+1.0%, +7.4%]\n",
            " ".repeat(20),
            "-".repeat(7),
            "-".repeat(8)
        );
        assert!(out.contains(&chart), "{out}");
        assert!(out.contains("b cost     no variance\n"), "{out}");
        assert!(
            out.contains("a (control)  quality  120  0.5   0.25"),
            "{out}"
        );
        assert!(
            out.contains(
                "sample ratio: observed a=60 b=62 vs expected a=61 b=61, p = 0.5000, mismatch not detected"
            ),
            "{out}"
        );
        assert!(
            out.ends_with(
                "recommendation: Deploy variant b with 98% confidence\nwinner: b (98% confidence)\nreasons:\n  - quality improved\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn details_show_weights_control_and_metrics() {
        let e = pb::Experiment {
            id: "e1".into(),
            name: "Tone".into(),
            status: pb::ExperimentStatus::Draft as i32,
            coverage: Some(0.5),
            alpha: Some(0.05),
            variants: vec![
                pb::Variant {
                    id: "a".into(),
                    prompt_name: "greet".into(),
                    prompt_version: "1.0.0".into(),
                    ..Default::default()
                },
                pb::Variant {
                    id: "b".into(),
                    ..Default::default()
                },
            ],
            metrics: vec![pb::MetricDefinition {
                name: "latency".into(),
                kind: pb::MetricKind::Mean as i32,
                direction: pb::MetricDirection::LowerIsBetter as i32,
                role: pb::MetricRole::Guardrail as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        let out = text(|out| experiment_details(out, &e));
        assert!(out.contains("coverage:       50%\n"), "{out}");
        assert!(out.contains("test:           fixed horizon\n"), "{out}");
        assert!(
            out.contains("a         yes      50% (equal)  greet@1.0.0"),
            "{out}"
        );
        assert!(
            out.contains("latency  mean  lower_is_better  guardrail"),
            "{out}"
        );
    }
}
