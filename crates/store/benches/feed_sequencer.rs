//! What commit-ordered feed sequences cost on PostgreSQL: appends per second by many
//! concurrent writers, each append one transaction (take a sequence, insert an event,
//! commit), with the two ways of taking the sequence side by side in one run:
//!
//! - `counter row`: `UPDATE event_sequences ... RETURNING` (what llmops does), whose row
//!   lock is held to commit, so appends commit one at a time and in sequence order;
//! - `nextval`: a PostgreSQL sequence, which never waits but lets a later number commit
//!   before an earlier one (the gap the conformance suite's reader detects).
//!
//! `cargo bench -p llmops-store --bench feed_sequencer` (needs the server of
//! `LLMOPS_TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`).

use std::time::{Duration, Instant};

use llmops_store::scratch::ScratchSchema;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

const WRITERS: usize = 16;
const MEASURE: Duration = Duration::from_secs(3);
const ROUNDS: usize = 3;

#[derive(Clone, Copy, Debug)]
enum Mode {
    CounterRow,
    Nextval,
}

async fn append(pool: &PgPool, mode: Mode) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let sequence: i64 = match mode {
        Mode::CounterRow => sqlx::query_scalar(
            "UPDATE bench_sequences SET value = value + 1 WHERE stream = 'feed' RETURNING value",
        )
        .fetch_one(&mut *tx)
        .await?,
        Mode::Nextval => {
            sqlx::query_scalar("SELECT nextval('bench_feed_sequence')")
                .fetch_one(&mut *tx)
                .await?
        }
    };
    let insert = match mode {
        Mode::CounterRow => "INSERT INTO counter_events (sequence, payload) VALUES ($1, $2)",
        Mode::Nextval => "INSERT INTO nextval_events (sequence, payload) VALUES ($1, $2)",
    };
    sqlx::query(insert)
        .bind(sequence)
        .bind("{\"kind\":\"created\",\"prompt_name\":\"bench\"}")
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Appends per second with [`WRITERS`] concurrent writers for [`MEASURE`].
async fn measure(pool: &PgPool, mode: Mode) -> f64 {
    let deadline = Instant::now() + MEASURE;
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut appended = 0_u64;
                while Instant::now() < deadline {
                    append(&pool, mode).await.expect("append");
                    appended += 1;
                }
                appended
            })
        })
        .collect();
    let mut total = 0;
    for writer in writers {
        total += writer.await.expect("writer");
    }
    total as f64 / MEASURE.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let schema = ScratchSchema::create().await;
    let pool = PgPoolOptions::new()
        .max_connections(WRITERS as u32)
        .connect(schema.url())
        .await
        .expect("connect");
    for statement in [
        "CREATE TABLE bench_sequences (stream TEXT PRIMARY KEY, value BIGINT NOT NULL)",
        "INSERT INTO bench_sequences VALUES ('feed', 0)",
        "CREATE SEQUENCE bench_feed_sequence",
        "CREATE TABLE counter_events (sequence BIGINT PRIMARY KEY, payload TEXT NOT NULL)",
        "CREATE TABLE nextval_events (sequence BIGINT PRIMARY KEY, payload TEXT NOT NULL)",
    ] {
        sqlx::query(statement)
            .execute(&pool)
            .await
            .expect(statement);
    }
    println!("{WRITERS} writers, one transaction per append, {MEASURE:?} per measurement");
    let mut ratios = Vec::new();
    for round in 1..=ROUNDS {
        let counter = measure(&pool, Mode::CounterRow).await;
        let nextval = measure(&pool, Mode::Nextval).await;
        ratios.push(counter / nextval);
        println!(
            "round {round}: counter row {counter:.0} appends/s, nextval {nextval:.0} appends/s, ratio {:.2}",
            counter / nextval
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "median ratio counter row / nextval: {:.2}",
        ratios[ROUNDS / 2]
    );
    pool.close().await;
}
