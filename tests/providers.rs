//! Provider selection end to end: health probes against mock OpenAI-compatible providers
//! that go down and come back, selection by score with ties to the earliest configured,
//! pass-rate scores, the error codes, and the model `auto` in runs and model experiments.

mod common;

use std::time::Duration;

use common::eval::{create_run, dataset, prompt, run, start, watch};
use common::TestServer;
use llmops::bench::mock_provider::MockProvider;
use llmops::config::{Config, ProviderConfig};
use llmops::pb;
use llmops::pb::provider_service_client::ProviderServiceClient;
use tokio::time::Instant;
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;
use tonic::Code;
use tonic_types::StatusExt;

const THRESHOLD: u32 = 3;

/// A provider entry on `mock`; `extra` is more TOML (`score = 0.5`).
fn provider(name: &str, mock: &MockProvider, extra: &str) -> ProviderConfig {
    toml::from_str(&format!(
        "name = {name:?}\nkind = \"openai\"\nbase_url = {:?}\nmodel = \"{name}-model\"\ntimeout = \"5s\"\nmax_retries = 0\n{extra}\n",
        mock.base_url()
    ))
    .unwrap()
}

/// Probes every 100 ms, unhealthy after three failures.
fn fast_probes(config: &mut Config, providers: Vec<ProviderConfig>) {
    config.providers = providers;
    config.providers_health.interval = Duration::from_millis(100);
    config.providers_health.failure_threshold = THRESHOLD;
    config.providers_health.timeout = Duration::from_secs(2);
}

fn client(server: &TestServer) -> ProviderServiceClient<Channel> {
    ProviderServiceClient::new(server.channel.clone())
}

async fn list(server: &TestServer) -> Vec<pb::Provider> {
    client(server)
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner()
        .providers
}

fn named<'a>(providers: &'a [pb::Provider], name: &str) -> &'a pb::Provider {
    providers
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("{name} is listed: {providers:?}"))
}

async fn select(server: &TestServer, candidates: &[&str]) -> Result<pb::Provider, tonic::Status> {
    client(server)
        .select_provider(pb::SelectProviderRequest {
            candidates: candidates.iter().map(|c| c.to_string()).collect(),
        })
        .await
        .map(|r| r.into_inner().provider.unwrap())
}

