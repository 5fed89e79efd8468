//! Property tests for the frame codec.
//!
//! * every frame the strategies can build survives encode → decode exactly;
//! * arbitrary (and mutated) bytes never panic either decoder entry point,
//!   and whatever decodes re-encodes to the very bytes it came from;
//! * streams of several frames, cut into arbitrary chunks, decode back to
//!   the same sequence.

use bytes::{BufMut, Bytes, BytesMut};
use hoop_proto::frame::*;
use hoop_proto::{decode, encode, DecodeError, Decoder};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

// ---- strategies: one per frame type -------------------------------------

/// Any Unicode text (newlines, NULs, astral code points included), short.
fn text() -> impl Strategy<Value = String> {
    "(?s).{0,12}"
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    option::of(text())
}

fn hello() -> impl Strategy<Value = Hello> {
    (any::<u16>(), text(), text(), text()).prop_map(
        |(version, token, client_name, client_version)| Hello {
            version,
            token,
            client_name,
            client_version,
        },
    )
}

fn identity_kind() -> impl Strategy<Value = IdentityKind> {
    prop_oneof![Just(IdentityKind::Human), Just(IdentityKind::Workload)]
}

fn identity() -> impl Strategy<Value = Identity> {
    (
        text(),
        opt_text(),
        vec(text(), 0..6),
        text(),
        identity_kind(),
    )
        .prop_map(|(subject, email, groups, issuer, kind)| Identity {
            subject,
            email,
            groups,
            issuer,
            kind,
        })
}

fn welcome() -> impl Strategy<Value = Welcome> {
    (any::<u16>(), identity(), any::<u64>(), text()).prop_map(
        |(version, identity, session_expires_at, broker_version)| Welcome {
            version,
            identity,
            session_expires_at,
            broker_version,
        },
    )
}

fn control_error() -> impl Strategy<Value = ControlError> {
    (any::<u16>(), text()).prop_map(|(code, message)| ControlError {
        code: ErrorCode(code),
        message,
    })
}

fn reauth() -> impl Strategy<Value = Reauth> {
    text().prop_map(|token| Reauth { token })
}

fn stream_kind() -> impl Strategy<Value = StreamKind> {
    prop_oneof![
        Just(StreamKind::Post),
        Just(StreamKind::Listen),
        Just(StreamKind::EndSession),
        Just(StreamKind::Catalog),
        Just(StreamKind::Audit),
    ]
}

fn mcp_headers() -> impl Strategy<Value = McpHeaders> {
    (
        opt_text(),
        opt_text(),
        opt_text(),
        opt_text(),
        vec((text(), text()), 0..6),
        opt_text(),
    )
        .prop_map(
            |(protocol_version, session_id, method, name, params, last_event_id)| McpHeaders {
                protocol_version,
                session_id,
                method,
                name,
                params,
                last_event_id,
            },
        )
}

fn open_stream() -> impl Strategy<Value = OpenStream> {
    (text(), stream_kind(), mcp_headers()).prop_map(|(target, kind, headers)| OpenStream {
        target,
        kind,
        headers,
    })
}

fn mcp_message() -> impl Strategy<Value = McpMessage> {
    (opt_text(), vec(any::<u8>(), 0..64)).prop_map(|(event_id, body)| McpMessage {
        event_id,
        body: Bytes::from(body),
    })
}

fn response_body() -> impl Strategy<Value = ResponseBody> {
    prop_oneof![
        Just(ResponseBody::Empty),
        Just(ResponseBody::Json),
        Just(ResponseBody::EventStream),
    ]
}

fn response_head() -> impl Strategy<Value = ResponseHead> {
    // The decoder only accepts HTTP statuses 100..=599.
    (100u16..=599, response_body(), opt_text()).prop_map(|(status, body, session_id)| {
        ResponseHead {
            status,
            body,
            session_id,
        }
    })
}

fn close_stream() -> impl Strategy<Value = CloseStream> {
    (any::<u16>(), text()).prop_map(|(code, message)| CloseStream {
        code: CloseCode(code),
        message,
    })
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        hello().prop_map(Frame::Hello),
        welcome().prop_map(Frame::Welcome),
        control_error().prop_map(Frame::ControlError),
        reauth().prop_map(Frame::Reauth),
        open_stream().prop_map(Frame::Open),
        mcp_message().prop_map(Frame::Message),
        response_head().prop_map(Frame::Head),
        close_stream().prop_map(Frame::Close),
    ]
}

// ---- helpers --------------------------------------------------------------

fn wire(frame: &Frame) -> BytesMut {
    let mut out = BytesMut::new();
    encode(frame, &mut out);
    out
}

/// A decoded frame must be the canonical reading of the bytes it came from:
/// re-encoding gives those bytes back, and decoding them again gives the
/// same frame.
fn check_canonical(frame: &Frame, consumed: &[u8]) -> Result<(), TestCaseError> {
    let again = wire(frame);
    prop_assert_eq!(&again[..], consumed);
    let mut buf = again;
    prop_assert_eq!(Decoder::default().decode(&mut buf), Ok(Some(frame.clone())));
    prop_assert!(buf.is_empty());
    Ok(())
}

/// Runs a decoder over `bytes` until it needs more input or fails, checking
/// every frame it yields. Returns how many frames it produced.
fn drain(decoder: &Decoder, bytes: &[u8]) -> Result<usize, TestCaseError> {
    let mut buf = BytesMut::from(bytes);
    let mut frames = 0;
    // Every frame consumes at least its 4-byte prefix, so this terminates;
    // the bound is belt and braces.
    for _ in 0..=bytes.len() / 4 {
        let before = buf.clone();
        match decoder.decode(&mut buf) {
            Ok(Some(frame)) => {
                let used = before.len() - buf.len();
                check_canonical(&frame, &before[..used])?;
                frames += 1;
            }
            Ok(None) => {
                // Needs more bytes: nothing may have been consumed.
                prop_assert_eq!(&buf[..], &before[..]);
                break;
            }
            Err(DecodeError::FrameTooLarge { len, max }) => {
                prop_assert!(len > max);
                prop_assert_eq!(&buf[..], &before[..]);
                break;
            }
            Err(_) => break,
        }
    }
    Ok(frames)
}

