//! Who may call what, checked before any handler runs.
//!
//! Every RPC of every llmops service declares the least role it needs in the proto
//! (`option (llmops.v1.required_role) = ROLE_EDITOR;`); [`MethodRoles`] reads those
//! options from the descriptor set compiled into the binary, and start-up fails if one
//! is missing. [`AccessLayer`] then answers each call:
//! - health and reflection pass without a key (mesh probes and tools);
//! - with `[auth] mode = "none"` every call passes as the anonymous admin;
//! - with `mode = "api_keys"`, or with client certificates required (`[tls]
//!   client_ca_file`): a call is made by its API key when it carries one, else by its
//!   client certificate's identity (`[[tls.identities]]`). No credential, an unknown key
//!   or an identity without a role is UNAUTHENTICATED, a revoked or
//!   expired one UNAUTHENTICATED with the reason, a key past its rate limit
//!   RESOURCE_EXHAUSTED with retry info, and too little role PERMISSION_DENIED naming the
//!   role needed.
//!
//! A call that passes carries its [`Caller`] in the request's extensions, for handlers
//! that decide more finely (protected labels, gate overrides, `WhoAmI`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use anyhow::{bail, Context as _};
use http::{Request, Response};
use llmops_access::{AuthError, Caller, KeyService, Role};
use prost_reflect::{DescriptorPool, MessageDescriptor};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

use super::audit::{request_start, RefusedRequest};
use super::connection::ConnectionInfo;
use super::tls::Peer;
use crate::pb;

/// OTLP's trace collector service, served on the gRPC port for ROLE_APP.
const OTLP_TRACE_SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";

/// The custom method option every RPC declares.
const REQUIRED_ROLE: &str = "llmops.v1.required_role";

/// Calls refused before any handler, by `code` (UNAUTHENTICATED, PERMISSION_DENIED,
/// RESOURCE_EXHAUSTED).
pub(crate) const AUTH_REFUSALS_TOTAL: &str = "llmops_auth_refusals_total";

/// `idempotency_level = NO_SIDE_EFFECTS` (google/protobuf/descriptor.proto).
const NO_SIDE_EFFECTS: i32 = 1;

/// What the descriptor declares of each llmops RPC, by its HTTP/2 path
/// (`/llmops.v1.X/Method`): the role it requires and, for an RPC that changes something
/// (no `idempotency_level = NO_SIDE_EFFECTS`), its input type, for the audit log.
#[derive(Debug, Clone)]
pub(crate) struct MethodRoles(HashMap<String, Declared>);

#[derive(Debug, Clone)]
struct Declared {
    role: Role,
    audited: Option<MessageDescriptor>,
}

impl MethodRoles {
    /// The roles declared in the compiled descriptor set; an error names every RPC of
    /// an llmops service that declares none (or an unknown role).
    pub(crate) fn from_descriptor() -> anyhow::Result<Self> {
        Self::from_encoded(pb::FILE_DESCRIPTOR_SET)
    }

    fn from_encoded(descriptor: &[u8]) -> anyhow::Result<Self> {
        let pool = DescriptorPool::decode(descriptor).context("reading the descriptor set")?;
        let option = pool
            .get_extension_by_name(REQUIRED_ROLE)
            .with_context(|| format!("the descriptor set has no option {REQUIRED_ROLE}"))?;
        let mut roles = HashMap::new();
        let mut undeclared = Vec::new();
        for service in pool.services() {
            if service.package_name() != "llmops.v1" {
                continue;
            }
            for method in service.methods() {
                let path = format!("/{}/{}", service.full_name(), method.name());
                let options = method.options();
                let role = options
                    .has_extension(&option)
                    .then(|| options.get_extension(&option).as_enum_number())
                    .flatten()
                    .and_then(Role::from_number);
                let side_effects = method
                    .method_descriptor_proto()
                    .options
                    .as_ref()
                    .and_then(|options| options.idempotency_level)
                    != Some(NO_SIDE_EFFECTS);
                let audited = side_effects.then(|| method.input());
                match role {
                    Some(role) => {
                        roles.insert(path, Declared { role, audited });
                    }
                    None => undeclared.push(path),
                }
            }
        }
        // OTLP trace export: spans become generations, as LogGenerations stores them.
        let otlp = DescriptorPool::decode(opentelemetry_proto::DESCRIPTORS)
            .context("reading the OTLP descriptor set")?;
        let export = otlp
            .get_service_by_name(OTLP_TRACE_SERVICE)
            .and_then(|service| service.methods().find(|m| m.name() == "Export"))
            .context("the OTLP descriptor set has no TraceService/Export")?;
        roles.insert(
            format!("/{OTLP_TRACE_SERVICE}/Export"),
            Declared {
                role: Role::App,
                audited: Some(export.input()),
            },
        );
        if !undeclared.is_empty() {
            bail!(
                "these RPCs declare no {REQUIRED_ROLE}: {}",
                undeclared.join(", ")
            );
        }
        Ok(Self(roles))
    }

