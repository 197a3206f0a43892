//! Differences between two versions: a line-aligned unified diff of their text and a
//! structured list of variable changes.

use std::collections::BTreeMap;

use similar::{ChangeTag, TextDiff};

use crate::model::PromptVersion;
use crate::variable::PromptVariable;

/// How a variable changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariableChangeKind {
    /// Only in the newer version.
    Added,
    /// Only in the older version.
    Removed,
    /// In both, with different attributes.
    Changed,
}

/// One variable's change.
#[derive(Debug, Clone, PartialEq)]
pub struct VariableChange {
    /// The variable's name.
    pub name: String,
    /// Added, removed or changed.
    pub kind: VariableChangeKind,
    /// The older declaration.
    pub before: Option<PromptVariable>,
    /// The newer declaration.
    pub after: Option<PromptVariable>,
    /// For changes: the attributes that differ.
    pub changed_fields: Vec<&'static str>,
}

/// The difference between two versions.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionDiff {
    /// A unified diff with 3 lines of context.
    pub unified_diff: String,
    /// Variable changes, by name.
    pub variable_changes: Vec<VariableChange>,
    /// Lines only in the newer version.
    pub lines_added: usize,
    /// Lines only in the older version.
    pub lines_removed: usize,
}

/// Diffs `from` against `to`. Lines are aligned by a longest-common-subsequence diff
/// (unlike the seed's lockstep walk, one inserted line shows as one added line).
pub fn diff_versions(from: &PromptVersion, to: &PromptVersion) -> VersionDiff {
    let old = document(from);
    let new = document(to);
    let diff = TextDiff::from_lines(&old, &new);
    let (mut lines_added, mut lines_removed) = (0, 0);
    for change in diff.iter_all_changes() {
        match change.tag() {
            ChangeTag::Insert => lines_added += 1,
            ChangeTag::Delete => lines_removed += 1,
            ChangeTag::Equal => {}
        }
    }
    let unified_diff = diff
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("{}@{}", from.name, from.version),
            &format!("{}@{}", to.name, to.version),
        )
        .to_string();
    VersionDiff {
        unified_diff,
        variable_changes: variable_changes(&from.variables, &to.variables),
        lines_added,
        lines_removed,
    }
}

/// The text a version is diffed as: its template, then each message as `[role]` and
/// its template.
fn document(version: &PromptVersion) -> String {
    let mut text = version.template.clone();
    for message in &version.messages {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("[{}]\n{}", message.role, message.template));
    }
    text
}

fn variable_changes(before: &[PromptVariable], after: &[PromptVariable]) -> Vec<VariableChange> {
    let old: BTreeMap<&str, &PromptVariable> =
        before.iter().map(|v| (v.name.as_str(), v)).collect();
    let new: BTreeMap<&str, &PromptVariable> = after.iter().map(|v| (v.name.as_str(), v)).collect();
    let mut names: Vec<&str> = old.keys().chain(new.keys()).copied().collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let (kind, changed_fields) = match (old.get(name), new.get(name)) {
                (None, Some(_)) => (VariableChangeKind::Added, Vec::new()),
                (Some(_), None) => (VariableChangeKind::Removed, Vec::new()),
                (Some(a), Some(b)) => {
                    let fields = changed_fields(a, b);
                    if fields.is_empty() {
                        return None;
                    }
                    (VariableChangeKind::Changed, fields)
                }
                (None, None) => return None,
            };
            Some(VariableChange {
                name: name.to_owned(),
                kind,
                before: old.get(name).map(|v| (*v).clone()),
                after: new.get(name).map(|v| (*v).clone()),
                changed_fields,
            })
        })
        .collect()
}

fn changed_fields(a: &PromptVariable, b: &PromptVariable) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if a.var_type != b.var_type {
        fields.push("type");
    }
    if a.required != b.required {
        fields.push("required");
    }
    if a.default_value != b.default_value {
        fields.push("default_value");
    }
    if a.validation != b.validation {
        fields.push("validation");
    }
    if a.description != b.description {
        fields.push("description");
    }
    fields
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::variable::VariableType;

    fn version(v: &str, template: &str, variables: Vec<PromptVariable>) -> PromptVersion {
        PromptVersion {
            id: Uuid::now_v7(),
            name: "p".into(),
            version: semver::Version::parse(v).unwrap(),
            template: template.into(),
            messages: vec![],
            variables,
            model_config: None,
            tags: vec![],
            metadata: Default::default(),
            author: String::new(),
            description: String::new(),
            commit_message: String::new(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn one_inserted_line_is_one_added_line() {
        // The seed walked lines in lockstep: everything after the insertion looked changed.
        let a = version("1.0.0", "one\ntwo\nthree\nfour\n", vec![]);
        let b = version("1.1.0", "one\ninserted\ntwo\nthree\nfour\n", vec![]);
        let diff = diff_versions(&a, &b);
        assert_eq!((diff.lines_added, diff.lines_removed), (1, 0));
        let body: Vec<&str> = diff
            .unified_diff
            .lines()
            .filter(|l| !l.starts_with("---") && !l.starts_with("+++"))
            .collect();
        assert_eq!(
            body.iter()
                .filter(|l| l.starts_with('+'))
                .collect::<Vec<_>>(),
            [&"+inserted"]
        );
        assert!(!body.iter().any(|l| l.starts_with('-')));
        assert!(
            diff.unified_diff.starts_with("--- p@1.0.0\n+++ p@1.1.0\n"),
            "{}",
            diff.unified_diff
        );
    }

    #[test]
    fn variable_changes_are_structured() {
        let x = PromptVariable::inferred("x");
        let y = PromptVariable::inferred("y");
        let mut x2 = x.clone();
        x2.var_type = VariableType::Int;
        x2.default_value = Some(json!(1));
        let z = PromptVariable::inferred("z");
        let diff = diff_versions(
            &version("1.0.0", "t", vec![x, y]),
            &version("2.0.0", "t", vec![x2, z]),
        );
        let summary: Vec<(&str, VariableChangeKind, Vec<&str>)> = diff
            .variable_changes
            .iter()
            .map(|c| (c.name.as_str(), c.kind, c.changed_fields.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "x",
                    VariableChangeKind::Changed,
                    vec!["type", "default_value"]
                ),
                ("y", VariableChangeKind::Removed, vec![]),
                ("z", VariableChangeKind::Added, vec![]),
            ]
        );
        assert_eq!(diff.unified_diff, "", "identical text has an empty diff");
    }
}
