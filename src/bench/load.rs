//! The closed-loop load driver: `connections` separate HTTP/2 connections, `streams`
//! tasks per connection, each sending its next request as soon as the previous answer
//! arrives, until the deadline.
//!
//! Every task records into its own histogram (no locks, no shared counters on the hot
//! path); the histograms are merged when the tasks end. Latencies are in microseconds.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

/// Significant decimal digits kept by the latency histograms (0.1% resolution).
const SIGNIFICANT_DIGITS: u8 = 3;

/// Sends one kind of request; one value per in-flight stream.
pub(crate) trait Call: Send + 'static {
    /// Sends one request and waits for the whole response.
    fn call(&mut self) -> impl Future<Output = Result<(), Status>> + Send;
}

/// How much load to apply, and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadShape {
    /// Separate connections.
    pub(crate) connections: usize,
    /// Concurrent in-flight requests per connection.
    pub(crate) streams: usize,
    /// Run, unrecorded, for this long first.
    pub(crate) warmup: Duration,
    /// Then record for this long.
    pub(crate) duration: Duration,
}

/// What a measured run produced.
#[derive(Debug)]
pub(crate) struct LoadOutcome {
    /// Latencies of the successful requests, in microseconds.
    pub(crate) latency_us: Histogram<u64>,
    /// Requests that failed.
    pub(crate) errors: u64,
    /// From the end of the warm-up to the last recorded response.
    pub(crate) window: Duration,
    /// One of the errors, to show why requests failed.
    pub(crate) first_error: Option<Status>,
}

impl LoadOutcome {
    /// Every recorded request, successful or not.
    pub(crate) fn requests(&self) -> u64 {
        self.latency_us.len() + self.errors
    }
}

/// What one task recorded.
struct TaskOutcome {
    latency_us: Histogram<u64>,
    errors: u64,
    last_response: Option<Instant>,
    first_error: Option<Status>,
}

/// Connects `shape.connections` times, then runs `shape.streams` callers made by
/// `make_caller` on each connection until the warm-up and the measured duration are over.
/// A request is recorded when it was sent after the warm-up.
pub(crate) async fn drive<C: Call>(
    endpoint: &Endpoint,
    shape: LoadShape,
    mut make_caller: impl FnMut(Channel) -> C,
) -> anyhow::Result<LoadOutcome> {
    let mut channels = Vec::with_capacity(shape.connections);
    for index in 0..shape.connections {
        // Each `connect` opens its own HTTP/2 connection; clones of a channel share one.
        let channel = endpoint.connect().await.with_context(|| {
            format!(
                "connection {} of {} to {}",
                index + 1,
                shape.connections,
                endpoint.uri()
            )
        })?;
        channels.push(channel);
    }

    let start = Instant::now();
    let measure_from = start + shape.warmup;
    let deadline = measure_from + shape.duration;
    let mut tasks = JoinSet::new();
    for channel in &channels {
        for _ in 0..shape.streams {
            let caller = make_caller(channel.clone());
            tasks.spawn(run_stream(caller, measure_from, deadline));
        }
    }

    let mut latency_us = new_histogram()?;
    let mut errors = 0;
    let mut last_response = None;
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let task = joined.context("a load task failed")??;
        latency_us
            .add(&task.latency_us)
            .context("merging latency histograms")?;
        errors += task.errors;
        last_response = last_response.max(task.last_response);
        if first_error.is_none() {
            first_error = task.first_error;
        }
    }
    // Requests in flight at the deadline still count, so the window runs to the last
    // response; it is never shorter than asked (a run that recorded nothing, say).
    let window = last_response
        .map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(measure_from)
        })
        .max(shape.duration);
    Ok(LoadOutcome {
        latency_us,
        errors,
        window,
        first_error,
    })
}

/// One in-flight stream: sends requests back to back until `deadline`.
async fn run_stream<C: Call>(
    mut caller: C,
    measure_from: Instant,
    deadline: Instant,
) -> anyhow::Result<TaskOutcome> {
    let mut outcome = TaskOutcome {
        latency_us: new_histogram()?,
        errors: 0,
        last_response: None,
        first_error: None,
    };
    loop {
        let sent = Instant::now();
        if sent >= deadline {
            break;
        }
        let result = caller.call().await;
        let answered = Instant::now();
        if sent < measure_from {
            continue;
        }
        outcome.last_response = Some(answered);
        match result {
            Ok(()) => record(&mut outcome.latency_us, answered - sent),
            Err(status) => {
                outcome.errors += 1;
                outcome.first_error.get_or_insert(status);
            }
        }
    }
    Ok(outcome)
}

/// An auto-resizing histogram of microseconds.
fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new(SIGNIFICANT_DIGITS).context("creating a latency histogram")
}

/// Records `elapsed` in microseconds. The histogram grows to fit (`saturating_record`
/// would clamp to its current size instead).
fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    if histogram.record(micros).is_err() {
        histogram.saturating_record(micros);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails every third request, takes about a millisecond otherwise.
    struct Flaky(u32);

    impl Call for Flaky {
        async fn call(&mut self) -> Result<(), Status> {
            self.0 += 1;
            if self.0 % 3 == 0 {
                return Err(Status::internal("every third"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok(())
        }
    }

    #[tokio::test]
    async fn streams_record_after_the_warmup_and_merge() {
        let measure_from = Instant::now() + Duration::from_millis(20);
        let deadline = measure_from + Duration::from_millis(100);
        let mut tasks = JoinSet::new();
        for _ in 0..4 {
            tasks.spawn(run_stream(Flaky(0), measure_from, deadline));
        }
        let mut total = new_histogram().unwrap();
        let mut errors = 0;
        while let Some(task) = tasks.join_next().await {
            let task = task.unwrap().unwrap();
            assert!(task.last_response.unwrap() >= measure_from);
            assert_eq!(task.first_error.unwrap().message(), "every third");
            total.add(&task.latency_us).unwrap();
            errors += task.errors;
        }
        assert!(!total.is_empty() && errors > 0);
        let median = total.value_at_quantile(0.5);
        // A sleep of 1 ms; the histogram must grow past its initial range to hold it.
        assert!(median >= 900, "the sleep is a millisecond, not {median} us");
    }
}
