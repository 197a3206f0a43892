//! What an online evaluation has seen: totals per minute and attribution, kept by the
//! transactions that store scores, merged into the groups and buckets a query asks for.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use llmops_generations::{LatencyHistogram, UsageDimension, UsageKey};
use serde::{Deserialize, Serialize};

use crate::EvaluationError;

/// Aggregates are kept per minute of the generations' time.
pub const MINUTE_US: i64 = 60_000_000;
/// Groups times buckets one answer holds at most.
const MAX_ROWS: usize = 10_000;
/// The widest range one query covers.
const MAX_SPAN: Duration = Duration::from_secs(31 * 24 * 3600);

/// One metric's scores.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricTotals {
    /// Scores.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// Scores that reached the metric's threshold.
    pub passed: u64,
}

impl MetricTotals {
    /// The mean score; 0 when none.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// The share that reached the threshold; 0 when none.
    pub fn pass_rate(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.passed as f64 / self.count as f64
        }
    }
}

/// Totals of some samples of one online evaluation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OnlineTotals {
    /// Samples waiting to be scored (counted when read, not stored).
    #[serde(skip)]
    pub queued: u64,
    /// Samples scored.
    pub scored: u64,
    /// Samples that could not be scored (the generation had failed, a judge did not
    /// answer).
    pub failed: u64,
    /// Scored samples whose every metric reached its threshold.
    pub passed: u64,
    /// The generations' cost.
    pub cost: f64,
    /// What the judges' calls cost, where the providers say.
    pub judge_cost: f64,
    /// The generations' latencies.
    #[serde(with = "histogram")]
    pub latency: LatencyHistogram,
    /// Per metric.
    pub metrics: BTreeMap<String, MetricTotals>,
}

impl OnlineTotals {
    /// Samples taken: queued, scored or failed.
    pub fn sampled(&self) -> u64 {
        self.queued + self.scored + self.failed
    }

    /// The share of scored samples that passed; 0 when none.
    pub fn pass_rate(&self) -> f64 {
        if self.scored == 0 {
            0.0
        } else {
            self.passed as f64 / self.scored as f64
        }
    }

    /// Adds `other`.
    pub fn merge(&mut self, other: &Self) {
        self.queued += other.queued;
        self.scored += other.scored;
        self.failed += other.failed;
        self.passed += other.passed;
        self.cost += other.cost;
        self.judge_cost += other.judge_cost;
        self.latency.merge(&other.latency);
        for (name, metric) in &other.metrics {
            let mine = self.metrics.entry(name.clone()).or_default();
            mine.count += metric.count;
            mine.sum += metric.sum;
            mine.passed += metric.passed;
        }
    }
}

/// The latency histogram in its compact text form.
mod histogram {
    use llmops_generations::LatencyHistogram;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &LatencyHistogram,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.encode())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<LatencyHistogram, D::Error> {
        let text = String::deserialize(deserializer)?;
        LatencyHistogram::decode(&text).map_err(serde::de::Error::custom)
    }
}

/// The attribution online totals are kept by (a usage key without a user).
pub type OnlineGroupKey = UsageKey;

/// One minute's totals of one attribution.
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineAggregateRow {
    /// The minute's start (µs).
    pub minute_us: i64,
    /// The attribution.
    pub key: OnlineGroupKey,
    /// The totals.
    pub totals: OnlineTotals,
}

/// A stats query.
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineStatsQuery {
    /// The online evaluation.
    pub evaluation_id: String,
    /// The dimensions (prompt, prompt version, model, experiment variant; none: one
    /// group).
    pub group_by: Vec<UsageDimension>,
    /// The start; rounded down to a bucket.
    pub since: DateTime<Utc>,
    /// The end (exclusive); rounded up to a bucket.
    pub until: DateTime<Utc>,
    /// The buckets' width: whole minutes.
    pub bucket: Duration,
}

