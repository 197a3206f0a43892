//! The audit log: who called which changing RPC, on what, and how it ended.
//!
//! Entries are written by [`AuditLog`], a group-commit writer: concurrent calls share one
//! insert, and each waits until its entry is durable, so no audited call is answered
//! before its entry is stored.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use llmops_core::StoreError;
use tokio::sync::{mpsc, oneshot};

/// One audited call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// A UUIDv7: ids sort in the order entries were made.
    pub id: String,
    /// When the call was answered.
    pub time: DateTime<Utc>,
    /// The key's name, the certificate identity, or `anonymous`.
    pub actor: String,
    /// The key's id; empty for other callers.
    pub api_key_id: String,
    /// `llmops.v1.PromptService/SetPromptLabel`.
    pub method: String,
    /// The identifying fields of the request, joined by `/`.
    pub resource: String,
    /// The gRPC code name of the answer.
    pub code: String,
    /// The call's request id.
    pub request_id: String,
}

/// Which entries to list: every set filter must hold. Newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Exactly this actor.
    pub actor: Option<String>,
    /// Exactly this full method name.
    pub method: Option<String>,
    /// This resource or one under it (`greet` matches `greet/1.0.0`).
    pub resource: Option<String>,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
    /// Only entries older than this id (the previous page's last).
    pub before_id: Option<String>,
    /// At most this many.
    pub limit: usize,
}

/// Durable storage of the audit log.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Stores `events` in one transaction.
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError>;

    /// The entries `query` selects, newest first.
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError>;

    /// Deletes the entries made before `before`; how many.
    async fn prune_audit(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Entries waiting for the writer at most; a call past it waits for room.
const QUEUE: usize = 4096;
/// Entries per insert at most.
const BATCH: usize = 512;

type Pending = (AuditEvent, oneshot::Sender<Result<(), StoreError>>);

/// The audit log's writer.
#[derive(Debug, Clone)]
pub struct AuditLog {
    pending: mpsc::Sender<Pending>,
}

impl AuditLog {
    /// A writer over `store`; it runs until every clone of the log is dropped.
    pub fn start(store: Arc<dyn AuditStore>) -> Self {
        let (pending, mut queue) = mpsc::channel::<Pending>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while queue.recv_many(&mut batch, BATCH).await > 0 {
                let (events, waiters): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
                let stored = store.append_audit(&events).await;
                for waiter in waiters {
                    let _ = waiter.send(stored.clone());
                }
            }
        });
        Self { pending }
    }

    /// Stores `event`; returns once it is durable.
    pub async fn record(&self, event: AuditEvent) -> Result<(), StoreError> {
        let (done, stored) = oneshot::channel();
        let closed = || StoreError::Unavailable("the audit log is closed".to_owned());
        self.pending
            .send((event, done))
            .await
            .map_err(|_| closed())?;
        stored.await.map_err(|_| closed())?
    }
}
