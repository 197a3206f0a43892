//! The `fanout` scenario: what the alert stream costs as subscribers grow.
//!
//! `subscribers` Subscribe streams with an empty filter (so every alert reaches every
//! one of them) are spread round-robin over `connections` separate HTTP/2 connections.
//! They are opened in batches of [`OPEN_BATCH`]: a batch is sent at once, and the next
//! starts when the server has accepted every stream of it (its response headers came
//! back), so the server is loaded but never flooded with handshakes. Then a publisher on
//! a connection of its own creates `alert_rate` distinct alerts per second for
//! `duration`, and the subscribers record every delivery until all have arrived (or
//! [`DRAIN_TIMEOUT`] has passed), when every stream is dropped.
//!
//! Delivery latency is the receive time minus the event's `time`, the server's commit
//! time: client and server run on this machine and read the same clock. With a
//! publisher on another replica of the deployment (`--fanout-publisher`), it is the
//! replication delay: commit on one replica to delivery by another. Each subscriber
//! keeps its samples in a plain vector, merged into one histogram at the end (a
//! histogram per subscriber would cost tens of KiB each, hundreds of MiB in all).
//!
//! Server memory (only for a server the tool started, whose process it knows): VmRSS
//! before any connection is opened, after the connections, and once every subscriber has
//! received its first alert, so that every stream is open and has carried an event
//! through each buffer on its path. Should that not happen before publishing ends, the
//! reading is taken then, and the report says how many subscribers had an alert. The
//! per-subscriber figure is (that reading - the first) / subscribers, so it includes the
//! connections' share. A last reading when publishing ends gives the same figure in the
//! steady state: per-subscription buffers keep growing for a few dozen events after the
//! first, so the first-alert figure is a lower bound.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};

use crate::pb;
use crate::pb::alert_service_client::AlertServiceClient;

/// Streams opened at once; the next batch waits until the server accepted this one.
const OPEN_BATCH: usize = 500;
/// How long deliveries may trail the last alert before the streams are dropped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often progress counters are looked at.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// File descriptors besides the connections: stdio, the runtime, the publisher.
const SPARE_DESCRIPTORS: u64 = 64;
/// The `source` of the alerts the publisher creates.
const ALERT_SOURCE: &str = "bench";
/// Significant decimal digits kept by the latency histogram (0.1% resolution).
const SIGNIFICANT_DIGITS: u8 = 3;

/// How many subscribers, over how many connections, for how many alerts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FanoutShape {
    /// Concurrent Subscribe streams.
    pub(crate) subscribers: usize,
    /// Separate HTTP/2 connections they are spread over.
    pub(crate) connections: usize,
    /// Alerts created per second.
    pub(crate) alert_rate: f64,
    /// How long alerts are created for.
    pub(crate) duration: Duration,
}

impl FanoutShape {
    /// The alerts to publish: `alert_rate` × `duration`, at least one.
    pub(crate) fn alerts(&self) -> u64 {
        let alerts = (self.alert_rate * self.duration.as_secs_f64()).round();
        // A float-to-int `as` saturates, and the rate was checked to be positive.
        (alerts as u64).max(1)
    }

    /// The time between two alerts; never zero, which `tokio::time::interval` rejects.
    fn period(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.alert_rate).max(Duration::from_micros(1))
    }
}

/// What a fanout run measured.
#[derive(Debug)]
pub(crate) struct FanoutOutcome {
    /// What was asked for.
    pub(crate) shape: FanoutShape,
    /// Subscriptions the server accepted.
    pub(crate) opened: usize,
    /// How long opening every subscription took.
    pub(crate) open_time: Duration,
    /// Alerts created.
    pub(crate) published: u64,
    /// CreateAlert calls that failed.
    pub(crate) publish_errors: u64,
    /// From the first CreateAlert to the last answer.
    pub(crate) publish_time: Duration,
    /// Delivery latencies, in microseconds.
    pub(crate) latency_us: Histogram<u64>,
    /// Events about the published alerts that subscribers received.
    pub(crate) deliveries: u64,
    /// Heartbeats received (not deliveries; only counted).
    pub(crate) heartbeats: u64,
    /// Streams that failed or ended before they were dropped.
    pub(crate) stream_errors: u64,
    /// Why something failed, if anything did.
    pub(crate) first_error: Option<String>,
    /// The server's memory; `None` for a server the tool did not start.
    pub(crate) memory: Option<ServerMemory>,
}

