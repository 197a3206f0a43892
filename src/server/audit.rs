//! The audit log of calls: every call of an RPC that changes something (one without
//! `idempotency_level = NO_SIDE_EFFECTS` in the proto) by a known caller is stored with
//! its caller, method, resource, outcome code and request id, before its answer is
//! released to the client.
//!
//! [`AuditLayer`] sits outside [`super::access::AccessLayer`], which hands it the
//! caller in the response's extensions, both for calls it let through and for calls it
//! refused for too little role. Calls without valid credentials reach no caller and are
//! not stored (anyone could fill the log with them); they are counted in metrics.
//!
//! The resource is read from the request's first message: its identifying string fields
//! (names, ids, versions, labels; top level first, then those of its first message
//! field), found with the method's input descriptor, joined by `/`. A handler that
//! chose an id itself (a create without one) names it with [`AuditResource`].
//!
//! A read that also wrote what an application's call writes (RenderPrompt or
//! GetPromptVersion storing a user's first exposure) is audited as a runtime call when
//! its handler marks the response with [`RuntimeWrite`]: the method is a read, so only
//! the handler knows.
//!
//! The entry is written after the handler's own transaction: a crash between the two
//! loses the entry of a change that was made, but no client is told a change succeeded
//! without its entry being durable.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use llmops_access::{AuditEvent, AuditLog, Caller};
use pin_project_lite::pin_project;
use prost_reflect::{Kind, MessageDescriptor};
use tonic::Code;
use tower::{Layer, Service};

use super::access::MethodRoles;
use crate::telemetry::code_name;

/// Audit entries that could not be stored (the call's answer still went out).
pub(crate) const AUDIT_WRITE_FAILURES_TOTAL: &str = "llmops_audit_write_failures_total";

/// The request id header: taken from the client when it sent a usable one, else made.
const REQUEST_ID: &str = "x-request-id";
/// How much of a request is kept to find its resource.
const CAPTURE_BYTES: usize = 16 * 1024;
/// Longest resource component kept, in characters.
const COMPONENT_CHARS: usize = 128;
/// Resource components at most.
const COMPONENTS: usize = 4;

/// The resource a handler names for the audit log (in the response's extensions), when
/// the request does not say it: the id of what it created.
#[derive(Debug, Clone)]
pub(crate) struct AuditResource(pub(crate) String);

/// Names `resource` as the audited resource of `response`.
pub(crate) fn with_audit_resource<T>(
    response: tonic::Response<T>,
    resource: impl Into<String>,
) -> tonic::Response<T> {
    marked(response, AuditResource(resource.into()))
}

/// Marks the answer of a read that stored what an application's call stores (a user's
/// first exposure, by a render for a user), naming the resource (the experiment). It is
/// audited like AssignVariant when `audit_runtime_calls` is on.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeWrite(pub(crate) String);

/// Marks `response` as a [`RuntimeWrite`] to `resource`.
pub(crate) fn with_runtime_write<T>(
    response: tonic::Response<T>,
    resource: impl Into<String>,
) -> tonic::Response<T> {
    marked(response, RuntimeWrite(resource.into()))
}

/// `response` carrying `mark` in its extensions, for the layer to read.
fn marked<T, M: Clone + Send + Sync + 'static>(
    mut response: tonic::Response<T>,
    mark: M,
) -> tonic::Response<T> {
    response.extensions_mut().insert(mark);
    response
}

/// The start of a request the access check refused, read by it for the audit log (a
/// refused request reaches no handler, which would have read it).
#[derive(Debug, Clone)]
pub(crate) struct RefusedRequest(pub(crate) Vec<u8>);

/// The first [`CAPTURE_BYTES`] of `body`, or what arrived of them within a second.
pub(crate) async fn request_start(body: tonic::body::Body) -> Vec<u8> {
    use http_body::Body as _;
    let mut body = std::pin::pin!(body);
    let mut bytes = Vec::new();
    let read = async {
        while bytes.len() < CAPTURE_BYTES {
            match std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let room = CAPTURE_BYTES - bytes.len();
                        bytes.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), read).await;
    bytes
}

