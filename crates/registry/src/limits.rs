//! Size and effort limits that protect the server from oversized or runaway prompts.

/// Limits applied when versions are created and rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryLimits {
    /// Largest template (the text plus every message template), in bytes.
    pub max_template_bytes: usize,
    /// Most variables a version may declare.
    pub max_variables: usize,
    /// Most chat messages a version may have.
    pub max_messages: usize,
    /// Most tags, and most metadata entries, a version may carry.
    pub max_tags: usize,
    /// Largest free-text field (description, author, commit message, metadata value).
    pub max_text_bytes: usize,
    /// Template engine fuel per render: bounds loops so a template cannot spin forever.
    pub render_fuel: u64,
    /// Largest rendered output, in bytes.
    pub max_render_bytes: usize,
    /// Most bytes of template values (strings, lists, captured output) one render may
    /// create, intermediate ones included; each step of `render_fuel` counts as 64.
    pub max_render_memory: usize,
}

impl Default for RegistryLimits {
    fn default() -> Self {
        Self {
            max_template_bytes: 256 * 1024,
            max_variables: 100,
            max_messages: 100,
            max_tags: 64,
            max_text_bytes: 16 * 1024,
            render_fuel: 1_000_000,
            max_render_bytes: 1024 * 1024,
            max_render_memory: 64 * 1024 * 1024,
        }
    }
}