impl FanoutOutcome {
    /// Every subscriber asked for times every alert created.
    pub(crate) fn expected_deliveries(&self) -> u64 {
        self.shape.subscribers as u64 * self.published
    }
}

/// The server's resident memory (VmRSS) over the run, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct ServerMemory {
    /// Before any fanout connection was opened.
    pub(crate) before_kib: u64,
    /// With the connections open, before any subscription.
    pub(crate) connected_kib: u64,
    /// Once the subscribers had received their first alert (see `with_alert`).
    pub(crate) subscribed_kib: u64,
    /// When publishing ended.
    pub(crate) end_kib: u64,
    /// Subscribers that had received an alert when `subscribed_kib` was read: all of
    /// them, unless publishing ended first.
    pub(crate) with_alert: usize,
    /// Subscribers open then.
    pub(crate) subscribers: usize,
}

impl ServerMemory {
    /// (`subscribed_kib` - `before_kib`) / subscribers, connections included.
    pub(crate) fn kib_per_subscriber(&self) -> f64 {
        self.per_subscriber(self.subscribed_kib)
    }

    /// (`end_kib` - `before_kib`) / subscribers: the same when publishing ended.
    pub(crate) fn kib_per_subscriber_at_end(&self) -> f64 {
        self.per_subscriber(self.end_kib)
    }

    fn per_subscriber(&self, kib: u64) -> f64 {
        kib.saturating_sub(self.before_kib) as f64 / self.subscribers.max(1) as f64
    }
}

/// Runs the fanout scenario with its connections spread round-robin over `endpoints`
/// (replicas of one deployment; the alerts are created on the first unless `publisher`
/// is given). With `server_pid` (a server this tool started) the server's memory is
/// read from `/proc`.
pub(crate) async fn run(
    endpoints: &[Endpoint],
    publisher: Option<&Endpoint>,
    shape: FanoutShape,
    server_pid: Option<u32>,
) -> anyhow::Result<FanoutOutcome> {
    check_open_files(shape.connections);
    let rss = || server_pid.map(read_vm_rss_kib).transpose();
    let before_kib = rss()?;
    let publisher =
        AlertServiceClient::new(connect(publisher.unwrap_or(&endpoints[0]), 0, 1).await?);
    let channels = connect_all(endpoints, shape.connections).await?;
    let connected_kib = rss()?;

    let shared = Arc::new(Shared::new(run_prefix()));
    let mut subscribers = JoinSet::new();
    eprintln!(
        "fanout: opening {} subscriptions over {} connections...",
        shape.subscribers, shape.connections
    );
    let started = Instant::now();
    let opening = open_subscribers(&channels, shape, &shared, &mut subscribers).await;
    let open_time = started.elapsed();
    if opening.opened == 0 {
        bail!(
            "the server accepted no subscription: {:?}",
            opening.first_error
        );
    }
    eprintln!(
        "fanout: {} subscriptions open in {:.1} s; publishing {} alerts at {}/s",
        opening.opened,
        open_time.as_secs_f64(),
        shape.alerts(),
        shape.alert_rate
    );

    let (published, settled) =
        publish_and_watch(publisher, shape, &shared, opening.opened, server_pid).await?;
    let end_kib = rss()?;
    let expected = opening.opened as u64 * published.created;
    if !drain(&shared, expected).await {
        eprintln!(
            "fanout: stopped waiting {} after the last alert",
            humantime::format_duration(DRAIN_TIMEOUT)
        );
    }
    // Every subscriber stops and drops its stream; the connections go with `channels`.
    shared.stop.cancel();
    let received = collect(subscribers).await?;

    let memory = match (before_kib, connected_kib, settled, end_kib) {
        (
            Some(before_kib),
            Some(connected_kib),
            (Some(subscribed_kib), with_alert),
            Some(end_kib),
        ) => Some(ServerMemory {
            before_kib,
            connected_kib,
            subscribed_kib,
            end_kib,
            with_alert,
            subscribers: opening.opened,
        }),
        _ => None,
    };
    let first_error = [
        opening
            .first_error
            .map(|status| format!("Subscribe: {status}")),
        published
            .first_error
            .map(|status| format!("CreateAlert: {status}")),
        received
            .first_error
            .map(|status| format!("a stream: {status}")),
    ]
    .into_iter()
    .flatten()
    .next();
    Ok(FanoutOutcome {
        shape,
        opened: opening.opened,
        open_time,
        published: published.created,
        publish_errors: published.errors,
        publish_time: published.elapsed,
        latency_us: received.latency_us,
        deliveries: received.deliveries,
        heartbeats: received.heartbeats,
        stream_errors: received.stream_errors + opening.errors,
        first_error,
        memory,
    })
}