impl OnlineStatsQuery {
    /// Checks the query; the range rounded out to whole buckets (µs).
    pub fn range(&self) -> Result<(i64, i64), EvaluationError> {
        let invalid = |field: &str, message: String| EvaluationError::invalid(field, message);
        if self.group_by.contains(&UsageDimension::User) {
            return Err(invalid(
                "group_by",
                "online statistics are not kept per user".to_owned(),
            ));
        }
        let width = self.bucket_us();
        if self.bucket.as_secs() % 60 != 0 || self.bucket.subsec_nanos() != 0 || width == 0 {
            return Err(invalid("bucket", "must be whole minutes".to_owned()));
        }
        if self.until <= self.since {
            return Err(invalid("until", "must be later than since".to_owned()));
        }
        let since = floor(self.since.timestamp_micros(), width);
        let until = ceil(self.until.timestamp_micros(), width);
        if until.saturating_sub(since) > MAX_SPAN.as_micros() as i64 {
            return Err(invalid(
                "since",
                format!(
                    "the range covers more than {}; query a shorter one",
                    humantime::format_duration(MAX_SPAN)
                ),
            ));
        }
        Ok((since, until))
    }

    fn bucket_us(&self) -> i64 {
        i64::try_from(self.bucket.as_micros()).unwrap_or(i64::MAX)
    }

    fn group_key(&self, key: &OnlineGroupKey) -> OnlineGroupKey {
        let mut group = OnlineGroupKey::default();
        for dimension in &self.group_by {
            match dimension {
                UsageDimension::Prompt => group.prompt_name.clone_from(&key.prompt_name),
                UsageDimension::PromptVersion => {
                    group.prompt_name.clone_from(&key.prompt_name);
                    group.prompt_version.clone_from(&key.prompt_version);
                }
                UsageDimension::Model => group.model.clone_from(&key.model),
                UsageDimension::User => {}
                UsageDimension::ExperimentVariant => {
                    group.experiment_id.clone_from(&key.experiment_id);
                    group.variant_id.clone_from(&key.variant_id);
                }
            }
        }
        group
    }
}

/// One group in one bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineGroup {
    /// The bucket's start.
    pub bucket_start: DateTime<Utc>,
    /// The fields of the dimensions grouped by (the others empty).
    pub key: OnlineGroupKey,
    /// What it counts.
    pub totals: OnlineTotals,
}

/// Merges per-minute rows into the query's groups and buckets, ordered by bucket then
/// group.
pub fn group_online(
    query: &OnlineStatsQuery,
    rows: impl IntoIterator<Item = OnlineAggregateRow>,
) -> Result<Vec<OnlineGroup>, EvaluationError> {
    let width = query.bucket_us();
    let mut groups: BTreeMap<(i64, OnlineGroupKey), OnlineTotals> = BTreeMap::new();
    for row in rows {
        let bucket = floor(row.minute_us, width);
        groups
            .entry((bucket, query.group_key(&row.key)))
            .or_default()
            .merge(&row.totals);
        if groups.len() > MAX_ROWS {
            return Err(EvaluationError::invalid(
                "bucket",
                format!("the answer would hold more than {MAX_ROWS} groups and buckets; narrow the range, widen the bucket or group by fewer dimensions"),
            ));
        }
    }
    Ok(groups
        .into_iter()
        .map(|((bucket, key), totals)| OnlineGroup {
            bucket_start: DateTime::from_timestamp_micros(bucket).unwrap_or_default(),
            key,
            totals,
        })
        .collect())
}

/// The start of the `width`-wide bucket `time_us` falls in (buckets start at the epoch).
pub(super) fn floor(time_us: i64, width: i64) -> i64 {
    time_us - time_us.rem_euclid(width)
}

fn ceil(time_us: i64, width: i64) -> i64 {
    let floored = floor(time_us, width);
    if floored == time_us {
        time_us
    } else {
        floored.saturating_add(width)
    }
}
