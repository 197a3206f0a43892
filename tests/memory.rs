//! The server's memory stays bounded whatever a client sends, measured on the real
//! binary (its VmRSS): template attacks that grew RSS by about 1 GB/s, and a large
//! import that held the whole stream.

mod common;

use common::process::ServerProcess;
use llmops::pb;
use llmops::pb::evaluation_service_client::EvaluationServiceClient;
use llmops::pb::prompt_service_client::PromptServiceClient;
use tonic::Code;

const MIB: u64 = 1024 * 1024;

/// The limit of the hardening issue: RSS after each attack stays under 256 MiB.
const RSS_LIMIT: u64 = 256 * MIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_attacks_leave_the_server_under_256_mib() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::spawn(dir.path(), &[]);
    let channel = server.channel().await;
    let mut prompts = PromptServiceClient::new(channel);
    let attacks = [
        (
            "doubling",
            "{% set ns = namespace(x='a') %}{% for i in range(40) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x|length }}",
        ),
        ("join", "{{ range(100000)|join(name) }}"),
        (
            "macro",
            "{% macro f(s, n) %}{% if n > 0 %}{{ f(s ~ s, n - 1) }}{% else %}{{ s|length }}{% endif %}{% endmacro %}{{ f('a', 60) }}",
        ),
        ("lists", "{{ ([[name] * 1000] * 1000)|string|length }}"),
        ("self", "{% set ns = namespace(big=name * 600) %}{% set ns.me = ns %}{{ ns.big|length }}"),
    ];
    let name = common::string_value(&"n".repeat(100_000));
    let start = server.rss_bytes();
    for (attack, template) in attacks {
        let mut highest = 0;
        prompts
            .create_prompt_version(pb::CreatePromptVersionRequest {
                prompt_version: Some(pb::PromptVersion {
                    name: attack.into(),
                    version: "1.0.0".into(),
                    template: template.into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap_or_else(|status| panic!("{attack}: {status:?}"));
        // Several times: nothing may accumulate from one render to the next.
        for _ in 0..5 {
            let uses_name = template.contains("join(name)")
                || template.contains("[name]")
                || template.contains("name *");
            let variables = if uses_name {
                [("name".to_owned(), name.clone())].into()
            } else {
                Default::default()
            };
            let answer = prompts
                .render_prompt(pb::RenderPromptRequest {
                    name: attack.into(),
                    variables,
                    ..Default::default()
                })
                .await;
            if let Err(status) = &answer {
                assert_eq!(
                    status.code(),
                    Code::ResourceExhausted,
                    "{attack}: {status:?}"
                );
                assert!(
                    status.message().contains("max_render_memory"),
                    "{attack}: {}",
                    status.message()
                );
            }
            let rss = server.rss_bytes();
            highest = highest.max(rss);
            assert!(
                rss < RSS_LIMIT,
                "{attack}: RSS {} MiB after a render",
                rss / MIB
            );
        }
        assert!(server.is_running(), "{attack} took the server down");
        // Figures for BENCHMARKS.md (shown with --no-capture).
        eprintln!(
            "{attack}: RSS at most {} MiB after a render (started at {} MiB)",
            highest / MIB,
            start / MIB
        );
    }
}

/// A 245 MB import took RSS from 58 to 614 MB, and it stayed there. Batches are stored as
/// they arrive: RSS grows by a few batches at most during the import, and what was used
/// is handed back after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_import_does_not_hold_the_stream_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(dir.path(), &[]);
    let channel = server.channel().await;
    let mut evaluation = EvaluationServiceClient::new(channel);
    let dataset = evaluation
        .create_dataset(pb::CreateDatasetRequest {
            dataset: Some(pb::Dataset {
                name: "large".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .dataset
        .unwrap();
    let before = server.rss_bytes();
    // 160 batches of 25 samples of 40 KB: 160 MB in all.
    let text = "q".repeat(40_000);
    let dataset_id = dataset.id.clone();
    let batches = (0..160).map(move |b| pb::ImportSamplesRequest {
        dataset_id: dataset_id.clone(),
        samples: (0..25)
            .map(|i| pb::Sample {
                id: format!("s{b}-{i}"),
                input: Some(common::string_value(&text)),
                expected_output: "a".into(),
                ..Default::default()
            })
            .collect(),
    });
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let watcher = {
        let peak = peak.clone();
        let pid_status = format!("/proc/{}/status", server_pid(&server));
        tokio::spawn(async move {
            loop {
                if let Some(rss) = read_rss(&pid_status) {
                    peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
        })
    };
    let imported = evaluation
        .import_samples(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    watcher.abort();
    assert_eq!(imported.imported, 4000);
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    let after = server.rss_bytes();
    eprintln!(
        "160 MB import: RSS {} MiB before, {} MiB at the peak, {} MiB after",
        before / MIB,
        peak / MIB,
        after / MIB
    );
    assert!(
        peak - before < 96 * MIB,
        "RSS grew by {} MiB during a 160 MB import (from {} MiB)",
        (peak - before) / MIB,
        before / MIB
    );
    assert!(
        after < before + 48 * MIB,
        "RSS stayed {} MiB above where it was",
        (after - before) / MIB
    );
}

fn server_pid(server: &ServerProcess) -> u32 {
    server.pid()
}

fn read_rss(status_path: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_path).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kib| kib * 1024)
}
