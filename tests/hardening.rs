//! What a hostile or careless client sends cannot hurt anyone else: undecodable bytes are
//! the client's error, error messages stay small, and the server stays SERVING.

mod common;

use common::raw::{self, status_size};
use common::TestServer;
use llmops::pb;
use prost::Message as _;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

async fn assert_serving(server: &TestServer) {
    let status = HealthClient::new(server.channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
}

/// A `Value` nested `depth` lists deep.
fn nested_value(depth: usize) -> prost_types::Value {
    let mut value = common::string_value("bottom");
    for _ in 0..depth {
        value = prost_types::Value {
            kind: Some(prost_types::value::Kind::ListValue(
                prost_types::ListValue {
                    values: vec![value],
                },
            )),
        };
    }
    value
}

/// Garbage bytes, invalid UTF-8 in a string field and a `Value` nested past the decoder's
/// recursion limit were INTERNAL ("failed to decode Protobuf message"): they are the
/// client's fault, so INVALID_ARGUMENT, for unary and client-streaming methods alike.
#[tokio::test]
async fn undecodable_requests_are_invalid_argument() {
    let server = TestServer::start().await;
    let garbage = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
    // Field 1 (a string) holding bytes that are not UTF-8.
    let invalid_utf8 = vec![0x0a, 0x03, 0xff, 0xfe, 0xfd];
    let deep = pb::RenderPromptRequest {
        name: "p".into(),
        variables: [("x".to_owned(), nested_value(60))].into(),
        ..Default::default()
    }
    .encode_to_vec();
    for (path, body) in [
        ("/llmops.v1.PromptService/GetPromptVersion", garbage.clone()),
        (
            "/llmops.v1.ExperimentService/GetExperiment",
            garbage.clone(),
        ),
        ("/llmops.v1.AlertService/CreateAlert", garbage.clone()),
        ("/llmops.v1.EvaluationService/GetRun", garbage.clone()),
        ("/llmops.v1.ProviderService/ListProviders", garbage.clone()),
        (
            "/llmops.v1.PromptService/GetPromptVersion",
            invalid_utf8.clone(),
        ),
        ("/llmops.v1.ExperimentService/GetExperiment", invalid_utf8),
        ("/llmops.v1.PromptService/RenderPrompt", deep),
    ] {
        let status = raw::unary(&server.channel, path, body).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{path}: {status:?}");
        assert!(
            status.message().contains("not a valid llmops.v1."),
            "{path}: {}",
            status.message()
        );
    }
    for path in [
        "/llmops.v1.EvaluationService/ImportSamples",
        "/llmops.v1.ExperimentService/IngestMetrics",
    ] {
        let status = raw::client_streaming(&server.channel, path, vec![garbage.clone()])
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{path}: {status:?}");
    }
    assert_serving(&server).await;
}

/// A 70,000-byte id made a 70 KB message, over default clients' 16 KiB metadata limit,
/// so they saw RESOURCE_EXHAUSTED instead of NOT_FOUND. Client values are quoted to at
/// most 128 bytes and a status stays under 2 KiB.
#[tokio::test]
async fn error_messages_quote_at_most_128_bytes_of_a_client_value() {
    let server = TestServer::start().await;
    let long = "x".repeat(70_000);
    let not_found = server
        .experiments()
        .get_experiment(pb::GetExperimentRequest {
            experiment_id: long.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(not_found.code(), Code::NotFound);
    assert!(
        status_size(&not_found) < 2048,
        "{}",
        status_size(&not_found)
    );
    assert!(not_found.message().contains(&"x".repeat(128)));
    assert!(!not_found.message().contains(&"x".repeat(129)));
    assert!(not_found.message().contains('…'));

    // Field violations are bounded too: a variable name is part of the field path.
    let invalid = server
        .prompts()
        .create_prompt_version(pb::CreatePromptVersionRequest {
            prompt_version: Some(pb::PromptVersion {
                name: long.clone(),
                version: long.clone(),
                template: format!("{{{{ {} }}}}", "v".repeat(10_000)),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert!(status_size(&invalid) < 2048, "{}", status_size(&invalid));
    let fields = tonic_types::StatusExt::get_error_details(&invalid)
        .bad_request()
        .map(|b| b.field_violations.clone())
        .unwrap_or_default();
    assert!(
        fields.iter().any(|v| v.field == "prompt_version.name"),
        "{fields:?}"
    );
    for violation in &fields {
        assert!(violation.description.len() <= 256 + 3, "{violation:?}");
    }
    assert_serving(&server).await;
}
