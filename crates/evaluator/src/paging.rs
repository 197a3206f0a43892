//! Newest-first pages of in-memory records, for the list RPCs of datasets and runs. The
//! page token is `<created_at micros>:<id>` of the last record returned.

use crate::error::EvaluationError;

/// Sorts `items` newest first by `key` (creation micros, id), keeps those after
/// `page_token`, and returns at most `page_size` (clamped to 1..=`max_page_size`) with
/// the next page's token (empty at the end).
pub(crate) fn newest_first<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> (i64, String),
    page_size: usize,
    page_token: &str,
    max_page_size: usize,
) -> Result<(Vec<T>, String), EvaluationError> {
    if !page_token.is_empty() {
        let after = page_token
            .split_once(':')
            .and_then(|(micros, id)| Some((micros.parse::<i64>().ok()?, id.to_owned())))
            .ok_or_else(|| {
                EvaluationError::invalid("page_token", "is not a token this server issued")
            })?;
        items.retain(|item| key(item) < after);
    }
    items.sort_by_key(|item| std::cmp::Reverse(key(item)));
    let size = page_size.clamp(1, max_page_size);
    let next = if items.len() > size {
        items.truncate(size);
        items
            .last()
            .map(|item| {
                let (micros, id) = key(item);
                format!("{micros}:{id}")
            })
            .unwrap_or_default()
    } else {
        String::new()
    };
    Ok((items, next))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any token is a page or INVALID_ARGUMENT on `page_token`; never a panic, and a
        /// page never holds more than asked.
        #[test]
        fn any_token_is_a_page_or_invalid(token in "\\PC{0,60}", size in 0usize..2000) {
            let items: Vec<(i64, String)> = (0..50).map(|i| (i, format!("id{i}"))).collect();
            match newest_first(items, Clone::clone, size, &token, 1000) {
                Ok((page, _)) => prop_assert!(page.len() <= size.clamp(1, 1000)),
                Err(EvaluationError::InvalidArgument(violations)) => {
                    prop_assert_eq!(&violations[0].field, "page_token");
                }
                Err(other) => prop_assert!(false, "{other:?}"),
            }
        }

        /// Following the issued tokens visits every item once, newest first.
        #[test]
        fn pages_cover_everything_once(count in 0i64..120, size in 1usize..30) {
            let items: Vec<(i64, String)> = (0..count).map(|i| (i / 3, format!("id{i}"))).collect();
            let mut seen = Vec::new();
            let mut token = String::new();
            loop {
                let (page, next) = newest_first(items.clone(), Clone::clone, size, &token, 1000).unwrap();
                seen.extend(page);
                if next.is_empty() {
                    break;
                }
                token = next;
            }
            let mut expected = items;
            expected.sort_by_key(|item| std::cmp::Reverse(item.clone()));
            prop_assert_eq!(seen, expected);
        }
    }
}
