//! PromptService end to end: every RPC and every error code, over real gRPC.

mod common;

use common::backend::Backend;

use std::collections::BTreeMap;

use common::{number_value, string_value, TestServer};
use llmops::pb;
use tonic::Code;
use tonic_types::StatusExt;

fn version(name: &str, version: &str, template: &str) -> pb::PromptVersion {
    pb::PromptVersion {
        name: name.into(),
        version: version.into(),
        template: template.into(),
        ..Default::default()
    }
}

fn variable(
    name: &str,
    ty: pb::VariableType,
    required: bool,
    default: Option<prost_types::Value>,
) -> pb::PromptVariable {
    pb::PromptVariable {
        name: name.into(),
        r#type: ty.into(),
        required,
        default_value: default,
        ..Default::default()
    }
}

async fn create(
    server: &TestServer,
    v: pb::PromptVersion,
) -> Result<pb::PromptVersion, tonic::Status> {
    server
        .prompts()
        .create_prompt_version(pb::CreatePromptVersionRequest {
            prompt_version: Some(v),
        })
        .await
        .map(|r| r.into_inner().prompt_version.unwrap())
}

fn fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

fn review_prompt(v: &str) -> pb::PromptVersion {
    let mut prompt = version(
        "code-review",
        v,
        "Review this {{language}} code for {{focus_area}}: {{code}}",
    );
    prompt.variables = vec![
        variable("language", pb::VariableType::String, true, None),
        variable(
            "focus_area",
            pb::VariableType::String,
            true,
            Some(string_value("bugs")),
        ),
        variable("code", pb::VariableType::String, true, None),
    ];
    prompt
}

