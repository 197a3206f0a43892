//! Release gates, as the registry sees them: a check it asks before moving the active
//! pointer or a label. The registry does not know how a version earns its release (that
//! is evaluation's business, wired in by the server); it only asks and obeys.

use async_trait::async_trait;

/// The pointer name a gate on the active version uses.
pub const ACTIVE_POINTER: &str = "active";

/// Decides whether a version may move into a pointer.
#[async_trait]
pub trait ReleaseGuard: Send + Sync + 'static {
    /// `Ok` when `version` of `prompt` may become `label` ([`ACTIVE_POINTER`] for the
    /// active version), given the version the pointer holds now; otherwise the reason,
    /// which the caller sees as FAILED_PRECONDITION.
    async fn check(
        &self,
        prompt: &str,
        label: &str,
        version: &str,
        current: Option<&str>,
    ) -> Result<(), String>;
}
