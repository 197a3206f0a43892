//! `ClusterStore`: replicas, the leases of background roles (measured by the database's
//! clock) and the change log other processes' caches follow.

use std::time::Duration;

use crate::database::TestDatabase;

pub(crate) async fn a_lease_has_one_holder_until_it_lapses_or_is_freed(db: TestDatabase) {
    let storage = db.open().await;
    let cluster = &storage.cluster;
    let long = Duration::from_secs(60);
    assert!(cluster.acquire_lease("scheduler", "a", long).await.unwrap());
    assert!(
        !cluster.acquire_lease("scheduler", "b", long).await.unwrap(),
        "an unexpired lease is not taken"
    );
    let first = cluster.leases().await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].holder, "a");
    // Renewing extends the lease and keeps when it was taken.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(cluster.acquire_lease("scheduler", "a", long).await.unwrap());
    let renewed = cluster.leases().await.unwrap();
    assert_eq!(renewed[0].acquired_at_us, first[0].acquired_at_us);
    assert!(renewed[0].expires_at_us > first[0].expires_at_us);
    // Other roles are independent.
    assert!(cluster.acquire_lease("retention", "b", long).await.unwrap());

    // A lapsed lease goes to whoever asks next.
    let short = Duration::from_millis(50);
    assert!(cluster.acquire_lease("monitor", "a", short).await.unwrap());
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(cluster.acquire_lease("monitor", "b", long).await.unwrap());
    assert!(!cluster.acquire_lease("monitor", "a", long).await.unwrap());

    // A replica that stops frees its leases at once.
    cluster
        .register_replica("a", "10.0.0.1:50051", "0.1.0")
        .await
        .unwrap();
    cluster.stop_replica("a").await.unwrap();
    assert!(cluster.acquire_lease("scheduler", "b", long).await.unwrap());
    let replicas = cluster.replicas().await.unwrap();
    assert_eq!(replicas.len(), 1);
    assert!(replicas[0].stopped);
}

pub(crate) async fn racing_replicas_take_a_free_lease_once(db: TestDatabase) {
    let storage = db.open().await;
    let mut racers = Vec::new();
    for replica in 0..8 {
        let cluster = storage.cluster.clone();
        racers.push(tokio::spawn(async move {
            cluster
                .acquire_lease("scheduler", &format!("r{replica}"), Duration::from_secs(60))
                .await
                .unwrap()
        }));
    }
    let mut taken = 0;
    for racer in racers {
        taken += usize::from(racer.await.unwrap());
    }
    assert_eq!(taken, 1);
}

pub(crate) async fn heartbeats_move_and_old_replicas_are_forgotten(db: TestDatabase) {
    let storage = db.open().await;
    let cluster = &storage.cluster;
    cluster.register_replica("a", "a:1", "0.1.0").await.unwrap();
    let registered = cluster.replicas().await.unwrap()[0].clone();
    assert_eq!(registered.started_at_us, registered.heartbeat_at_us);
    assert!(!registered.stopped);
    tokio::time::sleep(Duration::from_millis(20)).await;
    cluster.heartbeat("a").await.unwrap();
    let beaten = cluster.replicas().await.unwrap()[0].clone();
    assert!(beaten.heartbeat_at_us > registered.heartbeat_at_us);
    let now = cluster.database_now_us().await.unwrap();
    assert!(now >= beaten.heartbeat_at_us);
    assert_eq!(
        cluster
            .prune_replicas(Duration::from_secs(60))
            .await
            .unwrap(),
        0
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        cluster
            .prune_replicas(Duration::from_millis(10))
            .await
            .unwrap(),
        1
    );
    assert!(cluster.replicas().await.unwrap().is_empty());
}

