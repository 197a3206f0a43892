//! The dataset service: definitions in memory, samples in storage, every change one new
//! version with an updated content hash, made under one lock so versions never race.

use std::sync::Arc;

use chrono::Utc;
use dashmap::{DashMap, DashSet};
use uuid::Uuid;

use super::hash::ContentHash;
use super::import::{ImportLeases, ImportSession};
use super::model::{Dataset, DatasetSpec, DatasetType, Sample};
use super::store::{DatasetStore, StoredSample};
use super::validate::{check_dataset, check_samples};
use crate::error::{EvaluationError, StoreError};
use crate::paging::newest_first;

/// The most samples one AddSamples call may carry.
pub const MAX_SAMPLES_PER_CALL: usize = 10_000;
/// The most samples one ImportSamples stream may carry.
pub const MAX_IMPORT_SAMPLES: usize = 1_000_000;
/// The most datasets one list page holds.
const MAX_PAGE_SIZE: usize = 1000;

/// One page of samples.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplePage {
    /// The samples.
    pub samples: Vec<Sample>,
    /// Where the next page starts; empty at the end.
    pub next_page_token: String,
}

/// The dataset service.
pub struct DatasetService {
    store: Arc<dyn DatasetStore>,
    datasets: DashMap<String, Dataset>,
    /// Serialises changes, so each gets the next version.
    changes: tokio::sync::Mutex<()>,
    /// Datasets an import in this process is adding to; other changes to them are
    /// refused meanwhile (the stored reservation refuses other processes' changes).
    importing: Arc<DashSet<String>>,
    leases: ImportLeases,
    /// Held while a dataset gains a user (a run starting, a schedule or a release gate
    /// set) and while one is deleted after checking it has none, so the two never
    /// interleave. These are rare operations: one lock for all datasets is enough.
    claims: tokio::sync::Mutex<()>,
}

/// Proof that no dataset gains or loses a user meanwhile (see [`DatasetService::claim`]).
#[derive(Debug)]
pub struct DatasetClaim<'a> {
    _held: tokio::sync::MutexGuard<'a, ()>,
}

impl std::fmt::Debug for DatasetService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatasetService")
            .field("datasets", &self.datasets.len())
            .finish_non_exhaustive()
    }
}

fn not_found(id: &str) -> EvaluationError {
    EvaluationError::NotFound(format!("dataset {id:?} not found"))
}

impl DatasetService {
    /// Loads every dataset's definition from `store`; imports reserve datasets under
    /// `leases`.
    pub async fn open(
        store: Arc<dyn DatasetStore>,
        leases: ImportLeases,
    ) -> Result<Self, EvaluationError> {
        let datasets = DashMap::new();
        for dataset in store.load_datasets().await? {
            // Samples past the dataset's version belong to an import that never
            // committed (its process stopped during it), unless another replica's
            // import is live.
            store
                .discard_abandoned_import(&dataset.id, leases.alone)
                .await?;
            datasets.insert(dataset.id.clone(), dataset);
        }
        Ok(Self {
            store,
            datasets,
            changes: tokio::sync::Mutex::new(()),
            importing: Arc::new(DashSet::new()),
            leases,
            claims: tokio::sync::Mutex::new(()),
        })
    }

    /// Reloads dataset `id`'s definition from storage after another process changed it.
    pub async fn refresh(&self, id: &str) -> Result<(), EvaluationError> {
        // Local changes commit and update the cache under this lock, so the definition
        // read here is never older than the cached one.
        let _changes = self.changes.lock().await;
        match self.store.get_dataset(id).await? {
            Some(dataset) => {
                self.datasets.insert(id.to_owned(), dataset);
            }
            None => {
                self.datasets.remove(id);
            }
        }
        Ok(())
    }

    /// Reloads every dataset's definition (after falling too far behind the change log).
    pub async fn refresh_all(&self) -> Result<(), EvaluationError> {
        let _changes = self.changes.lock().await;
        let stored = self.store.load_datasets().await?;
        self.datasets.clear();
        for dataset in stored {
            self.datasets.insert(dataset.id.clone(), dataset);
        }
        Ok(())
    }

    /// Begins an import into `dataset_id` of at most `max_samples` samples (see
    /// [`ImportSession`]). FAILED_PRECONDITION while another import into it runs.
    pub async fn begin_import(
        &self,
        dataset_id: &str,
        max_samples: usize,
    ) -> Result<ImportSession, EvaluationError> {
        let _guard = self.changes.lock().await;
        self.refuse_while_importing(dataset_id)?;
        let dataset = self.stored(dataset_id).await?;
        self.store
            .begin_import(
                dataset_id,
                dataset.version,
                &self.leases.holder,
                self.leases.lease,
            )
            .await?;
        self.importing.insert(dataset_id.to_owned());
        Ok(ImportSession::new(
            self.store.clone(),
            self.importing.clone(),
            &self.leases,
            dataset,
            max_samples,
        ))
    }