    /// The role `path` requires; `None` for a path that is not an llmops RPC.
    pub(crate) fn required(&self, path: &str) -> Option<Role> {
        self.0.get(path).map(|declared| declared.role)
    }

    /// The input type of `path` when its calls are audited.
    pub(crate) fn audited_input(&self, path: &str) -> Option<MessageDescriptor> {
        self.0
            .get(path)
            .and_then(|declared| declared.audited.clone())
    }

    /// The full names (`llmops.v1.PromptService/SetPromptLabel`) of the RPCs named
    /// `name` in any service.
    pub(crate) fn full_names(&self, name: &str) -> Vec<String> {
        let suffix = format!("/{name}");
        let mut names: Vec<String> = self
            .0
            .keys()
            .filter(|path| path.ends_with(&suffix))
            .map(|path| path.trim_start_matches('/').to_owned())
            .collect();
        names.sort();
        names
    }
}

/// How calls are authenticated (`[auth] mode`).
#[derive(Debug)]
pub(crate) struct Access {
    roles: Arc<MethodRoles>,
    /// The keys, once storage is open (read only with `mode = "api_keys"`).
    keys: OnceLock<Arc<KeyService>>,
    /// Whether calls need a credential (API keys or client certificates are on).
    required: bool,
    /// The caller of every call with `mode = "none"`, built once.
    anonymous: Caller,
}

impl Access {
    /// Access with a credential required (`api_keys`, or client certificates) or not.
    pub(crate) fn new(roles: Arc<MethodRoles>, required: bool) -> Arc<Self> {
        Arc::new(Self {
            roles,
            keys: OnceLock::new(),
            required,
            anonymous: Caller::anonymous(),
        })
    }

    /// Keys are checked from here on (calls before are answered UNAVAILABLE, like every
    /// service before storage is open).
    pub(crate) fn fill(&self, keys: Arc<KeyService>) {
        let _ = self.keys.set(keys);
    }

    /// The caller of a call to `path` with these headers over a connection from `peer`,
    /// or the status refusing it. `Ok(None)` for a call outside the llmops services
    /// (health, reflection).
    fn check(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        peer: Option<&Peer>,
    ) -> Result<Option<Caller>, Refused> {
        let Some(required) = self.roles.required(path) else {
            return Ok(None);
        };
        if !self.required {
            return Ok(Some(self.anonymous.clone()));
        }
        let caller = match (bearer(headers), peer) {
            (Some(secret), _) => {
                let Some(keys) = self.keys.get() else {
                    return Err(
                        Status::unavailable("the server is starting; retry in a moment").into(),
                    );
                };
                keys.authenticate(secret, chrono::Utc::now())
                    .map_err(refusal)?
            }
            (None, Some(peer)) => peer.caller.clone().ok_or_else(|| {
                Status::unauthenticated(format!(
                    "the client certificate ({}) matches no [[tls.identities]] subject",
                    if peer.names.is_empty() {
                        "no CN or URI SAN".to_owned()
                    } else {
                        peer.names.join(", ")
                    }
                ))
            })?,
            (None, None) => return Err(refusal(AuthError::Missing).into()),
        };
        if caller.role < required {
            let status = Status::permission_denied(format!(
                "{path} needs {required}; {} has {}",
                describe(&caller),
                caller.role
            ));
            // A known caller's refusal is audited.
            return Err(Refused {
                status,
                caller: Some(caller),
            });
        }
        Ok(Some(caller))
    }
}

/// A refused call: the answer, and the caller when it is known.
#[derive(Debug)]
struct Refused {
    status: Status,
    caller: Option<Caller>,
}

impl From<Status> for Refused {
    fn from(status: Status) -> Self {
        Self {
            status,
            caller: None,
        }
    }
}

/// The token of an `authorization: Bearer <token>` header.
fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn describe(caller: &Caller) -> String {
    match &caller.key {
        Some(key) => format!("API key {:?}", key.name),
        None => format!("client certificate {:?}", caller.identity),
    }
}

