use serde_json::json;

use super::*;
use crate::variable::VariableType;

fn var(
    name: &str,
    var_type: VariableType,
    required: bool,
    default: Option<JsonValue>,
) -> PromptVariable {
    PromptVariable {
        name: name.into(),
        var_type,
        required,
        default_value: default,
        description: String::new(),
        validation: String::new(),
    }
}

fn compile(template: &str, variables: &[PromptVariable]) -> CompiledPrompt {
    CompiledPrompt::compile(template, &[], variables, &RegistryLimits::default())
        .unwrap_or_else(|errs| panic!("compile failed: {errs:?}"))
        .0
}

fn values(pairs: JsonValue) -> BTreeMap<String, JsonValue> {
    serde_json::from_value(pairs).unwrap()
}

fn violations(err: RegistryError) -> Vec<FieldViolation> {
    match err {
        RegistryError::InvalidArgument(v) => v,
        other => panic!("expected invalid argument, got {other:?}"),
    }
}

/// The seed's README example: defaults fill in, given values win.
#[test]
fn renders_the_seed_code_review_example() {
    let prompt = compile(
        "Review this {{language}} code for {{focus_area}}: {{code}}",
        &[
            var("language", VariableType::String, true, None),
            var(
                "focus_area",
                VariableType::String,
                true,
                Some(json!("bugs")),
            ),
            var("code", VariableType::String, true, None),
        ],
    );
    let out = prompt
        .render(&values(
            json!({"language": "Go", "focus_area": "performance", "code": "func main() { ... }"}),
        ))
        .unwrap();
    assert_eq!(
        out.text,
        "Review this Go code for performance: func main() { ... }"
    );
    let out = prompt
        .render(&values(json!({"language": "Go", "code": "x"})))
        .unwrap();
    assert_eq!(out.text, "Review this Go code for bugs: x");
}

#[test]
fn a_value_containing_template_syntax_stays_literal() {
    let prompt = compile("A={{a}} B={{b}}", &[]);
    let out = prompt
        .render(&values(json!({"a": "{{b}}", "b": "{{a}}"})))
        .unwrap();
    assert_eq!(out.text, "A={{b}} B={{a}}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let prompt = compile(
        "{{ n }} {{ code }} {{ lang }}",
        &[
            var("n", VariableType::Int, true, None),
            var("code", VariableType::String, true, None),
            var("lang", VariableType::String, true, None),
        ],
    );
    let errs = violations(
        prompt
            .render(&values(json!({"n": "three", "langauge": "Go"})))
            .unwrap_err(),
    );
    let fields: Vec<&str> = errs.iter().map(|v| v.field.as_str()).collect();
    // Unknown names first, then declared variables in declaration order.
    assert_eq!(
        fields,
        [
            "variables.langauge",
            "variables.n",
            "variables.code",
            "variables.lang"
        ]
    );
    assert!(errs[1].description.contains("must be an int"));
    assert!(errs[2]
        .description
        .contains("missing required variable: code"));
}

#[test]
fn optional_variables_without_value_render_empty_and_false() {
    let prompt = compile(
        "[{{ note }}]{% if note %}has note{% else %}no note{% endif %}",
        &[var("note", VariableType::String, false, None)],
    );
    assert_eq!(prompt.render(&BTreeMap::new()).unwrap().text, "[]no note");
}

#[test]
fn conditionals_loops_and_filters_work() {
    let prompt = compile(
        "{% for item in items %}{{ loop.index }}. {{ item | upper }}\n{% endfor %}{% if strict %}Be strict.{% endif %}",
        &[var("items", VariableType::List, true, None), var("strict", VariableType::Bool, false, Some(json!(false)))],
    );
    let out = prompt
        .render(&values(json!({"items": ["a", "b"], "strict": true})))
        .unwrap();
    assert_eq!(out.text, "1. A\n2. B\nBe strict.");
}

#[test]
fn ints_render_without_a_fraction() {
    let prompt = compile(
        "{{ n }} / {{ x }}",
        &[
            var("n", VariableType::Int, true, None),
            var("x", VariableType::Float, true, None),
        ],
    );
    let out = prompt.render(&values(json!({"n": 3.0, "x": 2.5}))).unwrap();
    assert_eq!(out.text, "3 / 2.5");
}

