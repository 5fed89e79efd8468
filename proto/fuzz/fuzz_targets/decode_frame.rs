//! Fuzzes the stream decoder: any bytes a peer can send.
//!
//! The input is run through [`Decoder`] as one buffer, frame after frame
//! (a bounded loop), and again delivered in small chunks; both runs must
//! agree. Every frame decoded must be the canonical reading of its bytes:
//! re-encoding gives back exactly the bytes consumed, and decoding those
//! gives the same frame. The whole input is also tried as a bare payload
//! with [`decode`]. Any panic, or a failed assertion, is a finding.

#![no_main]

use bytes::{Bytes, BytesMut};
use hoop_proto::{decode, encode, DecodeError, Decoder, Frame};
use libfuzzer_sys::fuzz_target;

/// Upper bound on frames taken from one input (each consumes >= 4 bytes,
/// so the loop ends anyway; this keeps a single run short).
const MAX_FRAMES: usize = 1024;

/// What one decode step gave, for comparing the two feeding strategies.
type Step = Result<Frame, DecodeError>;

fn check_canonical(frame: &Frame, consumed: &[u8]) {
    let mut again = BytesMut::new();
    encode(frame, &mut again);
    assert_eq!(&again[..], consumed, "re-encoding differs for {frame:?}");
    let back = Decoder::default().decode(&mut again);
    assert_eq!(
        back.as_ref(),
        Ok(&Some(frame.clone())),
        "re-decoding differs"
    );
    assert!(again.is_empty());
}

/// Decodes everything `buf` holds. Returns false once the stream is dead
/// (an oversize length prefix is never consumed).
fn drain(decoder: &Decoder, buf: &mut BytesMut, steps: &mut Vec<Step>) -> bool {
    while steps.len() < MAX_FRAMES {
        let before = buf.clone();
        let base = buf.as_ptr() as usize;
        match decoder.decode(buf) {
            Ok(Some(frame)) => {
                let used = before.len() - buf.len();
                assert!(used >= 5, "a frame is at least a prefix and a type byte");
                check_canonical(&frame, &before[..used]);
                if let Frame::Message(m) = &frame {
                    // Zero-copy: the body lies inside the receive buffer.
                    let at = m.body.as_ptr() as usize;
                    assert!(at >= base && at + m.body.len() <= base + used);
                }
                steps.push(Ok(frame));
            }
            Ok(None) => {
                assert_eq!(&buf[..], &before[..], "an incomplete frame was consumed");
                return true;
            }
            Err(e @ DecodeError::FrameTooLarge { .. }) => {
                assert_eq!(&buf[..], &before[..], "an oversize frame was consumed");
                steps.push(Err(e));
                return false;
            }
            Err(e) => {
                // The bad frame is consumed; the stream goes on after it.
                assert!(buf.len() + 4 <= before.len());
                steps.push(Err(e));
            }
        }
    }
    false
}

fn whole(decoder: &Decoder, data: &[u8]) -> Vec<Step> {
    let mut buf = BytesMut::from(data);
    let mut steps = Vec::new();
    drain(decoder, &mut buf, &mut steps);
    steps
}

fn chunked(decoder: &Decoder, data: &[u8]) -> Vec<Step> {
    let mut buf = BytesMut::new();
    let mut steps = Vec::new();
    let mut at = 0;
    while at < data.len() {
        // Chunk sizes 1..=16 drawn from the data itself.
        let n = (usize::from(data[at]) % 16 + 1).min(data.len() - at);
        buf.extend_from_slice(&data[at..at + n]);
        at += n;
        if !drain(decoder, &mut buf, &mut steps) {
            break;
        }
    }
    steps
}

fuzz_target!(|data: &[u8]| {
    let decoder = Decoder::default();
    let steps = whole(&decoder, data);
    if steps.len() < MAX_FRAMES {
        assert_eq!(
            chunked(&decoder, data),
            steps,
            "chunking changed the result"
        );
    }

    // A tight frame limit reaches the oversize path with small inputs.
    let small = Decoder::new(usize::from(data.first().copied().unwrap_or(0)));
    whole(&small, data);

    // The whole input as one payload (type byte + fields).
    if let Ok(frame) = decode(Bytes::copy_from_slice(data)) {
        let mut again = BytesMut::new();
        encode(&frame, &mut again);
        assert_eq!(&again[4..], data, "payload re-encoding differs");
    }
});
