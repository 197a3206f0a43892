//! The client commands end to end: the real `llmops` binary against a server started
//! in-process, reading what the commands print with `--json`.

mod common;

use common::eval::{dataset, prompt};
use common::TestServer;
use serde_json::Value;

/// Runs `llmops --server <server> --json <args>...`, which must succeed, and parses its
/// output.
async fn llmops(server: &TestServer, args: &[&str]) -> Value {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_llmops"))
        .arg("--server")
        .arg(server.address.to_string())
        .arg("--json")
        .args(args)
        .output()
        .await
        .expect("the llmops binary runs");
    assert!(
        output.status.success(),
        "llmops {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

/// A server with the prompt `greet` and a one-sample dataset; returns the dataset's id.
async fn server_with_prompt_and_dataset() -> (TestServer, String) {
    let server = TestServer::start().await;
    prompt(&server, "greet", "1.0.0", "Hello {{ input }}").await;
    let qa = dataset(&server, "qa", vec![("s1", "a", "Hello a")]).await;
    (server, qa)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_create_then_list() {
    let (server, qa) = server_with_prompt_and_dataset().await;
    let created = llmops(
        &server,
        &[
            "schedule",
            "create",
            "--dataset",
            &qa,
            "--prompt",
            "greet",
            "--model",
            "echo",
            "--metric",
            "exact=exact_match:0.9",
            "--schedule",
            "@daily",
            "--on-prompt-change",
            "--id",
            "nightly",
        ],
    )
    .await;
    assert_eq!(created["id"], "nightly");
    assert_eq!(created["schedule"], "@daily");
    assert_eq!(created["on_prompt_change"], true);
    assert_eq!(created["paused"], false);
    assert!(created["next_run_at"].is_string(), "{created}");
    let template = &created["run_template"];
    assert_eq!(template["dataset_id"], qa.as_str());
    assert_eq!(template["prompt_name"], "greet");
    assert_eq!(template["metrics"][0]["threshold"], 0.9);

    let listed = llmops(&server, &["schedule", "list"]).await;
    let listed = listed.as_array().expect("a JSON array");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], "nightly");
    assert_eq!(listed[0]["schedule"], "@daily");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_set_then_list() {
    let (server, qa) = server_with_prompt_and_dataset().await;
    let set = llmops(
        &server,
        &[
            "gate",
            "set",
            "greet",
            "production",
            "--dataset",
            &qa,
            "--model",
            "echo",
            "--min-pass-rate",
            "0.9",
            "--no-regression",
        ],
    )
    .await;
    assert_eq!(set["label"], "production");
    assert_eq!(set["min_pass_rate"], 0.9);
    assert_eq!(set["no_regression"], true);
    assert!(set["created_at"].is_string(), "{set}");
    let active = [
        "gate",
        "set",
        "greet",
        "active",
        "--dataset",
        &qa,
        "--model",
        "echo",
        "--min-pass-rate",
        "0.5",
    ];
    llmops(&server, &active).await;

    let listed = llmops(&server, &["gate", "list"]).await;
    let labels: Vec<&str> = listed
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|gate| gate["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["active", "production"]);
    let other = llmops(&server, &["gate", "list", "--prompt", "other"]).await;
    assert_eq!(other, Value::Array(Vec::new()));
}
