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

/// This process's place in the shared stream of write batches; the writer holds it
/// across each commit (see `ExperimentService::follow`).
pub(crate) type FollowLock = Arc<tokio::sync::Mutex<llmops_feed::FollowCursor>>;

/// Folds the batches other processes committed, through a sequence.
#[async_trait::async_trait]
pub(crate) trait CatchUp: Send + Sync {
    /// Folds every batch after `cursor` through `through` (all of them other processes'),
    /// moving the cursor; returns how many writes it read.
    async fn catch_up(
        &self,
        cursor: &mut llmops_feed::FollowCursor,
        through: u64,
    ) -> Result<usize, ExperimentError>;
}

/// The queue in front of the writer task.
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Pending>,
    stop: Arc<Notify>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl GroupCommit {
    /// Starts the writer task.
    pub(crate) fn start(
        store: Arc<dyn ExperimentStore>,
        on_commit: OnCommit,
        follow: FollowLock,
        catch_up: Arc<dyn CatchUp>,
    ) -> Self {
        let (queue, requests) = mpsc::channel(QUEUE_DEPTH);
        let stop = Arc::new(Notify::new());
        let folding = Folding {
            on_commit,
            follow,
            catch_up,
        };
        let task = tokio::spawn(run(store, requests, folding, stop.clone()));
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

/// How the writer folds what it committed: in the shared write stream's order.
struct Folding {
    on_commit: OnCommit,
    follow: FollowLock,
    catch_up: Arc<dyn CatchUp>,
}

async fn run(
    store: Arc<dyn ExperimentStore>,
    mut requests: mpsc::Receiver<Pending>,
    folding: Folding,
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
        commit_batch(store.as_ref(), batch, &folding).await;
    }
}

async fn commit_batch(store: &dyn ExperimentStore, batch: Vec<Pending>, folding: &Folding) {
    let mut all = Writes::default();
    let mut parts = Vec::with_capacity(batch.len());
    for pending in batch {
        parts.push((
            (pending.writes.exposures.len(), pending.writes.records.len()),
            pending.reply,
        ));
        all.exposures.extend(pending.writes.exposures);
        all.records.extend(pending.writes.records);
    }
    loop {
        metrics::histogram!("llmops_experiment_commit_batch_writes").record(all.len() as f64);
        let started = std::time::Instant::now();
        // Held from the commit until the batch is folded and noted as this process's,
        // so a follower of the shared write stream never folds it a second time.
        let mut cursor = folding.follow.lock().await;
        let result = store
            .commit_writes(&all.exposures, &all.records)
            .await
            .map_err(ExperimentError::from)
            .and_then(|committed| {
                let complete = !committed.closed.is_empty()
                    || (committed.exposures.len() == all.exposures.len()
                        && committed.records.len() == all.records.len());
                complete.then_some(committed).ok_or_else(|| {
                    ExperimentError::Storage(
                        "the store answered for the wrong number of writes".to_owned(),
                    )
                })
            });
        metrics::histogram!("llmops_experiment_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(committed) if committed.closed.is_empty() => {
                // Other processes' batches before this one are folded first, so every
                // process folds every write in the one stream order (and computes the
                // same floating-point results). Should that read fail, this batch is
                // left to the follower too, which folds it in order later.
                let in_order = match committed.sequence {
                    0 => true,
                    sequence => match folding.catch_up.catch_up(&mut cursor, sequence - 1).await {
                        Ok(_) => true,
                        Err(err) => {
                            tracing::warn!(error = %err, "reading other replicas' experiment writes failed; this batch is folded when they can be read");
                            false
                        }
                    },
                };
                if in_order {
                    (folding.on_commit)(&all, &committed);
                    cursor.pass(committed.sequence);
                }
                drop(cursor);
                let (mut e, mut r) = (0, 0);
                for ((exposures, records), reply) in parts {
                    let part = Committed {
                        sequence: committed.sequence,
                        closed: Vec::new(),
                        exposures: committed.exposures[e..e + exposures].to_vec(),
                        records: committed.records[r..r + records].to_vec(),
                    };
                    e += exposures;
                    r += records;
                    let _ = reply.send(Ok(part));
                }
                return;
            }
            Ok(committed) => {
                drop(cursor);
                // Another process completed (or stopped) an experiment this batch writes
                // to after the calls were checked: those calls are refused whole and the
                // others committed without them.
                let (kept, kept_parts) = refuse_closed(all, parts, &committed.closed);
                if kept_parts.is_empty() {
                    return;
                }
                all = kept;
                parts = kept_parts;
            }
            Err(err) => {
                tracing::warn!(error = %err, writes = all.len(), "group commit failed");
                for (_, reply) in parts {
                    let _ = reply.send(Err(ExperimentError::Storage(err.to_string())));
                }
                return;
            }
        }
    }
}

type Part = (
    (usize, usize),
    oneshot::Sender<Result<Committed, ExperimentError>>,
);

/// Answers the calls writing to a `closed` experiment, and returns the writes and calls
/// of the others.
fn refuse_closed(all: Writes, parts: Vec<Part>, closed: &[String]) -> (Writes, Vec<Part>) {
    let mut exposures = all.exposures.into_iter();
    let mut records = all.records.into_iter();
    let mut kept = Writes::default();
    let mut kept_parts = Vec::new();
    for ((exposure_count, record_count), reply) in parts {
        let own_exposures: Vec<Exposure> = exposures.by_ref().take(exposure_count).collect();
        let own_records: Vec<MetricRecord> = records.by_ref().take(record_count).collect();
        let hit = own_exposures
            .iter()
            .map(|e| &e.experiment_id)
            .chain(own_records.iter().map(|r| &r.experiment_id))
            .find(|id| closed.contains(id));
        match hit {
            Some(id) => {
                let _ = reply.send(Err(ExperimentError::FailedPrecondition(format!(
                    "experiment {id} is no longer running (another replica completed or stopped it); nothing of this call was stored"
                ))));
            }
            None => {
                kept.exposures.extend(own_exposures);
                kept.records.extend(own_records);
                kept_parts.push(((exposure_count, record_count), reply));
            }
        }
    }
    (kept, kept_parts)
}
