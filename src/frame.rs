//! Length-prefixed frames on QUIC streams: a big-endian `u32` length, then a postcard body.
//! The length is checked against `MESSAGE_SIZE_MAX` before the body buffer is allocated.

use bytes::Bytes;
use chorus_proto::codec::{self, CodecError, FRAME_HEADER_SIZE};

use crate::tls::Ending;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Most bytes reserved for a frame body before any of it arrived.
pub const FRAME_PREALLOCATE_MAX: usize = 64 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream ended cleanly between frames.
    #[error("stream closed")]
    Closed,
    /// The connection went: closed by either side (a node that stops closes its connections
    /// with a reason: "closed by peer: node stopping"), reset by a peer restarted on its
    /// address, timed out, or failed.
    #[error("connection lost: {0}")]
    Lost(quinn::ConnectionError),
    /// The stream failed.
    #[error("stream failed: {0}")]
    Stream(String),
    /// The frame was too large or did not decode.
    #[error(transparent)]
    Codec(CodecError),
}

/// A failed read, saying why the connection went when it did.
fn read_failed(error: &quinn::ReadError) -> FrameError {
    match error {
        quinn::ReadError::ConnectionLost(lost) => FrameError::Lost(lost.clone()),
        other => FrameError::Stream(other.to_string()),
    }
}

impl FrameError {
    /// How the read ended (`tls::ending`); a failed stream or a malformed frame is a fault.
    pub(crate) fn ending(&self) -> Ending {
        match self {
            FrameError::Lost(lost) => crate::tls::ending(lost),
            _ => Ending::Fault,
        }
    }
}

/// Reads one frame's body, or `Closed` if the stream ended cleanly before a frame began.
pub async fn read_body(recv: &mut quinn::RecvStream) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; FRAME_HEADER_SIZE];
    match recv.read_exact(&mut header).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Err(FrameError::Closed),
        Err(quinn::ReadExactError::ReadError(error)) => return Err(read_failed(&error)),
        Err(error) => return Err(FrameError::Stream(error.to_string())),
    }
    let size = codec::frame_length(header).map_err(FrameError::Codec)?;
    // Grow the buffer as bytes arrive rather than trusting the announced length: a peer that
    // announces a large frame on many streams and sends nothing then costs nothing.
    let mut body = Vec::with_capacity(size.min(FRAME_PREALLOCATE_MAX));
    while body.len() < size {
        let chunk = recv.read_chunk(size - body.len(), true).await;
        match chunk.map_err(|error| read_failed(&error))? {
            Some(chunk) => body.extend_from_slice(&chunk.bytes),
            None => return Err(FrameError::Stream("stream ended inside a frame".into())),
        }
    }
    Ok(body)
}

/// Reads and decodes one frame.
pub async fn read<T: DeserializeOwned>(recv: &mut quinn::RecvStream) -> Result<T, FrameError> {
    let body = read_body(recv).await?;
    codec::decode(&body).map_err(FrameError::Codec)
}

/// Writes a whole frame (length prefix included) without copying it: the stream keeps the
/// shared buffer until the peer acknowledges it, so one message sent to several peers is one
/// buffer in memory.
pub async fn write_frame(send: &mut quinn::SendStream, frame: Bytes) -> Result<(), FrameError> {
    send.write_chunk(frame).await.map_err(|error| FrameError::Stream(error.to_string()))
}

/// Encodes and writes one frame.
pub async fn write<T: Serialize>(
    send: &mut quinn::SendStream,
    message: &T,
) -> Result<(), FrameError> {
    let frame = codec::encode_frame(message).map_err(FrameError::Codec)?;
    send.write_all(&frame).await.map_err(|error| FrameError::Stream(error.to_string()))
}
