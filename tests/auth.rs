//! API keys and roles, end to end against the real binary: `llmops auth bootstrap`, every
//! RPC called with no key, a revoked key and each role, protected labels, rate limits,
//! revocation across replicas, and secrets kept out of logs and answers.

mod common;

use std::str::FromStr as _;
use std::time::{Duration, Instant};

use bytes::{Buf as _, BufMut as _};
use common::cluster::Cluster;
use common::process::{free_address, ServerProcess};
use llmops::pb;
use llmops::pb::auth_service_client::AuthServiceClient;
use llmops::pb::experiment_service_client::ExperimentServiceClient;
use llmops::pb::prompt_service_client::PromptServiceClient;
use prost_reflect::DescriptorPool;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const API_KEYS: (&str, &str) = ("LLMOPS_AUTH__MODE", "api_keys");

/// Runs `llmops auth bootstrap` on `data_dir`'s database (with `env`); its output.
fn bootstrap(data_dir: &std::path::Path, env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_llmops"))
        .args(["auth", "bootstrap", "--data-dir"])
        .arg(data_dir)
        .envs(env.iter().copied())
        .output()
        .expect("the llmops binary runs")
}

/// The secret a successful bootstrap printed.
fn bootstrapped_secret(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("secret: "))
        .unwrap_or_else(|| panic!("no secret in {stdout:?}"))
        .to_owned()
}

/// `request` with `authorization: Bearer <secret>`.
fn with_key<T>(mut request: Request<T>, secret: &str) -> Request<T> {
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::from_str(&format!("Bearer {secret}")).unwrap(),
    );
    request
}

async fn create_key(
    channel: &Channel,
    admin: &str,
    name: &str,
    role: pb::Role,
    requests_per_second: u32,
) -> (String, String) {
    let created = AuthServiceClient::new(channel.clone())
        .create_api_key(with_key(
            Request::new(pb::CreateApiKeyRequest {
                name: name.into(),
                role: role.into(),
                requests_per_second,
                ..Default::default()
            }),
            admin,
        ))
        .await
        .unwrap()
        .into_inner();
    (created.api_key.unwrap().api_key_id, created.secret)
}

async fn revoke(channel: &Channel, admin: &str, id: &str) {
    AuthServiceClient::new(channel.clone())
        .revoke_api_key(with_key(
            Request::new(pb::RevokeApiKeyRequest {
                api_key_id: id.into(),
            }),
            admin,
        ))
        .await
        .unwrap();
}

/// Passes message bytes through untouched, so any RPC can be called by its path.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let bytes = buf.chunk().to_vec();
        buf.advance(bytes.len());
        Ok(Some(bytes))
    }
}

/// Calls `path` with one empty message and `secret` (if any); the code it answered with
/// (OK for a stream that opened).
async fn call(channel: &Channel, path: &str, secret: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let mut request = Request::new(tokio_stream::iter(vec![Vec::<u8>::new()]));
    if let Some(secret) = secret {
        request = with_key(request, secret);
    }
    let uri = http::uri::PathAndQuery::from_str(path).unwrap();
    match tokio::time::timeout(Duration::from_secs(10), grpc.streaming(request, uri, Raw)).await {
        Ok(Ok(_)) => Code::Ok,
        Ok(Err(status)) => status.code(),
        Err(_) => panic!("{path} did not answer"),
    }
}

