//! Provider health and recent call statistics, which provider selection reads.
//!
//! Health comes from probes only. [`ProviderHealth::run`] probes every provider each
//! `interval` ([`Provider::probe`]: for OpenAI-compatible providers a GET of the
//! configured health URL or of `<base_url>/models`, which generates nothing);
//! `failure_threshold` failed probes in a row make a provider unhealthy, one successful
//! probe makes it healthy again. Real calls do not move health: a call can fail for
//! reasons of its own (a prompt the model refuses, a sample's time limit) that say
//! nothing about whether the endpoint serves.
//!
//! A provider starts healthy. Until a probe has answered its health is unknown, and
//! treating unknown as down would leave a freshly started server with nothing to choose
//! (and a server with probing turned off with nothing ever).
//!
//! Replicas of one deployment share probes ([`ProviderHealth::run_shared`]): the one
//! holding the prober role probes and stores what it found, the others take it, so a
//! provider is probed once per round however many replicas there are and every
//! replica selects by the same health. Call statistics stay each replica's own.
//!
//! Probes and real calls both feed a rolling window of the last [`CALL_WINDOW`]
//! requests per provider, from which `latency_p50` (of the successful ones: a refused
//! connection answers fast and would flatter a dead provider) and `error_rate` come.
//! A call abandoned before it ends (its run was cancelled, its sample ran out of time)
//! is not counted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use llmops_cluster::{ClusterStore, Leadership, ProbeRow};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::echo::ECHO;
use super::{Completion, CompletionRequest, Provider, ProviderError};
use crate::runs::quantile;

/// Gauge per provider: 1 while healthy, 0 while not (set after each probe).
pub const PROVIDER_HEALTHY: &str = "llmops_provider_healthy";

/// Requests per provider that latency and error rate are computed over.
pub const CALL_WINDOW: usize = 100;

/// How providers are probed (`[providers_health]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// Whether the probe loop runs at all; without it every provider stays healthy.
    pub enabled: bool,
    /// Time between the starts of two probe rounds.
    pub interval: Duration,
    /// Failed probes in a row that make a provider unhealthy (at least 1).
    pub failure_threshold: u32,
    /// How long one probe may take before it counts as failed.
    pub timeout: Duration,
}

impl Default for HealthSettings {
    /// Probes every 30 s, unhealthy after 3 failures, 10 s per probe.
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(30),
            failure_threshold: 3,
            timeout: Duration::from_secs(10),
        }
    }
}

/// A provider as configured, with the fixed score its entry may give.
#[derive(Clone)]
pub struct ConfiguredProvider {
    /// The provider.
    pub provider: Arc<dyn Provider>,
    /// The entry's `score`, which wins over any pass rate.
    pub score: Option<f64>,
}

impl std::fmt::Debug for ConfiguredProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfiguredProvider")
            .field("name", &self.provider.name())
            .field("score", &self.score)
            .finish()
    }
}

/// Where a provider's score came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreSource {
    /// The configured `score`.
    Config,
    /// The mean pass rate of its recent completed evaluation runs.
    PassRate,
    /// Neither; the score is 0.
    None,
}

/// A provider's health, score and recent statistics at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderStatus {
    /// The name runs use.
    pub name: String,
    /// The API it speaks.
    pub kind: String,
    /// The model it sends requests to.
    pub model: String,
    /// See the module documentation.
    pub healthy: bool,
    /// Higher is better.
    pub score: f64,
    /// Where `score` came from.
    pub score_source: ScoreSource,
    /// Median latency of the successful requests in the window.
    pub latency_p50: Option<Duration>,
    /// Failed share of the requests in the window (0 when it is empty).
    pub error_rate: f64,
    /// Requests in the window.
    pub recent_requests: usize,
    /// Failed probes since the last successful one.
    pub consecutive_failures: u32,
    /// When the last probe ended.
    pub last_probe_at: Option<DateTime<Utc>>,
    /// Why the last probe failed, while probes are failing.
    pub last_error: String,
}

#[derive(Debug, Clone, Copy)]
struct RequestOutcome {
    latency: Duration,
    ok: bool,
}

#[derive(Debug)]
struct State {
    healthy: bool,
    consecutive_failures: u32,
    last_probe_at: Option<DateTime<Utc>>,
    last_error: String,
    window: VecDeque<RequestOutcome>,
}