    /// Finishes `import`: the dataset moves to the version its samples were added in.
    pub async fn commit_import(&self, import: ImportSession) -> Result<Dataset, EvaluationError> {
        let _guard = self.changes.lock().await;
        let dataset = import.commit().await?;
        self.datasets.insert(dataset.id.clone(), dataset.clone());
        Ok(dataset)
    }

    /// Dataset `id` as stored now, which the cache then holds: a change builds on it,
    /// not on a cache another replica's change may not have reached yet. Call under
    /// the changes lock.
    async fn stored(&self, id: &str) -> Result<Dataset, EvaluationError> {
        match self.store.get_dataset(id).await? {
            Some(dataset) => {
                self.datasets.insert(id.to_owned(), dataset.clone());
                Ok(dataset)
            }
            None => {
                self.datasets.remove(id);
                Err(not_found(id))
            }
        }
    }

    fn refuse_while_importing(&self, dataset_id: &str) -> Result<(), EvaluationError> {
        if self.importing.contains(dataset_id) {
            return Err(EvaluationError::FailedPrecondition(format!(
                "an import into dataset {dataset_id:?} is in progress; retry when it has finished"
            )));
        }
        Ok(())
    }

    /// Creates an empty dataset at version 1.
    pub async fn create(&self, mut spec: DatasetSpec) -> Result<Dataset, EvaluationError> {
        if spec.id.is_empty() {
            spec.id = Uuid::now_v7().to_string();
        }
        check_dataset(&spec)?;
        let _guard = self.changes.lock().await;
        if self.datasets.contains_key(&spec.id) {
            return Err(EvaluationError::AlreadyExists(format!(
                "dataset {:?} already exists",
                spec.id
            )));
        }
        if self.datasets.iter().any(|d| d.name == spec.name) {
            return Err(EvaluationError::AlreadyExists(format!(
                "a dataset named {:?} already exists",
                spec.name
            )));
        }
        let now = Utc::now();
        let dataset = Dataset {
            id: spec.id,
            name: spec.name,
            description: spec.description,
            dataset_type: spec.dataset_type,
            metadata: spec.metadata,
            sample_count: 0,
            version: 1,
            content_hash: ContentHash::empty().to_hex(),
            created_at: now,
            updated_at: now,
        };
        self.store.insert_dataset(&dataset).await?;
        self.datasets.insert(dataset.id.clone(), dataset.clone());
        Ok(dataset)
    }

    /// One dataset.
    pub fn get(&self, id: &str) -> Result<Dataset, EvaluationError> {
        self.datasets
            .get(id)
            .map(|d| d.clone())
            .ok_or_else(|| not_found(id))
    }

    /// Datasets newest first, optionally of one type, after `page_token`.
    pub fn list(
        &self,
        dataset_type: Option<DatasetType>,
        page_size: usize,
        page_token: &str,
    ) -> Result<(Vec<Dataset>, String), EvaluationError> {
        let all: Vec<Dataset> = self
            .datasets
            .iter()
            .map(|d| d.clone())
            .filter(|d| dataset_type.is_none_or(|t| d.dataset_type == t))
            .collect();
        newest_first(
            all,
            |d| (d.created_at.timestamp_micros(), d.id.clone()),
            page_size,
            page_token,
            MAX_PAGE_SIZE,
        )
    }

