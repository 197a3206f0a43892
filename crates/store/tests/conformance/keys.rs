//! `KeyStore`: keys round-trip with their secret's hash, names and secrets are unique,
//! a revocation sticks, uses only move forward, the first admin is stored once, and
//! everything survives a reopen.

use chrono::{DateTime, Duration, Utc};
use llmops_access::{ApiKey, AuditEvent, AuditQuery, Role, StoredKey};
use llmops_core::StoreError;

use crate::database::TestDatabase;
use crate::fixtures::now;

fn key(id: &str, role: Role) -> StoredKey {
    StoredKey {
        key: ApiKey {
            id: id.into(),
            name: format!("{id}-name"),
            role,
            description: format!("what {id} is for"),
            created_at: now(),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            secret_prefix: "llmops_abcd".into(),
            requests_per_second: 7,
        },
        // Distinct per id, as the hashes of distinct secrets are.
        secret_hash: format!(
            "{:0>64}",
            id.bytes().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

pub(crate) async fn keys_round_trip_and_names_and_secrets_are_unique(db: TestDatabase) {
    let storage = db.open().await;
    let store = storage.keys.clone();
    let first = key("k1", Role::Editor);
    store.insert_key(&first).await.unwrap();
    assert_eq!(store.get_key("k1").await.unwrap(), Some(first.clone()));
    assert_eq!(store.get_key("nope").await.unwrap(), None);

    let same_name = StoredKey {
        key: ApiKey {
            id: "k2".into(),
            ..first.key.clone()
        },
        secret_hash: "f".repeat(64),
    };
    assert!(matches!(
        store.insert_key(&same_name).await,
        Err(StoreError::Duplicate(_))
    ));
    let same_secret = StoredKey {
        key: ApiKey {
            id: "k3".into(),
            name: "other".into(),
            ..first.key.clone()
        },
        ..first.clone()
    };
    assert!(matches!(
        store.insert_key(&same_secret).await,
        Err(StoreError::Duplicate(_))
    ));

    // A revocation sticks at its first time; unknown keys are None.
    let at = now() + Duration::seconds(5);
    let revoked = store.revoke_key("k1", at).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(at));
    let again = store
        .revoke_key("k1", at + Duration::seconds(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.revoked_at, Some(at));
    assert_eq!(store.revoke_key("nope", at).await.unwrap(), None);

    // Uses move last_used_at forward only.
    let used = now() + Duration::seconds(60);
    store
        .record_use(&[("k1".into(), used), ("nope".into(), used)])
        .await
        .unwrap();
    store
        .record_use(&[("k1".into(), used - Duration::seconds(30))])
        .await
        .unwrap();
    let stored = store.get_key("k1").await.unwrap().unwrap();
    assert_eq!(stored.key.last_used_at, Some(used));
    assert_eq!(stored.key.revoked_at, Some(at));

    let storage = db.reopen(storage).await;
    let loaded = storage.keys.load_keys().await.unwrap();
    assert_eq!(loaded, vec![stored]);
}

pub(crate) async fn the_first_admin_is_stored_only_while_no_admin_key_is_usable(db: TestDatabase) {
    let storage = db.open().await;
    let store = storage.keys.clone();
    // Keys of other roles do not count.
    store
        .insert_key(&key("reader", Role::Reader))
        .await
        .unwrap();
    assert!(store
        .insert_first_admin(&key("admin1", Role::Admin), now())
        .await
        .unwrap());
    assert!(!store
        .insert_first_admin(&key("admin-2", Role::Admin), now())
        .await
        .unwrap());
    // Revoked, the admin key no longer counts; nor does an expired one.
    store.revoke_key("admin1", now()).await.unwrap();
    let mut expiring = key("admin-3", Role::Admin);
    expiring.key.expires_at = Some(now() + Duration::seconds(10));
    assert!(store.insert_first_admin(&expiring, now()).await.unwrap());
    assert!(!store
        .insert_first_admin(&key("admin-44", Role::Admin), now())
        .await
        .unwrap());
    assert!(store
        .insert_first_admin(
            &key("admin-444", Role::Admin),
            now() + Duration::seconds(11)
        )
        .await
        .unwrap());
    assert_eq!(store.load_keys().await.unwrap().len(), 4);
}

fn audit_event(
    base: DateTime<Utc>,
    n: u32,
    actor: &str,
    method: &str,
    resource: &str,
) -> AuditEvent {
    AuditEvent {
        // UUIDv7-shaped ids in the order of `n`, as the writer makes them.
        id: format!("0190a000-0000-7000-8000-{n:012}"),
        time: base + Duration::seconds(i64::from(n)),
        actor: actor.into(),
        api_key_id: format!("key_{actor}"),
        method: format!("llmops.v1.PromptService/{method}"),
        resource: resource.into(),
        code: if n % 2 == 0 {
            "OK"
        } else {
            "PERMISSION_DENIED"
        }
        .into(),
        request_id: format!("req-{n}"),
    }
}

pub(crate) async fn audit_entries_are_filtered_paged_newest_first_and_pruned(db: TestDatabase) {
    let storage = db.open().await;
    let base = now();
    let events = vec![
        audit_event(base, 1, "ci", "CreatePromptVersion", "greet/1.0.0"),
        audit_event(base, 2, "ci", "SetPromptLabel", "greet/1.0.0/staging"),
        audit_event(
            base,
            3,
            "ops",
            "SetPromptLabel",
            "greeting/1.0.0/production",
        ),
        audit_event(base, 4, "ops", "DeletePrompt", "greet"),
    ];
    storage.audit.append_audit(&events[..2]).await.unwrap();
    storage.audit.append_audit(&events[2..]).await.unwrap();
    let all = |query: AuditQuery| {
        let audit = storage.audit.clone();
        async move {
            audit
                .list_audit(&AuditQuery { limit: 10, ..query })
                .await
                .unwrap()
        }
    };
    let ids =
        |events: Vec<AuditEvent>| events.into_iter().map(|e| e.request_id).collect::<Vec<_>>();

    assert_eq!(all(AuditQuery::default()).await, {
        let mut newest_first = events.clone();
        newest_first.reverse();
        newest_first
    });
    let by_ops = AuditQuery {
        actor: Some("ops".into()),
        ..AuditQuery::default()
    };
    assert_eq!(ids(all(by_ops).await), ["req-4", "req-3"]);
    let labels = AuditQuery {
        method: Some("llmops.v1.PromptService/SetPromptLabel".into()),
        ..AuditQuery::default()
    };
    assert_eq!(ids(all(labels).await), ["req-3", "req-2"]);
    // A resource matches itself and what is under it, not a longer name.
    let greet = AuditQuery {
        resource: Some("greet".into()),
        ..AuditQuery::default()
    };
    assert_eq!(ids(all(greet).await), ["req-4", "req-2", "req-1"]);
    let window = AuditQuery {
        since: Some(base + Duration::seconds(2)),
        until: Some(base + Duration::seconds(4)),
        ..AuditQuery::default()
    };
    assert_eq!(ids(all(window).await), ["req-3", "req-2"]);
    // Pages walk by id.
    let page = storage
        .audit
        .list_audit(&AuditQuery {
            limit: 2,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(page.clone()), ["req-4", "req-3"]);
    let next = AuditQuery {
        before_id: Some(page[1].id.clone()),
        ..AuditQuery::default()
    };
    assert_eq!(ids(all(next).await), ["req-2", "req-1"]);

    let pruned = storage
        .audit
        .prune_audit(base + Duration::seconds(3))
        .await
        .unwrap();
    assert_eq!(pruned, 2);
    drop(storage);
    let reopened = db.open().await;
    let left = reopened
        .audit
        .list_audit(&AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(left), ["req-4", "req-3"]);
}
