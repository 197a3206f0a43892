//! Following `next_page_token` through a list RPC, shared by the CLI's list commands.

use anyhow::bail;

use crate::cli::status_error;

/// The most a list request may ask for in one page.
const MAX_PAGE_SIZE: u32 = 1000;

/// The page size to ask for when `have` items are in hand and at most `limit` are wanted.
fn page_size(limit: Option<u32>, have: usize) -> i32 {
    let wanted = limit.map_or(MAX_PAGE_SIZE, |limit| {
        limit.saturating_sub(u32::try_from(have).unwrap_or(u32::MAX))
    });
    // At most MAX_PAGE_SIZE, so the cast cannot truncate.
    wanted.min(MAX_PAGE_SIZE) as i32
}

/// Follows `next_page_token` until the last page or until `limit` items are in hand.
/// `fetch` gets a page size and a token and returns the page's items and next token.
pub(crate) async fn collect_pages<T, F, Fut>(
    limit: Option<u32>,
    mut fetch: F,
) -> anyhow::Result<Vec<T>>
where
    F: FnMut(i32, String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = fetch(page_size(limit, items.len()), token.clone())
            .await
            .map_err(status_error)?;
        items.extend(page);
        if let Some(limit) = limit {
            let limit = limit as usize;
            if items.len() >= limit {
                items.truncate(limit);
                break;
            }
        }
        if next.is_empty() {
            break;
        }
        if next == token {
            bail!("the server returned the same page token twice; stopping");
        }
        token = next;
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_respect_the_limit() {
        assert_eq!(page_size(None, 0), 1000);
        assert_eq!(page_size(None, 5000), 1000);
        assert_eq!(page_size(Some(10), 0), 10);
        assert_eq!(page_size(Some(10), 4), 6);
        assert_eq!(page_size(Some(5000), 0), 1000);
    }

    #[tokio::test]
    async fn pages_are_followed_until_the_last_or_the_limit() {
        let pages = |page_size: i32, token: String| async move {
            let start: usize = token.parse().unwrap_or(0);
            // The server may return fewer than asked: at most 10 here.
            let end = (start + (page_size as usize).min(10)).min(25);
            let next = if end < 25 {
                end.to_string()
            } else {
                String::new()
            };
            Ok::<_, tonic::Status>(((start..end).collect::<Vec<_>>(), next))
        };
        assert_eq!(collect_pages(None, pages).await.unwrap().len(), 25);
        assert_eq!(
            collect_pages(Some(7), pages).await.unwrap(),
            (0..7).collect::<Vec<_>>()
        );
        assert_eq!(
            collect_pages(Some(13), pages).await.unwrap(),
            (0..13).collect::<Vec<_>>()
        );
        let err = collect_pages(None, |_, _| async {
            Ok::<_, tonic::Status>((vec![1], "same".to_owned()))
        })
        .await;
        assert!(err.is_err());
    }
}
