//! A tower layer that keeps every error status small, whatever the request held.
//!
//! Messages quote what the client sent (`experiment "..." not found`, field names such as
//! `variables.<name>`), so a 70,000-byte id made a 70 KB status, over the 16 KiB metadata
//! limit of default clients, which then saw RESOURCE_EXHAUSTED instead of NOT_FOUND.
//! Every failing response passes through here: each quoted value and each unbroken run of
//! text is cut to [`MAX_QUOTED_BYTES`] with an ellipsis, the message to
//! [`MAX_MESSAGE_BYTES`], and the `google.rpc.BadRequest` details to what fits in
//! [`MAX_DETAILS_BYTES`], so a status stays under 2 KiB. Doing it once, at the edge,
//! covers every handler and tonic's own errors alike.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response};
use pin_project_lite::pin_project;
use tonic::Status;
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};
use tower::{Layer, Service};

/// The most bytes of one client value a message or detail quotes.
pub const MAX_QUOTED_BYTES: usize = 128;
/// The most bytes of a status message.
pub const MAX_MESSAGE_BYTES: usize = 768;
/// The most bytes of encoded status details (which repeat the message).
pub const MAX_DETAILS_BYTES: usize = 1200;
/// The most bytes of a status: its message and its details together.
pub const MAX_STATUS_BYTES: usize = 2000;

const ELLIPSIS: &str = "…";

/// How tonic-prost's message for a request it could not decode begins.
const UNDECODABLE_MESSAGE: &str = "failed to decode Protobuf message";

/// Bounds the error statuses of a service (see the module comment).
#[derive(Debug, Clone, Copy, Default)]
pub struct BoundedStatusLayer;

impl<S> Layer<S> for BoundedStatusLayer {
    type Service = BoundedStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BoundedStatus { inner }
    }
}

/// The service [`BoundedStatusLayer`] wraps around the gRPC router.
#[derive(Debug, Clone)]
pub struct BoundedStatus<S> {
    inner: S,
}

impl<S, B, ResBody> Service<Request<B>> for BoundedStatus<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoundedStatusFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        BoundedStatusFuture {
            inner: self.inner.call(request),
        }
    }
}

pin_project! {
    /// Bounds the status in the response headers once they are ready.
    pub struct BoundedStatusFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, ResBody, E> Future for BoundedStatusFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut result = std::task::ready!(self.project().inner.poll(cx));
        if let Ok(response) = &mut result {
            bound_headers(response.headers_mut());
        }
        Poll::Ready(result)
    }
}

/// Rewrites a failing status carried in `headers` (tonic sends failures as trailers-only
/// responses) when it is over the bounds.
fn bound_headers(headers: &mut HeaderMap) {
    let failing = headers
        .get(Status::GRPC_STATUS)
        .is_some_and(|code| code.as_bytes() != b"0");
    if !failing {
        return;
    }
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    if status.code() == tonic::Code::Internal && status.message().starts_with(UNDECODABLE_MESSAGE) {
        // A service with tonic-prost's codec (health, reflection) could not decode the
        // request: the client's fault, as for our own services (see `codec`).
        let _ = Status::invalid_argument(format!(
            "the request is not a valid message: {}",
            status.message()
        ))
        .add_header(headers);
        return;
    }
    if status.message().len() <= MAX_MESSAGE_BYTES
        && status.details().len() <= MAX_DETAILS_BYTES
        && !has_long_value(status.message())
    {
        return;
    }
    let bounded = bound_status(&status);
    headers.remove(Status::GRPC_MESSAGE);
    headers.remove(Status::GRPC_STATUS_DETAILS);
    if bounded.add_header(headers).is_err() {
        // The bounded message is valid header text; should that ever fail, keep only
        // the code rather than an oversized message.
        headers.remove(Status::GRPC_MESSAGE);
        headers.remove(Status::GRPC_STATUS_DETAILS);
    }
}

/// `status` with its message and field violations within the bounds.
pub fn bound_status(status: &Status) -> Status {
    let message = bound_text(status.message(), MAX_MESSAGE_BYTES);
    let violations: Vec<FieldViolation> = status
        .get_error_details()
        .bad_request()
        .map(|bad_request| bad_request.field_violations.clone())
        .unwrap_or_default();
    if violations.is_empty() {
        // Only BadRequest details are ever sent; anything else over the bound goes.
        let details = if status.details().len() <= MAX_DETAILS_BYTES {
            status.details().to_vec()
        } else {
            Vec::new()
        };
        return Status::with_details(status.code(), message, details.into());
    }
    let mut kept: Vec<FieldViolation> = violations
        .into_iter()
        .map(|violation| {
            FieldViolation::new(
                shorten_values(&violation.field),
                bound_text(&violation.description, 2 * MAX_QUOTED_BYTES),
            )
        })
        .collect();
    // The details repeat the message: drop violations from the end until both fit.
    loop {
        let bounded = Status::with_error_details(
            status.code(),
            message.clone(),
            ErrorDetails::with_bad_request(kept.clone()),
        );
        if bounded.message().len() + bounded.details().len() <= MAX_STATUS_BYTES || kept.len() <= 1
        {
            return bounded;
        }
        let keep = kept.len() / 2;
        kept.truncate(keep.max(1));
    }
}