/// The audit log's writer, once storage is open.
#[derive(Debug, Default)]
pub(crate) struct Auditor {
    log: OnceLock<AuditLog>,
}

impl Auditor {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(crate) fn fill(&self, log: AuditLog) {
        let _ = self.log.set(log);
    }
}

/// Records audited calls.
#[derive(Debug, Clone)]
pub(crate) struct AuditLayer {
    methods: Arc<MethodRoles>,
    auditor: Arc<Auditor>,
    runtime_calls: bool,
}

impl AuditLayer {
    /// Audits the changing calls of `methods`; with `runtime_calls`, those ROLE_APP may
    /// make too (`audit_runtime_calls`).
    pub(crate) fn new(
        methods: Arc<MethodRoles>,
        auditor: Arc<Auditor>,
        runtime_calls: bool,
    ) -> Self {
        Self {
            methods,
            auditor,
            runtime_calls,
        }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Audit {
            inner,
            methods: self.methods.clone(),
            auditor: self.auditor.clone(),
            runtime_calls: self.runtime_calls,
        }
    }
}

/// The service [`AuditLayer`] wraps.
#[derive(Debug, Clone)]
pub(crate) struct Audit<S> {
    inner: S,
    methods: Arc<MethodRoles>,
    auditor: Arc<Auditor>,
    runtime_calls: bool,
}

impl<S> Service<Request<tonic::body::Body>> for Audit<S>
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

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        let path = request.uri().path();
        let audited = self.methods.audited_input(path).filter(|_| {
            self.runtime_calls || self.methods.required(path) != Some(llmops_access::Role::App)
        });
        let Some(input) = audited else {
            if !self.runtime_calls {
                return Box::pin(self.inner.call(request));
            }
            // A read; audited only if its handler says it wrote (see `RuntimeWrite`).
            // Reads are the hot path: only reference-counted handles are kept here, and
            // the entry's strings are made for the rare answer that is marked.
            let uri = request.uri().clone();
            let sent_request_id = request.headers().get(REQUEST_ID).cloned();
            let response = self.inner.call(request);
            let auditor = self.auditor.clone();
            return Box::pin(async move {
                let mut response = response.await?;
                let write = response.extensions().get::<RuntimeWrite>().cloned();
                let caller = response.extensions().get::<Caller>().cloned();
                if let (Some(RuntimeWrite(resource)), Some(caller)) = (write, caller) {
                    let method = method_of(&uri);
                    let request_id = usable_request_id_of(sent_request_id.as_ref())
                        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
                    set_request_id(&mut response, &request_id);
                    let code = answer_code(&response);
                    auditor
                        .record(&caller, method, resource, code, request_id)
                        .await;
                }
                Ok(response)
            });
        };
        let method = method_of(request.uri());
        let request_id = usable_request_id_of(request.headers().get(REQUEST_ID))
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let captured = Arc::new(Mutex::new(Vec::new()));
        let request = request.map(|body| {
            tonic::body::Body::new(CapturingBody {
                inner: body,
                captured: captured.clone(),
            })
        });
        let response = self.inner.call(request);
        let auditor = self.auditor.clone();
        Box::pin(async move {
            let mut response = response.await?;
            set_request_id(&mut response, &request_id);
            let Some(caller) = response.extensions().get::<Caller>().cloned() else {
                return Ok(response);
            };
            let resource = match (
                response.extensions().get::<AuditResource>(),
                response.extensions().get::<RefusedRequest>(),
            ) {
                (Some(AuditResource(resource)), _) => resource.clone(),
                (None, Some(RefusedRequest(start))) => resource_of(&input, start),
                (None, None) => {
                    let captured = captured.lock().unwrap_or_else(|e| e.into_inner());
                    resource_of(&input, &captured)
                }
            };
            let code = answer_code(&response);
            auditor
                .record(&caller, method, resource, code, request_id)
                .await;
            Ok(response)
        })
    }
}

