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
    assert_eq!(created["onPromptChange"], true);
    assert_eq!(created["paused"], false);
    assert!(created["nextRunAt"].is_string(), "{created}");
    let template = &created["runTemplate"];
    assert_eq!(template["datasetId"], qa.as_str());
    assert_eq!(template["promptName"], "greet");
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
    assert_eq!(set["minPassRate"], 0.9);
    assert_eq!(set["noRegression"], true);
    assert!(set["createdAt"].is_string(), "{set}");
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

/// Runs the binary with `args` and returns (exit code, stdout, stderr).
async fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_llmops"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .await
        .expect("the llmops binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `config show --json` printed TOML-like text, and a webhook URL's password appeared in
/// `config show`: now it is JSON, and credentials in URLs are redacted in both forms.
#[tokio::test]
async fn config_show_prints_json_and_never_a_url_password() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("llmops.toml");
    std::fs::write(
        &file,
        "[[webhooks]]\nname = \"ops\"\nurl = \"http://ops:hunter2-PASS@127.0.0.1:9/hook\"\n",
    )
    .unwrap();
    let config = file.to_str().unwrap();
    let (code, text, stderr) = run_binary(&["config", "show", "--config", config], &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        text.contains("listen = \"127.0.0.1:50051\"    # default"),
        "{text}"
    );
    assert!(text.contains("[REDACTED]@127.0.0.1:9/hook"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");

    let (code, json, stderr) =
        run_binary(&["config", "show", "--json", "--config", config], &[]).await;
    assert_eq!(code, 0, "{stderr}");
    let shown: Value = serde_json::from_str(&json).expect("config show --json prints JSON");
    assert_eq!(shown["listen"]["value"], "127.0.0.1:50051");
    assert_eq!(shown["listen"]["source"], "default");
    assert_eq!(shown["prompts.max_render_memory"]["value"], 67_108_864);
    assert!(!json.contains("hunter2"), "{json}");
    assert!(json.contains("[REDACTED]@127.0.0.1:9/hook"), "{json}");
}

/// `llmops config show | head -1` panicked about one time in ten ("failed printing to
/// stdout: Broken pipe", exit 101). A closed stdout ends any command quietly.
#[tokio::test]
async fn a_closed_stdout_ends_a_command_quietly() {
    let server = TestServer::start().await;
    prompt(&server, "greet", "1.0.0", "Hello {{ input }}").await;
    let address = server.address.to_string();
    for args in [
        vec!["config", "show"],
        vec!["--server", &address, "prompt", "list"],
        vec!["--server", &address, "--json", "prompt", "list"],
    ] {
        // The reading end is closed before the command starts: every write fails.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_llmops"))
            .args(&args)
            .stdout(writer)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// With `--json`, an error is one JSON object on stderr: the code, the message and the
/// field violations, for a refused call and for a server that cannot be reached.
#[tokio::test]
async fn json_errors_are_json_objects_on_stderr() {
    let server = TestServer::start().await;
    let address = server.address.to_string();
    let (code, stdout, stderr) = run_binary(
        &["--server", &address, "--json", "prompt", "get", "missing"],
        &[],
    )
    .await;
    assert_eq!(code, 1);
    assert!(stdout.is_empty(), "{stdout}");
    let error: Value = serde_json::from_str(stderr.trim()).expect("one JSON object");
    assert_eq!(error["code"], "NOT_FOUND", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("missing"),
        "{error}"
    );
    assert_eq!(error["violations"], serde_json::json!([]));

    let (code, _, stderr) = run_binary(
        &[
            "--server",
            &address,
            "--json",
            "prompt",
            "render",
            "Bad Name!",
        ],
        &[],
    )
    .await;
    assert_eq!(code, 1);
    let error: Value = serde_json::from_str(stderr.trim()).expect("one JSON object");
    assert_eq!(error["code"], "INVALID_ARGUMENT", "{error}");
    assert!(error["violations"][0]["field"].is_string(), "{error}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = closed.local_addr().unwrap().to_string();
    drop(closed);
    let (code, _, stderr) =
        run_binary(&["--server", &nowhere, "--json", "prompt", "list"], &[]).await;
    assert_eq!(code, 1);
    let error: Value = serde_json::from_str(stderr.trim()).expect("one JSON object");
    assert_eq!(error["code"], "UNAVAILABLE", "{error}");
}

/// Human logs wrote colour codes into a redirected file; colour is for terminals only.
#[tokio::test]
async fn logs_redirected_to_a_file_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_llmops"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let text = loop {
        let text = std::fs::read_to_string(&log_path).unwrap();
        if text.contains("llmops is serving") {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never served: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    child.kill().await.unwrap();
    assert!(!text.contains('\u{1b}'), "colour codes in a file: {text:?}");
}
