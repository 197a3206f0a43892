//! Model providers: where evaluation runs (and model experiments) send prompts.
//!
//! [`openai`] speaks the OpenAI-compatible `/chat/completions` API (OpenAI, vLLM,
//! Ollama, llama.cpp, LiteLLM), with a concurrency cap, a requests-per-minute cap, and
//! retries of 429 and 5xx answers with exponential backoff that honours `Retry-After`.
//! [`echo`] answers with the prompt itself, so evaluations run offline for demos and tests.
//! [`health`] probes the providers and keeps their recent call statistics; [`selection`]
//! picks the best healthy one (what the model `auto` means). [`limits`] counts a
//! provider's caps, per process or for the whole deployment.

pub mod echo;
pub mod health;
pub mod limits;
pub mod openai;
pub mod registry;
pub mod selection;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use health::{ConfiguredProvider, HealthSettings, ProviderHealth, ProviderStatus, ScoreSource};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// Time requests spent waiting for their provider to admit them (a concurrency slot, or
/// their turn under a requests-per-minute cap), so a caller's time limit can leave out
/// the queue: a sample's limit is about the model, not about how busy the provider is.
/// Clones share one clock; overlapping waits (a panel's judges) count once.
#[derive(Debug, Clone, Default)]
pub struct QueueClock(Arc<std::sync::Mutex<QueueState>>);

#[derive(Debug, Default)]
struct QueueState {
    /// Finished waits.
    total: Duration,
    /// Waits going on now.
    waiting: usize,
    /// Since when at least one wait has been going on.
    since: Option<Instant>,
}

impl QueueClock {
    /// Counts the time until the returned guard is dropped as waiting.
    pub fn wait(&self) -> QueueWait<'_> {
        let mut state = self.0.lock().expect("queue clock lock");
        if state.waiting == 0 {
            state.since = Some(Instant::now());
        }
        state.waiting += 1;
        QueueWait(self)
    }

    /// Starts timing a call: [`QueueStopwatch::elapsed`] leaves out the waits counted on
    /// this clock meanwhile.
    pub fn stopwatch(&self) -> QueueStopwatch {
        QueueStopwatch {
            clock: self.clone(),
            started: Instant::now(),
            waited_before: self.waited(),
        }
    }

    /// Whether a wait is going on now.
    pub fn is_waiting(&self) -> bool {
        self.0.lock().expect("queue clock lock").waiting > 0
    }

    /// The time spent waiting so far, including a wait going on now.
    pub fn waited(&self) -> Duration {
        let state = self.0.lock().expect("queue clock lock");
        state.total + state.since.map_or(Duration::ZERO, |since| since.elapsed())
    }
}

/// A call's own time; see [`QueueClock::stopwatch`].
#[derive(Debug)]
pub struct QueueStopwatch {
    clock: QueueClock,
    started: Instant,
    waited_before: Duration,
}

impl QueueStopwatch {
    /// The time since the stopwatch started, less the time spent queued meanwhile.
    pub fn elapsed(&self) -> Duration {
        let queued = self.clock.waited().saturating_sub(self.waited_before);
        self.started.elapsed().saturating_sub(queued)
    }
}

/// A wait in progress; see [`QueueClock::wait`].
#[derive(Debug)]
pub struct QueueWait<'a>(&'a QueueClock);

impl Drop for QueueWait<'_> {
    fn drop(&mut self) {
        let mut state = self.0 .0.lock().expect("queue clock lock");
        state.waiting -= 1;
        if state.waiting == 0 {
            if let Some(since) = state.since.take() {
                state.total += since.elapsed();
            }
        }
    }
}

/// What is sent to a model.
#[derive(Debug, Clone, Default)]
pub struct CompletionRequest {
    /// The conversation: a chat prompt's messages, or one user message.
    pub messages: Vec<ChatMessage>,
    /// Parameters (temperature, max_tokens, ...) over the provider's defaults.
    pub parameters: Map<String, Value>,
    /// Where the provider counts the time the request waits to be admitted.
    pub queue: QueueClock,
}

/// What a model answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The answer's text.
    pub text: String,
    /// Prompt tokens, as the provider counted them (0 when it did not say).
    pub input_tokens: u64,
    /// Answer tokens, as the provider counted them (0 when it did not say).
    pub output_tokens: u64,
    /// Cost in the configured currency, when the provider is priced.
    pub cost: Option<f64>,
    /// Wall time of the successful attempt.
    pub latency: Duration,
    /// Attempts made (1 without retries).
    pub attempts: u32,
}

