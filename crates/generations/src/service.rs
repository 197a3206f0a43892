//! Logging, reading and pruning generations.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use llmops_core::{ServiceError, StoreError};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::model::{Generation, GenerationPage, GenerationQuery, Prices};
use crate::store::{GenerationStore, QueuedSample};
use crate::usage::{group_usage, UsageGroup, UsageQuery};
use crate::validate::{check_batch, check_generation};

/// Batches waiting for the writer at most; a call past it waits for room.
const QUEUE: usize = 1024;
/// Generations per transaction at most (batches are never split).
const GROUP: usize = 5000;
/// Stored generations a live tail may fall behind by before it is ended.
const TAIL_BUFFER: usize = 4096;
/// Generations per page: the default and the most.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// Limits on what one generation may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerationLimits {
    /// `input` and `output` are cut to this many bytes (`max_generation_text_bytes`).
    pub max_text_bytes: usize,
}

/// What a `log` call stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Logged {
    /// The id of each generation, in the order given (generated where none was).
    pub ids: Vec<String>,
    /// How many were new.
    pub accepted: u64,
    /// How many had an id already stored (or repeated in the batch): nothing changed.
    pub duplicates: u64,
}

/// Online samples left out because the scoring queue was full.
pub const ONLINE_SAMPLES_SKIPPED_TOTAL: &str = "llmops_online_samples_skipped_total";

/// A batch waiting for the writer: its generations, the online samples among them, and
/// who to tell which ids were new.
struct Pending {
    batch: Vec<Generation>,
    samples: Vec<QueuedSample>,
    done: oneshot::Sender<Result<Vec<String>, StoreError>>,
}

/// Decides which online evaluations sample a generation (before it is stored, so that
/// its samples are queued in the same transaction: none is lost to a crash between).
pub trait GenerationSampler: Send + Sync + 'static {
    /// The samples of `batch`: each generation with each online evaluation that scores
    /// it.
    fn sample(&self, batch: &[Generation]) -> Vec<QueuedSample>;

    /// At most this many samples wait for scoring; past it, new ones are skipped.
    fn queue_limit(&self) -> u64;
}

/// What learns of each generation once it is stored (experiments record the metrics
/// they take from generations). Called before `log` returns, with the new generations
/// only, so a retried batch is not observed twice.
#[async_trait::async_trait]
pub trait GenerationObserver: Send + Sync + 'static {
    /// `generations` were stored now.
    async fn stored(&self, generations: &[Generation]);

    /// Whether `generation` is of interest (so that only those are kept for `stored`).
    fn wants(&self, generation: &Generation) -> bool;
}

/// Generations, stored through a group-commit writer.
pub struct GenerationService {
    store: Arc<dyn GenerationStore>,
    pending: mpsc::Sender<Pending>,
    limits: GenerationLimits,
    /// Prices by model name, for generations logged without a cost.
    prices: HashMap<String, Prices>,
    /// Every generation this process stored, as it is stored (for live tails).
    stored: broadcast::Sender<Arc<Generation>>,
    observer: Option<Arc<dyn GenerationObserver>>,
    sampler: Option<Arc<dyn GenerationSampler>>,
}

