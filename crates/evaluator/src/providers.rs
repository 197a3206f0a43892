//! Model providers: where evaluation runs (and model experiments) send prompts.
//!
//! [`openai`] speaks the OpenAI-compatible `/chat/completions` API (OpenAI, vLLM,
//! Ollama, llama.cpp, LiteLLM), with a concurrency cap, a requests-per-minute cap, and
//! retries of 429 and 5xx answers with exponential backoff that honours `Retry-After`.
//! [`echo`] answers with the prompt itself, so evaluations run offline for demos and tests.

pub mod echo;
pub mod openai;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// What is sent to a model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CompletionRequest {
    /// The conversation: a chat prompt's messages, or one user message.
    pub messages: Vec<ChatMessage>,
    /// Parameters (temperature, max_tokens, ...) over the provider's defaults.
    pub parameters: Map<String, Value>,
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

/// A model provider.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The configured name runs refer to.
    fn name(&self) -> &str;
    /// Requests in flight at most, when capped.
    fn max_concurrency(&self) -> Option<usize> {
        None
    }
    /// Sends one completion request.
    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, ProviderError>;
}

/// The providers runs may name, in configured order (the built-in `echo` last).
#[derive(Clone, Default)]
pub struct ProviderSet {
    providers: Vec<std::sync::Arc<dyn Provider>>,
}

impl std::fmt::Debug for ProviderSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl ProviderSet {
    /// The given providers, then `echo` unless one of them is named so.
    pub fn new(configured: Vec<std::sync::Arc<dyn Provider>>) -> Self {
        let mut providers = configured;
        if !providers.iter().any(|p| p.name() == echo::ECHO) {
            providers.push(std::sync::Arc::new(echo::EchoProvider));
        }
        Self { providers }
    }

    /// The provider with this name.
    pub fn get(&self, name: &str) -> Option<std::sync::Arc<dyn Provider>> {
        self.providers.iter().find(|p| p.name() == name).cloned()
    }

    /// Every name, in order.
    pub fn names(&self) -> Vec<&str> {
        self.providers.iter().map(|p| p.name()).collect()
    }
}
