//! Where "now" comes from, so that time-driven behaviour (schedules, retention, leases,
//! timeouts) can be tested by moving a clock instead of waiting for one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// A source of wall-clock time that can also wait for a moment to come.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// Resolves once `now() >= deadline` (at once if it already is).
    fn sleep_until(&self, deadline: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

    /// Resolves once `duration` has passed on this clock; one that ends past the last
    /// representable time never resolves (instead of overflowing).
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let deadline = chrono::Duration::from_std(duration)
            .ok()
            .and_then(|duration| self.now().checked_add_signed(duration));
        match deadline {
            Some(deadline) => self.sleep_until(deadline),
            None => Box::pin(std::future::pending()),
        }
    }
}

/// The operating system's clock; what the server runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        // Sleep for the distance now; a wall clock stepped meanwhile (NTP) is caught by the
        // callers, which re-read `now()` when they wake.
        let wait = (deadline - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when told to: tests set it, advance it, and everything that
/// sleeps on it wakes when its deadline is passed, without waiting for real time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(watch::Sender::new(start)),
        }
    }

    /// A clock standing at the current wall-clock time, truncated to the microsecond
    /// that storage keeps.
    pub fn starting_now() -> Self {
        let now = Utc::now();
        Self::new(DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now))
    }

    /// Moves the clock forward by `by`, waking every sleeper whose deadline has come.
    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        self.now.send_modify(|now| *now += by);
    }

    /// Moves the clock to `to` (forward or back).
    pub fn set(&self, to: DateTime<Utc>) {
        self.now.send_replace(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let mut now = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock; if it is gone, nothing will ever
            // move time again, so never waking is the truthful answer.
            if now.wait_for(|now| *now >= deadline).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sleeper_wakes_when_the_clock_passes_its_deadline_and_not_before() {
        let clock = ManualClock::starting_now();
        let start = clock.now();
        let sleeper = tokio::spawn(clock.sleep(Duration::from_secs(60)));
        clock.advance(Duration::from_secs(59));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "woke a second early");
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("the sleeper wakes once its deadline has come")
            .unwrap();
        assert_eq!(clock.now() - start, chrono::Duration::seconds(60));
    }

    #[tokio::test]
    async fn a_sleep_past_the_end_of_time_waits_instead_of_overflowing() {
        let clock = ManualClock::starting_now();
        let forever = tokio::spawn(clock.sleep(Duration::MAX));
        clock.advance(Duration::from_secs(1_000_000_000));
        tokio::task::yield_now().await;
        assert!(!forever.is_finished());
        forever.abort();
    }

    #[tokio::test]
    async fn a_deadline_already_past_resolves_at_once() {
        let clock = ManualClock::starting_now();
        let past = clock.now() - chrono::Duration::seconds(1);
        tokio::time::timeout(Duration::from_secs(5), clock.sleep_until(past))
            .await
            .expect("no wait for a deadline in the past");
    }
}