pub(crate) async fn definition_changes_are_logged_densely_in_commit_order(db: TestDatabase) {
    let storage = db.open().await;
    let head = storage.cluster.change_head().await.unwrap();
    let dataset = crate::datasets::dataset("d1");
    storage.datasets.insert_dataset(&dataset).await.unwrap();
    storage.datasets.update_dataset(&dataset).await.unwrap();
    storage.datasets.delete_dataset("d1").await.unwrap();
    // Deleting what is not there changes nothing, and logs nothing.
    storage.datasets.delete_dataset("d1").await.unwrap();
    let changes = storage.cluster.changes_after(head, 100).await.unwrap();
    let sequences: Vec<u64> = changes.iter().map(|c| c.sequence).collect();
    assert_eq!(sequences, [head + 1, head + 2, head + 3]);
    assert!(changes
        .iter()
        .all(|c| c.entity == "dataset" && c.key == "d1"));
    assert_eq!(storage.cluster.change_head().await.unwrap(), head + 3);
    // Pruning keeps recent changes.
    assert_eq!(
        storage
            .cluster
            .prune_changes(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
}

pub(crate) async fn call_slots_are_held_up_to_the_cap_until_released_or_lapsed(db: TestDatabase) {
    let storage = db.open().await;
    let cluster = &storage.cluster;
    let long = Duration::from_secs(60);
    let mut held = Vec::new();
    for holder in ["a", "b", "a"] {
        held.push(
            cluster
                .take_call_slot("gpt", 3, holder, long)
                .await
                .unwrap()
                .expect("a slot under the cap"),
        );
    }
    held.sort();
    assert_eq!(held, vec![0, 1, 2], "slots are numbered densely from 0");
    assert_eq!(
        cluster.take_call_slot("gpt", 3, "c", long).await.unwrap(),
        None,
        "a fourth call beside three holders of a cap of 3"
    );
    // Caps are per provider.
    assert!(cluster
        .take_call_slot("claude", 1, "c", long)
        .await
        .unwrap()
        .is_some());
    // Only the holder releases its slot.
    cluster
        .release_call_slot("gpt", held[0], "c")
        .await
        .unwrap();
    assert_eq!(
        cluster.take_call_slot("gpt", 3, "c", long).await.unwrap(),
        None
    );
    let a_slot = held[0];
    cluster.release_call_slot("gpt", a_slot, "a").await.ok();
    cluster.release_call_slot("gpt", a_slot, "b").await.ok();
    assert_eq!(
        cluster.take_call_slot("gpt", 3, "c", long).await.unwrap(),
        Some(a_slot),
        "a released slot is free"
    );
    // A lowered cap counts only the first slots; a raised one adds the next number.
    assert_eq!(
        cluster.take_call_slot("gpt", 2, "d", long).await.unwrap(),
        None
    );
    assert_eq!(
        cluster.take_call_slot("gpt", 4, "d", long).await.unwrap(),
        Some(3)
    );

    // A lapsed slot goes to the next caller unless its holder renewed it.
    let short = Duration::from_millis(300);
    let e = cluster
        .take_call_slot("judge", 2, "e", short)
        .await
        .unwrap()
        .unwrap();
    let f = cluster
        .take_call_slot("judge", 2, "f", short)
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(cluster.renew_call_slots("e", short).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        cluster.take_call_slot("judge", 2, "g", long).await.unwrap(),
        Some(f),
        "f's lapsed slot is taken, e's renewed one is not"
    );
    assert_eq!(
        cluster.take_call_slot("judge", 2, "g", long).await.unwrap(),
        None
    );
    let _ = e;

    // A replica that stops frees its slots at once.
    cluster.register_replica("d", "d:1", "0.1.0").await.unwrap();
    cluster.stop_replica("d").await.unwrap();
    assert_eq!(
        cluster.take_call_slot("gpt", 4, "h", long).await.unwrap(),
        Some(3)
    );
}

pub(crate) async fn racing_callers_never_hold_more_slots_than_the_cap(db: TestDatabase) {
    let storage = db.open().await;
    // The five slots exist and are free: the racers compete for the same rows, not
    // only to add new ones.
    let mut warm = Vec::new();
    for _ in 0..5 {
        warm.push(
            storage
                .cluster
                .take_call_slot("gpt", 5, "warm", Duration::from_secs(60))
                .await
                .unwrap()
                .unwrap(),
        );
    }
    for slot in warm {
        storage
            .cluster
            .release_call_slot("gpt", slot, "warm")
            .await
            .unwrap();
    }
    let mut racers = Vec::new();
    for caller in 0..12 {
        let cluster = storage.cluster.clone();
        racers.push(tokio::spawn(async move {
            cluster
                .take_call_slot("gpt", 5, &format!("r{caller}"), Duration::from_secs(60))
                .await
                .unwrap()
        }));
    }
    let mut slots = Vec::new();
    for racer in racers {
        slots.extend(racer.await.unwrap());
    }
    slots.sort();
    assert!(slots.len() <= 5, "{slots:?} given for a cap of 5");
    assert!(
        slots.windows(2).all(|pair| pair[0] != pair[1]),
        "one slot given twice: {slots:?}"
    );
    assert_eq!(slots.len(), 5, "five free slots, twelve racers: {slots:?}");
}

pub(crate) async fn call_starts_are_spaced_for_every_caller_together(db: TestDatabase) {
    let storage = db.open().await;
    let spacing = Duration::from_millis(100);
    let mut racers = Vec::new();
    for _ in 0..10 {
        let cluster = storage.cluster.clone();
        racers.push(tokio::spawn(async move {
            cluster.reserve_call_start("gpt", spacing).await.unwrap()
        }));
    }
    let mut waits = Vec::new();
    for racer in racers {
        waits.push(racer.await.unwrap());
    }
    waits.sort();
    // Ten reservations made within a few milliseconds get starts about 0, 100, ...,
    // 900 ms away: each one spacing after the previous.
    for (index, wait) in waits.iter().enumerate() {
        let ideal = spacing * index as u32;
        assert!(
            *wait <= ideal && ideal - *wait < Duration::from_millis(80),
            "reservation {index} waits {wait:?}, not about {ideal:?}: {waits:?}"
        );
    }
    // Another provider is paced apart.
    assert!(storage
        .cluster
        .reserve_call_start("claude", spacing)
        .await
        .unwrap()
        .is_zero());
}

pub(crate) async fn probed_health_is_stored_per_provider_and_replaced(db: TestDatabase) {
    use llmops_cluster::ProbeRow;
    let storage = db.open().await;
    let cluster = &storage.cluster;
    let row = |provider: &str, healthy: bool, failures: u32, at: i64| ProbeRow {
        provider: provider.into(),
        healthy,
        consecutive_failures: failures,
        last_error: if healthy {
            String::new()
        } else {
            "HTTP 503".into()
        },
        probed_at_us: at,
    };
    cluster
        .store_probes(&[row("gpt", true, 0, 1), row("claude", false, 3, 1)])
        .await
        .unwrap();
    cluster
        .store_probes(&[row("gpt", false, 2, 2)])
        .await
        .unwrap();
    assert_eq!(
        cluster.probes().await.unwrap(),
        vec![row("claude", false, 3, 1), row("gpt", false, 2, 2)]
    );
}
