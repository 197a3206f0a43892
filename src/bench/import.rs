//! The `import` scenario: how fast `ImportSamples` takes a dataset in.
//!
//! A fresh dataset is created, then `samples` samples (each a question object of a few
//! dozen bytes, an expected answer and a metadata entry, like a small golden set) are
//! streamed in batches of [`BATCH`] on one connection. The time runs from opening the
//! stream to the answer, which comes after the whole import is durable as one dataset
//! version.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use prost_types::value::Kind;
use serde::Serialize;
use tonic::transport::Endpoint;

use crate::pb;
use crate::pb::evaluation_service_client::EvaluationServiceClient;

/// Samples per stream message.
const BATCH: usize = 1000;

/// The import scenario's result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ImportRow {
    /// Always `import`.
    pub(crate) scenario: &'static str,
    /// Samples imported.
    pub(crate) samples: u64,
    /// Seconds from opening the stream to the answer.
    pub(crate) seconds: f64,
    /// `samples / seconds`.
    pub(crate) samples_per_second: f64,
}

fn sample(n: usize) -> pb::Sample {
    let question = prost_types::Value {
        kind: Some(Kind::StringValue(format!("What is {n} + {n}?"))),
    };
    pb::Sample {
        id: format!("s{n:08}"),
        input: Some(prost_types::Value {
            kind: Some(Kind::StructValue(prost_types::Struct {
                fields: [("question".to_owned(), question)].into(),
            })),
        }),
        expected_output: (2 * n).to_string(),
        context: String::new(),
        metadata: [("topic".to_owned(), "arithmetic".to_owned())].into(),
    }
}

/// Imports `samples` samples into a new dataset and times it.
pub(crate) async fn run(endpoint: &Endpoint, samples: usize) -> anyhow::Result<ImportRow> {
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", endpoint.uri()))?;
    let mut client = EvaluationServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let dataset = client
        .create_dataset(pb::CreateDatasetRequest {
            dataset: Some(pb::Dataset {
                name: format!("bench-import-{:016x}", fastrand::u64(..)),
                description: "Created by llmops bench.".into(),
                ..Default::default()
            }),
        })
        .await
        .context("creating the import dataset")?
        .into_inner()
        .dataset
        .unwrap_or_default();
    // Build the messages first, so the time measures the server, not the generator.
    let batches: Vec<pb::ImportSamplesRequest> = (0..samples)
        .step_by(BATCH)
        .map(|start| pb::ImportSamplesRequest {
            dataset_id: dataset.id.clone(),
            samples: (start..(start + BATCH).min(samples)).map(sample).collect(),
        })
        .collect();
    eprintln!("running import: {samples} samples in batches of {BATCH}");
    let started = Instant::now();
    let answer = client
        .import_samples(tokio_stream::iter(batches))
        .await
        .context("ImportSamples failed")?
        .into_inner();
    let seconds = started.elapsed().max(Duration::from_nanos(1)).as_secs_f64();
    Ok(ImportRow {
        scenario: "import",
        samples: answer.imported,
        seconds,
        samples_per_second: answer.imported as f64 / seconds,
    })
}
