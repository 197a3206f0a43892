//! Merging the configuration layers and remembering where each key's value came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::Config;

const ENV_PREFIX: &str = "LLMOPS_";
/// Nested keys in environment variable names: `LLMOPS_EXPERIMENTS__MIN_SAMPLES_FOR_SIGNIFICANCE`.
const ENV_SEPARATOR: &str = "__";

/// Where a key's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// The built-in default.
    Default,
    /// The TOML file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag(String),
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Env(name) => write!(f, "env {name}"),
            Self::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Why the configuration could not be loaded. Every variant names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A key has a bad value.
    #[error("config key `{key}` (from {origin}): {message}")]
    Invalid {
        /// The key, dotted (`experiments.min_samples_for_significance`).
        key: String,
        /// What is wrong.
        message: String,
        /// Where the bad value came from.
        origin: ConfigSource,
    },
    /// A value is well-formed but unusable at start-up (a secret's variable is unset).
    #[error("config key `{key}`: {message}")]
    Unusable {
        /// The key, dotted.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The effective configuration with the source of every key.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The configuration.
    pub config: Config,
    sources: BTreeMap<String, ConfigSource>,
}

impl LoadedConfig {
    /// Loads defaults, then `file`, then `LLMOPS_*` variables from `env`, then `flags`
    /// (dotted key, value, flag name), each overriding the one before.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: Vec<(&str, Value, &str)>,
    ) -> Result<Self, ConfigError> {
        let defaults = Table::try_from(Config::default()).expect("the default config serialises");
        let default_leaves: BTreeMap<String, Value> = leaves(&defaults).into_iter().collect();
        let mut merged = defaults;
        let mut sources = BTreeMap::new();

        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let table: Table = text
                .parse()
                .map_err(|err: toml::de::Error| ConfigError::Parse {
                    path: path.to_owned(),
                    message: err.to_string().trim().to_owned(),
                })?;
            for (key, value) in leaves(&table) {
                sources.insert(key.clone(), ConfigSource::File(path.to_owned()));
                set_path(&mut merged, &key, value);
            }
        }
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = rest.to_lowercase().replace(ENV_SEPARATOR, ".");
            // Only known keys: other LLMOPS_* variables (LLMOPS_SERVER) belong to the CLI.
            let Some(default) = default_leaves.get(&key) else {
                continue;
            };
            set_path(&mut merged, &key, env_value(default, &raw));
            sources.insert(key, ConfigSource::Env(name));
        }
        for (key, value, flag) in flags {
            set_path(&mut merged, key, value);
            sources.insert(key.to_owned(), ConfigSource::Flag(flag.to_owned()));
        }

        let source_of = |key: &str| {
            sources
                .iter()
                .find(|(k, _)| k.as_str() == key || k.starts_with(&format!("{key}.")))
                .map_or(ConfigSource::Default, |(_, s)| s.clone())
        };
        let config: Config =
            serde_path_to_error::deserialize(Value::Table(merged)).map_err(|err| {
                let key = err.path().to_string();
                ConfigError::Invalid {
                    origin: source_of(&key),
                    key,
                    // The deserialiser's message may repeat the key on a second line.
                    message: err
                        .inner()
                        .to_string()
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                }
            })?;
        config
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                origin: source_of(&key),
                key,
                message,
            })?;
        Ok(Self { config, sources })
    }

    /// Every key with its effective value (as TOML) and its source, sorted by key.
    /// Credentials in URLs are redacted.
    pub fn describe(&self) -> Vec<(String, String, ConfigSource)> {
        self.leaves()
            .into_iter()
            .map(|(key, value, source)| (key, value.to_string(), source))
            .collect()
    }

    /// [`Self::describe`] as one JSON object: each dotted key maps to
    /// `{"value": ..., "source": "..."}`.
    pub fn describe_json(&self) -> serde_json::Value {
        let entries = self
            .leaves()
            .into_iter()
            .map(|(key, value, source)| {
                let value = serde_json::to_value(&value).unwrap_or(serde_json::Value::Null);
                let entry = serde_json::json!({"value": value, "source": source.to_string()});
                (key, entry)
            })
            .collect();
        serde_json::Value::Object(entries)
    }

    fn leaves(&self) -> Vec<(String, Value, ConfigSource)> {
        let table = Table::try_from(self.config.redacted()).expect("the config serialises");
        leaves(&table)
            .into_iter()
            .map(|(key, value)| {
                let source = self
                    .sources
                    .get(&key)
                    .cloned()
                    .unwrap_or(ConfigSource::Default);
                (key, value, source)
            })
            .collect()
    }
}

/// An environment value, typed like the key's default: strings stay strings, anything
/// else is parsed as a TOML value (`100`, `true`, `0.9`).
fn env_value(default: &Value, raw: &str) -> Value {
    if default.is_str() {
        return Value::String(raw.to_owned());
    }
    format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_owned()))
}

/// The leaves of a table as dotted keys; arrays are leaves.
fn leaves(table: &Table) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (key, value) in table {
        match value {
            Value::Table(inner) => out.extend(
                leaves(inner)
                    .into_iter()
                    .map(|(k, v)| (format!("{key}.{k}"), v)),
            ),
            other => out.push((key.clone(), other.clone())),
        }
    }
    out
}

fn set_path(table: &mut Table, dotted: &str, value: Value) {
    match dotted.split_once('.') {
        None => {
            table.insert(dotted.to_owned(), value);
        }
        Some((head, rest)) => {
            let inner = table
                .entry(head.to_owned())
                .or_insert_with(|| Value::Table(Table::new()));
            if !inner.is_table() {
                *inner = Value::Table(Table::new());
            }
            if let Value::Table(inner) = inner {
                set_path(inner, rest, value);
            }
        }
    }
}