/// Every llmops RPC with the role it declares.
fn declared_roles() -> Vec<(String, pb::Role)> {
    let pool = DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
    let option = pool
        .get_extension_by_name("llmops.v1.required_role")
        .unwrap();
    let mut rpcs = Vec::new();
    for service in pool.services() {
        if service.package_name() != "llmops.v1" {
            continue;
        }
        for method in service.methods() {
            let role = method
                .options()
                .get_extension(&option)
                .as_enum_number()
                .and_then(|n| pb::Role::try_from(n).ok())
                .unwrap_or(pb::Role::Unspecified);
            rpcs.push((format!("/{}/{}", service.full_name(), method.name()), role));
        }
    }
    rpcs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_admits_exactly_the_roles_its_declared_option_allows() {
    let dir = tempfile::tempdir().unwrap();
    let admin = bootstrapped_secret(&bootstrap(dir.path(), &[]));
    let server = ServerProcess::spawn(dir.path(), &[API_KEYS]);
    let channel = server.channel().await;

    let mut callers = Vec::new();
    for role in [
        pb::Role::Reader,
        pb::Role::App,
        pb::Role::Editor,
        pb::Role::Admin,
    ] {
        let (_, secret) = create_key(&channel, &admin, role.as_str_name(), role, 0).await;
        callers.push((role, secret));
    }
    let (revoked_id, revoked) = create_key(&channel, &admin, "gone", pb::Role::Admin, 0).await;
    revoke(&channel, &admin, &revoked_id).await;

    let rpcs = declared_roles();
    assert!(rpcs.len() > 70, "{}", rpcs.len());
    for (path, required) in &rpcs {
        assert_ne!(*required, pb::Role::Unspecified, "{path} declares no role");
        assert_eq!(
            call(&channel, path, None).await,
            Code::Unauthenticated,
            "{path} without a key"
        );
        assert_eq!(
            call(&channel, path, Some(&revoked)).await,
            Code::Unauthenticated,
            "{path} with a revoked key"
        );
        assert_eq!(
            call(&channel, path, Some("llmops_not-a-key")).await,
            Code::Unauthenticated,
            "{path} with an unknown key"
        );
        for (role, secret) in &callers {
            let code = call(&channel, path, Some(secret)).await;
            let allowed = (*role as i32) >= (*required as i32);
            assert_eq!(
                code != Code::PermissionDenied && code != Code::Unauthenticated,
                allowed,
                "{path} (needs {required:?}) with {role:?} answered {code:?}"
            );
        }
    }

    // Health and reflection need no key.
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "llmops.v1.PromptService".into(),
        })
        .await;
    assert!(health.is_ok(), "{health:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_say_why_and_never_repeat_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let admin = bootstrapped_secret(&bootstrap(dir.path(), &[]));
    // A second bootstrap is refused: an admin key exists.
    let again = bootstrap(dir.path(), &[]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("an admin key exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let server = ServerProcess::spawn(dir.path(), &[API_KEYS]);
    let channel = server.channel().await;
    let mut auth = AuthServiceClient::new(channel.clone());

    let me = auth
        .who_am_i(with_key(Request::new(pb::WhoAmIRequest {}), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.role, pb::Role::Admin as i32);
    assert_eq!(me.identity, "admin");

    let missing = auth.who_am_i(pb::WhoAmIRequest {}).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert!(
        missing.message().contains("Bearer"),
        "{}",
        missing.message()
    );

    let (reader_id, reader) = create_key(&channel, &admin, "dashboards", pb::Role::Reader, 0).await;
    let denied = auth
        .create_api_key(with_key(
            Request::new(pb::CreateApiKeyRequest {
                name: "sneaky".into(),
                role: pb::Role::Admin.into(),
                ..Default::default()
            }),
            &reader,
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        denied.message().contains("ROLE_ADMIN") && denied.message().contains("dashboards"),
        "{}",
        denied.message()
    );

    revoke(&channel, &admin, &reader_id).await;
    let revoked = auth
        .who_am_i(with_key(Request::new(pb::WhoAmIRequest {}), &reader))
        .await
        .unwrap_err();
    assert_eq!(revoked.code(), Code::Unauthenticated);
    assert!(
        revoked.message().contains("revoked"),
        "{}",
        revoked.message()
    );

    // A key past its rate limit is told when to come back.
    let (_, limited) = create_key(&channel, &admin, "batch", pb::Role::Reader, 2).await;
    let mut codes = Vec::new();
    let mut retry = None;
    for _ in 0..5 {
        match auth
            .who_am_i(with_key(Request::new(pb::WhoAmIRequest {}), &limited))
            .await
        {
            Ok(_) => codes.push(Code::Ok),
            Err(status) => {
                use tonic_types::StatusExt as _;
                retry = status.get_details_retry_info().and_then(|r| r.retry_delay);
                codes.push(status.code());
            }
        }
    }
    assert!(codes.contains(&Code::ResourceExhausted), "{codes:?}");
    assert!(
        retry.is_some_and(|delay| delay <= Duration::from_secs(1)),
        "{retry:?}"
    );

    // A canary secret appears nowhere but where the client put it.
    let canary = "llmops_CANARYcanaryCANARYcanaryCANARYcanary12345";
    let unknown = auth
        .who_am_i(with_key(Request::new(pb::WhoAmIRequest {}), canary))
        .await
        .unwrap_err();
    assert!(
        !unknown.message().contains("CANARY"),
        "{}",
        unknown.message()
    );
    let listed = auth
        .list_api_keys(with_key(
            Request::new(pb::ListApiKeysRequest::default()),
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let listing = format!("{listed:?}");
    for secret in [&admin, &reader, &limited] {
        assert!(
            !listing.contains(secret.as_str()),
            "a listing shows a secret"
        );
        assert!(
            listing.contains(&secret[..11]),
            "a listing shows each key's prefix"
        );
    }
    // Nor does the audit log, nor `config show` with the canary as the CLI's key.
    let audited = format!(
        "{:?}",
        audit(&channel, &admin, pb::ListAuditEventsRequest::default()).await
    );
    assert!(audited.contains("CreateApiKey"), "{audited}");
    for secret in [admin.as_str(), reader.as_str(), limited.as_str(), canary] {
        assert!(!audited.contains(secret), "the audit log holds a secret");
    }
    let shown = std::process::Command::new(env!("CARGO_BIN_EXE_llmops"))
        .args(["config", "show", "--api-key", canary])
        .env("LLMOPS_API_KEY", canary)
        .env("LLMOPS_AUTH__MODE", "api_keys")
        .output()
        .unwrap();
    assert!(shown.status.success(), "{shown:?}");
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("auth.mode"), "{shown}");
    assert!(
        !shown.contains("CANARY"),
        "config show prints the key: {shown}"
    );
    drop(server);
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    for secret in [admin.as_str(), reader.as_str(), limited.as_str(), canary] {
        assert!(!log.contains(secret), "the server log holds a secret");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_labels_activations_and_gate_overrides_need_an_admin() {
    let dir = tempfile::tempdir().unwrap();
    let admin = bootstrapped_secret(&bootstrap(dir.path(), &[]));
    let server = ServerProcess::spawn(dir.path(), &[API_KEYS]);
    let channel = server.channel().await;
    let (_, editor) = create_key(&channel, &admin, "ci", pb::Role::Editor, 0).await;
    let mut prompts = PromptServiceClient::new(channel.clone());
    for version in ["1.0.0", "1.1.0"] {
        prompts
            .create_prompt_version(with_key(
                Request::new(pb::CreatePromptVersionRequest {
                    prompt_version: Some(pb::PromptVersion {
                        name: "greet".into(),
                        version: version.into(),
                        template: "Hello".into(),
                        ..Default::default()
                    }),
                }),
                &editor,
            ))
            .await
            .unwrap();
    }
    // The calling key's name fills the author a client left empty.
    let created = prompts
        .get_prompt_version(with_key(
            Request::new(pb::GetPromptVersionRequest {
                name: "greet".into(),
                version: "1.0.0".into(),
                ..Default::default()
            }),
            &editor,
        ))
        .await
        .unwrap()
        .into_inner()
        .prompt_version
        .unwrap();
    assert_eq!(created.author, "ci");
    let set = |label: &str, reason: &str| pb::SetPromptLabelRequest {
        name: "greet".into(),
        label: label.into(),
        version: "1.1.0".into(),
        override_reason: reason.into(),
    };
    prompts
        .set_prompt_label(with_key(Request::new(set("staging", "")), &editor))
        .await
        .unwrap();
    let protected = prompts
        .set_prompt_label(with_key(Request::new(set("production", "")), &editor))
        .await
        .unwrap_err();
    assert_eq!(protected.code(), Code::PermissionDenied);
    assert!(
        protected.message().contains("protected") && protected.message().contains("ROLE_ADMIN"),
        "{}",
        protected.message()
    );
    let overriding = prompts
        .set_prompt_label(with_key(Request::new(set("staging", "hotfix")), &editor))
        .await
        .unwrap_err();
    assert_eq!(overriding.code(), Code::PermissionDenied);
    let activation = prompts
        .activate_prompt_version(with_key(
            Request::new(pb::ActivatePromptVersionRequest {
                name: "greet".into(),
                version: "1.1.0".into(),
                ..Default::default()
            }),
            &editor,
        ))
        .await
        .unwrap_err();
    assert_eq!(activation.code(), Code::PermissionDenied);

    prompts
        .set_prompt_label(with_key(Request::new(set("production", "")), &admin))
        .await
        .unwrap();
    // The label history names who moved each pointer.
    let history = prompts
        .list_label_history(with_key(
            Request::new(pb::ListLabelHistoryRequest {
                name: "greet".into(),
                ..Default::default()
            }),
            &editor,
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    let actors: Vec<(&str, &str)> = history
        .iter()
        .map(|event| (event.label.as_str(), event.actor.as_str()))
        .collect();
    assert!(
        actors.contains(&("staging", "ci")) && actors.contains(&("production", "admin")),
        "{actors:?}"
    );
    let deleted = prompts
        .delete_prompt_label(with_key(
            Request::new(pb::DeletePromptLabelRequest {
                name: "greet".into(),
                label: "production".into(),
            }),
            &editor,
        ))
        .await
        .unwrap_err();
    assert_eq!(deleted.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendering_for_a_user_assigns_them_and_needs_an_applications_key() {
    let dir = tempfile::tempdir().unwrap();
    let admin = bootstrapped_secret(&bootstrap(dir.path(), &[]));
    let server = ServerProcess::spawn(dir.path(), &[API_KEYS]);
    let channel = server.channel().await;
    let (_, reader) = create_key(&channel, &admin, "dashboard", pb::Role::Reader, 0).await;
    let (_, app) = create_key(&channel, &admin, "checkout", pb::Role::App, 0).await;
    let version = |version: &str, greeting: &str| pb::PromptVersion {
        name: "greet".into(),
        version: version.into(),
        template: greeting.into(),
        ..Default::default()
    };
    let mut experiments = ExperimentServiceClient::new(channel.clone());
    experiments
        .create_prompt_experiment(with_key(
            Request::new(pb::CreatePromptExperimentRequest {
                experiment_id: "greet-ab".into(),
                name: "greet-ab".into(),
                control: Some(version("1.0.0", "Hello")),
                treatment: Some(version("1.1.0", "Hi")),
                prompt_name: "greet".into(),
                label: "live".into(),
                ..Default::default()
            }),
            &admin,
        ))
        .await
        .unwrap();
    let mut prompts = PromptServiceClient::new(channel.clone());
    prompts
        .set_prompt_label(with_key(
            Request::new(pb::SetPromptLabelRequest {
                name: "greet".into(),
                label: "live".into(),
                version: "1.0.0".into(),
                ..Default::default()
            }),
            &admin,
        ))
        .await
        .unwrap();
    experiments
        .start_experiment(with_key(
            Request::new(pb::StartExperimentRequest {
                experiment_id: "greet-ab".into(),
            }),
            &admin,
        ))
        .await
        .unwrap();
    let render = |user: &str| pb::RenderPromptRequest {
        name: "greet".into(),
        label: "live".into(),
        user_id: user.into(),
        ..Default::default()
    };

    // A reader's key reads the label, but cannot assign users (an exposure is a write).
    let plain = prompts
        .render_prompt(with_key(Request::new(render("")), &reader))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (plain.version.as_str(), plain.experiment_id.as_str()),
        ("1.0.0", "")
    );
    let refused = prompts
        .render_prompt(with_key(Request::new(render("u-1")), &reader))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("user_id") && refused.message().contains("ROLE_APP"),
        "{}",
        refused.message()
    );
    let refused = prompts
        .get_prompt_version(with_key(
            Request::new(pb::GetPromptVersionRequest {
                name: "greet".into(),
                label: "live".into(),
                user_id: "u-1".into(),
                ..Default::default()
            }),
            &reader,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // Nothing was assigned by the refused calls: the application's is the first exposure.
    let served = prompts
        .render_prompt(with_key(Request::new(render("u-1")), &app))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(served.experiment_id, "greet-ab");
    let results = experiments
        .get_experiment_results(with_key(
            Request::new(pb::GetExperimentResultsRequest {
                experiment_id: "greet-ab".into(),
            }),
            &reader,
        ))
        .await
        .unwrap()
        .into_inner();
    let exposures: u64 = results.srm.unwrap().observed.iter().sum();
    assert_eq!(exposures, 1, "one exposure, the application's");

    // The exposure is audited as AssignVariant's would be (`audit_runtime_calls` is on
    // by default); the same user again, and renders without a user, write nothing.
    prompts
        .render_prompt(with_key(Request::new(render("u-1")), &app))
        .await
        .unwrap();
    prompts
        .render_prompt(with_key(Request::new(render("")), &app))
        .await
        .unwrap();
    let by_app = audit(
        &channel,
        &admin,
        pb::ListAuditEventsRequest {
            actor: "checkout".into(),
            ..Default::default()
        },
    )
    .await;
    let entries = calls(&by_app);
    assert_eq!(
        entries,
        [("llmops.v1.PromptService/RenderPrompt", "greet-ab", "OK")],
        "the first exposure only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keys_serving_beyond_loopback_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_llmops"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("auth.mode") && stderr.contains("allow_unauthenticated"),
        "{stderr}"
    );
    // Allowed explicitly, it serves.
    let server = ServerProcess::spawn_on(
        std::net::SocketAddr::from(([0, 0, 0, 0], free_address().port())),
        dir.path(),
        &[("LLMOPS_AUTH__ALLOW_UNAUTHENTICATED", "true")],
    );
    let channel = server.channel().await;
    let me = AuthServiceClient::new(channel)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (me.role, me.identity.as_str()),
        (pb::Role::Admin as i32, "anonymous")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_on_one_replica_is_refused_by_the_others() {
    let cluster = Cluster::start(3, &[API_KEYS]).await;
    let admin = {
        let storage = cluster.database().open_storage().await;
        let (_, secret) = llmops_access::KeyService::bootstrap(
            storage.keys.as_ref(),
            "admin",
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        secret
    };
    let first = cluster.channel(0).await;
    // Bootstrapped while the replicas run: they learn of it from the change log.
    let start = Instant::now();
    while AuthServiceClient::new(first.clone())
        .who_am_i(with_key(Request::new(pb::WhoAmIRequest {}), &admin))
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (id, secret) = create_key(&first, &admin, "app", pb::Role::App, 0).await;
    let who = |replica: usize| {
        let secret = secret.clone();
        let cluster = &cluster;
        async move {
            AuthServiceClient::new(cluster.channel(replica).await)
                .who_am_i(with_key(Request::new(pb::WhoAmIRequest {}), &secret))
                .await
                .map(|_| ())
                .map_err(|status| status.code())
        }
    };
    // Every replica learns of the new key.
    for replica in [1, 2] {
        let start = Instant::now();
        while who(replica).await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "replica {replica}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    revoke(&first, &admin, &id).await;
    let revoked_at = Instant::now();
    for replica in [1, 2] {
        while who(replica).await != Err(Code::Unauthenticated) {
            assert!(
                revoked_at.elapsed() < Duration::from_secs(3),
                "replica {replica} still admits the revoked key; logs:\n{}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    eprintln!(
        "both other replicas refused the revoked key {:?} after the revocation",
        revoked_at.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_names_the_calling_key_when_the_client_did_not() {
    use llmops::pb::alert_service_client::AlertServiceClient;
    let dir = tempfile::tempdir().unwrap();
    let admin = bootstrapped_secret(&bootstrap(dir.path(), &[]));
    let server = ServerProcess::spawn(dir.path(), &[API_KEYS]);
    let channel = server.channel().await;
    let (_, oncall) = create_key(&channel, &admin, "oncall@example.com", pb::Role::Editor, 0).await;
    let mut alerts = AlertServiceClient::new(channel);
    let mut acknowledged = Vec::new();
    for (source_id, by) in [("a", ""), ("b", "ada")] {
        let alert = alerts
            .create_alert(with_key(
                Request::new(pb::CreateAlertRequest {
                    alert: Some(pb::Alert {
                        r#type: pb::AlertType::Threshold.into(),
                        severity: pb::AlertSeverity::Info.into(),
                        message: "m".into(),
                        source: "evaluation".into(),
                        source_id: source_id.into(),
                        ..Default::default()
                    }),
                }),
                &oncall,
            ))
            .await
            .unwrap()
            .into_inner()
            .alert
            .unwrap();
        let acked = alerts
            .acknowledge_alert(with_key(
                Request::new(pb::AcknowledgeAlertRequest {
                    alert_id: alert.id,
                    acknowledged_by: by.into(),
                    comment: String::new(),
                }),
                &oncall,
            ))
            .await
            .unwrap()
            .into_inner()
            .alert
            .unwrap();
        acknowledged.push(acked.acknowledged_by);
    }
    assert_eq!(acknowledged, ["oncall@example.com", "ada"]);
}

/// The audit log as the admin lists it with `request`.
/// Each entry's method, resource and outcome code.
fn calls(entries: &[pb::AuditEvent]) -> Vec<(&str, &str, &str)> {
    entries
        .iter()
        .map(|e| (e.method.as_str(), e.resource.as_str(), e.code.as_str()))
        .collect()
}

async fn audit(
    channel: &Channel,
    admin: &str,
    request: pb::ListAuditEventsRequest,
) -> Vec<pb::AuditEvent> {
    AuthServiceClient::new(channel.clone())
        .list_audit_events(with_key(Request::new(request), admin))
        .await
        .unwrap()
        .into_inner()
        .audit_events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_is_audited_with_its_caller_resource_outcome_and_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let admin = bootstrapped_secret(&bootstrap(dir.path(), &[]));
    let server = ServerProcess::spawn(dir.path(), &[API_KEYS]);
    let channel = server.channel().await;
    let (editor_id, editor) = create_key(&channel, &admin, "ci", pb::Role::Editor, 0).await;
    let (_, reader) = create_key(&channel, &admin, "dashboard", pb::Role::Reader, 0).await;
    let mut prompts = PromptServiceClient::new(channel.clone());
    let mut create = with_key(
        Request::new(pb::CreatePromptVersionRequest {
            prompt_version: Some(pb::PromptVersion {
                name: "greet".into(),
                version: "1.0.0".into(),
                template: "Hello".into(),
                ..Default::default()
            }),
        }),
        &editor,
    );
    create
        .metadata_mut()
        .insert("x-request-id", MetadataValue::from_static("deploy-42"));
    let created = prompts.create_prompt_version(create).await.unwrap();
    assert_eq!(
        created.metadata().get("x-request-id").unwrap(),
        "deploy-42",
        "the request id comes back"
    );
    let set = |label: &str| pb::SetPromptLabelRequest {
        name: "greet".into(),
        label: label.into(),
        version: "1.0.0".into(),
        ..Default::default()
    };
    prompts
        .set_prompt_label(with_key(Request::new(set("staging")), &editor))
        .await
        .unwrap();
    // Refused by the handler (a protected label) and by the access check (a reader).
    let refused = prompts
        .set_prompt_label(with_key(Request::new(set("production")), &editor))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = prompts
        .set_prompt_label(with_key(Request::new(set("canary")), &reader))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    // Reads and calls without a key are not stored.
    prompts
        .list_prompts(with_key(
            Request::new(pb::ListPromptsRequest::default()),
            &editor,
        ))
        .await
        .unwrap();
    let anonymous = prompts
        .set_prompt_label(Request::new(set("anonymous")))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    let by_ci = audit(
        &channel,
        &admin,
        pb::ListAuditEventsRequest {
            actor: "ci".into(),
            ..Default::default()
        },
    )
    .await;
    let seen = calls(&by_ci);
    assert_eq!(
        seen,
        [
            (
                "llmops.v1.PromptService/SetPromptLabel",
                "greet/production/1.0.0",
                "PERMISSION_DENIED"
            ),
            (
                "llmops.v1.PromptService/SetPromptLabel",
                "greet/staging/1.0.0",
                "OK"
            ),
            (
                "llmops.v1.PromptService/CreatePromptVersion",
                "greet/1.0.0",
                "OK"
            ),
        ]
    );
    assert!(by_ci.iter().all(|e| e.api_key_id == editor_id));
    assert_eq!(by_ci[2].request_id, "deploy-42");
    assert!(
        by_ci[0].request_id.len() >= 32,
        "a request id is made when none is sent"
    );

    // Filters: a bare method name, a resource and what is under it, a time window.
    let labels = audit(
        &channel,
        &admin,
        pb::ListAuditEventsRequest {
            method: "SetPromptLabel".into(),
            resource: "greet".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(labels.len(), 3, "{labels:?}");
    assert_eq!(labels[0].actor, "dashboard");
    let unknown = AuthServiceClient::new(channel.clone())
        .list_audit_events(with_key(
            Request::new(pb::ListAuditEventsRequest {
                method: "SetLabel".into(),
                ..Default::default()
            }),
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    let later = audit(
        &channel,
        &admin,
        pb::ListAuditEventsRequest {
            since: by_ci[0].time,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        later.len(),
        2,
        "the reader's refusal and the last of ci's: {later:?}"
    );
    // Pages of one walk the whole log once.
    let mut walked = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = AuthServiceClient::new(channel.clone())
            .list_audit_events(with_key(
                Request::new(pb::ListAuditEventsRequest {
                    page_size: 1,
                    page_token,
                    ..Default::default()
                }),
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        walked.extend(page.audit_events);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let everything = audit(&channel, &admin, pb::ListAuditEventsRequest::default()).await;
    assert_eq!(walked, everything);
    // Two keys created, two versions of label moves refused, ...: no reads, no anonymous.
    let methods: Vec<&str> = everything.iter().map(|e| e.method.as_str()).collect();
    assert!(
        !methods.iter().any(|m| m.ends_with("/ListPrompts")),
        "{methods:?}"
    );
    assert_eq!(everything.len(), 6, "{methods:?}");
    // Readers may not read the log, and no entry holds a secret.
    let status = AuthServiceClient::new(channel.clone())
        .list_audit_events(with_key(
            Request::new(pb::ListAuditEventsRequest::default()),
            &editor,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let text = format!("{everything:?}");
    for secret in [&admin, &editor, &reader] {
        assert!(!text.contains(secret.as_str()));
    }

    // The log is durable, and the CLI lists it.
    drop(server);
    let server = ServerProcess::spawn(dir.path(), &[API_KEYS]);
    let channel = server.channel().await;
    let after = audit(&channel, &admin, pb::ListAuditEventsRequest::default()).await;
    assert_eq!(after, everything);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_llmops"))
        .args([
            "audit",
            "list",
            "--actor",
            "ci",
            "--method",
            "SetPromptLabel",
        ])
        .args(["--server", &format!("http://{}", server.address)])
        .env("LLMOPS_API_KEY", &admin)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        stdout.lines().count(),
        3,
        "a header and two entries: {stdout}"
    );
    assert!(stdout.contains("greet/production/1.0.0") && stdout.contains("PERMISSION_DENIED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_schedules_and_experiment_status_changes_name_who_made_them() {
    use llmops::pb::evaluation_service_client::EvaluationServiceClient;
    use llmops::pb::experiment_service_client::ExperimentServiceClient;
    let dir = tempfile::tempdir().unwrap();
    let admin = bootstrapped_secret(&bootstrap(dir.path(), &[]));
    let server = ServerProcess::spawn(dir.path(), &[API_KEYS]);
    let channel = server.channel().await;
    let (_, editor) = create_key(&channel, &admin, "ci", pb::Role::Editor, 0).await;

    let mut experiments = ExperimentServiceClient::new(channel.clone());
    let created = experiments
        .create_model_experiment(with_key(
            Request::new(pb::CreateModelExperimentRequest {
                name: "models".into(),
                models: vec!["echo".into(), "auto".into()],
                ..Default::default()
            }),
            &editor,
        ))
        .await
        .unwrap()
        .into_inner()
        .experiment
        .unwrap();
    assert_eq!(created.created_by, "ci");
    let id = created.id;
    experiments
        .start_experiment(with_key(
            Request::new(pb::StartExperimentRequest {
                experiment_id: id.clone(),
            }),
            &editor,
        ))
        .await
        .unwrap();
    let paused = experiments
        .pause_experiment(with_key(
            Request::new(pb::PauseExperimentRequest {
                experiment_id: id.clone(),
            }),
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .experiment
        .unwrap();
    let changes: Vec<(pb::ExperimentStatus, &str)> = paused
        .status_changes
        .iter()
        .map(|c| (c.status(), c.actor.as_str()))
        .collect();
    assert_eq!(
        changes,
        [
            (pb::ExperimentStatus::Running, "ci"),
            (pb::ExperimentStatus::Paused, "admin")
        ]
    );

    let mut evaluation = EvaluationServiceClient::new(channel.clone());
    let dataset = evaluation
        .create_dataset(with_key(
            Request::new(pb::CreateDatasetRequest {
                dataset: Some(pb::Dataset {
                    name: "qa".into(),
                    ..Default::default()
                }),
            }),
            &editor,
        ))
        .await
        .unwrap()
        .into_inner()
        .dataset
        .unwrap();
    PromptServiceClient::new(channel.clone())
        .create_prompt_version(with_key(
            Request::new(pb::CreatePromptVersionRequest {
                prompt_version: Some(pb::PromptVersion {
                    name: "greet".into(),
                    version: "1.0.0".into(),
                    template: "Hello".into(),
                    ..Default::default()
                }),
            }),
            &editor,
        ))
        .await
        .unwrap();
    let template = pb::Run {
        dataset_id: dataset.id.clone(),
        prompt_name: "greet".into(),
        prompt_version: "1.0.0".into(),
        model: "echo".into(),
        metrics: vec![pb::MetricConfig {
            name: "contains".into(),
            scorer: "contains".into(),
            params: Some(prost_types::Struct {
                fields: [(
                    "value".to_owned(),
                    prost_types::Value {
                        kind: Some(prost_types::value::Kind::StringValue("Hello".into())),
                    },
                )]
                .into(),
            }),
            ..Default::default()
        }],
        // A client cannot claim to be someone else.
        created_by: "someone-else".into(),
        ..Default::default()
    };
    let run = evaluation
        .create_run(with_key(
            Request::new(pb::CreateRunRequest {
                run: Some(template.clone()),
            }),
            &editor,
        ))
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(run.created_by, "ci");
    let schedule = evaluation
        .schedule_run(with_key(
            Request::new(pb::ScheduleRunRequest {
                run_template: Some(pb::Run {
                    prompt_version: String::new(),
                    ..template
                }),
                schedule: "@every 1h".into(),
                ..Default::default()
            }),
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .schedule
        .unwrap();
    assert_eq!(schedule.created_by, "admin");

    // Durable: the same after a restart.
    drop(server);
    let server = ServerProcess::spawn(dir.path(), &[API_KEYS]);
    let channel = server.channel().await;
    let again = ExperimentServiceClient::new(channel.clone())
        .get_experiment(with_key(
            Request::new(pb::GetExperimentRequest { experiment_id: id }),
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .experiment
        .unwrap();
    assert_eq!(again.created_by, "ci");
    assert_eq!(again.status_changes, paused.status_changes);
    let run = EvaluationServiceClient::new(channel.clone())
        .get_run(with_key(
            Request::new(pb::GetRunRequest { run_id: run.id }),
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(run.created_by, "ci");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applications_calls_are_audited_unless_switched_off() {
    use llmops::pb::experiment_service_client::ExperimentServiceClient;
    for runtime_calls in ["true", "false"] {
        let dir = tempfile::tempdir().unwrap();
        let admin = bootstrapped_secret(&bootstrap(dir.path(), &[]));
        let server = ServerProcess::spawn(
            dir.path(),
            &[API_KEYS, ("LLMOPS_AUDIT_RUNTIME_CALLS", runtime_calls)],
        );
        let channel = server.channel().await;
        let (_, app) = create_key(&channel, &admin, "storefront", pb::Role::App, 0).await;
        let mut experiments = ExperimentServiceClient::new(channel.clone());
        let id = experiments
            .create_experiment(with_key(
                Request::new(pb::CreateExperimentRequest {
                    experiment: Some(pb::Experiment {
                        id: "models".into(),
                        name: "models".into(),
                        variants: ["control", "treatment"]
                            .map(|id| pb::Variant {
                                id: id.into(),
                                is_control: id == "control",
                                ..Default::default()
                            })
                            .to_vec(),
                        ..Default::default()
                    }),
                }),
                &admin,
            ))
            .await
            .unwrap()
            .into_inner()
            .experiment
            .unwrap()
            .id;
        experiments
            .start_experiment(with_key(
                Request::new(pb::StartExperimentRequest {
                    experiment_id: id.clone(),
                }),
                &admin,
            ))
            .await
            .unwrap();
        experiments
            .assign_variant(with_key(
                Request::new(pb::AssignVariantRequest {
                    experiment_id: id.clone(),
                    user_id: "alice".into(),
                }),
                &app,
            ))
            .await
            .unwrap();
        let by_app = audit(
            &channel,
            &admin,
            pb::ListAuditEventsRequest {
                actor: "storefront".into(),
                ..Default::default()
            },
        )
        .await;
        let by_admin = audit(
            &channel,
            &admin,
            pb::ListAuditEventsRequest {
                actor: "admin".into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(by_admin.len(), 3, "key, experiment, start: {by_admin:?}");
        assert_eq!(by_admin[1].resource, "models");
        if runtime_calls == "true" {
            assert_eq!(by_app.len(), 1, "{by_app:?}");
            assert_eq!(
                by_app[0].method,
                "llmops.v1.ExperimentService/AssignVariant"
            );
            assert_eq!(by_app[0].resource, "models", "the user is not a resource");
        } else {
            assert!(by_app.is_empty(), "{by_app:?}");
        }
    }
}
