use std::sync::Mutex;

use super::*;

#[derive(Debug, Clone, PartialEq)]
struct Event(u64, &'static str);

impl Sequenced for Event {
    fn sequence(&self) -> u64 {
        self.0
    }
}

#[derive(Default)]
struct Log(Mutex<Vec<Event>>);

#[async_trait]
impl ReplaySource<Event> for Log {
    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, String> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.0 > after)
            .take(limit)
            .cloned()
            .collect())
    }
}

/// Commits to the log, then publishes, as writers do.
fn commit(log: &Log, feed: &LiveFeed<Event>, tag: &'static str) -> u64 {
    let event = {
        let mut events = log.0.lock().unwrap();
        let event = Event(events.len() as u64 + 1, tag);
        events.push(event.clone());
        event
    };
    feed.publish(Arc::new(event.clone()));
    event.0
}

async fn collect(subscription: &mut Subscription<Event>, up_to: u64) -> Vec<u64> {
    let mut seen = Vec::new();
    while seen.last().is_none_or(|s| *s < up_to) {
        seen.push(subscription.next().await.unwrap().unwrap().0);
    }
    seen
}

#[tokio::test]
async fn replays_then_follows_live_without_gaps_or_duplicates() {
    let log = Arc::new(Log::default());
    let feed = LiveFeed::new(8, 0);
    for _ in 0..5 {
        commit(&log, &feed, "a");
    }
    let mut subscription = feed.subscribe(log.clone(), 2, true, |_| true);
    // Committed after subscribing but before the replay reads storage: in both places.
    commit(&log, &feed, "a");
    let head = commit(&log, &feed, "a");
    assert_eq!(collect(&mut subscription, head).await, [3, 4, 5, 6, 7]);
}

#[tokio::test]
async fn a_lagging_subscriber_catches_up_from_storage() {
    let log = Arc::new(Log::default());
    let feed = LiveFeed::new(4, 0);
    let mut subscription = feed.subscribe(log.clone(), 0, false, |_| true);
    let mut head = 0;
    for _ in 0..50 {
        head = commit(&log, &feed, "a");
    }
    assert_eq!(
        collect(&mut subscription, head).await,
        (1..=50).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn filters_apply_to_replayed_and_live_events() {
    let log = Arc::new(Log::default());
    let feed = LiveFeed::new(4, 0);
    for tag in ["x", "y", "x"] {
        commit(&log, &feed, tag);
    }
    let mut subscription = feed.subscribe(log.clone(), 0, true, |e: &Event| e.1 == "x");
    for tag in ["y", "x", "y"] {
        commit(&log, &feed, tag);
    }
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(subscription.next().await.unwrap().unwrap().0);
    }
    assert_eq!(seen, [1, 3, 5]);
}

/// Commits to the log without publishing (another process's write, not yet followed).
fn commit_elsewhere(log: &Log, tag: &'static str) -> Event {
    let mut events = log.0.lock().unwrap();
    let event = Event(events.len() as u64 + 1, tag);
    events.push(event.clone());
    event
}

#[tokio::test]
async fn an_event_published_out_of_order_is_neither_lost_nor_repeated() {
    let log = Arc::new(Log::default());
    let feed = LiveFeed::new(8, 0);
    let mut subscription = feed.subscribe(log.clone(), 0, false, |_| true);
    // 1 and 2 are committed by another process; the local writer publishes 3 first.
    let first = commit_elsewhere(&log, "a");
    let second = commit_elsewhere(&log, "a");
    let third = commit(&log, &feed, "a");
    feed.publish(Arc::new(first));
    feed.publish(Arc::new(second));
    let fourth = commit(&log, &feed, "a");
    assert_eq!(third, 3);
    assert_eq!(collect(&mut subscription, fourth).await, [1, 2, 3, 4]);
    assert_eq!(feed.head(), 4, "the head never moves back");
}

#[tokio::test]
async fn a_filtered_subscriber_reads_a_gap_without_overtaking_the_live_event() {
    let log = Arc::new(Log::default());
    let feed = LiveFeed::new(8, 0);
    let mut subscription = feed.subscribe(log.clone(), 0, false, |e: &Event| e.1 == "x");
    for tag in ["x", "y", "x"] {
        commit_elsewhere(&log, tag);
    }
    let published = commit(&log, &feed, "x");
    // Committed after the event that revealed the gap: it comes from the live feed.
    let later = commit(&log, &feed, "x");
    assert_eq!(published, 4);
    assert_eq!(collect(&mut subscription, later).await, [1, 3, 4, 5]);
}

#[tokio::test]
async fn dropping_a_subscription_unsubscribes() {
    let log = Arc::new(Log::default());
    let feed = LiveFeed::new(4, 0);
    let subscription = feed.subscribe(log, 0, false, |_| true);
    assert_eq!(feed.subscriber_count(), 1);
    drop(subscription);
    assert_eq!(feed.subscriber_count(), 0);
}

proptest::proptest! {
    /// Two publishers (a local writer and a follower of other processes' commits) reach
    /// the live feed in any interleaving: a subscriber still sees each event once, in order.
    #[test]
    fn two_publishers_in_any_order(order in proptest::collection::vec(proptest::bool::ANY, 1..60), capacity in 1usize..8) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let log = Arc::new(Log::default());
            let feed = LiveFeed::new(capacity, 0);
            let mut subscription = feed.subscribe(log.clone(), 0, false, |_| true);
            let mut unfollowed = Vec::new();
            for local in &order {
                if *local {
                    commit(&log, &feed, "a");
                } else {
                    unfollowed.push(commit_elsewhere(&log, "a"));
                }
            }
            // The follower publishes what it read afterwards, in its own order.
            for event in unfollowed {
                feed.publish(Arc::new(event));
            }
            let head = order.len() as u64;
            let tail = commit(&log, &feed, "a");
            let seen = collect(&mut subscription, tail).await;
            assert_eq!(seen, (1..=head + 1).collect::<Vec<_>>());
        });
    }

    /// From any cursor, with writes racing the hand-over and a tiny live buffer, a
    /// subscriber sees every later event exactly once, in order.
    #[test]
    fn every_later_event_exactly_once(before in 0u64..30, during in 0u64..40, cursor_seed in 0u64..1000, capacity in 1usize..8) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            let log = Arc::new(Log::default());
            let feed = Arc::new(LiveFeed::new(capacity, 0));
            for _ in 0..before {
                commit(&log, &feed, "a");
            }
            let cursor = if before == 0 { 0 } else { cursor_seed % (before + 1) };
            let mut subscription = feed.subscribe(log.clone(), cursor, true, |_| true);
            let writer = {
                let (log, feed) = (log.clone(), feed.clone());
                tokio::spawn(async move {
                    for _ in 0..during {
                        commit(&log, &feed, "a");
                        tokio::task::yield_now().await;
                    }
                })
            };
            let head = before + during;
            let seen = if head > cursor { collect(&mut subscription, head).await } else { Vec::new() };
            writer.await.unwrap();
            assert_eq!(seen, (cursor + 1..=head).collect::<Vec<_>>());
        });
    }
}