/// `text` with long client values cut (see [`shorten_values`]) and then cut to `limit`
/// bytes.
fn bound_text(text: &str, limit: usize) -> String {
    let mut text = shorten_values(text);
    if text.len() > limit {
        let cut = floor_char_boundary(&text, limit - ELLIPSIS.len());
        text.truncate(cut);
        text.push_str(ELLIPSIS);
    }
    text
}

/// Whether `text` quotes a value, or holds a run without spaces, over
/// [`MAX_QUOTED_BYTES`].
fn has_long_value(text: &str) -> bool {
    shorten_values(text).len() != text.len()
}

/// `text` with every double-quoted value and every run without whitespace longer than
/// [`MAX_QUOTED_BYTES`] cut to that many bytes plus an ellipsis (a quoted value keeps its
/// closing quote).
pub fn shorten_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(4 * MAX_MESSAGE_BYTES));
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after_quote) = rest.strip_prefix('"') {
            let end = closing_quote(after_quote);
            let value = &after_quote[..end];
            out.push('"');
            push_shortened(&mut out, value);
            rest = &after_quote[end..];
            if let Some(after) = rest.strip_prefix('"') {
                out.push('"');
                rest = after;
            }
            continue;
        }
        let run_end = rest
            .find(|c: char| c.is_whitespace() || c == '"')
            .unwrap_or(rest.len());
        if run_end == 0 {
            let c = rest.chars().next().expect("not empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        push_shortened(&mut out, &rest[..run_end]);
        rest = &rest[run_end..];
    }
    out
}

/// The byte offset of the quote closing a value that starts at `text` (after its opening
/// quote), skipping escaped quotes; the end of `text` if it is never closed.
fn closing_quote(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' => index += 2,
            b'"' => return index,
            _ => index += 1,
        }
    }
    text.len()
}

fn push_shortened(out: &mut String, value: &str) {
    if value.len() <= MAX_QUOTED_BYTES {
        out.push_str(value);
    } else {
        out.push_str(&value[..floor_char_boundary(value, MAX_QUOTED_BYTES)]);
        out.push_str(ELLIPSIS);
    }
}

fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_quoted_values_and_runs_are_cut_to_128_bytes() {
        let id = "x".repeat(70_000);
        let message = format!("experiment {id:?} not found");
        let short = shorten_values(&message);
        assert_eq!(
            short,
            format!("experiment \"{}…\" not found", "x".repeat(128))
        );
        let unquoted = format!("unknown metric {id}");
        assert_eq!(
            shorten_values(&unquoted),
            format!("unknown metric {}…", "x".repeat(128))
        );
        let ordinary = "prompt \"greeting\" has no version 1.2.0";
        assert_eq!(shorten_values(ordinary), ordinary);
    }

    #[test]
    fn multibyte_values_are_cut_on_a_character_boundary() {
        let value = "é".repeat(200);
        let short = shorten_values(&format!("{value:?}"));
        assert!(short.len() <= MAX_QUOTED_BYTES + ELLIPSIS.len() + 2);
        assert!(short.ends_with("…\""));
    }

    #[test]
    fn a_whole_status_stays_under_2_kib() {
        let field = format!("variables.{}", "k".repeat(10_000));
        let violations: Vec<_> = (0..500)
            .map(|index| {
                tonic_types::FieldViolation::new(
                    format!("{field}{index}"),
                    format!("value {:?} is bad", "v".repeat(5_000)),
                )
            })
            .collect();
        let status = Status::with_error_details(
            tonic::Code::InvalidArgument,
            "word ".repeat(2_000),
            ErrorDetails::with_bad_request(violations),
        );
        let bounded = bound_status(&status);
        assert_eq!(bounded.code(), tonic::Code::InvalidArgument);
        assert!(bounded.message().len() <= MAX_MESSAGE_BYTES);
        assert!(bounded.message().len() + bounded.details().len() <= MAX_STATUS_BYTES);
        let kept = bounded.get_error_details().bad_request().unwrap().clone();
        assert!(!kept.field_violations.is_empty());
        assert!(kept.field_violations[0].field.starts_with("variables.kkk"));
        assert!(kept.field_violations[0].field.len() <= MAX_QUOTED_BYTES + ELLIPSIS.len());
    }
}
