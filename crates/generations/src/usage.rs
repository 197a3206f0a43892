//! Usage: how many generations, errors, tokens, cost and latency, per hour and per
//! attribution (prompt version, model, experiment variant, user).
//!
//! Usage is served from hourly aggregates, never from a scan of the generations. The
//! transaction that stores new generations adds them to the aggregates
//! ([`UsageTotals::add`]), and a query merges the aggregates it needs ([`group_usage`]):
//! sums add, and latency percentiles come from merged histograms ([`LatencyHistogram`]).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use llmops_core::ServiceError;

/// One hour, in microseconds: the aggregates' grain.
pub const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;

/// The longest span one query may cover (a year and a day).
const MAX_SPAN_US: i64 = 366 * DAY_US;
/// The most groups times buckets one answer holds.
pub const MAX_USAGE_ROWS: usize = 10_000;
/// The most hourly aggregates one query reads: what bounds its memory, however wide the
/// range and however many users.
pub const MAX_AGGREGATES_READ: usize = 50_000;

/// Where a generation is counted: its attribution.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UsageKey {
    /// The prompt.
    pub prompt_name: String,
    /// Its version.
    pub prompt_version: String,
    /// The model.
    pub model: String,
    /// The experiment that chose the version.
    pub experiment_id: String,
    /// The experiment's variant.
    pub variant_id: String,
    /// The end user (empty in the aggregates not kept per user).
    pub user_id: String,
}

impl UsageKey {
    /// The key of these attribution fields (prompt, version, model, experiment, variant,
    /// user).
    pub fn from_parts(parts: [&str; 6]) -> Self {
        let [prompt_name, prompt_version, model, experiment_id, variant_id, user_id] = parts;
        Self {
            prompt_name: prompt_name.to_owned(),
            prompt_version: prompt_version.to_owned(),
            model: model.to_owned(),
            experiment_id: experiment_id.to_owned(),
            variant_id: variant_id.to_owned(),
            user_id: user_id.to_owned(),
        }
    }

    /// One string that names the key unambiguously (a JSON array), the aggregates'
    /// stored key.
    pub fn encode(&self) -> String {
        let parts = [
            &self.prompt_name,
            &self.prompt_version,
            &self.model,
            &self.experiment_id,
            &self.variant_id,
            &self.user_id,
        ];
        serde_json::to_string(&parts).expect("strings serialize")
    }
}

/// The ratio of one latency bin's upper bound to its lower: bins 2% wide make every
/// percentile read from them (a bin's centre) within 1% of the true value.
const BIN_GROWTH: f64 = 1.02;
/// Latencies below this (1 us) count as this.
const MIN_LATENCY_MS: f64 = 0.001;
/// Bins one stored histogram may hold: 1 us to beyond a year at 2% apiece needs about
/// 1,400; anything longer is refused as corrupt.
const MAX_BINS: usize = 4096;

/// Latencies as counts per logarithmic bin: bin `i` holds the values in
/// `(1.02^(i-1), 1.02^i]` ms. Only bins that hold values are kept, so the latencies of
/// one prompt version in one hour (usually within a factor of a few) take a few dozen
/// entries, and merging many of them is cheap. (A dense HdrHistogram of the same
/// precision holds over a thousand counters each, which made logging generations a
/// third slower.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    bins: BTreeMap<i32, u64>,
    count: u64,
}