/// Why a completion failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// The request timed out (per attempt).
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The provider kept answering 429 or 5xx until the retries ran out.
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last answer or error.
        last: String,
    },
    /// The provider refused the request (4xx other than 429): retrying will not help.
    #[error("refused with HTTP {status}: {body}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The answer was not a chat completion.
    #[error("unreadable answer: {0}")]
    Malformed(String),
    /// The connection failed.
    #[error("connection failed: {0}")]
    Connection(String),
}

impl ProviderError {
    /// The same error with every secret scrubbed from the upstream text it carries.
    pub fn redacted(self, redactor: &llmops_redact::Redactor) -> Self {
        let clean = |text: String| redactor.redact(&text).into_owned();
        match self {
            Self::Timeout(limit) => Self::Timeout(limit),
            Self::Exhausted { attempts, last } => Self::Exhausted {
                attempts,
                last: clean(last),
            },
            Self::Refused { status, body } => Self::Refused {
                status,
                body: clean(body),
            },
            Self::Malformed(text) => Self::Malformed(clean(text)),
            Self::Connection(text) => Self::Connection(clean(text)),
        }
    }
}

/// A model provider.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The configured name runs refer to.
    fn name(&self) -> &str;
    /// Requests in flight at most, when capped.
    fn max_concurrency(&self) -> Option<usize> {
        None
    }
    /// The API it speaks (`openai`, `echo`), as listings show it.
    fn kind(&self) -> &str {
        "custom"
    }
    /// The model it sends requests to, as listings show it.
    fn model(&self) -> &str {
        self.name()
    }
    /// Sends one completion request.
    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, ProviderError>;
    /// Asks, as cheaply as it can, whether the provider serves; the error says why not,
    /// for operators. By default a one-token completion.
    async fn probe(&self) -> Result<(), String> {
        let request = CompletionRequest {
            messages: vec![ChatMessage {
                role: "user".to_owned(),
                content: "ping".to_owned(),
            }],
            parameters: Map::from_iter([("max_tokens".to_owned(), Value::from(1))]),
            ..CompletionRequest::default()
        };
        self.complete(&request)
            .await
            .map(drop)
            .map_err(|err| err.to_string())
    }
}

/// The providers runs may name, in configured order (the built-in `echo` last), each
/// wrapped so that its calls are counted in their [`ProviderHealth`].
#[derive(Clone)]
pub struct ProviderSet {
    providers: Vec<Arc<dyn Provider>>,
    health: Arc<ProviderHealth>,
}

impl std::fmt::Debug for ProviderSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Default for ProviderSet {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl ProviderSet {
    /// The given providers, then `echo` unless one of them is named so; none has a
    /// configured score and health has the default settings.
    pub fn new(configured: Vec<Arc<dyn Provider>>) -> Self {
        Self::with_health(
            configured
                .into_iter()
                .map(|provider| ConfiguredProvider {
                    provider,
                    score: None,
                })
                .collect(),
            HealthSettings::default(),
        )
    }

    /// The given providers (with their configured scores), then `echo` unless one of
    /// them is named so, tracked by one [`ProviderHealth`] with `settings`. Its probe
    /// loop ([`ProviderHealth::run`]) is the caller's to start.
    pub fn with_health(mut configured: Vec<ConfiguredProvider>, settings: HealthSettings) -> Self {
        if !configured.iter().any(|c| c.provider.name() == echo::ECHO) {
            configured.push(ConfiguredProvider {
                provider: Arc::new(echo::EchoProvider),
                score: None,
            });
        }
        let health = Arc::new(ProviderHealth::new(&configured, settings));
        let providers = configured
            .into_iter()
            .enumerate()
            .map(|(index, c)| health::monitored(c.provider, health.clone(), index))
            .collect();
        Self { providers, health }
    }

    /// The provider with this name.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Provider>> {
        self.providers.iter().find(|p| p.name() == name).cloned()
    }

    /// Every name, in order.
    pub fn names(&self) -> Vec<&str> {
        self.providers.iter().map(|p| p.name()).collect()
    }

    /// The providers' health and call statistics.
    pub fn health(&self) -> &Arc<ProviderHealth> {
        &self.health
    }
}
