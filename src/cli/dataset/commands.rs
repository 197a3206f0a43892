//! The calls each `llmops dataset` subcommand makes, and what it prints.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde_json::json;

use super::{csv_file, format, jsonl, samples, DatasetCommand, FormatArg, TypeArg};
use crate::cli::output::{self, emit};
use crate::cli::paging::collect_pages;
use crate::cli::{connect, status_error, ClientOptions};
use crate::pb;
use crate::pb::evaluation_service_client::EvaluationServiceClient;

type Client = EvaluationServiceClient<crate::cli::Connection>;

/// The largest answer accepted: the server's own limit is at most this, and an export
/// batch of large samples can pass the 4 MiB default.
const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;

/// Runs one subcommand. Sample files are read and checked before connecting, so their
/// errors do not depend on the server (and a bad line never reaches it).
pub(crate) async fn run(command: DatasetCommand, options: &ClientOptions) -> anyhow::Result<()> {
    let as_json = options.json;
    match command {
        DatasetCommand::Create {
            name,
            description,
            dataset_type,
            id,
            metadata,
        } => {
            let metadata = metadata_map(metadata)?;
            let mut client = client(options).await?;
            let created = client
                .create_dataset(pb::CreateDatasetRequest {
                    dataset: Some(pb::Dataset {
                        id: id.unwrap_or_default(),
                        name,
                        description: description.unwrap_or_default(),
                        r#type: dataset_type
                            .map_or(pb::DatasetType::Unspecified, pb::DatasetType::from)
                            .into(),
                        metadata,
                        ..Default::default()
                    }),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print_dataset(as_json, created.dataset)
        }
        DatasetCommand::List {
            dataset_type,
            limit,
        } => {
            let client = client(options).await?;
            let datasets = list_datasets(&client, dataset_type, limit).await?;
            if as_json {
                emit(|out| output::messages(out, &datasets))
            } else {
                emit(|out| format::dataset_table(out, &datasets))
            }
        }
        DatasetCommand::Get { dataset_id } => {
            let mut client = client(options).await?;
            let dataset = get_dataset(&mut client, dataset_id).await?;
            print_dataset(as_json, Some(dataset))
        }
        DatasetCommand::Delete { dataset_id } => {
            let mut client = client(options).await?;
            client
                .delete_dataset(pb::DeleteDatasetRequest {
                    dataset_id: dataset_id.clone(),
                })
                .await
                .map_err(status_error)?;
            if as_json {
                emit(|out| output::json(out, &json!({"id": dataset_id, "deleted": true})))
            } else {
                emit(|out| writeln!(out, "deleted dataset {dataset_id}"))
            }
        }
        DatasetCommand::Import {
            dataset_id,
            file,
            format,
        } => {
            let source = samples::read(&file, format)?;
            let lines: Vec<usize> = source.samples.iter().map(|s| s.line).collect();
            let batches = samples::batches(
                &dataset_id,
                source.samples.into_iter().map(|s| s.sample).collect(),
            );
            let mut client = client(options).await?;
            // One stream: the server commits it as one version when it ends.
            let imported = client
                .import_samples(tokio_stream::iter(batches))
                .await
                .map_err(|status| {
                    samples::locate_error(&status_error(status), &source.name, &lines)
                })?
                .into_inner();
            if as_json {
                return emit(|out| output::message(out, &imported));
            }
            let dataset = imported.dataset.context("the server sent no dataset")?;
            {
                emit(|out| {
                    writeln!(
                        out,
                        "imported {} sample{} into {}: version {}, {} samples in all, content hash {}",
                        imported.imported,
                        plural(imported.imported),
                        dataset.id,
                        dataset.version,
                        dataset.sample_count,
                        dataset.content_hash
                    )
                })
            }
        }
        DatasetCommand::Export {
            dataset_id,
            version,
            format,
            output,
        } => {
            let mut client = client(options).await?;
            let (version, count) = export(
                &mut client,
                dataset_id.clone(),
                version,
                format,
                output.as_deref(),
            )
            .await?;
            let Some(path) = output else {
                return Ok(());
            };
            if as_json {
                let value = json!({
                    "dataset_id": dataset_id,
                    "version": version,
                    "exported": count,
                    "file": path.display().to_string(),
                });
                emit(|out| output::json(out, &value))
            } else {
                emit(|out| {
                    writeln!(
                        out,
                        "exported {count} sample{} of {dataset_id} version {version} to {}",
                        plural(count),
                        path.display()
                    )
                })
            }
        }
        DatasetCommand::Samples { dataset_id, limit } => {
            let client = client(options).await?;
            let samples = list_samples(&client, dataset_id, limit).await?;
            if as_json {
                emit(|out| output::messages(out, &samples))
            } else {
                emit(|out| format::sample_table(out, &samples))
            }
        }
        DatasetCommand::DeleteSamples {
            dataset_id,
            sample_ids,
        } => {
            let count = sample_ids.len() as u64;
            let mut client = client(options).await?;
            let deleted = client
                .delete_samples(pb::DeleteSamplesRequest {
                    dataset_id,
                    sample_ids,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if as_json {
                return emit(|out| output::message(out, &deleted));
            }
            let dataset = deleted.dataset.context("the server sent no dataset")?;
            {
                emit(|out| {
                    writeln!(
                        out,
                        "deleted {count} sample{} from {}: version {}, {} samples left, content hash {}",
                        plural(count),
                        dataset.id,
                        dataset.version,
                        dataset.sample_count,
                        dataset.content_hash
                    )
                })
            }
        }
    }
}

async fn client(options: &ClientOptions) -> anyhow::Result<Client> {
    Ok(EvaluationServiceClient::new(connect(options).await?)
        .max_decoding_message_size(MAX_ANSWER_BYTES))
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `--meta` entries as a map; a key given twice is refused.
fn metadata_map(entries: Vec<(String, String)>) -> anyhow::Result<BTreeMap<String, String>> {
    let mut metadata = BTreeMap::new();
    for (key, value) in entries {
        if metadata.contains_key(&key) {
            bail!("--meta {key} is given twice");
        }
        metadata.insert(key, value);
    }
    Ok(metadata)
}

fn print_dataset(as_json: bool, dataset: Option<pb::Dataset>) -> anyhow::Result<()> {
    let dataset = dataset.context("the server sent no dataset")?;
    if as_json {
        emit(|out| output::message(out, &dataset))
    } else {
        emit(|out| format::dataset_details(out, &dataset))
    }
}

async fn get_dataset(client: &mut Client, dataset_id: String) -> anyhow::Result<pb::Dataset> {
    client
        .get_dataset(pb::GetDatasetRequest { dataset_id })
        .await
        .map_err(status_error)?
        .into_inner()
        .dataset
        .context("the server sent no dataset")
}

/// Streams one version (default: the current one, resolved first so that the answer can
/// name it) to `path` or stdout; returns the version and the number of samples.
///
/// JSONL is written as it arrives; CSV once every sample is in (its columns depend on
/// all of them). A file is created only when the export has started, and removed if it
/// then fails.
async fn export(
    client: &mut Client,
    dataset_id: String,
    version: Option<u64>,
    format: FormatArg,
    path: Option<&Path>,
) -> anyhow::Result<(u64, u64)> {
    let dataset = get_dataset(client, dataset_id.clone()).await?;
    let version = version.unwrap_or(dataset.version);
    if version > dataset.version {
        bail!(
            "dataset {dataset_id} has no version {version} (the current one is {})",
            dataset.version
        );
    }
    let mut stream = client
        .export_samples(pb::ExportSamplesRequest {
            dataset_id,
            version,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let mut target = Target::open(path)?;
    let written = async {
        let mut count = 0u64;
        let mut all = Vec::new();
        while let Some(batch) = stream.message().await.map_err(status_error)? {
            count += batch.samples.len() as u64;
            match format {
                FormatArg::Jsonl => {
                    for sample in &batch.samples {
                        jsonl::write_sample(target.out(), sample)?;
                    }
                }
                FormatArg::Csv => all.extend(batch.samples),
            }
        }
        if format == FormatArg::Csv {
            csv_file::write(target.out(), &all)?;
        }
        anyhow::Ok(count)
    }
    .await;
    match written {
        Ok(count) => {
            target.finish()?;
            Ok((version, count))
        }
        Err(err) => {
            target.abandon();
            Err(err)
        }
    }
}

/// Where an export goes.
enum Target {
    Stdout(BufWriter<io::Stdout>),
    File {
        writer: BufWriter<File>,
        path: PathBuf,
    },
}

impl Target {
    fn open(path: Option<&Path>) -> anyhow::Result<Self> {
        Ok(match path {
            None => Self::Stdout(BufWriter::new(io::stdout())),
            Some(path) => Self::File {
                writer: BufWriter::new(
                    File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                ),
                path: path.to_owned(),
            },
        })
    }

    fn out(&mut self) -> &mut dyn Write {
        match self {
            Self::Stdout(writer) => writer,
            Self::File { writer, .. } => writer,
        }
    }

    /// Flushes everything (and for a file, syncs it to disk).
    fn finish(self) -> anyhow::Result<()> {
        match self {
            Self::Stdout(mut writer) => Ok(writer.flush()?),
            Self::File { writer, path } => {
                let write = || -> io::Result<()> {
                    let file = writer.into_inner().map_err(|err| err.into_error())?;
                    file.sync_all()
                };
                write().with_context(|| format!("cannot write {}", path.display()))
            }
        }
    }

    /// After a failure: a file is removed rather than left half written.
    fn abandon(self) {
        if let Self::File { writer, path } = self {
            drop(writer);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Up to `limit` datasets (all without one), newest first.
async fn list_datasets(
    client: &Client,
    dataset_type: Option<TypeArg>,
    limit: Option<u32>,
) -> anyhow::Result<Vec<pb::Dataset>> {
    let dataset_type = dataset_type.map_or(pb::DatasetType::Unspecified, pb::DatasetType::from);
    collect_pages(limit, |page_size, page_token| {
        let mut client = client.clone();
        async move {
            let page = client
                .list_datasets(pb::ListDatasetsRequest {
                    r#type: dataset_type as i32,
                    page_size,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((page.datasets, page.next_page_token))
        }
    })
    .await
}

/// Up to `limit` samples (all without one), in the order they were added.
async fn list_samples(
    client: &Client,
    dataset_id: String,
    limit: Option<u32>,
) -> anyhow::Result<Vec<pb::Sample>> {
    collect_pages(limit, |page_size, page_token| {
        let mut client = client.clone();
        let dataset_id = dataset_id.clone();
        async move {
            let page = client
                .list_samples(pb::ListSamplesRequest {
                    dataset_id,
                    page_size,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((page.samples, page.next_page_token))
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metadata_key_given_twice_is_refused() {
        let map = metadata_map(vec![("a".into(), "1".into()), ("b".into(), "2".into())]).unwrap();
        assert_eq!(map.len(), 2);
        let err = metadata_map(vec![("a".into(), "1".into()), ("a".into(), "2".into())])
            .unwrap_err()
            .to_string();
        assert_eq!(err, "--meta a is given twice");
    }

    #[test]
    fn an_abandoned_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut target = Target::open(Some(&path)).unwrap();
        target.out().write_all(b"partial").unwrap();
        target.abandon();
        assert!(!path.exists());
        let mut target = Target::open(Some(&path)).unwrap();
        target.out().write_all(b"done\n").unwrap();
        target.finish().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "done\n");
    }
}
