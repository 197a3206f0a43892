//! TLS for the gRPC and metrics listeners (rustls with ring), and the identities of
//! client certificates (mTLS).
//!
//! The certificate, key and client CA files are read at start-up and again whenever
//! their contents change (checked every `[tls] reload_interval`), so a rotated
//! certificate is served without a restart: each new connection takes the newest
//! configuration, and connections already open keep the one they were made with. A
//! change that does not load (a key written before its certificate, say) is logged and
//! tried again at the next check; the last good configuration stays in use meanwhile.
//!
//! With `client_ca_file`, every gRPC connection must present a certificate that CA
//! signed. Its identities (the subject's common name as `CN=<name>`, and each URI SAN,
//! such as a mesh's SPIFFE ID) are matched against `[[tls.identities]]`; the first
//! configured subject the certificate carries gives the connection its role.

use std::io;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{bail, Context as _};
use llmops_access::{Caller, Role};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::TlsConfig;

/// Connections refused because their TLS handshake failed (no or a bad client
/// certificate, a plain-text client, an unsupported version).
pub(crate) const TLS_HANDSHAKE_FAILURES_TOTAL: &str = "llmops_tls_handshake_failures_total";
/// Certificate reloads, by `outcome` (`loaded`, `failed`).
pub(crate) const TLS_RELOADS_TOTAL: &str = "llmops_tls_reloads_total";

/// The server's TLS configurations, kept current with the files.
#[derive(Debug)]
pub(crate) struct ServerTls {
    settings: TlsConfig,
    identities: Vec<(String, Role)>,
    current: RwLock<Loaded>,
}

/// One reading of the files and the configurations built from it.
#[derive(Debug)]
struct Loaded {
    /// The files' bytes, to tell when they change.
    contents: Vec<Vec<u8>>,
    /// gRPC: HTTP/2 by ALPN, client certificates when configured.
    grpc: Arc<ServerConfig>,
    /// `/metrics`: HTTP/1.1, no client certificate (scrapers authenticate the server).
    metrics: Arc<ServerConfig>,
}

/// Who is at the other end of a connection, by its client certificate.
#[derive(Debug)]
pub(crate) struct Peer {
    /// The certificate's identities: `CN=<common name>` and its URI SANs.
    pub(crate) names: Vec<String>,
    /// The caller of the first configured identity the certificate carries.
    pub(crate) caller: Option<Caller>,
}

impl ServerTls {
    /// Reads the files named by `settings`; an error names the file at fault.
    pub(crate) fn load(settings: &TlsConfig) -> anyhow::Result<Arc<Self>> {
        let identities = settings
            .identities
            .iter()
            .map(|identity| {
                let role = Role::parse(&identity.role)
                    .with_context(|| format!("{:?} is not a role", identity.role))?;
                Ok((identity.subject.trim().to_owned(), role))
            })
            .collect::<anyhow::Result<_>>()?;
        let contents = read_files(settings)?;
        let loaded = build(settings, contents)?;
        Ok(Arc::new(Self {
            settings: settings.clone(),
            identities,
            current: RwLock::new(loaded),
        }))
    }

    /// An acceptor for a new gRPC connection, with the newest configuration.
    pub(crate) fn grpc_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.read().grpc.clone())
    }

    /// An acceptor for a new metrics connection, with the newest configuration.
    pub(crate) fn metrics_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.read().metrics.clone())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the files again; a change that loads replaces the configuration. Returns
    /// whether it did.
    fn reload(&self) -> anyhow::Result<bool> {
        let contents = read_files(&self.settings)?;
        if contents == self.read().contents {
            return Ok(false);
        }
        let loaded = build(&self.settings, contents)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = loaded;
        Ok(true)
    }

    /// Checks the files every `reload_interval` until `stop`.
    pub(crate) async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(self.settings.reload_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let tls = self.clone();
            match tokio::task::spawn_blocking(move || tls.reload()).await {
                Ok(Ok(false)) => {}
                Ok(Ok(true)) => {
                    metrics::counter!(TLS_RELOADS_TOTAL, "outcome" => "loaded").increment(1);
                    tracing::info!("TLS certificate files changed; new connections use them");
                }
                Ok(Err(err)) => {
                    metrics::counter!(TLS_RELOADS_TOTAL, "outcome" => "failed").increment(1);
                    tracing::warn!(
                        error = format!("{err:#}"),
                        "the TLS files changed but do not load; still serving the previous certificate"
                    );
                }
                Err(err) => tracing::warn!(%err, "reading the TLS files failed"),
            }
        }
    }

    /// The identity of the client of `connection`, when it presented a certificate.
    pub(crate) fn peer(&self, connection: &rustls::ServerConnection) -> Option<Peer> {
        let leaf = connection.peer_certificates()?.first()?;
        let names = certificate_names(leaf);
        let caller = self.identities.iter().find_map(|(subject, role)| {
            names
                .iter()
                .any(|name| name == subject)
                .then(|| Caller::of_certificate(subject, *role))
        });
        Some(Peer { names, caller })
    }
}

/// The bytes of the certificate, key and client CA files, in that order.
fn read_files(settings: &TlsConfig) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut contents = Vec::new();
    for (key, path) in [
        ("tls.cert_file", &settings.cert_file),
        ("tls.key_file", &settings.key_file),
        ("tls.client_ca_file", &settings.client_ca_file),
    ] {
        if path.is_empty() {
            contents.push(Vec::new());
            continue;
        }
        contents.push(std::fs::read(path).with_context(|| format!("{key}: reading {path}"))?);
    }
    Ok(contents)
}

