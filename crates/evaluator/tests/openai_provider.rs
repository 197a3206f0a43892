//! The OpenAI-compatible provider against a real HTTP server on loopback that answers
//! as a scripted model endpoint: successes, 429s with Retry-After, 500s, refusals,
//! malformed bodies, slow answers; plus the concurrency and rate caps, and health probes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use llmops_evaluator::providers::echo::EchoProvider;
use llmops_evaluator::providers::openai::{OpenAiProvider, OpenAiSettings};
use llmops_evaluator::providers::{ChatMessage, CompletionRequest, Provider, ProviderError};
use serde_json::{json, Value};

/// One scripted answer: status, Retry-After, body.
type Scripted = (u16, Option<&'static str>, String);

#[derive(Default)]
struct Mock {
    script: Mutex<VecDeque<Scripted>>,
    requests: Mutex<Vec<(HeaderMap, Value)>>,
    delay: Mutex<Duration>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

fn completion(text: &str) -> String {
    json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3}
    })
    .to_string()
}

async fn chat(State(mock): State<Arc<Mock>>, headers: HeaderMap, body: String) -> Response {
    let now = mock.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    mock.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    mock.requests.lock().unwrap().push((headers, body));
    let delay = *mock.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let scripted = mock.script.lock().unwrap().pop_front();
    mock.in_flight.fetch_sub(1, Ordering::SeqCst);
    match scripted {
        Some((status, retry_after, body)) => {
            let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", seconds.parse().unwrap());
            }
            response
        }
        None => completion("the answer").into_response(),
    }
}

async fn serve(mock: Arc<Mock>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        // A health URL for probes; answers as scripted, like the chat route.
        .route("/v1/models", get(chat))
        .with_state(mock);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}/v1")
}

fn settings(base_url: &str) -> OpenAiSettings {
    let mut settings = OpenAiSettings::new("mock", base_url, "mock-model");
    settings.initial_backoff = Duration::from_millis(10);
    settings
}

fn ask(text: &str) -> CompletionRequest {
    CompletionRequest {
        messages: vec![ChatMessage {
            role: "user".into(),
            content: text.into(),
        }],
        parameters: [("temperature".to_owned(), json!(0.0))]
            .into_iter()
            .collect(),
        ..CompletionRequest::default()
    }
}

/// Completes `request`; returns the call's own time (its queueing left out).
async fn timed(provider: &OpenAiProvider, request: &CompletionRequest) -> Duration {
    let call = request.queue.stopwatch();
    provider.complete(request).await.unwrap();
    call.elapsed()
}

#[tokio::test]
async fn time_waiting_for_a_slot_or_a_rate_turn_is_counted_apart() {
    let mock = Arc::new(Mock::default());
    *mock.delay.lock().unwrap() = Duration::from_millis(300);
    let mut capped = settings(&serve(mock.clone()).await);
    capped.max_concurrency = Some(1);
    let provider = OpenAiProvider::new(capped).unwrap();
    let first = ask("one");
    let second = ask("two");
    let started = std::time::Instant::now();
    // Each call's own time, read as it ends, leaves its queueing out.
    let own = tokio::join!(timed(&provider, &first), timed(&provider, &second));
    let both = started.elapsed();
    assert!(both >= Duration::from_millis(550), "one after the other");
    for call in [own.0, own.1] {
        // The queued call's wall time is both calls'; its own time is one call's.
        assert!(
            call + Duration::from_millis(200) < both,
            "{own:?} of {both:?}"
        );
    }
    let waits = [first.queue.waited(), second.queue.waited()];
    assert!(
        waits.iter().any(|w| *w >= Duration::from_millis(250)),
        "one request waited for the other's slot: {waits:?}"
    );
    // A request that waited for the slot waited for a whole call (300 ms at the mock),
    // so less than that means it did not wait, however slow the machine.
    assert!(
        waits.iter().any(|w| *w < Duration::from_millis(300)),
        "the other did not wait: {waits:?}"
    );

    *mock.delay.lock().unwrap() = Duration::ZERO;
    let mut paced = settings(&serve(mock.clone()).await);
    paced.requests_per_minute = Some(120);
    let provider = OpenAiProvider::new(paced).unwrap();
    let shared = ask("paced");
    provider.complete(&shared).await.unwrap();
    provider.complete(&shared).await.unwrap();
    assert!(
        shared.queue.waited() >= Duration::from_millis(400),
        "the second request waited for its turn: {:?}",
        shared.queue.waited()
    );
}

