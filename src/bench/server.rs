//! A server started for the benchmark: this executable's `serve` on a free port with a
//! temporary data directory, killed when the guard is dropped (also on error and panic).

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tempfile::TempDir;
use tonic::transport::Endpoint;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// How long the server may take to report SERVING.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often readiness is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How much of the server's log an error quotes.
const LOG_TAIL_BYTES: usize = 4096;

/// A running child server. Dropping it kills the process and removes its data.
#[derive(Debug)]
pub(crate) struct SpawnedServer {
    child: Child,
    url: String,
    log_path: PathBuf,
    // Dropped after `Drop::drop` has stopped the process that uses it.
    _dir: TempDir,
}

impl SpawnedServer {
    /// Starts `<this executable> serve`, with `config` (TOML) as its configuration file
    /// when given, and waits until its health check says SERVING.
    pub(crate) async fn start(config: Option<&str>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("llmops-bench-")
            .tempdir()
            .context("creating a temporary directory for the server")?;
        let data_dir = dir.path().join("data");
        std::fs::create_dir(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let log_path = dir.path().join("server.log");
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let port = free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let exe = std::env::current_exe().context("finding the llmops executable")?;
        let mut command = Command::new(&exe);
        command.arg("serve");
        if let Some(config) = config {
            let path = dir.path().join("llmops.toml");
            std::fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
            command.arg("--config").arg(path);
        }
        let child = command
            .args(["--listen", &listen])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--metrics-listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("opening the server log")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} serve", exe.display()))?;
        let mut server = Self {
            child,
            url: format!("http://{listen}"),
            log_path,
            _dir: dir,
        };
        server.wait_until_serving().await?;
        Ok(server)
    }

    /// The server's gRPC URL, e.g. `http://127.0.0.1:40123`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The server's process id, for reading its memory from `/proc`.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_until_serving(&mut self) -> anyhow::Result<()> {
        let endpoint = Endpoint::from_shared(self.url.clone())?
            .connect_timeout(POLL_INTERVAL * 10)
            .timeout(POLL_INTERVAL * 10);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("checking on the server")? {
                bail!(
                    "the server exited during start-up ({status}); its log:\n{}",
                    self.log_tail()
                );
            }
            let problem = match health(&endpoint).await {
                Ok(ServingStatus::Serving) => return Ok(()),
                Ok(status) => format!("health status {}", status.as_str_name()),
                Err(problem) => problem,
            };
            if Instant::now() >= deadline {
                bail!(
                    "the server was not serving after {} ({problem}); its log:\n{}",
                    humantime::format_duration(STARTUP_TIMEOUT),
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The end of the server's log, for error messages.
    fn log_tail(&self) -> String {
        match std::fs::read(&self.log_path) {
            Ok(bytes) => {
                let tail = &bytes[bytes.len().saturating_sub(LOG_TAIL_BYTES)..];
                String::from_utf8_lossy(tail).into_owned()
            }
            Err(err) => format!("(cannot read {}: {err})", self.log_path.display()),
        }
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        // Fails only when the process has exited already; then there is nothing to stop.
        let _ = self.child.kill();
        // Reaps the process so that it does not linger as a zombie.
        let _ = self.child.wait();
    }
}

/// The overall health status, or why it could not be had.
async fn health(endpoint: &Endpoint) -> Result<ServingStatus, String> {
    let channel = endpoint.connect().await.map_err(|err| err.to_string())?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|status| status.to_string())?;
    Ok(response.into_inner().status())
}

/// A port that was free a moment ago: bound to port 0, then released.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