impl LatencyHistogram {
    /// Counts one latency (below 1 us as 1 us; not a number as 1 us).
    pub fn record(&mut self, latency_ms: f64) {
        let latency = if latency_ms.is_finite() {
            latency_ms.max(MIN_LATENCY_MS)
        } else if latency_ms > 0.0 {
            f64::MAX
        } else {
            MIN_LATENCY_MS
        };
        let bin = (latency.ln() / BIN_GROWTH.ln()).ceil() as i32;
        *self.bins.entry(bin).or_default() += 1;
        self.count += 1;
    }

    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &Self) {
        for (bin, count) in &other.bins {
            *self.bins.entry(*bin).or_default() += count;
        }
        self.count += other.count;
    }

    /// How many latencies were counted.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether none were.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The latency at `quantile` (0-1) by nearest rank, in ms, within 1%; 0 when empty.
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((quantile.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bin, count) in &self.bins {
            seen += count;
            if seen >= rank {
                // The centre of (g^(i-1), g^i] relative to both ends: 2 g^i / (g + 1).
                return 2.0 * BIN_GROWTH.powi(*bin) / (BIN_GROWTH + 1.0);
            }
        }
        2.0 * BIN_GROWTH.powi(*self.bins.keys().last().unwrap_or(&0)) / (BIN_GROWTH + 1.0)
    }

    /// The stored form: `bin:count` pairs, comma-separated, in bin order.
    pub fn encode(&self) -> String {
        use std::fmt::Write as _;
        let mut text = String::with_capacity(self.bins.len() * 8);
        for (i, (bin, count)) in self.bins.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            let _ = write!(text, "{bin}:{count}");
        }
        text
    }

    /// Reads what [`LatencyHistogram::encode`] wrote.
    pub fn decode(stored: &str) -> Result<Self, String> {
        let mut histogram = Self::default();
        if stored.is_empty() {
            return Ok(histogram);
        }
        for pair in stored.split(',') {
            let parsed = pair.split_once(':').and_then(|(bin, count)| {
                Some((bin.parse::<i32>().ok()?, count.parse::<u64>().ok()?))
            });
            let Some((bin, count)) = parsed else {
                return Err(format!("latency histogram entry {pair:?} is not bin:count"));
            };
            *histogram.bins.entry(bin).or_default() += count;
            histogram.count += count;
        }
        if histogram.bins.len() > MAX_BINS {
            return Err(format!(
                "latency histogram holds {} bins",
                histogram.bins.len()
            ));
        }
        Ok(histogram)
    }
}

/// Totals of some generations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageTotals {
    /// Generations.
    pub count: u64,
    /// Of which failed.
    pub errors: u64,
    /// Tokens in.
    pub input_tokens: u64,
    /// Tokens out.
    pub output_tokens: u64,
    /// Cost.
    pub cost: f64,
    /// Their latencies.
    pub latency: LatencyHistogram,
}

impl UsageTotals {
    /// Counts one stored generation (unknown cost adds 0).
    pub fn add_generation(&mut self, generation: &crate::model::Generation) {
        self.count += 1;
        self.errors += u64::from(generation.status == crate::model::GenerationStatus::Error);
        self.input_tokens = self.input_tokens.saturating_add(generation.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(generation.output_tokens);
        self.cost += generation.cost.unwrap_or(0.0);
        self.latency.record(generation.latency_ms);
    }

    /// Adds `other`.
    pub fn merge(&mut self, other: &Self) {
        self.count += other.count;
        self.errors += other.errors;
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cost += other.cost;
        self.latency.merge(&other.latency);
    }
}

/// One hourly aggregate, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageAggregate {
    /// The hour's start.
    pub hour: DateTime<Utc>,
    /// Whether it is of the aggregates kept per user (else `key.user_id` is empty).
    pub per_user: bool,
    /// Its attribution.
    pub key: UsageKey,
    /// What it counts.
    pub totals: UsageTotals,
}

/// The hourly aggregates a usage query reads: kept per user or not, in hours that
/// start in `[since, until)`, with every set filter holding.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UsageFilter {
    /// The aggregates kept per user (needed only when grouping by user: there are more).
    pub per_user: bool,
    /// The first hour's start.
    pub since: DateTime<Utc>,
    /// The end (exclusive).
    pub until: DateTime<Utc>,
    /// Exactly this prompt.
    pub prompt_name: Option<String>,
    /// Exactly this model.
    pub model: Option<String>,
    /// Exactly this experiment.
    pub experiment_id: Option<String>,
    /// At most this many aggregates (any).
    pub limit: usize,
}

/// What usage may be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UsageDimension {
    /// The prompt.
    Prompt,
    /// The prompt and its version.
    PromptVersion,
    /// The model.
    Model,
    /// The end user.
    User,
    /// The experiment and its variant.
    ExperimentVariant,
}

/// The width of a usage bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UsageBucket {
    /// An hour.
    #[default]
    Hour,
    /// A UTC day.
    Day,
}

