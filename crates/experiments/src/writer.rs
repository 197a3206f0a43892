//! The group-commit writer: exposures and metric records from many concurrent requests
//! queue here; one transaction commits whatever has queued, and each caller is answered
//! after the batch holding its writes is durable. Under load this turns thousands of
//! fsyncs into a few, without ever acknowledging a write that is not on disk.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Notify};

use crate::error::ExperimentError;
use crate::model::{Exposure, MetricRecord};
use crate::store::{Committed, ExperimentStore};

/// The most writes one transaction carries.
const MAX_BATCH_WRITES: usize = 4096;
/// Requests that may wait for the writer before callers queue on the channel.
const QUEUE_DEPTH: usize = 16 * 1024;

/// One request's writes.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    pub(crate) exposures: Vec<Exposure>,
    pub(crate) records: Vec<MetricRecord>,
}

impl Writes {
    fn len(&self) -> usize {
        self.exposures.len() + self.records.len()
    }
}

struct Pending {
    writes: Writes,
    reply: oneshot::Sender<Result<Committed, ExperimentError>>,
}

/// Called with each committed batch (before any caller is answered), to fold the new
/// writes into the in-memory state.
pub(crate) type OnCommit = Box<dyn Fn(&Writes, &Committed) + Send + Sync>;

/// The queue in front of the writer task.
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Pending>,
    stop: Arc<Notify>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl GroupCommit {
    /// Starts the writer task.
    pub(crate) fn start(store: Arc<dyn ExperimentStore>, on_commit: OnCommit) -> Self {
        let (queue, requests) = mpsc::channel(QUEUE_DEPTH);
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn(run(store, requests, on_commit, stop.clone()));
        Self {
            queue,
            stop,
            task: std::sync::Mutex::new(Some(task)),
        }
    }

    /// Queues `writes` and waits until they are durable (or the commit failed).
    pub(crate) async fn commit(&self, writes: Writes) -> Result<Committed, ExperimentError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { writes, reply })
            .await
            .map_err(|_| shutting_down())?;
        answer.await.map_err(|_| shutting_down())?
    }

    /// Commits what is queued, refuses anything new, and waits for the writer to end.
    pub(crate) async fn close(&self) {
        self.stop.notify_one();
        let task = self.task.lock().map(|mut t| t.take()).unwrap_or(None);
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

fn shutting_down() -> ExperimentError {
    ExperimentError::Storage("the server is shutting down; the write was not made".to_owned())
}

async fn run(
    store: Arc<dyn ExperimentStore>,
    mut requests: mpsc::Receiver<Pending>,
    on_commit: OnCommit,
    stop: Arc<Notify>,
) {
    loop {
        let first = tokio::select! {
            biased;
            // Stop first: under steady load a request is always ready.
            () = stop.notified() => {
                // Refuse new requests, then commit everything already queued.
                requests.close();
                requests.recv().await
            }
            request = requests.recv() => request,
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        let mut size = batch[0].writes.len();
        while size < MAX_BATCH_WRITES {
            match requests.try_recv() {
                Ok(next) => {
                    size += next.writes.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        commit_batch(store.as_ref(), batch, &on_commit).await;
    }
}

async fn commit_batch(store: &dyn ExperimentStore, batch: Vec<Pending>, on_commit: &OnCommit) {
    let mut all = Writes::default();
    let mut shapes = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for pending in batch {
        shapes.push((pending.writes.exposures.len(), pending.writes.records.len()));
        all.exposures.extend(pending.writes.exposures);
        all.records.extend(pending.writes.records);
        replies.push(pending.reply);
    }
    metrics::histogram!("llmops_experiment_commit_batch_writes").record(all.len() as f64);
    let started = std::time::Instant::now();
    let result = store
        .commit_writes(&all.exposures, &all.records)
        .await
        .map_err(ExperimentError::from)
        .and_then(|committed| {
            let complete = committed.exposures.len() == all.exposures.len()
                && committed.records.len() == all.records.len();
            complete.then_some(committed).ok_or_else(|| {
                ExperimentError::Storage(
                    "the store answered for the wrong number of writes".to_owned(),
                )
            })
        });
    metrics::histogram!("llmops_experiment_commit_seconds").record(started.elapsed().as_secs_f64());
    match result {
        Ok(committed) => {
            on_commit(&all, &committed);
            let (mut e, mut r) = (0, 0);
            for ((exposures, records), reply) in shapes.into_iter().zip(replies) {
                let part = Committed {
                    exposures: committed.exposures[e..e + exposures].to_vec(),
                    records: committed.records[r..r + records].to_vec(),
                };
                e += exposures;
                r += records;
                let _ = reply.send(Ok(part));
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, writes = all.len(), "group commit failed");
            for reply in replies {
                let _ = reply.send(Err(ExperimentError::Storage(err.to_string())));
            }
        }
    }
}
