//! Conversions between the PromptService messages and the registry's types. Incoming
//! messages are destructured field by field, so a field added to the proto cannot be
//! ignored by accident: the compiler points here.

use std::collections::BTreeMap;

use llmops_registry::{
    ChatMessage, FieldViolation, ModelConfig, NewPromptVersion, PromptEvent, PromptEventKind,
    PromptSummary, PromptVariable, PromptVersionView, VariableChange, VariableChangeKind,
    VariableType,
};
use tonic::Status;

use crate::grpc::convert::{
    json_from_struct, json_from_value, struct_from_json, timestamp, value_from_json,
};
use crate::grpc::status::invalid_argument;
use crate::pb;

/// A client's version, as the registry takes it. Output-only fields are ignored.
pub(crate) fn new_prompt_version(version: pb::PromptVersion) -> Result<NewPromptVersion, Status> {
    let pb::PromptVersion {
        id: _,
        name,
        version,
        template,
        messages,
        variables,
        model_config,
        tags,
        metadata,
        author,
        description,
        commit_message,
        is_active: _,
        labels: _,
        created_at: _,
        updated_at: _,
    } = version;
    let mut violations = Vec::new();
    let variables = variables
        .into_iter()
        .enumerate()
        .filter_map(|(index, variable)| {
            variable_from_pb(index, variable)
                .map_err(|v| violations.push(v))
                .ok()
        })
        .collect();
    if !violations.is_empty() {
        return Err(invalid_argument(violations, "prompt_version"));
    }
    Ok(NewPromptVersion {
        name,
        version,
        template,
        messages: messages
            .into_iter()
            .map(|pb::ChatMessage { role, template }| ChatMessage { role, template })
            .collect(),
        variables,
        model_config: model_config.map(|pb::ModelConfig { model, parameters }| ModelConfig {
            model,
            parameters: parameters.map(json_from_struct).unwrap_or_default(),
        }),
        tags,
        metadata: metadata.into_iter().collect(),
        author,
        description,
        commit_message,
    })
}

fn variable_from_pb(
    index: usize,
    variable: pb::PromptVariable,
) -> Result<PromptVariable, FieldViolation> {
    let pb::PromptVariable {
        name,
        r#type,
        required,
        default_value,
        description,
        validation,
    } = variable;
    let var_type = match pb::VariableType::try_from(r#type) {
        Ok(pb::VariableType::Unspecified | pb::VariableType::String) => VariableType::String,
        Ok(pb::VariableType::Int) => VariableType::Int,
        Ok(pb::VariableType::Float) => VariableType::Float,
        Ok(pb::VariableType::Bool) => VariableType::Bool,
        Ok(pb::VariableType::List) => VariableType::List,
        Ok(pb::VariableType::Object) => VariableType::Object,
        Err(_) => {
            return Err(FieldViolation::new(
                format!("variables[{index}].type"),
                format!("{type} is not a VariableType", type = r#type),
            ))
        }
    };
    Ok(PromptVariable {
        name,
        var_type,
        required,
        default_value: default_value.map(json_from_value).filter(|v| !v.is_null()),
        description,
        validation,
    })
}

/// Chat message templates as sent to clients (and written to prompt files).
pub(crate) fn messages_to_pb(messages: Vec<ChatMessage>) -> Vec<pb::ChatMessage> {
    messages
        .into_iter()
        .map(|m| pb::ChatMessage {
            role: m.role,
            template: m.template,
        })
        .collect()
}

/// A version's model configuration as sent to clients (and written to prompt files).
pub(crate) fn model_config_to_pb(config: ModelConfig) -> pb::ModelConfig {
    pb::ModelConfig {
        model: config.model,
        parameters: Some(struct_from_json(&config.parameters)),
    }
}

pub(crate) fn variable_to_pb(variable: PromptVariable) -> pb::PromptVariable {
    let PromptVariable {
        name,
        var_type,
        required,
        default_value,
        description,
        validation,
    } = variable;
    let r#type = match var_type {
        VariableType::String => pb::VariableType::String,
        VariableType::Int => pb::VariableType::Int,
        VariableType::Float => pb::VariableType::Float,
        VariableType::Bool => pb::VariableType::Bool,
        VariableType::List => pb::VariableType::List,
        VariableType::Object => pb::VariableType::Object,
    };
    pb::PromptVariable {
        name,
        r#type: r#type.into(),
        required,
        default_value: default_value.as_ref().map(value_from_json),
        description,
        validation,
    }
}

