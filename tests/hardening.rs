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

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: what completes a client's side of the HTTP/2 handshake.
const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// Reads from `stream` until the server closes it; panics if it stays open `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: std::time::Duration) {
    use tokio::io::AsyncReadExt as _;
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => panic!("the server kept the connection open for {within:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Whether `stream` is still open after `wait` (nothing but frames arrive meanwhile).
async fn still_open_after(stream: &mut tokio::net::TcpStream, wait: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return true,
            Ok(Ok(0)) | Ok(Err(_)) => return false,
            Ok(Ok(_)) => continue,
        }
    }
}

async fn connect(server: &TestServer) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap()
}

/// Silent or half-handshaken connections stayed forever (19,000 held 306 MB and almost
/// every descriptor). A connection must finish its HTTP/2 handshake within
/// `handshake_timeout`, and past `max_connections` new ones are closed at once.
#[tokio::test]
async fn silent_and_surplus_connections_are_closed() {
    use tokio::io::AsyncWriteExt as _;
    let server = TestServer::start_with(|config| {
        config.server.handshake_timeout = std::time::Duration::from_millis(300);
        config.server.max_connections = 3;
    })
    .await;
    // The test client's own channel holds one connection.
    let mut silent = connect(&server).await;
    let mut half = connect(&server).await;
    half.write_all(&PREFACE[..10]).await.unwrap();
    closed_within(&mut silent, std::time::Duration::from_secs(10)).await;
    closed_within(&mut half, std::time::Duration::from_secs(10)).await;

    // Two handshaken connections and the client's fill the three places.
    let mut first = connect(&server).await;
    let mut second = connect(&server).await;
    for stream in [&mut first, &mut second] {
        stream.write_all(PREFACE).await.unwrap();
        stream.write_all(EMPTY_SETTINGS).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut surplus = connect(&server).await;
    closed_within(&mut surplus, std::time::Duration::from_secs(2)).await;
    assert!(still_open_after(&mut first, std::time::Duration::from_millis(500)).await);
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains("llmops_connections_closed_total{reason=\"refused\"} 1")
            && metrics.contains("llmops_connections_closed_total{reason=\"handshake_timeout\"} 2"),
        "{metrics}"
    );
    assert_serving(&server).await;
}

/// A connection with no call in flight for `idle_timeout` is closed; one holding a
/// stream open (WatchPrompts) is not, however long the stream stays quiet.
#[tokio::test]
async fn idle_connections_are_closed_but_open_streams_keep_theirs() {
    use tokio::io::AsyncWriteExt as _;
    let server = TestServer::start_with(|config| {
        config.server.idle_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    let mut idle = connect(&server).await;
    idle.write_all(PREFACE).await.unwrap();
    idle.write_all(EMPTY_SETTINGS).await.unwrap();

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.address))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut watching = llmops::pb::prompt_service_client::PromptServiceClient::new(channel)
        .watch_prompts(pb::WatchPromptsRequest::default())
        .await
        .unwrap()
        .into_inner();
    // The watch's connection opened just after the idle one, which is now closed: 200 ms
    // more and it has been quiet for well past idle_timeout.
    closed_within(&mut idle, std::time::Duration::from_secs(10)).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // The watch still delivers: its connection was kept.
    server
        .prompts()
        .create_prompt_version(pb::CreatePromptVersionRequest {
            prompt_version: Some(pb::PromptVersion {
                name: "kept".into(),
                version: "1.0.0".into(),
                template: "hi".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let event = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let event = watching.message().await.unwrap().unwrap();
            if event
                .prompt_version
                .as_ref()
                .is_some_and(|v| v.name == "kept")
            {
                return event;
            }
        }
    })
    .await
    .expect("the quiet stream's connection stayed open");
    assert_eq!(event.prompt_version.unwrap().name, "kept");
}

/// A peer that vanished without closing (no answer to pings) is dropped after the
/// keepalive interval and timeout, and each connection is told how many concurrent
/// streams it may open.
#[tokio::test]
async fn keepalive_drops_a_vanished_peer_and_streams_per_connection_are_limited() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = TestServer::start_with(|config| {
        config.server.keepalive_interval = std::time::Duration::from_millis(200);
        config.server.keepalive_timeout = std::time::Duration::from_millis(200);
        config.server.max_concurrent_streams = 7;
    })
    .await;
    let mut peer = connect(&server).await;
    peer.write_all(PREFACE).await.unwrap();
    peer.write_all(EMPTY_SETTINGS).await.unwrap();
    // The server's first frame is its SETTINGS: 6-byte parameters after a 9-byte header.
    let mut header = [0u8; 9];
    peer.read_exact(&mut header).await.unwrap();
    assert_eq!(header[3], 4, "a SETTINGS frame");
    let length =
        usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    let mut payload = vec![0u8; length];
    peer.read_exact(&mut payload).await.unwrap();
    let max_streams = payload
        .chunks(6)
        .find(|parameter| parameter[..2] == [0, 3])
        .map(|parameter| {
            u32::from_be_bytes([parameter[2], parameter[3], parameter[4], parameter[5]])
        });
    assert_eq!(max_streams, Some(7));
    // Never answering the pings, the peer is dropped.
    closed_within(&mut peer, std::time::Duration::from_secs(10)).await;
}
