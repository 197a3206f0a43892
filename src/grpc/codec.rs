//! The protobuf codec every llmops service and client uses: tonic-prost's, except that a
//! request that cannot be decoded is the client's fault.
//!
//! tonic-prost answers any decode failure with INTERNAL ("failed to decode Protobuf
//! message"), so garbage bytes, invalid UTF-8 in a string field or a
//! `google.protobuf.Value` nested past prost's recursion limit looked like a server bug,
//! and clients that retry INTERNAL retried them. A request message that does not decode
//! is INVALID_ARGUMENT, naming the message. A response that does not decode (on the
//! client side) stays INTERNAL: that one is the server's fault.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// A [`Codec`] for prost messages (`T` encoded, `U` decoded).
#[derive(Debug, Clone)]
pub struct ProstCodec<T, U> {
    _messages: PhantomData<(T, U)>,
}

impl<T, U> Default for ProstCodec<T, U> {
    fn default() -> Self {
        Self {
            _messages: PhantomData,
        }
    }
}

impl<T, U> Codec for ProstCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder {
            inner: ProstDecoder::new(BufferSettings::default()),
        }
    }
}

/// tonic-prost's decoder, with decode failures of request messages made
/// INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct RequestDecoder<U> {
    inner: ProstDecoder<U>,
}

impl<U: Message + Default> Decoder for RequestDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.inner.decode(buf).map_err(|status| {
            let message = short_type_name::<U>();
            // Every request message's name ends in `Request` (buf lint's rule).
            if status.code() == Code::Internal && message.ends_with("Request") {
                Status::invalid_argument(format!(
                    "the request is not a valid llmops.v1.{message}: {}",
                    status.message()
                ))
            } else {
                status
            }
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}

/// `CreatePromptVersionRequest` of `llmops::pb::CreatePromptVersionRequest`.
fn short_type_name<U>() -> &'static str {
    let full = std::any::type_name::<U>();
    full.rsplit("::").next().unwrap_or(full)
}
