//! The prompt registry: semantically versioned prompt templates with typed variables,
//! one active version per prompt, movable labels, rendering, diffs and a change feed.
//!
//! This crate is plain Rust: it knows nothing of gRPC. Storage sits behind
//! [`PromptStore`]; the [`Registry`] keeps every prompt in memory (with its compiled
//! templates) so that reads and renders never touch storage.

mod diff;
mod error;
mod event;
mod gate;
mod limits;
mod model;
mod naming;
mod registry;
mod store;
mod template;
mod variable;
mod version;

pub use diff::{diff_versions, VariableChange, VariableChangeKind, VersionDiff};
pub use error::{FieldViolation, RegistryError};
pub use event::{PromptEvent, PromptEventKind};
pub use gate::{ReleaseBasis, ReleaseCheck, ReleaseGuard, ACTIVE_POINTER};
pub use limits::RegistryLimits;
pub use model::{
    ChatMessage, ModelConfig, NewPromptVersion, PromptSummary, PromptVersion, PromptVersionView,
};
pub use naming::{validate_label, validate_prompt_name, RESERVED_ACTIVE_LABEL};
pub use registry::{Page, Registry, VersionSelector, WatchItem, WatchSubscription};
pub use store::{PromptChange, PromptStore, RegistryState, StoreError};
pub use template::{render_stack_size, CompiledPrompt, RenderedMessage, RenderedPrompt};
pub use variable::{PromptVariable, VariableType};
pub use version::{parse_version, precedence_key};
