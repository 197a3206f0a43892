//! A subscription to the registry's change feed that loses nothing: it replays stored
//! events after the client's cursor, then follows the live feed, and whenever it falls
//! too far behind the live feed it catches up from storage again.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use crate::error::RegistryError;
use crate::event::PromptEvent;
use crate::model::PromptVersionView;
use crate::store::PromptStore;

const REPLAY_BATCH: usize = 500;

/// One item of a watch stream.
#[derive(Debug, Clone)]
pub enum WatchItem {
    /// A committed change.
    Event(Arc<PromptEvent>),
    /// One version of the initial snapshot, consistent with `sequence`.
    Snapshot {
        /// The sequence the snapshot is consistent with.
        sequence: u64,
        /// The version, with its labels and activity.
        version: PromptVersionView,
    },
    /// The end of the initial snapshot.
    SnapshotEnd {
        /// The sequence the snapshot is consistent with.
        sequence: u64,
    },
}

/// A live subscription. Dropping it unsubscribes.
pub struct WatchSubscription {
    store: Arc<dyn PromptStore>,
    live: broadcast::Receiver<Arc<PromptEvent>>,
    prompt_name: Option<String>,
    /// The sequence of the last event delivered (or skipped as not matching).
    cursor: u64,
    pending: VecDeque<WatchItem>,
    catching_up: bool,
}

impl std::fmt::Debug for WatchSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchSubscription")
            .field("prompt_name", &self.prompt_name)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl WatchSubscription {
    pub(crate) fn new(
        store: Arc<dyn PromptStore>,
        live: broadcast::Receiver<Arc<PromptEvent>>,
        prompt_name: Option<String>,
        cursor: u64,
        snapshot: Option<Vec<PromptVersionView>>,
    ) -> Self {
        let mut pending = VecDeque::new();
        let catching_up = snapshot.is_none();
        if let Some(versions) = snapshot {
            pending.extend(versions.into_iter().map(|version| WatchItem::Snapshot {
                sequence: cursor,
                version,
            }));
            pending.push_back(WatchItem::SnapshotEnd { sequence: cursor });
        }
        Self {
            store,
            live,
            prompt_name,
            cursor,
            pending,
            catching_up,
        }
    }

    /// The next item; `None` when the registry is gone.
    pub async fn next(&mut self) -> Result<Option<WatchItem>, RegistryError> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Ok(Some(item));
            }
            if self.catching_up {
                self.replay_from_store().await?;
                continue;
            }
            match self.live.recv().await {
                Ok(event) => {
                    // Already delivered by a replay, or not for this watcher.
                    if event.sequence <= self.cursor {
                        continue;
                    }
                    self.cursor = event.sequence;
                    if self.matches(&event) {
                        return Ok(Some(WatchItem::Event(event)));
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(
                        missed,
                        cursor = self.cursor,
                        "prompt watcher fell behind; catching up from storage"
                    );
                    self.catching_up = true;
                }
                Err(RecvError::Closed) => return Ok(None),
            }
        }
    }

    async fn replay_from_store(&mut self) -> Result<(), RegistryError> {
        let batch = self
            .store
            .prompt_events_after(self.cursor, self.prompt_name.as_deref(), REPLAY_BATCH)
            .await
            .map_err(|err| RegistryError::Storage(err.to_string()))?;
        if batch.len() < REPLAY_BATCH {
            // Everything committed before this read is now queued; newer events are on
            // the live feed, which was subscribed before the first replay.
            self.catching_up = false;
        }
        for event in batch {
            self.cursor = event.sequence;
            self.pending.push_back(WatchItem::Event(Arc::new(event)));
        }
        Ok(())
    }

    fn matches(&self, event: &PromptEvent) -> bool {
        self.prompt_name
            .as_deref()
            .is_none_or(|name| name == event.prompt_name)
    }
}
