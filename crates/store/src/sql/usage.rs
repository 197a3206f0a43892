//! The hourly usage aggregates, kept by the transactions that store generations.
//!
//! An insert transaction of generations first updates the `generations` row of
//! `event_sequences`; on PostgreSQL that row stays locked until the transaction ends, so
//! the insert transactions of every process run their aggregate updates one at a time
//! (on SQLite the one writer connection does the same). Each then adds the generations
//! that were new to the aggregates they fall in: it reads those aggregates, merges
//! (sums, and latency histograms, merged in Rust) and writes them back. A repeated
//! id inserts nothing and adds nothing, so each generation is counted exactly once, and
//! a usage query sees every generation whose logging has been answered.
//!
//! Every generation is counted twice: in the aggregate of its attribution without the
//! user, which stays small, and in the one with the user, read only when grouping by
//! user.

use std::collections::{BTreeMap, HashMap};

use llmops_core::StoreError;
use llmops_generations::{
    hour_of, Generation, LatencyHistogram, UsageAggregate, UsageFilter, UsageKey, UsageTotals,
};
use sqlx::{Pool, QueryBuilder, Row, Transaction};

use super::Db;
use crate::codec::{from_micros, to_micros};
use crate::error::{corrupt, db_error};

/// Aggregates per statement (15 parameters each).
const ROWS_PER_STATEMENT: usize = 500;

/// An aggregate's place: its hour, whether it is per user, and its key.
type Place = (i64, bool, UsageKey);

/// Adds `generations` (stored by `tx`) to the aggregates, inside `tx`, which must hold
/// the `generations` lock.
pub(crate) async fn add(
    tx: &mut Transaction<'_, Db>,
    generations: &[&Generation],
) -> Result<(), sqlx::Error> {
    if generations.is_empty() {
        return Ok(());
    }
    // Grouped by borrowed attribution first, so that keys are owned per aggregate, not
    // per generation (this runs inside every insert transaction).
    let mut grouped: HashMap<(i64, bool, [&str; 6]), UsageTotals> = HashMap::new();
    for g in generations {
        let hour = hour_of(to_micros(g.time()));
        let key = [
            g.prompt_name.as_str(),
            &g.prompt_version,
            &g.model,
            &g.experiment_id,
            &g.variant_id,
            &g.user_id,
        ];
        let mut without_user = key;
        without_user[5] = "";
        grouped
            .entry((hour, true, key))
            .or_default()
            .add_generation(g);
        grouped
            .entry((hour, false, without_user))
            .or_default()
            .add_generation(g);
    }
    let deltas: BTreeMap<Place, UsageTotals> = grouped
        .into_iter()
        .map(|((hour, per_user, key), totals)| {
            ((hour, per_user, UsageKey::from_parts(key)), totals)
        })
        .collect();
    let places: Vec<Place> = deltas.keys().cloned().collect();
    let mut merged = stored(tx, &places).await?;
    for (place, delta) in deltas {
        merged.entry(place).or_default().merge(&delta);
    }
    store(tx, merged).await
}

