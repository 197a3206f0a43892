//! Configuration: built-in defaults < TOML file < `LLMOPS_*` environment < command-line
//! flags. Every key's effective value and where it came from can be printed
//! (`llmops config show`), and a bad value stops start-up with a message naming the key.

mod layers;
mod providers;
mod webhooks;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use llmops_registry::RegistryLimits;
use llmops_store::{DatabaseUrl, Durability, StoreOpenError};
use serde::{Deserialize, Serialize};

pub use layers::{ConfigError, ConfigSource, LoadedConfig};
pub use providers::{ProviderConfig, ProvidersHealthConfig};
pub use webhooks::WebhookConfig;

/// The server's configuration. Field names are the TOML keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The gRPC listen address.
    pub listen: SocketAddr,
    /// Where the embedded database lives.
    pub data_dir: PathBuf,
    /// The database: empty for the embedded SQLite file under `data_dir`,
    /// `sqlite:///path/to/llmops.db`, or `postgres://user:password@host:port/db` (also
    /// `postgresql://`, with `?sslmode=` and the other parameters libpq and sqlx share).
    #[serde(default)]
    pub database_url: String,
    /// The most connections to a PostgreSQL database, per process.
    #[serde(default = "default_database_max_connections")]
    pub database_max_connections: u32,
    /// How often a replica reads the shared event feeds when no announcement woke it
    /// (PostgreSQL; a lost announcement delays a change by at most this long).
    #[serde(
        default = "default_feed_poll_interval",
        with = "humantime_serde_compat"
    )]
    pub feed_poll_interval: Duration,
    /// How long a background role's lease lasts unrenewed, when several processes share
    /// the database: a replica that dies (kill -9) hands its roles over within it, and
    /// one silent for it is shown dead.
    #[serde(default = "default_leader_lease", with = "humantime_serde_compat")]
    pub leader_lease: Duration,
    /// The Prometheus `/metrics` listen address.
    pub metrics_listen: SocketAddr,
    /// `full` (SQLite synchronous=FULL: a commit survives power loss) or `normal`.
    pub durability: DurabilitySetting,
    /// Largest request or response message, in bytes; larger is OUT_OF_RANGE.
    pub max_message_bytes: usize,
    /// Largest ImportSamples stream, in bytes; larger is RESOURCE_EXHAUSTED and imports
    /// nothing.
    pub max_import_bytes: u64,
    /// `human` or `json` logs.
    pub log_format: LogFormat,
    /// How long shutdown waits for in-flight calls before closing them.
    #[serde(with = "humantime_serde_compat")]
    pub shutdown_grace: Duration,
    /// `[server]`: connection limits.
    pub server: ServerConfig,
    /// Experiment settings.
    pub experiments: ExperimentsConfig,
    /// Evaluation settings.
    pub evaluation: EvaluationConfig,
    /// Alert thresholds by metric: `pass_rate` (minimum), `latency_p99` (maximum, ms),
    /// any other metric name (minimum mean score).
    pub alert_thresholds: BTreeMap<String, f64>,
    /// Prompt registry limits.
    pub prompts: PromptsConfig,
    /// Alert retention and streaming.
    pub alerts: AlertsConfig,
    /// Webhook receivers of alert events.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// `[[providers]]`: model endpoints for evaluation runs and model experiments.
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    /// `[providers_health]`: how the providers are probed for provider selection.
    pub providers_health: ProvidersHealthConfig,
    /// `[auth]`: whether calls need an API key.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Labels only ROLE_ADMIN may move or delete (with API keys).
    #[serde(default = "default_protected_labels")]
    pub protected_labels: Vec<String>,
    /// How long audit entries are kept (pruned with resolved alerts, every
    /// `alerts.prune_interval`).
    #[serde(default = "default_audit_retention", with = "humantime_serde_compat")]
    pub audit_retention: Duration,
    /// Audit the calls of an application's runtime too (the RPCs ROLE_APP may call:
    /// AssignVariant, RecordExposures, RecordMetric(s), IngestMetrics), which can be
    /// thousands a second; `false` audits only changes of what llmops holds.
    #[serde(default = "default_true")]
    pub audit_runtime_calls: bool,
    /// `input` and `output` of a logged generation longer than this many bytes are cut
    /// (and flagged `input_truncated` / `output_truncated`).
    #[serde(default = "default_max_generation_text_bytes")]
    pub max_generation_text_bytes: usize,
    /// How long generations are kept (pruned every `alerts.prune_interval`).
    #[serde(
        default = "default_generation_retention",
        with = "humantime_serde_compat"
    )]
    pub generation_retention: Duration,
    /// How long the hourly usage aggregates are kept (pruned with the generations; by
    /// default far longer, so that usage and cost history outlive the generations).
    #[serde(default = "default_usage_retention", with = "humantime_serde_compat")]
    pub usage_retention: Duration,
    /// Samples of online evaluations waiting for scoring at most; past it new samples
    /// are skipped (and counted in `llmops_online_samples_skipped_total`), never
    /// holding up LogGenerations.
    #[serde(default = "default_online_queue_limit")]
    pub online_queue_limit: u64,
    /// Samples of online evaluations scored at once at most, by this process (judges
    /// also wait for their providers' caps, which offline runs share).
    #[serde(default = "default_online_max_concurrency")]
    pub online_max_concurrency: usize,
    /// How often the windows of online evaluations are checked against their thresholds.
    #[serde(
        default = "default_online_check_interval",
        with = "humantime_serde_compat"
    )]
    pub online_check_interval: Duration,
    /// `[[prices]]`: prices per 1,000 tokens by model, for generations logged without a
    /// cost (a configured provider's prices count for its name and its model too).
    #[serde(default)]
    pub prices: Vec<PriceConfig>,
    /// `[tls]`: serve TLS, and require client certificates (mTLS).
    #[serde(default)]
    pub tls: TlsConfig,
    /// Serve `/metrics` over TLS with the `[tls]` certificate too.
    #[serde(default)]
    pub metrics_tls: bool,
}

