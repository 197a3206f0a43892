//! Every client command group driven through the built `llmops` binary against a
//! server, as the README's quickstart does: what each command prints (`--json`), its exit
//! code, and the error paths a user meets (a server that is down, an unknown name, a
//! file that is missing or malformed).

mod common;

use common::TestServer;
use serde_json::Value;

/// The binary, pointed at one server, run in one working directory.
struct Cli {
    server: String,
    dir: tempfile::TempDir,
}

/// What a failed command left: its exit code and the JSON error object on stderr.
struct Failure {
    code: i32,
    error: Value,
}

impl Cli {
    fn new(server: &TestServer) -> Self {
        Self {
            server: server.address.to_string(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    async fn run(&self, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_llmops"))
            .arg("--server")
            .arg(&self.server)
            .arg("--json")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .await
            .expect("the llmops binary runs")
    }

    /// Runs a command that must succeed; returns its output, parsed as JSON.
    async fn ok(&self, args: &[&str]) -> Value {
        let output = self.run(args).await;
        assert!(
            output.status.success(),
            "llmops {args:?} exited with {:?}: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
            panic!(
                "llmops {args:?} printed no JSON ({err}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    /// Runs a command that must succeed; returns what it printed, as text.
    async fn text(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        assert!(
            output.status.success(),
            "llmops {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs a command that must fail, with nothing on stdout and one JSON error object
    /// on stderr.
    async fn fails(&self, args: &[&str]) -> Failure {
        let output = self.run(args).await;
        let code = output.status.code().expect("an exit code, not a signal");
        assert_ne!(code, 0, "llmops {args:?} succeeded");
        assert!(
            output.stdout.is_empty(),
            "llmops {args:?} printed to stdout"
        );
        let error = serde_json::from_slice(&output.stderr).unwrap_or_else(|err| {
            panic!(
                "llmops {args:?}: stderr is not one JSON object ({err}): {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        Failure { code, error }
    }
}

fn message(failure: &Failure) -> &str {
    failure.error["message"].as_str().unwrap_or_default()
}

const REVIEW: &str = r#"name: code-review
version: 1.0.0
template: "Review this {{ language }} code for {{ focus_area }}: {{ code }}"
variables:
  - { name: language, type: string, required: true }
  - { name: focus_area, type: string, default_value: bugs }
  - { name: code, type: string, required: true }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_commands_as_in_the_quickstart() {
    let server = TestServer::start().await;
    let cli = Cli::new(&server);
    let review = cli.write("review.yaml", REVIEW);

    let created = cli.ok(&["prompt", "create", "-f", &review]).await;
    assert_eq!(
        (&created["name"], &created["version"], &created["isActive"]),
        (
            &Value::from("code-review"),
            &Value::from("1.0.0"),
            &Value::from(true)
        )
    );
    let names: Vec<&str> = created["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["language", "focus_area", "code"]);

    let rendered = cli
        .ok(&[
            "prompt",
            "render",
            "code-review",
            "--var",
            "language=Go",
            "--var",
            "code=func main() {}",
        ])
        .await;
    assert_eq!(
        rendered["text"],
        "Review this Go code for bugs: func main() {}"
    );

    let listed = cli.ok(&["prompt", "list"]).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["name"], "code-review");
    assert_eq!(listed[0]["activeVersion"], "1.0.0");

    let labelled = cli
        .ok(&[
            "prompt",
            "label",
            "set",
            "code-review",
            "production",
            "1.0.0",
        ])
        .await;
    assert!(
        labelled["promptVersion"]["labels"]
            .as_array()
            .is_some_and(|labels| labels.contains(&Value::from("production"))),
        "{labelled}"
    );
    assert_eq!(labelled["promptVersion"]["version"], "1.0.0");

    let review = cli.write(
        "review.yaml",
        &REVIEW
            .replace("version: 1.0.0", "version: 1.1.0")
            .replace("for {{ focus_area }}", "for {{ focus_area }} (be brief)"),
    );
    cli.ok(&["prompt", "create", "-f", &review]).await;
    let diff = cli
        .ok(&["prompt", "diff", "code-review", "1.0.0", "1.1.0"])
        .await;
    assert_eq!(
        (&diff["linesAdded"], &diff["linesRemoved"]),
        (&1.into(), &1.into())
    );
    assert!(
        diff["unifiedDiff"]
            .as_str()
            .unwrap()
            .contains("+Review this {{ language }} code for {{ focus_area }} (be brief)"),
        "{diff}"
    );
    let activated = cli
        .ok(&["prompt", "activate", "code-review", "1.1.0"])
        .await;
    assert_eq!(activated["version"], "1.1.0");
    assert_eq!(activated["isActive"], true);
    let active = cli.ok(&["prompt", "get", "code-review"]).await;
    assert_eq!(active["version"], "1.1.0");
    let production = cli
        .ok(&["prompt", "get", "code-review", "--label", "production"])
        .await;
    assert_eq!(production["version"], "1.0.0");
    let versions = cli.ok(&["prompt", "versions", "code-review"]).await;
    let versions: Vec<&str> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["1.1.0", "1.0.0"], "newest first");

    // The error paths: an unknown name, a missing file, a malformed file, a render
    // without a required variable.
    let unknown = cli.fails(&["prompt", "get", "nope"]).await;
    assert_eq!(
        (unknown.code, &unknown.error["code"]),
        (1, &"NOT_FOUND".into())
    );
    assert!(message(&unknown).contains("nope"), "{}", unknown.error);
    let missing = cli.fails(&["prompt", "create", "-f", "missing.yaml"]).await;
    assert!(
        message(&missing).contains("missing.yaml"),
        "{}",
        missing.error
    );
    let bad = cli.write("bad.yaml", "name: [\n");
    let malformed = cli.fails(&["prompt", "create", "-f", &bad]).await;
    assert!(
        message(&malformed).contains("bad.yaml"),
        "{}",
        malformed.error
    );
    let incomplete = cli
        .fails(&["prompt", "render", "code-review", "--var", "language=Go"])
        .await;
    assert_eq!(incomplete.error["code"], "INVALID_ARGUMENT");
    assert_eq!(
        incomplete.error["violations"][0]["field"], "variables.code",
        "{}",
        incomplete.error
    );
    // Nothing the refusals touched changed.
    let listed = cli.ok(&["prompt", "list"]).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
}

/// The quickstart's evaluation: a prompt, a dataset imported from JSONL, a run with two
/// metrics, its failed results, the alert it raised, acknowledged and resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataset_eval_and_alerts_commands_as_in_the_quickstart() {
    let server = TestServer::start().await;
    let cli = Cli::new(&server);
    let echo = cli.write(
        "echo.yaml",
        "name: echo-answer\nversion: 1.0.0\ntemplate: \"{{ input }}\"\n",
    );
    cli.ok(&["prompt", "create", "-f", &echo]).await;
    let golden = cli.write(
        "golden.jsonl",
        concat!(
            r#"{"id":"a","input":"4","expected_output":"4"}"#,
            "\n",
            r#"{"id":"b","input":"5","expected_output":"6"}"#,
            "\n"
        ),
    );

    let created = cli
        .ok(&["dataset", "create", "golden", "--id", "golden"])
        .await;
    assert_eq!(
        (&created["id"], &created["version"], &created["sampleCount"]),
        (&"golden".into(), &"1".into(), &"0".into())
    );
    let imported = cli.ok(&["dataset", "import", "golden", &golden]).await;
    assert_eq!(imported["imported"], "2");
    assert_eq!(imported["dataset"]["version"], "2");
    let got = cli.ok(&["dataset", "get", "golden"]).await;
    assert_eq!(got["sampleCount"], "2");
    // What export writes, import reads back: the same lines, in order.
    let exported = cli.text(&["dataset", "export", "golden"]).await;
    let ids: Vec<String> = exported
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["id"].to_string())
        .collect();
    assert_eq!(ids, [r#""a""#, r#""b""#]);
    // A malformed file imports nothing.
    let bad = cli.write("bad.jsonl", "{\"id\":\"c\",\"input\":\"7\"}\nnot json\n");
    let refused = cli.fails(&["dataset", "import", "golden", &bad]).await;
    assert!(message(&refused).contains("bad.jsonl"), "{}", refused.error);
    assert_eq!(cli.ok(&["dataset", "get", "golden"]).await["version"], "2");
    let unknown = cli.fails(&["dataset", "get", "nope"]).await;
    assert_eq!(unknown.error["code"], "NOT_FOUND");

    // --watch prints the run as it progresses, one JSON object per line, and ends when
    // the run does.
    let watched = cli
        .text(&[
            "eval",
            "run",
            "--dataset",
            "golden",
            "--prompt",
            "echo-answer",
            "--model",
            "echo",
            "--metric",
            "exact=exact_match",
            "--metric",
            "f1=token_f1:0.5",
            "--watch",
        ])
        .await;
    let last: Value = serde_json::from_str(watched.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "RUN_STATUS_COMPLETED", "{last}");
    let run_id = last["id"].as_str().unwrap().to_owned();
    let run = cli.ok(&["eval", "get", &run_id]).await;
    assert_eq!(run["results"]["passRate"], 0.5, "{run}");
    assert_eq!(run["results"]["metrics"]["f1"]["mean"], 0.5, "{run}");
    let failed = cli.ok(&["eval", "results", &run_id, "--failed"]).await;
    let failed = failed.as_array().unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        (
            &failed[0]["sampleId"],
            &failed[0]["output"],
            &failed[0]["passed"]
        ),
        (&"b".into(), &"5".into(), &false.into())
    );
    let runs = cli.ok(&["eval", "list"]).await;
    assert_eq!(runs[0]["id"], run_id.as_str());

    // The run's 50% pass rate is below the default alert threshold (85%): one alert.
    let alerts = cli.ok(&["alerts", "list", "--unacked"]).await;
    let alerts = alerts.as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["metadata"]["run_id"], run_id.as_str());
    let alert_id = alerts[0]["id"].as_str().unwrap().to_owned();
    let acked = cli
        .ok(&[
            "alerts",
            "ack",
            &alert_id,
            "--comment",
            "looking",
            "--by",
            "ops",
        ])
        .await;
    assert_eq!(
        (
            &acked["status"],
            &acked["acknowledgedBy"],
            &acked["ackComment"]
        ),
        (
            &"ALERT_STATUS_ACKNOWLEDGED".into(),
            &"ops".into(),
            &"looking".into()
        ),
        "{acked}"
    );
    assert_eq!(
        cli.ok(&["alerts", "list", "--unacked"]).await,
        Value::Array(vec![])
    );
    let resolved = cli.ok(&["alerts", "resolve", &alert_id]).await;
    assert_eq!(resolved["status"], "ALERT_STATUS_RESOLVED", "{resolved}");
    let got = cli.ok(&["alerts", "get", &alert_id]).await;
    assert_eq!(got["status"], "ALERT_STATUS_RESOLVED");
    let malformed = cli.fails(&["alerts", "get", "nope"]).await;
    assert_eq!(
        malformed.error["code"], "INVALID_ARGUMENT",
        "{}",
        malformed.error
    );
    let unknown = cli
        .fails(&["alerts", "get", "01a23719-0000-7000-8000-000000000000"])
        .await;
    assert_eq!(unknown.error["code"], "NOT_FOUND", "{}", unknown.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_commands_from_draft_to_complete() {
    let server = TestServer::start().await;
    let cli = Cli::new(&server);
    let file = cli.write(
        "checkout.yaml",
        "id: checkout\nname: checkout copy\nvariants:\n  - { id: control, control: true }\n  - { id: treatment }\nmetrics:\n  - { name: converted, kind: proportion, direction: higher_is_better }\n",
    );
    let created = cli.ok(&["experiment", "create", "-f", &file]).await;
    assert_eq!(
        (&created["id"], &created["status"]),
        (&"checkout".into(), &"EXPERIMENT_STATUS_DRAFT".into())
    );
    // A draft assigns no one.
    let early = cli
        .fails(&["experiment", "assign", "checkout", "user-1"])
        .await;
    assert_eq!(
        early.error["code"], "FAILED_PRECONDITION",
        "{}",
        early.error
    );
    let started = cli.ok(&["experiment", "start", "checkout"]).await;
    assert_eq!(started["status"], "EXPERIMENT_STATUS_RUNNING");

    // An assignment is deterministic: the same user gets the same variant every time.
    let first = cli
        .ok(&["experiment", "assign", "checkout", "user-1"])
        .await;
    let again = cli
        .ok(&["experiment", "assign", "checkout", "user-1"])
        .await;
    assert_eq!(first["inExperiment"], true);
    assert_eq!(first["variant"]["id"], again["variant"]["id"]);
    assert!(
        ["control", "treatment"].contains(&first["variant"]["id"].as_str().unwrap()),
        "{first}"
    );

    for (variant, values) in [
        ("control", ["1", "0", "1", "1"]),
        ("treatment", ["0", "0", "1", "0"]),
    ] {
        for value in values {
            let recorded = cli
                .ok(&[
                    "experiment",
                    "record",
                    "checkout",
                    "--variant",
                    variant,
                    "--metric",
                    "converted",
                    "--value",
                    value,
                ])
                .await;
            assert_eq!(recorded["recorded"], true);
        }
    }
    let results = cli.ok(&["experiment", "results", "checkout"]).await;
    let stats = results["stats"].as_array().unwrap();
    let of = |variant: &str| {
        stats
            .iter()
            .find(|s| s["variantId"] == variant)
            .unwrap_or_else(|| panic!("no stats for {variant}: {results}"))
    };
    assert_eq!(
        (&of("control")["n"], &of("control")["sum"]),
        (&"4".into(), &3.0.into())
    );
    assert_eq!(
        (&of("treatment")["n"], &of("treatment")["sum"]),
        (&"4".into(), &1.0.into())
    );
    let unknown_metric = cli
        .fails(&[
            "experiment",
            "record",
            "checkout",
            "--variant",
            "control",
            "--metric",
            "nope",
            "--value",
            "1",
        ])
        .await;
    assert_eq!(unknown_metric.error["code"], "INVALID_ARGUMENT");

    let completed = cli.ok(&["experiment", "complete", "checkout"]).await;
    assert_eq!(completed["status"], "EXPERIMENT_STATUS_COMPLETED");
    let listed = cli.ok(&["experiment", "list"]).await;
    assert_eq!(listed[0]["id"], "checkout");
    // No metric is accepted after the end.
    let late = cli
        .fails(&[
            "experiment",
            "record",
            "checkout",
            "--variant",
            "control",
            "--metric",
            "converted",
            "--value",
            "1",
        ])
        .await;
    assert_eq!(late.error["code"], "FAILED_PRECONDITION", "{}", late.error);
    let unknown = cli.fails(&["experiment", "get", "nope"]).await;
    assert_eq!(unknown.error["code"], "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_and_config_commands() {
    let server = TestServer::start().await;
    let cli = Cli::new(&server);
    let listed = cli.ok(&["providers", "list"]).await;
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"echo"), "{listed}");
    let selected = cli.ok(&["providers", "select", "echo"]).await;
    assert_eq!(
        (&selected["name"], &selected["healthy"]),
        (&"echo".into(), &true.into())
    );
    let unknown = cli.fails(&["providers", "select", "nope"]).await;
    assert_eq!(
        unknown.error["code"], "INVALID_ARGUMENT",
        "{}",
        unknown.error
    );

    // `config show` reads the configuration, not the server: a key set in a file and
    // one from the environment, each with its source.
    let config = cli.write("llmops.toml", "shutdown_grace = \"7s\"\n");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_llmops"))
        .args(["config", "show", "--json", "--config", &config])
        .env("LLMOPS_MAX_MESSAGE_BYTES", "2000000")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(shown["shutdown_grace"]["value"], "7s", "{shown}");
    assert!(
        shown["shutdown_grace"]["source"]
            .as_str()
            .unwrap()
            .contains("llmops.toml"),
        "{shown}"
    );
    assert_eq!(shown["max_message_bytes"]["value"], 2_000_000, "{shown}");
    assert!(
        shown["max_message_bytes"]["source"]
            .as_str()
            .unwrap()
            .contains("LLMOPS_MAX_MESSAGE_BYTES"),
        "{shown}"
    );
}

/// Every command group reports a server that cannot be reached the same way: exit code
/// 1 and UNAVAILABLE, never a panic or a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_group_reports_a_server_that_is_down() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = closed.local_addr().unwrap().to_string();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, "name: p\nversion: 1.0.0\ntemplate: x\n").unwrap();
    let file = file.display().to_string();
    let commands: [&[&str]; 9] = [
        &["prompt", "list"],
        &["prompt", "create", "-f", &file],
        &["dataset", "list"],
        &["eval", "list"],
        &["experiment", "list"],
        &["alerts", "list"],
        &["schedule", "list"],
        &["gate", "list"],
        &["providers", "list"],
    ];
    for command in commands {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_llmops"))
            .args(["--server", &nowhere, "--json"])
            .args(command)
            .current_dir(dir.path())
            .output()
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{command:?}");
        let error: Value = serde_json::from_slice(&output.stderr).unwrap_or_else(|err| {
            panic!(
                "{command:?}: {err}: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        assert_eq!(error["code"], "UNAVAILABLE", "{command:?}: {error}");
    }
}
