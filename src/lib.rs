//! llmops