impl UsageBucket {
    fn micros(self) -> i64 {
        match self {
            Self::Hour => HOUR_US,
            Self::Day => DAY_US,
        }
    }
}

/// A usage query: the generations that started in `[since, until)`, grouped by the
/// `group_by` dimensions and by bucket.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UsageQuery {
    /// The dimensions (none: one group of everything).
    pub group_by: Vec<UsageDimension>,
    /// The start; rounded down to its bucket.
    pub since: DateTime<Utc>,
    /// The end (exclusive); rounded up to a bucket.
    pub until: DateTime<Utc>,
    /// The buckets' width.
    pub bucket: UsageBucket,
    /// Only this prompt.
    pub prompt_name: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Only this experiment.
    pub experiment_id: Option<String>,
}

/// One group in one bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageGroup {
    /// The bucket's start.
    pub bucket_start: DateTime<Utc>,
    /// The group: the fields of the dimensions grouped by (the others empty).
    pub key: UsageKey,
    /// What it counts.
    pub totals: UsageTotals,
}

impl UsageQuery {
    /// Checks the range, and names the aggregates to read: `since` and `until` rounded
    /// out to whole buckets.
    pub fn filter(&self) -> Result<UsageFilter, ServiceError> {
        if self.until <= self.since {
            return Err(ServiceError::invalid("until", "must be later than since"));
        }
        let width = self.bucket.micros();
        let since = floor(self.since.timestamp_micros(), width);
        let until = ceil(self.until.timestamp_micros(), width);
        // Saturating: the two ends of chrono's range are further apart than an i64 holds.
        if until.saturating_sub(since) > MAX_SPAN_US {
            return Err(ServiceError::invalid(
                "since",
                "the range covers more than 366 days; query a shorter one",
            ));
        }
        Ok(UsageFilter {
            per_user: self.group_by.contains(&UsageDimension::User),
            since: micros(since),
            until: micros(until),
            prompt_name: self.prompt_name.clone(),
            model: self.model.clone(),
            experiment_id: self.experiment_id.clone(),
            limit: MAX_AGGREGATES_READ + 1,
        })
    }

    /// The key `key` is counted under when grouping by these dimensions.
    fn group_key(&self, key: &UsageKey) -> UsageKey {
        let mut group = UsageKey::default();
        for dimension in &self.group_by {
            match dimension {
                UsageDimension::Prompt => group.prompt_name.clone_from(&key.prompt_name),
                UsageDimension::PromptVersion => {
                    group.prompt_name.clone_from(&key.prompt_name);
                    group.prompt_version.clone_from(&key.prompt_version);
                }
                UsageDimension::Model => group.model.clone_from(&key.model),
                UsageDimension::User => group.user_id.clone_from(&key.user_id),
                UsageDimension::ExperimentVariant => {
                    group.experiment_id.clone_from(&key.experiment_id);
                    group.variant_id.clone_from(&key.variant_id);
                }
            }
        }
        group
    }
}

/// Merges hourly aggregates into the groups and buckets of `query`, ordered by bucket,
/// then group. More than [`MAX_USAGE_ROWS`] is INVALID_ARGUMENT (a narrower range,
/// a wider bucket or fewer dimensions answers it).
pub fn group_usage(
    query: &UsageQuery,
    aggregates: impl IntoIterator<Item = UsageAggregate>,
) -> Result<Vec<UsageGroup>, ServiceError> {
    let aggregates = aggregates.into_iter();
    let too_many = || {
        ServiceError::invalid(
            "since",
            format!(
                "the range holds more than {MAX_AGGREGATES_READ} hourly aggregates; narrow \
                 it, or filter by prompt, model or experiment"
            ),
        )
    };
    let width = query.bucket.micros();
    let mut read = 0;
    let mut groups: BTreeMap<(i64, UsageKey), UsageTotals> = BTreeMap::new();
    for aggregate in aggregates {
        read += 1;
        if read > MAX_AGGREGATES_READ {
            return Err(too_many());
        }
        let bucket = floor(aggregate.hour.timestamp_micros(), width);
        let key = query.group_key(&aggregate.key);
        groups
            .entry((bucket, key))
            .or_default()
            .merge(&aggregate.totals);
        if groups.len() > MAX_USAGE_ROWS {
            return Err(ServiceError::invalid(
                "group_by",
                format!(
                    "the answer would hold more than {MAX_USAGE_ROWS} groups and buckets; \
                     narrow the range, widen the bucket or group by fewer dimensions"
                ),
            ));
        }
    }
    Ok(groups
        .into_iter()
        .map(|((bucket, key), totals)| UsageGroup {
            bucket_start: micros(bucket),
            key,
            totals,
        })
        .collect())
}