impl Auditor {
    /// Stores the entry of one call (a failure is logged and counted; the answer goes
    /// out either way).
    async fn record(
        &self,
        caller: &Caller,
        method: String,
        resource: String,
        code: Code,
        request_id: String,
    ) {
        let event = AuditEvent {
            id: uuid::Uuid::now_v7().to_string(),
            time: chrono::Utc::now(),
            actor: caller.identity.to_string(),
            api_key_id: caller
                .key
                .as_ref()
                .map(|key| key.id.clone())
                .unwrap_or_default(),
            method,
            resource,
            code: code_name(code).to_owned(),
            request_id,
        };
        if let Some(log) = self.log.get() {
            if let Err(err) = log.record(event).await {
                metrics::counter!(AUDIT_WRITE_FAILURES_TOTAL).increment(1);
                tracing::error!(%err, "an audit entry could not be stored");
            }
        }
    }
}

/// `package.Service/Method` of a request's URI.
fn method_of(uri: &http::Uri) -> String {
    uri.path().trim_start_matches('/').to_owned()
}

/// The request id the client sent in `header`, when it is usable.
fn usable_request_id_of(header: Option<&HeaderValue>) -> Option<String> {
    header
        .and_then(|value| value.to_str().ok())
        .filter(|id| usable_request_id(id))
        .map(str::to_owned)
}

/// Answers with the request id the entry was stored under.
fn set_request_id<B>(response: &mut Response<B>, request_id: &str) {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
}

/// A client's request id is kept when it is short, visible ASCII.
fn usable_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The code of an answer: a handler's error is a trailers-only response with
/// `grpc-status` in its headers; an answer without it is OK (its trailers say so).
fn answer_code(response: &Response<tonic::body::Body>) -> Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map_or(Code::Ok, Code::from_i32)
}

pin_project! {
    /// A request body that keeps a copy of its first [`CAPTURE_BYTES`].
    struct CapturingBody {
        #[pin]
        inner: tonic::body::Body,
        captured: Arc<Mutex<Vec<u8>>>,
    }
}