/// Lists the providers until `done` holds (checking `invariant` on every listing on the
/// way), for at most 20 s.
async fn wait_until(
    server: &TestServer,
    what: &str,
    invariant: impl Fn(&pb::Provider),
    done: impl Fn(&[pb::Provider]) -> bool,
) -> Vec<pb::Provider> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let providers = list(server).await;
        providers.iter().for_each(&invariant);
        if done(&providers) {
            return providers;
        }
        assert!(Instant::now() < deadline, "never {what}: {providers:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Health is exactly "fewer than THRESHOLD failed probes in a row".
fn health_follows_the_threshold(p: &pb::Provider) {
    if p.kind == "echo" {
        assert!(p.healthy && p.last_probe_at.is_none(), "{p:?}");
        return;
    }
    assert_eq!(p.healthy, p.consecutive_failures < THRESHOLD, "{p:?}");
}

async fn until_healthy(server: &TestServer, names: &[&str], healthy: bool) -> Vec<pb::Provider> {
    let what = format!("{names:?} healthy={healthy}");
    wait_until(server, &what, health_follows_the_threshold, |providers| {
        names.iter().all(|name| {
            let p = named(providers, name);
            p.healthy == healthy && p.last_probe_at.is_some()
        })
    })
    .await
}

#[tokio::test]
async fn a_provider_that_goes_down_turns_unhealthy_after_the_threshold_and_recovers() {
    let mock = MockProvider::start(Duration::ZERO).await.unwrap();
    let health_url = format!("health_url = \"{}/models\"", mock.base_url());
    let server = TestServer::start_with(|config| {
        fast_probes(
            config,
            vec![
                provider("models-probed", &mock, ""),
                provider("url-probed", &mock, &health_url),
            ],
        )
    })
    .await;
    let both = ["models-probed", "url-probed"];
    let providers = until_healthy(&server, &both, true).await;
    let chat = named(&providers, "models-probed");
    assert_eq!(
        (chat.kind.as_str(), chat.model.as_str()),
        ("openai", "models-probed-model")
    );
    assert!(
        chat.latency_p50.is_some() && chat.recent_requests > 0,
        "{chat:?}"
    );
    assert_eq!(chat.error_rate, 0.0);

    mock.set_down(true);
    let providers = until_healthy(&server, &both, false).await;
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains("llmops_provider_healthy{provider=\"models-probed\"} 0"),
        "{metrics}"
    );
    for name in both {
        let p = named(&providers, name);
        assert!(p.consecutive_failures >= THRESHOLD, "{p:?}");
        assert!(p.last_error.contains("HTTP 503"), "{p:?}");
        assert!(p.error_rate > 0.0, "{p:?}");
    }
    assert!(
        named(&providers, "echo").healthy,
        "echo has nothing to fail"
    );

    // None healthy: selection refuses, naming each provider and why.
    let refused = select(&server, &[]).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().starts_with("no healthy model provider: ")
            && refused.message().contains("models-probed failed its last")
            && refused.message().contains("url-probed failed its last")
            && refused.message().contains("HTTP 503"),
        "{}",
        refused.message()
    );
    // Named, echo still serves.
    assert_eq!(
        select(&server, &["models-probed", "echo"])
            .await
            .unwrap()
            .name,
        "echo"
    );

    mock.set_down(false);
    let providers = until_healthy(&server, &both, true).await;
    for name in both {
        let p = named(&providers, name);
        assert_eq!(
            (p.consecutive_failures, p.last_error.as_str()),
            (0, ""),
            "{p:?}"
        );
    }
    assert_eq!(select(&server, &[]).await.unwrap().name, "models-probed");
}

#[tokio::test]
async fn selection_takes_the_highest_score_and_a_tie_goes_to_the_earliest_configured() {
    let mock = MockProvider::start(Duration::ZERO).await.unwrap();
    let server = TestServer::start_with(|config| {
        fast_probes(
            config,
            vec![
                provider("low", &mock, "score = 0.2"),
                provider("high-a", &mock, "score = 0.9"),
                provider("high-b", &mock, "score = 0.9"),
            ],
        )
    })
    .await;
    until_healthy(&server, &["low", "high-a", "high-b"], true).await;
    let chosen = select(&server, &[]).await.unwrap();
    assert_eq!(chosen.name, "high-a");
    assert_eq!(chosen.score, 0.9);
    assert_eq!(chosen.score_source, pb::ProviderScoreSource::Config as i32);
    assert_eq!(
        select(&server, &["high-b", "high-a"]).await.unwrap().name,
        "high-a",
        "configured order breaks the tie, not the candidates' order"
    );
    assert_eq!(
        select(&server, &["low", "high-b"]).await.unwrap().name,
        "high-b"
    );
    assert_eq!(select(&server, &["low"]).await.unwrap().name, "low");

    let providers = list(&server).await;
    let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["low", "high-a", "high-b", "echo"]);
}

#[tokio::test]
async fn unknown_candidates_are_invalid_and_nothing_configured_is_a_failed_precondition() {
    let server = TestServer::start().await;
    let unknown = select(&server, &["echo", "gpt-9"]).await.unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    let violations = unknown.get_details_bad_request().unwrap().field_violations;
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].field, "candidates[1]");
    assert!(
        violations[0]
            .description
            .contains("\"gpt-9\" is not a configured provider"),
        "{}",
        violations[0].description
    );

    let none = select(&server, &[]).await.unwrap_err();
    assert_eq!(none.code(), Code::FailedPrecondition);
    assert!(
        none.message()
            .starts_with("no model providers are configured"),
        "{}",
        none.message()
    );
    assert_eq!(select(&server, &["echo"]).await.unwrap().kind, "echo");
    let listed = list(&server).await;
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].name.as_str(), listed[0].healthy), ("echo", true));
}

