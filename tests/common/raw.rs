//! Calls with hand-made request bytes: what a broken or hostile client sends.

use bytes::{Buf as _, BufMut as _};
use http::uri::PathAndQuery;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::Status;

/// A codec that sends and receives bytes as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// A unary call of `path` (`/llmops.v1.PromptService/GetPromptVersion`) with `body` as
/// the request message's bytes.
pub async fn unary(channel: &Channel, path: &str, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|err| Status::unavailable(err.to_string()))?;
    let path: PathAndQuery = path.parse().expect("a method path");
    grpc.unary(tonic::Request::new(body), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// A client-streaming call of `path` sending `messages` as they are.
pub async fn client_streaming(
    channel: &Channel,
    path: &str,
    messages: Vec<Vec<u8>>,
) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|err| Status::unavailable(err.to_string()))?;
    let path: PathAndQuery = path.parse().expect("a method path");
    grpc.client_streaming(
        tonic::Request::new(futures_util::stream::iter(messages)),
        path,
        RawCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

/// How many bytes `status` takes: its message and its details.
pub fn status_size(status: &Status) -> usize {
    status.message().len() + status.details().len()
}

/// A server-streaming call of `path`: its status once the first message arrives (OK),
/// the stream fails, or `wait` passes with the stream still open (OK).
pub async fn server_streaming_first(
    channel: &Channel,
    path: &str,
    body: Vec<u8>,
    wait: std::time::Duration,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|err| Status::unavailable(err.to_string()))?;
    let path: PathAndQuery = path.parse().expect("a method path");
    let mut stream = grpc
        .server_streaming(tonic::Request::new(body), path, RawCodec)
        .await?
        .into_inner();
    match tokio::time::timeout(wait, stream.message()).await {
        Ok(Err(status)) => Err(status),
        Ok(Ok(_)) | Err(_) => Ok(()),
    }
}