impl State {
    fn record(&mut self, request: RequestOutcome) {
        if self.window.len() == CALL_WINDOW {
            self.window.pop_front();
        }
        self.window.push_back(request);
    }
}

struct Tracked {
    name: String,
    kind: String,
    model: String,
    score: Option<f64>,
    /// Unwrapped: probes are recorded by the prober, not by the monitoring wrapper.
    provider: Arc<dyn Provider>,
    /// `echo` depends on nothing that can fail, so it is never probed.
    probed: bool,
    state: Mutex<State>,
}

/// The health and call statistics of every provider in a [`ProviderSet`](super::ProviderSet).
pub struct ProviderHealth {
    settings: HealthSettings,
    tracked: Vec<Tracked>,
}

impl std::fmt::Debug for ProviderHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderHealth")
            .field("settings", &self.settings)
            .field(
                "providers",
                &self.tracked.iter().map(|t| &t.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ProviderHealth {
    /// Tracks `providers`, in order, all healthy to begin with.
    pub fn new(providers: &[ConfiguredProvider], settings: HealthSettings) -> Self {
        let tracked = providers
            .iter()
            .map(|c| Tracked {
                name: c.provider.name().to_owned(),
                kind: c.provider.kind().to_owned(),
                model: c.provider.model().to_owned(),
                score: c.score,
                provider: c.provider.clone(),
                probed: c.provider.name() != ECHO,
                state: Mutex::new(State {
                    healthy: true,
                    consecutive_failures: 0,
                    last_probe_at: None,
                    last_error: String::new(),
                    window: VecDeque::with_capacity(CALL_WINDOW),
                }),
            })
            .collect();
        Self { settings, tracked }
    }

    /// The settings probes follow.
    pub fn settings(&self) -> &HealthSettings {
        &self.settings
    }

    /// Every provider's status, in order. A provider without a configured score gets
    /// `pass_rate(name)` when that is known, else 0.
    pub fn statuses(&self, pass_rate: impl Fn(&str) -> Option<f64>) -> Vec<ProviderStatus> {
        self.tracked
            .iter()
            .map(|tracked| {
                // Scores first: `pass_rate` may read other state, not under this lock.
                let (score, score_source) = match tracked.score {
                    Some(score) => (score, ScoreSource::Config),
                    None => match pass_rate(&tracked.name) {
                        Some(rate) => (rate, ScoreSource::PassRate),
                        None => (0.0, ScoreSource::None),
                    },
                };
                let state = tracked.state.lock().expect("provider state lock");
                let mut latencies: Vec<f64> = state
                    .window
                    .iter()
                    .filter(|r| r.ok)
                    .map(|r| r.latency.as_secs_f64())
                    .collect();
                latencies.sort_by(f64::total_cmp);
                let failed = state.window.iter().filter(|r| !r.ok).count();
                ProviderStatus {
                    name: tracked.name.clone(),
                    kind: tracked.kind.clone(),
                    model: tracked.model.clone(),
                    healthy: state.healthy,
                    score,
                    score_source,
                    latency_p50: (!latencies.is_empty())
                        .then(|| Duration::from_secs_f64(quantile(&latencies, 0.5))),
                    error_rate: if state.window.is_empty() {
                        0.0
                    } else {
                        failed as f64 / state.window.len() as f64
                    },
                    recent_requests: state.window.len(),
                    consecutive_failures: state.consecutive_failures,
                    last_probe_at: state.last_probe_at,
                    last_error: state.last_error.clone(),
                }
            })
            .collect()
    }

    /// Probes every provider that can fail, all at once, and waits for the answers
    /// (each at most `timeout`).
    pub async fn probe_all(&self) {
        let probes =
            self.tracked
                .iter()
                .filter(|tracked| tracked.probed)
                .map(|tracked| async move {
                    let started = Instant::now();
                    let outcome =
                        match tokio::time::timeout(self.settings.timeout, tracked.provider.probe())
                            .await
                        {
                            Ok(outcome) => outcome,
                            Err(_) => Err(format!("no answer within {:?}", self.settings.timeout)),
                        };
                    self.observe_probe(tracked, started.elapsed(), outcome);
                });
        futures_util::future::join_all(probes).await;
    }

    /// Probes every `interval`, the first round at once, until `stop`; returns at once
    /// when probing is turned off or there is nothing to probe.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        if !self.settings.enabled || !self.tracked.iter().any(|t| t.probed) {
            return;
        }
        let mut ticks = tokio::time::interval(self.settings.interval);
        // A slow round delays the next instead of being followed by a burst.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            // Shutdown does not wait for a probe that is still out.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.probe_all() => {}
            }
        }
    }

    /// Like [`ProviderHealth::run`], for replicas that share probes through `store`:
    /// while this replica holds `prober` it probes and stores what it found; otherwise
    /// it takes the stored health, so one replica probes for all and every replica
    /// selects by the same health.
    pub async fn run_shared(
        self: Arc<Self>,
        prober: Leadership,
        store: Arc<dyn ClusterStore>,
        stop: CancellationToken,
    ) {
        if !self.settings.enabled || !self.tracked.iter().any(|t| t.probed) {
            return;
        }
        let mut ticks = tokio::time::interval(self.settings.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let shared = if prober.is_held() {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = self.probe_all() => {}
                }
                store.store_probes(&self.probe_rows()).await
            } else {
                store.probes().await.map(|rows| self.adopt(&rows))
            };
            if let Err(error) = shared {
                tracing::warn!(%error, "sharing provider health failed; trying again next round");
            }
        }
    }

    /// The probed providers' health, for the other replicas.
    fn probe_rows(&self) -> Vec<ProbeRow> {
        self.tracked
            .iter()
            .filter_map(|tracked| {
                let state = tracked.state.lock().expect("provider state lock");
                let probed_at = state.last_probe_at?;
                Some(ProbeRow {
                    provider: tracked.name.clone(),
                    healthy: state.healthy,
                    consecutive_failures: state.consecutive_failures,
                    last_error: state.last_error.clone(),
                    probed_at_us: probed_at.timestamp_micros(),
                })
            })
            .collect()
    }

    /// Takes the health another replica probed. Rows of providers this replica does
    /// not know (a configuration rolling out) are passed over.
    fn adopt(&self, rows: &[ProbeRow]) {
        for row in rows {
            let Some(tracked) = self
                .tracked
                .iter()
                .find(|tracked| tracked.probed && tracked.name == row.provider)
            else {
                continue;
            };
            {
                let mut state = tracked.state.lock().expect("provider state lock");
                if state.healthy != row.healthy {
                    tracing::info!(provider = %tracked.name, healthy = row.healthy, "provider health changed, as probed by another replica");
                }
                state.healthy = row.healthy;
                state.consecutive_failures = row.consecutive_failures;
                state.last_error.clone_from(&row.last_error);
                state.last_probe_at = DateTime::from_timestamp_micros(row.probed_at_us);
            }
            metrics::gauge!(PROVIDER_HEALTHY, "provider" => tracked.name.clone())
                .set(if row.healthy { 1.0 } else { 0.0 });
        }
    }

    fn observe_probe(&self, tracked: &Tracked, latency: Duration, outcome: Result<(), String>) {
        let healthy = self.apply_probe(tracked, latency, outcome);
        metrics::gauge!(PROVIDER_HEALTHY, "provider" => tracked.name.clone()).set(if healthy {
            1.0
        } else {
            0.0
        });
    }

    /// Counts a probe's outcome; returns whether the provider is healthy after it.
    fn apply_probe(
        &self,
        tracked: &Tracked,
        latency: Duration,
        outcome: Result<(), String>,
    ) -> bool {
        let mut state = tracked.state.lock().expect("provider state lock");
        state.last_probe_at = Some(Utc::now());
        state.record(RequestOutcome {
            latency,
            ok: outcome.is_ok(),
        });
        match outcome {
            Ok(()) => {
                if !state.healthy {
                    tracing::info!(provider = %tracked.name, failed_probes = state.consecutive_failures, "provider is healthy again");
                }
                state.healthy = true;
                state.consecutive_failures = 0;
                state.last_error.clear();
            }
            Err(error) => {
                state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                if state.healthy && state.consecutive_failures >= self.settings.failure_threshold {
                    state.healthy = false;
                    tracing::warn!(provider = %tracked.name, failed_probes = state.consecutive_failures, %error, "provider is unhealthy");
                }
                state.last_error = error;
            }
        }
        state.healthy
    }

    fn record_call(&self, index: usize, latency: Duration, ok: bool) {
        if let Some(tracked) = self.tracked.get(index) {
            tracked
                .state
                .lock()
                .expect("provider state lock")
                .record(RequestOutcome { latency, ok });
        }
    }
}

