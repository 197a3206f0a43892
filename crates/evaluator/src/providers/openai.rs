//! An OpenAI-compatible `/chat/completions` client with the limits a shared model
//! endpoint needs: at most `max_concurrency` requests in flight, at most
//! `requests_per_minute` started per minute (spaced evenly), and retries of 429 and 5xx
//! answers (and failed connections) with exponential backoff and jitter, waiting as long
//! as `Retry-After` asks when it is given. Timeouts are not retried: a sample that times
//! out is an error of that sample.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use super::limits::{CallLimits, Quota};
use super::{Completion, CompletionRequest, Provider, ProviderError, QueueClock};

/// The longest `Retry-After` honoured; longer asks are capped.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// How much of an error body is kept in messages.
const BODY_EXCERPT: usize = 300;

/// How to reach and use one OpenAI-compatible endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiSettings {
    /// The configured name runs refer to.
    pub name: String,
    /// The API root, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Sent as the request's `model`.
    pub model: String,
    /// Sent as a bearer token, when set.
    pub api_key: Option<String>,
    /// Parameters sent with every request (a request's own take precedence).
    pub default_parameters: Map<String, Value>,
    /// Requests in flight at most; unset: no cap.
    pub max_concurrency: Option<usize>,
    /// Requests started per minute at most; unset: no cap.
    pub requests_per_minute: Option<u32>,
    /// Price per 1,000 prompt tokens.
    pub input_price_per_1k: Option<f64>,
    /// Price per 1,000 answer tokens.
    pub output_price_per_1k: Option<f64>,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first backoff; it doubles with each retry.
    pub initial_backoff: Duration,
    /// A URL whose GET answers 2xx while the endpoint serves; probes use
    /// `<base_url>/models` without it.
    pub health_url: Option<String>,
}

impl OpenAiSettings {
    /// Settings with the defaults: no caps, no prices, 60 s timeout, 4 retries from 500 ms.
    pub fn new(name: &str, base_url: &str, model: &str) -> Self {
        Self {
            name: name.to_owned(),
            base_url: base_url.to_owned(),
            model: model.to_owned(),
            api_key: None,
            default_parameters: Map::new(),
            max_concurrency: None,
            requests_per_minute: None,
            input_price_per_1k: None,
            output_price_per_1k: None,
            timeout: Duration::from_secs(60),
            max_retries: 4,
            initial_backoff: Duration::from_millis(500),
            health_url: None,
        }
    }
}

/// The client.
#[derive(Debug)]
pub struct OpenAiProvider {
    settings: OpenAiSettings,
    /// Scrubs the API key (and any bearer token or URL credentials) from upstream text.
    redactor: llmops_redact::Redactor,
    url: String,
    http: reqwest::Client,
    limits: CallLimits,
}

enum Attempt {
    Done(Completion),
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Fail(ProviderError),
}

impl OpenAiProvider {
    /// A client for `settings`, whose caps are counted in this process.
    pub fn new(settings: OpenAiSettings) -> Result<Self, ProviderError> {
        Self::with_quota(settings, Quota::Local)
    }

    /// A client for `settings`, whose caps are counted where `quota` says.
    pub fn with_quota(settings: OpenAiSettings, quota: Quota) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|e| ProviderError::Connection(e.to_string()))?;
        Ok(Self {
            redactor: llmops_redact::Redactor::new(settings.api_key.iter()),
            url: format!(
                "{}/chat/completions",
                settings.base_url.trim_end_matches('/')
            ),
            limits: CallLimits::new(
                &settings.name,
                settings.max_concurrency,
                settings.requests_per_minute,
                quota,
                settings.timeout,
            ),
            http,
            settings,
        })
    }

    fn body(&self, request: &CompletionRequest) -> Value {
        let mut body = self.settings.default_parameters.clone();
        body.extend(request.parameters.clone());
        body.insert("model".into(), json!(self.settings.model));
        body.insert("messages".into(), json!(request.messages));
        Value::Object(body)
    }

    async fn attempt(&self, body: &Value, queue: &QueueClock) -> Attempt {
        {
            let _waiting = queue.wait();
            if let Err(error) = self.limits.pace().await {
                return Attempt::Fail(error);
            }
        }
        let started = Instant::now();
        let mut call = self.http.post(&self.url).json(body);
        if let Some(key) = &self.settings.api_key {
            call = call.bearer_auth(key);
        }
        let response = match call.send().await {
            Ok(response) => response,
            Err(err) if err.is_timeout() => {
                return Attempt::Fail(ProviderError::Timeout(self.settings.timeout))
            }
            Err(err) => {
                return Attempt::Retry {
                    reason: format!("connection failed: {err}"),
                    after: None,
                }
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s).min(MAX_RETRY_AFTER));
        let text = match response.text().await {
            Ok(text) => text,
            Err(err) if err.is_timeout() => {
                return Attempt::Fail(ProviderError::Timeout(self.settings.timeout))
            }
            Err(err) => {
                return Attempt::Retry {
                    reason: format!("reading the answer failed: {err}"),
                    after: None,
                }
            }
        };
        if status.as_u16() == 429 || status.is_server_error() {
            return Attempt::Retry {
                reason: format!("HTTP {}: {}", status.as_u16(), excerpt(&text)),
                after: retry_after,
            };
        }
        if !status.is_success() {
            return Attempt::Fail(ProviderError::Refused {
                status: status.as_u16(),
                body: excerpt(&text),
            });
        }
        match parse_completion(&text) {
            Ok((answer, input_tokens, output_tokens)) => Attempt::Done(Completion {
                cost: self.cost(input_tokens, output_tokens),
                text: answer,
                input_tokens,
                output_tokens,
                latency: started.elapsed(),
                attempts: 1,
            }),
            Err(err) => Attempt::Fail(err),
        }
    }

    /// The cheapest chat completion: one token of answer to a one-word prompt. A model
    /// configured with `max_completion_tokens` (some refuse `max_tokens` beside it) gets
    /// that key instead.
    fn cost(&self, input_tokens: u64, output_tokens: u64) -> Option<f64> {
        let (input, output) = (
            self.settings.input_price_per_1k,
            self.settings.output_price_per_1k,
        );
        if input.is_none() && output.is_none() {
            return None;
        }
        Some(
            input.unwrap_or(0.0) * input_tokens as f64 / 1000.0
                + output.unwrap_or(0.0) * output_tokens as f64 / 1000.0,
        )
    }

    fn backoff(&self, retry: u32) -> Duration {
        let base = self
            .settings
            .initial_backoff
            .saturating_mul(1 << retry.min(16));
        // +-20% jitter, so clients that failed together do not retry together.
        base.mul_f64(0.8 + 0.4 * fastrand::f64())
    }
}