/// The configurations for one reading of the files.
fn build(settings: &TlsConfig, contents: Vec<Vec<u8>>) -> anyhow::Result<Loaded> {
    let certs = CertificateDer::pem_slice_iter(&contents[0])
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("tls.cert_file: {} is not PEM", settings.cert_file))?;
    if certs.is_empty() {
        bail!(
            "tls.cert_file: {} holds no CERTIFICATE block",
            settings.cert_file
        );
    }
    let key = PrivateKeyDer::from_pem_slice(&contents[1]).with_context(|| {
        format!(
            "tls.key_file: {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
            settings.key_file
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = || {
        ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("choosing TLS versions")
    };
    let client_verifier = if settings.client_ca_file.is_empty() {
        None
    } else {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&contents[2]) {
            let cert = cert.with_context(|| {
                format!("tls.client_ca_file: {} is not PEM", settings.client_ca_file)
            })?;
            roots.add(cert).with_context(|| {
                format!(
                    "tls.client_ca_file: {} holds a certificate that is not a CA",
                    settings.client_ca_file
                )
            })?;
        }
        if roots.is_empty() {
            bail!(
                "tls.client_ca_file: {} holds no CERTIFICATE block",
                settings.client_ca_file
            );
        }
        Some(
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .context("tls.client_ca_file: building the client certificate verifier")?,
        )
    };
    let mismatch = || {
        format!(
            "tls.key_file: {} is not the key of the certificate in {}",
            settings.key_file, settings.cert_file
        )
    };
    let mut grpc = match client_verifier {
        Some(verifier) => builder()?.with_client_cert_verifier(verifier),
        None => builder()?.with_no_client_auth(),
    }
    .with_single_cert(certs.clone(), key.clone_key())
    .with_context(mismatch)?;
    grpc.alpn_protocols = vec![b"h2".to_vec()];
    let mut metrics = builder()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(mismatch)?;
    metrics.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Loaded {
        contents,
        grpc: Arc::new(grpc),
        metrics: Arc::new(metrics),
    })
}

/// A certificate's identities: `CN=<common name>` for each common name of its subject,
/// then its URI SANs. Empty for a certificate that does not parse (the verifier has
/// accepted it, so this does not happen in practice).
fn certificate_names(der: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(|cn| format!("CN={cn}"))
        .collect();
    if let Ok(Some(sans)) = cert.subject_alternative_name() {
        for name in &sans.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(uri) = name {
                names.push((*uri).to_owned());
            }
        }
    }
    names
}

/// A listener of TLS connections for `/metrics`: handshakes run concurrently (at most
/// [`METRICS_HANDSHAKES`] at once, each within `handshake_timeout`), so a client that
/// connects and says nothing delays no scrape.
pub(crate) struct MetricsTlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, std::net::SocketAddr)>,
    local: std::net::SocketAddr,
}

/// Concurrent handshakes on the metrics listener at most.
const METRICS_HANDSHAKES: usize = 64;

impl MetricsTlsListener {
    /// Accepts on `listener` until `stop`.
    pub(crate) fn new(
        listener: TcpListener,
        tls: Arc<ServerTls>,
        handshake_timeout: Duration,
        stop: CancellationToken,
    ) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (sender, accepted) = mpsc::channel(METRICS_HANDSHAKES);
        let handshakes = Arc::new(Semaphore::new(METRICS_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let (stream, address) = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(err) => {
                            tracing::debug!(%err, "accepting a metrics connection failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                    continue;
                };
                let acceptor = tls.metrics_acceptor();
                let sender = sender.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let _ = sender.send((stream, address)).await;
                        }
                        Ok(Err(err)) => {
                            metrics::counter!(TLS_HANDSHAKE_FAILURES_TOTAL, "listener" => "metrics")
                                .increment(1);
                            tracing::debug!(%err, %address, "metrics TLS handshake failed");
                        }
                        Err(_) => {
                            metrics::counter!(TLS_HANDSHAKE_FAILURES_TOTAL, "listener" => "metrics")
                                .increment(1);
                        }
                    }
                });
            }
        });
        Ok(Self { accepted, local })
    }
}

impl axum::serve::Listener for MetricsTlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept loop ended with the server; graceful shutdown ends `serve`.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(params: rcgen::CertificateParams) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn a_certificate_is_known_by_its_common_name_and_uri_sans() {
        let mut params = rcgen::CertificateParams::new(vec!["app.local".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "billing");
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://example.org/ns/billing/sa/api".try_into().unwrap(),
        ));
        assert_eq!(
            certificate_names(&certificate(params)),
            ["CN=billing", "spiffe://example.org/ns/billing/sa/api"]
        );
    }

    #[test]
    fn files_that_do_not_load_are_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "").unwrap();
        let settings = TlsConfig {
            cert_file: cert.display().to_string(),
            key_file: key.display().to_string(),
            ..TlsConfig::default()
        };
        let error = format!("{:#}", ServerTls::load(&settings).unwrap_err());
        assert!(error.contains("tls.cert_file"), "{error}");

        let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(&cert, pair.cert.pem()).unwrap();
        let error = format!("{:#}", ServerTls::load(&settings).unwrap_err());
        assert!(error.contains("tls.key_file"), "{error}");

        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&key, other.serialize_pem()).unwrap();
        let error = format!("{:#}", ServerTls::load(&settings).unwrap_err());
        assert!(
            error.contains("is not the key of the certificate"),
            "{error}"
        );

        std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
        ServerTls::load(&settings).unwrap();
    }
}
