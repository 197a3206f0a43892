//! Alerts: regression and threshold alerts raised by the evaluator and experiments (or
//! by clients), deduplicated by fingerprint, acknowledged and resolved, kept in a
//! durable event log that subscribers follow without ever missing an event, and pushed
//! to webhook receivers through a durable outbox.
//!
//! Plain Rust: storage sits behind [`AlertStore`], and nothing here knows gRPC.

mod error;
mod filter;
mod fingerprint;
mod model;
mod service;
mod store;
mod validate;
pub mod webhook;

pub use error::AlertError;
pub use filter::{AlertFilter, SubscriptionFilter};
pub use fingerprint::fingerprint;
pub use llmops_feed::Subscription;
pub use model::{
    Alert, AlertEvent, AlertEventKind, AlertSeverity, AlertStatus, AlertType, NewAlert,
};
pub use service::{AlertService, AlertSink, RaisedAlert};
pub use store::{AlertCommit, AlertCursor, AlertStore, DeliveriesFor, StoreError};
