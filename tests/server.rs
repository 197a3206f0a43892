//! The server as operators see it: health, reflection, metrics, restarts, the change
//! feed and shutdown.

mod common;

use std::time::Duration;

use common::TestServer;
use llmops::pb;
use tokio_stream::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

fn version(name: &str, version: &str, template: &str) -> pb::PromptVersion {
    pb::PromptVersion {
        name: name.into(),
        version: version.into(),
        template: template.into(),
        ..Default::default()
    }
}

async fn create(server: &TestServer, name: &str, v: &str) {
    server
        .prompts()
        .create_prompt_version(pb::CreatePromptVersionRequest {
            prompt_version: Some(version(name, v, "{{ x }}")),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn health_reports_overall_and_per_service() {
    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel.clone());
    for service in ["", "llmops.v1.PromptService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

/// Watch of an unknown service ended the stream with NOT_FOUND; the health protocol says
/// to send SERVICE_UNKNOWN and keep the stream open. A watch of the server sees
/// SERVING, then NOT_SERVING when shutdown begins, then the stream ends.
#[tokio::test]
async fn health_watch_follows_the_protocol() {
    let mut server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel.clone());
    let mut unknown = health
        .watch(HealthCheckRequest {
            service: "nope.Service".into(),
        })
        .await
        .expect("an unknown service is watched, not refused")
        .into_inner();
    let first = unknown.next().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::ServiceUnknown as i32);
    let mut overall = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        overall.next().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );
    // The unknown service's stream stays open: nothing more arrives, and it has not ended.
    let quiet = tokio::time::timeout(Duration::from_millis(300), unknown.next()).await;
    assert!(
        quiet.is_err(),
        "the watch of an unknown service ended: {quiet:?}"
    );

    let stopping = server.begin_shutdown();
    assert_eq!(
        overall.next().await.unwrap().unwrap().status,
        ServingStatus::NotServing as i32,
        "the drain is announced first"
    );
    let ended = tokio::time::timeout(Duration::from_secs(10), overall.next())
        .await
        .expect("watches end at shutdown");
    assert!(ended.as_ref().is_none_or(|item| item.is_err()), "{ended:?}");
    stopping.await.unwrap().unwrap();
}

/// Health comes from another codec than llmops' services; garbage sent to it is the
/// client's fault too.
#[tokio::test]
async fn garbage_to_health_is_invalid_argument() {
    let server = TestServer::start().await;
    let status = common::raw::unary(
        &server.channel,
        "/grpc.health.v1.Health/Check",
        vec![0xff, 0xff, 0xff, 0xff, 0x0f],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn reflection_lists_the_public_services() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let server = TestServer::start().await;
    let mut client = ServerReflectionClient::new(server.channel.clone());
    let mut ask = async |message: MessageRequest| {
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(message),
        };
        let mut responses = client
            .server_reflection_info(tokio_stream::once(request))
            .await
            .unwrap()
            .into_inner();
        responses.next().await.unwrap().unwrap()
    };
    let response = ask(MessageRequest::ListServices(String::new())).await;
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("{response:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"llmops.v1.PromptService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
    // OTLP exporters' tooling (grpcurl, collectors' debug tools) finds trace export too.
    let otlp = "opentelemetry.proto.collector.trace.v1.TraceService";
    assert!(names.contains(&otlp.to_owned()), "{names:?}");
    let response = ask(MessageRequest::FileContainingSymbol(otlp.into())).await;
    assert!(
        matches!(
            response.message_response,
            Some(MessageResponse::FileDescriptorResponse(ref files)) if !files.file_descriptor_proto.is_empty()
        ),
        "{response:?}"
    );
}

#[tokio::test]
async fn metrics_count_rpcs_by_method_and_code() {
    let server = TestServer::start().await;
    create(&server, "m", "1.0.0").await;
    let _ = server
        .prompts()
        .get_prompt_version(pb::GetPromptVersionRequest {
            name: "missing-for-metrics".into(),
            ..Default::default()
        })
        .await;
    let text = server.metrics_text().await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains(r#"grpc_server_handled_total{method="/llmops.v1.PromptService/GetPromptVersion",code="NOT_FOUND"}"#),
        "{text}"
    );
    assert!(text.contains(r#"grpc_server_handling_seconds_bucket{method="/llmops.v1.PromptService/CreatePromptVersion",code="OK""#), "{text}");
}

#[tokio::test]
async fn everything_survives_a_restart() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(data_dir.path(), |_| {}).await;
    for v in ["1.0.0", "1.1.0", "2.0.0"] {
        create(&server, "p", v).await;
    }
    let mut client = server.prompts();
    client
        .activate_prompt_version(pb::ActivatePromptVersionRequest {
            name: "p".into(),
            version: "1.1.0".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    client
        .set_prompt_label(pb::SetPromptLabelRequest {
            name: "p".into(),
            label: "production".into(),
            version: "2.0.0".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let before = client
        .list_prompt_versions(pb::ListPromptVersionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    server.stop().await;

    let server = TestServer::start_in(data_dir.path(), |_| {}).await;
    let mut client = server.prompts();
    let after = client
        .list_prompt_versions(pb::ListPromptVersionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after, before);
    let active = client
        .get_prompt_version(pb::GetPromptVersionRequest {
            name: "p".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(active.into_inner().prompt_version.unwrap().version, "1.1.0");
    let labelled = client
        .get_prompt_version(pb::GetPromptVersionRequest {
            name: "p".into(),
            label: "production".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        labelled.into_inner().prompt_version.unwrap().version,
        "2.0.0"
    );

    // The event feed survives too: resuming from 0 replays all five changes in order.
    let mut events = client
        .watch_prompts(pb::WatchPromptsRequest {
            name: String::new(),
            after_sequence: Some(0),
        })
        .await
        .unwrap()
        .into_inner();
    let mut sequences = Vec::new();
    for _ in 0..5 {
        sequences.push(events.next().await.unwrap().unwrap().sequence);
    }
    assert_eq!(sequences, [1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn watch_starts_with_a_snapshot_then_follows_changes() {
    let server = TestServer::start().await;
    create(&server, "w", "1.0.0").await;
    create(&server, "other", "1.0.0").await;
    let mut stream = server
        .prompts()
        .watch_prompts(pb::WatchPromptsRequest {
            name: "w".into(),
            after_sequence: None,
        })
        .await
        .unwrap()
        .into_inner();
    let snapshot = stream.next().await.unwrap().unwrap();
    assert_eq!(snapshot.kind, pb::PromptEventKind::Snapshot as i32);
    assert!(snapshot.prompt_version.unwrap().is_active);
    let end = stream.next().await.unwrap().unwrap();
    assert_eq!(
        (end.kind, end.sequence),
        (pb::PromptEventKind::SnapshotEnd as i32, 2)
    );

    create(&server, "other", "2.0.0").await;
    create(&server, "w", "2.0.0").await;
    server
        .prompts()
        .set_prompt_label(pb::SetPromptLabelRequest {
            name: "w".into(),
            label: "prod".into(),
            version: "2.0.0".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let created = stream.next().await.unwrap().unwrap();
    assert_eq!(
        (created.kind, created.sequence),
        (pb::PromptEventKind::VersionCreated as i32, 4)
    );
    let labelled = stream.next().await.unwrap().unwrap();
    assert_eq!(
        (labelled.kind, labelled.label.as_str()),
        (pb::PromptEventKind::LabelMoved as i32, "prod")
    );
    assert_eq!(labelled.prompt_version.unwrap().labels, ["prod"]);
}

#[tokio::test]
async fn watch_resumes_without_gaps_while_writes_continue() {
    let server = TestServer::start().await;
    for i in 0..10 {
        create(&server, "r", &format!("1.0.{i}")).await;
    }
    // Resume from the middle while another client keeps writing.
    let mut stream = server
        .prompts()
        .watch_prompts(pb::WatchPromptsRequest {
            name: String::new(),
            after_sequence: Some(4),
        })
        .await
        .unwrap()
        .into_inner();
    let writer = {
        let client = server.prompts();
        tokio::spawn(async move {
            let mut client = client;
            for i in 0..20 {
                client
                    .create_prompt_version(pb::CreatePromptVersionRequest {
                        prompt_version: Some(version("r", &format!("2.0.{i}"), "x")),
                    })
                    .await
                    .unwrap();
            }
        })
    };
    let mut sequences = Vec::new();
    while sequences.len() < 26 {
        sequences.push(stream.next().await.unwrap().unwrap().sequence);
    }
    writer.await.unwrap();
    assert_eq!(sequences, (5..=30).collect::<Vec<u64>>());
}

#[tokio::test]
async fn open_streams_end_promptly_on_shutdown() {
    // A grace far longer than the deadlines below: an open stream that held the drain
    // would keep the server up for ten minutes. The deadlines are generous for a loaded
    // two-core machine and still tell the two apart.
    let grace = Duration::from_secs(600);
    let deadline = Duration::from_secs(60);
    let mut server = TestServer::start_with(|config| config.shutdown_grace = grace).await;
    let mut stream = server
        .prompts()
        .watch_prompts(pb::WatchPromptsRequest {
            name: String::new(),
            after_sequence: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stream.next().await.unwrap().unwrap().kind,
        pb::PromptEventKind::SnapshotEnd as i32
    );
    let task = server.begin_shutdown();
    let ended = tokio::time::timeout(deadline, async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream did not end at shutdown");
    tokio::time::timeout(deadline, task)
        .await
        .expect("the open stream held the shutdown")
        .unwrap()
        .unwrap();
}