/// A count as the databases' BIGINT.
fn saturating_i64(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// The stored aggregates at `places` (under the `generations` lock, so nobody else
/// changes them before this transaction ends).
async fn stored(
    tx: &mut Transaction<'_, Db>,
    places: &[Place],
) -> Result<BTreeMap<Place, UsageTotals>, sqlx::Error> {
    // By hour and grain, then keys: equality on the key's first columns and IN on the
    // last is an index search on both databases (SQLite scans the whole table for an IN
    // of row values).
    let mut by_hour: BTreeMap<(i64, bool), Vec<String>> = BTreeMap::new();
    for (hour, per_user, key) in places {
        by_hour
            .entry((*hour, *per_user))
            .or_default()
            .push(key.encode());
    }
    let mut found = BTreeMap::new();
    for ((hour, per_user), keys) in by_hour {
        for chunk in keys.chunks(ROWS_PER_STATEMENT) {
            let mut select = QueryBuilder::<Db>::new(format!(
                "SELECT {COLUMNS} FROM usage_hourly WHERE bucket_us = "
            ));
            select
                .push_bind(hour)
                .push(" AND per_user = ")
                .push_bind(per_user)
                .push(" AND group_key IN (");
            let mut list = select.separated(", ");
            for key in chunk {
                list.push_bind(key.clone());
            }
            select.push(")");
            found.extend(read(tx, select).await?);
        }
    }
    Ok(found)
}

/// The aggregates `select` reads, by place.
async fn read(
    tx: &mut Transaction<'_, Db>,
    mut select: QueryBuilder<'_, Db>,
) -> Result<Vec<(Place, UsageTotals)>, sqlx::Error> {
    let rows = select.build().fetch_all(&mut **tx).await?;
    rows.iter()
        .map(|row| {
            let aggregate = aggregate_of(row).map_err(|err| sqlx::Error::Decode(err.into()))?;
            Ok((
                (to_micros(aggregate.hour), aggregate.per_user, aggregate.key),
                aggregate.totals,
            ))
        })
        .collect()
}

/// Writes `aggregates` over what is stored at their places.
async fn store(
    tx: &mut Transaction<'_, Db>,
    aggregates: BTreeMap<Place, UsageTotals>,
) -> Result<(), sqlx::Error> {
    let rows: Vec<(Place, UsageTotals)> = aggregates.into_iter().collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Db>::new(format!("INSERT INTO usage_hourly ({COLUMNS}) "));
        insert.push_values(chunk, |mut row, ((hour, per_user, key), totals)| {
            row.push_bind(*hour)
                .push_bind(*per_user)
                .push_bind(key.encode())
                .push_bind(key.prompt_name.clone())
                .push_bind(key.prompt_version.clone())
                .push_bind(key.model.clone())
                .push_bind(key.experiment_id.clone())
                .push_bind(key.variant_id.clone())
                .push_bind(key.user_id.clone())
                .push_bind(saturating_i64(totals.count))
                .push_bind(saturating_i64(totals.errors))
                .push_bind(saturating_i64(totals.input_tokens))
                .push_bind(saturating_i64(totals.output_tokens))
                .push_bind(totals.cost)
                .push_bind(totals.latency.encode());
        });
        insert.push(
            " ON CONFLICT (bucket_us, per_user, group_key) DO UPDATE SET \
             count = excluded.count, errors = excluded.errors, \
             input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens, \
             cost = excluded.cost, latency = excluded.latency",
        );
        insert.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// An aggregate's columns, in the order [`aggregate_of`] and [`store`] use.
const COLUMNS: &str = "bucket_us, per_user, group_key, prompt_name, prompt_version, model, \
     experiment_id, variant_id, user_id, count, errors, input_tokens, output_tokens, cost, \
     latency";

fn aggregate_of(row: &<Db as sqlx::Database>::Row) -> Result<UsageAggregate, StoreError> {
    let get = |err: sqlx::Error| corrupt("usage aggregate", err);
    let count = |column: &str| -> Result<u64, StoreError> {
        Ok(u64::try_from(row.try_get::<i64, _>(column).map_err(get)?).unwrap_or(0))
    };
    let latency: String = row.try_get("latency").map_err(get)?;
    Ok(UsageAggregate {
        hour: from_micros(row.try_get("bucket_us").map_err(get)?),
        per_user: row.try_get("per_user").map_err(get)?,
        key: UsageKey {
            prompt_name: row.try_get("prompt_name").map_err(get)?,
            prompt_version: row.try_get("prompt_version").map_err(get)?,
            model: row.try_get("model").map_err(get)?,
            experiment_id: row.try_get("experiment_id").map_err(get)?,
            variant_id: row.try_get("variant_id").map_err(get)?,
            user_id: row.try_get("user_id").map_err(get)?,
        },
        totals: UsageTotals {
            count: count("count")?,
            errors: count("errors")?,
            input_tokens: count("input_tokens")?,
            output_tokens: count("output_tokens")?,
            cost: row.try_get("cost").map_err(get)?,
            latency: LatencyHistogram::decode(&latency)
                .map_err(|err| corrupt("usage aggregate", err))?,
        },
    })
}

/// The aggregates `filter` selects.
pub(crate) async fn aggregates(
    reader: &Pool<Db>,
    filter: &UsageFilter,
) -> Result<Vec<UsageAggregate>, StoreError> {
    let mut select = QueryBuilder::<Db>::new(format!(
        "SELECT {COLUMNS} FROM usage_hourly WHERE per_user = "
    ));
    select
        .push_bind(filter.per_user)
        .push(" AND bucket_us >= ")
        .push_bind(to_micros(filter.since))
        .push(" AND bucket_us < ")
        .push_bind(to_micros(filter.until));
    for (column, value) in [
        ("prompt_name", &filter.prompt_name),
        ("model", &filter.model),
        ("experiment_id", &filter.experiment_id),
    ] {
        if let Some(value) = value {
            select
                .push(format!(" AND {column} = "))
                .push_bind(value.clone());
        }
    }
    select
        .push(" LIMIT ")
        .push_bind(i64::try_from(filter.limit).unwrap_or(i64::MAX));
    let rows = select.build().fetch_all(reader).await.map_err(db_error)?;
    rows.iter().map(aggregate_of).collect()
}
