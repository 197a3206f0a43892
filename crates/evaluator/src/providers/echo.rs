//! The built-in `echo` provider: the answer is the last message's text, so an evaluation
//! runs end to end with no model and no network. Token counts are whitespace words.

use std::time::Instant;

use async_trait::async_trait;

use super::{Completion, CompletionRequest, Provider, ProviderError};

/// The name runs use for it.
pub const ECHO: &str = "echo";

/// Answers with the prompt.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoProvider;

#[async_trait]
impl Provider for EchoProvider {
    fn name(&self) -> &str {
        ECHO
    }

    fn kind(&self) -> &str {
        ECHO
    }

    fn model(&self) -> &str {
        ECHO
    }

    /// Echo depends on nothing that can fail.
    async fn probe(&self) -> Result<(), String> {
        Ok(())
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, ProviderError> {
        let started = Instant::now();
        let text = request
            .messages
            .last()
            .map(|m| m.content.clone())
            .unwrap_or_default();
        let input_tokens = request
            .messages
            .iter()
            .map(|m| m.content.split_whitespace().count() as u64)
            .sum();
        Ok(Completion {
            output_tokens: text.split_whitespace().count() as u64,
            text,
            input_tokens,
            cost: None,
            latency: started.elapsed(),
            attempts: 1,
        })
    }
}