impl std::fmt::Debug for GenerationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerationService")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl GenerationService {
    /// A service over `store`; its writer runs until the service is dropped.
    pub fn start(
        store: Arc<dyn GenerationStore>,
        limits: GenerationLimits,
        prices: HashMap<String, Prices>,
        observer: Option<Arc<dyn GenerationObserver>>,
    ) -> Self {
        Self::launch(store, limits, prices, observer, None)
    }

    /// [`GenerationService::start`], with `sampler` choosing the generations online
    /// evaluations score.
    pub fn with_sampler(
        store: Arc<dyn GenerationStore>,
        limits: GenerationLimits,
        prices: HashMap<String, Prices>,
        observer: Option<Arc<dyn GenerationObserver>>,
        sampler: Arc<dyn GenerationSampler>,
    ) -> Self {
        Self::launch(store, limits, prices, observer, Some(sampler))
    }

    fn launch(
        store: Arc<dyn GenerationStore>,
        limits: GenerationLimits,
        prices: HashMap<String, Prices>,
        observer: Option<Arc<dyn GenerationObserver>>,
        sampler: Option<Arc<dyn GenerationSampler>>,
    ) -> Self {
        let (pending, queue) = mpsc::channel::<Pending>(QUEUE);
        let (stored, _) = broadcast::channel(TAIL_BUFFER);
        tokio::spawn(write(store.clone(), queue, sampler.clone()));
        Self {
            store,
            pending,
            limits,
            prices,
            stored,
            observer,
            sampler,
        }
    }

    /// Checks one generation as [`GenerationService::log`] would (problems named under
    /// `at`), its texts capped: for a caller that stores what passes and reports the rest
    /// (OTLP export).
    pub fn check(&self, mut generation: Generation, at: &str) -> Result<Generation, ServiceError> {
        let mut problems = Vec::new();
        check_generation(
            &mut generation,
            at,
            self.limits.max_text_bytes,
            &mut problems,
        );
        if problems.is_empty() {
            Ok(generation)
        } else {
            Err(ServiceError::InvalidArgument(problems))
        }
    }

    /// Validates and stores `batch`; returns once it is durable.
    pub async fn log(
        &self,
        mut batch: Vec<Generation>,
        now: DateTime<Utc>,
    ) -> Result<Logged, ServiceError> {
        check_batch(&mut batch, self.limits.max_text_bytes)?;
        for generation in &mut batch {
            if generation.id.is_empty() {
                generation.id = uuid::Uuid::now_v7().to_string();
            }
            generation.logged_at = Some(now);
            if generation.start_time.is_none() {
                generation.start_time = Some(now);
            }
            if generation.cost.is_none() {
                generation.cost = self.prices.get(&generation.model).map(|prices| {
                    (generation.input_tokens as f64 * prices.input_per_1k
                        + generation.output_tokens as f64 * prices.output_per_1k)
                        / 1000.0
                });
            }
        }
        let ids: Vec<String> = batch.iter().map(|g| g.id.clone()).collect();
        let samples = self
            .sampler
            .as_ref()
            .map(|sampler| sampler.sample(&batch))
            .unwrap_or_default();
        // Kept only while someone tails, and what the observer wants.
        let tailed = (self.stored.receiver_count() > 0).then(|| batch.clone());
        let observed: Vec<Generation> = match &self.observer {
            Some(observer) => batch
                .iter()
                .filter(|g| observer.wants(g))
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        let (done, stored) = oneshot::channel();
        let closed = || ServiceError::Storage("the generation writer is closed".to_owned());
        self.pending
            .send(Pending {
                batch,
                samples,
                done,
            })
            .await
            .map_err(|_| closed())?;
        let new: HashSet<String> = stored.await.map_err(|_| closed())??.into_iter().collect();
        // A repeated id within the batch is stored once: only its first is new.
        let mut counted = HashSet::new();
        let accepted = ids
            .iter()
            .filter(|id| new.contains(*id) && counted.insert(id.as_str()))
            .count() as u64;
        if let Some(observer) = &self.observer {
            let mut seen = HashSet::new();
            let fresh: Vec<Generation> = observed
                .into_iter()
                .filter(|g| new.contains(&g.id) && seen.insert(g.id.clone()))
                .collect();
            if !fresh.is_empty() {
                observer.stored(&fresh).await;
            }
        }
        if let Some(tailed) = tailed {
            let mut sent = HashSet::new();
            for generation in tailed {
                if new.contains(&generation.id) && sent.insert(generation.id.clone()) {
                    let _ = self.stored.send(Arc::new(generation));
                }
            }
        }
        Ok(Logged {
            duplicates: ids.len() as u64 - accepted,
            accepted,
            ids,
        })
    }

    /// The generations this process stores from now on, as each is stored. A receiver
    /// more than a few thousand behind gets `Lagged`.
    pub fn tail(&self) -> broadcast::Receiver<Arc<Generation>> {
        self.stored.subscribe()
    }

    /// Generation `id`.
    pub async fn get(&self, id: &str) -> Result<Generation, ServiceError> {
        self.store
            .get_generation(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("generation {id:?} does not exist")))
    }

    /// A page of the generations `query` selects (its `limit`: 0 for the default).
    pub async fn list(&self, mut query: GenerationQuery) -> Result<GenerationPage, ServiceError> {
        let limit = match query.limit {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        // One more than a page tells whether another follows.
        query.limit = limit + 1;
        let mut generations = self.store.list_generations(&query).await?;
        let more = generations.len() > limit;
        generations.truncate(limit);
        let next = more
            .then(|| generations.last().map(|g| (g.time(), g.id.clone())))
            .flatten();
        Ok(GenerationPage { generations, next })
    }

    /// Deletes generations that started before `before`; how many.
    pub async fn prune(&self, before: DateTime<Utc>) -> Result<u64, ServiceError> {
        Ok(self.store.prune_generations(before).await?)
    }

    /// Usage as `query` groups it, from the hourly aggregates (which count every
    /// generation whose logging was answered).
    pub async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageGroup>, ServiceError> {
        let filter = query.filter()?;
        let aggregates = self.store.usage_aggregates(&filter).await?;
        group_usage(query, aggregates)
    }
}

/// The writer: takes what is queued (whole batches, up to [`GROUP`] generations), stores
/// it in one transaction with their online samples, and tells each caller which of its
/// ids were new.
async fn write(
    store: Arc<dyn GenerationStore>,
    mut queue: mpsc::Receiver<Pending>,
    sampler: Option<Arc<dyn GenerationSampler>>,
) {
    let mut next: Option<Pending> = None;
    loop {
        let first = match next.take() {
            Some(first) => first,
            None => match queue.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        let mut group = vec![first];
        let mut size = group[0].batch.len();
        while size < GROUP {
            match queue.try_recv() {
                Ok(more) if size + more.batch.len() <= GROUP => {
                    size += more.batch.len();
                    group.push(more);
                }
                Ok(more) => {
                    next = Some(more);
                    break;
                }
                Err(_) => break,
            }
        }
        let all: Vec<Generation> = group.iter().flat_map(|p| p.batch.clone()).collect();
        let samples: Vec<QueuedSample> = group.iter().flat_map(|p| p.samples.clone()).collect();
        let stored = store
            .insert_sampled_generations(
                &all,
                &samples,
                sampler.as_ref().map_or(0, |s| s.queue_limit()),
            )
            .await
            .map(|inserted| {
                if inserted.skipped > 0 {
                    metrics::counter!(ONLINE_SAMPLES_SKIPPED_TOTAL).increment(inserted.skipped);
                }
                inserted.new
            });
        for pending in group {
            let _ = pending.done.send(stored.clone());
        }
    }
}