/// The status for refused credentials; it names the key, never the secret.
fn refusal(error: AuthError) -> Status {
    match &error {
        AuthError::RateLimited { retry_after, .. } => Status::with_error_details(
            Code::ResourceExhausted,
            error.to_string(),
            ErrorDetails::with_retry_info(Some(*retry_after)),
        ),
        _ => Status::unauthenticated(error.to_string()),
    }
}

/// Checks every call against [`Access`] before it reaches a service.
#[derive(Debug, Clone)]
pub(crate) struct AccessLayer {
    access: Arc<Access>,
}

impl AccessLayer {
    pub(crate) fn new(access: Arc<Access>) -> Self {
        Self { access }
    }
}

impl<S> Layer<S> for AccessLayer {
    type Service = AccessCheck<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessCheck {
            inner,
            access: self.access.clone(),
        }
    }
}

/// The service [`AccessLayer`] wraps.
#[derive(Debug, Clone)]
pub(crate) struct AccessCheck<S> {
    inner: S,
    access: Arc<Access>,
}

impl<S> Service<Request<tonic::body::Body>> for AccessCheck<S>
where
    S: Service<Request<tonic::body::Body>, Response = Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<tonic::body::Body>) -> Self::Future {
        let peer = request
            .extensions()
            .get::<ConnectionInfo>()
            .and_then(|info| info.peer.clone());
        match self
            .access
            .check(request.uri().path(), request.headers(), peer.as_deref())
        {
            Ok(None) => Box::pin(self.inner.call(request)),
            Ok(Some(caller)) => {
                request.extensions_mut().insert(caller.clone());
                let response = self.inner.call(request);
                // The caller goes out with the answer, for the audit log.
                Box::pin(async move {
                    let mut response = response.await?;
                    response.extensions_mut().insert(caller);
                    Ok(response)
                })
            }
            Err(refused) => {
                metrics::counter!(AUTH_REFUSALS_TOTAL, "code" => refused.status.code().description())
                    .increment(1);
                let mut response = refused.status.into_http();
                let Some(caller) = refused.caller else {
                    return Box::pin(async move { Ok(response) });
                };
                // A known caller's refusal is audited, with the resource it asked for.
                response.extensions_mut().insert(caller);
                let body = request.into_body();
                Box::pin(async move {
                    let start = request_start(body).await;
                    response.extensions_mut().insert(RefusedRequest(start));
                    Ok(response)
                })
            }
        }
    }
}

/// The caller of a request that passed [`AccessLayer`] (the anonymous admin for a
/// request that did not come through it: handlers called directly in tests).
pub(crate) fn caller_of<T>(request: &tonic::Request<T>) -> Caller {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(Caller::anonymous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_llmops_rpc_declares_its_role() {
        let roles = MethodRoles::from_descriptor().unwrap();
        let pool = DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
        let mut rpcs = Vec::new();
        for service in pool.services() {
            if service.package_name() == "llmops.v1" {
                for method in service.methods() {
                    rpcs.push(format!("/{}/{}", service.full_name(), method.name()));
                }
            }
        }
        assert!(rpcs.len() > 60, "{rpcs:?}");
        for rpc in &rpcs {
            assert!(roles.required(rpc).is_some(), "{rpc} declares no role");
        }
        assert_eq!(
            roles.required("/llmops.v1.PromptService/RenderPrompt"),
            Some(Role::Reader)
        );
        assert_eq!(
            roles.required("/llmops.v1.ExperimentService/RecordMetric"),
            Some(Role::App)
        );
        assert_eq!(
            roles.required("/llmops.v1.AuthService/CreateApiKey"),
            Some(Role::Admin)
        );
        assert_eq!(roles.required("/grpc.health.v1.Health/Check"), None);
    }

    #[test]
    fn rpcs_without_a_declared_role_are_refused_by_name() {
        // Decoded by prost and encoded again, the set loses its custom options (prost
        // keeps no unknown fields), so no RPC declares a role any more.
        use prost::Message as _;
        let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
        let error = MethodRoles::from_encoded(&set.encode_to_vec()).unwrap_err();
        for rpc in [
            "/llmops.v1.PromptService/RenderPrompt",
            "/llmops.v1.AuthService/CreateApiKey",
        ] {
            assert!(error.to_string().contains(rpc), "{error}");
        }
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(
            http::header::AUTHORIZATION,
            "Bearer llmops_x".parse().unwrap(),
        );
        assert_eq!(bearer(&headers), Some("llmops_x"));
        headers.insert(
            http::header::AUTHORIZATION,
            "bearer  llmops_y ".parse().unwrap(),
        );
        assert_eq!(bearer(&headers), Some("llmops_y"));
        headers.insert(http::header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }
}
