//! `render_id`: what RenderPrompt served (prompt, version, experiment, variant), as an
//! opaque token a generation can carry instead of repeating those fields. It is encoded,
//! not stored, so a render costs no write.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// The prefix of this encoding's tokens.
const PREFIX: &str = "r1.";
/// Separates the fields inside a token (a control character no field may hold).
const SEPARATOR: char = '\u{1f}';

/// What a render served.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RenderRef {
    /// The prompt.
    pub prompt_name: String,
    /// The version rendered.
    pub prompt_version: String,
    /// The experiment that chose it; empty when none did.
    pub experiment_id: String,
    /// The user's variant in it.
    pub variant_id: String,
}

impl RenderRef {
    /// The token.
    pub fn encode(&self) -> String {
        let fields = [
            self.prompt_name.as_str(),
            &self.prompt_version,
            &self.experiment_id,
            &self.variant_id,
        ]
        .join(&SEPARATOR.to_string());
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(fields))
    }

    /// The render a token names; `None` for anything this encoding did not make.
    pub fn decode(token: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(token.strip_prefix(PREFIX)?).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut fields = text.split(SEPARATOR);
        let render = Self {
            prompt_name: fields.next()?.to_owned(),
            prompt_version: fields.next()?.to_owned(),
            experiment_id: fields.next()?.to_owned(),
            variant_id: fields.next()?.to_owned(),
        };
        fields.next().is_none().then_some(render)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_render_round_trips_and_foreign_tokens_are_refused() {
        let render = RenderRef {
            prompt_name: "greet".into(),
            prompt_version: "1.1.0+build.7".into(),
            experiment_id: "checkout/ab".into(),
            variant_id: "treatment".into(),
        };
        let token = render.encode();
        assert!(token.starts_with("r1.") && token.is_ascii(), "{token}");
        assert_eq!(RenderRef::decode(&token), Some(render));
        assert_eq!(RenderRef::decode("r1.!!"), None);
        assert_eq!(RenderRef::decode("something"), None);
        assert_eq!(
            RenderRef::decode(&format!("r1.{}", URL_SAFE_NO_PAD.encode("a"))),
            None
        );
    }
}
