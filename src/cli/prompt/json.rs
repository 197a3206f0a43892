//! Answers as JSON for `--json`, built by hand (protobuf types do not derive serde).
//! Field names are the proto's (snake_case); enums are the short lowercase names the
//! tables show; times are RFC 3339 strings.

use serde_json::{json, Map, Value as JsonValue};

use super::convert::{change_kind_name, event_kind_name, type_name};
use crate::cli::values::{json_from_struct, json_from_value, json_time};
use crate::pb;

/// A prompt version.
pub(crate) fn version(v: &pb::PromptVersion) -> JsonValue {
    let mut metadata: Vec<_> = v.metadata.iter().collect();
    metadata.sort();
    json!({
        "id": v.id,
        "name": v.name,
        "version": v.version,
        "template": v.template,
        "messages": v.messages.iter().map(|m| json!({"role": m.role, "template": m.template})).collect::<Vec<_>>(),
        "variables": v.variables.iter().map(variable).collect::<Vec<_>>(),
        "model_config": v.model_config.as_ref().map(|c| json!({
            "model": c.model,
            "parameters": c.parameters.as_ref().map(json_from_struct).unwrap_or_default(),
        })),
        "tags": v.tags,
        "metadata": metadata.into_iter().map(|(k, v)| (k.clone(), JsonValue::from(v.as_str()))).collect::<Map<_, _>>(),
        "author": v.author,
        "description": v.description,
        "commit_message": v.commit_message,
        "is_active": v.is_active,
        "labels": v.labels,
        "created_at": json_time(v.created_at.as_ref()),
        "updated_at": json_time(v.updated_at.as_ref()),
    })
}

/// A variable declaration, in the file format (`default_value` only when set).
pub(crate) fn variable(v: &pb::PromptVariable) -> JsonValue {
    let mut object = Map::new();
    object.insert("name".into(), v.name.clone().into());
    object.insert("type".into(), type_name(v.r#type).into());
    object.insert("required".into(), v.required.into());
    if let Some(default) = &v.default_value {
        object.insert("default_value".into(), json_from_value(default));
    }
    object.insert("description".into(), v.description.clone().into());
    object.insert("validation".into(), v.validation.clone().into());
    JsonValue::Object(object)
}

/// A prompt summary (`labels` maps each label to its version).
pub(crate) fn summary(s: &pb::PromptSummary) -> JsonValue {
    let mut labels: Vec<_> = s.labels.iter().collect();
    labels.sort();
    json!({
        "name": s.name,
        "active_version": s.active_version,
        "latest_version": s.latest_version,
        "version_count": s.version_count,
        "labels": labels.into_iter().map(|(k, v)| (k.clone(), JsonValue::from(v.as_str()))).collect::<Map<_, _>>(),
        "updated_at": json_time(s.updated_at.as_ref()),
    })
}

/// A render result.
pub(crate) fn rendered(r: &pb::RenderPromptResponse) -> JsonValue {
    json!({
        "name": r.name,
        "version": r.version,
        "text": r.text,
        "messages": r.messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect::<Vec<_>>(),
    })
}

/// A diff.
pub(crate) fn diff(d: &pb::DiffPromptVersionsResponse) -> JsonValue {
    json!({
        "unified_diff": d.unified_diff,
        "lines_added": d.lines_added,
        "lines_removed": d.lines_removed,
        "variable_changes": d.variable_changes.iter().map(|c| json!({
            "name": c.name,
            "kind": change_kind_name(c.kind),
            "before": c.before.as_ref().map(variable),
            "after": c.after.as_ref().map(variable),
            "changed_fields": c.changed_fields,
        })).collect::<Vec<_>>(),
    })
}

/// A registry event; `name` and `version` repeat the version's for easy filtering.
pub(crate) fn event(e: &pb::PromptEvent) -> JsonValue {
    let (name, version) = e
        .prompt_version
        .as_ref()
        .map_or(("", ""), |v| (v.name.as_str(), v.version.as_str()));
    json!({
        "sequence": e.sequence,
        "kind": event_kind_name(e.kind),
        "name": name,
        "version": version,
        "label": e.label,
        "time": json_time(e.time.as_ref()),
        "prompt_version": e.prompt_version.as_ref().map(self::version),
        "previous_version": e.previous_version,
        "override_reason": e.override_reason,
    })
}

#[cfg(test)]
mod tests {
    use prost_types::value::Kind;
    use prost_types::Timestamp;

    use super::*;

    #[test]
    fn a_version_reads_naturally() {
        let v = pb::PromptVersion {
            name: "greet".into(),
            version: "1.0.0".into(),
            variables: vec![pb::PromptVariable {
                name: "n".into(),
                r#type: pb::VariableType::Int as i32,
                default_value: Some(prost_types::Value {
                    kind: Some(Kind::NumberValue(3.0)),
                }),
                ..Default::default()
            }],
            metadata: [
                ("b".to_owned(), "2".to_owned()),
                ("a".to_owned(), "1".to_owned()),
            ]
            .into(),
            is_active: true,
            created_at: Some(Timestamp {
                seconds: 0,
                nanos: 0,
            }),
            ..Default::default()
        };
        let value = version(&v);
        assert_eq!(value["variables"][0]["type"], "int");
        assert_eq!(value["variables"][0]["default_value"], 3);
        assert_eq!(value["metadata"], json!({"a": "1", "b": "2"}));
        assert_eq!(value["is_active"], true);
        assert_eq!(value["created_at"], "1970-01-01T00:00:00Z");
        assert_eq!(value["updated_at"], JsonValue::Null);
        assert_eq!(value["model_config"], JsonValue::Null);
    }

    #[test]
    fn an_event_names_its_kind_and_version() {
        let e = pb::PromptEvent {
            sequence: 7,
            kind: pb::PromptEventKind::LabelMoved as i32,
            prompt_version: Some(pb::PromptVersion {
                name: "greet".into(),
                version: "1.1.0".into(),
                ..Default::default()
            }),
            label: "production".into(),
            override_reason: "hotfix".into(),
            ..Default::default()
        };
        let value = event(&e);
        assert_eq!(value["override_reason"], "hotfix");
        assert_eq!(value["kind"], "label-moved");
        assert_eq!(value["name"], "greet");
        assert_eq!(value["version"], "1.1.0");
        assert_eq!(value["prompt_version"]["version"], "1.1.0");
    }
}
