//! Every RPC of every service against hostile input, listed from the descriptor set so
//! that a new RPC without a case fails this test.
//!
//! Each RPC starts from a baseline request (valid where that takes a valid request to
//! reach the deeper checks) and gets one field at a time replaced by a hostile value:
//! empty and 70,000-byte strings, control characters, unknown ids, malformed and
//! foreign page tokens, zero, negative and huge numbers (page_size 0 and 2^31-1), NaN
//! and infinities, unknown enum values, 20,001-element lists, deeply nested and huge
//! `Value`s, out-of-range timestamps; and whole requests of garbage bytes and invalid
//! UTF-8. Every answer must:
//! - never be INTERNAL or UNKNOWN (a client's input is never the server's fault);
//! - carry a `BadRequest` field violation when it is INVALID_ARGUMENT about a field;
//! - stay under 2 KiB (message and details);
//! - leave the stored state as it was when it is an error (nothing half-written);
//!
//! The server stays SERVING throughout.

mod common;

use std::time::Duration;

use common::raw::{self, status_size};
use common::TestServer;
use llmops::pb;
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor,
    MethodDescriptor, ReflectMessage as _, Value,
};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_types::StatusExt as _;

/// The baseline request of every RPC, as proto3 JSON. `$RUN` and `$ALERT` stand for the
/// fixture run's and alert's ids. Destructive RPCs name things that do not exist, so
/// that a mutation which passes validation changes no fixture.
const BASELINES: &[(&str, &str)] = &[
    // AlertService
    (
        "CreateAlert",
        r#"{"alert": {"type": "ALERT_TYPE_REGRESSION", "severity": "ALERT_SEVERITY_WARNING", "message": "m", "source": "evaluation", "sourceId": "bad-input", "metric": "pass_rate"}}"#,
    ),
    ("GetAlert", r#"{"alertId": "$ALERT"}"#),
    ("ListAlerts", r#"{"pageSize": 10}"#),
    (
        "AcknowledgeAlert",
        r#"{"alertId": "00000000-0000-7000-8000-000000000000", "comment": "c"}"#,
    ),
    (
        "ResolveAlert",
        r#"{"alertId": "00000000-0000-7000-8000-000000000000"}"#,
    ),
    ("Subscribe", r#"{"afterSequence": "0"}"#),
    // EvaluationService: datasets
    ("CreateDataset", r#"{"dataset": {"name": "another"}}"#),
    ("GetDataset", r#"{"datasetId": "d"}"#),
    ("ListDatasets", r#"{"pageSize": 10}"#),
    ("DeleteDataset", r#"{"datasetId": "nope"}"#),
    (
        "AddSamples",
        r#"{"datasetId": "d", "samples": [{"id": "added", "input": "q", "expectedOutput": "a"}]}"#,
    ),
    (
        "ImportSamples",
        r#"{"datasetId": "d", "samples": [{"id": "imported", "input": "q", "expectedOutput": "a"}]}"#,
    ),
    ("ListSamples", r#"{"datasetId": "d", "pageSize": 10}"#),
    ("ExportSamples", r#"{"datasetId": "d"}"#),
    (
        "DeleteSamples",
        r#"{"datasetId": "d", "sampleIds": ["nope"]}"#,
    ),
    // EvaluationService: runs
    (
        "CreateRun",
        r#"{"run": {"datasetId": "d", "promptName": "p", "promptVersion": "1.0.0", "model": "echo", "metrics": [{"name": "exact", "scorer": "exact_match"}]}}"#,
    ),
    ("StartRun", r#"{"runId": "nope"}"#),
    ("GetRun", r#"{"runId": "$RUN"}"#),
    ("ListRuns", r#"{"datasetId": "d", "pageSize": 10}"#),
    ("CancelRun", r#"{"runId": "nope"}"#),
    ("WatchRun", r#"{"runId": "$RUN"}"#),
    ("ListRunResults", r#"{"runId": "$RUN", "pageSize": 10}"#),
    (
        "SubmitRunOutputs",
        r#"{"runId": "nope", "outputs": [{"sampleId": "s1", "output": "o"}]}"#,
    ),
    (
        "CompareRuns",
        r#"{"baselineRunId": "$RUN", "candidateRunId": "$RUN"}"#,
    ),
    // EvaluationService: schedules and gates
    (
        "ScheduleRun",
        r#"{"runTemplate": {"datasetId": "d", "promptName": "p", "model": "echo", "metrics": [{"name": "exact", "scorer": "exact_match"}]}, "schedule": "@daily"}"#,
    ),
    ("GetSchedule", r#"{"scheduleId": "nightly"}"#),
    ("ListSchedules", r#"{"pageSize": 10}"#),
    ("PauseSchedule", r#"{"scheduleId": "nope"}"#),
    ("ResumeSchedule", r#"{"scheduleId": "nope"}"#),
    ("DeleteSchedule", r#"{"scheduleId": "nope"}"#),
    // EvaluationService: online evaluations
    (
        "CreateOnlineEvaluation",
        r#"{"onlineEvaluation": {"id": "online-bad", "filter": {"promptName": "p"}, "sampleRate": 0.5, "metrics": [{"name": "json", "scorer": "json_valid"}], "thresholds": {"minPassRate": 0.5}, "window": "3600s", "minSamples": 10}}"#,
    ),
    (
        "GetOnlineEvaluation",
        r#"{"onlineEvaluationId": "online-bad"}"#,
    ),
    ("ListOnlineEvaluations", r#"{"pageSize": 10}"#),
    (
        "UpdateOnlineEvaluation",
        r#"{"onlineEvaluationId": "online-bad", "sampleRate": 0.25, "paused": true}"#,
    ),
    (
        "DeleteOnlineEvaluation",
        r#"{"onlineEvaluationId": "nope"}"#,
    ),
    (
        "GetOnlineEvaluationStats",
        r#"{"onlineEvaluationId": "online-bad", "groupBy": ["USAGE_DIMENSION_PROMPT_VERSION"], "bucket": "3600s"}"#,
    ),
    (
        "SetReleaseGate",
        r#"{"gate": {"promptName": "gated", "label": "production", "datasetId": "d", "model": "echo", "minPassRate": 0.5}}"#,
    ),
    (
        "GetReleaseGate",
        r#"{"promptName": "p", "label": "production"}"#,
    ),
    ("ListReleaseGates", r#"{"pageSize": 10}"#),
    (
        "DeleteReleaseGate",
        r#"{"promptName": "nope", "label": "production"}"#,
    ),
    // ExperimentService
    (
        "CreateExperiment",
        r#"{"experiment": {"name": "x", "variants": [{"id": "a"}, {"id": "b"}], "metrics": [{"name": "q", "kind": "METRIC_KIND_MEAN", "direction": "METRIC_DIRECTION_HIGHER_IS_BETTER", "role": "METRIC_ROLE_PRIMARY"}]}}"#,
    ),
    ("GetExperiment", r#"{"experimentId": "e"}"#),
    ("ListExperiments", r#"{"pageSize": 10}"#),
    (
        "UpdateExperiment",
        r#"{"experimentId": "nope", "experiment": {"description": "d"}, "updateMask": ["description"]}"#,
    ),
    ("StartExperiment", r#"{"experimentId": "nope"}"#),
    ("PauseExperiment", r#"{"experimentId": "nope"}"#),
    ("CompleteExperiment", r#"{"experimentId": "nope"}"#),
    ("CancelExperiment", r#"{"experimentId": "nope"}"#),
    ("AssignVariant", r#"{"experimentId": "e", "userId": "u1"}"#),
    (
        "RecordExposures",
        r#"{"experimentId": "e", "exposures": [{"userId": "u1", "variantId": "treatment"}]}"#,
    ),
    (
        "RecordMetric",
        r#"{"experimentId": "e", "variantId": "control", "metric": "quality", "value": 0.5}"#,
    ),
    (
        "RecordMetrics",
        r#"{"records": [{"experimentId": "e", "variantId": "control", "metric": "quality", "value": 0.5}]}"#,
    ),
    (
        "IngestMetrics",
        r#"{"experimentId": "e", "variantId": "control", "metric": "quality", "value": 0.5}"#,
    ),
    ("GetExperimentResults", r#"{"experimentId": "e"}"#),
    (
        "CreatePromptExperiment",
        r#"{"name": "pe", "control": {"name": "pe", "version": "1.0.0", "template": "a {{ x }}"}, "treatment": {"name": "pe", "version": "1.1.0", "template": "b {{ x }}"}}"#,
    ),
    (
        "CreateModelExperiment",
        r#"{"name": "me", "models": ["echo", "auto"]}"#,
    ),
    // PromptService
    (
        "CreatePromptVersion",
        r#"{"promptVersion": {"name": "p", "version": "2.0.0", "template": "Yo {{ name }}"}}"#,
    ),
    ("GetPromptVersion", r#"{"name": "p", "version": "1.0.0"}"#),
    ("GetLatestPromptVersion", r#"{"name": "p"}"#),
    ("ListPromptVersions", r#"{"name": "p", "pageSize": 10}"#),
    ("ListPrompts", r#"{"pageSize": 10}"#),
    (
        "ActivatePromptVersion",
        r#"{"name": "nope", "version": "1.0.0"}"#,
    ),
    (
        "SetPromptLabel",
        r#"{"name": "p", "label": "staging", "version": "1.0.0"}"#,
    ),
    (
        "DeletePromptLabel",
        r#"{"name": "nope", "label": "staging"}"#,
    ),
    (
        "DeletePromptVersion",
        r#"{"name": "nope", "version": "1.0.0"}"#,
    ),
    (
        "RenderPrompt",
        r#"{"name": "p", "variables": {"name": "Ada"}}"#,
    ),
    (
        "DiffPromptVersions",
        r#"{"name": "p", "fromVersion": "1.0.0", "toVersion": "1.0.0"}"#,
    ),
    ("DeletePrompt", r#"{"name": "nope"}"#),
    ("WatchPrompts", r#"{"name": "p"}"#),
    ("ListLabelHistory", r#"{"name": "p", "pageSize": 10}"#),
    // ProviderService
    ("ListProviders", r#"{}"#),
    ("SelectProvider", r#"{"candidates": ["echo"]}"#),
    // ClusterService
    ("ListReplicas", r#"{}"#),
    // AuthService
    (
        "CreateApiKey",
        r#"{"name": "bad-input", "role": "ROLE_READER"}"#,
    ),
    ("ListApiKeys", r#"{}"#),
    ("GetApiKey", r#"{"apiKeyId": "key_missing"}"#),
    ("RevokeApiKey", r#"{"apiKeyId": "key_missing"}"#),
    ("WhoAmI", r#"{}"#),
    ("ListAuditEvents", r#"{"method": "SetPromptLabel"}"#),
    // GenerationService
    (
        "LogGenerations",
        r#"{"generations": [{"id": "bad-input", "promptName": "greet", "model": "m"}]}"#,
    ),
    ("GetGeneration", r#"{"generationId": "bad-input"}"#),
    ("ListGenerations", r#"{"promptName": "greet"}"#),
    (
        "IngestGenerations",
        r#"{"generations": [{"id": "bad-input-2", "model": "m"}]}"#,
    ),
    ("TailGenerations", r#"{"filter": {"model": "m"}}"#),
    ("GetUsage", r#"{"groupBy": ["USAGE_DIMENSION_MODEL"]}"#),
];

/// RPCs that only read: their answers may change no state, whatever they are.
const READ_PREFIXES: &[&str] = &[
    "Get",
    "List",
    "Watch",
    "Subscribe",
    "Tail",
    "Render",
    "Diff",
    "Compare",
    "Export",
    "Select",
];

fn pool() -> DescriptorPool {
    DescriptorPool::decode(llmops::pb::FILE_DESCRIPTOR_SET).expect("the descriptor set decodes")
}

fn methods(pool: &DescriptorPool) -> Vec<MethodDescriptor> {
    pool.services()
        .filter(|service| service.package_name() == "llmops.v1")
        .flat_map(|service| service.methods().collect::<Vec<_>>())
        .collect()
}

/// One hostile request: what it is, and its bytes.
struct Case {
    what: String,
    /// The field replaced (its proto name), when one was.
    field: Option<String>,
    bytes: Vec<u8>,
}

/// A `Value` nested `depth` lists deep.
fn nested_value(depth: usize) -> Value {
    let pool = pool();
    let value_type = pool
        .get_message_by_name("google.protobuf.Value")
        .expect("Value is known");
    let list_type = pool
        .get_message_by_name("google.protobuf.ListValue")
        .expect("ListValue is known");
    let mut value = DynamicMessage::new(value_type.clone());
    value.set_field_by_name("string_value", Value::String("bottom".into()));
    for _ in 0..depth {
        let mut list = DynamicMessage::new(list_type.clone());
        list.set_field_by_name("values", Value::List(vec![Value::Message(value)]));
        let mut outer = DynamicMessage::new(value_type.clone());
        outer.set_field_by_name("list_value", Value::Message(list));
        value = outer;
    }
    Value::Message(value)
}

/// Hostile values for a field of `kind` named `name`.
fn hostile_values(field: &FieldDescriptor) -> Vec<(&'static str, Value)> {
    let name = field.name();
    match field.kind() {
        Kind::String => {
            let mut values = vec![
                ("empty", Value::String(String::new())),
                ("70,000 bytes", Value::String("x".repeat(70_000))),
                ("control characters", Value::String("a\u{0}b\u{7}\n".into())),
                ("unknown id", Value::String("no-such-thing".into())),
            ];
            if name.contains("token") {
                values.push(("malformed token", Value::String("!!not a token!!".into())));
                values.push(("foreign token", Value::String("ZmFrZQ==\n9999".into())));
                values.push((
                    "huge number token",
                    Value::String("99999999999999999999".into()),
                ));
            }
            values
        }
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => vec![
            ("zero", Value::I32(0)),
            ("negative", Value::I32(-1)),
            ("huge", Value::I32(i32::MAX)),
            ("most negative", Value::I32(i32::MIN)),
            ("10^9", Value::I32(1_000_000_000)),
        ],
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => vec![
            ("negative", Value::I64(-1)),
            ("huge", Value::I64(i64::MAX)),
            ("most negative", Value::I64(i64::MIN)),
        ],
        Kind::Uint32 | Kind::Fixed32 => vec![("huge", Value::U32(u32::MAX))],
        Kind::Uint64 | Kind::Fixed64 => vec![("huge", Value::U64(u64::MAX))],
        Kind::Double => vec![
            ("NaN", Value::F64(f64::NAN)),
            ("+Inf", Value::F64(f64::INFINITY)),
            ("-Inf", Value::F64(f64::NEG_INFINITY)),
            ("-1e308", Value::F64(-1e308)),
        ],
        Kind::Float => vec![
            ("NaN", Value::F32(f32::NAN)),
            ("+Inf", Value::F32(f32::INFINITY)),
        ],
        Kind::Bool => vec![("true", Value::Bool(true))],
        Kind::Enum(_) => vec![
            ("unknown enum value", Value::EnumNumber(999)),
            ("negative enum value", Value::EnumNumber(-1)),
        ],
        Kind::Bytes => vec![("70,000 bytes", Value::Bytes(vec![0xff; 70_000].into()))],
        Kind::Message(message) => match message.full_name() {
            "google.protobuf.Value" => vec![
                ("Value nested 60 deep", nested_value(60)),
                ("Value nested 30 deep", nested_value(30)),
            ],
            "google.protobuf.Timestamp" => {
                let mut late = DynamicMessage::new(message.clone());
                late.set_field_by_name("seconds", Value::I64(i64::MAX));
                let mut bad_nanos = DynamicMessage::new(message.clone());
                bad_nanos.set_field_by_name("nanos", Value::I32(-5));
                vec![
                    ("timestamp past year 9999", Value::Message(late)),
                    ("negative nanos", Value::Message(bad_nanos)),
                ]
            }
            "google.protobuf.Struct" => {
                let mut fields = std::collections::HashMap::new();
                fields.insert(MapKey::String("k".repeat(10_000)), nested_value(30));
                let mut structure = DynamicMessage::new(message.clone());
                structure.set_field_by_name("fields", Value::Map(fields));
                vec![(
                    "Struct with a huge key and a deep value",
                    Value::Message(structure),
                )]
            }
            _ => Vec::new(),
        },
    }
}

/// Every case of one RPC: whole-request garbage, then each field of `base` (and of the
/// messages it holds, two levels down) replaced by each hostile value.
fn cases(base: &DynamicMessage) -> Vec<Case> {
    let mut cases = vec![
        Case {
            what: "garbage bytes".into(),
            field: None,
            bytes: vec![0xff, 0xff, 0xff, 0xff, 0x0f],
        },
        Case {
            what: "invalid UTF-8 in field 1".into(),
            field: None,
            bytes: vec![0x0a, 0x03, 0xff, 0xfe, 0xfd],
        },
    ];
    field_cases(base, "", 0, &mut |path, field, message| {
        cases.push(Case {
            what: path,
            field: Some(field),
            bytes: message.encode_to_vec(),
        })
    });
    cases
}

/// Calls `emit(description, field name, whole request)` for each mutation of `message`,
/// rebuilding the request around it through `wrap`.
fn field_cases(
    message: &DynamicMessage,
    prefix: &str,
    depth: usize,
    emit: &mut dyn FnMut(String, String, DynamicMessage),
) {
    for field in message.descriptor().fields() {
        let path = format!("{prefix}{}", field.name());
        if field.is_map() {
            if let Kind::Message(entry) = field.kind() {
                let value_field = entry.map_entry_value_field();
                for (what, value) in hostile_values(&value_field) {
                    let mut mutated = message.clone();
                    let mut map = std::collections::HashMap::new();
                    map.insert(MapKey::String("k".repeat(1_000)), value);
                    mutated.set_field(&field, Value::Map(map));
                    emit(
                        format!("{path}: map entry, {what}"),
                        field.name().into(),
                        mutated,
                    );
                }
            }
            continue;
        }
        if field.is_list() {
            let element = match message.get_field(&field).as_list().and_then(|l| l.first()) {
                Some(element) => element.clone(),
                None => match field.kind() {
                    Kind::Message(inner) => Value::Message(DynamicMessage::new(inner)),
                    Kind::String => Value::String("x".into()),
                    _ => continue,
                },
            };
            let mut many = message.clone();
            many.set_field(&field, Value::List(vec![element.clone(); 20_001]));
            emit(
                format!("{path}: 20,001 elements"),
                field.name().into(),
                many,
            );
            if let (Value::Message(inner), true) = (&element, depth < 2) {
                field_cases(
                    inner,
                    &format!("{path}[0]."),
                    depth + 1,
                    &mut |what, name, changed| {
                        let mut mutated = message.clone();
                        mutated.set_field(&field, Value::List(vec![Value::Message(changed)]));
                        emit(what, name, mutated);
                    },
                );
            }
            continue;
        }
        for (what, value) in hostile_values(&field) {
            let mut mutated = message.clone();
            mutated.set_field(&field, value);
            emit(format!("{path}: {what}"), field.name().into(), mutated);
        }
        if let Kind::Message(inner) = field.kind() {
            let well_known = inner.full_name().starts_with("google.protobuf.");
            if !well_known && depth < 2 {
                let current = match message.get_field(&field).as_message() {
                    Some(current) => current.clone(),
                    None => DynamicMessage::new(inner.clone()),
                };
                field_cases(
                    &current,
                    &format!("{path}."),
                    depth + 1,
                    &mut |what, name, changed| {
                        let mut mutated = message.clone();
                        mutated.set_field(&field, Value::Message(changed));
                        emit(what, name, mutated);
                    },
                );
            }
        }
    }
}

/// What an RPC answered: a status (OK included) and nothing more.
async fn call(server: &TestServer, method: &MethodDescriptor, bytes: Vec<u8>) -> tonic::Status {
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    let channel = &server.channel;
    let answer = if method.is_client_streaming() {
        raw::client_streaming(channel, &path, vec![bytes])
            .await
            .map(|_| ())
    } else if method.is_server_streaming() {
        raw::server_streaming_first(channel, &path, bytes, Duration::from_millis(300)).await
    } else {
        raw::unary(channel, &path, bytes).await.map(|_| ())
    };
    match answer {
        Ok(()) => tonic::Status::ok(""),
        Err(status) => status,
    }
}

/// A fingerprint of everything a client can have stored, read through the list RPCs.
async fn stored_state(server: &TestServer) -> String {
    let mut state = String::new();
    let prompts = server
        .prompts()
        .list_prompts(pb::ListPromptsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for prompt in &prompts.prompts {
        let versions = server
            .prompts()
            .list_prompt_versions(pb::ListPromptVersionsRequest {
                name: prompt.name.clone(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        state.push_str(&format!("{prompt:?}{versions:?}"));
    }
    let evaluation = server.evaluation();
    state.push_str(&format!(
        "{:?}{:?}{:?}{:?}",
        evaluation
            .clone()
            .list_datasets(pb::ListDatasetsRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner(),
        evaluation
            .clone()
            .list_runs(pb::ListRunsRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner(),
        evaluation
            .clone()
            .list_schedules(pb::ListSchedulesRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner(),
        evaluation
            .clone()
            .list_release_gates(pb::ListReleaseGatesRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner(),
    ));
    state.push_str(&format!(
        "{:?}",
        evaluation
            .clone()
            .list_online_evaluations(pb::ListOnlineEvaluationsRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner(),
    ));
    state.push_str(&format!(
        "{:?}{:?}",
        server
            .experiments()
            .list_experiments(pb::ListExperimentsRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner(),
        server
            .alerts()
            .list_alerts(pb::ListAlertsRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner(),
    ));
    let samples = evaluation
        .clone()
        .list_samples(pb::ListSamplesRequest {
            dataset_id: "d".into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let results = server
        .experiments()
        .get_experiment_results(pb::GetExperimentResultsRequest {
            experiment_id: "e".into(),
        })
        .await
        .unwrap()
        .into_inner();
    state.push_str(&format!("{samples:?}{:?}{:?}", results.stats, results.srm));
    state
}

/// The fixtures the baselines name: prompt `p`, dataset `d` with one sample, running
/// experiment `e`, an alert, a finished run and schedule `nightly`. Returns the run's
/// and the alert's ids.
async fn fixtures(server: &TestServer) -> (String, String) {
    common::eval::prompt(server, "p", "1.0.0", "Hi {{ name }}").await;
    let evaluation = server.evaluation();
    evaluation
        .clone()
        .create_dataset(pb::CreateDatasetRequest {
            dataset: Some(pb::Dataset {
                id: "d".into(),
                name: "d".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    evaluation
        .clone()
        .add_samples(pb::AddSamplesRequest {
            dataset_id: "d".into(),
            samples: vec![pb::Sample {
                id: "s1".into(),
                input: Some(common::string_value("Ada")),
                expected_output: "Hi Ada".into(),
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    let run = common::eval::create_run(server, common::eval::run("d", "p", "1.0.0", "echo"))
        .await
        .unwrap();
    common::eval::start(server, &run.id).await.unwrap();
    common::eval::watch(server, &run.id).await;
    evaluation
        .clone()
        .schedule_run(pb::ScheduleRunRequest {
            run_template: Some(common::eval::run("d", "p", "", "echo")),
            schedule: "@daily".into(),
            schedule_id: "nightly".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    common::process::start_quality_experiment(server.channel.clone(), "e").await;
    let alert = server
        .alerts()
        .create_alert(pb::CreateAlertRequest {
            alert: Some(pb::Alert {
                r#type: pb::AlertType::Threshold.into(),
                severity: pb::AlertSeverity::Info.into(),
                message: "fixture".into(),
                source: "evaluation".into(),
                source_id: "fixture".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .alert
        .unwrap();
    (run.id, alert.id)
}

async fn serving(server: &TestServer) -> bool {
    HealthClient::new(server.channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_answers_hostile_input_with_a_client_error() {
    let server = TestServer::start_with(|config| {
        // No background check may change the state while it is compared.
        config.experiments.alert_check_interval = Duration::from_secs(3600);
        config.evaluation.auto_evaluation = false;
    })
    .await;
    let (run_id, alert_id) = fixtures(&server).await;
    let pool = pool();
    let methods = methods(&pool);
    let listed: Vec<&str> = BASELINES.iter().map(|(name, _)| *name).collect();
    for method in &methods {
        assert!(
            listed.contains(&method.name()),
            "{} has no bad-input baseline: add one to BASELINES",
            method.full_name()
        );
    }
    assert_eq!(methods.len(), BASELINES.len(), "a baseline names no RPC");

    let mut failures = Vec::new();
    let mut calls = 0;
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for method in &methods {
        let json = BASELINES
            .iter()
            .find(|(name, _)| *name == method.name())
            .map(|(_, json)| json.replace("$RUN", &run_id).replace("$ALERT", &alert_id))
            .expect("checked above");
        let input: MessageDescriptor = method.input();
        let mut deserializer = serde_json::Deserializer::from_str(&json);
        let base = DynamicMessage::deserialize(input, &mut deserializer)
            .unwrap_or_else(|err| panic!("{}: bad baseline: {err}", method.name()));
        let reads_only = READ_PREFIXES.iter().any(|p| method.name().starts_with(p));
        // The baseline itself passes validation, so the hostile fields are what the
        // server judges.
        let baseline = call(&server, method, base.encode_to_vec()).await;
        assert_ne!(
            baseline.code(),
            Code::InvalidArgument,
            "{}: the baseline is refused: {}",
            method.name(),
            baseline.message()
        );
        for case in cases(&base) {
            let before = if reads_only {
                None
            } else {
                Some(stored_state(&server).await)
            };
            let status = call(&server, method, case.bytes).await;
            calls += 1;
            *codes.entry(format!("{:?}", status.code())).or_insert(0) += 1;
            let label = format!("{} [{}]", method.name(), case.what);
            if matches!(status.code(), Code::Internal | Code::Unknown) {
                failures.push(format!("{label}: {:?} {}", status.code(), status.message()));
            }
            if status_size(&status) > 2048 {
                failures.push(format!(
                    "{label}: a status of {} bytes",
                    status_size(&status)
                ));
            }
            if status.code() == Code::InvalidArgument
                && !status.message().starts_with("the request is not a valid")
            {
                let violations = status
                    .get_details_bad_request()
                    .map(|b| b.field_violations)
                    .unwrap_or_default();
                if violations.is_empty() {
                    failures.push(format!(
                        "{label}: INVALID_ARGUMENT without a field: {}",
                        status.message()
                    ));
                } else if let Some(field) = &case.field {
                    let named = violations.iter().any(|v| v.field.contains(field.as_str()));
                    let any_named = violations.iter().any(|v| !v.field.is_empty());
                    if !named && !any_named {
                        failures.push(format!(
                            "{label}: no violation names a field: {violations:?}"
                        ));
                    }
                }
            }
            if let (Some(before), false) = (before, status.code() == Code::Ok) {
                let after = stored_state(&server).await;
                if before != after {
                    failures.push(format!(
                        "{label}: {:?} but the stored state changed",
                        status.code()
                    ));
                }
            }
        }
        if !serving(&server).await {
            failures.push(format!("{}: the server stopped serving", method.name()));
        }
    }
    assert!(calls > 1000, "only {calls} calls were made");
    // The cases reach every kind of answer: refusals of fields, unknown ids, and
    // hostile-but-valid values that are accepted.
    for code in [
        "InvalidArgument",
        "NotFound",
        "Ok",
        "AlreadyExists",
        "FailedPrecondition",
    ] {
        assert!(
            codes.get(code).copied().unwrap_or(0) >= 5,
            "few {code}: {codes:?}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {calls} hostile calls were mishandled:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
