//! A mock OpenAI-compatible `/v1/chat/completions` server on loopback, for the `eval`
//! bench scenario and the end-to-end tests.
//!
//! By default it answers each request, after a fixed latency, with the last message's
//! text (like the built-in `echo`), and counts tokens as whitespace-separated words.
//! Directives inside the last message script the answer, so a dataset's samples can
//! exercise every path of a run:
//! - `[[sleep:MS]]` waits MS milliseconds more;
//! - `[[status:CODE]]` answers with that HTTP status (a `Retry-After: 0` comes with 429);
//! - `[[malformed]]` answers 200 with a body that is not a chat completion;
//! - `[[answer:TEXT]]` answers TEXT instead of the message.
//!
//! A judge prompt (one that asks for a `SCORE_<criterion>: <number>` line) is answered
//! with `SCORE_<criterion>: S`, where S comes from `[[score:MODEL=S]]` for the request's
//! model, else `[[score:S]]`, else 1.
//!
//! `GET /v1/models` answers an empty model list (a health URL for probes).
//! [`MockProvider::set_down`] makes every request answer 503 until it is cleared, for
//! tests of provider health. Like some real endpoints, every refusal repeats the
//! request's `Authorization` header in its body, so tests can check that no key leaks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use regex::Regex;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

static DIRECTIVE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\[\[(sleep|status|malformed|answer|score)(?::([^\]]*))?\]\]")
        .expect("the directive pattern compiles")
});
static CRITERION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"SCORE_([A-Za-z0-9_.\-]+): <number>").expect("the criterion pattern compiles")
});

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    /// Completion requests being answered now, and the most there ever were at once.
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
    /// When each completion request arrived, in arrival order.
    arrivals: std::sync::Mutex<Vec<std::time::Instant>>,
    probes: AtomicU64,
    latency_ms: AtomicU64,
    /// While set, every request answers 503.
    down: AtomicBool,
}

/// A running mock provider; stops when dropped.
#[derive(Debug)]
pub struct MockProvider {
    address: SocketAddr,
    counters: Arc<Counters>,
    stop: CancellationToken,
}

impl MockProvider {
    /// Starts a mock on a free loopback port that answers after `latency`.
    pub async fn start(latency: Duration) -> std::io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), latency).await
    }

    /// Starts a mock on `address` that answers after `latency`.
    pub async fn start_on(address: SocketAddr, latency: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        counters
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::Relaxed);
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .route("/v1/models", get(models))
            .with_state(counters.clone());
        let stop = CancellationToken::new();
        let shutdown = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await;
        });
        Ok(Self {
            address,
            counters,
            stop,
        })
    }

    /// The base URL a provider entry points at (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    /// Chat completion requests answered (or refused) so far.
    pub fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::Relaxed)
    }

    /// The most completion requests that were being answered at once.
    pub fn peak_in_flight(&self) -> u64 {
        self.counters.peak_in_flight.load(Ordering::SeqCst)
    }

    /// When each completion request arrived, in arrival order.
    pub fn arrivals(&self) -> Vec<std::time::Instant> {
        self.counters
            .arrivals
            .lock()
            .expect("arrivals lock")
            .clone()
    }

    /// Health probes (`GET /v1/models`) answered (or refused) so far.
    pub fn probes(&self) -> u64 {
        self.counters.probes.load(Ordering::Relaxed)
    }

    /// Takes the mock down (every request answers 503) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.counters.down.store(down, Ordering::SeqCst);
    }

    /// Changes the fixed latency of later requests.
    pub fn set_latency(&self, latency: Duration) {
        self.counters
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A refusal whose body repeats the request's `Authorization` header.
fn refusal(code: StatusCode, reason: &str, headers: &HeaderMap) -> Response {
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("none");
    let body = format!("{reason} (you sent Authorization: {authorization})");
    (code, body).into_response()
}

fn unavailable(headers: &HeaderMap) -> Response {
    refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        "the mock provider is down",
        headers,
    )
}

async fn models(State(counters): State<Arc<Counters>>, headers: HeaderMap) -> Response {
    counters.probes.fetch_add(1, Ordering::Relaxed);
    if counters.down.load(Ordering::SeqCst) {
        return unavailable(&headers);
    }
    axum::Json(json!({"object": "list", "data": []})).into_response()
}

/// Counts a request as in flight until dropped (on every way out of the handler).
struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    fn enter(counters: &'a Counters) -> Self {
        let now = counters.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        counters.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(counters)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn complete(
    State(counters): State<Arc<Counters>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    counters.requests.fetch_add(1, Ordering::Relaxed);
    counters
        .arrivals
        .lock()
        .expect("arrivals lock")
        .push(std::time::Instant::now());
    let _answering = InFlight::enter(&counters);
    if counters.down.load(Ordering::SeqCst) {
        return unavailable(&headers);
    }
    let request: Value = match serde_json::from_str(&body) {
        Ok(request) => request,
        Err(err) => return (StatusCode::BAD_REQUEST, err.to_string()).into_response(),
    };
    let model = request["model"].as_str().unwrap_or_default().to_owned();
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let text = messages
        .last()
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    let mut delay = Duration::from_millis(counters.latency_ms.load(Ordering::Relaxed));
    let mut answer = text.clone();
    let mut scores: Vec<(Option<String>, String)> = Vec::new();
    for captures in DIRECTIVE.captures_iter(&text) {
        let argument = captures.get(2).map_or("", |m| m.as_str());
        match &captures[1] {
            "sleep" => delay += Duration::from_millis(argument.parse().unwrap_or(0)),
            "status" => {
                let code = StatusCode::from_u16(argument.parse().unwrap_or(500))
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                tokio::time::sleep(delay).await;
                let mut response = refusal(code, "scripted failure", &headers);
                if code == StatusCode::TOO_MANY_REQUESTS {
                    response
                        .headers_mut()
                        .insert("retry-after", "0".parse().expect("a valid header"));
                }
                return response;
            }
            "malformed" => {
                tokio::time::sleep(delay).await;
                return (StatusCode::OK, "{\"choices\": \"nope\"}").into_response();
            }
            "answer" => answer = argument.to_owned(),
            _ => match argument.split_once('=') {
                Some((judge, score)) => scores.push((Some(judge.to_owned()), score.to_owned())),
                None => scores.push((None, argument.to_owned())),
            },
        }
    }
    if let Some(criterion) = CRITERION.captures(&text) {
        let score = scores
            .iter()
            .find(|(judge, _)| judge.as_deref() == Some(model.as_str()))
            .or_else(|| scores.iter().find(|(judge, _)| judge.is_none()))
            .map_or("1", |(_, score)| score.as_str());
        answer = format!("Judged.\nSCORE_{}: {score}", &criterion[1]);
    }
    tokio::time::sleep(delay).await;
    let prompt_tokens: usize = messages
        .iter()
        .filter_map(|m| m["content"].as_str())
        .map(|c| c.split_whitespace().count())
        .sum();
    let body = json!({
        "id": "mock",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": answer.split_whitespace().count()},
    });
    axum::Json(body).into_response()
}
