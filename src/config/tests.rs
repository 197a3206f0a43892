use std::io::Write;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn toml_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[test]
fn defaults_match_the_documented_values() {
    let loaded = LoadedConfig::load(None, [], vec![]).unwrap();
    let config = loaded.config;
    assert_eq!(config.listen.to_string(), "127.0.0.1:50051");
    assert_eq!(config.metrics_listen.to_string(), "127.0.0.1:9464");
    assert_eq!(config.durability, DurabilitySetting::Full);
    assert_eq!(config.max_message_bytes, 4_194_304);
    assert_eq!(config.experiments.min_samples_for_significance, 100);
    assert_eq!(config.evaluation.interval, Duration::from_secs(86_400));
    assert!(config.evaluation.auto_evaluation && config.evaluation.panel_evaluation);
    assert_eq!(config.alert_thresholds["pass_rate"], 0.85);
    assert_eq!(config.alert_thresholds["latency_p99"], 5000.0);
}

#[test]
fn layers_override_in_order_and_sources_are_reported() {
    let file = toml_file("listen = \"127.0.0.1:6000\"\ndurability = \"normal\"\n[experiments]\nmin_samples_for_significance = 50\n[alert_thresholds]\nfaithfulness = 0.9\n");
    let loaded = LoadedConfig::load(
        Some(file.path()),
        env(&[
            ("LLMOPS_LISTEN", "127.0.0.1:7000"),
            ("LLMOPS_EXPERIMENTS__MIN_SAMPLES_FOR_SIGNIFICANCE", "200"),
            ("LLMOPS_SERVER", "x"),
        ]),
        vec![(
            "listen",
            toml::Value::String("127.0.0.1:8000".into()),
            "--listen",
        )],
    )
    .unwrap();
    assert_eq!(loaded.config.listen.to_string(), "127.0.0.1:8000");
    assert_eq!(loaded.config.durability, DurabilitySetting::Normal);
    assert_eq!(loaded.config.experiments.min_samples_for_significance, 200);
    assert_eq!(loaded.config.alert_thresholds["faithfulness"], 0.9);
    assert_eq!(
        loaded.config.alert_thresholds["pass_rate"], 0.85,
        "a file's map adds to the defaults"
    );
    let described: BTreeMap<String, (String, String)> = loaded
        .describe()
        .into_iter()
        .map(|(k, v, s)| (k, (v, s.to_string())))
        .collect();
    assert_eq!(described["listen"].1, "flag --listen");
    assert_eq!(
        described["experiments.min_samples_for_significance"].1,
        "env LLMOPS_EXPERIMENTS__MIN_SAMPLES_FOR_SIGNIFICANCE"
    );
    assert!(described["durability"].1.starts_with("file "));
    assert_eq!(
        described["max_message_bytes"],
        ("4194304".into(), "default".into())
    );
}

#[test]
fn a_bad_value_names_the_key_and_its_source() {
    let err = LoadedConfig::load(
        None,
        env(&[("LLMOPS_EXPERIMENTS__MIN_SAMPLES_FOR_SIGNIFICANCE", "lots")]),
        vec![],
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("experiments.min_samples_for_significance"),
        "{message}"
    );
    assert!(
        message.contains("LLMOPS_EXPERIMENTS__MIN_SAMPLES_FOR_SIGNIFICANCE"),
        "{message}"
    );

    let file = toml_file("durability = \"sometimes\"\n");
    let message = LoadedConfig::load(Some(file.path()), [], vec![])
        .unwrap_err()
        .to_string();
    assert!(message.contains("`durability`"), "{message}");

    let file = toml_file("[evaluation]\ninterval = \"often\"\n");
    let message = LoadedConfig::load(Some(file.path()), [], vec![])
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("evaluation.interval") && message.contains("\"often\""),
        "{message}"
    );

    let message = LoadedConfig::load(None, env(&[("LLMOPS_MAX_MESSAGE_BYTES", "10")]), vec![])
        .unwrap_err()
        .to_string();
    assert!(message.contains("`max_message_bytes`"), "{message}");
}

