//! gRPC for the fuzz tests: what a refusal must be, and a codec that sends and receives raw
//! frames, so that the server's decoder sees whatever a test sends.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use prost::bytes::{Buf, BufMut};
use tonic::client::Grpc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

pub const REQUEST_ERRORS: &[Code] = &[
    Code::InvalidArgument,
    Code::NotFound,
    Code::FailedPrecondition,
    Code::ResourceExhausted,
];

/// A refusal is a request error with a message.
pub fn check_status(s: &Status) -> Result<(), TestCaseError> {
    let (code, msg) = (s.code(), s.message());
    prop_assert!(
        REQUEST_ERRORS.contains(&code),
        "not a request error: {code:?}: {msg}"
    );
    prop_assert!(!msg.trim().is_empty(), "{code:?} without a message");
    Ok(())
}

/// tonic's own answer to bytes that are no message of the method's type.
pub fn undecodable(s: &Status) -> bool {
    s.code() == Code::Internal && s.message().contains("decode")
}

/// A client on `channel` for raw frames (with `RawCodec`), ready.
pub async fn raw_client(channel: Channel) -> Result<Grpc<Channel>, Status> {
    let mut grpc = Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    Ok(grpc)
}

/// Sends raw bytes as gRPC messages and returns raw bytes.
#[derive(Clone, Copy)]
pub struct RawCodec;

pub struct RawEncoder;
pub struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}
