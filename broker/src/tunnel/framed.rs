//! Async frame I/O over QUIC streams: the thin layer between `quinn`'s
//! byte streams and the sans-IO codec in `hoop-proto`. Used by the broker
//! and by the CLI's tunnel client alike.

use bytes::BytesMut;
use hoop_proto::{encode, DecodeError, Decoder, Frame};

/// Why reading a frame failed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("malformed frame: {0}")]
    Decode(#[from] DecodeError),
    #[error("stream read failed: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("stream write failed: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("stream ended in the middle of a frame")]
    UnexpectedEof,
}

/// Reads whole frames off a QUIC receive stream.
pub struct FrameReader {
    recv: quinn::RecvStream,
    buf: BytesMut,
    decoder: Decoder,
}

impl FrameReader {
    pub fn new(recv: quinn::RecvStream, max_frame_len: usize) -> Self {
        Self {
            recv,
            buf: BytesMut::with_capacity(8 * 1024),
            decoder: Decoder::new(max_frame_len),
        }
    }

    /// The next frame, `Ok(None)` at a clean end of stream.
    pub async fn next(&mut self) -> Result<Option<Frame>, FrameError> {
        // Each iteration either returns or consumes bytes from the peer, and
        // a frame is bounded by max_frame_len, so the loop is bounded.
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf)? {
                return Ok(Some(frame));
            }
            match self.recv.read_chunk(256 * 1024, true).await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk.bytes),
                None => {
                    return if self.buf.is_empty() {
                        Ok(None)
                    } else {
                        Err(FrameError::UnexpectedEof)
                    }
                }
            }
        }
    }

    pub fn into_inner(self) -> quinn::RecvStream {
        self.recv
    }

    pub fn stop(&mut self) {
        let _ = self.recv.stop(0u32.into());
    }
}

/// Writes frames onto a QUIC send stream.
pub struct FrameWriter {
    send: quinn::SendStream,
    buf: BytesMut,
}

impl FrameWriter {
    pub fn new(send: quinn::SendStream) -> Self {
        Self {
            send,
            buf: BytesMut::with_capacity(1024),
        }
    }

    pub async fn send(&mut self, frame: &Frame) -> Result<(), FrameError> {
        self.buf.clear();
        encode(frame, &mut self.buf);
        self.send.write_all(&self.buf).await?;
        Ok(())
    }

    /// Sends a message frame without copying its body into the scratch
    /// buffer: the header goes first, then the body as its own chunk.
    pub async fn send_message(&mut self, msg: &hoop_proto::McpMessage) -> Result<(), FrameError> {
        if msg.body.len() < 16 * 1024 {
            return self.send(&Frame::Message(msg.clone())).await;
        }
        self.buf.clear();
        let head = hoop_proto::McpMessage {
            event_id: msg.event_id.clone(),
            body: bytes::Bytes::new(),
        };
        encode(&Frame::Message(head), &mut self.buf);
        // Patch the length prefix to cover the body that follows.
        let total = self.buf.len() - 4 + msg.body.len();
        let len = u32::try_from(total).map_err(|_| {
            FrameError::Decode(DecodeError::FrameTooLarge {
                len: total,
                max: u32::MAX as usize,
            })
        })?;
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        self.send.write_all(&self.buf).await?;
        self.send.write_all(&msg.body).await?;
        Ok(())
    }

    /// Ends the send side cleanly.
    pub fn finish(&mut self) {
        let _ = self.send.finish();
    }

    pub fn reset(&mut self) {
        let _ = self.send.reset(0u32.into());
    }

    pub fn into_inner(self) -> quinn::SendStream {
        self.send
    }
}
