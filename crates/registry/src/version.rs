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
}