async fn prompt_and_dataset(server: &TestServer) -> String {
    prompt(server, "p", "1.0.0", "{{input}}").await;
    // The mock answers with the prompt: one sample passes exact match, one does not.
    dataset(
        server,
        "qa",
        vec![("s1", "same", "same"), ("s2", "this", "that")],
    )
    .await
}

fn run_spec(dataset_id: &str, model: &str) -> pb::Run {
    run(dataset_id, "p", "1.0.0", model)
}

/// Starts the run and follows it to its end.
async fn run_to_end(server: &TestServer, id: &str) -> pb::Run {
    start(server, id).await.unwrap();
    watch(server, id).await.pop().unwrap()
}

#[tokio::test]
async fn a_run_with_model_auto_records_the_provider_it_got() {
    let mock_a = MockProvider::start(Duration::ZERO).await.unwrap();
    let mock_b = MockProvider::start(Duration::ZERO).await.unwrap();
    let server = TestServer::start_with(|config| {
        fast_probes(
            config,
            vec![
                provider("a", &mock_a, "score = 0.3"),
                provider("b", &mock_b, "score = 0.8"),
            ],
        )
    })
    .await;
    until_healthy(&server, &["a", "b"], true).await;
    let dataset_id = prompt_and_dataset(&server).await;

    let created = create_run(&server, run_spec(&dataset_id, "auto"))
        .await
        .unwrap();
    assert_eq!(
        (created.model.as_str(), created.requested_model.as_str()),
        ("b", "auto")
    );
    let calls_before = mock_b.requests();
    let done = run_to_end(&server, &created.id).await;
    assert_eq!(done.status, pb::RunStatus::Completed as i32);
    assert_eq!(
        (done.model.as_str(), done.requested_model.as_str()),
        ("b", "auto")
    );
    assert!(
        mock_b.requests() >= calls_before + 2,
        "the samples went to b"
    );
    let named_run = create_run(&server, run_spec(&dataset_id, "a"))
        .await
        .unwrap();
    assert_eq!(named_run.requested_model, "a");

    // b goes down: `auto` now means a.
    mock_b.set_down(true);
    until_healthy(&server, &["b"], false).await;
    let created = create_run(&server, run_spec(&dataset_id, "auto"))
        .await
        .unwrap();
    assert_eq!(created.model, "a");

    // Both down: no run.
    mock_a.set_down(true);
    until_healthy(&server, &["a", "b"], false).await;
    let refused = create_run(&server, run_spec(&dataset_id, "auto"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().starts_with("no healthy model provider"),
        "{}",
        refused.message()
    );
}

#[tokio::test]
async fn without_a_configured_score_the_recent_pass_rate_scores_a_provider() {
    let mock = MockProvider::start(Duration::ZERO).await.unwrap();
    let server = TestServer::start_with(|config| {
        fast_probes(
            config,
            vec![
                provider("fixed", &mock, "score = 0.2"),
                provider("measured", &mock, ""),
            ],
        )
    })
    .await;
    let before = named(&list(&server).await, "measured").clone();
    assert_eq!(
        (before.score, before.score_source),
        (0.0, pb::ProviderScoreSource::None as i32)
    );
    assert_eq!(select(&server, &[]).await.unwrap().name, "fixed");

    let dataset_id = prompt_and_dataset(&server).await;
    let created = create_run(&server, run_spec(&dataset_id, "measured"))
        .await
        .unwrap();
    let done = run_to_end(&server, &created.id).await;
    assert_eq!(done.results.unwrap().pass_rate, 0.5);

    let after = named(&list(&server).await, "measured").clone();
    assert_eq!(
        (after.score, after.score_source),
        (0.5, pb::ProviderScoreSource::PassRate as i32)
    );
    assert_eq!(select(&server, &[]).await.unwrap().name, "measured");
}

#[tokio::test]
async fn an_auto_variant_is_handed_out_as_the_selected_provider() {
    let mock = MockProvider::start(Duration::ZERO).await.unwrap();
    let server = TestServer::start_with(|config| {
        fast_probes(
            config,
            vec![
                provider("small", &mock, "score = 0.4"),
                provider("large", &mock, "score = 0.6"),
            ],
        )
    })
    .await;
    let mut experiments = server.experiments();
    let experiment = experiments
        .create_model_experiment(pb::CreateModelExperimentRequest {
            name: "auto-vs-small".into(),
            models: vec!["auto".into(), "small".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .experiment
        .unwrap();
    assert_eq!(experiment.variants[0].model, "auto", "stored as asked");
    experiments
        .start_experiment(pb::StartExperimentRequest {
            experiment_id: experiment.id.clone(),
        })
        .await
        .unwrap();
    let mut served = std::collections::BTreeMap::new();
    for user in 0..40 {
        let assignment = experiments
            .assign_variant(pb::AssignVariantRequest {
                experiment_id: experiment.id.clone(),
                user_id: format!("user-{user}"),
            })
            .await
            .unwrap()
            .into_inner();
        let variant = assignment.variant.unwrap();
        served.insert(variant.id, variant.model);
    }
    let auto_id = &experiment.variants[0].id;
    let small_id = &experiment.variants[1].id;
    assert_eq!(served.get(auto_id).map(String::as_str), Some("large"));
    assert_eq!(served.get(small_id).map(String::as_str), Some("small"));
}

#[tokio::test]
async fn the_service_is_in_health_and_reflection() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let server = TestServer::start().await;
    let status = HealthClient::new(server.channel.clone())
        .check(HealthCheckRequest {
            service: "llmops.v1.ProviderService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let response = ServerReflectionClient::new(server.channel.clone())
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("{response:?}")
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "llmops.v1.ProviderService"),
        "{list:?}"
    );
}

/// A provider that repeats the `Authorization` header in its refusals leaked the API key
/// into run results, ListProviders' `last_error` and SelectProvider's message. Every
/// piece of upstream text is scrubbed of the key and of any bearer token first.
#[tokio::test]
async fn a_provider_echoing_its_api_key_leaks_it_nowhere() {
    const KEY: &str = "sk-test-4f9c2e7a1b";
    const KEY_VARIABLE: &str = "LLMOPS_TEST_LEAKY_PROVIDER_KEY";
    // SAFETY of the set: nextest runs each test in its own process.
    std::env::set_var(KEY_VARIABLE, KEY);
    let mock = MockProvider::start(Duration::ZERO).await.unwrap();
    let server = TestServer::start_with(|config| {
        fast_probes(
            config,
            vec![provider(
                "leaky",
                &mock,
                &format!("api_key_env = \"{KEY_VARIABLE}\""),
            )],
        )
    })
    .await;
    prompt(&server, "echo", "1.0.0", "{{ input }}").await;
    let dataset_id = dataset(&server, "leaky", vec![("a", "[[status:401]]", "x")]).await;
    let created = common::eval::create_run(&server, run(&dataset_id, "echo", "1.0.0", "leaky"))
        .await
        .unwrap();
    start(&server, &created.id).await.unwrap();
    watch(&server, &created.id).await;
    let results = server
        .evaluation()
        .list_run_results(pb::ListRunResultsRequest {
            run_id: created.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let error = &results[0].error;
    assert!(error.contains("HTTP 401"), "{error}");
    assert!(
        error.contains("Bearer [REDACTED]"),
        "the echo is there: {error}"
    );
    assert!(!error.contains(KEY), "{error}");

    mock.set_down(true);
    let providers = until_healthy(&server, &["leaky"], false).await;
    let last_error = &named(&providers, "leaky").last_error;
    assert!(last_error.contains("HTTP 503"), "{last_error}");
    assert!(!last_error.contains(KEY), "{last_error}");
    let refused = select(&server, &["leaky"]).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(!refused.message().contains(KEY), "{}", refused.message());
}
