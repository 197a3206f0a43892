//! Client subcommands: each connects to a running server, makes its calls and prints the
//! answer as a readable table or, with `--json`, as JSON.
//!
//! The pieces: [`ClientOptions`] (the flags every client subcommand shares), [`connect`],
//! the `llmops prompt ...` commands in [`prompt`], the `llmops experiment ...` commands in
//! [`experiment`], the `llmops dataset ...` commands in [`dataset`], the `llmops eval ...`
//! commands in [`eval`], the `llmops schedule ...` commands in [`schedule`], the
//! `llmops gate ...` commands in [`gate`], the `llmops providers ...` commands in
//! [`providers`], protobuf/JSON value conversions in `values`, JSON/YAML file reading in
//! `files` and, for tests, a stand-in for the binary's parser in `testing`.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod cluster;
pub mod dataset;
pub mod eval;
pub mod experiment;
mod files;
pub mod gate;
pub mod generations;
pub mod migrate;
pub mod online_eval;
mod output;
mod paging;
pub mod prompt;
mod proto_json;
pub mod providers;
pub mod schedule;
#[cfg(test)]
mod testing;
pub mod usage;
mod values;

use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::{InterceptedService, Interceptor};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Status;

use crate::telemetry::code_name;
use tonic_types::StatusExt as _;

/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Options shared by every client subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientOptions {
    /// The server to talk to: a URL (`http://host:port`) or `host:port`.
    #[arg(
        long,
        global = true,
        env = "LLMOPS_SERVER",
        value_name = "URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// The API key's secret to call with (`[auth] mode = "api_keys"`), sent as
    /// `authorization: Bearer <secret>`.
    #[arg(
        long,
        global = true,
        env = "LLMOPS_API_KEY",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub api_key: Option<ApiKeySecret>,
    /// CA certificate (PEM) to verify an `https://` server with, instead of the
    /// system's roots.
    #[arg(long, global = true, env = "LLMOPS_CA_CERT", value_name = "PATH")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// Client certificate (PEM) to present to a server that requires one (mTLS).
    #[arg(
        long,
        global = true,
        env = "LLMOPS_CLIENT_CERT",
        value_name = "PATH",
        requires = "client_key"
    )]
    pub client_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long,
        global = true,
        env = "LLMOPS_CLIENT_KEY",
        value_name = "PATH",
        requires = "client_cert"
    )]
    pub client_key: Option<std::path::PathBuf>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// An API key's secret as the command line gave it; `Debug` never shows it, so no
/// debug print of the options can leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    /// The secret itself, for the `authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKeySecret(..)")
    }
}

impl std::str::FromStr for ApiKeySecret {
    type Err = std::convert::Infallible;

    fn from_str(secret: &str) -> Result<Self, Self::Err> {
        Ok(Self(secret.to_owned()))
    }
}

/// A connection to the server whose calls carry the API key, if one was given.
pub type Connection = InterceptedService<Channel, Credentials>;

/// Adds `authorization: Bearer <secret>` to every call.
#[derive(Clone)]
pub struct Credentials(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Credentials(..)"
        } else {
            "Credentials(none)"
        })
    }
}

