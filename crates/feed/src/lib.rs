//! A durable event feed that loses nothing.
//!
//! Writers commit an event to storage (which assigns its sequence in commit order) and
//! then [`LiveFeed::publish`] it, in sequence order. A [`Subscription`] subscribes to the
//! live feed *before* it reads storage, replays every stored event after its cursor, then
//! follows the live feed, skipping what the replay already delivered. When it falls so
//! far behind that the live feed drops events for it, it goes back to storage and catches
//! up. So a subscriber sees every matching event after its cursor exactly once, in order,
//! whatever is committed during the hand-over, and a slow subscriber never slows writers.
//!
//! A feed may have more than one publisher: a local writer, and the follower that
//! publishes what other processes sharing the database committed. Their events can reach
//! the live feed out of order. Sequences are dense (the store's sequencer hands out the
//! next number inside the committing transaction), so an event that skips past the
//! cursor proves that everything in between is committed: the subscription reads the gap
//! from storage before delivering it, and later drops the stragglers as already seen.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast::{self, error::RecvError};

/// An event with a durable sequence.
pub trait Sequenced {
    /// Strictly increasing in commit order.
    fn sequence(&self) -> u64;
}

/// Where a subscription replays committed events from.
#[async_trait]
pub trait ReplaySource<E>: Send + Sync {
    /// Up to `limit` events with a sequence greater than `after`, oldest first. A source
    /// may leave out events its subscriber would not match anyway.
    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<E>, String>;
}

/// The in-memory side of a feed: fans committed events out to subscribers.
#[derive(Debug)]
pub struct LiveFeed<E> {
    sender: broadcast::Sender<Arc<E>>,
    head: AtomicU64,
}

impl<E: Sequenced + Send + Sync + 'static> LiveFeed<E> {
    /// A feed whose subscribers may fall `capacity` events behind before catching up
    /// from storage; `head` is the sequence of the last committed event.
    pub fn new(capacity: usize, head: u64) -> Self {
        let (sender, _) = broadcast::channel(capacity);
        Self {
            sender,
            head: AtomicU64::new(head),
        }
    }

    /// Publishes a committed event. Publishing in sequence order is cheapest for
    /// subscribers; an event published after a later one costs each subscriber a read
    /// of the gap from storage, never a loss.
    pub fn publish(&self, event: Arc<E>) {
        self.head.fetch_max(event.sequence(), Ordering::SeqCst);
        // No subscribers is normal.
        let _ = self.sender.send(event);
    }

    /// The sequence of the last published event.
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::SeqCst)
    }

    /// Moves the head forward without an event (after reloading state from storage).
    pub fn set_head(&self, head: u64) {
        self.head.fetch_max(head, Ordering::SeqCst);
    }

    /// A subscription delivering matching events after `cursor`. Call it while no event
    /// is half-published (under the writers' lock) when `cursor` is the current head.
    pub fn subscribe(
        &self,
        source: Arc<dyn ReplaySource<E>>,
        cursor: u64,
        replay_first: bool,
        matches: impl Fn(&E) -> bool + Send + Sync + 'static,
    ) -> Subscription<E> {
        Subscription {
            source,
            live: self.sender.subscribe(),
            cursor,
            pending: VecDeque::new(),
            catching_up: replay_first,
            matches: Box::new(matches),
        }
    }

    /// How many subscriptions are open.
    pub fn subscriber_count(&self) -> usize {
        self.sender.receiver_count()
    }
}

const REPLAY_BATCH: usize = 500;

type Matcher<E> = Box<dyn Fn(&E) -> bool + Send + Sync>;

/// One subscriber's position in a feed. Dropping it unsubscribes.
pub struct Subscription<E> {
    source: Arc<dyn ReplaySource<E>>,
    live: broadcast::Receiver<Arc<E>>,
    /// The sequence of the last event delivered or passed over.
    cursor: u64,
    pending: VecDeque<Arc<E>>,
    catching_up: bool,
    matches: Matcher<E>,
}

impl<E> std::fmt::Debug for Subscription<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("cursor", &self.cursor)
            .field("catching_up", &self.catching_up)
            .finish_non_exhaustive()
    }
}

