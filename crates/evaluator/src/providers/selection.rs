//! Provider selection, the seed's rules: the healthy candidate with the highest score;
//! a tie goes to the provider configured first; no healthy candidate is an error that
//! says why each one is out.
//!
//! No candidates means every configured provider but the built-in `echo`: `echo`
//! answers with the prompt, so choosing it on its own whenever the real providers are
//! down would turn an outage into results that look fine. It is chosen only when named.

use super::echo::ECHO;
use super::health::ProviderStatus;
use crate::error::{EvaluationError, FieldViolation};

/// The model name that asks for the selected provider.
pub const AUTO: &str = "auto";

/// How many of a provider's most recent completed runs its pass-rate score averages.
pub const PASS_RATE_RUNS: usize = 5;

/// The provider `candidates` (names; empty: every configured provider) should use, out
/// of `providers` in configured order.
///
/// An unknown candidate is INVALID_ARGUMENT naming `candidates[i]`; no healthy candidate
/// (or nothing configured) is FAILED_PRECONDITION.
pub fn select<'a>(
    providers: &'a [ProviderStatus],
    candidates: &[String],
) -> Result<&'a ProviderStatus, EvaluationError> {
    let unknown: Vec<FieldViolation> = candidates
        .iter()
        .enumerate()
        .filter(|(_, name)| !providers.iter().any(|p| &p.name == *name))
        .map(|(index, name)| {
            let known: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
            FieldViolation::new(
                format!("candidates[{index}]"),
                format!(
                    "{name:?} is not a configured provider; known: {}",
                    known.join(", ")
                ),
            )
        })
        .collect();
    if !unknown.is_empty() {
        return Err(EvaluationError::InvalidArgument(unknown));
    }
    let considered = |p: &&ProviderStatus| {
        if candidates.is_empty() {
            p.name != ECHO
        } else {
            candidates.contains(&p.name)
        }
    };
    // Configured order, whatever the candidates' order: that is what ties fall back on.
    let pool: Vec<&ProviderStatus> = providers.iter().filter(considered).collect();
    if pool.is_empty() {
        return Err(EvaluationError::FailedPrecondition(format!(
            "no model providers are configured: add a [[providers]] entry, or name {ECHO:?} as a candidate"
        )));
    }
    let mut best: Option<&ProviderStatus> = None;
    for provider in pool.iter().copied().filter(|p| p.healthy) {
        // Strictly greater: an equal score later in the order does not replace the earlier.
        if best.is_none_or(|b| provider.score > b.score) {
            best = Some(provider);
        }
    }
    best.ok_or_else(|| {
        let reasons: Vec<String> = pool.iter().map(|p| unhealthy_reason(p)).collect();
        EvaluationError::FailedPrecondition(format!(
            "no healthy model provider: {}",
            reasons.join("; ")
        ))
    })
}

fn unhealthy_reason(provider: &ProviderStatus) -> String {
    let mut reason = format!(
        "{} failed its last {} probes",
        provider.name, provider.consecutive_failures
    );
    if !provider.last_error.is_empty() {
        reason.push_str(&format!(" ({})", provider.last_error));
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::health::ScoreSource;

    fn provider(name: &str, score: f64, healthy: bool) -> ProviderStatus {
        ProviderStatus {
            name: name.into(),
            kind: "openai".into(),
            model: format!("{name}-model"),
            healthy,
            score,
            score_source: ScoreSource::Config,
            latency_p50: None,
            error_rate: 0.0,
            recent_requests: 0,
            consecutive_failures: if healthy { 0 } else { 3 },
            last_probe_at: None,
            last_error: if healthy {
                String::new()
            } else {
                "HTTP 503".into()
            },
        }
    }

    fn echo() -> ProviderStatus {
        ProviderStatus {
            kind: "echo".into(),
            ..provider(ECHO, 0.0, true)
        }
    }

    fn names(candidates: &[&str]) -> Vec<String> {
        candidates.iter().map(|c| c.to_string()).collect()
    }

    fn chosen(providers: &[ProviderStatus], candidates: &[&str]) -> String {
        select(providers, &names(candidates)).unwrap().name.clone()
    }

    #[test]
    fn the_highest_score_wins() {
        let providers = [
            provider("a", 0.5, true),
            provider("b", 0.9, true),
            provider("c", 0.7, true),
            echo(),
        ];
        assert_eq!(chosen(&providers, &[]), "b");
        assert_eq!(chosen(&providers, &["a", "c"]), "c");
    }

    #[test]
    fn a_tie_goes_to_the_earliest_configured_whatever_the_candidate_order() {
        let providers = [
            provider("a", 0.4, true),
            provider("b", 0.8, true),
            provider("c", 0.8, true),
        ];
        assert_eq!(chosen(&providers, &[]), "b");
        assert_eq!(chosen(&providers, &["c", "b"]), "b");
    }

    #[test]
    fn unhealthy_providers_are_passed_over() {
        let providers = [provider("a", 0.9, false), provider("b", 0.1, true)];
        assert_eq!(chosen(&providers, &[]), "b");
    }

    #[test]
    fn negative_scores_still_choose() {
        let providers = [provider("a", -2.0, true), provider("b", -1.0, true)];
        assert_eq!(chosen(&providers, &[]), "b");
    }

    #[test]
    fn none_healthy_is_a_failed_precondition_with_each_reason() {
        let providers = [provider("a", 0.9, false), provider("b", 0.1, false), echo()];
        let err = select(&providers, &[]).unwrap_err();
        let EvaluationError::FailedPrecondition(message) = err else {
            panic!("{err:?}")
        };
        assert_eq!(
            message,
            "no healthy model provider: a failed its last 3 probes (HTTP 503); b failed its last 3 probes (HTTP 503)"
        );
    }

    #[test]
    fn echo_is_chosen_only_when_named() {
        let providers = [provider("a", 0.9, false), echo()];
        assert!(matches!(
            select(&providers, &[]),
            Err(EvaluationError::FailedPrecondition(_))
        ));
        assert_eq!(chosen(&providers, &["a", ECHO]), ECHO);
    }

    #[test]
    fn nothing_configured_is_a_failed_precondition() {
        let err = select(&[echo()], &[]).unwrap_err();
        assert!(
            matches!(&err, EvaluationError::FailedPrecondition(m) if m.starts_with("no model providers are configured")),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_candidates_are_named_by_index() {
        let providers = [provider("a", 0.9, true), echo()];
        let err = select(&providers, &names(&["a", "gpt", "", "a"])).unwrap_err();
        let EvaluationError::InvalidArgument(violations) = err else {
            panic!("{err:?}")
        };
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["candidates[1]", "candidates[2]"]);
        assert_eq!(
            violations[0].description,
            "\"gpt\" is not a configured provider; known: a, echo"
        );
    }

    #[test]
    fn an_unknown_candidate_is_reported_even_when_others_are_healthy() {
        let providers = [provider("a", 0.9, true)];
        assert!(matches!(
            select(&providers, &names(&["a", "b"])),
            Err(EvaluationError::InvalidArgument(_))
        ));
    }
}