/// `[[prices]]`: what a model costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// The model, as generations name it.
    pub model: String,
    /// Per 1,000 input tokens.
    pub input_price_per_1k: f64,
    /// Per 1,000 output tokens.
    pub output_price_per_1k: f64,
}

fn default_max_generation_text_bytes() -> usize {
    256 * 1024
}

fn default_generation_retention() -> Duration {
    Duration::from_secs(30 * 24 * 60 * 60)
}

fn default_online_queue_limit() -> u64 {
    100_000
}

fn default_online_max_concurrency() -> usize {
    8
}

fn default_online_check_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_usage_retention() -> Duration {
    Duration::from_secs(400 * 24 * 60 * 60)
}

/// `[tls]`: the server's certificate and, for mTLS, the clients' CA and the roles of
/// their identities. Empty paths mean plain TCP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM), leaf first. With `key_file`, turns TLS on.
    #[serde(default)]
    pub cert_file: String,
    /// The server certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key_file: String,
    /// CA certificates (PEM) that sign client certificates; when set, every connection
    /// must present one (mTLS), and its identity is a credential.
    #[serde(default)]
    pub client_ca_file: String,
    /// How often the files are checked for a new certificate (rotation without
    /// restart; open connections keep theirs).
    #[serde(
        default = "default_tls_reload_interval",
        with = "humantime_serde_compat"
    )]
    pub reload_interval: Duration,
    /// `[[tls.identities]]`: the role of each client certificate identity.
    #[serde(default)]
    pub identities: Vec<TlsIdentityConfig>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: String::new(),
            key_file: String::new(),
            client_ca_file: String::new(),
            reload_interval: default_tls_reload_interval(),
            identities: Vec::new(),
        }
    }
}

impl TlsConfig {
    /// Whether the listeners serve TLS.
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty()
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.enabled() && !self.client_ca_file.is_empty()
    }
}

/// `[[tls.identities]]`: a client certificate identity and its role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsIdentityConfig {
    /// `CN=<common name>` for the subject's common name, or a URI SAN such as a SPIFFE
    /// ID (`spiffe://trust-domain/ns/team/sa/app`), matched exactly.
    pub subject: String,
    /// `reader`, `app`, `editor` or `admin` (or `ROLE_READER`...).
    pub role: String,
}

fn default_true() -> bool {
    true
}

fn default_audit_retention() -> Duration {
    Duration::from_secs(365 * 24 * 60 * 60)
}

fn default_tls_reload_interval() -> Duration {
    Duration::from_secs(5)
}