impl<E: Sequenced + Send + Sync + 'static> Subscription<E> {
    /// The next matching event; `None` when the feed is gone; an error when storage
    /// failed during a replay (the subscriber should reconnect from its last sequence).
    pub async fn next(&mut self) -> Result<Option<Arc<E>>, String> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            if self.catching_up {
                self.replay().await?;
                continue;
            }
            match self.live.recv().await {
                Ok(event) => {
                    if event.sequence() <= self.cursor {
                        continue;
                    }
                    if event.sequence() > self.cursor + 1 {
                        self.fill_gap_before(event).await?;
                        continue;
                    }
                    self.cursor = event.sequence();
                    if (self.matches)(&event) {
                        return Ok(Some(event));
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(
                        missed,
                        cursor = self.cursor,
                        "subscriber fell behind the live feed; catching up from storage"
                    );
                    self.catching_up = true;
                }
                Err(RecvError::Closed) => return Ok(None),
            }
        }
    }

    /// The sequence of the last event delivered or passed over.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Queues the stored events between the cursor and `event` (committed, since a later
    /// sequence was handed out), then `event` itself.
    async fn fill_gap_before(&mut self, event: Arc<E>) -> Result<(), String> {
        let until = event.sequence();
        'read: loop {
            let batch = self.source.events_after(self.cursor, REPLAY_BATCH).await?;
            let complete = batch.len() < REPLAY_BATCH;
            for stored in batch {
                if stored.sequence() >= until {
                    break 'read;
                }
                self.cursor = stored.sequence();
                if (self.matches)(&stored) {
                    self.pending.push_back(Arc::new(stored));
                }
            }
            if complete {
                break;
            }
        }
        self.cursor = until;
        if (self.matches)(&event) {
            self.pending.push_back(event);
        }
        Ok(())
    }

    async fn replay(&mut self) -> Result<(), String> {
        let batch = self.source.events_after(self.cursor, REPLAY_BATCH).await?;
        if batch.len() < REPLAY_BATCH {
            // Everything committed before this read is queued now; later events are on
            // the live feed, which this subscription joined before its first replay.
            self.catching_up = false;
        }
        for event in batch {
            self.cursor = event.sequence();
            if (self.matches)(&event) {
                self.pending.push_back(Arc::new(event));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

/// What a follower learns of an event it reads back from storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Followed {
    /// Already applied (at or below the cursor).
    Seen,
    /// Committed and applied by this process; only the cursor moves.
    Local,
    /// Committed by another process sharing the database: apply it.
    Remote,
}

/// A process's position in a feed it shares with other processes.
///
/// Each process serves reads from its own cache, so it reads back every event committed
/// after its cursor and applies those it did not commit itself. Call [`Self::classify`]
/// and [`Self::record_local`] under the lock the process's writers commit under, so a
/// local commit is either recorded or not yet made when its event is read back.
#[derive(Debug, Default)]
pub struct FollowCursor {
    /// Whether anything follows (a process on a shared database); until then local
    /// sequences are not recorded, as nothing would ever remove them.
    enabled: bool,
    cursor: u64,
    /// Sequences committed here and not yet passed by the cursor.
    local: std::collections::BTreeSet<u64>,
}

impl FollowCursor {
    /// A cursor after `sequence` (the head of the state a process loaded).
    pub fn starting_after(sequence: u64) -> Self {
        Self {
            cursor: sequence,
            ..Self::default()
        }
    }

    /// Starts following: from now on, local commits are recorded.
    pub fn enable(&mut self) {
        self.enabled = true;
    }

    /// The sequence of the last event read back.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Continues after `cursor` (state loaded whole from storage includes everything up
    /// to it).
    pub fn restart_at(&mut self, cursor: u64) {
        self.cursor = cursor;
        self.local.clear();
    }

    /// Notes an event this process committed and applied.
    pub fn record_local(&mut self, sequence: u64) {
        if self.enabled && sequence > self.cursor {
            self.local.insert(sequence);
        }
    }

    /// What to do with an event read back from storage; [`Self::pass`] it once done.
    pub fn classify(&self, sequence: u64) -> Followed {
        if sequence <= self.cursor {
            Followed::Seen
        } else if self.local.contains(&sequence) {
            Followed::Local
        } else {
            Followed::Remote
        }
    }

    /// Moves the cursor past an event that is applied (or was applied here already).
    pub fn pass(&mut self, sequence: u64) {
        if sequence > self.cursor {
            self.cursor = sequence;
            // Whatever lies at or below the cursor now is settled.
            self.local = self.local.split_off(&(sequence + 1));
        }
    }
}