#[test]
fn undeclared_variables_are_refused_and_inferred_when_none_are_declared() {
    let errs = CompiledPrompt::compile(
        "{{ a }} {{ b }}",
        &[],
        &[var("a", VariableType::String, true, None)],
        &RegistryLimits::default(),
    )
    .unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].description.contains("\"b\""),
        "{}",
        errs[0].description
    );

    let (_, inferred) = CompiledPrompt::compile(
        "{{ b }} {{ a }} {% for x in range(3) %}{{ x }}{% endfor %}",
        &[],
        &[],
        &RegistryLimits::default(),
    )
    .unwrap();
    let names: Vec<&str> = inferred.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        ["a", "b"],
        "globals such as range and loop variables are not variables"
    );
    assert!(inferred
        .iter()
        .all(|v| v.required && v.var_type == VariableType::String));
}

#[test]
fn syntax_errors_name_line_and_column() {
    let errs = CompiledPrompt::compile(
        "line one\nHello {{ name }\n",
        &[],
        &[],
        &RegistryLimits::default(),
    )
    .unwrap_err();
    assert_eq!(errs[0].field, "template");
    assert!(
        errs[0]
            .description
            .starts_with("syntax error at line 2, column"),
        "{}",
        errs[0].description
    );
}

#[test]
fn chat_prompts_render_to_messages() {
    let messages = [
        ChatMessage {
            role: "system".into(),
            template: "You review {{ language }}.".into(),
        },
        ChatMessage {
            role: "user".into(),
            template: "{{ code }}".into(),
        },
    ];
    let (prompt, vars) =
        CompiledPrompt::compile("", &messages, &[], &RegistryLimits::default()).unwrap();
    assert_eq!(vars.len(), 2);
    let out = prompt
        .render(&values(json!({"language": "Rust", "code": "fn main() {}"})))
        .unwrap();
    assert_eq!(out.text, "");
    assert_eq!(
        out.messages,
        [
            RenderedMessage {
                role: "system".into(),
                content: "You review Rust.".into()
            },
            RenderedMessage {
                role: "user".into(),
                content: "fn main() {}".into()
            },
        ]
    );
}

#[test]
fn unknown_roles_and_oversized_templates_are_refused() {
    let messages = [ChatMessage {
        role: "robot".into(),
        template: "hi".into(),
    }];
    let errs = CompiledPrompt::compile("", &messages, &[], &RegistryLimits::default()).unwrap_err();
    assert_eq!(errs[0].field, "messages[0].role");

    let limits = RegistryLimits {
        max_template_bytes: 10,
        ..RegistryLimits::default()
    };
    let errs =
        CompiledPrompt::compile("this is more than ten bytes", &[], &[], &limits).unwrap_err();
    assert_eq!(errs[0].field, "template");
}

#[test]
fn runaway_templates_are_stopped() {
    let limits = RegistryLimits {
        render_fuel: 10_000,
        max_render_bytes: 1 << 20,
        ..RegistryLimits::default()
    };
    let (prompt, _) = CompiledPrompt::compile(
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        &[],
        &[],
        &limits,
    )
    .unwrap();
    assert!(matches!(
        prompt.render(&BTreeMap::new()),
        Err(RegistryError::ResourceExhausted(_))
    ));

    let limits = RegistryLimits {
        max_render_bytes: 100,
        ..RegistryLimits::default()
    };
    let (prompt, _) = CompiledPrompt::compile("{{ s }}{{ s }}", &[], &[], &limits).unwrap();
    let err = prompt
        .render(&values(json!({"s": "y".repeat(60)})))
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::ResourceExhausted(ref m) if m.contains("100 bytes")),
        "{err}"
    );
}

#[test]
fn strict_undefined_catches_attribute_typos() {
    let prompt = compile(
        "{{ user.nmae }}",
        &[var("user", VariableType::Object, true, None)],
    );
    let errs = violations(
        prompt
            .render(&values(json!({"user": {"name": "ada"}})))
            .unwrap_err(),
    );
    assert_eq!(errs[0].field, "template");
}

#[test]
fn inferred_variables_count_against_max_variables() {
    let limits = RegistryLimits::default();
    let many: String = (0..=limits.max_variables)
        .map(|index| format!("{{{{ v{index} }}}}"))
        .collect();
    let errs = CompiledPrompt::compile(&many, &[], &[], &limits).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].field, "variables");
    assert!(
        errs[0]
            .description
            .contains("101 variables, over the limit of 100"),
        "{}",
        errs[0].description
    );
    let exactly: String = (0..limits.max_variables)
        .map(|index| format!("{{{{ v{index} }}}}"))
        .collect();
    let (_, variables) = CompiledPrompt::compile(&exactly, &[], &[], &limits).unwrap();
    assert_eq!(variables.len(), limits.max_variables);
}
