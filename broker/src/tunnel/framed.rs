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

    /// The type byte of the frame waiting in the buffer, when its length
    /// prefix and type have arrived: what a frame refused as too large
    /// claimed to be.
    pub fn buffered_frame_type(&self) -> Option<u8> {
        self.buf.get(4).copied()
    }

    pub fn into_inner(self) -> quinn::RecvStream {
        self.recv
    }

    /// Lets go of a read buffer a large frame grew, once it is empty: a
    /// frame's bytes share the buffer's allocation, which a stream that
    /// waits for its next exchange would otherwise keep for as long as it
    /// idles.
    pub fn reclaim(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 64 * 1024 {
            self.buf = BytesMut::with_capacity(8 * 1024);
        }
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
        self.queue(frame);
        self.flush().await
    }

    /// Encodes a frame into the write buffer without sending it, so that
    /// frames that are ready together leave in one write (and usually one
    /// QUIC packet).
    pub fn queue(&mut self, frame: &Frame) {
        encode(frame, &mut self.buf);
    }

    /// Sends what was queued.
    pub async fn flush(&mut self) -> Result<(), FrameError> {
        if !self.buf.is_empty() {
            self.send.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Queues a message frame; a large body is not copied into the write
    /// buffer but written after it as its own chunk.
    pub async fn queue_message(&mut self, msg: &hoop_proto::McpMessage) -> Result<(), FrameError> {
        if msg.body.len() < 16 * 1024 {
            self.queue(&Frame::Message(msg.clone()));
            return Ok(());
        }
        let start = self.buf.len();
        let head = hoop_proto::McpMessage {
            event_id: msg.event_id.clone(),
            body: bytes::Bytes::new(),
        };
        encode(&Frame::Message(head), &mut self.buf);
        // Patch the length prefix to cover the body that follows.
        let total = self.buf.len() - start - 4 + msg.body.len();
        let len = u32::try_from(total).map_err(|_| {
            FrameError::Decode(DecodeError::FrameTooLarge {
                len: total,
                max: u32::MAX as usize,
            })
        })?;
        self.buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
        self.flush().await?;
        self.send.write_all(&msg.body).await?;
        Ok(())
    }

    /// Sends a message frame (see [`Self::queue_message`]).
    pub async fn send_message(&mut self, msg: &hoop_proto::McpMessage) -> Result<(), FrameError> {
        self.queue_message(msg).await?;
        self.flush().await
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
