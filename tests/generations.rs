//! Generations end to end: logging is durable and idempotent, large texts are cut and
//! flagged, a bad batch stores nothing, costs come from the model's prices, and listings
//! filter and page newest first; on both backends.

mod common;

use common::backend::{Backend, TestDatabase};
use common::TestServer;
use llmops::config::PriceConfig;
use llmops::pb;
use llmops::pb::generation_service_client::GenerationServiceClient;
use tonic::transport::Channel;
use tonic::Code;

fn client(server: &TestServer) -> GenerationServiceClient<Channel> {
    GenerationServiceClient::new(server.channel.clone())
}

fn at(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: 1_800_000_000 + seconds,
        nanos: 0,
    }
}

fn generation(id: &str, version: &str, model: &str, second: i64) -> pb::Generation {
    pb::Generation {
        id: id.into(),
        prompt_name: "greet".into(),
        prompt_version: version.into(),
        model: model.into(),
        user_id: format!("user-{second}"),
        input: "Hello Ada".into(),
        output: "Hi!".into(),
        latency_ms: 120.0 + second as f64,
        input_tokens: 1000,
        output_tokens: 500,
        start_time: Some(at(second)),
        ..Default::default()
    }
}

async fn log(
    server: &TestServer,
    generations: Vec<pb::Generation>,
) -> Result<pb::LogGenerationsResponse, tonic::Status> {
    client(server)
        .log_generations(pb::LogGenerationsRequest { generations })
        .await
        .map(tonic::Response::into_inner)
}

async fn list(server: &TestServer, request: pb::ListGenerationsRequest) -> Vec<String> {
    client(server)
        .list_generations(request)
        .await
        .unwrap()
        .into_inner()
        .generations
        .into_iter()
        .map(|g| g.id)
        .collect()
}

