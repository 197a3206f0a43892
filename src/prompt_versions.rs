//! The prompt registry as the experiment service sees it: where a prompt experiment's
//! versions are stored (the experiments crate defines the trait; it knows nothing of
//! prompts).

use std::sync::Arc;

use llmops_experiments::PromptVersions;
use llmops_registry::{NewPromptVersion, Registry, RegistryError};

/// [`PromptVersions`] over the registry.
#[derive(Debug, Clone)]
pub struct RegistryVersions(Arc<Registry>);

impl RegistryVersions {
    /// Prompt experiments' versions go to `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self(registry)
    }

    /// The registry the versions go to.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.0
    }
}

#[async_trait::async_trait]
impl PromptVersions for RegistryVersions {
    type Version = NewPromptVersion;
    type Error = RegistryError;

    async fn ensure(
        &self,
        versions: Vec<(String, NewPromptVersion)>,
    ) -> Result<Vec<String>, RegistryError> {
        let stored = self.0.ensure_versions(versions).await?;
        // The stored version string (build metadata included) is what clients fetch.
        Ok(stored
            .into_iter()
            .map(|(view, _created)| view.version.version.to_string())
            .collect())
    }
}
