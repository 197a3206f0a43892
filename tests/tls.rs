//! TLS and mTLS end to end against the real binary, with certificates made in the test:
//! plain text refused, the metrics endpoint on the same certificate, a server
//! certificate rotated while a stream stays open, and client certificate identities
//! mapped to roles.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::process::ServerProcess;
use llmops::pb;
use llmops::pb::auth_service_client::AuthServiceClient;
use llmops::pb::prompt_service_client::PromptServiceClient;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_stream::StreamExt as _;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Code;

/// A certificate authority made for a test.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM.
struct Issued {
    cert: String,
    key: String,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for localhost and 127.0.0.1.
    fn server(&self, common_name: &str) -> Issued {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        self.issue(params)
    }

    /// A client certificate with this common name and URI SANs.
    fn client(&self, common_name: &str, uris: &[&str]) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        for uri in uris {
            params
                .subject_alt_names
                .push(SanType::URI((*uri).try_into().unwrap()));
        }
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// Writes `issued` as `<name>.pem` and `<name>.key` in `dir`; their paths.
fn write_pair(dir: &Path, name: &str, issued: &Issued) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&key, &issued.key).unwrap();
    std::fs::write(&cert, &issued.cert).unwrap();
    (cert, key)
}

/// A TLS channel to `server` trusting `ca`, presenting `client` when given.
async fn connect(
    server: &ServerProcess,
    ca: &str,
    client: Option<&Issued>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(client) = client {
        tls = tls.identity(Identity::from_pem(&client.cert, &client.key));
    }
    Channel::from_shared(format!("https://localhost:{}", server.address.port()))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

/// A TLS channel once the server is SERVING.
async fn serving(server: &ServerProcess, ca: &str, client: Option<&Issued>) -> Channel {
    for _ in 0..500 {
        if let Ok(channel) = connect(server, ca, client).await {
            let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await;
            if health.is_ok_and(|h| {
                h.into_inner().status
                    == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            }) {
                return channel;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the TLS server never became SERVING");
}

/// A call the connection refused before any service saw it: the error is the
/// transport's (hyper reports the closed connection with one code or another, depending
/// on when it noticed), not a status a service answered.
fn assert_refused_by_transport(status: &tonic::Status) {
    let source = std::error::Error::source(status);
    assert!(
        source.is_some_and(|e| e.is::<tonic::transport::Error>()),
        "a transport error, not a service's answer: {status:?}"
    );
}

fn version(name: &str, version: &str) -> pb::CreatePromptVersionRequest {
    pb::CreatePromptVersionRequest {
        prompt_version: Some(pb::PromptVersion {
            name: name.into(),
            version: version.into(),
            template: "Hello".into(),
            ..Default::default()
        }),
    }
}

/// GET /metrics over TLS trusting `ca`, as text.
async fn metrics_over_tls(address: std::net::SocketAddr, ca: &str) -> std::io::Result<String> {
    use rustls_pki_types::pem::PemObject as _;
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let stream = tokio::net::TcpStream::connect(address).await?;
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), stream)
        .await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_grpc_and_metrics_and_a_rotated_certificate_keeps_open_streams() {
    let dir = tempfile::tempdir().unwrap();
    let first_ca = TestCa::new("first CA");
    let (cert, key) = write_pair(dir.path(), "server", &first_ca.server("llmops one"));
    let metrics = common::process::free_address();
    let cert_path = cert.display().to_string();
    let key_path = key.display().to_string();
    let server = ServerProcess::spawn_serving(
        common::process::free_address(),
        metrics,
        &dir.path().join("data"),
        &[
            ("LLMOPS_TLS__CERT_FILE", &cert_path),
            ("LLMOPS_TLS__KEY_FILE", &key_path),
            ("LLMOPS_TLS__RELOAD_INTERVAL", "100ms"),
            ("LLMOPS_METRICS_TLS", "true"),
        ],
    );
    let channel = serving(&server, &first_ca.pem(), None).await;
    let mut prompts = PromptServiceClient::new(channel.clone());
    prompts
        .create_prompt_version(version("greet", "1.0.0"))
        .await
        .unwrap();

    // Plain text reaches no service.
    let plain = Channel::from_shared(format!("http://{}", server.address))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    if let Ok(plain) = plain {
        let status = PromptServiceClient::new(plain)
            .list_prompts(pb::ListPromptsRequest::default())
            .await
            .unwrap_err();
        assert_refused_by_transport(&status);
    }

    // The metrics endpoint serves the same certificate.
    let text = metrics_over_tls(metrics, &first_ca.pem()).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("grpc_server_handled_total"), "{text}");

    // A stream opened before the rotation.
    let mut events = prompts
        .watch_prompts(pb::WatchPromptsRequest {
            name: "greet".into(),
            after_sequence: None,
        })
        .await
        .unwrap()
        .into_inner();
    let snapshot = events.next().await.unwrap().unwrap();
    assert_eq!(snapshot.prompt_version.unwrap().name, "greet");

    // Rotate to a certificate from another CA: the key is written first, so for a
    // moment the files do not match (that reading is skipped, not served).
    let second_ca = TestCa::new("second CA");
    write_pair(dir.path(), "server", &second_ca.server("llmops two"));
    let mut rotated = None;
    for _ in 0..100 {
        if let Ok(channel) = connect(&server, &second_ca.pem(), None).await {
            if PromptServiceClient::new(channel.clone())
                .list_prompts(pb::ListPromptsRequest::default())
                .await
                .is_ok()
            {
                rotated = Some(channel);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rotated = rotated.expect("new connections get the rotated certificate");
    let old = connect(&server, &first_ca.pem(), None).await;
    if let Ok(old) = old {
        let status = PromptServiceClient::new(old)
            .list_prompts(pb::ListPromptsRequest::default())
            .await
            .unwrap_err();
        assert_refused_by_transport(&status);
    }

    // The stream opened before the rotation still delivers, and its connection still
    // serves calls.
    PromptServiceClient::new(rotated)
        .create_prompt_version(version("greet", "1.1.0"))
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = events.next().await.unwrap().unwrap();
            let version = event.prompt_version.unwrap_or_default();
            if version.version == "1.1.0" {
                return version;
            }
        }
    })
    .await
    .expect("the open stream sees the version created after the rotation");
    assert_eq!(event.name, "greet");
    prompts
        .get_prompt_version(pb::GetPromptVersionRequest {
            name: "greet".into(),
            version: "1.1.0".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let text = metrics_over_tls(metrics, &second_ca.pem()).await.unwrap();
    assert!(text.contains("llmops_tls_reloads_total"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_refuses_clients_without_a_certificate_and_maps_identities_to_roles() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = TestCa::new("server CA");
    let client_ca = TestCa::new("client CA");
    let (cert, key) = write_pair(dir.path(), "server", &server_ca.server("llmops"));
    let ca_file = dir.path().join("clients.pem");
    std::fs::write(&ca_file, client_ca.pem()).unwrap();
    let config = dir.path().join("llmops.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[tls]
cert_file = {cert:?}
key_file = {key:?}
client_ca_file = {ca_file:?}

[[tls.identities]]
subject = "spiffe://example.org/ns/shop/sa/storefront"
role = "reader"

[[tls.identities]]
subject = "CN=release-bot"
role = "ROLE_ADMIN"
"#
        ),
    )
    .unwrap();
    let config_path = config.display().to_string();
    let server = ServerProcess::spawn(
        &dir.path().join("data"),
        &[("LLMOPS_CONFIG", config_path.as_str())],
    );
    let storefront = client_ca.client(
        "storefront",
        &["spiffe://example.org/ns/shop/sa/storefront"],
    );
    let release_bot = client_ca.client("release-bot", &[]);
    let stranger = client_ca.client("stranger", &["spiffe://example.org/ns/x/sa/y"]);
    let impostor = TestCa::new("another CA").client("release-bot", &[]);

    let admin = serving(&server, &server_ca.pem(), Some(&release_bot)).await;
    let who = AuthServiceClient::new(admin.clone())
        .who_am_i(pb::WhoAmIRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(who.identity, "CN=release-bot");
    assert_eq!(who.role(), pb::Role::Admin);
    assert!(who.api_key.is_none());
    let created = PromptServiceClient::new(admin.clone())
        .create_prompt_version(version("greet", "1.0.0"))
        .await
        .unwrap()
        .into_inner()
        .prompt_version
        .unwrap();
    assert_eq!(created.author, "CN=release-bot");
    let audited = AuthServiceClient::new(admin)
        .list_audit_events(pb::ListAuditEventsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0].actor, "CN=release-bot");
    assert_eq!(audited[0].resource, "greet/1.0.0");

    // The SPIFFE identity reads but may not write.
    let reader = connect(&server, &server_ca.pem(), Some(&storefront))
        .await
        .unwrap();
    let who = AuthServiceClient::new(reader.clone())
        .who_am_i(pb::WhoAmIRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(who.identity, "spiffe://example.org/ns/shop/sa/storefront");
    assert_eq!(who.role(), pb::Role::Reader);
    let mut prompts = PromptServiceClient::new(reader);
    prompts
        .list_prompts(pb::ListPromptsRequest::default())
        .await
        .unwrap();
    let status = prompts
        .create_prompt_version(version("greet", "1.1.0"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("ROLE_EDITOR"), "{status:?}");

    // A certificate from the CA whose identity has no role.
    let unmapped = connect(&server, &server_ca.pem(), Some(&stranger))
        .await
        .unwrap();
    let status = PromptServiceClient::new(unmapped)
        .list_prompts(pb::ListPromptsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("spiffe://example.org/ns/x/sa/y"),
        "{status:?}"
    );

    // No certificate, or one another CA signed, is refused at the handshake.
    for client in [None, Some(&impostor)] {
        if let Ok(channel) = connect(&server, &server_ca.pem(), client).await {
            let status = PromptServiceClient::new(channel)
                .list_prompts(pb::ListPromptsRequest::default())
                .await
                .unwrap_err();
            assert_refused_by_transport(&status);
        }
    }

    // The CLI presents a client certificate to an https:// server it verifies by --ca-cert.
    let files = |name: &str, issued: &Issued| write_pair(dir.path(), name, issued);
    let (bot_cert, bot_key) = files("release-bot", &release_bot);
    let server_ca_file = dir.path().join("server-ca.pem");
    std::fs::write(&server_ca_file, server_ca.pem()).unwrap();
    let https = format!("https://localhost:{}", server.address.port());
    let whoami = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_llmops"))
            .args(["auth", "whoami", "--server", &https])
            .args(args)
            .output()
            .unwrap()
    };
    let output = whoami(&[
        "--ca-cert".as_ref(),
        server_ca_file.as_os_str(),
        "--client-cert".as_ref(),
        bot_cert.as_os_str(),
        "--client-key".as_ref(),
        bot_key.as_os_str(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout.trim(), "CN=release-bot (ROLE_ADMIN)");
    // Without the CA, the server's certificate is not trusted.
    let output = whoami(&[
        "--client-cert".as_ref(),
        bot_cert.as_os_str(),
        "--client-key".as_ref(),
        bot_key.as_os_str(),
    ]);
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&https), "{stderr}");

    // Health needs no certificate identity, but still the handshake.
    let health = tonic_health::pb::health_client::HealthClient::new(
        connect(&server, &server_ca.pem(), Some(&stranger))
            .await
            .unwrap(),
    )
    .check(tonic_health::pb::HealthCheckRequest::default())
    .await
    .unwrap();
    assert_eq!(
        health.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}