impl Interceptor for Credentials {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl Credentials {
    /// Credentials for `api_key` (none without one); an error for a key that cannot be
    /// a header value, without repeating it.
    pub fn new(api_key: Option<&str>) -> anyhow::Result<Self> {
        match api_key.map(str::trim).filter(|key| !key.is_empty()) {
            None => Ok(Self(None)),
            Some(key) => {
                let mut value: MetadataValue<Ascii> =
                    format!("Bearer {key}").parse().map_err(|_| {
                        ConnectionError(
                            "the API key holds characters a header cannot carry".to_owned(),
                        )
                    })?;
                value.set_sensitive(true);
                Ok(Self(Some(value)))
            }
        }
    }
}

/// Connects to `options.server` (`host:port` without a scheme means `http://host:port`),
/// with `options.api_key` on every call.
///
/// Fails with a one-line error naming the address when the address is not valid or the
/// server cannot be reached.
pub async fn connect(options: &ClientOptions) -> anyhow::Result<Connection> {
    let credentials = Credentials::new(options.api_key.as_ref().map(ApiKeySecret::expose))?;
    let channel = connect_channel(options).await?;
    Ok(InterceptedService::new(channel, credentials))
}

async fn connect_channel(options: &ClientOptions) -> anyhow::Result<Channel> {
    let address = server_url(&options.server);
    let endpoint = Endpoint::from_shared(address.clone())
        .map_err(|err| {
            ConnectionError(format!(
                "{address:?} is not a valid server address: {}",
                root_cause(&err)
            ))
        })?
        .connect_timeout(CONNECT_TIMEOUT);
    let endpoint = match tls_config(options, &address)? {
        Some(tls) => endpoint.tls_config(tls).map_err(|err| {
            ConnectionError(format!(
                "cannot use TLS for {address}: {}",
                root_cause(&err)
            ))
        })?,
        None => endpoint,
    };
    endpoint.connect().await.map_err(|err| {
        anyhow::Error::new(ConnectionError(format!(
            "cannot connect to the server at {address}: {}",
            root_cause(&err)
        )))
    })
}

/// The TLS settings for an `https://` address: the server verified by `--ca-cert` (or
/// the system's roots), and `--client-cert` presented when given. `None` for `http://`;
/// an error for TLS options given with an `http://` address (they would be ignored).
fn tls_config(options: &ClientOptions, address: &str) -> anyhow::Result<Option<ClientTlsConfig>> {
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|err| {
            ConnectionError(format!("{flag}: cannot read {}: {err}", path.display()))
        })
    };
    if !address.starts_with("https://") {
        if options.ca_cert.is_some() || options.client_cert.is_some() {
            return Err(ConnectionError(format!(
                "--ca-cert and --client-cert need an https:// server address, not {address}"
            ))
            .into());
        }
        return Ok(None);
    }
    let mut tls = ClientTlsConfig::new();
    match &options.ca_cert {
        Some(path) => tls = tls.ca_certificate(Certificate::from_pem(read("--ca-cert", path)?)),
        None => tls = tls.with_native_roots(),
    }
    if let (Some(cert), Some(key)) = (&options.client_cert, &options.client_key) {
        tls = tls.identity(Identity::from_pem(
            read("--client-cert", cert)?,
            read("--client-key", key)?,
        ));
    }
    Ok(Some(tls))
}

/// The server address as a URL: `host:port` gets an `http://` prefix.
fn server_url(server: &str) -> String {
    let server = server.trim();
    if server.contains("://") {
        server.to_owned()
    } else {
        format!("http://{server}")
    }
}

/// The innermost error of a chain: for transport errors, the one that says what went
/// wrong (`Connection refused`) rather than `transport error`.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// `llmops config show`: every key's effective value and where it came from, as
/// `key = value    # source` lines or, with `json`, one JSON object.
pub fn show_config(loaded: &crate::config::LoadedConfig, json: bool) -> anyhow::Result<()> {
    output::emit(|out| {
        if json {
            return output::json(out, &loaded.describe_json());
        }
        for (key, value, source) in loaded.describe() {
            writeln!(out, "{key} = {value}    # {source}")?;
        }
        Ok(())
    })
}

/// Whether `err` comes from writing to a closed stdout: `llmops ... | head` stops
/// reading, which is not an error of the command.
pub fn is_closed_stdout(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A gRPC status as a clear error: `<CODE>: <message>`, then one indented
/// `  <field>: <description>` line per `google.rpc.BadRequest` field violation (the
/// message is left out when it only restates the violations).
pub(crate) fn status_error(status: Status) -> anyhow::Error {
    anyhow::Error::new(StatusError(status))
}

/// A failed call, kept whole so that `--json` can print its code and violations.
#[derive(Debug)]
pub struct StatusError(pub Status);

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&describe_status(&self.0))
    }
}

impl std::error::Error for StatusError {}

/// The server could not be reached (or its address is not one).
#[derive(Debug)]
pub struct ConnectionError(String);

