//! Release gates, as the registry sees them: a check it asks before moving the active
//! pointer or a label. The registry does not know how a version earns its release (that
//! is evaluation's business, wired in by the server); it only asks and obeys.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// The pointer name a gate on the active version uses.
pub const ACTIVE_POINTER: &str = "active";

/// A pointer move the registry asks about.
#[derive(Debug, Clone, Copy)]
pub struct ReleaseCheck<'a> {
    /// The prompt.
    pub prompt: &'a str,
    /// The label, or [`ACTIVE_POINTER`] for the active version.
    pub pointer: &'a str,
    /// The version that would move in.
    pub version: &'a str,
    /// When that version was created: evidence older than it (a run of an earlier,
    /// deleted version with the same number) does not count.
    pub version_created_at: DateTime<Utc>,
    /// The version the pointer holds now (None for a new label or a new prompt).
    pub current: Option<&'a str>,
}

/// What a release decision rested on. The store checks it again inside the transaction
/// that moves the pointer, so a gate or its dataset changed meanwhile (by another
/// process on the same database) fails the move instead of letting it slip through.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ReleaseBasis {
    /// When the pointer's gate was last changed; `None`: the pointer had no gate.
    pub gate_updated_at: Option<DateTime<Utc>>,
    /// The gate's dataset and the version the evidence was run on.
    pub dataset: Option<(String, u64)>,
}

/// Decides whether a version may move into a pointer.
#[async_trait]
pub trait ReleaseGuard: Send + Sync + 'static {
    /// `Ok` with what the decision rested on when the move may happen; otherwise the
    /// reason, which the caller sees as FAILED_PRECONDITION.
    async fn check(&self, request: &ReleaseCheck<'_>) -> Result<ReleaseBasis, String>;

    /// The pointers of `prompt` a gate protects (labels, or [`ACTIVE_POINTER`]). A
    /// prompt with any is not deleted: its gates would be left guarding nothing, and the
    /// deletion would release whatever is created under the name next.
    async fn gated_pointers(&self, prompt: &str) -> Vec<String>;
}
