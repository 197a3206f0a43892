//! `GateStore`: one gate per prompt and label, replaced in place, deleted, and reloaded
//! after a restart.

use llmops_evaluator::gates::ReleaseGate;

use crate::database::TestDatabase;
use crate::fixtures::now;

fn gate(prompt: &str, label: &str, min_pass_rate: f64) -> ReleaseGate {
    ReleaseGate {
        prompt_name: prompt.into(),
        label: label.into(),
        dataset_id: "d".into(),
        model: "echo".into(),
        min_pass_rate,
        no_regression: true,
        created_at: now(),
        updated_at: now(),
    }
}

pub(crate) async fn a_gate_per_prompt_and_label_is_replaced_and_deleted(db: TestDatabase) {
    let storage = db.open().await;
    let store = storage.gates.clone();
    store
        .upsert_gate(&gate("p", "production", 0.8))
        .await
        .unwrap();
    store.upsert_gate(&gate("p", "active", 0.5)).await.unwrap();
    let replaced = gate("p", "production", 0.95);
    store.upsert_gate(&replaced).await.unwrap();
    drop(store);

    let storage = db.reopen(storage).await;
    let store = storage.gates.clone();
    let loaded = store.load_gates().await.unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[1], replaced, "sorted by label; replaced in place");
    assert!(store.delete_gate("p", "active").await.unwrap());
    assert!(!store.delete_gate("p", "active").await.unwrap());
    assert_eq!(store.load_gates().await.unwrap(), vec![replaced]);
}

pub(crate) async fn gates_are_keyed_by_prompt_and_label_together(db: TestDatabase) {
    let storage = db.open().await;
    let store = storage.gates.clone();
    assert!(!store.delete_gate("p", "production").await.unwrap());
    let p = ReleaseGate {
        no_regression: false,
        model: "gpt-small".into(),
        dataset_id: "golden".into(),
        ..gate("p", "production", 0.9)
    };
    let q = gate("q", "production", 0.6);
    let staging = gate("p", "staging", 0.7);
    for gate in [&p, &q, &staging] {
        store.upsert_gate(gate).await.unwrap();
    }
    assert!(
        !store.delete_gate("r", "production").await.unwrap(),
        "no gate of prompt r"
    );
    assert!(
        !store.delete_gate("q", "staging").await.unwrap(),
        "no staging gate of q"
    );
    assert!(store.delete_gate("p", "staging").await.unwrap());
    drop(store);

    let storage = db.reopen(storage).await;
    let mut loaded = storage.gates.load_gates().await.unwrap();
    loaded.sort_by(|a, b| (&a.prompt_name, &a.label).cmp(&(&b.prompt_name, &b.label)));
    assert_eq!(
        loaded,
        [p, q],
        "the deletion is durable; other prompts' gates with the label stay whole"
    );
    assert!(!storage.gates.delete_gate("p", "staging").await.unwrap());
}