/// What the subscribers share: which alerts are this run's, progress, and the stop.
#[derive(Debug)]
struct Shared {
    /// The `source_id` prefix of this run's alerts.
    prefix: String,
    /// Deliveries so far, for knowing when all have arrived.
    deliveries: AtomicU64,
    /// Subscribers that have received at least one alert.
    with_alert: AtomicUsize,
    /// Cancelled when the run is over.
    stop: CancellationToken,
}

impl Shared {
    fn new(prefix: String) -> Self {
        Self {
            prefix,
            deliveries: AtomicU64::new(0),
            with_alert: AtomicUsize::new(0),
            stop: CancellationToken::new(),
        }
    }
}

/// A `source_id` prefix unique to this run, so that the alerts get fingerprints no
/// earlier run used (each is CREATED, not a dedup UPDATE of a still-open one) and other
/// alerts on a shared server are not counted.
fn run_prefix() -> String {
    format!("fanout-{}-", Utc::now().timestamp_millis())
}

/// Opens connection `index` of `count`.
async fn connect(endpoint: &Endpoint, index: usize, count: usize) -> anyhow::Result<Channel> {
    endpoint.connect().await.with_context(|| {
        format!(
            "fanout connection {} of {count} to {}",
            index + 1,
            endpoint.uri()
        )
    })
}

/// Opens `count` connections, round-robin over `endpoints`; each `connect` is its own
/// HTTP/2 connection, while clones of one channel would share it.
async fn connect_all(endpoints: &[Endpoint], count: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(count);
    for index in 0..count {
        channels.push(connect(&endpoints[index % endpoints.len()], index, count).await?);
    }
    Ok(channels)
}

/// How opening the subscriptions went.
#[derive(Debug, Default)]
struct Opening {
    opened: usize,
    errors: u64,
    first_error: Option<Status>,
}

/// Starts one task per subscriber in `tasks`, batch by batch, and returns once the
/// server has answered every Subscribe.
async fn open_subscribers(
    channels: &[Channel],
    shape: FanoutShape,
    shared: &Arc<Shared>,
    tasks: &mut JoinSet<SubscriberOutcome>,
) -> Opening {
    let mut opening = Opening::default();
    // Enough room for every alert, so that recording never reallocates.
    let samples = usize::try_from(shape.alerts()).unwrap_or(usize::MAX);
    for batch in (0..shape.subscribers).step_by(OPEN_BATCH) {
        let (accepted, mut answers) = mpsc::channel(OPEN_BATCH);
        for index in batch..(batch + OPEN_BATCH).min(shape.subscribers) {
            // Round-robin, so that every connection carries the same number of streams.
            let channel = channels[index % channels.len()].clone();
            let client = AlertServiceClient::new(channel);
            tasks.spawn(subscriber(
                client,
                shared.clone(),
                accepted.clone(),
                samples,
            ));
        }
        drop(accepted);
        // Ends when every task of the batch has answered (and dropped its sender).
        while let Some(answer) = answers.recv().await {
            match answer {
                Ok(()) => opening.opened += 1,
                Err(status) => {
                    opening.errors += 1;
                    opening.first_error.get_or_insert(status);
                }
            }
        }
    }
    opening
}