    /// Serialises everything that makes a dataset used (a run starting, a schedule or a
    /// gate set: each checks the dataset exists while holding the claim) with deleting
    /// one (which checks it is unused while holding it).
    pub async fn claim(&self) -> DatasetClaim<'_> {
        DatasetClaim {
            _held: self.claims.lock().await,
        }
    }

    /// Deletes a dataset and its samples.
    pub async fn delete(&self, id: &str) -> Result<(), EvaluationError> {
        let _guard = self.changes.lock().await;
        if !self.datasets.contains_key(id) {
            return Err(not_found(id));
        }
        self.refuse_while_importing(id)?;
        self.store.delete_dataset(id).await?;
        self.datasets.remove(id);
        Ok(())
    }

    /// Adds samples as one new version, all or none. Empty ids are generated. Returns
    /// the dataset after the change and the samples' ids.
    pub async fn add_samples(
        &self,
        dataset_id: &str,
        mut samples: Vec<Sample>,
        limit: usize,
    ) -> Result<(Dataset, Vec<String>), EvaluationError> {
        if samples.is_empty() {
            return Err(EvaluationError::invalid(
                "samples",
                "at least one sample is required",
            ));
        }
        if samples.len() > limit {
            return Err(EvaluationError::invalid(
                "samples",
                format!("at most {limit} samples per call"),
            ));
        }
        for sample in &mut samples {
            if sample.id.is_empty() {
                sample.id = Uuid::now_v7().to_string();
            }
        }
        check_samples(&samples, 0)?;
        let _guard = self.changes.lock().await;
        self.refuse_while_importing(dataset_id)?;
        let current = self.stored(dataset_id).await?;
        let ids: Vec<String> = samples.iter().map(|s| s.id.clone()).collect();
        let mut hash = ContentHash::from_hex(&current.content_hash).unwrap_or_default();
        for sample in &samples {
            hash.add(sample);
        }
        let next = Dataset {
            sample_count: current.sample_count + samples.len() as u64,
            version: current.version + 1,
            content_hash: hash.to_hex(),
            updated_at: Utc::now(),
            ..current
        };
        // The unique index refuses an id the dataset already has (and the transaction
        // rolls back); only then is it worth finding which one, for the error.
        match self.store.change_samples(&next, &samples, &[]).await {
            Ok(()) => {}
            Err(StoreError::Duplicate(_)) => {
                let taken = self.store.current_samples(dataset_id, &ids).await?;
                let Some(first) = taken.first() else {
                    return Err(EvaluationError::Storage(
                        "a concurrent change conflicted; retry".to_owned(),
                    ));
                };
                let index = ids.iter().position(|id| *id == first.id).unwrap_or(0);
                return Err(EvaluationError::AlreadyExists(format!(
                    "samples[{index}].id: dataset {dataset_id} already has a sample {:?} ({} of the ids are taken)",
                    first.id,
                    taken.len()
                )));
            }
            Err(other) => return Err(other.into()),
        }
        self.datasets.insert(next.id.clone(), next.clone());
        Ok((next, ids))
    }

    /// Deletes samples by id as one new version; any unknown id refuses the whole call.
    pub async fn delete_samples(
        &self,
        dataset_id: &str,
        ids: Vec<String>,
    ) -> Result<Dataset, EvaluationError> {
        if ids.is_empty() {
            return Err(EvaluationError::invalid(
                "sample_ids",
                "name at least one sample",
            ));
        }
        if ids.len() > MAX_SAMPLES_PER_CALL {
            return Err(EvaluationError::invalid(
                "sample_ids",
                format!("at most {MAX_SAMPLES_PER_CALL} per call"),
            ));
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        let _guard = self.changes.lock().await;
        self.refuse_while_importing(dataset_id)?;
        let current = self.stored(dataset_id).await?;
        let found = self.store.current_samples(dataset_id, &unique).await?;
        if found.len() != unique.len() {
            let missing: Vec<&String> = unique
                .iter()
                .filter(|id| !found.iter().any(|s| s.id == **id))
                .collect();
            return Err(EvaluationError::NotFound(format!(
                "dataset {dataset_id} has no sample {:?}{}",
                missing[0],
                if missing.len() > 1 {
                    format!(" (and {} more)", missing.len() - 1)
                } else {
                    String::new()
                }
            )));
        }
        let mut hash = ContentHash::from_hex(&current.content_hash).unwrap_or_default();
        for sample in &found {
            hash.remove(sample);
        }
        let next = Dataset {
            sample_count: current.sample_count - found.len() as u64,
            version: current.version + 1,
            content_hash: hash.to_hex(),
            updated_at: Utc::now(),
            ..current
        };
        self.store.change_samples(&next, &[], &unique).await?;
        self.datasets.insert(next.id.clone(), next.clone());
        Ok(next)
    }

    /// A page of the current samples.
    pub async fn list_samples(
        &self,
        dataset_id: &str,
        page_size: usize,
        page_token: &str,
    ) -> Result<SamplePage, EvaluationError> {
        let dataset = self.get(dataset_id)?;
        let after = if page_token.is_empty() {
            0
        } else {
            page_token.parse::<i64>().map_err(|_| {
                EvaluationError::invalid("page_token", "is not a token this server issued")
            })?
        };
        let size = page_size.clamp(1, 1000);
        let mut page = self
            .store
            .samples_at(dataset_id, dataset.version, after, size + 1)
            .await?;
        let next_page_token = if page.len() > size {
            page.truncate(size);
            page.last()
                .map(|s| s.position.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(SamplePage {
            samples: page.into_iter().map(|s| s.sample).collect(),
            next_page_token,
        })
    }

    /// Samples of `version` (0: the current one) after `after`, for export.
    pub async fn export_page(
        &self,
        dataset_id: &str,
        version: u64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredSample>, EvaluationError> {
        let dataset = self.get(dataset_id)?;
        let version = if version == 0 {
            dataset.version
        } else {
            version
        };
        if version > dataset.version {
            return Err(EvaluationError::invalid(
                "version",
                format!(
                    "dataset {dataset_id} is at version {}; {version} does not exist yet",
                    dataset.version
                ),
            ));
        }
        Ok(self
            .store
            .samples_at(dataset_id, version, after, limit)
            .await?)
    }

    /// Of `ids`, the samples of the dataset as of `version`, with their positions.
    pub async fn samples_by_id_at(
        &self,
        dataset_id: &str,
        version: u64,
        ids: &[String],
    ) -> Result<Vec<StoredSample>, EvaluationError> {
        self.get(dataset_id)?;
        Ok(self
            .store
            .samples_by_id_at(dataset_id, version, ids)
            .await?)
    }
}