/// `[auth]`: whether calls need an API key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `none` (every call may do everything) or `api_keys` (`authorization: Bearer`).
    #[serde(default)]
    pub mode: AuthMode,
    /// Lets `mode = "none"` serve on an address other than loopback (when a proxy in
    /// front authenticates).
    #[serde(default)]
    pub allow_unauthenticated: bool,
}

/// `[auth] mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// No keys: the embedded quickstart's default, on loopback only.
    #[default]
    None,
    /// Every call (but health and reflection) needs an API key.
    ApiKeys,
}

fn default_protected_labels() -> Vec<String> {
    vec!["production".to_owned()]
}

/// `[server]`: what one client's connections may hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Open connections at most; past it, new connections are closed at once.
    pub max_connections: usize,
    /// Concurrent calls (streams) per connection at most (HTTP/2
    /// SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_concurrent_streams: u32,
    /// A new connection must complete its HTTP/2 handshake within this, or it is closed.
    #[serde(with = "humantime_serde_compat")]
    pub handshake_timeout: Duration,
    /// A connection with no call in flight for this long is closed.
    #[serde(with = "humantime_serde_compat")]
    pub idle_timeout: Duration,
    /// How often an HTTP/2 ping checks a connection that has been quiet.
    #[serde(with = "humantime_serde_compat")]
    pub keepalive_interval: Duration,
    /// A ping not answered within this closes the connection (the peer is gone).
    #[serde(with = "humantime_serde_compat")]
    pub keepalive_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_concurrent_streams: 1024,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(15 * 60),
            keepalive_interval: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

/// `[alerts]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Resolved alerts, and alert events, older than this are pruned.
    #[serde(with = "humantime_serde_compat")]
    pub retention: Duration,
    /// How often pruning runs.
    #[serde(with = "humantime_serde_compat")]
    pub prune_interval: Duration,
    /// How often an idle subscription gets a HEARTBEAT event.
    #[serde(with = "humantime_serde_compat")]
    pub heartbeat_interval: Duration,
    /// Sent as `externalURL` in webhook bodies.
    pub external_url: String,
}

/// `durability`: how hard a commit works to survive power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilitySetting {
    /// Every commit is on disk before it is acknowledged.
    Full,
    /// Survives a process crash; a power loss may lose the last commits.
    Normal,
}

impl From<DurabilitySetting> for Durability {
    fn from(setting: DurabilitySetting) -> Self {
        match setting {
            DurabilitySetting::Full => Durability::Full,
            DurabilitySetting::Normal => Durability::Normal,
        }
    }
}

/// `log_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// `[experiments]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentsConfig {
    /// Samples per variant before a winner may be declared.
    pub min_samples_for_significance: u64,
    /// How often running experiments are checked for alerts (sample ratio mismatch,
    /// guardrails, winners).
    #[serde(with = "humantime_serde_compat")]
    pub alert_check_interval: Duration,
}

/// `[evaluation]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationConfig {
    /// Whether schedules without a cron expression run every `interval`.
    pub auto_evaluation: bool,
    /// The default schedule interval.
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
    /// Whether `panel` metrics (several judges) are allowed.
    pub panel_evaluation: bool,
}

/// `[prompts]`: limits that protect the server from oversized or runaway prompts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptsConfig {
    /// Largest template (text plus message templates), in bytes.
    pub max_template_bytes: usize,
    /// Most variables per version.
    pub max_variables: usize,
    /// Template engine fuel per render (bounds loops).
    pub render_fuel: u64,
    /// Largest rendered output, in bytes.
    pub max_render_bytes: usize,
    /// Most bytes of template values one render may create (intermediate strings,
    /// lists and captured output included); past it the render is RESOURCE_EXHAUSTED.
    pub max_render_memory: usize,
}

fn default_database_max_connections() -> u32 {
    16
}

fn default_feed_poll_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_leader_lease() -> Duration {
    Duration::from_secs(10)
}

