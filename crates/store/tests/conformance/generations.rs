//! `GenerationStore`: only new ids are stored (also within one batch), filters and pages
//! run newest first, pruning removes what started before the cutoff, and everything
//! survives a reopen.

use chrono::Duration;
use llmops_generations::{Generation, GenerationQuery, GenerationStatus, UsageFilter};

use crate::database::TestDatabase;
use crate::fixtures::now;

fn generation(
    id: &str,
    version: &str,
    second: i64,
    base: chrono::DateTime<chrono::Utc>,
) -> Generation {
    Generation {
        id: id.into(),
        prompt_name: "greet".into(),
        prompt_version: version.into(),
        model: "m".into(),
        user_id: format!("u{second}"),
        output: format!("answer {id}"),
        start_time: Some(base + Duration::seconds(second)),
        logged_at: Some(base),
        cost: Some(0.5),
        ..Generation::default()
    }
}

pub(crate) async fn generations_are_stored_once_filtered_paged_and_pruned(db: TestDatabase) {
    let storage = db.open().await;
    let store = storage.generations.clone();
    let base = now();
    let first = vec![
        generation("a", "1.0.0", 1, base),
        generation("b", "1.1.0", 2, base),
        generation("a", "9.9.9", 9, base),
    ];
    let mut new = store.insert_generations(&first).await.unwrap();
    new.sort();
    assert_eq!(
        new,
        ["a", "b"],
        "a repeated id within a batch is stored once"
    );
    let errored = Generation {
        status: GenerationStatus::Error,
        error: "timeout".into(),
        ..generation("c", "1.0.0", 3, base)
    };
    let new = store
        .insert_generations(&[generation("b", "2.0.0", 2, base), errored.clone()])
        .await
        .unwrap();
    assert_eq!(new, ["c"]);
    assert_eq!(store.get_generation("c").await.unwrap(), Some(errored));
    assert_eq!(
        store
            .get_generation("a")
            .await
            .unwrap()
            .unwrap()
            .prompt_version,
        "1.0.0"
    );
    assert_eq!(store.get_generation("z").await.unwrap(), None);

    let ids = |page: Vec<Generation>| page.into_iter().map(|g| g.id).collect::<Vec<_>>();
    let query = |q: GenerationQuery| {
        let store = store.clone();
        async move {
            ids(store
                .list_generations(&GenerationQuery { limit: 10, ..q })
                .await
                .unwrap())
        }
    };
    assert_eq!(query(GenerationQuery::default()).await, ["c", "b", "a"]);
    let version = GenerationQuery {
        prompt_version: Some("1.0.0".into()),
        ..GenerationQuery::default()
    };
    assert_eq!(query(version).await, ["c", "a"]);
    let errors = GenerationQuery {
        status: Some(GenerationStatus::Error),
        ..GenerationQuery::default()
    };
    assert_eq!(query(errors).await, ["c"]);
    let user = GenerationQuery {
        user_id: Some("u2".into()),
        ..GenerationQuery::default()
    };
    assert_eq!(query(user).await, ["b"]);
    let window = GenerationQuery {
        since: Some(base + Duration::seconds(2)),
        until: Some(base + Duration::seconds(3)),
        ..GenerationQuery::default()
    };
    assert_eq!(query(window).await, ["b"]);
    let after_b = GenerationQuery {
        before: Some((base + Duration::seconds(2), "b".into())),
        ..GenerationQuery::default()
    };
    assert_eq!(query(after_b).await, ["a"]);

    assert_eq!(
        store
            .prune_generations(base + Duration::seconds(2))
            .await
            .unwrap(),
        1
    );
    drop(storage);
    let reopened = db.open().await;
    let left = reopened
        .generations
        .list_generations(&GenerationQuery {
            limit: 10,
            ..GenerationQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(left), ["c", "b"]);
}

/// Every aggregate `filter` selects, summed: (generations, errors, output tokens).
async fn usage_totals(
    store: &std::sync::Arc<dyn llmops_generations::GenerationStore>,
    per_user: bool,
    base: chrono::DateTime<chrono::Utc>,
) -> (u64, u64, u64) {
    let aggregates = store
        .usage_aggregates(&UsageFilter {
            per_user,
            since: base - Duration::days(1),
            until: base + Duration::days(1),
            limit: 10_000,
            ..UsageFilter::default()
        })
        .await
        .unwrap();
    aggregates.iter().fold((0, 0, 0), |(n, e, t), a| {
        (
            n + a.totals.count,
            e + a.totals.errors,
            t + a.totals.output_tokens,
        )
    })
}

pub(crate) async fn usage_counts_each_generation_once_whoever_stores_it(db: TestDatabase) {
    // Two processes' stores on one database, each logging (and retrying) at once, as
    // replicas do: the aggregates count every new generation once.
    let (one, two) = (db.open().await, db.open().await);
    let base = now();
    let mut writers = Vec::new();
    for (w, storage) in [&one, &two, &one].into_iter().enumerate() {
        let store = storage.generations.clone();
        writers.push(tokio::spawn(async move {
            for batch in 0..10 {
                let generations: Vec<Generation> = (0..50)
                    .map(|i| Generation {
                        status: if i % 10 == 0 {
                            GenerationStatus::Error
                        } else {
                            GenerationStatus::Ok
                        },
                        output_tokens: 3,
                        latency_ms: f64::from(i + 1),
                        ..generation(&format!("w{w}-b{batch}-{i}"), "1.0.0", i64::from(i), base)
                    })
                    .collect();
                store.insert_generations(&generations).await.unwrap();
                // A retried batch, and one repeating an id within itself, add nothing.
                store.insert_generations(&generations[..5]).await.unwrap();
                let twice = vec![generations[7].clone(), generations[7].clone()];
                store.insert_generations(&twice).await.unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(
        usage_totals(&one.generations, false, base).await,
        (1500, 150, 4500)
    );
    assert_eq!(
        usage_totals(&two.generations, true, base).await,
        (1500, 150, 4500)
    );
    // A query reads at most its limit.
    let limited = two
        .generations
        .usage_aggregates(&UsageFilter {
            per_user: true,
            since: base - Duration::days(1),
            until: base + Duration::days(1),
            limit: 3,
            ..UsageFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 3);
    let one = db.reopen(one).await;
    assert_eq!(
        usage_totals(&one.generations, false, base).await,
        (1500, 150, 4500)
    );
    // New generations (and a repeated one) keep adding exactly.
    let more = vec![
        generation("late-1", "1.1.0", 1, base),
        generation("late-1", "1.1.0", 1, base),
        generation("w0-b0-0", "1.0.0", 0, base),
    ];
    assert_eq!(
        one.generations.insert_generations(&more).await.unwrap(),
        ["late-1"]
    );
    assert_eq!(
        usage_totals(&one.generations, false, base).await,
        (1501, 150, 4500)
    );

    // Retention removes whole hours that ended by the cutoff, and only those.
    let hour = chrono::DurationRound::duration_trunc(base, Duration::hours(1)).unwrap();
    let kept = one
        .generations
        .prune_usage(hour + Duration::minutes(30))
        .await
        .unwrap();
    assert_eq!(
        kept, 0,
        "the hour of the generations has not ended by the cutoff"
    );
    assert_eq!(
        usage_totals(&one.generations, true, base).await,
        (1501, 150, 4500)
    );
    let pruned = one
        .generations
        .prune_usage(base + Duration::days(1))
        .await
        .unwrap();
    assert!(pruned >= 2, "{pruned}");
    assert_eq!(usage_totals(&one.generations, false, base).await, (0, 0, 0));
    assert_eq!(usage_totals(&one.generations, true, base).await, (0, 0, 0));
}