/// `provider`, with each of its calls counted in `health` under `index`.
pub(super) fn monitored(
    provider: Arc<dyn Provider>,
    health: Arc<ProviderHealth>,
    index: usize,
) -> Arc<dyn Provider> {
    Arc::new(Monitored {
        inner: provider,
        health,
        index,
    })
}

struct Monitored {
    inner: Arc<dyn Provider>,
    health: Arc<ProviderHealth>,
    index: usize,
}

#[async_trait]
impl Provider for Monitored {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn max_concurrency(&self) -> Option<usize> {
        self.inner.max_concurrency()
    }

    fn kind(&self) -> &str {
        self.inner.kind()
    }

    fn model(&self) -> &str {
        self.inner.model()
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, ProviderError> {
        let call = request.queue.stopwatch();
        let result = self.inner.complete(request).await;
        match &result {
            // The successful attempt's time: backoff between retries is not the model's.
            Ok(completion) => self
                .health
                .record_call(self.index, completion.latency, true),
            // Time queued for a slot or a rate turn is not the provider's either.
            Err(_) => self.health.record_call(self.index, call.elapsed(), false),
        }
        result
    }

    async fn probe(&self) -> Result<(), String> {
        self.inner.probe().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::providers::ProviderSet;

    /// A provider whose probes and calls fail while `down` is set.
    struct Switchable {
        name: &'static str,
        down: AtomicBool,
    }

    #[async_trait]
    impl Provider for Switchable {
        fn name(&self) -> &str {
            self.name
        }

        async fn complete(&self, _: &CompletionRequest) -> Result<Completion, ProviderError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(ProviderError::Connection("refused".into()));
            }
            Ok(Completion {
                text: "ok".into(),
                input_tokens: 1,
                output_tokens: 1,
                cost: None,
                latency: Duration::from_millis(40),
                attempts: 1,
            })
        }
    }

