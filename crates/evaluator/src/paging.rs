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
