//! Experiments with `auto_complete` end by themselves: once the results name a winner
//! (a variant significantly better on the primary metric, or control when every other
//! variant is significantly worse, with enough samples and no guardrail worse), the
//! experiment monitor moves the served label to the winner's version through the
//! release gate (with `promote_winner`) and completes the experiment. Each step raises
//! an EXPERIMENT alert; the move is in the label's history with the actor
//! `experiment/<id>`.

use std::collections::BTreeMap;

use llmops_alerts::{AlertSeverity, AlertSink, AlertType, NewAlert};
use llmops_experiments::ExperimentService;
use llmops_registry::{Registry, VersionSelector};

/// Who completes experiments automatically, in their status history.
const ACTOR: &str = "experiment-monitor";

/// Completes every running `auto_complete` experiment whose results name a winner; how
/// many were completed.
pub(crate) async fn complete_decided(
    experiments: &ExperimentService,
    registry: &Registry,
    alerts: &dyn AlertSink,
) -> usize {
    let mut completed = 0;
    for id in experiments.running() {
        let Ok((experiment, results)) = experiments.results(&id) else {
            continue;
        };
        let Some(winner) = results
            .winner_variant_id
            .clone()
            .filter(|_| experiment.auto_complete)
        else {
            continue;
        };
        let Some(variant) = experiment.variants.iter().find(|v| v.id == winner) else {
            continue;
        };
        let alert = |condition: &str, severity, message: String| NewAlert {
            alert_type: AlertType::Experiment,
            severity,
            message,
            source: llmops_experiments::monitor::SOURCE.to_owned(),
            source_id: id.clone(),
            metric: String::new(),
            threshold: None,
            actual_value: results.confidence,
            labels: BTreeMap::from([
                ("condition".to_owned(), condition.to_owned()),
                ("variant".to_owned(), winner.clone()),
            ]),
            metadata: BTreeMap::from([
                ("experiment_name".to_owned(), experiment.name.clone()),
                ("recommendation".to_owned(), results.recommendation.clone()),
            ]),
            fingerprint: String::new(),
        };
        let mut label_note = String::new();
        if experiment.promote_winner && !experiment.serves_prompt.is_empty() {
            let (prompt, label) = (&experiment.serves_prompt, &experiment.serves_label);
            let current = registry
                .get_version(prompt, &VersionSelector::Label(label.clone()))
                .ok()
                .map(|view| view.version.version.to_string());
            if current.as_deref() == Some(variant.prompt_version.as_str()) {
                label_note = format!("; {prompt}:{label} stays on {}", variant.prompt_version);
            } else {
                let actor = format!("experiment/{id}");
                if let Err(error) = registry
                    .set_label_by(prompt, label, &variant.prompt_version, None, Some(&actor))
                    .await
                {
                    // The gate (or anything else) refused: the experiment keeps running,
                    // and someone is told why.
                    let raised = alerts
                        .raise(alert(
                            "auto_complete_blocked",
                            AlertSeverity::Warning,
                            format!(
                                "experiment {id}: {}, but moving {prompt}:{label} to {} was refused: {error}",
                                results.recommendation, variant.prompt_version
                            ),
                        ))
                        .await;
                    if let Err(error) = raised {
                        tracing::warn!(%error, experiment_id = %id, "raising an experiment alert failed");
                    }
                    continue;
                }
                label_note = format!("; {prompt}:{label} moved to {}", variant.prompt_version);
            }
        }
        match experiments.complete(&id, &winner, ACTOR).await {
            Ok(_) => {
                completed += 1;
                tracing::info!(experiment_id = %id, %winner, "experiment completed automatically");
                // A refusal raised on an earlier check is over.
                let blocked = alert(
                    "auto_complete_blocked",
                    AlertSeverity::Warning,
                    String::new(),
                );
                if let Err(error) = alerts.resolve_fingerprint(&blocked.dedup_key()).await {
                    tracing::warn!(%error, experiment_id = %id, "resolving an experiment alert failed");
                }
                let raised = alerts
                    .raise(alert(
                        "auto_completed",
                        AlertSeverity::Info,
                        format!(
                            "experiment {id} completed automatically with winner {winner}: {}{label_note}",
                            results.recommendation
                        ),
                    ))
                    .await;
                if let Err(error) = raised {
                    tracing::warn!(%error, experiment_id = %id, "raising an experiment alert failed");
                }
            }
            Err(error) => {
                tracing::warn!(%error, experiment_id = %id, "completing an experiment automatically failed");
            }
        }
    }
    completed
}