impl http_body::Body for CapturingBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &frame {
            if let Some(data) = frame.data_ref() {
                let mut captured = this.captured.lock().unwrap_or_else(|e| e.into_inner());
                let room = CAPTURE_BYTES.saturating_sub(captured.len());
                captured.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The resource a request names: the identifying fields of its first message (the
/// gRPC frame in `captured`; a compressed one names nothing), joined by `/`.
fn resource_of(input: &MessageDescriptor, captured: &[u8]) -> String {
    // A gRPC frame: a compression flag, a 4-byte length, the message.
    let Some((&0, rest)) = captured.split_first() else {
        return String::new();
    };
    let Some(message) = rest.get(4..) else {
        return String::new();
    };
    let mut components = Vec::new();
    identifying_fields(input, message, true, &mut components);
    components.truncate(COMPONENTS);
    components.join("/")
}

/// Whether a string field identifies what a request is about.
fn is_identifying(name: &str) -> bool {
    matches!(name, "name" | "id" | "version" | "label" | "prompt_name")
        || (name.ends_with("_id") && !matches!(name, "user_id" | "request_id"))
}

/// Appends the identifying string fields of `message` (wire bytes of `descriptor`,
/// possibly cut short) to `out`, in field order; with `nested`, then those of its first
/// singular message field.
fn identifying_fields(
    descriptor: &MessageDescriptor,
    mut bytes: &[u8],
    nested: bool,
    out: &mut Vec<String>,
) {
    let mut strings = Vec::new();
    let mut inner: Option<(u32, MessageDescriptor, &[u8])> = None;
    while !bytes.is_empty() {
        let Ok(key) = prost::encoding::decode_varint(&mut bytes) else {
            break;
        };
        let Ok(number) = u32::try_from(key >> 3) else {
            break;
        };
        let skip = match key & 7 {
            0 => {
                if prost::encoding::decode_varint(&mut bytes).is_err() {
                    break;
                }
                0
            }
            1 => 8,
            5 => 4,
            2 => {
                let Ok(len) = prost::encoding::decode_varint(&mut bytes) else {
                    break;
                };
                let Some(value) = usize::try_from(len).ok().and_then(|len| bytes.get(..len)) else {
                    break; // cut short
                };
                if let Some(field) = descriptor.get_field(number) {
                    if !field.is_list() && !field.is_map() {
                        match field.kind() {
                            Kind::String if is_identifying(field.name()) => {
                                strings.push((number, component(value)));
                            }
                            Kind::Message(message)
                                if nested && inner.as_ref().is_none_or(|(n, ..)| number < *n) =>
                            {
                                inner = Some((number, message, value));
                            }
                            _ => {}
                        }
                    }
                }
                value.len()
            }
            _ => break,
        };
        let Some(rest) = bytes.get(skip..) else {
            break;
        };
        bytes = rest;
    }
    strings.sort_by_key(|(number, _)| *number);
    out.extend(
        strings
            .into_iter()
            .map(|(_, text)| text)
            .filter(|text| !text.is_empty()),
    );
    if let Some((_, message, value)) = inner {
        identifying_fields(&message, value, false, out);
    }
}

/// A field's text as a resource component: printable, at most [`COMPONENT_CHARS`].
fn component(value: &[u8]) -> String {
    String::from_utf8_lossy(value)
        .chars()
        .filter(|c| !c.is_control())
        .take(COMPONENT_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    fn framed(message: &impl prost::Message) -> Vec<u8> {
        let body = message.encode_to_vec();
        let mut frame = vec![0];
        frame.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
        frame.extend_from_slice(&body);
        frame
    }

    fn input(method: &str) -> MessageDescriptor {
        MethodRoles::from_descriptor()
            .unwrap()
            .audited_input(method)
            .unwrap()
    }

    #[test]
    fn the_resource_is_the_requests_identifying_fields() {
        let label = pb::SetPromptLabelRequest {
            name: "greet".into(),
            label: "production".into(),
            version: "1.2.0".into(),
            ..Default::default()
        };
        assert_eq!(
            resource_of(
                &input("/llmops.v1.PromptService/SetPromptLabel"),
                &framed(&label)
            ),
            "greet/production/1.2.0"
        );
        let create = pb::CreatePromptVersionRequest {
            prompt_version: Some(pb::PromptVersion {
                name: "greet".into(),
                version: "2.0.0".into(),
                template: "Hello {{ name }}".into(),
                ..Default::default()
            }),
        };
        assert_eq!(
            resource_of(
                &input("/llmops.v1.PromptService/CreatePromptVersion"),
                &framed(&create)
            ),
            "greet/2.0.0"
        );
        // A user is not a resource; a message cut short names what it holds.
        let metric = pb::RecordMetricRequest {
            experiment_id: "checkout".into(),
            user_id: "alice@example.com".into(),
            ..Default::default()
        };
        let method = input("/llmops.v1.ExperimentService/RecordMetric");
        assert_eq!(resource_of(&method, &framed(&metric)), "checkout");
        let frame = framed(&metric);
        assert_eq!(resource_of(&method, &frame[..frame.len() - 3]), "checkout");
        assert_eq!(resource_of(&method, &[1, 0, 0, 0, 2, 10, 0]), "");
    }

    #[test]
    fn reads_are_not_audited() {
        let methods = MethodRoles::from_descriptor().unwrap();
        for read in [
            "/llmops.v1.PromptService/RenderPrompt",
            "/llmops.v1.AuthService/ListApiKeys",
            "/llmops.v1.AuthService/ListAuditEvents",
            "/llmops.v1.AlertService/Subscribe",
        ] {
            assert!(methods.audited_input(read).is_none(), "{read}");
        }
        assert!(methods
            .audited_input("/llmops.v1.ExperimentService/AssignVariant")
            .is_some());
    }
}
