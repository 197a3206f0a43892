//! The real `llmops` binary as a separate process: for what only a process shows (its
//! memory, signals, a kill).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::Channel;

/// A running `llmops serve`; killed when dropped.
pub struct ServerProcess {
    child: Child,
    pub address: SocketAddr,
    log: std::path::PathBuf,
}

/// A loopback address nothing listens on, for a server process to bind later.
///
/// The port is drawn below the kernel's ephemeral range (32768-60999 by default):
/// a port the kernel handed out with `bind(0)` could be handed out again, as the local
/// end of any outgoing connection (to PostgreSQL, to another replica), before the
/// server binds it, and that server would then never start.
pub fn free_address() -> SocketAddr {
    let mut rng = fastrand::Rng::new();
    loop {
        let port = rng.u16(20_000..32_000);
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return listener.local_addr().unwrap();
        }
    }
}

impl ServerProcess {
    /// Starts the binary on `data_dir` with the extra `LLMOPS_*` variables in `env`.
    pub fn spawn(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn_on(free_address(), data_dir, env)
    }

    /// Starts the binary listening on `address` (a restarted replica keeps its address).
    /// Its log goes to `server.log` in `data_dir`, for a failing test to show.
    pub fn spawn_on(address: SocketAddr, data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn_serving(address, free_address(), data_dir, env)
    }

    /// Starts the binary listening on `address`, with its metrics endpoint on `metrics`.
    pub fn spawn_serving(
        address: SocketAddr,
        metrics: SocketAddr,
        data_dir: &Path,
        env: &[(&str, &str)],
    ) -> Self {
        std::fs::create_dir_all(data_dir).expect("the data directory can be created");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("server.log"))
            .expect("the server log can be created");
        let child = Command::new(env!("CARGO_BIN_EXE_llmops"))
            .args([
                "serve",
                "--listen",
                &address.to_string(),
                "--metrics-listen",
                &metrics.to_string(),
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the llmops binary starts");
        Self {
            child,
            address,
            log: data_dir.join("server.log"),
        }
    }

    /// A channel once the server answers health checks as SERVING. A process that
    /// exits first, or is not SERVING within a minute, fails the test with its log.
    pub async fn channel(&self) -> Channel {
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::health_client::HealthClient;
        use tonic_health::pb::HealthCheckRequest;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if self.has_exited() {
                panic!(
                    "the server on {} exited before SERVING; its log ends:\n{}",
                    self.address,
                    self.log_tail()
                );
            }
            if let Ok(channel) = Channel::from_shared(format!("http://{}", self.address))
                .unwrap()
                .connect()
                .await
            {
                let serving = HealthClient::new(channel.clone())
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32);
                if serving {
                    return channel;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "the server on {} never became SERVING; its log ends:\n{}",
            self.address,
            self.log_tail()
        );
    }

    /// Whether the process has exited (a zombie not yet reaped), read from /proc so that
    /// `&self` suffices.
    fn has_exited(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .map(|stat| {
                // The state follows the parenthesised command name.
                stat.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            })
            .unwrap_or(true)
    }

    /// The last lines of the server's log.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The process's resident memory now, in bytes (VmRSS of /proc/<pid>/status).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server process is alive");
        let line = status
            .lines()
            .find(|line| line.starts_with("VmRSS:"))
            .expect("VmRSS is reported");
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("VmRSS is a number of kB");
        kib * 1024
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL (no shutdown path runs) and waits for it.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("the killed process is reaped");
    }

    /// Sends SIGTERM, as an orchestrator does to stop a pod.
    pub fn terminate(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(sent.success(), "SIGTERM was not delivered");
    }

    /// The exit status once the process has exited, or `None` if it is still running
    /// after `deadline`.
    pub async fn wait_for_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("the process can be waited on") {
                return Some(status);
            }
            if start.elapsed() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits, polling every 10 ms, until `reached` holds or 30 s have passed (load tests
/// then check what they reached; a slow machine only takes longer).
pub async fn wait_until(mut reached: impl FnMut() -> bool) {
    for _ in 0..3000 {
        if reached() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Creates and starts experiment `id`: variants `control` and `treatment`, one primary
/// MEAN metric `quality` (higher is better).
pub async fn start_quality_experiment(channel: Channel, id: &str) {
    use llmops::pb;
    let mut client = llmops::pb::experiment_service_client::ExperimentServiceClient::new(channel);
    client
        .create_experiment(pb::CreateExperimentRequest {
            experiment: Some(pb::Experiment {
                id: id.into(),
                name: id.into(),
                variants: ["control", "treatment"]
                    .map(|id| pb::Variant {
                        id: id.into(),
                        ..Default::default()
                    })
                    .to_vec(),
                metrics: vec![pb::MetricDefinition {
                    name: "quality".into(),
                    kind: pb::MetricKind::Mean.into(),
                    direction: pb::MetricDirection::HigherIsBetter.into(),
                    role: pb::MetricRole::Primary.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    client
        .start_experiment(pb::StartExperimentRequest {
            experiment_id: id.into(),
        })
        .await
        .unwrap();
}
