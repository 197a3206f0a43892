//! EvaluationService datasets end to end: versions, content hashes, snapshots of past
//! versions, imports, paging, error codes and restarts.

mod common;

use common::backend::{Backend, TestDatabase};

use common::{string_value, TestServer};
use llmops::pb;
use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic_types::StatusExt;

fn fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

fn sample(id: &str, input: &str, expected: &str) -> pb::Sample {
    pb::Sample {
        id: id.into(),
        input: Some(string_value(input)),
        expected_output: expected.into(),
        ..Default::default()
    }
}

async fn create(server: &TestServer, name: &str) -> pb::Dataset {
    server
        .evaluation()
        .create_dataset(pb::CreateDatasetRequest {
            dataset: Some(pb::Dataset {
                name: name.into(),
                r#type: pb::DatasetType::Regression.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .dataset
        .unwrap()
}

async fn add(
    server: &TestServer,
    dataset_id: &str,
    samples: Vec<pb::Sample>,
) -> Result<pb::AddSamplesResponse, tonic::Status> {
    server
        .evaluation()
        .add_samples(pb::AddSamplesRequest {
            dataset_id: dataset_id.into(),
            samples,
        })
        .await
        .map(|r| r.into_inner())
}

async fn export(server: &TestServer, dataset_id: &str, version: u64) -> Vec<pb::Sample> {
    let mut stream = server
        .evaluation()
        .export_samples(pb::ExportSamplesRequest {
            dataset_id: dataset_id.into(),
            version,
        })
        .await
        .unwrap()
        .into_inner();
    let mut samples = Vec::new();
    while let Some(batch) = stream.next().await {
        samples.extend(batch.unwrap().samples);
    }
    samples
}

#[tokio::test]
async fn datasets_are_unique_and_validated() {
    let server = TestServer::start().await;
    let created = create(&server, "golden-qa").await;
    assert_eq!((created.version, created.sample_count), (1, 0));
    assert_eq!(created.content_hash, "0".repeat(64));
    assert_eq!(created.r#type, pb::DatasetType::Regression as i32);

    let mut client = server.evaluation();
    let taken = client
        .create_dataset(pb::CreateDatasetRequest {
            dataset: Some(pb::Dataset {
                name: "golden-qa".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    let bad = client
        .create_dataset(pb::CreateDatasetRequest {
            dataset: Some(pb::Dataset {
                id: "bad id!".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let found = fields(&bad);
    assert!(
        found.contains(&"dataset.id".to_owned()) && found.contains(&"dataset.name".to_owned()),
        "{found:?}"
    );
    let missing = client
        .get_dataset(pb::GetDatasetRequest {
            dataset_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

async fn every_change_is_a_version_with_an_order_independent_hash(backend: Backend) {
    let server = TestServer::start_on_backend(backend, |_| {}).await;
    let a = create(&server, "a").await;
    let b = create(&server, "b").await;
    let samples = || {
        vec![
            sample("s1", "2+2?", "4"),
            sample("s2", "capital of France?", "Paris"),
            sample("s3", "3*3?", "9"),
        ]
    };

    let added = add(&server, &a.id, samples()).await.unwrap();
    assert_eq!(added.sample_ids, ["s1", "s2", "s3"]);
    let a2 = added.dataset.unwrap();
    assert_eq!((a2.version, a2.sample_count), (2, 3));
    assert_ne!(a2.content_hash, a.content_hash);

    // The same samples in another order and in two batches hash the same.
    let mut reversed = samples();
    reversed.reverse();
    add(&server, &b.id, reversed[..1].to_vec()).await.unwrap();
    let b3 = add(&server, &b.id, reversed[1..].to_vec())
        .await
        .unwrap()
        .dataset
        .unwrap();
    assert_eq!(b3.version, 3);
    assert_eq!(b3.content_hash, a2.content_hash);

    // A bad sample, or a taken id, changes nothing.
    let bad = add(
        &server,
        &a.id,
        vec![
            sample("s4", "ok", "ok"),
            pb::Sample {
                id: "s5".into(),
                ..Default::default()
            },
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(fields(&bad), vec!["samples[1].input".to_owned()]);
    let taken = add(
        &server,
        &a.id,
        vec![sample("s9", "x", "y"), sample("s2", "x", "y")],
    )
    .await
    .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    assert!(
        taken.message().contains("samples[1].id"),
        "{}",
        taken.message()
    );
    let unchanged = server
        .evaluation()
        .get_dataset(pb::GetDatasetRequest {
            dataset_id: a.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .dataset
        .unwrap();
    assert_eq!((unchanged.version, unchanged.sample_count), (2, 3));

    // Deleting restores the hash of what remains; an unknown id deletes nothing.
    let unknown = server
        .evaluation()
        .delete_samples(pb::DeleteSamplesRequest {
            dataset_id: a.id.clone(),
            sample_ids: vec!["s1".into(), "zzz".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let a3 = server
        .evaluation()
        .delete_samples(pb::DeleteSamplesRequest {
            dataset_id: a.id.clone(),
            sample_ids: vec!["s2".into()],
        })
        .await
        .unwrap()
        .into_inner()
        .dataset
        .unwrap();
    assert_eq!((a3.version, a3.sample_count), (3, 2));
    let c = create(&server, "c").await;
    let c2 = add(
        &server,
        &c.id,
        vec![sample("s3", "3*3?", "9"), sample("s1", "2+2?", "4")],
    )
    .await
    .unwrap()
    .dataset
    .unwrap();
    assert_eq!(a3.content_hash, c2.content_hash);

    // Past versions stay readable exactly as they were.
    let ids = |samples: Vec<pb::Sample>| samples.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(ids(export(&server, &a.id, 2).await), ["s1", "s2", "s3"]);
    assert_eq!(ids(export(&server, &a.id, 0).await), ["s1", "s3"]);
    assert!(export(&server, &a.id, 1).await.is_empty());
    // A deleted id can be added again.
    add(&server, &a.id, vec![sample("s2", "new", "new")])
        .await
        .unwrap();
}

async fn an_import_stream_is_one_version_and_pages_cover_it(backend: Backend) {
    let server = TestServer::start_on_backend(backend, |_| {}).await;
    let dataset = create(&server, "big").await;
    let batches: Vec<_> = (0..5)
        .map(|b| pb::ImportSamplesRequest {
            dataset_id: dataset.id.clone(),
            samples: (0..1000)
                .map(|i| {
                    let n = b * 1000 + i;
                    pb::Sample {
                        id: format!("q{n:05}"),
                        input: Some(prost_types::Value {
                            kind: Some(prost_types::value::Kind::StructValue(
                                prost_types::Struct {
                                    fields: [(
                                        "question".to_owned(),
                                        string_value(&format!("what is {n}?")),
                                    )]
                                    .into(),
                                },
                            )),
                        }),
                        expected_output: n.to_string(),
                        ..Default::default()
                    }
                })
                .collect(),
        })
        .collect();
    let imported = server
        .evaluation()
        .import_samples(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(imported.imported, 5000);
    let after = imported.dataset.unwrap();
    assert_eq!((after.version, after.sample_count), (2, 5000));

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = server
            .evaluation()
            .list_samples(pb::ListSamplesRequest {
                dataset_id: dataset.id.clone(),
                page_size: 700,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.samples.into_iter().map(|s| s.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 5000);
    assert_eq!(seen[0], "q00000");
    assert_eq!(seen[4999], "q04999");
    assert_eq!(export(&server, &dataset.id, 0).await.len(), 5000);

    // One bad sample anywhere in a stream and nothing is imported.
    let bad = vec![pb::ImportSamplesRequest {
        dataset_id: dataset.id.clone(),
        samples: vec![
            sample("ok", "x", "y"),
            pb::Sample {
                id: "no-input".into(),
                ..Default::default()
            },
        ],
    }];
    let status = server
        .evaluation()
        .import_samples(tokio_stream::iter(bad))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let current = server
        .evaluation()
        .get_dataset(pb::GetDatasetRequest {
            dataset_id: dataset.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .dataset
        .unwrap();
    assert_eq!((current.version, current.sample_count), (2, 5000));
}

async fn datasets_survive_a_restart_and_can_be_deleted(backend: Backend) {
    let dir = TestDatabase::new(backend).await;
    let server = TestServer::start_on(&dir, |_| {}).await;
    let dataset = create(&server, "kept").await;
    let before = add(&server, &dataset.id, vec![sample("a", "x", "y")])
        .await
        .unwrap()
        .dataset
        .unwrap();
    server.stop().await;

    let server = TestServer::start_on(&dir, |_| {}).await;
    let after = server
        .evaluation()
        .get_dataset(pb::GetDatasetRequest {
            dataset_id: dataset.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .dataset
        .unwrap();
    assert_eq!(after, before);
    assert_eq!(
        export(&server, &dataset.id, 0).await[0].expected_output,
        "y"
    );
    server
        .evaluation()
        .delete_dataset(pb::DeleteDatasetRequest {
            dataset_id: dataset.id.clone(),
        })
        .await
        .unwrap();
    let gone = server
        .evaluation()
        .list_samples(pb::ListSamplesRequest {
            dataset_id: dataset.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    // The name is free again.
    create(&server, "kept").await;
}

fn batch(dataset_id: &str, ids: std::ops::Range<usize>) -> pb::ImportSamplesRequest {
    pb::ImportSamplesRequest {
        dataset_id: dataset_id.into(),
        samples: ids
            .map(|n| sample(&format!("s{n}"), "question", "answer"))
            .collect(),
    }
}

async fn current(server: &TestServer, dataset_id: &str) -> pb::Dataset {
    server
        .evaluation()
        .get_dataset(pb::GetDatasetRequest {
            dataset_id: dataset_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .dataset
        .unwrap()
}

/// Adds `ids` with AddSamples, retrying while an abandoned import is still being
/// discarded (the dataset stays reserved until its samples are gone).
async fn add_when_released(server: &TestServer, dataset_id: &str, ids: std::ops::Range<usize>) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let added = add(server, dataset_id, batch(dataset_id, ids.clone()).samples).await;
        match added {
            Ok(_) => return,
            Err(status) if status.code() == Code::FailedPrecondition => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "never released: {status:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(status) => panic!("the abandoned import left samples behind: {status:?}"),
        }
    }
}

/// Imports `batches`, retrying while an earlier abandoned import is being discarded.
async fn import_when_released(
    server: &TestServer,
    batches: Vec<pb::ImportSamplesRequest>,
) -> Result<pb::ImportSamplesResponse, tonic::Status> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let result = server
            .evaluation()
            .import_samples(tokio_stream::iter(batches.clone()))
            .await
            .map(tonic::Response::into_inner);
        match result {
            Err(status)
                if status.code() == Code::FailedPrecondition
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

/// Whether an import holds the dataset: deleting an unknown sample is then
/// FAILED_PRECONDITION (otherwise NOT_FOUND), and changes nothing either way.
async fn reserved(server: &TestServer, dataset_id: &str) -> bool {
    let status = server
        .evaluation()
        .delete_samples(pb::DeleteSamplesRequest {
            dataset_id: dataset_id.into(),
            sample_ids: vec!["no-such-sample".into()],
        })
        .await
        .unwrap_err();
    status.code() == Code::FailedPrecondition
}

/// Batches are stored as they arrive (server memory holds one batch, not the stream),
/// yet a refusal in a late batch, a duplicate across batches or an abandoned stream
/// imports nothing and leaves nothing behind: the same ids can be added afterwards.
#[tokio::test]
async fn an_import_that_fails_late_or_is_abandoned_leaves_nothing_behind() {
    let server = TestServer::start().await;
    let dataset = create(&server, "staged").await;
    let id = dataset.id.clone();

    let mut late_failure = vec![batch(&id, 0..500), batch(&id, 500..1000)];
    late_failure.push(pb::ImportSamplesRequest {
        dataset_id: id.clone(),
        samples: vec![pb::Sample {
            id: "no-input".into(),
            ..Default::default()
        }],
    });
    let refused = server
        .evaluation()
        .import_samples(tokio_stream::iter(late_failure))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(fields(&refused), vec!["samples[1000].input".to_owned()]);

    let duplicate = import_when_released(&server, vec![batch(&id, 0..10), batch(&id, 5..6)])
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    assert!(
        duplicate.message().contains("samples[10].id"),
        "{}",
        duplicate.message()
    );

    // A client that goes away mid-stream (once the refused imports are discarded).
    while reserved(&server, &id).await {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Through a proxy that then cuts the connection: the client is gone without ending
    // its stream (ending it cleanly would commit the import).
    let proxy = common::outage::Outage::down(server.address.to_string()).await;
    proxy.restore();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", proxy.address))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    sender.send(batch(&id, 0..300)).await.unwrap();
    let mut client = llmops::pb::evaluation_service_client::EvaluationServiceClient::new(channel);
    let call = tokio::spawn(async move {
        client
            .import_samples(tokio_stream::wrappers::ReceiverStream::new(receiver))
            .await
    });
    // While it runs, other changes to the dataset are refused, not queued.
    while !reserved(&server, &id).await {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let busy = add(&server, &id, vec![sample("other", "x", "y")])
        .await
        .unwrap_err();
    assert_eq!(busy.code(), Code::FailedPrecondition);
    assert!(busy.message().contains("import"), "{}", busy.message());
    proxy.cut();
    let _ = call.await;

    assert_eq!(
        (
            current(&server, &id).await.version,
            current(&server, &id).await.sample_count
        ),
        (1, 0)
    );
    add_when_released(&server, &id, 0..1000).await;
    let after = current(&server, &id).await;
    assert_eq!((after.version, after.sample_count), (2, 1000));
    drop(sender);
}

/// An import stopped by a server stop (or crash) is discarded at the next start.
async fn an_import_cut_by_a_stop_is_discarded_at_the_next_start(backend: Backend) {
    let dir = TestDatabase::new(backend).await;
    let quick_stop = |config: &mut llmops::config::Config| {
        config.shutdown_grace = std::time::Duration::from_millis(200);
    };
    let mut server = TestServer::start_on(&dir, quick_stop).await;
    let dataset = create(&server, "cut").await;
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    sender.send(batch(&dataset.id, 0..200)).await.unwrap();
    let mut client = server.evaluation();
    let _call = tokio::spawn(async move {
        client
            .import_samples(tokio_stream::wrappers::ReceiverStream::new(receiver))
            .await
    });
    while !reserved(&server, &dataset.id).await {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The stream is still open when the server stops: the grace runs out and the
    // import is cut, not finished.
    let _ = server.begin_shutdown().await;
    drop(sender);

    let server = TestServer::start_on(&dir, |_| {}).await;
    assert_eq!(current(&server, &dataset.id).await.sample_count, 0);
    add_when_released(&server, &dataset.id, 0..200).await;
    assert_eq!(current(&server, &dataset.id).await.sample_count, 200);
}

/// `max_import_bytes` bounds a stream: past it, RESOURCE_EXHAUSTED naming the key, and
/// nothing imported.
#[tokio::test]
async fn an_import_over_max_import_bytes_is_refused_whole() {
    let server = TestServer::start_with(|config| config.max_import_bytes = 20_000).await;
    let dataset = create(&server, "bounded").await;
    let batches: Vec<_> = (0..10)
        .map(|b| batch(&dataset.id, b * 100..b * 100 + 100))
        .collect();
    let refused = server
        .evaluation()
        .import_samples(tokio_stream::iter(batches))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("max_import_bytes"),
        "{}",
        refused.message()
    );
    assert_eq!(current(&server, &dataset.id).await.sample_count, 0);
    add_when_released(&server, &dataset.id, 0..100).await;
}

/// A dataset's name is a stored, unique column: a NUL in it is the client's mistake on
/// every backend (PostgreSQL's text cannot hold one), never a retryable failure.
async fn a_nul_in_a_dataset_name_is_refused_with_the_field(backend: Backend) {
    let server = TestServer::start_on_backend(backend, |_| {}).await;
    let refused = server
        .evaluation()
        .create_dataset(pb::CreateDatasetRequest {
            dataset: Some(pb::Dataset {
                name: "golden\0".into(),
                r#type: pb::DatasetType::Regression.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert_eq!(common::eval::fields(&refused), ["dataset.name"]);
}

on_both_backends!(
    a_nul_in_a_dataset_name_is_refused_with_the_field,
    every_change_is_a_version_with_an_order_independent_hash,
    an_import_stream_is_one_version_and_pages_cover_it,
    datasets_survive_a_restart_and_can_be_deleted,
    an_import_cut_by_a_stop_is_discarded_at_the_next_start,
);
