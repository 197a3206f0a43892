//! Helpers for the evaluation tests: prompts, datasets, runs and alerts through the
//! public API.

use std::time::Duration;

use llmops::bench::mock_provider::MockProvider;
use llmops::config::{Config, ProviderConfig};
use llmops::pb;
use prost_types::value::Kind;
use tokio_stream::StreamExt as _;
use tonic_types::StatusExt;

use super::{string_value, TestServer};

pub fn fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

pub fn provider(name: &str, base_url: &str, model: &str) -> ProviderConfig {
    toml::from_str(&format!(
        "name = {name:?}\nkind = \"openai\"\nbase_url = {base_url:?}\nmodel = {model:?}\ntimeout = \"5s\"\nmax_retries = 1\n"
    ))
    .unwrap()
}

pub fn with_mock(mock: &MockProvider) -> impl FnOnce(&mut Config) + '_ {
    move |config| {
        config.providers = vec![
            provider("mock", &mock.base_url(), "mock-model"),
            provider("judge-a", &mock.base_url(), "a"),
            provider("judge-b", &mock.base_url(), "b"),
        ];
    }
}

pub async fn prompt(server: &TestServer, name: &str, version: &str, template: &str) {
    server
        .prompts()
        .create_prompt_version(pb::CreatePromptVersionRequest {
            prompt_version: Some(pb::PromptVersion {
                name: name.into(),
                version: version.into(),
                template: template.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
}

pub async fn dataset(server: &TestServer, name: &str, samples: Vec<(&str, &str, &str)>) -> String {
    let dataset = server
        .evaluation()
        .create_dataset(pb::CreateDatasetRequest {
            dataset: Some(pb::Dataset {
                name: name.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .dataset
        .unwrap();
    if !samples.is_empty() {
        server
            .evaluation()
            .add_samples(pb::AddSamplesRequest {
                dataset_id: dataset.id.clone(),
                samples: samples
                    .into_iter()
                    .map(|(id, input, expected)| pb::Sample {
                        id: id.into(),
                        input: Some(string_value(input)),
                        expected_output: expected.into(),
                        ..Default::default()
                    })
                    .collect(),
            })
            .await
            .unwrap();
    }
    dataset.id
}

pub fn metric(name: &str, scorer: &str, params: serde_json::Value) -> pb::MetricConfig {
    let serde_json::Value::Object(params) = params else {
        panic!("params are an object")
    };
    pb::MetricConfig {
        name: name.into(),
        scorer: scorer.into(),
        params: Some(prost_types::Struct {
            fields: params
                .into_iter()
                .map(|(key, value)| (key, json_to_value(value)))
                .collect(),
        }),
        threshold: None,
    }
}

pub fn json_to_value(value: serde_json::Value) -> prost_types::Value {
    let kind = match value {
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
        serde_json::Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(json_to_value).collect(),
        }),
        _ => Kind::NullValue(0),
    };
    prost_types::Value { kind: Some(kind) }
}

pub fn run(dataset_id: &str, prompt: &str, version: &str, model: &str) -> pb::Run {
    pb::Run {
        dataset_id: dataset_id.into(),
        prompt_name: prompt.into(),
        prompt_version: version.into(),
        model: model.into(),
        metrics: vec![metric("exact", "exact_match", serde_json::json!({}))],
        ..Default::default()
    }
}

pub async fn create_run(server: &TestServer, run: pb::Run) -> Result<pb::Run, tonic::Status> {
    server
        .evaluation()
        .create_run(pb::CreateRunRequest { run: Some(run) })
        .await
        .map(|r| r.into_inner().run.unwrap())
}

pub async fn start(server: &TestServer, id: &str) -> Result<pb::Run, tonic::Status> {
    server
        .evaluation()
        .start_run(pb::StartRunRequest { run_id: id.into() })
        .await
        .map(|r| r.into_inner().run.unwrap())
}

/// Follows WatchRun to the end; returns every state seen.
pub async fn watch(server: &TestServer, id: &str) -> Vec<pb::Run> {
    let mut stream = server
        .evaluation()
        .watch_run(pb::WatchRunRequest { run_id: id.into() })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Some(event) = tokio::time::timeout_at(deadline, stream.next())
        .await
        .expect("the run ends within a minute")
    {
        seen.push(event.unwrap().run.unwrap());
    }
    seen
}

pub async fn next_alert(
    stream: &mut tonic::Streaming<pb::AlertEvent>,
    kind: pb::AlertEventKind,
) -> pb::Alert {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("an alert event arrives")
            .unwrap()
            .unwrap();
        if event.kind == kind as i32 {
            return event.alert.unwrap();
        }
    }
}

/// A live `Subscribe` stream of evaluation alerts of one type.
pub async fn subscribe(
    server: &TestServer,
    alert_type: pb::AlertType,
) -> tonic::Streaming<pb::AlertEvent> {
    server
        .alerts()
        .subscribe(pb::SubscribeRequest {
            sources: vec!["evaluation".into()],
            types: vec![alert_type.into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}
