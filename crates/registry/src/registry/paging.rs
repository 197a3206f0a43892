//! Page tokens for listings served from memory. A token is the position of the last item
//! returned, so a page never repeats or skips an item that existed before and after it,
//! whatever is created or deleted in between.

use semver::Version;

use crate::error::RegistryError;

const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 1000;

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// The token for the next page; empty on the last page.
    pub next_page_token: String,
}

impl<T> Page<T> {
    /// Builds a page from up to `page_size + 1` positioned items: the extra one only
    /// tells that another page exists.
    pub(crate) fn from_overfetched(mut items: Vec<(Position, T)>, page_size: usize) -> Self {
        let more = items.len() > page_size;
        items.truncate(page_size);
        let next_page_token = match (more, items.last()) {
            (true, Some((position, _))) => encode_token(position),
            _ => String::new(),
        };
        Self {
            items: items.into_iter().map(|(_, item)| item).collect(),
            next_page_token,
        }
    }
}

/// Where an item sits in a listing's order (by name, then newest version first).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Position {
    name: String,
    /// Reversed so that newer versions sort first.
    version: std::cmp::Reverse<Option<Version>>,
}

pub(crate) fn version_position(name: &str, key: &Version) -> Position {
    Position {
        name: name.to_owned(),
        version: std::cmp::Reverse(Some(key.clone())),
    }
}

pub(crate) fn prompt_position(name: &str) -> Position {
    Position {
        name: name.to_owned(),
        version: std::cmp::Reverse(None),
    }
}

pub(crate) fn page_size(requested: i32) -> Result<usize, RegistryError> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n < 0 => Err(RegistryError::invalid(
            "page_size",
            "page_size must not be negative",
        )),
        n => Ok((n as usize).min(MAX_PAGE_SIZE)),
    }
}

fn encode_token(position: &Position) -> String {
    let text = match &position.version.0 {
        Some(version) => format!("{}\n{version}", position.name),
        None => position.name.clone(),
    };
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn decode_token(token: &str) -> Result<Option<Position>, RegistryError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || RegistryError::invalid("page_token", "page_token is not one this server issued");
    if token.len() % 2 != 0 {
        return Err(bad());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect::<Result<Vec<u8>, _>>()?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    Ok(Some(match text.split_once('\n') {
        Some((name, version)) => {
            version_position(name, &Version::parse(version).map_err(|_| bad())?)
        }
        None => prompt_position(&text),
    }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any token is a position or INVALID_ARGUMENT on `page_token`, never a panic.
        #[test]
        fn any_token_is_a_position_or_invalid(token in "\\PC{0,80}") {
            match decode_token(&token) {
                Ok(_) => {}
                Err(RegistryError::InvalidArgument(violations)) => {
                    prop_assert_eq!(&violations[0].field, "page_token");
                }
                Err(other) => prop_assert!(false, "{other:?}"),
            }
        }

        /// The tokens this server issues decode to the position they were made from.
        #[test]
        fn issued_tokens_round_trip(name in "[a-z][a-z0-9_-]{0,20}", major in 0u64..100, minor in 0u64..100) {
            for position in [
                prompt_position(&name),
                version_position(&name, &Version::new(major, minor, 0)),
            ] {
                let decoded = decode_token(&encode_token(&position)).unwrap().unwrap();
                prop_assert!(decoded == position);
            }
        }
    }
}