#[tokio::test]
async fn a_completion_carries_text_tokens_cost_and_the_configured_request() {
    let mock = Arc::new(Mock::default());
    let url = serve(mock.clone()).await;
    let mut settings = settings(&url);
    settings.api_key = Some("secret".into());
    settings.default_parameters = [
        ("temperature".to_owned(), json!(0.7)),
        ("max_tokens".to_owned(), json!(64)),
    ]
    .into_iter()
    .collect();
    settings.input_price_per_1k = Some(0.5);
    settings.output_price_per_1k = Some(1.5);
    let provider = OpenAiProvider::new(settings).unwrap();
    let completion = provider.complete(&ask("2+2?")).await.unwrap();
    assert_eq!(completion.text, "the answer");
    assert_eq!(
        (
            completion.input_tokens,
            completion.output_tokens,
            completion.attempts
        ),
        (12, 3, 1)
    );
    let cost = completion.cost.unwrap();
    assert!((cost - (0.5 * 12.0 + 1.5 * 3.0) / 1000.0).abs() < 1e-12);

    let requests = mock.requests.lock().unwrap();
    let (headers, body) = &requests[0];
    assert_eq!(headers["authorization"], "Bearer secret");
    assert_eq!(body["model"], "mock-model");
    assert_eq!(
        body["temperature"], 0.0,
        "the request's parameters win over the defaults"
    );
    assert_eq!(body["max_tokens"], 64);
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": "2+2?"}])
    );
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_honouring_retry_after() {
    let mock = Arc::new(Mock::default());
    mock.script.lock().unwrap().extend([
        (429, Some("0.2"), "slow down".to_owned()),
        (503, None, "busy".to_owned()),
    ]);
    let provider = OpenAiProvider::new(settings(&serve(mock.clone()).await)).unwrap();
    let started = Instant::now();
    let completion = provider.complete(&ask("x")).await.unwrap();
    assert_eq!(completion.attempts, 3);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "waited as Retry-After asked"
    );
    assert_eq!(mock.requests.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn retries_run_out_refusals_are_not_retried_and_bad_bodies_are_reported() {
    let mock = Arc::new(Mock::default());
    mock.script
        .lock()
        .unwrap()
        .extend((0..5).map(|_| (500, None, "boom".to_owned())));
    let provider = OpenAiProvider::new(settings(&serve(mock.clone()).await)).unwrap();
    let err = provider.complete(&ask("x")).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Exhausted { attempts: 5, ref last } if last.contains("HTTP 500")),
        "{err}"
    );

    mock.requests.lock().unwrap().clear();
    mock.script
        .lock()
        .unwrap()
        .push_back((400, None, r#"{"error": "bad model"}"#.to_owned()));
    let err = provider.complete(&ask("x")).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Refused { status: 400, ref body } if body.contains("bad model")),
        "{err}"
    );
    assert_eq!(
        mock.requests.lock().unwrap().len(),
        1,
        "a refusal is not retried"
    );

    mock.script
        .lock()
        .unwrap()
        .push_back((200, None, "{not json".to_owned()));
    assert!(matches!(
        provider.complete(&ask("x")).await.unwrap_err(),
        ProviderError::Malformed(_)
    ));
    mock.script
        .lock()
        .unwrap()
        .push_back((200, None, r#"{"choices": []}"#.to_owned()));
    assert!(matches!(
        provider.complete(&ask("x")).await.unwrap_err(),
        ProviderError::Malformed(_)
    ));
}

#[tokio::test]
async fn a_slow_answer_times_out_without_retrying() {
    let mock = Arc::new(Mock::default());
    *mock.delay.lock().unwrap() = Duration::from_millis(500);
    let mut settings = settings(&serve(mock.clone()).await);
    settings.timeout = Duration::from_millis(100);
    let provider = OpenAiProvider::new(settings).unwrap();
    assert!(matches!(
        provider.complete(&ask("x")).await.unwrap_err(),
        ProviderError::Timeout(_)
    ));
    assert_eq!(mock.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn concurrency_and_rate_caps_hold() {
    let mock = Arc::new(Mock::default());
    *mock.delay.lock().unwrap() = Duration::from_millis(50);
    let mut capped = settings(&serve(mock.clone()).await);
    capped.max_concurrency = Some(2);
    let provider = Arc::new(OpenAiProvider::new(capped).unwrap());
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let provider = provider.clone();
            tokio::spawn(async move { provider.complete(&ask("x")).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(
        mock.max_in_flight.load(Ordering::SeqCst),
        2,
        "never more than the cap in flight"
    );

    let mock = Arc::new(Mock::default());
    let mut paced = settings(&serve(mock.clone()).await);
    paced.requests_per_minute = Some(600); // one every 100 ms
    let provider = Arc::new(OpenAiProvider::new(paced).unwrap());
    let started = Instant::now();
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let provider = provider.clone();
            tokio::spawn(async move { provider.complete(&ask("x")).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "5 starts spaced 100 ms apart"
    );
}

#[tokio::test]
async fn echo_answers_with_the_prompt() {
    let completion = EchoProvider.complete(&ask("say this back")).await.unwrap();
    assert_eq!(completion.text, "say this back");
    assert_eq!((completion.input_tokens, completion.output_tokens), (3, 3));
}

#[tokio::test]
async fn a_probe_is_one_get_of_the_model_list_and_a_429_counts_as_up() {
    let mock = Arc::new(Mock::default());
    let mut settings = settings(&serve(mock.clone()).await);
    settings.max_retries = 4;
    settings.api_key = Some("secret".into());
    let provider = OpenAiProvider::new(settings).unwrap();
    provider.probe().await.unwrap();
    {
        let requests = mock.requests.lock().unwrap();
        assert_eq!(
            requests[0].1,
            Value::Null,
            "a GET of /models, which generates nothing"
        );
        assert_eq!(requests[0].0["authorization"], "Bearer secret");
    }

    mock.script
        .lock()
        .unwrap()
        .push_back((503, None, "down for maintenance".to_owned()));
    assert_eq!(
        provider.probe().await.unwrap_err(),
        "HTTP 503: down for maintenance"
    );
    assert_eq!(
        mock.requests.lock().unwrap().len(),
        2,
        "a probe is not retried"
    );

    mock.script
        .lock()
        .unwrap()
        .push_back((429, Some("30"), "slow down".to_owned()));
    provider.probe().await.unwrap();
}

#[tokio::test]
async fn a_probe_with_a_health_url_gets_that_url() {
    let mock = Arc::new(Mock::default());
    let url = serve(mock.clone()).await;
    let mut by_url = settings(&url);
    by_url.health_url = Some(format!("{url}/models"));
    let provider = OpenAiProvider::new(by_url).unwrap();
    provider.probe().await.unwrap();
    assert_eq!(
        mock.requests.lock().unwrap()[0].1,
        Value::Null,
        "a GET, with no chat body"
    );
    mock.script
        .lock()
        .unwrap()
        .push_back((500, None, "boom".to_owned()));
    assert_eq!(provider.probe().await.unwrap_err(), "HTTP 500: boom");

    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut unreachable = settings(&url);
    unreachable.health_url = Some(format!("http://127.0.0.1:{port}/v1/models"));
    let err = OpenAiProvider::new(unreachable)
        .unwrap()
        .probe()
        .await
        .unwrap_err();
    assert!(err.starts_with("connection failed: "), "{err}");
}