/// What one subscriber received.
#[derive(Debug, Default)]
struct SubscriberOutcome {
    /// Latencies of the deliveries, in microseconds.
    latencies_us: Vec<u32>,
    /// Events about this run's alerts (with or without a usable time).
    delivered: u64,
    heartbeats: u64,
    /// Why the stream ended before it was dropped.
    error: Option<Status>,
}

/// One subscriber: subscribes, says whether the server accepted, then records
/// deliveries until the run stops or the stream ends.
async fn subscriber(
    mut client: AlertServiceClient<Channel>,
    shared: Arc<Shared>,
    accepted: mpsc::Sender<Result<(), Status>>,
    samples: usize,
) -> SubscriberOutcome {
    // Returns once the response headers are in: the server has registered the
    // subscription, so it sees every alert committed from now on.
    let stream = match client.subscribe(pb::SubscribeRequest::default()).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            // Counted by the opener, not as a stream error of its own.
            let _ = accepted.send(Err(status)).await;
            return SubscriberOutcome::default();
        }
    };
    let _ = accepted.send(Ok(())).await;
    drop(accepted);
    listen(stream, &shared, samples).await
}

/// Records every event of `stream` until the run stops.
async fn listen(
    mut stream: Streaming<pb::AlertEvent>,
    shared: &Shared,
    samples: usize,
) -> SubscriberOutcome {
    let mut outcome = SubscriberOutcome {
        latencies_us: Vec::with_capacity(samples),
        ..SubscriberOutcome::default()
    };
    loop {
        let message = tokio::select! {
            biased;
            () = shared.stop.cancelled() => break,
            message = stream.message() => message,
        };
        match message {
            // Read the clock first: anything done before it would count as latency.
            Ok(Some(event)) => outcome.observe(&event, Utc::now(), shared),
            Ok(None) => {
                outcome.error = Some(Status::unavailable("the server ended the stream"));
                break;
            }
            Err(status) => {
                outcome.error = Some(status);
                break;
            }
        }
    }
    outcome
}

/// What an event is to this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventKind {
    /// A heartbeat: carries no alert, ignored.
    Heartbeat,
    /// A change to one of this run's alerts: a delivery.
    Ours,
    /// Someone else's alert on a shared server.
    Foreign,
}

/// Sorts `event` by whether it is a delivery of this run's alerts (`prefix`).
fn classify(event: &pb::AlertEvent, prefix: &str) -> EventKind {
    if event.kind() == pb::AlertEventKind::Heartbeat {
        return EventKind::Heartbeat;
    }
    match &event.alert {
        Some(alert) if alert.source == ALERT_SOURCE && alert.source_id.starts_with(prefix) => {
            EventKind::Ours
        }
        _ => EventKind::Foreign,
    }
}

