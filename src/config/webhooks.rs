//! `[[webhooks]]`: alert receivers. The shape is fixed (operators' scripts rely on it):
//! `name`, `url`, optional `secret_env`, optional `min_severity`, plus optional `types`,
//! `sources`, `timeout` and `max_attempts`.

use std::time::Duration;

use llmops_alerts::webhook::WebhookReceiver;
use llmops_alerts::{AlertSeverity, AlertType, SubscriptionFilter};
use serde::{Deserialize, Serialize};

/// One `[[webhooks]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The receiver's name (unique).
    pub name: String,
    /// Where deliveries are POSTed (http or https).
    pub url: String,
    /// The environment variable holding the HMAC-SHA256 signing secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// Only events of alerts at least this severe (`INFO`, `WARNING`, `CRITICAL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<String>,
    /// Only these alert types (`REGRESSION`, `THRESHOLD`, `ANOMALY`, `EXPERIMENT`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Only alerts from these sources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// How long one attempt may take.
    #[serde(default = "default_timeout", with = "super::humantime_serde_compat")]
    pub timeout: Duration,
    /// Attempts before a delivery is given up.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_max_attempts() -> u32 {
    8
}

impl WebhookConfig {
    /// The receiver this entry describes; `key` names the entry in errors. The secret is
    /// read from the environment here, so a missing variable stops start-up.
    pub fn receiver(
        &self,
        key: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<WebhookReceiver, (String, String)> {
        let bad = |field: &str, why: String| (format!("{key}.{field}"), why);
        if self.name.is_empty() {
            return Err(bad("name", "must not be empty".into()));
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(bad(
                "url",
                format!("{:?} is not an http or https URL", self.url),
            ));
        }
        let secret = match &self.secret_env {
            Some(variable) => Some(env(variable).ok_or_else(|| {
                bad(
                    "secret_env",
                    format!("the environment variable {variable} is not set"),
                )
            })?),
            None => None,
        };
        let min_severity = self
            .min_severity
            .as_deref()
            .map(|s| {
                parse_severity(s).ok_or_else(|| {
                    bad(
                        "min_severity",
                        format!("{s:?} is not INFO, WARNING or CRITICAL"),
                    )
                })
            })
            .transpose()?;
        let types = self
            .types
            .iter()
            .map(|t| {
                parse_type(t).ok_or_else(|| {
                    bad(
                        "types",
                        format!("{t:?} is not REGRESSION, THRESHOLD, ANOMALY or EXPERIMENT"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        if self.max_attempts == 0 {
            return Err(bad("max_attempts", "must be at least 1".into()));
        }
        Ok(WebhookReceiver {
            name: self.name.clone(),
            url: self.url.clone(),
            secret,
            filter: SubscriptionFilter {
                types,
                min_severity,
                sources: self.sources.clone(),
            },
            timeout: self.timeout,
            max_attempts: self.max_attempts,
        })
    }
}

fn parse_severity(text: &str) -> Option<AlertSeverity> {
    match text
        .to_ascii_uppercase()
        .trim_start_matches("ALERT_SEVERITY_")
    {
        "INFO" => Some(AlertSeverity::Info),
        "WARNING" => Some(AlertSeverity::Warning),
        "CRITICAL" => Some(AlertSeverity::Critical),
        _ => None,
    }
}

fn parse_type(text: &str) -> Option<AlertType> {
    match text.to_ascii_uppercase().trim_start_matches("ALERT_TYPE_") {
        "REGRESSION" => Some(AlertType::Regression),
        "THRESHOLD" => Some(AlertType::Threshold),
        "ANOMALY" => Some(AlertType::Anomaly),
        "EXPERIMENT" => Some(AlertType::Experiment),
        _ => None,
    }
}
