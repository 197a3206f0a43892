//! Scrubbing secrets out of text that leaves the process.
//!
//! Upstream services echo what they were sent: a model endpoint's 401 page may repeat the
//! `Authorization` header, an HTTP client's error names the URL it called, credentials
//! and all. Whatever such text says is stored (run results, provider health), logged and
//! returned to clients, so every piece of upstream text passes through [`Redactor`]
//! first: the secrets the component was configured with, any `Bearer` token and the
//! user information of any URL are replaced by [`REDACTED`].

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

/// What a secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Secrets shorter than this are not searched for: replacing every `a` of a message
/// would hide the message, and so short a secret protects nothing anyway.
const MIN_SECRET_LEN: usize = 4;

static BEARER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(bearer)(\s+)[A-Za-z0-9\-._~+/]+=*").expect("valid"));

static URL_USERINFO: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@?#]+@").expect("valid"));

/// Scrubs a component's configured secrets, bearer tokens and URL credentials.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secrets themselves.
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl Redactor {
    /// A redactor of `secrets` (empty and very short ones are ignored), bearer tokens
    /// and URL credentials.
    pub fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .map(|s| s.as_ref().to_owned())
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// `text` without any secret.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut text = Cow::Borrowed(text);
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = Cow::Owned(text.replace(secret.as_str(), REDACTED));
            }
        }
        if let Cow::Owned(replaced) = BEARER.replace_all(&text, format!("${{1}}${{2}}{REDACTED}")) {
            text = Cow::Owned(replaced);
        }
        if let Cow::Owned(replaced) = URL_USERINFO.replace_all(&text, format!("${{1}}{REDACTED}@"))
        {
            text = Cow::Owned(replaced);
        }
        text
    }
}

/// `url` with its user information (`user:password@`) replaced, for display.
pub fn redact_url(url: &str) -> String {
    Redactor::default().redact(url).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_secrets_bearer_tokens_and_url_credentials_are_replaced() {
        let redactor = Redactor::new(["sk-live-123456", ""]);
        let text = "401: invalid key sk-live-123456 (header: Authorization: Bearer sk-other.9~x=) \
                    calling http://admin:hunter2@api.example.com/v1?x=1";
        let scrubbed = redactor.redact(text);
        assert!(!scrubbed.contains("sk-live-123456"), "{scrubbed}");
        assert!(!scrubbed.contains("sk-other"), "{scrubbed}");
        assert!(
            !scrubbed.contains("hunter2") && !scrubbed.contains("admin"),
            "{scrubbed}"
        );
        assert!(scrubbed.contains("Bearer [REDACTED]"), "{scrubbed}");
        assert!(
            scrubbed.contains("http://[REDACTED]@api.example.com/v1?x=1"),
            "{scrubbed}"
        );
    }

    #[test]
    fn text_without_secrets_is_unchanged_and_not_copied() {
        let redactor = Redactor::new(["sk-live-123456"]);
        let text = "HTTP 503: upstream busy, see https://status.example.com";
        assert!(matches!(redactor.redact(text), Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn urls_lose_their_user_information() {
        assert_eq!(
            redact_url("https://user:PASS@hooks.example.com:8443/alert"),
            "https://[REDACTED]@hooks.example.com:8443/alert"
        );
        assert_eq!(
            redact_url("https://TOKEN@hooks.example.com"),
            "https://[REDACTED]@hooks.example.com"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:9000/hook"),
            "http://127.0.0.1:9000/hook"
        );
    }

    #[test]
    fn debug_output_does_not_show_the_secrets() {
        let redactor = Redactor::new(["sk-live-123456"]);
        assert!(!format!("{redactor:?}").contains("sk-live"));
    }
}