impl SubscriberOutcome {
    /// Records `event`, received at `received`.
    fn observe(&mut self, event: &pb::AlertEvent, received: DateTime<Utc>, shared: &Shared) {
        match classify(event, &shared.prefix) {
            EventKind::Heartbeat => self.heartbeats += 1,
            EventKind::Foreign => {}
            EventKind::Ours => {
                if let Some(micros) = event.time.as_ref().and_then(|t| latency_us(t, received)) {
                    self.latencies_us
                        .push(u32::try_from(micros).unwrap_or(u32::MAX));
                }
                if self.delivered == 0 {
                    shared.with_alert.fetch_add(1, Ordering::Relaxed);
                }
                self.delivered += 1;
                shared.deliveries.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Microseconds from `time` (the server's commit time) to `received`; `None` for a
/// timestamp that is not one. A receive before the commit can only be the clock being
/// stepped; it counts as zero rather than being dropped.
fn latency_us(time: &prost_types::Timestamp, received: DateTime<Utc>) -> Option<u64> {
    let nanos = u32::try_from(time.nanos).ok()?;
    let committed = DateTime::from_timestamp(time.seconds, nanos)?;
    let micros = (received - committed).num_microseconds()?;
    Some(u64::try_from(micros).unwrap_or(0))
}

/// What the publisher did.
#[derive(Debug)]
struct Published {
    created: u64,
    errors: u64,
    first_error: Option<Status>,
    elapsed: Duration,
}

/// Creates `shape.alerts()` distinct alerts at `shape.alert_rate` per second.
async fn publish(
    mut client: AlertServiceClient<Channel>,
    shape: FanoutShape,
    prefix: &str,
) -> Published {
    let mut ticks = tokio::time::interval(shape.period());
    // A slow CreateAlert delays the next ones rather than bunching them up: the rate
    // asked for is never exceeded, and the count stays the same.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut published = Published {
        created: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
    };
    let start = Instant::now();
    for n in 0..shape.alerts() {
        ticks.tick().await;
        match client.create_alert(alert_request(prefix, n)).await {
            Ok(_) => published.created += 1,
            Err(status) => {
                published.errors += 1;
                published.first_error.get_or_insert(status);
            }
        }
    }
    published.elapsed = start.elapsed();
    published
}

/// Alert `n` of the run: its own `source_id`, so its own fingerprint.
fn alert_request(prefix: &str, n: u64) -> pb::CreateAlertRequest {
    pb::CreateAlertRequest {
        alert: Some(pb::Alert {
            r#type: pb::AlertType::Regression.into(),
            severity: pb::AlertSeverity::Warning.into(),
            message: format!("llmops bench fanout alert {n}"),
            source: ALERT_SOURCE.into(),
            source_id: format!("{prefix}{n}"),
            ..pb::Alert::default()
        }),
    }
}

/// Publishes, and meanwhile reads the server's memory once all `opened` subscribers
/// have received an alert (or when publishing ends). Returns what was published, and
/// that reading (`None` without `server_pid`) with the subscribers that had an alert.
async fn publish_and_watch(
    publisher: AlertServiceClient<Channel>,
    shape: FanoutShape,
    shared: &Shared,
    opened: usize,
    server_pid: Option<u32>,
) -> anyhow::Result<(Published, (Option<u64>, usize))> {
    let done = CancellationToken::new();
    let publishing = async {
        let published = publish(publisher, shape, &shared.prefix).await;
        done.cancel();
        published
    };
    let watching = async {
        let with_alert = all_have_an_alert(shared, opened, &done).await;
        let rss = server_pid.map(read_vm_rss_kib).transpose();
        (rss, with_alert)
    };
    let (published, (rss, with_alert)) = tokio::join!(publishing, watching);
    Ok((published, (rss?, with_alert)))
}

/// Waits until `opened` subscribers have had an alert, or `give_up` is cancelled;
/// returns how many had one.
async fn all_have_an_alert(shared: &Shared, opened: usize, give_up: &CancellationToken) -> usize {
    loop {
        let with_alert = shared.with_alert.load(Ordering::Relaxed);
        if with_alert >= opened || give_up.is_cancelled() {
            return with_alert;
        }
        tokio::select! {
            () = give_up.cancelled() => {}
            () = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
}

/// Waits until `expected` deliveries have arrived, at most [`DRAIN_TIMEOUT`]; false when
/// some were still missing.
async fn drain(shared: &Shared, expected: u64) -> bool {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while shared.deliveries.load(Ordering::Relaxed) < expected {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    true
}

/// Everything the subscribers received, merged.
#[derive(Debug)]
struct Received {
    latency_us: Histogram<u64>,
    deliveries: u64,
    heartbeats: u64,
    stream_errors: u64,
    first_error: Option<Status>,
}

/// Waits for every subscriber task and merges what they recorded.
async fn collect(mut tasks: JoinSet<SubscriberOutcome>) -> anyhow::Result<Received> {
    let mut received = Received {
        latency_us: Histogram::new(SIGNIFICANT_DIGITS).context("creating a latency histogram")?,
        deliveries: 0,
        heartbeats: 0,
        stream_errors: 0,
        first_error: None,
    };
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.context("a subscriber task failed")?;
        for &micros in &outcome.latencies_us {
            record(&mut received.latency_us, u64::from(micros));
        }
        received.deliveries += outcome.delivered;
        received.heartbeats += outcome.heartbeats;
        if let Some(status) = outcome.error {
            received.stream_errors += 1;
            received.first_error.get_or_insert(status);
        }
    }
    Ok(received)
}

/// Records `micros`; the histogram grows to fit (`saturating_record` would clamp to its
/// current size instead).
fn record(histogram: &mut Histogram<u64>, micros: u64) {
    if histogram.record(micros).is_err() {
        histogram.saturating_record(micros);
    }
}

/// Reads the resident memory of process `pid`, in KiB.
fn read_vm_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    vm_rss_kib(&status).with_context(|| format!("no VmRSS line in {path}"))
}

/// The `VmRSS:` of a `/proc/<pid>/status` text, in KiB.
fn vm_rss_kib(status: &str) -> Option<u64> {
    let value = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?;
    let mut parts = value.split_whitespace();
    let kib = parts.next()?.parse().ok()?;
    (parts.next() == Some("kB")).then_some(kib)
}

/// Warns when the open-files limit is too low for `connections` sockets. Only the
/// connections take descriptors (the streams share them), so the usual limits are
/// plenty; the limit is not raised, which would need `setrlimit` and so a new direct
/// dependency.
fn check_open_files(connections: usize) {
    let needed = connections as u64 + SPARE_DESCRIPTORS;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    match open_files_soft_limit(&limits) {
        Some(limit) if limit < needed => eprintln!(
            "note: the open-files limit is {limit}, and {connections} connections need about \
             {needed}; raise it with `ulimit -n {needed}` if connecting fails"
        ),
        _ => {}
    }
}

/// The soft `Max open files` of a `/proc/<pid>/limits` text (`u64::MAX` when unlimited).
fn open_files_soft_limit(limits: &str) -> Option<u64> {
    let values = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?;
    match values.split_whitespace().next()? {
        "unlimited" => Some(u64::MAX),
        soft => soft.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
        prost_types::Timestamp {
            seconds: time.timestamp(),
            nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap(),
        }
    }

    #[test]
    fn latency_is_receive_time_minus_commit_time() {
        let committed = DateTime::from_timestamp(1_700_000_000, 999_999_000).unwrap();
        let received = committed + chrono::Duration::microseconds(1_234);
        assert_eq!(latency_us(&timestamp(committed), received), Some(1_234));
        // Across a second boundary, at full nanosecond precision.
        let received = committed + chrono::Duration::nanoseconds(250_001_999);
        assert_eq!(latency_us(&timestamp(committed), received), Some(250_001));
        // A clock stepped back counts as zero; a timestamp that is not one is no sample.
        let earlier = committed - chrono::Duration::milliseconds(5);
        assert_eq!(latency_us(&timestamp(committed), earlier), Some(0));
        let broken = prost_types::Timestamp {
            seconds: 1,
            nanos: -1,
        };
        assert_eq!(latency_us(&broken, received), None);
    }

    #[test]
    fn vm_rss_is_read_from_a_proc_status_text() {
        let status = "Name:\tllmops\nUmask:\t0022\nState:\tS (sleeping)\n\
                      VmPeak:\t 1187640 kB\nVmHWM:\t   84212 kB\nVmRSS:\t   81920 kB\n\
                      RssAnon:\t   70000 kB\nThreads:\t3\n";
        assert_eq!(vm_rss_kib(status), Some(81_920));
        assert_eq!(vm_rss_kib("Name:\tkthreadd\nThreads:\t1\n"), None);
        assert_eq!(vm_rss_kib("VmRSS:\t 12 MB\n"), None);
        let own = read_vm_rss_kib(std::process::id()).unwrap();
        assert!(own > 0);
    }

    #[test]
    fn the_open_files_soft_limit_is_read_from_a_proc_limits_text() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n\
                      Max locked memory         8388608              8388608              bytes     \n";
        assert_eq!(open_files_soft_limit(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(open_files_soft_limit(unlimited), Some(u64::MAX));
        assert_eq!(open_files_soft_limit(""), None);
    }

    #[test]
    fn the_shape_gives_the_alert_count_and_period() {
        let shape = FanoutShape {
            subscribers: 10_000,
            connections: 100,
            alert_rate: 5.0,
            duration: Duration::from_secs(30),
        };
        assert_eq!(shape.alerts(), 150);
        assert_eq!(shape.period(), Duration::from_millis(200));
        let tiny = FanoutShape {
            alert_rate: 0.1,
            duration: Duration::from_secs(1),
            ..shape
        };
        assert_eq!(tiny.alerts(), 1);
        let absurd = FanoutShape {
            alert_rate: 1e12,
            ..shape
        };
        assert!(!absurd.period().is_zero());
    }

    #[test]
    fn alerts_are_distinct_and_only_this_runs_count() {
        let prefix = "fanout-1-";
        let first = alert_request(prefix, 1).alert.unwrap();
        let second = alert_request(prefix, 2).alert.unwrap();
        assert_ne!(first.source_id, second.source_id);
        assert!(!first.message.is_empty());
        let event = |alert: Option<pb::Alert>, kind: pb::AlertEventKind| pb::AlertEvent {
            sequence: 1,
            kind: kind.into(),
            alert,
            time: None,
        };
        let created = pb::AlertEventKind::Created;
        assert_eq!(
            classify(&event(Some(first.clone()), created), prefix),
            EventKind::Ours
        );
        assert_eq!(
            classify(&event(Some(first), created), "fanout-2-"),
            EventKind::Foreign
        );
        let heartbeat = event(None, pb::AlertEventKind::Heartbeat);
        assert_eq!(classify(&heartbeat, prefix), EventKind::Heartbeat);
    }

    #[test]
    fn memory_per_subscriber_includes_the_connections() {
        let memory = ServerMemory {
            before_kib: 10_000,
            connected_kib: 12_000,
            subscribed_kib: 60_000,
            end_kib: 61_000,
            with_alert: 5_000,
            subscribers: 5_000,
        };
        assert_eq!(memory.kib_per_subscriber(), 10.0);
        assert_eq!(memory.kib_per_subscriber_at_end(), 10.2);
    }

    /// The whole scenario against the real server, in-process, with heartbeats often
    /// enough to be seen (and ignored). The process's own pid stands in for the server's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fanout_runs_against_a_live_server() {
        let temp = tempfile::tempdir().unwrap();
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = crate::config::Config {
            data_dir: temp.path().to_owned(),
            listen: grpc.local_addr().unwrap(),
            metrics_listen: metrics.local_addr().unwrap(),
            ..crate::config::Config::default()
        };
        config.alerts.heartbeat_interval = Duration::from_millis(50);
        let url = format!("http://{}", config.listen);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::server::serve(config, grpc, metrics, async move {
            let _ = stopped.await;
        }));
        let endpoint = Endpoint::from_shared(url).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while endpoint.connect().await.is_err()
            || AlertServiceClient::new(endpoint.connect_lazy())
                .list_alerts(pb::ListAlertsRequest::default())
                .await
                .is_err()
        {
            assert!(Instant::now() < deadline, "server never served");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let shape = FanoutShape {
            subscribers: 7,
            connections: 3,
            alert_rate: 20.0,
            duration: Duration::from_millis(300),
        };
        let outcome = run(
            std::slice::from_ref(&endpoint),
            None,
            shape,
            Some(std::process::id()),
        )
        .await
        .unwrap();
        assert_eq!(outcome.opened, 7);
        assert_eq!(outcome.published, 6);
        assert_eq!(outcome.deliveries, outcome.expected_deliveries());
        assert_eq!(outcome.latency_us.len(), 42);
        assert_eq!((outcome.stream_errors, outcome.publish_errors), (0, 0));
        assert!(outcome.heartbeats > 0, "{outcome:?}");
        let memory = outcome.memory.unwrap();
        assert_eq!((memory.with_alert, memory.subscribers), (7, 7));

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
