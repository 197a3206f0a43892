//! Several real `llmops serve` processes sharing one fresh PostgreSQL schema, as an
//! operator runs replicas behind a load balancer; any of them can be killed (SIGKILL)
//! and started again on the same address.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tonic::transport::Channel;

use super::backend::{Backend, TestDatabase};
use super::process::{free_address, ServerProcess};

/// One replica's fixed place: its address and data directory (for its log).
struct Slot {
    address: SocketAddr,
    metrics: SocketAddr,
    data_dir: PathBuf,
    process: Option<ServerProcess>,
}

/// Replicas of one deployment.
pub struct Cluster {
    database: TestDatabase,
    env: Vec<(String, String)>,
    slots: Vec<Slot>,
}

impl Cluster {
    /// Starts `replicas` processes on a fresh PostgreSQL schema, each with the extra
    /// `LLMOPS_*` variables in `env`, and waits until every one is SERVING.
    pub async fn start(replicas: usize, env: &[(&str, &str)]) -> Self {
        let database = TestDatabase::new(Backend::Postgres).await;
        let env = env
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        let mut cluster = Self {
            database,
            env,
            slots: Vec::new(),
        };
        for index in 0..replicas {
            let data_dir = cluster.database.data_dir().join(format!("replica-{index}"));
            std::fs::create_dir_all(&data_dir).unwrap();
            cluster.slots.push(Slot {
                address: free_address(),
                metrics: free_address(),
                data_dir,
                process: None,
            });
            cluster.restart(index);
        }
        for index in 0..replicas {
            cluster.channel(index).await;
        }
        cluster
    }

    /// A channel to replica `index` once it is SERVING.
    pub async fn channel(&self, index: usize) -> Channel {
        self.slots[index]
            .process
            .as_ref()
            .expect("the replica is running")
            .channel()
            .await
    }

    /// Kills replica `index` with SIGKILL: nothing of its shutdown path runs.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut process) = self.slots[index].process.take() {
            process.kill();
        }
    }

    /// Stops replica `index` with SIGTERM, as an orchestrator does, and waits for it to
    /// exit.
    pub async fn terminate(&mut self, index: usize) {
        if let Some(mut process) = self.slots[index].process.take() {
            process.terminate();
            let exited = process.wait_for_exit(Duration::from_secs(30)).await;
            assert!(exited.is_some(), "replica {index} did not stop");
        }
    }

    /// Freezes replica `index` (SIGSTOP), as a long pause or a partition would: it
    /// neither serves, nor follows, nor heartbeats until [`Cluster::resume`].
    pub fn pause(&self, index: usize) {
        self.signal(index, "-STOP");
    }

    /// Lets a paused replica go on (SIGCONT).
    pub fn resume(&self, index: usize) {
        self.signal(index, "-CONT");
    }

    fn signal(&self, index: usize, signal: &str) {
        let pid = self.slots[index]
            .process
            .as_ref()
            .expect("the replica is running")
            .pid();
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Starts replica `index` (again) on its address.
    pub fn restart(&mut self, index: usize) {
        let url = self.database.url();
        let slot = &mut self.slots[index];
        let mut env: Vec<(&str, &str)> = vec![("LLMOPS_DATABASE_URL", url.as_str())];
        env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        slot.process = Some(ServerProcess::spawn_serving(
            slot.address,
            slot.metrics,
            &slot.data_dir,
            &env,
        ));
    }

    /// The value of counter `name` (summed over its labels) on replica `index`'s
    /// metrics endpoint; 0 before it is first counted.
    pub async fn counter(&self, index: usize, name: &str) -> f64 {
        let text = super::metrics_text(self.slots[index].metrics).await;
        text.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with([' ', '{']))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The shared database (to read what the replicas stored).
    pub fn database(&self) -> &TestDatabase {
        &self.database
    }

    /// The index of the replica serving on `address`.
    pub fn index_of(&self, address: &str) -> Option<usize> {
        self.slots
            .iter()
            .position(|slot| slot.address.to_string() == address)
    }

    /// Whether replica `index` is running.
    pub fn is_running(&self, index: usize) -> bool {
        self.slots[index].process.is_some()
    }

    /// Every replica's log, for a failing assertion's message.
    pub fn logs(&self) -> String {
        self.slots
            .iter()
            .enumerate()
            .map(|(index, slot)| {
                let log =
                    std::fs::read_to_string(slot.data_dir.join("server.log")).unwrap_or_default();
                format!("--- replica {index} ---\n{log}")
            })
            .collect()
    }
}
