//! Watching the registry: an optional snapshot of the current state, then the change
//! feed (see `llmops-feed` for why it loses nothing).

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use llmops_feed::{ReplaySource, Sequenced, Subscription};

use crate::error::RegistryError;
use crate::event::PromptEvent;
use crate::model::PromptVersionView;
use crate::store::PromptStore;

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
        version: Box<PromptVersionView>,
    },
    /// The end of the initial snapshot.
    SnapshotEnd {
        /// The sequence the snapshot is consistent with.
        sequence: u64,
    },
}

impl Sequenced for PromptEvent {
    fn sequence(&self) -> u64 {
        self.sequence
    }
}

/// Replays stored prompt events, filtered by prompt name in storage.
pub(crate) struct PromptReplay {
    pub(crate) store: Arc<dyn PromptStore>,
    pub(crate) prompt_name: Option<String>,
}

#[async_trait]
impl ReplaySource<PromptEvent> for PromptReplay {
    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<PromptEvent>, String> {
        self.store
            .prompt_events_after(after, self.prompt_name.as_deref(), limit)
            .await
            .map_err(|err| err.to_string())
    }
}

/// A live subscription. Dropping it unsubscribes.
#[derive(Debug)]
pub struct WatchSubscription {
    snapshot: VecDeque<WatchItem>,
    events: Subscription<PromptEvent>,
}

impl WatchSubscription {
    pub(crate) fn new(
        events: Subscription<PromptEvent>,
        snapshot: Option<Vec<PromptVersionView>>,
    ) -> Self {
        let mut queue = VecDeque::new();
        if let Some(versions) = snapshot {
            let sequence = events.cursor();
            queue.extend(versions.into_iter().map(|version| WatchItem::Snapshot {
                sequence,
                version: Box::new(version),
            }));
            queue.push_back(WatchItem::SnapshotEnd { sequence });
        }
        Self {
            snapshot: queue,
            events,
        }
    }

    /// The next item; `None` when the registry is gone.
    pub async fn next(&mut self) -> Result<Option<WatchItem>, RegistryError> {
        if let Some(item) = self.snapshot.pop_front() {
            return Ok(Some(item));
        }
        match self.events.next().await {
            Ok(event) => Ok(event.map(WatchItem::Event)),
            Err(message) => Err(RegistryError::Storage(message)),
        }
    }
}