async fn create_get_render_and_the_seed_example(backend: Backend) {
    let server = TestServer::start_on_backend(backend, |_| {}).await;
    let created = create(&server, review_prompt("1.0.0")).await.unwrap();
    assert!(created.is_active);
    assert!(!created.id.is_empty());
    assert!(created.created_at.is_some());

    let mut client = server.prompts();
    let got = client
        .get_prompt_version(pb::GetPromptVersionRequest {
            name: "code-review".into(),
            version: "1.0.0".into(),
            label: String::new(),
            user_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .prompt_version
        .unwrap();
    assert_eq!(got, created);

    let variables = BTreeMap::from([
        ("language".to_owned(), string_value("Go")),
        ("focus_area".to_owned(), string_value("performance")),
        ("code".to_owned(), string_value("func main() { ... }")),
    ]);
    let rendered = client
        .render_prompt(pb::RenderPromptRequest {
            name: "code-review".into(),
            variables,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rendered.text,
        "Review this Go code for performance: func main() { ... }"
    );
    assert_eq!(
        (rendered.name.as_str(), rendered.version.as_str()),
        ("code-review", "1.0.0")
    );
}

#[tokio::test]
async fn render_reports_every_problem_as_field_violations() {
    let server = TestServer::start().await;
    let mut prompt = review_prompt("1.0.0");
    prompt.variables.push(pb::PromptVariable {
        validation: "[0-9]+".into(),
        ..variable("ticket", pb::VariableType::String, false, None)
    });
    prompt.template.push_str(" {{ ticket }}");
    create(&server, prompt).await.unwrap();
    let variables = BTreeMap::from([
        ("langauge".to_owned(), string_value("Go")),
        ("code".to_owned(), number_value(3.0)),
        ("ticket".to_owned(), string_value("abc123")),
    ]);
    let status = server
        .prompts()
        .render_prompt(pb::RenderPromptRequest {
            name: "code-review".into(),
            variables,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let mut found = fields(&status);
    found.sort();
    assert_eq!(
        found,
        [
            "variables.code",
            "variables.langauge",
            "variables.language",
            "variables.ticket"
        ]
    );
    assert!(
        status
            .message()
            .contains("missing required variable: language"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn create_refuses_bad_input_with_the_field_and_changes_nothing() {
    let server = TestServer::start().await;
    let cases: Vec<(pb::PromptVersion, &str)> = vec![
        (version("", "1.0.0", "x"), "prompt_version.name"),
        (version("bad name!", "1.0.0", "x"), "prompt_version.name"),
        (
            version(&"n".repeat(129), "1.0.0", "x"),
            "prompt_version.name",
        ),
        (version("p", "1.0", "x"), "prompt_version.version"),
        (
            version("p", "1.0.0", "Hello {{ name }"),
            "prompt_version.template",
        ),
        (
            version("p", "1.0.0", &"x".repeat(256 * 1024 + 1)),
            "prompt_version.template",
        ),
        (
            pb::PromptVersion {
                variables: vec![variable("other", pb::VariableType::String, true, None)],
                ..version("p", "1.0.0", "{{ name }}")
            },
            "prompt_version.variables",
        ),
        (
            pb::PromptVersion {
                variables: vec![variable(
                    "n",
                    pb::VariableType::Int,
                    false,
                    Some(string_value("three")),
                )],
                ..version("p", "1.0.0", "{{ n }}")
            },
            "prompt_version.variables[0].default_value",
        ),
        (
            pb::PromptVersion {
                variables: vec![pb::PromptVariable {
                    validation: "(".into(),
                    ..variable("n", pb::VariableType::String, false, None)
                }],
                ..version("p", "1.0.0", "{{ n }}")
            },
            "prompt_version.variables[0].validation",
        ),
        (
            pb::PromptVersion {
                variables: (0..101)
                    .map(|i| variable(&format!("v{i}"), pb::VariableType::String, false, None))
                    .collect(),
                ..version("p", "1.0.0", "x")
            },
            "prompt_version.variables",
        ),
    ];
    for (prompt, field) in cases {
        let status = create(&server, prompt).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            fields(&status).iter().any(|f| f == field),
            "{field} not in {:?}: {}",
            fields(&status),
            status.message()
        );
    }
    let status = server
        .prompts()
        .create_prompt_version(pb::CreatePromptVersionRequest {
            prompt_version: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let listed = server
        .prompts()
        .list_prompts(pb::ListPromptsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.prompts.is_empty(), "nothing was half-written");

    let syntax = create(&server, version("p", "1.0.0", "line\nHello {{ name }"))
        .await
        .unwrap_err();
    assert!(
        syntax.message().contains("line 2, column"),
        "{}",
        syntax.message()
    );
}

#[tokio::test]
async fn duplicates_and_missing_things_get_their_codes() {
    let server = TestServer::start().await;
    create(&server, version("p", "1.0.0+a", "x")).await.unwrap();
    assert_eq!(
        create(&server, version("p", "1.0.0+b", "y"))
            .await
            .unwrap_err()
            .code(),
        Code::AlreadyExists
    );

    let mut client = server.prompts();
    let get = |name: &str, version: &str, label: &str| pb::GetPromptVersionRequest {
        name: name.into(),
        version: version.into(),
        label: label.into(),
        user_id: String::new(),
    };
    let cases = [
        (("nope", "", ""), Code::NotFound),
        (("p", "9.9.9", ""), Code::NotFound),
        (("p", "", "prod"), Code::NotFound),
        (("p", "x", ""), Code::InvalidArgument),
        (("p", "1.0.0", "prod"), Code::InvalidArgument),
        (("", "", ""), Code::InvalidArgument),
    ];
    for ((name, version, label), code) in cases {
        let status = client
            .get_prompt_version(get(name, version, label))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            code,
            "{name:?} {version:?} {label:?}: {status:?}"
        );
    }
    let by_build = client
        .get_prompt_version(get("p", "1.0.0", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        by_build.prompt_version.unwrap().version,
        "1.0.0+a",
        "build metadata is kept and ignored for lookup"
    );
    let status = client
        .delete_prompt_label(pb::DeletePromptLabelRequest {
            name: "p".into(),
            label: "prod".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .delete_prompt(pb::DeletePromptRequest {
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .list_prompt_versions(pb::ListPromptVersionsRequest {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

async fn activation_labels_and_deletion_rules(backend: Backend) {
    let server = TestServer::start_on_backend(backend, |_| {}).await;
    let mut client = server.prompts();
    for v in ["1.0.0", "1.1.0", "2.0.0-rc.1"] {
        create(&server, version("p", v, &format!("text {v}")))
            .await
            .unwrap();
    }
    let latest = client
        .get_latest_prompt_version(pb::GetLatestPromptVersionRequest { name: "p".into() })
        .await
        .unwrap();
    assert_eq!(
        latest.into_inner().prompt_version.unwrap().version,
        "1.1.0",
        "pre-releases are skipped"
    );

    let activated = client
        .activate_prompt_version(pb::ActivatePromptVersionRequest {
            name: "p".into(),
            version: "1.1.0".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .prompt_version
        .unwrap();
    assert!(activated.is_active);
    let versions = client
        .list_prompt_versions(pb::ListPromptVersionsRequest {
            name: "p".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .prompt_versions;
    assert_eq!(
        versions
            .iter()
            .map(|v| v.version.as_str())
            .collect::<Vec<_>>(),
        ["2.0.0-rc.1", "1.1.0", "1.0.0"]
    );
    assert_eq!(versions.iter().filter(|v| v.is_active).count(), 1);

    let set = client
        .set_prompt_label(pb::SetPromptLabelRequest {
            name: "p".into(),
            label: "production".into(),
            version: "1.0.0".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            set.previous_version.as_str(),
            set.prompt_version.unwrap().labels
        ),
        ("", vec!["production".to_owned()])
    );
    let moved = client
        .set_prompt_label(pb::SetPromptLabelRequest {
            name: "p".into(),
            label: "production".into(),
            version: "2.0.0-rc.1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.previous_version, "1.0.0");
    let status = client
        .set_prompt_label(pb::SetPromptLabelRequest {
            name: "p".into(),
            label: "active".into(),
            version: "1.0.0".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let delete = |v: &str| pb::DeletePromptVersionRequest {
        name: "p".into(),
        version: v.into(),
    };
    assert_eq!(
        client
            .delete_prompt_version(delete("1.1.0"))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    assert_eq!(
        client
            .delete_prompt_version(delete("2.0.0-rc.1"))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    client.delete_prompt_version(delete("1.0.0")).await.unwrap();
    assert_eq!(
        client
            .delete_prompt_version(delete("1.0.0"))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    let summary = client
        .list_prompts(pb::ListPromptsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .prompts;
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].active_version, "1.1.0");
    assert_eq!(summary[0].version_count, 2);
    assert_eq!(
        summary[0].labels.get("production").map(String::as_str),
        Some("2.0.0-rc.1")
    );

    let deleted = client
        .delete_prompt(pb::DeletePromptRequest { name: "p".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.deleted_versions, 2);
    assert!(client
        .list_prompts(pb::ListPromptsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .prompts
        .is_empty());
}

async fn concurrent_activations_leave_exactly_one_active_version(backend: Backend) {
    let server = TestServer::start_on_backend(backend, |_| {}).await;
    for i in 0..8 {
        create(&server, version("p", &format!("1.{i}.0"), "x"))
            .await
            .unwrap();
    }
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let mut client = server.prompts();
            tokio::spawn(async move {
                client
                    .activate_prompt_version(pb::ActivatePromptVersionRequest {
                        name: "p".into(),
                        version: format!("1.{i}.0"),
                        ..Default::default()
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let versions = server
        .prompts()
        .list_prompt_versions(pb::ListPromptVersionsRequest {
            name: "p".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .prompt_versions;
    assert_eq!(versions.iter().filter(|v| v.is_active).count(), 1);
}

async fn listing_every_version_pages_by_name_then_newest(backend: Backend) {
    let server = TestServer::start_on_backend(backend, |_| {}).await;
    for (name, v) in [
        ("b", "1.0.0"),
        ("a", "1.0.0"),
        ("b", "2.0.0"),
        ("a", "1.1.0"),
        ("c", "0.1.0"),
    ] {
        create(&server, version(name, v, "x")).await.unwrap();
    }
    let mut client = server.prompts();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_prompt_versions(pb::ListPromptVersionsRequest {
                name: String::new(),
                page_size: 2,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(
            page.prompt_versions
                .iter()
                .map(|v| format!("{}@{}", v.name, v.version)),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen,
        ["a@1.1.0", "a@1.0.0", "b@2.0.0", "b@1.0.0", "c@0.1.0"]
    );
}

#[tokio::test]
async fn diff_aligns_lines_and_lists_variable_changes() {
    let server = TestServer::start().await;
    create(
        &server,
        version("p", "1.0.0", "Review {{ code }}\nfor bugs\nthanks\n"),
    )
    .await
    .unwrap();
    let mut newer = version(
        "p",
        "1.1.0",
        "Review {{ code }}\nBe concise.\nfor bugs\nthanks\n",
    );
    newer.variables = vec![
        variable("code", pb::VariableType::String, true, None),
        variable("tone", pb::VariableType::String, false, None),
    ];
    create(&server, newer).await.unwrap();
    let diff = server
        .prompts()
        .diff_prompt_versions(pb::DiffPromptVersionsRequest {
            name: "p".into(),
            from_version: "1.0.0".into(),
            to_version: "1.1.0".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((diff.lines_added, diff.lines_removed), (1, 0));
    assert!(
        diff.unified_diff.contains("\n+Be concise.\n"),
        "{}",
        diff.unified_diff
    );
    assert_eq!(diff.variable_changes.len(), 1);
    assert_eq!(diff.variable_changes[0].name, "tone");
    assert_eq!(
        diff.variable_changes[0].kind,
        pb::VariableChangeKind::Added as i32
    );
    let status = server
        .prompts()
        .diff_prompt_versions(pb::DiffPromptVersionsRequest {
            name: "p".into(),
            from_version: "1.0.0".into(),
            to_version: "3.0.0".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn chat_prompts_render_messages_and_keep_model_config() {
    let server = TestServer::start().await;
    let prompt = pb::PromptVersion {
        messages: vec![
            pb::ChatMessage {
                role: "system".into(),
                template: "You review {{ language }}.".into(),
            },
            pb::ChatMessage {
                role: "user".into(),
                template: "{% for f in files %}{{ f }}\n{% endfor %}".into(),
            },
        ],
        variables: vec![
            variable("language", pb::VariableType::String, true, None),
            variable("files", pb::VariableType::List, true, None),
        ],
        model_config: Some(pb::ModelConfig {
            model: "gpt-4o".into(),
            parameters: Some(prost_types::Struct {
                fields: [("temperature".to_owned(), number_value(0.2))].into(),
            }),
        }),
        ..version("chat", "1.0.0", "")
    };
    let created = create(&server, prompt).await.unwrap();
    assert_eq!(created.model_config.unwrap().model, "gpt-4o");
    let files = prost_types::Value {
        kind: Some(prost_types::value::Kind::ListValue(
            prost_types::ListValue {
                values: vec![string_value("a.rs"), string_value("b.rs")],
            },
        )),
    };
    let rendered = server
        .prompts()
        .render_prompt(pb::RenderPromptRequest {
            name: "chat".into(),
            label: "active".into(),
            variables: BTreeMap::from([
                ("language".to_owned(), string_value("Rust")),
                ("files".to_owned(), files),
            ]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let messages: Vec<(String, String)> = rendered
        .messages
        .into_iter()
        .map(|m| (m.role, m.content))
        .collect();
    assert_eq!(
        messages,
        [
            ("system".into(), "You review Rust.".into()),
            ("user".into(), "a.rs\nb.rs\n".into())
        ]
    );
}

#[tokio::test]
async fn oversized_messages_are_out_of_range() {
    let server = TestServer::start_with(|config| config.max_message_bytes = 64 * 1024).await;
    let status = create(&server, version("p", "1.0.0", &"x".repeat(100 * 1024)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
}

#[tokio::test]
async fn runaway_renders_are_stopped() {
    let server = TestServer::start_with(|config| config.prompts.render_fuel = 10_000).await;
    create(
        &server,
        version(
            "loop",
            "1.0.0",
            "{% for i in range(10000) %}{% for j in range(10000) %}{{ j }}{% endfor %}{% endfor %}",
        ),
    )
    .await
    .unwrap();
    let status = server
        .prompts()
        .render_prompt(pb::RenderPromptRequest {
            name: "loop".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
}

on_both_backends!(
    create_get_render_and_the_seed_example,
    activation_labels_and_deletion_rules,
    concurrent_activations_leave_exactly_one_active_version,
    listing_every_version_pages_by_name_then_newest,
);
