//! `[[providers]]`: model endpoints evaluation runs and model experiments name. The shape
//! is fixed (scripts and checks rely on it): `name`, `kind` (`"openai"`), `base_url`,
//! `model`, optional `api_key_env`, `max_concurrency`, `requests_per_minute`; plus
//! optional prices, `parameters`, `timeout`, `max_retries`, `score` and `health_url`.
//!
//! `[providers_health]` says how the entries are probed for provider selection.

use std::time::Duration;

use llmops_evaluator::providers::echo::ECHO;
use llmops_evaluator::providers::openai::OpenAiSettings;
use llmops_evaluator::providers::selection::AUTO;
use llmops_evaluator::providers::HealthSettings;
use serde::{Deserialize, Serialize};

/// One `[[providers]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// What runs name as their model (unique; `echo` and `auto` are reserved).
    pub name: String,
    /// The API the endpoint speaks; only `openai` (OpenAI-compatible chat completions).
    pub kind: String,
    /// The API root, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Sent as each request's `model`.
    pub model: String,
    /// The environment variable holding the API key (sent as a bearer token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Requests in flight at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<usize>,
    /// Requests started per minute at most; unset means no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Price per 1,000 prompt tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_price_per_1k: Option<f64>,
    /// Price per 1,000 answer tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_price_per_1k: Option<f64>,
    /// Default request parameters (temperature, max_tokens, ...).
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub parameters: toml::Table,
    /// How long one attempt may take.
    #[serde(default = "default_timeout", with = "super::humantime_serde_compat")]
    pub timeout: Duration,
    /// Retries of 429, 5xx and failed connections.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// A fixed quality score for provider selection (higher is better); without it the
    /// provider's recent evaluation pass rate is its score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// A URL whose GET answers 2xx while the endpoint serves: health probes use it
    /// instead of `<base_url>/models`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_url: Option<String>,
}

/// `[providers_health]`: how the `[[providers]]` entries are probed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersHealthConfig {
    /// Whether providers are probed; without probes every provider counts as healthy.
    pub enabled: bool,
    /// Time between probe rounds.
    #[serde(with = "super::humantime_serde_compat")]
    pub interval: Duration,
    /// Failed probes in a row that make a provider unhealthy.
    pub failure_threshold: u32,
    /// How long one probe may take before it counts as failed.
    #[serde(with = "super::humantime_serde_compat")]
    pub timeout: Duration,
}

impl Default for ProvidersHealthConfig {
    fn default() -> Self {
        let defaults = HealthSettings::default();
        Self {
            enabled: defaults.enabled,
            interval: defaults.interval,
            failure_threshold: defaults.failure_threshold,
            timeout: defaults.timeout,
        }
    }
}

impl ProvidersHealthConfig {
    /// The probe loop's settings.
    pub fn settings(&self) -> HealthSettings {
        HealthSettings {
            enabled: self.enabled,
            interval: self.interval,
            failure_threshold: self.failure_threshold,
            timeout: self.timeout,
        }
    }

    /// Range checks; an error names its key.
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let bad =
            |field: &str, why: &str| Err((format!("providers_health.{field}"), why.to_owned()));
        // Probing faster than this would be load on the providers, not health checking.
        if self.interval < Duration::from_millis(100) {
            return bad("interval", "must be at least 100ms");
        }
        if self.failure_threshold == 0 {
            return bad("failure_threshold", "must be at least 1");
        }
        if self.timeout < Duration::from_millis(10) {
            return bad("timeout", "must be at least 10ms");
        }
        Ok(())
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_max_retries() -> u32 {
    4
}

impl ProviderConfig {
    /// The client settings this entry describes; `key` names the entry in errors. The
    /// API key is read from the environment here, so a missing variable stops start-up.
    pub fn settings(
        &self,
        key: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<OpenAiSettings, (String, String)> {
        let bad = |field: &str, why: String| Err((format!("{key}.{field}"), why));
        if self.name.is_empty() {
            return bad("name", "must not be empty".into());
        }
        if self.name == ECHO || self.name == AUTO {
            return bad("name", format!("{:?} is reserved", self.name));
        }
        if self.kind != "openai" {
            return bad(
                "kind",
                format!("{:?} is not a provider kind; use \"openai\"", self.kind),
            );
        }
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return bad(
                "base_url",
                format!("{:?} is not an http or https URL", self.base_url),
            );
        }
        if self.model.is_empty() {
            return bad("model", "must not be empty".into());
        }
        if self.max_concurrency == Some(0) {
            return bad("max_concurrency", "must be at least 1".into());
        }
        if self.requests_per_minute == Some(0) {
            return bad(
                "requests_per_minute",
                "must be at least 1 (leave it out for no cap)".into(),
            );
        }
        for (field, price) in [
            ("input_price_per_1k", self.input_price_per_1k),
            ("output_price_per_1k", self.output_price_per_1k),
        ] {
            if price.is_some_and(|p| !(p.is_finite() && p >= 0.0)) {
                return bad(field, "must be a number >= 0".into());
            }
        }
        if self.score.is_some_and(|s| !s.is_finite()) {
            return bad("score", "must be a finite number".into());
        }
        if let Some(url) = &self.health_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return bad("health_url", format!("{url:?} is not an http or https URL"));
            }
        }
        let api_key = match &self.api_key_env {
            Some(variable) => Some(env(variable).ok_or_else(|| {
                (
                    format!("{key}.api_key_env"),
                    format!("the environment variable {variable} is not set"),
                )
            })?),
            None => None,
        };
        let parameters = serde_json::to_value(&self.parameters)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();
        Ok(OpenAiSettings {
            api_key,
            default_parameters: parameters,
            max_concurrency: self.max_concurrency,
            requests_per_minute: self.requests_per_minute,
            input_price_per_1k: self.input_price_per_1k,
            output_price_per_1k: self.output_price_per_1k,
            timeout: self.timeout,
            max_retries: self.max_retries,
            health_url: self.health_url.clone(),
            ..OpenAiSettings::new(&self.name, &self.base_url, &self.model)
        })
    }
}