#[test]
fn unknown_keys_in_the_file_are_refused() {
    let file = toml_file("listn = \"127.0.0.1:1\"\n");
    let message = LoadedConfig::load(Some(file.path()), [], vec![])
        .unwrap_err()
        .to_string();
    assert!(message.contains("listn"), "{message}");
}

const MOCK_PROVIDER: &str = r#"
[[providers]]
name = "mock"
kind = "openai"
base_url = "http://127.0.0.1:8080/v1"
model = "mock-model"
api_key_env = "LLMOPS_TEST_MOCK_KEY_THAT_IS_NOT_SET"
max_concurrency = 64
requests_per_minute = 6000
input_price_per_1k = 0.5
"#;

#[test]
fn providers_take_the_documented_shape() {
    let file = toml_file(MOCK_PROVIDER);
    let loaded = LoadedConfig::load(Some(file.path()), [], vec![]).unwrap();
    let provider = &loaded.config.providers[0];
    assert_eq!(
        (provider.name.as_str(), provider.model.as_str()),
        ("mock", "mock-model")
    );
    assert_eq!(
        (provider.max_concurrency, provider.requests_per_minute),
        (Some(64), Some(6000))
    );
    let settings = provider
        .settings("providers[0]", |name| {
            (name == "LLMOPS_TEST_MOCK_KEY_THAT_IS_NOT_SET").then(|| "k".to_owned())
        })
        .unwrap();
    assert_eq!(settings.api_key.as_deref(), Some("k"));
    assert_eq!(settings.input_price_per_1k, Some(0.5));
    // With the key's variable unset, start-up stops naming it.
    let err = loaded.config.provider_settings().unwrap_err().to_string();
    assert!(
        err.contains("providers[0].api_key_env")
            && err.contains("LLMOPS_TEST_MOCK_KEY_THAT_IS_NOT_SET"),
        "{err}"
    );
}

