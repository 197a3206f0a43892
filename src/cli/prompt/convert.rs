//! From the registry's file format ([`NewPromptVersion`]) to protobuf, and the names of
//! protobuf enum values as the command line shows them.

use llmops_registry::{NewPromptVersion, VariableType};

use crate::grpc::prompts::{messages_to_pb, model_config_to_pb, variable_to_pb};
use crate::pb;

/// A version read from a file as the `prompt_version` of a create request.
pub(crate) fn version_to_pb(version: NewPromptVersion) -> pb::PromptVersion {
    pb::PromptVersion {
        name: version.name,
        version: version.version,
        template: version.template,
        messages: messages_to_pb(version.messages),
        variables: version.variables.into_iter().map(variable_to_pb).collect(),
        model_config: version.model_config.map(model_config_to_pb),
        tags: version.tags,
        metadata: version.metadata.into_iter().collect(),
        author: version.author,
        description: version.description,
        commit_message: version.commit_message,
        ..pb::PromptVersion::default()
    }
}

/// A protobuf variable type as the registry's; unset means string. `None` for a value
/// this client does not know (a newer server's).
pub(crate) fn type_from_pb(var_type: i32) -> Option<VariableType> {
    Some(match pb::VariableType::try_from(var_type).ok()? {
        pb::VariableType::Unspecified | pb::VariableType::String => VariableType::String,
        pb::VariableType::Int => VariableType::Int,
        pb::VariableType::Float => VariableType::Float,
        pb::VariableType::Bool => VariableType::Bool,
        pb::VariableType::List => VariableType::List,
        pb::VariableType::Object => VariableType::Object,
    })
}

/// A protobuf variable type's lowercase name, as files write it (`string`, `list`, ...).
pub(crate) fn type_name(var_type: i32) -> &'static str {
    type_from_pb(var_type).map_or("unknown", VariableType::as_str)
}

/// A variable change kind's short name: `added`, `removed` or `changed`.
pub(crate) fn change_kind_name(kind: i32) -> &'static str {
    match pb::VariableChangeKind::try_from(kind) {
        Ok(pb::VariableChangeKind::Added) => "added",
        Ok(pb::VariableChangeKind::Removed) => "removed",
        Ok(pb::VariableChangeKind::Changed) => "changed",
        Ok(pb::VariableChangeKind::Unspecified) | Err(_) => "unknown",
    }
}

/// An event kind's short name: `created`, `activated`, `label-moved`, `snapshot`, ...
pub(crate) fn event_kind_name(kind: i32) -> &'static str {
    match pb::PromptEventKind::try_from(kind) {
        Ok(pb::PromptEventKind::VersionCreated) => "created",
        Ok(pb::PromptEventKind::VersionActivated) => "activated",
        Ok(pb::PromptEventKind::LabelMoved) => "label-moved",
        Ok(pb::PromptEventKind::LabelDeleted) => "label-deleted",
        Ok(pb::PromptEventKind::VersionDeleted) => "deleted",
        Ok(pb::PromptEventKind::PromptDeleted) => "prompt-deleted",
        Ok(pb::PromptEventKind::Snapshot) => "snapshot",
        Ok(pb::PromptEventKind::SnapshotEnd) => "snapshot-end",
        Ok(pb::PromptEventKind::Unspecified) | Err(_) => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use prost_types::value::Kind;

    use super::*;
    use crate::cli::files::parse_document;

    const YAML: &str = r#"
name: support/reply
version: 1.2.0
template: |
  Answer in a {{ tone }} tone: {% for t in topics %}{{ t }} {% endfor %}
messages:
  - role: system
    template: You are helpful.
variables:
  - name: tone
    type: string
    default_value: friendly
    description: How to sound.
  - name: topics
    type: array
    required: true
  - name: limit
    type: int
    default_value: 3
    validation: "[0-9]+"
model_config:
  model: gpt-4o
  parameters:
    temperature: 0.2
tags: [support]
metadata:
  team: care
author: alice
commit_message: first
"#;

    #[test]
    fn a_yaml_file_becomes_a_create_request() {
        let file: NewPromptVersion = parse_document(Path::new("p.yaml"), YAML).unwrap();
        let version = version_to_pb(file);
        assert_eq!(version.name, "support/reply");
        assert_eq!(version.version, "1.2.0");
        assert!(version.template.starts_with("Answer in a {{ tone }} tone"));
        assert_eq!(version.messages[0].role, "system");
        let types: Vec<_> = version
            .variables
            .iter()
            .map(|v| type_name(v.r#type))
            .collect();
        assert_eq!(types, ["string", "list", "int"]);
        assert_eq!(version.variables[1].r#type, pb::VariableType::List as i32);
        assert!(version.variables[1].required);
        assert_eq!(
            version.variables[0].default_value.as_ref().unwrap().kind,
            Some(Kind::StringValue("friendly".into()))
        );
        assert_eq!(
            version.variables[2].default_value.as_ref().unwrap().kind,
            Some(Kind::NumberValue(3.0))
        );
        assert_eq!(version.variables[2].validation, "[0-9]+");
        let config = version.model_config.unwrap();
        assert_eq!(config.model, "gpt-4o");
        assert_eq!(
            config.parameters.unwrap().fields["temperature"].kind,
            Some(Kind::NumberValue(0.2))
        );
        assert_eq!(version.tags, ["support"]);
        assert_eq!(version.metadata["team"], "care");
        assert_eq!(version.author, "alice");
        assert_eq!(version.commit_message, "first");
    }

    #[test]
    fn unknown_fields_in_a_file_are_refused() {
        let err = parse_document::<NewPromptVersion>(
            Path::new("p.yaml"),
            "name: a\nversion: 1.0.0\ntemplate: x\ntemplat: y\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `templat`"), "{err}");
    }

    #[test]
    fn a_json_file_works_too() {
        let file: NewPromptVersion = parse_document(
            Path::new("p.json"),
            r#"{"name": "a", "version": "1.0.0", "template": "{{ x }}", "variables": [{"name": "x", "type": "object"}]}"#,
        )
        .unwrap();
        let version = version_to_pb(file);
        assert_eq!(version.variables[0].r#type, pb::VariableType::Object as i32);
        assert_eq!(version.variables[0].default_value, None);
        assert_eq!(version.model_config, None);
    }

    #[test]
    fn enum_names() {
        assert_eq!(type_name(pb::VariableType::Unspecified as i32), "string");
        assert_eq!(type_name(99), "unknown");
        assert_eq!(
            type_from_pb(pb::VariableType::Bool as i32),
            Some(VariableType::Bool)
        );
        assert_eq!(
            event_kind_name(pb::PromptEventKind::LabelMoved as i32),
            "label-moved"
        );
        assert_eq!(
            event_kind_name(pb::PromptEventKind::SnapshotEnd as i32),
            "snapshot-end"
        );
        assert_eq!(
            change_kind_name(pb::VariableChangeKind::Added as i32),
            "added"
        );
    }
}