    fn switchable(name: &'static str) -> Arc<Switchable> {
        Arc::new(Switchable {
            name,
            down: AtomicBool::new(false),
        })
    }

    fn set(providers: &[Arc<Switchable>], threshold: u32) -> ProviderSet {
        ProviderSet::with_health(
            providers
                .iter()
                .map(|p| ConfiguredProvider {
                    provider: p.clone(),
                    score: None,
                })
                .collect(),
            HealthSettings {
                failure_threshold: threshold,
                ..HealthSettings::default()
            },
        )
    }

    fn status(set: &ProviderSet, name: &str) -> ProviderStatus {
        set.health()
            .statuses(|_| None)
            .into_iter()
            .find(|s| s.name == name)
            .unwrap()
    }

    #[tokio::test]
    async fn unhealthy_after_the_threshold_and_healthy_after_one_success() {
        let a = switchable("a");
        let set = set(std::slice::from_ref(&a), 3);
        assert!(status(&set, "a").healthy, "unknown counts as healthy");
        assert_eq!(status(&set, "a").last_probe_at, None);

        a.down.store(true, Ordering::SeqCst);
        for failures in 1..=2 {
            set.health().probe_all().await;
            let s = status(&set, "a");
            assert!(s.healthy, "still healthy after {failures} failures");
            assert_eq!(s.consecutive_failures, failures);
            assert!(s.last_error.contains("refused"), "{}", s.last_error);
        }
        set.health().probe_all().await;
        assert!(!status(&set, "a").healthy);

        a.down.store(false, Ordering::SeqCst);
        set.health().probe_all().await;
        let s = status(&set, "a");
        assert!(s.healthy);
        assert_eq!(s.consecutive_failures, 0);
        assert_eq!(s.last_error, "");
        assert!(s.last_probe_at.is_some());
    }