impl std::fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConnectionError {}

/// `err` as the JSON object `--json` prints on stderr: `code` (the gRPC code's name;
/// UNAVAILABLE when the server cannot be reached, INVALID_ARGUMENT for a mistake found
/// before calling it, such as a bad file), `message` and `violations`
/// (`[{field, description}]`).
pub fn error_json(err: &anyhow::Error) -> serde_json::Value {
    if let Some(StatusError(status)) = err.chain().find_map(|e| e.downcast_ref()) {
        let violations: Vec<serde_json::Value> = status
            .get_details_bad_request()
            .map(|bad_request| {
                bad_request
                    .field_violations
                    .into_iter()
                    .map(|v| serde_json::json!({"field": v.field, "description": v.description}))
                    .collect()
            })
            .unwrap_or_default();
        return serde_json::json!({
            "code": code_name(status.code()),
            "message": status.message(),
            "violations": violations,
        });
    }
    let code = if err.chain().any(|e| e.is::<ConnectionError>()) {
        "UNAVAILABLE"
    } else {
        "INVALID_ARGUMENT"
    };
    serde_json::json!({"code": code, "message": format!("{err:#}"), "violations": []})
}

fn describe_status(status: &Status) -> String {
    let violations: Vec<String> = status
        .get_details_bad_request()
        .map(|bad_request| {
            bad_request
                .field_violations
                .into_iter()
                .map(|v| format!("{}: {}", v.field, v.description))
                .collect()
        })
        .unwrap_or_default();
    let mut text = code_name(status.code()).to_owned();
    // This server's message restates the violations on one line (for clients that do
    // not read details); they follow one per line, so do not print them twice.
    let restated = !violations.is_empty() && status.message() == violations.join("; ");
    if !status.message().is_empty() && !restated {
        text.push_str(": ");
        text.push_str(status.message());
    }
    for violation in violations {
        text.push_str("\n  ");
        text.push_str(&violation);
    }
    text
}

#[cfg(test)]
mod tests {
    use tonic::Code;
    use tonic_types::{ErrorDetails, FieldViolation};

    use super::*;

    #[test]
    fn host_and_port_get_a_scheme() {
        assert_eq!(server_url("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(server_url("localhost:1"), "http://localhost:1");
        assert_eq!(server_url("https://example.com"), "https://example.com");
    }

    #[test]
    fn a_status_reads_as_code_and_message() {
        let status = Status::not_found("prompt \"x\" does not exist");
        assert_eq!(
            describe_status(&status),
            "NOT_FOUND: prompt \"x\" does not exist"
        );
        assert_eq!(describe_status(&Status::unavailable("")), "UNAVAILABLE");
    }

    #[test]
    fn field_violations_get_a_line_each() {
        let details = ErrorDetails::with_bad_request(vec![
            FieldViolation::new("variables.n", "must be an int, got a string"),
            FieldViolation::new("variables.x", "is required"),
        ]);
        let status = Status::with_error_details(Code::InvalidArgument, "bad variables", details);
        assert_eq!(
            describe_status(&status),
            "INVALID_ARGUMENT: bad variables\n  variables.n: must be an int, got a string\n  variables.x: is required"
        );
    }

    #[test]
    fn a_message_that_restates_the_violations_is_not_repeated() {
        let details = ErrorDetails::with_bad_request(vec![
            FieldViolation::new("variables.n", "bad"),
            FieldViolation::new("variables.x", "is required"),
        ]);
        let status = Status::with_error_details(
            Code::InvalidArgument,
            "variables.n: bad; variables.x: is required",
            details,
        );
        assert_eq!(
            describe_status(&status),
            "INVALID_ARGUMENT\n  variables.n: bad\n  variables.x: is required"
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_is_named_in_the_error() {
        // Bind then drop a listener to get a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = ClientOptions {
            server: format!("127.0.0.1:{port}"),
            api_key: None,
            ca_cert: None,
            client_cert: None,
            client_key: None,
            json: false,
        };
        let err = connect(&options).await.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "cannot connect to the server at http://127.0.0.1:{port}: "
            )),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }
}