impl Default for Config {
    fn default() -> Self {
        let limits = RegistryLimits::default();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            data_dir: PathBuf::from("./llmops-data"),
            database_url: String::new(),
            database_max_connections: default_database_max_connections(),
            feed_poll_interval: default_feed_poll_interval(),
            leader_lease: default_leader_lease(),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            durability: DurabilitySetting::Full,
            max_message_bytes: 4 * 1024 * 1024,
            max_import_bytes: 1024 * 1024 * 1024,
            log_format: LogFormat::Human,
            shutdown_grace: Duration::from_secs(10),
            server: ServerConfig::default(),
            experiments: ExperimentsConfig {
                min_samples_for_significance: 100,
                alert_check_interval: Duration::from_secs(60),
            },
            evaluation: EvaluationConfig {
                auto_evaluation: true,
                interval: Duration::from_secs(24 * 60 * 60),
                panel_evaluation: true,
            },
            alert_thresholds: BTreeMap::from([
                ("pass_rate".to_owned(), 0.85),
                ("latency_p99".to_owned(), 5000.0),
            ]),
            prompts: PromptsConfig {
                max_template_bytes: limits.max_template_bytes,
                max_variables: limits.max_variables,
                render_fuel: limits.render_fuel,
                max_render_bytes: limits.max_render_bytes,
                max_render_memory: limits.max_render_memory,
            },
            alerts: AlertsConfig {
                retention: Duration::from_secs(30 * 24 * 60 * 60),
                prune_interval: Duration::from_secs(60 * 60),
                heartbeat_interval: Duration::from_secs(30),
                external_url: String::new(),
            },
            webhooks: Vec::new(),
            providers: Vec::new(),
            providers_health: ProvidersHealthConfig::default(),
            auth: AuthConfig::default(),
            protected_labels: default_protected_labels(),
            audit_retention: default_audit_retention(),
            audit_runtime_calls: true,
            max_generation_text_bytes: default_max_generation_text_bytes(),
            generation_retention: default_generation_retention(),
            usage_retention: default_usage_retention(),
            online_queue_limit: default_online_queue_limit(),
            online_max_concurrency: default_online_max_concurrency(),
            online_check_interval: default_online_check_interval(),
            prices: Vec::new(),
            tls: TlsConfig::default(),
            metrics_tls: false,
        }
    }
}

impl Config {
    /// The configuration for display: user information in URLs (`user:password@`) is
    /// replaced, so `config show` and logs never print a credential.
    pub fn redacted(&self) -> Self {
        let mut shown = self.clone();
        shown.database_url = llmops_store::redact_database_url(&shown.database_url);
        for webhook in &mut shown.webhooks {
            webhook.url = llmops_redact::redact_url(&webhook.url);
        }
        for provider in &mut shown.providers {
            provider.base_url = llmops_redact::redact_url(&provider.base_url);
            if let Some(url) = &mut provider.health_url {
                *url = llmops_redact::redact_url(url);
            }
        }
        shown.alerts.external_url = llmops_redact::redact_url(&shown.alerts.external_url);
        shown
    }

    /// Prices by model name: each configured provider's (by its name and its model), then
    /// `[[prices]]`, which win.
    pub fn model_prices(&self) -> std::collections::HashMap<String, llmops_generations::Prices> {
        let mut prices = std::collections::HashMap::new();
        for provider in &self.providers {
            if let (Some(input), Some(output)) =
                (provider.input_price_per_1k, provider.output_price_per_1k)
            {
                let price = llmops_generations::Prices {
                    input_per_1k: input,
                    output_per_1k: output,
                };
                prices.insert(provider.name.clone(), price);
                prices.insert(provider.model.clone(), price);
            }
        }
        for price in &self.prices {
            prices.insert(
                price.model.clone(),
                llmops_generations::Prices {
                    input_per_1k: price.input_price_per_1k,
                    output_per_1k: price.output_price_per_1k,
                },
            );
        }
        prices
    }

    /// The database to open: `database_url`, or the embedded file under `data_dir`.
    pub fn database_url(&self) -> Result<DatabaseUrl, StoreOpenError> {
        if self.database_url.is_empty() {
            Ok(DatabaseUrl::in_data_dir(&self.data_dir))
        } else {
            DatabaseUrl::parse(&self.database_url)
        }
    }

    /// The registry limits this configuration sets.
    pub fn registry_limits(&self) -> RegistryLimits {
        RegistryLimits {
            max_template_bytes: self.prompts.max_template_bytes,
            max_variables: self.prompts.max_variables,
            render_fuel: self.prompts.render_fuel,
            max_render_bytes: self.prompts.max_render_bytes,
            max_render_memory: self.prompts.max_render_memory,
            ..RegistryLimits::default()
        }
    }