/// A stored version as clients see it. Takes the view by value: the registry already
/// handed out an owned copy, so its fields move into the message instead of being
/// copied a second time on the read path.
pub(crate) fn prompt_version_to_pb(view: PromptVersionView) -> pb::PromptVersion {
    let PromptVersionView {
        version,
        is_active,
        labels,
    } = view;
    pb::PromptVersion {
        id: version.id.to_string(),
        version: version.version.to_string(),
        name: version.name,
        template: version.template,
        messages: messages_to_pb(version.messages),
        variables: version.variables.into_iter().map(variable_to_pb).collect(),
        model_config: version.model_config.map(model_config_to_pb),
        tags: version.tags,
        metadata: version.metadata.into_iter().collect(),
        author: version.author,
        description: version.description,
        commit_message: version.commit_message,
        is_active,
        labels,
        created_at: Some(timestamp(version.created_at)),
        updated_at: Some(timestamp(version.updated_at)),
    }
}

pub(crate) fn summary_to_pb(summary: &PromptSummary) -> pb::PromptSummary {
    pb::PromptSummary {
        name: summary.name.clone(),
        active_version: summary.active_version.to_string(),
        labels: summary
            .labels
            .iter()
            .map(|(label, version)| (label.clone(), version.to_string()))
            .collect(),
        version_count: summary.version_count as u32,
        latest_version: summary.latest_version.to_string(),
        updated_at: Some(timestamp(summary.updated_at)),
    }
}

pub(crate) fn variable_change_to_pb(change: &VariableChange) -> pb::VariableChange {
    let kind = match change.kind {
        VariableChangeKind::Added => pb::VariableChangeKind::Added,
        VariableChangeKind::Removed => pb::VariableChangeKind::Removed,
        VariableChangeKind::Changed => pb::VariableChangeKind::Changed,
    };
    pb::VariableChange {
        name: change.name.clone(),
        kind: kind.into(),
        before: change.before.clone().map(variable_to_pb),
        after: change.after.clone().map(variable_to_pb),
        changed_fields: change
            .changed_fields
            .iter()
            .map(|f| (*f).to_owned())
            .collect(),
    }
}

pub(crate) fn event_to_pb(event: &PromptEvent) -> pb::PromptEvent {
    let kind = match event.kind {
        PromptEventKind::VersionCreated => pb::PromptEventKind::VersionCreated,
        PromptEventKind::VersionActivated => pb::PromptEventKind::VersionActivated,
        PromptEventKind::LabelMoved => pb::PromptEventKind::LabelMoved,
        PromptEventKind::LabelDeleted => pb::PromptEventKind::LabelDeleted,
        PromptEventKind::VersionDeleted => pb::PromptEventKind::VersionDeleted,
        PromptEventKind::PromptDeleted => pb::PromptEventKind::PromptDeleted,
    };
    let prompt_version = match &event.version {
        Some(view) => prompt_version_to_pb(view.clone()),
        None => pb::PromptVersion {
            name: event.prompt_name.clone(),
            ..Default::default()
        },
    };
    pb::PromptEvent {
        sequence: event.sequence,
        kind: kind.into(),
        prompt_version: Some(prompt_version),
        label: event.label.clone().unwrap_or_default(),
        time: Some(timestamp(event.time)),
        previous_version: event.previous_version.clone().unwrap_or_default(),
        override_reason: event.override_reason.clone().unwrap_or_default(),
        actor: event.actor.clone().unwrap_or_default(),
    }
}

/// Render variables as JSON values.
pub(crate) fn render_values(
    variables: std::collections::BTreeMap<String, prost_types::Value>,
) -> BTreeMap<String, serde_json::Value> {
    variables
        .into_iter()
        .map(|(name, value)| (name, json_from_value(value)))
        .collect()
}