/// An HTTP client error with its causes: reqwest's own message only names the URL.
fn error_chain(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn excerpt(text: &str) -> String {
    let mut end = text.len().min(BODY_EXCERPT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim().to_owned()
}

/// The answer's text and token counts.
fn parse_completion(text: &str) -> Result<(String, u64, u64), ProviderError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ProviderError::Malformed(format!("not JSON ({e}): {}", excerpt(text))))?;
    let answer = value
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ProviderError::Malformed(format!("no choices[0].message.content: {}", excerpt(text)))
        })?;
    let tokens = |field: &str| {
        value
            .pointer(&format!("/usage/{field}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Ok((
        answer.to_owned(),
        tokens("prompt_tokens"),
        tokens("completion_tokens"),
    ))
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.settings.name
    }

    fn max_concurrency(&self) -> Option<usize> {
        self.settings.max_concurrency
    }

    fn kind(&self) -> &str {
        "openai"
    }

    fn model(&self) -> &str {
        &self.settings.model
    }

    /// One attempt, no retries (a probe that retried would hide the failures it is
    /// there to count), outside the concurrency and rate caps (a probe queued behind a
    /// busy run would time out and report a working provider as down).
    /// The default is `GET <base_url>/models`, which every OpenAI-compatible server
    /// answers without generating anything, so probing costs no tokens: nothing calls
    /// a paid model on its own.
    async fn probe(&self) -> Result<(), String> {
        self.probe_once()
            .await
            .map_err(|error| self.redactor.redact(&error).into_owned())
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, ProviderError> {
        self.complete_with_retries(request)
            .await
            .map_err(|err| err.redacted(&self.redactor))
    }
}

impl OpenAiProvider {
    /// One health probe; its error may quote upstream text, secrets included.
    async fn probe_once(&self) -> Result<(), String> {
        let url = match &self.settings.health_url {
            Some(url) => url.clone(),
            None => format!("{}/models", self.settings.base_url.trim_end_matches('/')),
        };
        let call = self.http.get(&url);
        let call = match &self.settings.api_key {
            Some(key) => call.bearer_auth(key),
            None => call,
        };
        let response = call.send().await.map_err(|err| {
            if err.is_timeout() {
                format!("timed out after {:?}", self.settings.timeout)
            } else {
                format!("connection failed: {}", error_chain(&err))
            }
        })?;
        let status = response.status();
        // Rate limited means up: real calls back off and get through, so a busy
        // provider is not taken out of selection.
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Ok(());
        }
        let text = response
            .text()
            .await
            .map_err(|err| format!("reading the answer failed: {}", error_chain(&err)))?;
        if !status.is_success() {
            return Err(format!("HTTP {}: {}", status.as_u16(), excerpt(&text)));
        }
        Ok(())
    }

    /// A completion with retries; its error may quote upstream text, secrets included.
    async fn complete_with_retries(
        &self,
        request: &CompletionRequest,
    ) -> Result<Completion, ProviderError> {
        let _slot = {
            let _waiting = request.queue.wait();
            self.limits.slot().await?
        };
        let body = self.body(request);
        let mut retries = 0;
        loop {
            match self.attempt(&body, &request.queue).await {
                Attempt::Done(mut completion) => {
                    completion.attempts = retries + 1;
                    return Ok(completion);
                }
                Attempt::Fail(err) => return Err(err),
                Attempt::Retry { reason, after } => {
                    if retries >= self.settings.max_retries {
                        return Err(ProviderError::Exhausted {
                            attempts: retries + 1,
                            last: reason,
                        });
                    }
                    tokio::time::sleep(after.unwrap_or_else(|| self.backoff(retries))).await;
                    retries += 1;
                }
            }
        }
    }
}