const TYPES: [u8; 8] = [
    frame_type::HELLO,
    frame_type::WELCOME,
    frame_type::CONTROL_ERROR,
    frame_type::REAUTH,
    frame_type::OPEN,
    frame_type::MESSAGE,
    frame_type::HEAD,
    frame_type::CLOSE,
];

/// A payload that starts with a known type byte, so the fields get parsed.
fn typed_payload() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::sample::select(&TYPES[..]),
        vec(any::<u8>(), 0..96),
    )
        .prop_map(|(ty, mut rest)| {
            rest.insert(0, ty);
            rest
        })
}

/// How a valid frame is damaged by [`mutated_wire`].
#[derive(Debug, Clone)]
enum Damage {
    /// Overwrite payload bytes; small values hit flags and enum tags.
    Edit(Vec<(prop::sample::Index, u8)>),
    /// Cut the payload short.
    Truncate(prop::sample::Index),
    /// Append bytes to the payload.
    Extend(Vec<u8>),
    /// Overwrite bytes anywhere, length prefix included.
    Raw(Vec<(prop::sample::Index, u8)>),
}

fn damage() -> impl Strategy<Value = Damage> {
    let value = prop_oneof![3 => 0u8..4, 1 => any::<u8>()];
    let edits = vec((any::<prop::sample::Index>(), value), 1..4);
    prop_oneof![
        4 => edits.clone().prop_map(Damage::Edit),
        2 => any::<prop::sample::Index>().prop_map(Damage::Truncate),
        1 => vec(any::<u8>(), 1..8).prop_map(Damage::Extend),
        1 => edits.prop_map(Damage::Raw),
    ]
}

/// The wire form of a valid frame, damaged; except for `Damage::Raw` the
/// length prefix is fixed up so that the damage reaches the field decoder.
fn mutated_wire() -> impl Strategy<Value = Vec<u8>> {
    (frame(), damage()).prop_map(|(frame, damage)| {
        let wire = wire(&frame);
        let mut payload = wire[4..].to_vec();
        match damage {
            Damage::Edit(edits) => {
                for (at, value) in edits {
                    let i = at.index(payload.len());
                    payload[i] = value;
                }
            }
            Damage::Truncate(at) => payload.truncate(at.index(payload.len())),
            Damage::Extend(more) => payload.extend_from_slice(&more),
            Damage::Raw(edits) => {
                let mut bytes = wire.to_vec();
                for (at, value) in edits {
                    let i = at.index(bytes.len());
                    bytes[i] = value;
                }
                return bytes;
            }
        }
        let mut bytes = u32::try_from(payload.len())
            .expect("short")
            .to_be_bytes()
            .to_vec();
        bytes.extend_from_slice(&payload);
        bytes
    })
}

// ---- properties -------------------------------------------------------------

proptest! {
    #[test]
    fn frames_round_trip(frame in frame()) {
        let mut buf = wire(&frame);
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        prop_assert_eq!(len, buf.len() - 4);
        prop_assert_eq!(decode(Bytes::copy_from_slice(&buf[4..])), Ok(frame.clone()));
        prop_assert_eq!(Decoder::default().decode(&mut buf), Ok(Some(frame)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_stream_decoder(
        bytes in vec(any::<u8>(), 0..256),
        max in prop_oneof![Just(hoop_proto::limits::DEFAULT_MAX_FRAME_LEN), 0usize..300],
    ) {
        drain(&Decoder::new(max), &bytes)?;
    }

    #[test]
    fn arbitrary_payloads_never_panic_decode(bytes in vec(any::<u8>(), 0..256)) {
        if let Ok(frame) = decode(Bytes::copy_from_slice(&bytes)) {
            let again = wire(&frame);
            prop_assert_eq!(&again[4..], &bytes[..]);
        }
    }

    #[test]
    fn typed_payloads_never_panic_decode(bytes in typed_payload()) {
        let result = decode(Bytes::copy_from_slice(&bytes));
        if let Ok(frame) = &result {
            prop_assert_eq!(&wire(frame)[4..], &bytes[..]);
        }
        // The same payload behind a length prefix behaves the same.
        let mut framed = BytesMut::new();
        framed.put_u32(u32::try_from(bytes.len()).expect("short"));
        framed.put_slice(&bytes);
        prop_assert_eq!(Decoder::default().decode(&mut framed), result.map(Some));
    }

    #[test]
    fn concatenated_frames_decode_in_order(
        frames in vec(frame(), 0..8),
        cuts in vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut stream = BytesMut::new();
        for f in &frames {
            encode(f, &mut stream);
        }
        // Deliver the stream in chunks cut at arbitrary points.
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        points.push(stream.len());
        points.sort_unstable();

        let decoder = Decoder::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut from = 0;
        for to in points {
            buf.extend_from_slice(&stream[from..to]);
            from = to;
            while let Some(f) = decoder.decode(&mut buf).expect("valid stream") {
                got.push(f);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, frames);
    }
}

proptest! {
    // Cheap cases, and the interesting ones: run more of them.
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn mutated_frames_never_panic(bytes in mutated_wire()) {
        drain(&Decoder::default(), &bytes)?;
        if bytes.len() >= 4 {
            let _ = decode(Bytes::copy_from_slice(&bytes[4..]));
        }
    }
}
