//! Answers as JSON for `--json`, built by hand (protobuf types do not derive serde).
//! Field names are the proto's (snake_case); types are the short lowercase names the
//! tables show; times are RFC 3339 strings.

use serde_json::{json, Map, Value as JsonValue};

use super::format::type_name;
use super::jsonl::sample_json;
use crate::cli::values::json_time;
use crate::pb;

/// A dataset.
pub(crate) fn dataset(d: &pb::Dataset) -> JsonValue {
    let mut metadata: Vec<_> = d.metadata.iter().collect();
    metadata.sort();
    json!({
        "id": d.id,
        "name": d.name,
        "description": d.description,
        "type": type_name(d.r#type),
        "metadata": metadata.into_iter().map(|(k, v)| (k.clone(), JsonValue::from(v.as_str()))).collect::<Map<_, _>>(),
        "sample_count": d.sample_count,
        "version": d.version,
        "content_hash": d.content_hash,
        "created_at": json_time(d.created_at.as_ref()),
        "updated_at": json_time(d.updated_at.as_ref()),
    })
}

/// Samples: the objects of a JSONL export, in an array.
pub(crate) fn samples(samples: &[pb::Sample]) -> JsonValue {
    JsonValue::Array(samples.iter().map(sample_json).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dataset_uses_short_type_names_and_null_for_unset_times() {
        let d = pb::Dataset {
            id: "d1".into(),
            r#type: pb::DatasetType::Regression as i32,
            version: 3,
            metadata: [
                ("b".to_owned(), "2".to_owned()),
                ("a".to_owned(), "1".to_owned()),
            ]
            .into(),
            ..Default::default()
        };
        let value = dataset(&d);
        assert_eq!(value["type"], "regression");
        assert_eq!(value["version"], 3);
        assert_eq!(value["metadata"], json!({"a": "1", "b": "2"}));
        assert_eq!(value["created_at"], JsonValue::Null);
    }
}
