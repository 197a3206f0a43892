//! Reading JSON and YAML input files.

use std::path::Path;

use anyhow::{anyhow, Context as _};
use serde::de::DeserializeOwned;

/// Reads and parses a file: `.json` as JSON, `.yaml`/`.yml` as YAML, anything else as
/// JSON if it parses as JSON, otherwise as YAML.
pub(crate) fn read_document<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_document(path, &text)
}

/// Parses `text`, the contents of `path`, choosing the format as [`read_document`] does.
pub(crate) fn parse_document<T: DeserializeOwned>(path: &Path, text: &str) -> anyhow::Result<T> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let shown = path.display();
    match extension.as_deref() {
        Some("json") => {
            serde_json::from_str(text).map_err(|err| anyhow!("{shown} is not valid: {err}"))
        }
        Some("yaml" | "yml") => {
            serde_yaml_ng::from_str(text).map_err(|err| anyhow!("{shown} is not valid: {err}"))
        }
        _ => serde_json::from_str(text).or_else(|_| {
            serde_yaml_ng::from_str(text)
                .map_err(|err| anyhow!("{shown} is neither valid JSON nor valid YAML: {err}"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    #[test]
    fn the_extension_picks_the_format() {
        let yaml: Value = parse_document(Path::new("a.YML"), "a: 1\nb: [x]\n").unwrap();
        assert_eq!(yaml, json!({"a": 1, "b": ["x"]}));
        let json: Value = parse_document(Path::new("a.json"), r#"{"a": 1}"#).unwrap();
        assert_eq!(json, json!({"a": 1}));
        // YAML in a .json file is refused, naming the file.
        let err = parse_document::<Value>(Path::new("a.json"), "a: 1\n").unwrap_err();
        assert!(
            err.to_string().starts_with("a.json is not valid: "),
            "{err}"
        );
    }

    #[test]
    fn other_extensions_try_json_then_yaml() {
        let json: Value = parse_document(Path::new("prompt.txt"), r#"{"a": [1]}"#).unwrap();
        assert_eq!(json, json!({"a": [1]}));
        let yaml: Value = parse_document(Path::new("prompt"), "a: [1]\n").unwrap();
        assert_eq!(yaml, json!({"a": [1]}));
        let err = parse_document::<Value>(Path::new("prompt"), "a: [1\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("prompt is neither valid JSON nor valid YAML: "),
            "{err}"
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = read_document::<Value>(Path::new("/nonexistent/p.yaml")).unwrap_err();
        assert!(
            format!("{err:#}").starts_with("cannot read /nonexistent/p.yaml: "),
            "{err:#}"
        );
    }
}