/// The start of the hour `time_us` falls in.
pub fn hour_of(time_us: i64) -> i64 {
    floor(time_us, HOUR_US)
}

fn floor(time_us: i64, width: i64) -> i64 {
    time_us - time_us.rem_euclid(width)
}

fn ceil(time_us: i64, width: i64) -> i64 {
    let floor = floor(time_us, width);
    if floor == time_us {
        floor
    } else {
        floor.saturating_add(width)
    }
}

fn micros(time_us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(time_us)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::{Generation, GenerationStatus};

    fn sample(time: &str, version: &str, user: &str, latency_ms: f64, error: bool) -> Generation {
        Generation {
            start_time: Some(time.parse().unwrap()),
            prompt_name: "greet".into(),
            prompt_version: version.into(),
            model: "gpt".into(),
            user_id: user.into(),
            status: if error {
                GenerationStatus::Error
            } else {
                GenerationStatus::Ok
            },
            input_tokens: 10,
            output_tokens: 20,
            cost: Some(0.5),
            latency_ms,
            ..Generation::default()
        }
    }

    fn aggregate(samples: &[Generation]) -> Vec<UsageAggregate> {
        let mut hours: BTreeMap<(i64, UsageKey), UsageTotals> = BTreeMap::new();
        for sample in samples {
            let key = UsageKey {
                prompt_name: sample.prompt_name.clone(),
                prompt_version: sample.prompt_version.clone(),
                model: sample.model.clone(),
                user_id: sample.user_id.clone(),
                ..UsageKey::default()
            };
            hours
                .entry((hour_of(sample.time().timestamp_micros()), key))
                .or_default()
                .add_generation(sample);
        }
        hours
            .into_iter()
            .map(|((hour, key), totals)| UsageAggregate {
                hour: micros(hour),
                per_user: true,
                key,
                totals,
            })
            .collect()
    }

    #[test]
    fn percentiles_are_within_one_percent_by_nearest_rank() {
        let mut histogram = LatencyHistogram::default();
        for latency in 1..=1000 {
            histogram.record(f64::from(latency));
        }
        for (quantile, exact) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let got = histogram.quantile_ms(quantile);
            assert!((got - exact).abs() <= exact * 0.01, "p{quantile}: {got}");
        }
        assert_eq!(LatencyHistogram::default().quantile_ms(0.5), 0.0);
    }

    #[test]
    fn a_histogram_survives_storage_and_merging_equals_recording_together() {
        let (mut a, mut b, mut both) = Default::default();
        for latency in [3.0, 250.0, 1200.5] {
            LatencyHistogram::record(&mut a, latency);
            LatencyHistogram::record(&mut both, latency);
        }
        for latency in [0.2, 40_000.0] {
            LatencyHistogram::record(&mut b, latency);
            LatencyHistogram::record(&mut both, latency);
        }
        let mut merged = LatencyHistogram::decode(&a.encode()).unwrap();
        merged.merge(&LatencyHistogram::decode(&b.encode()).unwrap());
        assert_eq!(merged, both);
        assert_eq!(merged.len(), 5);
        assert!(LatencyHistogram::decode("not a histogram").is_err());
    }

    #[test]
    fn groups_merge_hours_into_days_and_drop_the_dimensions_not_asked_for() {
        let samples = [
            sample("2026-12-01T10:05:00Z", "1.0.0", "u1", 100.0, false),
            sample("2026-12-01T10:55:00Z", "1.0.0", "u2", 200.0, true),
            sample("2026-12-01T23:59:59Z", "1.1.0", "u1", 300.0, false),
            sample("2026-12-02T00:00:00Z", "1.1.0", "u1", 400.0, false),
        ];
        let query = UsageQuery {
            group_by: vec![UsageDimension::PromptVersion],
            since: "2026-12-01T00:00:00Z".parse().unwrap(),
            until: "2026-12-03T00:00:00Z".parse().unwrap(),
            bucket: UsageBucket::Day,
            ..UsageQuery::default()
        };
        let groups = group_usage(&query, aggregate(&samples)).unwrap();
        let summary: Vec<_> = groups
            .iter()
            .map(|g| {
                (
                    g.bucket_start.to_rfc3339(),
                    g.key.prompt_version.as_str(),
                    g.key.user_id.as_str(),
                    g.totals.count,
                    g.totals.errors,
                    g.totals.output_tokens,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("2026-12-01T00:00:00+00:00".into(), "1.0.0", "", 2, 1, 40),
                ("2026-12-01T00:00:00+00:00".into(), "1.1.0", "", 1, 0, 20),
                ("2026-12-02T00:00:00+00:00".into(), "1.1.0", "", 1, 0, 20),
            ]
        );
        assert_eq!(groups[0].key.prompt_name, "greet");
        assert_eq!(groups[0].key.model, "", "model was not grouped by");
        assert!((groups[0].totals.latency.quantile_ms(0.99) - 200.0).abs() <= 2.0);
    }

    #[test]
    fn a_range_is_rounded_out_to_whole_buckets_and_checked() {
        let query = UsageQuery {
            since: "2026-12-01T10:30:00Z".parse().unwrap(),
            until: "2026-12-01T12:00:01Z".parse().unwrap(),
            group_by: vec![UsageDimension::User],
            ..UsageQuery::default()
        };
        let filter = query.filter().unwrap();
        assert_eq!(filter.since.to_rfc3339(), "2026-12-01T10:00:00+00:00");
        assert_eq!(filter.until.to_rfc3339(), "2026-12-01T13:00:00+00:00");
        assert!(filter.per_user);
        let backwards = UsageQuery {
            since: query.until,
            until: query.since,
            ..UsageQuery::default()
        };
        assert_eq!(field_at_fault(backwards.filter()), "until");
        let too_long = UsageQuery {
            since: "2024-01-01T00:00:00Z".parse().unwrap(),
            until: "2026-01-01T00:00:00Z".parse().unwrap(),
            ..UsageQuery::default()
        };
        assert_eq!(field_at_fault(too_long.filter()), "since");
        // The ends of the representable range are refused, not wrapped around.
        let widest = UsageQuery {
            since: DateTime::<Utc>::MIN_UTC,
            until: DateTime::<Utc>::MAX_UTC,
            ..UsageQuery::default()
        };
        assert_eq!(field_at_fault(widest.filter()), "since");
    }

    #[test]
    fn a_query_reading_too_many_aggregates_is_refused() {
        let query = UsageQuery {
            group_by: vec![UsageDimension::Model],
            bucket: UsageBucket::Day,
            ..UsageQuery::default()
        };
        let many = (0..=MAX_AGGREGATES_READ as i64).map(|i| UsageAggregate {
            hour: micros(i % 24 * HOUR_US),
            per_user: true,
            key: UsageKey {
                user_id: format!("u{i}"),
                ..UsageKey::default()
            },
            totals: UsageTotals::default(),
        });
        match group_usage(&query, many) {
            Err(ServiceError::InvalidArgument(violations)) => {
                assert_eq!(violations[0].field, "since");
            }
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
        let enough = (0..MAX_AGGREGATES_READ as i64).map(|i| UsageAggregate {
            hour: micros(i % 24 * HOUR_US),
            per_user: true,
            key: UsageKey::default(),
            totals: UsageTotals::default(),
        });
        assert_eq!(group_usage(&query, enough).unwrap().len(), 1);
    }

    fn field_at_fault(result: Result<UsageFilter, ServiceError>) -> String {
        match result {
            Err(ServiceError::InvalidArgument(violations)) => violations[0].field.clone(),
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }
}
