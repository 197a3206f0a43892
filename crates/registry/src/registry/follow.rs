//! Following what other processes sharing the database commit.
//!
//! Every replica serves reads from its own cache, so a change committed by another
//! replica must reach it: [`Registry::follow`] reads the prompt events committed after
//! the last one it saw, reloads each changed prompt from storage and publishes the event
//! to this replica's watchers. The server calls it when the database signals a commit
//! and on a fallback poll, so a lost signal delays a change, never loses it.

use std::sync::{Arc, MutexGuard, PoisonError};

use llmops_feed::{FollowCursor, Followed};

use super::{state, Registry};
use crate::error::RegistryError;
use crate::event::PromptEvent;

/// How many events one read of the feed takes.
const FOLLOW_BATCH: usize = 500;

impl Registry {
    /// Applies every prompt change committed since the last call, by any process; returns
    /// how many events it read. Calls are serialised; each reads until the feed's end.
    pub async fn follow(&self) -> Result<usize, RegistryError> {
        self.follower().enable();
        let mut read = 0;
        loop {
            let after = self.follower().cursor();
            let events = self
                .store
                .prompt_events_after(after, None, FOLLOW_BATCH)
                .await
                .map_err(RegistryError::from)?;
            let complete = events.len() < FOLLOW_BATCH;
            read += events.len();
            for event in events {
                self.apply_followed(event).await?;
            }
            if complete {
                return Ok(read);
            }
        }
    }

    async fn apply_followed(&self, event: PromptEvent) -> Result<(), RegistryError> {
        // Under the write lock, a local writer has both committed and recorded its
        // sequence, or not yet committed: the check below cannot race it.
        let _guard = self.write_lock.lock().await;
        let sequence = event.sequence;
        if self.follower().classify(sequence) != Followed::Remote {
            self.follower().pass(sequence);
            return Ok(());
        }
        // The newest stored state, not the event's: later changes of the same prompt
        // may be committed already, and the cache must never move back.
        let stored = self
            .store
            .load_prompt(&event.prompt_name)
            .await
            .map_err(RegistryError::from)?;
        let mut entries = state::build_entries(
            stored.versions,
            &stored.active,
            &stored.labels,
            &self.limits,
        )?;
        match entries.remove(&event.prompt_name) {
            Some(entry) => {
                self.prompts
                    .insert(event.prompt_name.clone(), Arc::new(entry));
            }
            None => {
                self.prompts.remove(&event.prompt_name);
            }
        }
        // Only now: a failed reload leaves the event to the next call.
        self.follower().pass(sequence);
        self.feed.publish(Arc::new(event));
        Ok(())
    }

    /// Records a sequence this replica committed, so following does not reload it.
    pub(super) fn record_local_commit(&self, sequence: u64) {
        self.follower().record_local(sequence);
    }
}

impl Registry {
    pub(super) fn follower(&self) -> MutexGuard<'_, FollowCursor> {
        // The state is a cursor and a set, consistent after any panic between statements.
        self.follower.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
