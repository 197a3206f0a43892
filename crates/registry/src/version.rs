//! Semantic versions: parsing and precedence.

use semver::{BuildMetadata, Version};

use crate::error::FieldViolation;

/// Parses a semantic version 2.0 string, naming `field` when it is not one.
pub fn parse_version(field: &str, text: &str) -> Result<Version, FieldViolation> {
    if text.is_empty() {
        return Err(FieldViolation::new(field, "version is required"));
    }
    Version::parse(text).map_err(|err| {
        FieldViolation::new(
            field,
            format!("{text:?} is not a semantic version (major.minor.patch[-pre][+build]): {err}"),
        )
    })
}

/// The version without build metadata. Semver 2.0 gives build metadata no precedence, so
/// two versions with the same key are the same version; keys order by precedence.
pub fn precedence_key(version: &Version) -> Version {
    let mut key = version.clone();
    key.build = BuildMetadata::EMPTY;
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_strings_that_are_not_semver() {
        for text in ["", "1", "1.0", "v1.0.0", "01.0.0", "1.0.0-", "latest"] {
            assert!(parse_version("version", text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn build_metadata_has_no_precedence() {
        let a = parse_version("v", "1.0.0+build.1").unwrap();
        let b = parse_version("v", "1.0.0+build.2").unwrap();
        assert_eq!(precedence_key(&a), precedence_key(&b));
    }

    #[test]
    fn keys_order_by_semver_precedence() {
        // The ordering example of the semver 2.0 specification, item 11.
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "2.0.0",
            "2.1.0",
            "2.1.1",
            "10.0.0",
        ];
        let keys: Vec<_> = ordered
            .iter()
            .map(|t| precedence_key(&parse_version("v", t).unwrap()))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    proptest::proptest! {
        /// Any text is a version or a clear violation of the field, never a panic.
        #[test]
        fn any_text_is_a_version_or_a_violation(text in ".{0,64}") {
            match parse_version("version", &text) {
                Ok(version) => proptest::prop_assert_eq!(version.to_string(), text),
                Err(violation) => {
                    proptest::prop_assert_eq!(violation.field, "version");
                    proptest::prop_assert!(!violation.description.is_empty());
                }
            }
        }

        /// Semver-shaped text parses, and its precedence key ignores build metadata.
        #[test]
        fn semver_shaped_text_parses(
            major in 0u64..1000, minor in 0u64..1000, patch in 0u64..1000,
            pre in proptest::option::of("[a-z][a-z0-9]{0,6}"),
            build in proptest::option::of("[a-z0-9]{1,6}"),
        ) {
            let mut text = format!("{major}.{minor}.{patch}");
            if let Some(pre) = &pre { text.push('-'); text.push_str(pre); }
            let plain = text.clone();
            if let Some(build) = &build { text.push('+'); text.push_str(build); }
            let version = parse_version("version", &text).unwrap();
            let without = parse_version("version", &plain).unwrap();
            proptest::prop_assert_eq!(precedence_key(&version), precedence_key(&without));
        }
    }
}