    #[tokio::test]
    async fn a_success_between_failures_restarts_the_count() {
        let a = switchable("a");
        let set = set(std::slice::from_ref(&a), 2);
        a.down.store(true, Ordering::SeqCst);
        set.health().probe_all().await;
        a.down.store(false, Ordering::SeqCst);
        set.health().probe_all().await;
        a.down.store(true, Ordering::SeqCst);
        set.health().probe_all().await;
        assert!(status(&set, "a").healthy);
        set.health().probe_all().await;
        assert!(!status(&set, "a").healthy);
    }

    #[tokio::test]
    async fn echo_is_never_probed_and_always_healthy() {
        let set = set(&[], 1);
        set.health().probe_all().await;
        let echo = status(&set, ECHO);
        assert!(echo.healthy);
        assert_eq!(echo.kind, "echo");
        assert_eq!(echo.last_probe_at, None);
        assert_eq!(echo.recent_requests, 0);
    }

    #[tokio::test]
    async fn real_calls_give_latency_and_error_rate_but_not_health() {
        let a = switchable("a");
        let set = set(std::slice::from_ref(&a), 1);
        let provider = set.get("a").unwrap();
        let request = CompletionRequest::default();
        for _ in 0..3 {
            provider.complete(&request).await.unwrap();
        }
        a.down.store(true, Ordering::SeqCst);
        provider.complete(&request).await.unwrap_err();
        let s = status(&set, "a");
        assert!(
            s.healthy,
            "a failed call does not make a provider unhealthy"
        );
        assert_eq!(s.recent_requests, 4);
        assert_eq!(s.error_rate, 0.25);
        assert_eq!(s.latency_p50, Some(Duration::from_millis(40)));
    }

    #[tokio::test]
    async fn the_window_keeps_the_last_requests_only() {
        let a = switchable("a");
        let set = set(std::slice::from_ref(&a), 1);
        let provider = set.get("a").unwrap();
        a.down.store(true, Ordering::SeqCst);
        for _ in 0..10 {
            provider
                .complete(&CompletionRequest::default())
                .await
                .unwrap_err();
        }
        a.down.store(false, Ordering::SeqCst);
        for _ in 0..CALL_WINDOW {
            provider
                .complete(&CompletionRequest::default())
                .await
                .unwrap();
        }
        let s = status(&set, "a");
        assert_eq!(s.recent_requests, CALL_WINDOW);
        assert_eq!(s.error_rate, 0.0);
    }

    #[test]
    fn a_configured_score_wins_over_the_pass_rate() {
        let a: Arc<dyn Provider> = switchable("a");
        let b: Arc<dyn Provider> = switchable("b");
        let c: Arc<dyn Provider> = switchable("c");
        let set = ProviderSet::with_health(
            vec![
                ConfiguredProvider {
                    provider: a,
                    score: Some(0.2),
                },
                ConfiguredProvider {
                    provider: b,
                    score: None,
                },
                ConfiguredProvider {
                    provider: c,
                    score: None,
                },
            ],
            HealthSettings::default(),
        );
        let statuses = set.health().statuses(|name| (name != "c").then_some(0.9));
        let scores: Vec<(f64, ScoreSource)> =
            statuses.iter().map(|s| (s.score, s.score_source)).collect();
        assert_eq!(
            scores,
            [
                (0.2, ScoreSource::Config),
                (0.9, ScoreSource::PassRate),
                (0.0, ScoreSource::None),
                (0.9, ScoreSource::PassRate),
            ],
            "a, b, c, then echo"
        );
    }

    #[tokio::test]
    async fn a_probe_that_hangs_fails_after_the_timeout() {
        struct Hanging;
        #[async_trait]
        impl Provider for Hanging {
            fn name(&self) -> &str {
                "hanging"
            }
            async fn complete(&self, _: &CompletionRequest) -> Result<Completion, ProviderError> {
                std::future::pending().await
            }
        }
        let set = ProviderSet::with_health(
            vec![ConfiguredProvider {
                provider: Arc::new(Hanging),
                score: None,
            }],
            HealthSettings {
                timeout: Duration::from_millis(20),
                failure_threshold: 1,
                ..HealthSettings::default()
            },
        );
        set.health().probe_all().await;
        let s = status(&set, "hanging");
        assert!(!s.healthy);
        assert!(
            s.last_error.starts_with("no answer within"),
            "{}",
            s.last_error
        );
    }
}
