//! The vocabulary every llmops domain crate shares, so that a field violation, a storage
//! failure or "now" means the same thing in the registry, experiments, the evaluator,
//! alerts and every storage backend. A leaf: it depends on no other llmops crate.

mod clock;
mod service_error;
mod store_error;
mod violation;

pub use clock::{Clock, ManualClock, SystemClock};
pub use service_error::ServiceError;
pub use store_error::StoreError;
pub use violation::{join_violations, FieldViolation, NUL_REFUSED};
