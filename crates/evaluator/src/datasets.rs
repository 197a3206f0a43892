//! Datasets of samples: versioned, content-hashed, stored durably.

mod hash;
mod import;
mod model;
mod service;
mod store;
mod validate;

pub use hash::ContentHash;
pub use import::{ImportLeases, ImportSession};
pub use model::{Dataset, DatasetSpec, DatasetType, Sample};
pub use service::{DatasetService, SamplePage, MAX_IMPORT_SAMPLES, MAX_SAMPLES_PER_CALL};
pub use store::{DatasetStore, StoredSample};
pub use validate::limits;