/// Version `version` of the prompt `greet`: `<greeting> {{ name }}`.
fn greet_version(version: &str, greeting: &str) -> pb::PromptVersion {
    pb::PromptVersion {
        name: "greet".into(),
        version: version.into(),
        template: format!("{greeting} {{{{ name }}}}"),
        variables: vec![pb::PromptVariable {
            name: "name".into(),
            r#type: pb::VariableType::String.into(),
            required: true,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Starts experiment `id`.
async fn start(server: &TestServer, id: &str) {
    server
        .experiments()
        .start_experiment(pb::StartExperimentRequest {
            experiment_id: id.into(),
        })
        .await
        .unwrap();
}

/// Points the `production` label of `greet` at `version`.
async fn set_production(server: &TestServer, version: &str) {
    server
        .prompts()
        .set_prompt_label(pb::SetPromptLabelRequest {
            name: "greet".into(),
            label: "production".into(),
            version: version.into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// The results of experiment `id`.
async fn results_of(server: &TestServer, id: &str) -> pb::GetExperimentResultsResponse {
    server
        .experiments()
        .get_experiment_results(pb::GetExperimentResultsRequest {
            experiment_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// The statistics of `metric` for `variant` in `results`.
fn stats_of(
    results: &pb::GetExperimentResultsResponse,
    variant: &str,
    metric: &str,
) -> pb::VariantMetricStats {
    results
        .stats
        .iter()
        .find(|s| s.variant_id == variant && s.metric == metric)
        .unwrap_or_else(|| panic!("no stats for {variant}/{metric}: {:?}", results.stats))
        .clone()
}

async fn generations_are_durable_idempotent_priced_and_listed_newest_first(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let tweak = |config: &mut llmops::config::Config| {
        config.max_generation_text_bytes = 1024;
        config.prices = vec![PriceConfig {
            model: "gpt-small".into(),
            input_price_per_1k: 0.5,
            output_price_per_1k: 1.5,
        }];
    };
    let server = TestServer::start_on(&database, tweak).await;
    let mut long = generation("g-long", "1.1.0", "other", 4);
    long.output = "é".repeat(1000);
    long.cost = Some(0.25);
    let logged = log(
        &server,
        vec![
            generation("g-1", "1.0.0", "gpt-small", 1),
            generation("g-2", "1.1.0", "gpt-small", 2),
            pb::Generation {
                error: "upstream timeout".into(),
                ..generation("", "1.0.0", "gpt-small", 3)
            },
            long,
        ],
    )
    .await
    .unwrap();
    assert_eq!((logged.accepted, logged.duplicates), (4, 0));
    assert_eq!(logged.ids[..2], ["g-1", "g-2"]);
    let generated = logged.ids[2].clone();
    assert_eq!(generated.len(), 36, "a UUID for a generation without an id");

    // The same ids again (a client retrying) change nothing.
    let mut changed = generation("g-1", "9.9.9", "gpt-small", 1);
    changed.output = "something else".into();
    let again = log(&server, vec![changed, generation("g-5", "1.0.0", "x", 5)])
        .await
        .unwrap();
    assert_eq!((again.accepted, again.duplicates), (1, 1));

    let g1 = client(&server)
        .get_generation(pb::GetGenerationRequest {
            generation_id: "g-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .generation
        .unwrap();
    assert_eq!(g1.prompt_version, "1.0.0");
    assert_eq!(g1.output, "Hi!");
    // 1,000 input tokens at 0.5 and 500 output tokens at 1.5 per 1,000.
    assert_eq!(g1.cost, Some(1.25));
    assert_eq!(g1.status(), pb::GenerationStatus::Ok);
    assert!(g1.logged_at.is_some());

    let long = client(&server)
        .get_generation(pb::GetGenerationRequest {
            generation_id: "g-long".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .generation
        .unwrap();
    assert!(long.output_truncated && !long.input_truncated);
    assert_eq!(long.output.len(), 1024, "cut on a character boundary");
    assert_eq!(long.cost, Some(0.25), "a given cost is kept");

    // Newest first, filtered, paged.
    assert_eq!(
        list(&server, pb::ListGenerationsRequest::default()).await,
        ["g-5", "g-long", generated.as_str(), "g-2", "g-1"]
    );
    let version = pb::ListGenerationsRequest {
        prompt_name: "greet".into(),
        prompt_version: "1.0.0".into(),
        ..Default::default()
    };
    assert_eq!(
        list(&server, version).await,
        ["g-5", generated.as_str(), "g-1"]
    );
    let errors = pb::ListGenerationsRequest {
        status: pb::GenerationStatus::Error.into(),
        ..Default::default()
    };
    assert_eq!(list(&server, errors).await, [generated.as_str()]);
    let window = pb::ListGenerationsRequest {
        model: "gpt-small".into(),
        since: Some(at(2)),
        until: Some(at(3)),
        ..Default::default()
    };
    assert_eq!(list(&server, window).await, ["g-2"]);
    let mut walked = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client(&server)
            .list_generations(pb::ListGenerationsRequest {
                page_size: 2,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        walked.extend(page.generations.into_iter().map(|g| g.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(walked.len(), 5);
    assert_eq!(walked[0], "g-5");

    // A bad batch is refused whole, naming the field, and stores nothing.
    let status = log(
        &server,
        vec![
            generation("g-6", "1.0.0", "x", 6),
            pb::Generation {
                latency_ms: -1.0,
                ..generation("g-7", "1.0.0", "x", 7)
            },
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("generations[1].latency_ms"),
        "{status:?}"
    );
    let status = log(&server, vec![pb::Generation::default(); 1001])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = client(&server)
        .get_generation(pb::GetGenerationRequest {
            generation_id: "g-6".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    // Durable: all of it after a restart.
    server.stop().await;
    let server = TestServer::start_on(&database, tweak).await;
    assert_eq!(
        list(&server, pb::ListGenerationsRequest::default())
            .await
            .len(),
        5
    );
    let again = log(&server, vec![generation("g-2", "1.1.0", "gpt-small", 2)])
        .await
        .unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 1));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_stream_stores_batch_by_batch_and_a_tail_sees_what_matches() {
    use tokio_stream::StreamExt as _;
    let server = TestServer::start().await;
    let mut tail = client(&server)
        .tail_generations(pb::TailGenerationsRequest {
            filter: Some(pb::ListGenerationsRequest {
                model: "tailed".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let batches = vec![
        pb::IngestGenerationsRequest {
            generations: vec![
                generation("i-1", "1.0.0", "tailed", 1),
                generation("i-2", "1.0.0", "other", 2),
            ],
        },
        pb::IngestGenerationsRequest {
            generations: vec![
                generation("i-3", "1.0.0", "tailed", 3),
                generation("i-1", "1.0.0", "tailed", 1),
            ],
        },
    ];
    let totals = client(&server)
        .ingest_generations(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (totals.batches, totals.accepted, totals.duplicates),
        (2, 3, 1)
    );
    let mut seen = Vec::new();
    for _ in 0..2 {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), tail.next())
            .await
            .expect("the tail delivers")
            .unwrap()
            .unwrap();
        seen.push(next.generation.unwrap().id);
    }
    assert_eq!(seen, ["i-1", "i-3"], "only what matches, once, in order");

    // A bad batch ends the stream naming it; the batches before it stay stored.
    let batches = vec![
        pb::IngestGenerationsRequest {
            generations: vec![generation("i-4", "1.0.0", "x", 4)],
        },
        pb::IngestGenerationsRequest {
            generations: vec![pb::Generation {
                latency_ms: f64::NAN,
                ..generation("i-5", "1.0.0", "x", 5)
            }],
        },
    ];
    let status = client(&server)
        .ingest_generations(tokio_stream::iter(batches))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("batches[1].generations[0].latency_ms"),
        "{status:?}"
    );
    assert_eq!(
        list(&server, pb::ListGenerationsRequest::default()).await,
        ["i-4", "i-3", "i-2", "i-1"]
    );

    // The CLI lists and shows them.
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_llmops"))
            .args(["--server", &format!("http://{}", server.address)])
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let listed = cli(&["generations", "list", "--model", "tailed"]);
    assert_eq!(listed.lines().count(), 3, "a header and two rows: {listed}");
    assert!(
        listed.contains("i-3") && listed.contains("greet@1.0.0"),
        "{listed}"
    );
    let shown = cli(&["generations", "get", "i-2"]);
    assert!(
        shown.contains("Hello Ada") && shown.contains("Hi!"),
        "{shown}"
    );
    server.stop().await;
}

on_both_backends!(generations_are_durable_idempotent_priced_and_listed_newest_first);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experiment_learns_latency_cost_and_errors_from_its_generations() {
    let server = TestServer::start().await;
    let metric =
        |name: &str, kind: pb::MetricKind, source: pb::MetricSource| pb::MetricDefinition {
            name: name.into(),
            kind: kind.into(),
            direction: pb::MetricDirection::LowerIsBetter.into(),
            role: pb::MetricRole::Guardrail.into(),
            source: source.into(),
            ..Default::default()
        };
    let mut experiments = server.experiments();
    // A generation-sourced metric must have the kind its source gives.
    let refused = experiments
        .create_experiment(pb::CreateExperimentRequest {
            experiment: Some(pb::Experiment {
                id: "wrong".into(),
                name: "wrong".into(),
                variants: ["control", "treatment"]
                    .map(|id| pb::Variant {
                        id: id.into(),
                        is_control: id == "control",
                        ..Default::default()
                    })
                    .to_vec(),
                metrics: vec![metric(
                    "errors",
                    pb::MetricKind::Mean,
                    pb::MetricSource::Error,
                )],
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("metrics[0].source"),
        "{refused:?}"
    );

    experiments
        .create_experiment(pb::CreateExperimentRequest {
            experiment: Some(pb::Experiment {
                id: "prompt-ab".into(),
                name: "prompt-ab".into(),
                variants: ["control", "treatment"]
                    .map(|id| pb::Variant {
                        id: id.into(),
                        is_control: id == "control",
                        ..Default::default()
                    })
                    .to_vec(),
                metrics: vec![
                    pb::MetricDefinition {
                        role: pb::MetricRole::Primary.into(),
                        ..metric("latency", pb::MetricKind::Mean, pb::MetricSource::LatencyMs)
                    },
                    metric("cost", pb::MetricKind::Mean, pb::MetricSource::Cost),
                    metric(
                        "tokens",
                        pb::MetricKind::Mean,
                        pb::MetricSource::OutputTokens,
                    ),
                    metric(
                        "errors",
                        pb::MetricKind::Proportion,
                        pb::MetricSource::Error,
                    ),
                ],
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    start(&server, "prompt-ab").await;
    // Control: latencies 100..=109, cost 0.01, 10 tokens, one error in ten. Treatment:
    // latencies 200..=219 step 2, cost 0.03, 30 tokens, no errors. One generation names
    // no variant, one an unknown experiment: neither counts.
    let mut batch = Vec::new();
    for i in 0..10u32 {
        batch.push(pb::Generation {
            id: format!("c-{i}"),
            experiment_id: "prompt-ab".into(),
            variant_id: "control".into(),
            latency_ms: 100.0 + f64::from(i),
            cost: Some(0.01),
            output_tokens: 10,
            error: if i == 3 {
                "timeout".into()
            } else {
                String::new()
            },
            ..Default::default()
        });
        batch.push(pb::Generation {
            id: format!("t-{i}"),
            experiment_id: "prompt-ab".into(),
            variant_id: "treatment".into(),
            latency_ms: 200.0 + 2.0 * f64::from(i),
            cost: Some(0.03),
            output_tokens: 30,
            ..Default::default()
        });
    }
    batch.push(pb::Generation {
        id: "no-variant".into(),
        experiment_id: "prompt-ab".into(),
        latency_ms: 1e6,
        ..Default::default()
    });
    batch.push(pb::Generation {
        id: "elsewhere".into(),
        experiment_id: "missing".into(),
        variant_id: "control".into(),
        latency_ms: 1e6,
        ..Default::default()
    });
    log(&server, batch.clone()).await.unwrap();
    // A retried batch counts nothing twice.
    let again = log(&server, batch).await.unwrap();
    assert_eq!(again.accepted, 0);

    let results = results_of(&server, "prompt-ab").await;
    let stats = |variant: &str, metric: &str| stats_of(&results, variant, metric);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    let latency = stats("control", "latency");
    assert_eq!(latency.n, 10);
    assert!(close(latency.mean, 104.5), "{latency:?}");
    let latency = stats("treatment", "latency");
    assert_eq!(latency.n, 10);
    assert!(close(latency.mean, 209.0), "{latency:?}");
    assert!(close(stats("control", "cost").mean, 0.01));
    assert!(close(stats("treatment", "cost").mean, 0.03));
    assert!(close(stats("treatment", "tokens").mean, 30.0));
    assert!(close(stats("control", "errors").mean, 0.1));
    assert!(close(stats("treatment", "errors").mean, 0.0));
    let comparison = results
        .comparisons
        .iter()
        .find(|c| c.metric == "latency")
        .expect("latency is compared");
    let absolute = comparison.absolute.clone().unwrap();
    assert!(close(absolute.estimate, 104.5), "{comparison:?}");
    assert!(absolute.p_value < 0.001, "{comparison:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_served_by_an_experiment_gives_each_user_their_variant_and_a_render_id() {
    let server = TestServer::start().await;
    let mut experiments = server.experiments();
    let create = |id: &str, prompt: &str, label: &str| pb::CreatePromptExperimentRequest {
        experiment_id: id.into(),
        name: id.into(),
        control: Some(greet_version("1.0.0", "Hello")),
        treatment: Some(greet_version("1.1.0", "Hi")),
        prompt_name: prompt.into(),
        label: label.into(),
        ..Default::default()
    };
    // Both or neither; the arms must be versions of the served prompt.
    let refused = experiments
        .create_prompt_experiment(create("x", "greet", ""))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("label"), "{refused:?}");
    let refused = experiments
        .create_prompt_experiment(create("x", "other", "production"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("prompt_name"), "{refused:?}");

    let created = experiments
        .create_prompt_experiment(create("greet-ab", "greet", "production"))
        .await
        .unwrap()
        .into_inner()
        .experiment
        .unwrap();
    assert_eq!(
        (created.prompt_name.as_str(), created.label.as_str()),
        ("greet", "production")
    );
    let mut prompts = server.prompts();
    set_production(&server, "1.0.0").await;
    let render = |user: &str| pb::RenderPromptRequest {
        name: "greet".into(),
        label: "production".into(),
        variables: [("name".to_owned(), common::string_value("Ada"))].into(),
        user_id: user.into(),
        ..Default::default()
    };
    // Not running yet: the label's own version, no experiment.
    let before = prompts
        .render_prompt(render("u-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (before.version.as_str(), before.experiment_id.as_str()),
        ("1.0.0", "")
    );
    start(&server, "greet-ab").await;
    // A second experiment on the same label cannot start while this one runs.
    experiments
        .create_prompt_experiment(create("greet-ab-2", "greet", "production"))
        .await
        .unwrap();
    let second = experiments
        .start_experiment(pb::StartExperimentRequest {
            experiment_id: "greet-ab-2".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(second.code(), Code::FailedPrecondition);
    assert!(second.message().contains("greet-ab"), "{second:?}");

    // Each user gets the version of the variant AssignVariant gives them.
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..200 {
        let user = format!("user-{i}");
        let rendered = prompts
            .render_prompt(render(&user))
            .await
            .unwrap()
            .into_inner();
        let assigned = experiments
            .assign_variant(pb::AssignVariantRequest {
                experiment_id: "greet-ab".into(),
                user_id: user.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(assigned.in_experiment);
        let assigned = assigned.variant.unwrap();
        assert_eq!(rendered.experiment_id, "greet-ab");
        assert_eq!(rendered.variant_id, assigned.id, "{user}");
        assert_eq!(rendered.version, assigned.prompt_version, "{user}");
        let expected = if assigned.id == "control" {
            "1.0.0"
        } else {
            "1.1.0"
        };
        assert_eq!(rendered.version, expected, "{user}");
        assert_eq!(
            rendered.text,
            if expected == "1.0.0" {
                "Hello Ada"
            } else {
                "Hi Ada"
            }
        );
        let got = prompts
            .get_prompt_version(pb::GetPromptVersionRequest {
                name: "greet".into(),
                label: "production".into(),
                user_id: user.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.prompt_version.unwrap().version, expected);
        assert_eq!(got.variant_id, rendered.variant_id);
        *seen.entry(rendered.variant_id.clone()).or_insert(0) += 1;
        if i == 0 {
            // The render's token attributes a generation that names nothing else.
            log(
                &server,
                vec![pb::Generation {
                    id: "attributed".into(),
                    render_id: rendered.render_id.clone(),
                    user_id: user.clone(),
                    ..Default::default()
                }],
            )
            .await
            .unwrap();
            let g = client(&server)
                .get_generation(pb::GetGenerationRequest {
                    generation_id: "attributed".into(),
                })
                .await
                .unwrap()
                .into_inner()
                .generation
                .unwrap();
            assert_eq!(
                (
                    g.prompt_name.as_str(),
                    g.prompt_version.as_str(),
                    g.experiment_id.as_str(),
                    g.variant_id.as_str()
                ),
                ("greet", expected, "greet-ab", rendered.variant_id.as_str())
            );
        }
    }
    assert_eq!(seen.len(), 2, "both variants are served: {seen:?}");
    // Without a user, or for another label, the label's version is served.
    let anonymous = prompts
        .render_prompt(render(""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (anonymous.version.as_str(), anonymous.experiment_id.as_str()),
        ("1.0.0", "")
    );
    let forged = log(
        &server,
        vec![pb::Generation {
            id: "forged".into(),
            render_id: "not-a-token".into(),
            ..Default::default()
        }],
    )
    .await
    .unwrap_err();
    assert_eq!(forged.code(), Code::InvalidArgument);
    assert!(
        forged.message().contains("generations[0].render_id"),
        "{forged:?}"
    );

    // Completing with promote_winner moves the label to the winner's version first,
    // naming the experiment in the label history.
    let complete = |winner: &str| pb::CompleteExperimentRequest {
        experiment_id: "greet-ab".into(),
        winner_variant_id: winner.into(),
        promote_winner: true,
    };
    let refused = experiments
        .complete_experiment(complete(""))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("winner_variant_id"),
        "{refused:?}"
    );
    let completed = experiments
        .complete_experiment(complete("treatment"))
        .await
        .unwrap()
        .into_inner()
        .experiment
        .unwrap();
    assert_eq!(completed.status(), pb::ExperimentStatus::Completed);
    let production = prompts
        .get_prompt_version(pb::GetPromptVersionRequest {
            name: "greet".into(),
            label: "production".into(),
            user_id: "user-0".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(production.prompt_version.unwrap().version, "1.1.0");
    assert_eq!(
        production.experiment_id, "",
        "the completed experiment serves no one"
    );
    let history = prompts
        .list_label_history(pb::ListLabelHistoryRequest {
            name: "greet".into(),
            label: "production".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert!(
        history
            .iter()
            .any(|event| event.actor == "experiment/greet-ab"
                && event
                    .prompt_version
                    .as_ref()
                    .is_some_and(|v| v.version == "1.1.0")),
        "{history:?}"
    );
    server.stop().await;
}

/// The loop without a person: an experiment serves `production` of a prompt, an
/// application renders for 2,000 users, calls its model and logs each generation by the
/// render's token alone; the experiment's results show what the two versions cost, from
/// the logged data and nothing else, and completing it with `promote_winner` keeps the
/// label on the winner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_change_is_decided_from_production_traffic_alone() {
    let server = TestServer::start().await;
    let mut experiments = server.experiments();
    let mut prompts = server.prompts();
    let guardrail =
        |name: &str, kind: pb::MetricKind, source: pb::MetricSource| pb::MetricDefinition {
            name: name.into(),
            kind: kind.into(),
            direction: pb::MetricDirection::LowerIsBetter.into(),
            role: pb::MetricRole::Guardrail.into(),
            source: source.into(),
            ..Default::default()
        };
    experiments
        .create_prompt_experiment(pb::CreatePromptExperimentRequest {
            experiment_id: "greet-ab".into(),
            name: "greet-ab".into(),
            control: Some(greet_version("1.0.0", "Hello")),
            treatment: Some(greet_version("1.1.0", "Hi")),
            prompt_name: "greet".into(),
            label: "production".into(),
            metrics: vec![
                pb::MetricDefinition {
                    role: pb::MetricRole::Primary.into(),
                    ..guardrail("latency", pb::MetricKind::Mean, pb::MetricSource::LatencyMs)
                },
                guardrail("cost", pb::MetricKind::Mean, pb::MetricSource::Cost),
                guardrail(
                    "errors",
                    pb::MetricKind::Proportion,
                    pb::MetricSource::Error,
                ),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    set_production(&server, "1.0.0").await;
    start(&server, "greet-ab").await;

    // The application: render for each user, call the model (scripted: 1.1.0 answers
    // slower and with more tokens, so it costs more; one call in 25 fails either way),
    // log the generation naming only the render's token, 100 at a time.
    let mut logged: Vec<(String, f64, f64, bool)> = Vec::new();
    let mut batch = Vec::new();
    for user in 0..2000u32 {
        let rendered = prompts
            .render_prompt(pb::RenderPromptRequest {
                name: "greet".into(),
                label: "production".into(),
                variables: [("name".to_owned(), common::string_value("Ada"))].into(),
                user_id: format!("user-{user}"),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let newer = rendered.version == "1.1.0";
        let jitter = f64::from((user * 7919) % 41);
        let latency_ms = if newer { 260.0 } else { 200.0 } + jitter;
        let output_tokens: u64 = if newer { 90 } else { 60 } + u64::from(user % 7);
        // $2 per 1,000 output tokens.
        let cost = output_tokens as f64 * 0.002;
        let failed = user % 25 == 0;
        logged.push((rendered.variant_id.clone(), latency_ms, cost, failed));
        batch.push(pb::Generation {
            id: format!("gen-{user}"),
            render_id: rendered.render_id,
            user_id: format!("user-{user}"),
            model: "mock".into(),
            output: rendered.text,
            latency_ms,
            output_tokens,
            cost: Some(cost),
            error: if failed {
                "timeout".into()
            } else {
                String::new()
            },
            ..Default::default()
        });
        if batch.len() == 100 {
            log(&server, std::mem::take(&mut batch)).await.unwrap();
        }
    }

    // What the logged data says, per variant: n, mean latency, mean cost, error rate.
    let summary = |variant: &str| {
        let rows: Vec<_> = logged.iter().filter(|row| row.0 == variant).collect();
        let n = rows.len() as f64;
        (
            rows.len() as u64,
            rows.iter().map(|row| row.1).sum::<f64>() / n,
            rows.iter().map(|row| row.2).sum::<f64>() / n,
            rows.iter().filter(|row| row.3).count() as f64 / n,
        )
    };
    let (control, treatment) = (summary("control"), summary("treatment"));
    assert!(
        control.0 > 850 && treatment.0 > 850,
        "{control:?} {treatment:?}"
    );
    let results = results_of(&server, "greet-ab").await;
    let stats = |variant: &str, metric: &str| stats_of(&results, variant, metric);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    for (variant, want) in [("control", control), ("treatment", treatment)] {
        let latency = stats(variant, "latency");
        assert_eq!(latency.n, want.0, "{variant}: one value per user");
        assert!(
            close(latency.mean, want.1),
            "{variant}: {latency:?} vs {want:?}"
        );
        assert!(close(stats(variant, "cost").mean, want.2), "{variant}");
        assert!(close(stats(variant, "errors").mean, want.3), "{variant}");
    }
    for (metric, difference) in [
        ("latency", treatment.1 - control.1),
        ("cost", treatment.2 - control.2),
    ] {
        let comparison = results
            .comparisons
            .iter()
            .find(|c| c.metric == metric && c.variant_id == "treatment")
            .unwrap_or_else(|| panic!("{metric} is compared: {:?}", results.comparisons));
        let absolute = comparison.absolute.clone().unwrap();
        assert!(close(absolute.estimate, difference), "{comparison:?}");
        assert!(absolute.p_value < 1e-6, "{metric}: {comparison:?}");
    }
    assert_ne!(
        results.winner_variant_id, "treatment",
        "slower and costlier never wins: {:?}",
        results.reasons
    );

    // Completing with the recommended winner promoted keeps production on 1.0.0, and
    // the label history names the experiment.
    experiments
        .complete_experiment(pb::CompleteExperimentRequest {
            experiment_id: "greet-ab".into(),
            winner_variant_id: "control".into(),
            promote_winner: true,
        })
        .await
        .unwrap();
    let production = prompts
        .render_prompt(pb::RenderPromptRequest {
            name: "greet".into(),
            label: "production".into(),
            variables: [("name".to_owned(), common::string_value("Ada"))].into(),
            user_id: "user-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            production.version.as_str(),
            production.experiment_id.as_str()
        ),
        ("1.0.0", "")
    );
    server.stop().await;
}

/// A promotion is a label move like any other: the label's release gate refuses it
/// until the winner's version has passed, and a refused promotion changes nothing (the
/// label stays, the experiment keeps running and serving users).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_gate_refuses_a_promotion_and_the_experiment_keeps_serving() {
    let server = TestServer::start().await;
    let mut experiments = server.experiments();
    let mut prompts = server.prompts();
    experiments
        .create_prompt_experiment(pb::CreatePromptExperimentRequest {
            experiment_id: "gated".into(),
            name: "gated".into(),
            control: Some(greet_version("1.0.0", "Hello")),
            treatment: Some(greet_version("1.1.0", "Hi")),
            prompt_name: "greet".into(),
            label: "production".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    set_production(&server, "1.0.0").await;
    let dataset_id =
        common::eval::dataset(&server, "gate-set", vec![("a", "Ada", "Hello Ada")]).await;
    server
        .evaluation()
        .set_release_gate(pb::SetReleaseGateRequest {
            gate: Some(pb::ReleaseGate {
                prompt_name: "greet".into(),
                label: "production".into(),
                dataset_id,
                model: "echo".into(),
                min_pass_rate: 0.9,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    start(&server, "gated").await;

    let refused = experiments
        .complete_experiment(pb::CompleteExperimentRequest {
            experiment_id: "gated".into(),
            winner_variant_id: "treatment".into(),
            promote_winner: true,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("1.1.0"), "{refused:?}");

    let experiment = experiments
        .get_experiment(pb::GetExperimentRequest {
            experiment_id: "gated".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .experiment
        .unwrap();
    assert_eq!(experiment.status(), pb::ExperimentStatus::Running);
    let render = |user: &str| pb::RenderPromptRequest {
        name: "greet".into(),
        label: "production".into(),
        variables: [("name".to_owned(), common::string_value("Ada"))].into(),
        user_id: user.into(),
        ..Default::default()
    };
    let served = prompts
        .render_prompt(render("u-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(served.experiment_id, "gated", "still serving users");
    let label = prompts
        .render_prompt(render(""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(label.version, "1.0.0", "the label did not move");
    server.stop().await;
}
