//! Answers as readable text: borderless tables and plain listings.

use std::io::{self, Write};

use serde_json::Value as JsonValue;

use super::convert::{change_kind_name, event_kind_name, type_name};
pub(crate) use crate::cli::output::json;
use crate::cli::output::yes_no;
use crate::cli::output::{table, write_table, Fields};
use crate::cli::values::{json_from_struct, json_from_value, rfc3339};
use crate::pb;

/// Writes `text`, adding a final newline if it has none.
fn write_block(out: &mut dyn Write, text: &str) -> io::Result<()> {
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        writeln!(out)?;
    }
    Ok(())
}

/// One version in full: its fields, variables, template and messages.
pub(crate) fn version(out: &mut dyn Write, v: &pb::PromptVersion) -> io::Result<()> {
    let mut fields = Fields::new();
    fields.add("name", v.name.clone(), true);
    fields.add("version", v.version.clone(), true);
    fields.add("id", v.id.clone(), false);
    fields.add("active", yes_no(v.is_active).to_owned(), true);
    fields.add("labels", v.labels.join(", "), false);
    fields.add("created", rfc3339(v.created_at.as_ref()), false);
    fields.add("updated", rfc3339(v.updated_at.as_ref()), false);
    fields.add("author", v.author.clone(), false);
    fields.add("description", v.description.clone(), false);
    fields.add("commit message", v.commit_message.clone(), false);
    if let Some(config) = &v.model_config {
        let parameters = config
            .parameters
            .as_ref()
            .map(json_from_struct)
            .filter(|p| !p.is_empty())
            .map(|p| JsonValue::Object(p).to_string());
        let model = [config.model.clone(), parameters.unwrap_or_default()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        fields.add("model", model, false);
    }
    fields.add("tags", v.tags.join(", "), false);
    let mut metadata: Vec<_> = v.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
    metadata.sort();
    fields.add("metadata", metadata.join(", "), false);
    fields.write(out)?;

    if !v.variables.is_empty() {
        writeln!(out, "\nvariables:")?;
        let mut variables = table(&[
            "NAME",
            "TYPE",
            "REQUIRED",
            "DEFAULT",
            "VALIDATION",
            "DESCRIPTION",
        ]);
        for var in &v.variables {
            variables.add_row(vec![
                var.name.clone(),
                type_name(var.r#type).to_owned(),
                yes_no(var.required).to_owned(),
                var.default_value
                    .as_ref()
                    .map(|d| json_from_value(d).to_string())
                    .unwrap_or_default(),
                var.validation.clone(),
                var.description.clone(),
            ]);
        }
        write_table(out, variables)?;
    }
    if !v.template.is_empty() {
        writeln!(out, "\ntemplate:")?;
        write_block(out, &v.template)?;
    }
    if !v.messages.is_empty() {
        writeln!(out, "\nmessages:")?;
        for message in &v.messages {
            writeln!(out, "[{}]", message.role)?;
            write_block(out, &message.template)?;
        }
    }
    Ok(())
}

/// The `list` table.
pub(crate) fn summaries(out: &mut dyn Write, prompts: &[pb::PromptSummary]) -> io::Result<()> {
    let mut t = table(&["NAME", "ACTIVE", "LATEST", "VERSIONS", "LABELS"]);
    for p in prompts {
        let mut labels: Vec<_> = p.labels.iter().map(|(l, v)| format!("{l}={v}")).collect();
        labels.sort();
        t.add_row(vec![
            p.name.clone(),
            p.active_version.clone(),
            p.latest_version.clone(),
            p.version_count.to_string(),
            labels.join(", "),
        ]);
    }
    write_table(out, t)
}

/// The `versions` table.
pub(crate) fn versions(out: &mut dyn Write, versions: &[pb::PromptVersion]) -> io::Result<()> {
    let mut t = table(&["NAME", "VERSION", "ACTIVE", "LABELS", "CREATED", "AUTHOR"]);
    for v in versions {
        t.add_row(vec![
            v.name.clone(),
            v.version.clone(),
            if v.is_active { "yes" } else { "" }.to_owned(),
            v.labels.join(", "),
            rfc3339(v.created_at.as_ref()),
            v.author.clone(),
        ]);
    }
    write_table(out, t)
}

/// A rendered prompt: the text, then each chat message as `[role]` and its content.
pub(crate) fn rendered(out: &mut dyn Write, r: &pb::RenderPromptResponse) -> io::Result<()> {
    if !r.text.is_empty() {
        write_block(out, &r.text)?;
    }
    for message in &r.messages {
        writeln!(out, "[{}]", message.role)?;
        write_block(out, &message.content)?;
    }
    Ok(())
}

/// A diff: the unified diff, then one line per variable change
/// (`+ tone (string, optional)`, `- x`, `~ x: type, default_value`).
pub(crate) fn diff(out: &mut dyn Write, d: &pb::DiffPromptVersionsResponse) -> io::Result<()> {
    if d.unified_diff.is_empty() && d.variable_changes.is_empty() {
        return writeln!(out, "no differences");
    }
    if !d.unified_diff.is_empty() {
        write_block(out, &d.unified_diff)?;
    }
    if !d.variable_changes.is_empty() {
        writeln!(out, "\nvariables:")?;
        for change in &d.variable_changes {
            writeln!(out, "{}", variable_change(change))?;
        }
    }
    Ok(())
}

fn variable_change(c: &pb::VariableChange) -> String {
    match change_kind_name(c.kind) {
        "added" => match &c.after {
            Some(after) => format!(
                "+ {} ({}, {})",
                c.name,
                type_name(after.r#type),
                if after.required {
                    "required"
                } else {
                    "optional"
                }
            ),
            None => format!("+ {}", c.name),
        },
        "removed" => format!("- {}", c.name),
        _ => format!("~ {}: {}", c.name, c.changed_fields.join(", ")),
    }
}

/// One line of `watch`: sequence, kind, `name@version`, label.
pub(crate) fn event_line(e: &pb::PromptEvent) -> String {
    let target = match &e.prompt_version {
        Some(v) if !v.version.is_empty() => format!("{}@{}", v.name, v.version),
        Some(v) => v.name.clone(),
        None => String::new(),
    };
    let mut line = format!(
        "{:<6} {:<14} {} {}",
        e.sequence,
        event_kind_name(e.kind),
        target,
        e.label
    );
    line.truncate(line.trim_end().len());
    if !e.previous_version.is_empty() {
        line.push_str(&format!(" (was {})", e.previous_version));
    }
    if !e.override_reason.is_empty() {
        line.push_str(&format!(" [gate overridden: {}]", e.override_reason));
    }
    line
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cli::testing::text;

    #[test]
    fn list_is_a_borderless_table() {
        let prompts = [pb::PromptSummary {
            name: "greet".into(),
            active_version: "1.0.0".into(),
            latest_version: "1.1.0".into(),
            version_count: 2,
            labels: BTreeMap::from([
                ("staging".to_owned(), "1.1.0".to_owned()),
                ("production".to_owned(), "1.0.0".to_owned()),
            ]),
            updated_at: None,
        }];
        let out = text(|out| summaries(out, &prompts));
        assert_eq!(
            out,
            "NAME   ACTIVE  LATEST  VERSIONS  LABELS\n\
             greet  1.0.0   1.1.0   2         production=1.0.0, staging=1.1.0\n"
        );
    }

    #[test]
    fn diff_lists_variable_changes() {
        let d = pb::DiffPromptVersionsResponse {
            unified_diff: "--- a\n+++ b\n-x\n+y\n".into(),
            variable_changes: vec![
                pb::VariableChange {
                    name: "tone".into(),
                    kind: pb::VariableChangeKind::Added as i32,
                    after: Some(pb::PromptVariable {
                        name: "tone".into(),
                        r#type: pb::VariableType::String as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                pb::VariableChange {
                    name: "x".into(),
                    kind: pb::VariableChangeKind::Removed as i32,
                    ..Default::default()
                },
                pb::VariableChange {
                    name: "y".into(),
                    kind: pb::VariableChangeKind::Changed as i32,
                    changed_fields: vec!["type".into(), "default_value".into()],
                    ..Default::default()
                },
            ],
            lines_added: 1,
            lines_removed: 1,
        };
        assert_eq!(
            text(|out| diff(out, &d)),
            "--- a\n+++ b\n-x\n+y\n\nvariables:\n+ tone (string, optional)\n- x\n~ y: type, default_value\n"
        );
    }

    #[test]
    fn rendered_chat_messages_show_their_role() {
        let r = pb::RenderPromptResponse {
            text: "Hello".into(),
            messages: vec![pb::RenderedMessage {
                role: "system".into(),
                content: "Be brief.".into(),
            }],
            ..Default::default()
        };
        assert_eq!(
            text(|out| rendered(out, &r)),
            "Hello\n[system]\nBe brief.\n"
        );
    }

    #[test]
    fn watch_lines() {
        let e = pb::PromptEvent {
            sequence: 12,
            kind: pb::PromptEventKind::LabelMoved as i32,
            prompt_version: Some(pb::PromptVersion {
                name: "greet".into(),
                version: "1.1.0".into(),
                ..Default::default()
            }),
            label: "production".into(),
            ..Default::default()
        };
        assert_eq!(
            event_line(&e),
            "12     label-moved    greet@1.1.0 production"
        );
        let overridden = pb::PromptEvent {
            previous_version: "1.0.0".into(),
            override_reason: "hotfix".into(),
            ..e
        };
        assert_eq!(
            event_line(&overridden),
            "12     label-moved    greet@1.1.0 production (was 1.0.0) [gate overridden: hotfix]"
        );
        let end = pb::PromptEvent {
            sequence: 12,
            kind: pb::PromptEventKind::SnapshotEnd as i32,
            ..Default::default()
        };
        assert_eq!(event_line(&end), "12     snapshot-end");
    }

    #[test]
    fn a_version_shows_its_fields_and_template() {
        let v = pb::PromptVersion {
            name: "greet".into(),
            version: "1.0.0".into(),
            template: "Hi {{ who }}".into(),
            variables: vec![pb::PromptVariable {
                name: "who".into(),
                r#type: pb::VariableType::String as i32,
                required: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        let out = text(|out| version(out, &v));
        assert!(
            out.starts_with("name:     greet\nversion:  1.0.0\nactive:   no\n"),
            "{out}"
        );
        assert!(
            out.contains("\nvariables:\nNAME  TYPE    REQUIRED"),
            "{out}"
        );
        assert!(out.contains("\nwho   string  yes"), "{out}");
        assert!(out.ends_with("\ntemplate:\nHi {{ who }}\n"), "{out}");
    }
}