    /// The webhook receivers, with their secrets read from the environment.
    pub fn webhook_receivers(
        &self,
    ) -> Result<Vec<llmops_alerts::webhook::WebhookReceiver>, ConfigError> {
        self.webhooks
            .iter()
            .enumerate()
            .map(|(index, webhook)| {
                webhook
                    .receiver(&format!("webhooks[{index}]"), |name| {
                        std::env::var(name).ok()
                    })
                    .map_err(|(key, message)| ConfigError::Unusable { key, message })
            })
            .collect()
    }

    /// The model providers' client settings, with API keys read from the environment.
    pub fn provider_settings(
        &self,
    ) -> Result<Vec<llmops_evaluator::providers::openai::OpenAiSettings>, ConfigError> {
        self.providers
            .iter()
            .enumerate()
            .map(|(index, provider)| {
                provider
                    .settings(&format!("providers[{index}]"), |name| {
                        std::env::var(name).ok()
                    })
                    .map_err(|(key, message)| ConfigError::Unusable { key, message })
            })
            .collect()
    }

    /// Range checks that types alone do not express; each error names its key.
    fn validate_tls(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, why: &str| Err((key.to_owned(), why.to_owned()));
        let tls = &self.tls;
        if tls.cert_file.is_empty() != tls.key_file.is_empty() {
            return bad(
                "tls.cert_file",
                "cert_file and key_file are set together (TLS needs both) or not at all",
            );
        }
        if !tls.enabled() {
            if !tls.client_ca_file.is_empty() {
                return bad(
                    "tls.client_ca_file",
                    "client certificates need TLS: set cert_file and key_file too",
                );
            }
            if self.metrics_tls {
                return bad(
                    "metrics_tls",
                    "needs the [tls] certificate: set tls.cert_file and tls.key_file",
                );
            }
        }
        if !tls.identities.is_empty() && tls.client_ca_file.is_empty() {
            return bad(
                "tls.identities",
                "identities are read from client certificates: set tls.client_ca_file",
            );
        }
        for (i, identity) in tls.identities.iter().enumerate() {
            if identity.subject.trim().is_empty() {
                return bad(&format!("tls.identities[{i}].subject"), "must not be empty");
            }
            if llmops_access::Role::parse(&identity.role).is_none() {
                return bad(
                    &format!("tls.identities[{i}].role"),
                    &format!(
                        "{:?} is not a role: reader, app, editor or admin",
                        identity.role
                    ),
                );
            }
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&tls.reload_interval)
        {
            return bad("tls.reload_interval", "must be between 100ms and 1h");
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, why: &str| Err((key.to_owned(), why.to_owned()));
        if self.audit_retention < Duration::from_secs(3600) {
            return bad("audit_retention", "must be at least 1h");
        }
        if self.generation_retention < Duration::from_secs(3600) {
            return bad("generation_retention", "must be at least 1h");
        }
        if self.usage_retention < Duration::from_secs(24 * 3600) {
            return bad("usage_retention", "must be at least 1d");
        }
        if !(1..=10_000_000).contains(&self.online_queue_limit) {
            return bad("online_queue_limit", "must be between 1 and 10000000");
        }
        if !(1..=1024).contains(&self.online_max_concurrency) {
            return bad("online_max_concurrency", "must be between 1 and 1024");
        }
        if self.online_check_interval < Duration::from_millis(100) {
            return bad("online_check_interval", "must be at least 100ms");
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_generation_text_bytes) {
            return bad(
                "max_generation_text_bytes",
                "must be between 1024 and 16777216",
            );
        }
        for (i, price) in self.prices.iter().enumerate() {
            if price.model.trim().is_empty() {
                return bad(&format!("prices[{i}].model"), "must not be empty");
            }
            for (field, value) in [
                ("input_price_per_1k", price.input_price_per_1k),
                ("output_price_per_1k", price.output_price_per_1k),
            ] {
                if !(value.is_finite() && value >= 0.0) {
                    return bad(
                        &format!("prices[{i}].{field}"),
                        "must be a finite number >= 0",
                    );
                }
            }
        }
        if self.max_import_bytes == 0 {
            return bad("max_import_bytes", "must be greater than zero");
        }
        if !(1024..=256 * 1024 * 1024).contains(&self.max_message_bytes) {
            return bad("max_message_bytes", "must be between 1024 and 268435456");
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir", "must not be empty");
        }
        if let Err(err) = self.database_url() {
            return Err(("database_url".to_owned(), err.to_string()));
        }
        if !(1..=10_000).contains(&self.database_max_connections) {
            return bad("database_max_connections", "must be between 1 and 10000");
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(3600))
            .contains(&self.feed_poll_interval)
        {
            return bad("feed_poll_interval", "must be between 10ms and 1h");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&self.leader_lease) {
            return bad("leader_lease", "must be between 1s and 10m");
        }
        self.validate_tls()?;
        if self.auth.mode == AuthMode::None
            && !self.tls.mutual()
            && !self.listen.ip().is_loopback()
            && !self.auth.allow_unauthenticated
        {
            return bad(
                "auth.mode",
                &format!(
                    "\"none\" lets anyone who reaches {} do anything, and it is not a loopback \
                     address: set [auth] mode = \"api_keys\" (the first key comes from \
                     `llmops auth bootstrap`), [tls] client_ca_file for client certificates, \
                     or [auth] allow_unauthenticated = true if a proxy in front \
                     authenticates every call",
                    self.listen
                ),
            );
        }
        if self.experiments.min_samples_for_significance < 2 {
            return bad(
                "experiments.min_samples_for_significance",
                "must be at least 2",
            );
        }
        if self.experiments.alert_check_interval < Duration::from_secs(1) {
            return bad("experiments.alert_check_interval", "must be at least 1s");
        }
        if self.evaluation.interval < Duration::from_secs(1) {
            return bad("evaluation.interval", "must be at least 1s");
        }
        for (metric, value) in &self.alert_thresholds {
            if !value.is_finite() {
                return Err((
                    format!("alert_thresholds.{metric}"),
                    "must be a finite number".to_owned(),
                ));
            }
        }
        if self.alerts.heartbeat_interval < Duration::from_millis(10) {
            return bad("alerts.heartbeat_interval", "must be at least 10ms");
        }
        if self.alerts.prune_interval < Duration::from_secs(1) {
            return bad("alerts.prune_interval", "must be at least 1s");
        }
        let mut names = std::collections::BTreeSet::new();
        for (index, webhook) in self.webhooks.iter().enumerate() {
            if !names.insert(webhook.name.as_str()) {
                return Err((
                    format!("webhooks[{index}].name"),
                    format!("{:?} is used by two receivers", webhook.name),
                ));
            }
            // Checked again, with the secret, at start-up; here for the shape.
            webhook.receiver(&format!("webhooks[{index}]"), |_| Some(String::new()))?;
        }
        let mut names = std::collections::BTreeSet::new();
        for (index, provider) in self.providers.iter().enumerate() {
            if !names.insert(provider.name.as_str()) {
                return Err((
                    format!("providers[{index}].name"),
                    format!("{:?} is used by two providers", provider.name),
                ));
            }
            // Checked again, with the API key, at start-up; here for the shape.
            provider.settings(&format!("providers[{index}]"), |_| Some(String::new()))?;
        }
        self.providers_health.validate()?;
        if self.server.max_connections == 0 || self.server.max_concurrent_streams == 0 {
            return bad(
                "server",
                "max_connections and max_concurrent_streams must be greater than zero",
            );
        }
        for (key, duration) in [
            ("server.handshake_timeout", self.server.handshake_timeout),
            ("server.idle_timeout", self.server.idle_timeout),
            ("server.keepalive_interval", self.server.keepalive_interval),
            ("server.keepalive_timeout", self.server.keepalive_timeout),
        ] {
            if duration.is_zero() {
                return bad(key, "must be longer than zero");
            }
        }
        if self.prompts.max_template_bytes == 0
            || self.prompts.max_render_bytes == 0
            || self.prompts.render_fuel == 0
            || self.prompts.max_render_memory < 64 * 1024
        {
            return bad(
                "prompts",
                "limits must be greater than zero (max_render_memory at least 65536)",
            );
        }
        Ok(())
    }
}

/// Durations as humantime strings (`"24h"`, `"90s"`) in TOML.
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        duration: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(*duration))
    }

    /// The largest whole unit: `24h`, `90s`, `1500ms`, as people write them.
    fn format_duration(duration: Duration) -> String {
        let millis = duration.as_millis();
        for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
            if millis >= size && millis % size == 0 {
                return format!("{}{unit}", millis / size);
            }
        }
        format!("{millis}ms")
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(|err| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration such as \"90s\" or \"24h\": {err}"
            ))
        })
    }
}

#[cfg(test)]
mod tests;