#[test]
fn bad_providers_are_refused_naming_the_key() {
    for (text, key) in [
        (
            MOCK_PROVIDER.replace("\"openai\"", "\"anthropic\""),
            "providers[0].kind",
        ),
        (
            MOCK_PROVIDER.replace("name = \"mock\"", "name = \"echo\""),
            "providers[0].name",
        ),
        (
            MOCK_PROVIDER.replace("http://127", "ftp://127"),
            "providers[0].base_url",
        ),
        (
            MOCK_PROVIDER.replace("requests_per_minute = 6000", "requests_per_minute = 0"),
            "providers[0].requests_per_minute",
        ),
        (
            format!("{MOCK_PROVIDER}{MOCK_PROVIDER}"),
            "providers[1].name",
        ),
        (MOCK_PROVIDER.replace("model = ", "modle = "), "providers"),
    ] {
        let file = toml_file(&text);
        let err = LoadedConfig::load(Some(file.path()), [], vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{key}: {err}");
    }
}

#[test]
fn provider_health_has_defaults_and_its_keys_are_checked() {
    let defaults = LoadedConfig::load(None, [], vec![]).unwrap().config;
    assert_eq!(
        defaults.providers_health.settings(),
        llmops_evaluator::providers::HealthSettings::default()
    );
    let file = toml_file(&format!(
        "{MOCK_PROVIDER}health_url = \"http://127.0.0.1:8080/v1/models\"\n[providers_health]\ninterval = \"5s\"\nfailure_threshold = 2\n"
    ));
    let loaded = LoadedConfig::load(
        Some(file.path()),
        env(&[("LLMOPS_PROVIDERS_HEALTH__TIMEOUT", "2s")]),
        vec![],
    )
    .unwrap();
    let health = loaded.config.providers_health.settings();
    assert_eq!(
        (health.interval, health.failure_threshold, health.timeout),
        (Duration::from_secs(5), 2, Duration::from_secs(2))
    );
    assert_eq!(
        loaded.config.providers[0].health_url.as_deref(),
        Some("http://127.0.0.1:8080/v1/models")
    );
    for (text, key) in [
        (
            "[providers_health]\nfailure_threshold = 0\n".to_owned(),
            "providers_health.failure_threshold",
        ),
        (
            "[providers_health]\ninterval = \"1ms\"\n".to_owned(),
            "providers_health.interval",
        ),
        (
            "[providers_health]\nintervl = \"1s\"\n".to_owned(),
            "providers_health",
        ),
        (
            format!("{MOCK_PROVIDER}health_url = \"localhost/health\"\n"),
            "providers[0].health_url",
        ),
    ] {
        let file = toml_file(&text);
        let err = LoadedConfig::load(Some(file.path()), [], vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{key}: {err}");
    }
}

#[test]
fn the_database_url_defaults_to_the_data_dir_and_is_shown_without_its_password() {
    let loaded =
        LoadedConfig::load(None, env(&[("LLMOPS_DATA_DIR", "/var/lib/llmops")]), vec![]).unwrap();
    assert_eq!(
        loaded.config.database_url().unwrap().to_string(),
        "sqlite:///var/lib/llmops/llmops.db"
    );
    let loaded = LoadedConfig::load(
        None,
        [],
        vec![(
            "database_url",
            toml::Value::String("sqlite:///srv/one.db".into()),
            "--database-url",
        )],
    )
    .unwrap();
    assert_eq!(
        loaded.config.database_url().unwrap().to_string(),
        "sqlite:///srv/one.db"
    );

    let message = LoadedConfig::load(
        None,
        env(&[("LLMOPS_DATABASE_URL", "mysql://app:hunter2@db/llmops")]),
        vec![],
    )
    .unwrap_err()
    .to_string();
    assert!(message.contains("`database_url`"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    let config = Config {
        database_url: "postgres://app:hunter2@db/llmops".into(),
        ..Config::default()
    };
    assert!(!config.redacted().database_url.contains("hunter2"));
}

#[test]
fn a_postgres_url_and_its_pool_size_come_from_the_environment_and_show_without_the_password() {
    let loaded = LoadedConfig::load(
        None,
        env(&[
            (
                "LLMOPS_DATABASE_URL",
                "postgresql://app:hunter2@db:5432/llmops?sslmode=require",
            ),
            ("LLMOPS_DATABASE_MAX_CONNECTIONS", "32"),
        ]),
        vec![],
    )
    .unwrap();
    assert_eq!(loaded.config.database_max_connections, 32);
    assert!(matches!(
        loaded.config.database_url().unwrap(),
        llmops_store::DatabaseUrl::Postgres(_)
    ));
    let shown = loaded.config.redacted().database_url;
    assert_eq!(
        shown,
        "postgresql://app:[REDACTED]@db:5432/llmops?sslmode=require"
    );
    assert_eq!(Config::default().database_max_connections, 16);

    let message = LoadedConfig::load(
        None,
        env(&[("LLMOPS_DATABASE_MAX_CONNECTIONS", "0")]),
        vec![],
    )
    .unwrap_err()
    .to_string();
    assert!(message.contains("database_max_connections"), "{message}");
}

#[test]
fn feed_poll_interval_defaults_to_a_second_and_is_range_checked() {
    assert_eq!(Config::default().feed_poll_interval, Duration::from_secs(1));
    let loaded =
        LoadedConfig::load(None, env(&[("LLMOPS_FEED_POLL_INTERVAL", "250ms")]), vec![]).unwrap();
    assert_eq!(loaded.config.feed_poll_interval, Duration::from_millis(250));
    let message = LoadedConfig::load(None, env(&[("LLMOPS_FEED_POLL_INTERVAL", "1ms")]), vec![])
        .unwrap_err()
        .to_string();
    assert!(message.contains("feed_poll_interval"), "{message}");
}

#[test]
fn leader_lease_defaults_to_ten_seconds_and_is_range_checked() {
    assert_eq!(Config::default().leader_lease, Duration::from_secs(10));
    let loaded = LoadedConfig::load(None, env(&[("LLMOPS_LEADER_LEASE", "3s")]), vec![]).unwrap();
    assert_eq!(loaded.config.leader_lease, Duration::from_secs(3));
    let message = LoadedConfig::load(None, env(&[("LLMOPS_LEADER_LEASE", "100ms")]), vec![])
        .unwrap_err()
        .to_string();
    assert!(message.contains("leader_lease"), "{message}");
}
