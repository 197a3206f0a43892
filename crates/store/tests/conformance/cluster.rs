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
