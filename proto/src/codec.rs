//! Byte codec for [`Frame`]s: length-delimited, big-endian, strict.
//!
//! Layout of every frame: `len: u32` (bytes that follow), `type: u8`, then
//! the fields of that type. Strings are `u32` length + UTF-8, options are a
//! `u8` presence flag (0 or 1) + value, lists are a `u16` count + items.
//! The body of an [`McpMessage`] is the rest of the frame, so decoding it
//! copies nothing. Trailing bytes, unknown types, bad flags, bad UTF-8 and
//! oversize lengths are errors; the decoder never panics and never allocates
//! more than the frame it was handed.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::frame::*;
use crate::limits::{DEFAULT_MAX_FRAME_LEN, MAX_LIST_LEN, MAX_STRING_LEN};

/// Why bytes could not be decoded into a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("empty frame (no type byte)")]
    Empty,
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    #[error("frame ends early while reading {0}")]
    Truncated(&'static str),
    #[error("{0} bytes left over after the last field")]
    TrailingBytes(usize),
    #[error("field {field} is {len} bytes, over the limit of {max}")]
    FieldTooLarge {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("field {0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    #[error("field {field} has invalid value {value}")]
    InvalidValue { field: &'static str, value: u32 },
}

/// Appends the wire form of `frame` to `out`.
pub fn encode(frame: &Frame, out: &mut BytesMut) {
    let start = out.len();
    out.put_u32(0); // length, patched below
    match frame {
        Frame::Hello(h) => {
            out.put_u8(frame_type::HELLO);
            out.put_u16(h.version);
            put_str(out, &h.token);
            put_str(out, &h.client_name);
            put_str(out, &h.client_version);
        }
        Frame::Welcome(w) => {
            out.put_u8(frame_type::WELCOME);
            out.put_u16(w.version);
            put_str(out, &w.identity.subject);
            put_opt_str(out, w.identity.email.as_deref());
            put_list(out, &w.identity.groups, |o, g| put_str(o, g));
            put_str(out, &w.identity.issuer);
            out.put_u8(w.identity.kind as u8);
            out.put_u64(w.session_expires_at);
            put_str(out, &w.broker_version);
        }
        Frame::ControlError(e) => {
            out.put_u8(frame_type::CONTROL_ERROR);
            out.put_u16(e.code.0);
            put_str(out, &e.message);
        }
        Frame::Reauth(r) => {
            out.put_u8(frame_type::REAUTH);
            put_str(out, &r.token);
        }
        Frame::Open(o) => {
            out.put_u8(frame_type::OPEN);
            put_str(out, &o.target);
            out.put_u8(o.kind as u8);
            let h = &o.headers;
            put_opt_str(out, h.protocol_version.as_deref());
            put_opt_str(out, h.session_id.as_deref());
            put_opt_str(out, h.method.as_deref());
            put_opt_str(out, h.name.as_deref());
            put_list(out, &h.params, |o, (k, v)| {
                put_str(o, k);
                put_str(o, v);
            });
            put_opt_str(out, h.last_event_id.as_deref());
        }
        Frame::Message(m) => {
            out.put_u8(frame_type::MESSAGE);
            put_opt_str(out, m.event_id.as_deref());
            out.put_slice(&m.body);
        }
        Frame::Head(h) => {
            out.put_u8(frame_type::HEAD);
            out.put_u16(h.status);
            out.put_u8(h.body as u8);
            put_opt_str(out, h.session_id.as_deref());
        }
        Frame::Close(c) => {
            out.put_u8(frame_type::CLOSE);
            out.put_u16(c.code.0);
            put_str(out, &c.message);
        }
    }
    // Lengths are bounded by the limits the decoder enforces; a frame that
    // does not fit in u32 cannot be produced from decodable input.
    let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Most bytes [`Decoder::decode`] reserves ahead of the data it holds while a
/// frame is incomplete. Larger frames grow the buffer as their bytes arrive.
const MAX_PREALLOC: usize = 64 * 1024;

/// Splits frames off a byte buffer that grows as bytes arrive.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_frame_len: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl Decoder {
    pub fn new(max_frame_len: usize) -> Self {
        Self { max_frame_len }
    }

    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Takes one whole frame off the front of `buf`, `Ok(None)` when more
    /// bytes are needed. The oversize check happens on the length prefix,
    /// before the payload is buffered.
    ///
    /// A frame that fails to decode is still consumed (its length prefix was
    /// valid), so the error concerns that frame alone; an oversize length
    /// prefix consumes nothing and the stream cannot be resynchronised.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        let Some(len) = self.frame_len(buf)? else {
            return Ok(None);
        };
        // Saturating: with a 32-bit usize and a huge `max_frame_len`,
        // `4 + len` could overflow; a saturated total is never reached.
        let total = len.saturating_add(4);
        if buf.len() < total {
            // Reserve for what is missing, but never more than
            // `MAX_PREALLOC` ahead of the bytes that actually arrived: a
            // 4-byte prefix must not make us allocate the whole claimed frame
            // (up to `max_frame_len`) before the peer has sent it.
            buf.reserve((total - buf.len()).min(MAX_PREALLOC));
            return Ok(None);
        }
        buf.advance(4);
        let payload = buf.split_to(len).freeze();
        decode(payload).map(Some)
    }

    /// Reads and checks the length prefix, `Ok(None)` if fewer than 4 bytes.
    pub fn frame_len(&self, buf: &[u8]) -> Result<Option<usize>, DecodeError> {
        let Some(prefix) = buf.get(..4) else {
            return Ok(None);
        };
        let mut p = [0u8; 4];
        p.copy_from_slice(prefix);
        let len = u32::from_be_bytes(p) as usize;
        if len > self.max_frame_len {
            return Err(DecodeError::FrameTooLarge {
                len,
                max: self.max_frame_len,
            });
        }
        Ok(Some(len))
    }
}

/// Decodes one frame from its payload (the bytes after the length prefix:
/// the type byte and the fields).
pub fn decode(mut p: Bytes) -> Result<Frame, DecodeError> {
    if p.is_empty() {
        return Err(DecodeError::Empty);
    }
    let ty = p.get_u8();
    let frame = match ty {
        frame_type::HELLO => Frame::Hello(Hello {
            version: get_u16(&mut p, "hello.version")?,
            token: get_str(&mut p, "hello.token")?,
            client_name: get_str(&mut p, "hello.client_name")?,
            client_version: get_str(&mut p, "hello.client_version")?,
        }),
        frame_type::WELCOME => {
            let version = get_u16(&mut p, "welcome.version")?;
            let subject = get_str(&mut p, "identity.subject")?;
            let email = get_opt_str(&mut p, "identity.email")?;
            let groups = get_list(&mut p, "identity.groups", |p| {
                get_str(p, "identity.groups[]")
            })?;
            let issuer = get_str(&mut p, "identity.issuer")?;
            let kind = match get_u8(&mut p, "identity.kind")? {
                1 => IdentityKind::Human,
                2 => IdentityKind::Workload,
                v => return Err(invalid("identity.kind", v.into())),
            };
            Frame::Welcome(Welcome {
                version,
                identity: Identity {
                    subject,
                    email,
                    groups,
                    issuer,
                    kind,
                },
                session_expires_at: get_u64(&mut p, "welcome.session_expires_at")?,
                broker_version: get_str(&mut p, "welcome.broker_version")?,
            })
        }
        frame_type::CONTROL_ERROR => Frame::ControlError(ControlError {
            code: ErrorCode(get_u16(&mut p, "error.code")?),
            message: get_str(&mut p, "error.message")?,
        }),
        frame_type::REAUTH => Frame::Reauth(Reauth {
            token: get_str(&mut p, "reauth.token")?,
        }),
        frame_type::OPEN => {
            let target = get_str(&mut p, "open.target")?;
            let kind = match get_u8(&mut p, "open.kind")? {
                1 => StreamKind::Post,
                2 => StreamKind::Listen,
                3 => StreamKind::EndSession,
                4 => StreamKind::Catalog,
                5 => StreamKind::Audit,
                6 => StreamKind::Approvals,
                v => return Err(invalid("open.kind", v.into())),
            };
            let headers = McpHeaders {
                protocol_version: get_opt_str(&mut p, "open.protocol_version")?,
                session_id: get_opt_str(&mut p, "open.session_id")?,
                method: get_opt_str(&mut p, "open.method")?,
                name: get_opt_str(&mut p, "open.name")?,
                params: get_list(&mut p, "open.params", |p| {
                    Ok((
                        get_str(p, "open.params[].name")?,
                        get_str(p, "open.params[].value")?,
                    ))
                })?,
                last_event_id: get_opt_str(&mut p, "open.last_event_id")?,
            };
            Frame::Open(OpenStream {
                target,
                kind,
                headers,
            })
        }
        frame_type::MESSAGE => {
            let event_id = get_opt_str(&mut p, "message.event_id")?;
            // The body is the rest of the frame: a zero-copy slice.
            let body = std::mem::take(&mut p);
            Frame::Message(McpMessage { event_id, body })
        }
        frame_type::HEAD => {
            let status = get_u16(&mut p, "head.status")?;
            if !(100..=599).contains(&status) {
                return Err(invalid("head.status", status.into()));
            }
            let body = match get_u8(&mut p, "head.body")? {
                0 => ResponseBody::Empty,
                1 => ResponseBody::Json,
                2 => ResponseBody::EventStream,
                v => return Err(invalid("head.body", v.into())),
            };
            Frame::Head(ResponseHead {
                status,
                body,
                session_id: get_opt_str(&mut p, "head.session_id")?,
            })
        }
        frame_type::CLOSE => Frame::Close(CloseStream {
            code: CloseCode(get_u16(&mut p, "close.code")?),
            message: get_str(&mut p, "close.message")?,
        }),
        other => return Err(DecodeError::UnknownType(other)),
    };
    if p.has_remaining() {
        return Err(DecodeError::TrailingBytes(p.remaining()));
    }
    Ok(frame)
}

fn invalid(field: &'static str, value: u32) -> DecodeError {
    DecodeError::InvalidValue { field, value }
}

fn put_str(out: &mut BytesMut, s: &str) {
    out.put_u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
    out.put_slice(s.as_bytes());
}

fn put_opt_str(out: &mut BytesMut, s: Option<&str>) {
    match s {
        None => out.put_u8(0),
        Some(s) => {
            out.put_u8(1);
            put_str(out, s);
        }
    }
}

fn put_list<T>(out: &mut BytesMut, items: &[T], mut put: impl FnMut(&mut BytesMut, &T)) {
    out.put_u16(u16::try_from(items.len()).unwrap_or(u16::MAX));
    for item in items {
        put(out, item);
    }
}

fn get_u8(p: &mut Bytes, field: &'static str) -> Result<u8, DecodeError> {
    p.try_get_u8().map_err(|_| DecodeError::Truncated(field))
}

fn get_u16(p: &mut Bytes, field: &'static str) -> Result<u16, DecodeError> {
    p.try_get_u16().map_err(|_| DecodeError::Truncated(field))
}

fn get_u64(p: &mut Bytes, field: &'static str) -> Result<u64, DecodeError> {
    p.try_get_u64().map_err(|_| DecodeError::Truncated(field))
}

fn get_str(p: &mut Bytes, field: &'static str) -> Result<String, DecodeError> {
    let len = p.try_get_u32().map_err(|_| DecodeError::Truncated(field))? as usize;
    if len > MAX_STRING_LEN {
        return Err(DecodeError::FieldTooLarge {
            field,
            len,
            max: MAX_STRING_LEN,
        });
    }
    if p.remaining() < len {
        return Err(DecodeError::Truncated(field));
    }
    let raw = p.split_to(len);
    String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::InvalidUtf8(field))
}

fn get_opt_str(p: &mut Bytes, field: &'static str) -> Result<Option<String>, DecodeError> {
    match get_u8(p, field)? {
        0 => Ok(None),
        1 => get_str(p, field).map(Some),
        v => Err(invalid(field, v.into())),
    }
}

fn get_list<T>(
    p: &mut Bytes,
    field: &'static str,
    mut get: impl FnMut(&mut Bytes) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let n = get_u16(p, field)? as usize;
    if n > MAX_LIST_LEN {
        return Err(DecodeError::FieldTooLarge {
            field,
            len: n,
            max: MAX_LIST_LEN,
        });
    }
    // Every item takes at least one byte, so this bound cannot be used to
    // reserve more than the frame holds.
    let mut items = Vec::with_capacity(n.min(p.remaining()));
    for _ in 0..n {
        items.push(get(p)?);
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{MAX_LIST_LEN, MAX_STRING_LEN};

    fn hello() -> Frame {
        Frame::Hello(Hello {
            version: 1,
            token: "secret-token-value".into(),
            client_name: "hoop".into(),
            client_version: "0.1.0".into(),
        })
    }

    fn welcome(email: Option<&str>, groups: &[&str], kind: IdentityKind) -> Frame {
        Frame::Welcome(Welcome {
            version: 1,
            identity: Identity {
                subject: "user-123".into(),
                email: email.map(Into::into),
                groups: groups.iter().map(|g| (*g).into()).collect(),
                issuer: "https://issuer.example".into(),
                kind,
            },
            session_expires_at: 1_900_000_000,
            broker_version: "0.1.0".into(),
        })
    }

    fn open(kind: StreamKind, headers: McpHeaders) -> Frame {
        Frame::Open(OpenStream {
            target: "github".into(),
            kind,
            headers,
        })
    }

    fn full_headers() -> McpHeaders {
        McpHeaders {
            protocol_version: Some("2025-06-18".into()),
            session_id: Some("sess-1".into()),
            method: Some("tools/call".into()),
            name: Some("=?base64?Zm9v?=".into()),
            params: vec![("Owner".into(), "me".into()), ("Repo".into(), "".into())],
            last_event_id: Some("ev-42".into()),
        }
    }

    fn message(event_id: Option<&str>, body: &'static [u8]) -> Frame {
        Frame::Message(McpMessage {
            event_id: event_id.map(Into::into),
            body: Bytes::from_static(body),
        })
    }

    /// At least one frame of every type, with options and lists both
    /// present and absent, empty strings and non-ASCII text.
    fn samples() -> Vec<Frame> {
        vec![
            hello(),
            Frame::Hello(Hello {
                version: 0,
                token: String::new(),
                client_name: "hööp ✓".into(),
                client_version: String::new(),
            }),
            welcome(Some("a@b.example"), &["eng", "ops"], IdentityKind::Human),
            welcome(None, &[], IdentityKind::Workload),
            Frame::ControlError(ControlError {
                code: ErrorCode::UNAUTHENTICATED,
                message: "token expired; run `hoop login`".into(),
            }),
            Frame::ControlError(ControlError {
                code: ErrorCode(999),
                message: String::new(),
            }),
            Frame::Reauth(Reauth {
                token: "fresh-token".into(),
            }),
            open(StreamKind::Post, full_headers()),
            open(StreamKind::Listen, McpHeaders::default()),
            open(StreamKind::EndSession, McpHeaders::default()),
            message(None, b""),
            message(Some("ev-1"), br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Frame::Head(ResponseHead {
                status: 200,
                body: ResponseBody::Json,
                session_id: Some("broker-sess".into()),
            }),
            Frame::Head(ResponseHead {
                status: 202,
                body: ResponseBody::Empty,
                session_id: None,
            }),
            Frame::Head(ResponseHead {
                status: 599,
                body: ResponseBody::EventStream,
                session_id: None,
            }),
            Frame::Close(CloseStream {
                code: CloseCode::DONE,
                message: String::new(),
            }),
            Frame::Close(CloseStream {
                code: CloseCode(u16::MAX),
                message: "upstream went away".into(),
            }),
        ]
    }

    fn wire(frame: &Frame) -> BytesMut {
        let mut out = BytesMut::new();
        encode(frame, &mut out);
        out
    }

    /// The payload: the wire form without its length prefix.
    fn payload(frame: &Frame) -> Vec<u8> {
        wire(frame)[4..].to_vec()
    }

    /// A length-prefixed frame around `payload`.
    fn framed(payload: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        out.put_u32(u32::try_from(payload.len()).expect("small payload"));
        out.put_slice(payload);
        out
    }

    fn decode_payload(bytes: &[u8]) -> Result<Frame, DecodeError> {
        decode(Bytes::copy_from_slice(bytes))
    }

    fn string(s: &[u8]) -> Vec<u8> {
        let mut v = u32::try_from(s.len())
            .expect("small string")
            .to_be_bytes()
            .to_vec();
        v.extend_from_slice(s);
        v
    }

    fn type_of(frame: &Frame) -> u8 {
        match frame {
            Frame::Hello(_) => frame_type::HELLO,
            Frame::Welcome(_) => frame_type::WELCOME,
            Frame::ControlError(_) => frame_type::CONTROL_ERROR,
            Frame::Reauth(_) => frame_type::REAUTH,
            Frame::Open(_) => frame_type::OPEN,
            Frame::Message(_) => frame_type::MESSAGE,
            Frame::Head(_) => frame_type::HEAD,
            Frame::Close(_) => frame_type::CLOSE,
        }
    }

    const ALL_TYPES: [u8; 8] = [
        frame_type::HELLO,
        frame_type::WELCOME,
        frame_type::CONTROL_ERROR,
        frame_type::REAUTH,
        frame_type::OPEN,
        frame_type::MESSAGE,
        frame_type::HEAD,
        frame_type::CLOSE,
    ];

    #[test]
    fn samples_cover_every_frame_type() {
        let mut seen: Vec<u8> = samples().iter().map(type_of).collect();
        seen.sort_unstable();
        seen.dedup();
        let mut all = ALL_TYPES.to_vec();
        all.sort_unstable();
        assert_eq!(seen, all);
    }

    #[test]
    fn each_frame_type_round_trips() {
        let decoder = Decoder::default();
        for frame in samples() {
            let mut buf = wire(&frame);
            let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes"));
            assert_eq!(len as usize, buf.len() - 4, "length prefix of {frame:?}");
            assert_eq!(buf[4], type_of(&frame), "type byte of {frame:?}");
            assert_eq!(decode_payload(&buf[4..]), Ok(frame.clone()));
            assert_eq!(decoder.decode(&mut buf), Ok(Some(frame.clone())));
            assert!(buf.is_empty(), "{frame:?} left {} bytes", buf.len());
            assert_eq!(decoder.decode(&mut buf), Ok(None));
        }
    }

    #[test]
    fn encode_appends_after_existing_bytes() {
        let mut out = BytesMut::from(&b"xyz"[..]);
        encode(&hello(), &mut out);
        assert_eq!(&out[..3], b"xyz");
        assert_eq!(&out[3..], &wire(&hello())[..]);
    }

    /// Pins the byte layout documented in docs/protocol.md.
    #[test]
    fn golden_encodings() {
        let cases: Vec<(Frame, Vec<u8>)> = vec![
            (
                Frame::Hello(Hello {
                    version: 1,
                    token: "t".into(),
                    client_name: "hoop".into(),
                    client_version: "0.1".into(),
                }),
                [
                    &[0, 0, 0, 23, 0x01, 0, 1][..],
                    &string(b"t"),
                    &string(b"hoop"),
                    &string(b"0.1"),
                ]
                .concat(),
            ),
            (
                Frame::Welcome(Welcome {
                    version: 1,
                    identity: Identity {
                        subject: "u".into(),
                        email: None,
                        groups: vec!["g".into()],
                        issuer: "i".into(),
                        kind: IdentityKind::Human,
                    },
                    session_expires_at: 0x0102_0304_0506_0708,
                    broker_version: "b".into(),
                }),
                [
                    &[0, 0, 0, 35, 0x02, 0, 1][..],
                    &string(b"u"),
                    &[0],
                    &[0, 1],
                    &string(b"g"),
                    &string(b"i"),
                    &[1],
                    &[1, 2, 3, 4, 5, 6, 7, 8],
                    &string(b"b"),
                ]
                .concat(),
            ),
            (
                Frame::ControlError(ControlError {
                    code: ErrorCode::UNAUTHENTICATED,
                    message: "no".into(),
                }),
                [&[0, 0, 0, 9, 0x03, 0, 1][..], &string(b"no")].concat(),
            ),
            (
                Frame::Reauth(Reauth { token: "x".into() }),
                [&[0, 0, 0, 6, 0x04][..], &string(b"x")].concat(),
            ),
            (
                open(
                    StreamKind::Post,
                    McpHeaders {
                        protocol_version: Some("v".into()),
                        params: vec![("a".into(), "b".into())],
                        ..McpHeaders::default()
                    },
                ),
                [
                    &[0, 0, 0, 34, 0x10][..],
                    &string(b"github"),
                    &[1],
                    &[1],
                    &string(b"v"),
                    &[0, 0, 0],
                    &[0, 1],
                    &string(b"a"),
                    &string(b"b"),
                    &[0],
                ]
                .concat(),
            ),
            (
                message(Some("e"), b"{}"),
                [&[0, 0, 0, 9, 0x11, 1][..], &string(b"e"), b"{}"].concat(),
            ),
            (message(None, b"{}"), vec![0, 0, 0, 4, 0x11, 0, b'{', b'}']),
            (
                Frame::Head(ResponseHead {
                    status: 200,
                    body: ResponseBody::Json,
                    session_id: Some("s".into()),
                }),
                [&[0, 0, 0, 10, 0x12, 0, 200, 1, 1][..], &string(b"s")].concat(),
            ),
            (
                Frame::Close(CloseStream {
                    code: CloseCode::DONE,
                    message: String::new(),
                }),
                vec![0, 0, 0, 7, 0x13, 0, 0, 0, 0, 0, 0],
            ),
        ];
        for (frame, bytes) in cases {
            assert_eq!(&wire(&frame)[..], &bytes[..], "{frame:?}");
            assert_eq!(decode_payload(&bytes[4..]), Ok(frame));
        }
    }

    #[test]
    fn split_frame_decodes_only_once_complete() {
        let decoder = Decoder::default();
        for frame in samples() {
            let bytes = wire(&frame);
            for cut in 0..bytes.len() {
                let mut buf = BytesMut::from(&bytes[..cut]);
                assert_eq!(decoder.decode(&mut buf), Ok(None), "{frame:?} cut at {cut}");
                assert_eq!(buf.len(), cut, "an incomplete frame must not be consumed");
                buf.extend_from_slice(&bytes[cut..]);
                assert_eq!(decoder.decode(&mut buf), Ok(Some(frame.clone())));
                assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn byte_by_byte_stream_yields_each_frame_at_its_last_byte() {
        let decoder = Decoder::default();
        let frames = samples();
        let mut stream = BytesMut::new();
        let mut ends = Vec::new();
        for frame in &frames {
            encode(frame, &mut stream);
            ends.push(stream.len());
        }

        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for (i, byte) in stream.iter().enumerate() {
            buf.put_u8(*byte);
            while let Some(frame) = decoder.decode(&mut buf).expect("valid stream") {
                got.push((i + 1, frame));
            }
        }
        let want: Vec<(usize, Frame)> = ends.into_iter().zip(frames).collect();
        assert_eq!(got, want);
        assert!(buf.is_empty());
    }

    #[test]
    fn oversize_length_prefix_rejected_before_buffering() {
        let decoder = Decoder::new(16);
        assert_eq!(decoder.max_frame_len(), 16);

        // Exactly at the limit: accepted, waits for the payload.
        let mut buf = BytesMut::from(&16u32.to_be_bytes()[..]);
        assert_eq!(decoder.frame_len(&buf), Ok(Some(16)));
        assert_eq!(decoder.decode(&mut buf), Ok(None));

        // One over: rejected from the 4-byte prefix alone, nothing consumed.
        let mut buf = BytesMut::from(&17u32.to_be_bytes()[..]);
        let err = DecodeError::FrameTooLarge { len: 17, max: 16 };
        assert_eq!(decoder.frame_len(&buf), Err(err.clone()));
        assert_eq!(decoder.decode(&mut buf), Err(err));
        assert_eq!(buf.len(), 4);

        // The default limit rejects u32::MAX without reserving anything.
        let mut buf = BytesMut::with_capacity(4);
        buf.put_u32(u32::MAX);
        let capacity = buf.capacity();
        assert_eq!(
            Decoder::default().decode(&mut buf),
            Err(DecodeError::FrameTooLarge {
                len: u32::MAX as usize,
                max: DEFAULT_MAX_FRAME_LEN,
            })
        );
        assert_eq!(buf.capacity(), capacity);

        // Fewer than 4 bytes: no length yet.
        assert_eq!(decoder.frame_len(&[0xff, 0xff, 0xff]), Ok(None));
    }

    #[test]
    fn claimed_length_is_not_preallocated() {
        // A peer that sends only a large (but allowed) length prefix must not
        // make the decoder allocate the whole frame up front.
        let decoder = Decoder::default();
        let mut buf = BytesMut::new();
        buf.put_u32(u32::try_from(DEFAULT_MAX_FRAME_LEN).expect("fits"));
        buf.put_u8(frame_type::MESSAGE);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert!(
            buf.capacity() <= 2 * MAX_PREALLOC,
            "reserved {} bytes for a 5-byte buffer",
            buf.capacity()
        );
    }

    #[test]
    fn large_frames_still_decode_as_bytes_arrive() {
        let body = vec![b'x'; 3 * MAX_PREALLOC + 7];
        let frame = Frame::Message(McpMessage {
            event_id: None,
            body: Bytes::from(body),
        });
        let bytes = wire(&frame);
        let decoder = Decoder::default();
        let mut buf = BytesMut::new();
        let mut got = None;
        for chunk in bytes.chunks(1000) {
            assert!(got.is_none());
            buf.extend_from_slice(chunk);
            got = decoder.decode(&mut buf).expect("valid");
        }
        assert_eq!(got, Some(frame));
    }

    #[test]
    fn empty_frame_is_an_error() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert_eq!(Decoder::default().decode(&mut buf), Err(DecodeError::Empty));
        assert!(buf.is_empty(), "the empty frame is consumed");
        assert_eq!(decode(Bytes::new()), Err(DecodeError::Empty));
    }

    #[test]
    fn unknown_types_are_rejected() {
        for ty in 0..=u8::MAX {
            if ALL_TYPES.contains(&ty) {
                continue;
            }
            assert_eq!(decode_payload(&[ty]), Err(DecodeError::UnknownType(ty)));
            assert_eq!(
                decode_payload(&[ty, 0, 0, 0, 0]),
                Err(DecodeError::UnknownType(ty))
            );
        }
    }

    #[test]
    fn every_proper_prefix_is_truncated() {
        for frame in samples() {
            let p = payload(&frame);
            // A message's body is the rest of the frame, so cutting into the
            // body yields a shorter, valid message; only its header can be
            // truncated.
            let header_len = match &frame {
                Frame::Message(m) => p.len() - m.body.len(),
                _ => p.len(),
            };
            for cut in 1..header_len {
                match decode_payload(&p[..cut]) {
                    Err(DecodeError::Truncated(_)) => {}
                    other => panic!("{frame:?} cut at {cut}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn truncated_fields_are_named() {
        let t = |field| Err(DecodeError::Truncated(field));
        assert_eq!(decode_payload(&[0x01, 0]), t("hello.version"));
        assert_eq!(
            decode_payload(&[&[0x01, 0, 1][..], &[0, 0, 0, 10], b"abc"].concat()),
            t("hello.token")
        );
        assert_eq!(
            decode_payload(&[&[0x01, 0, 1][..], &string(b"tok"), &[0, 0]].concat()),
            t("hello.client_name")
        );
        assert_eq!(decode_payload(&[0x03, 0, 1]), t("error.message"));
        assert_eq!(decode_payload(&[0x04]), t("reauth.token"));
        assert_eq!(
            decode_payload(&[&[0x10][..], &string(b"t")].concat()),
            t("open.kind")
        );
        assert_eq!(
            decode_payload(&[&[0x10][..], &string(b"t"), &[1, 0, 0, 0, 0, 0, 1]].concat()),
            t("open.params[].name")
        );
        assert_eq!(decode_payload(&[0x11]), t("message.event_id"));
        assert_eq!(
            decode_payload(&[0x11, 1, 0, 0, 0, 5, b'e']),
            t("message.event_id")
        );
        assert_eq!(decode_payload(&[0x12, 0, 200]), t("head.body"));
        assert_eq!(decode_payload(&[0x12, 0, 200, 0]), t("head.session_id"));
        assert_eq!(decode_payload(&[0x13, 0]), t("close.code"));
        let mut welcome = payload(&welcome(None, &[], IdentityKind::Human));
        // Drop the broker_version string and 3 bytes of the expiry.
        welcome.truncate(welcome.len() - 4 - "0.1.0".len() - 3);
        assert_eq!(decode_payload(&welcome), t("welcome.session_expires_at"));
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let decoder = Decoder::default();
        for frame in samples() {
            if matches!(frame, Frame::Message(_)) {
                continue; // the body absorbs everything after the header
            }
            let mut p = payload(&frame);
            p.extend_from_slice(&[0xaa, 0xbb]);
            assert_eq!(decode_payload(&p), Err(DecodeError::TrailingBytes(2)));
            let mut buf = framed(&p);
            assert_eq!(decoder.decode(&mut buf), Err(DecodeError::TrailingBytes(2)));
        }
    }

    #[test]
    fn bad_option_flags_are_rejected() {
        let bad = |field, value| Err(DecodeError::InvalidValue { field, value });
        assert_eq!(decode_payload(&[0x11, 2]), bad("message.event_id", 2));
        assert_eq!(
            decode_payload(&[0x12, 0, 200, 1, 0xff]),
            bad("head.session_id", 255)
        );
        assert_eq!(
            decode_payload(&[&[0x10][..], &string(b"t"), &[1, 1], &string(b"v"), &[2]].concat()),
            bad("open.session_id", 2)
        );
        assert_eq!(
            decode_payload(&[&[0x02, 0, 1][..], &string(b"u"), &[3]].concat()),
            bad("identity.email", 3)
        );
        // Every option flag of a full Open frame, set to 2 in turn.
        let p = payload(&open(StreamKind::Post, McpHeaders::default()));
        // After the kind byte: four flags, the u16 params count, a last flag.
        let kind_at = 1 + 4 + "github".len();
        let flags = [
            kind_at + 1,
            kind_at + 2,
            kind_at + 3,
            kind_at + 4,
            kind_at + 7,
        ];
        let fields = [
            "open.protocol_version",
            "open.session_id",
            "open.method",
            "open.name",
            "open.last_event_id",
        ];
        for (at, field) in flags.into_iter().zip(fields) {
            let mut q = p.clone();
            assert_eq!(q[at], 0);
            q[at] = 2;
            assert_eq!(decode_payload(&q), bad(field, 2));
        }
    }

    #[test]
    fn bad_enum_values_are_rejected() {
        let bad = |field, value| Err(DecodeError::InvalidValue { field, value });

        // identity.kind: the byte after the issuer.
        let p = payload(&welcome(None, &[], IdentityKind::Human));
        let at = p.len() - 4 - "0.1.0".len() - 8 - 1;
        assert_eq!(p[at], IdentityKind::Human as u8);
        for v in [0u8, 3, 0xff] {
            let mut q = p.clone();
            q[at] = v;
            assert_eq!(decode_payload(&q), bad("identity.kind", v.into()));
        }

        // open.kind: the byte after the target.
        let p = payload(&open(StreamKind::Post, McpHeaders::default()));
        let at = 1 + 4 + "github".len();
        assert_eq!(p[at], StreamKind::Post as u8);
        for v in [0u8, 7, 0xff] {
            let mut q = p.clone();
            q[at] = v;
            assert_eq!(decode_payload(&q), bad("open.kind", v.into()));
        }

        // head.body and head.status.
        for v in [3u8, 0xff] {
            assert_eq!(
                decode_payload(&[0x12, 0, 200, v, 0]),
                bad("head.body", v.into())
            );
        }
        for status in [0u16, 99, 600, u16::MAX] {
            let [hi, lo] = status.to_be_bytes();
            assert_eq!(
                decode_payload(&[0x12, hi, lo, 0, 0]),
                bad("head.status", status.into())
            );
        }
        for status in [100u16, 599] {
            let [hi, lo] = status.to_be_bytes();
            assert!(decode_payload(&[0x12, hi, lo, 0, 0]).is_ok());
        }
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let bad = |field| Err(DecodeError::InvalidUtf8(field));
        let junk: &[u8] = &[0xff, 0xfe];
        assert_eq!(
            decode_payload(
                &[&[0x01, 0, 1][..], &string(junk), &string(b""), &string(b"")].concat()
            ),
            bad("hello.token")
        );
        assert_eq!(
            decode_payload(&[&[0x04][..], &string(b"\xc3")].concat()),
            bad("reauth.token")
        );
        assert_eq!(
            decode_payload(&[&[0x02, 0, 1][..], &string(b"u"), &[0, 0, 1], &string(junk)].concat()),
            bad("identity.groups[]")
        );
        assert_eq!(
            decode_payload(
                &[
                    &[0x10][..],
                    &string(b"t"),
                    &[1, 0, 0, 0, 0, 0, 1],
                    &string(b"k"),
                    &string(junk)
                ]
                .concat()
            ),
            bad("open.params[].value")
        );
        // Surrogate code points encoded as UTF-8 are not UTF-8.
        assert_eq!(
            decode_payload(&[&[0x13, 0, 0][..], &string(b"\xed\xa0\x80")].concat()),
            bad("close.message")
        );
        // A message body is opaque bytes: not checked.
        assert!(decode_payload(&[0x11, 0, 0xff, 0xfe]).is_ok());
    }

    #[test]
    fn oversized_string_lengths_are_rejected_before_reading() {
        let too_long = u32::try_from(MAX_STRING_LEN + 1).expect("fits");
        let p = [&[0x04][..], &too_long.to_be_bytes()].concat();
        assert_eq!(
            decode_payload(&p),
            Err(DecodeError::FieldTooLarge {
                field: "reauth.token",
                len: MAX_STRING_LEN + 1,
                max: MAX_STRING_LEN,
            })
        );
        let p = [&[0x13, 0, 0][..], &u32::MAX.to_be_bytes()].concat();
        assert_eq!(
            decode_payload(&p),
            Err(DecodeError::FieldTooLarge {
                field: "close.message",
                len: u32::MAX as usize,
                max: MAX_STRING_LEN,
            })
        );
        // At the limit the length is accepted; the bytes are then missing.
        let at_limit = u32::try_from(MAX_STRING_LEN).expect("fits");
        let p = [&[0x04][..], &at_limit.to_be_bytes()].concat();
        assert_eq!(
            decode_payload(&p),
            Err(DecodeError::Truncated("reauth.token"))
        );
        // And a string of exactly the limit decodes.
        let frame = Frame::Reauth(Reauth {
            token: "a".repeat(MAX_STRING_LEN),
        });
        assert_eq!(decode_payload(&payload(&frame)), Ok(frame));
    }

    #[test]
    fn oversized_list_lengths_are_rejected_before_reading() {
        let too_many = u16::try_from(MAX_LIST_LEN + 1).expect("fits");
        let p = [
            &[0x02, 0, 1][..],
            &string(b"u"),
            &[0],
            &too_many.to_be_bytes(),
        ]
        .concat();
        assert_eq!(
            decode_payload(&p),
            Err(DecodeError::FieldTooLarge {
                field: "identity.groups",
                len: MAX_LIST_LEN + 1,
                max: MAX_LIST_LEN,
            })
        );
        let p = [&[0x10][..], &string(b"t"), &[1, 0, 0, 0, 0, 0xff, 0xff]].concat();
        assert_eq!(
            decode_payload(&p),
            Err(DecodeError::FieldTooLarge {
                field: "open.params",
                len: usize::from(u16::MAX),
                max: MAX_LIST_LEN,
            })
        );
        // At the limit the count is accepted; the items are then missing.
        let at_limit = u16::try_from(MAX_LIST_LEN).expect("fits");
        let p = [
            &[0x02, 0, 1][..],
            &string(b"u"),
            &[0],
            &at_limit.to_be_bytes(),
        ]
        .concat();
        assert_eq!(
            decode_payload(&p),
            Err(DecodeError::Truncated("identity.groups[]"))
        );
        // And a list of exactly the limit decodes.
        let groups: Vec<String> = (0..MAX_LIST_LEN).map(|i| i.to_string()).collect();
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        let frame = welcome(None, &groups, IdentityKind::Workload);
        assert_eq!(decode_payload(&payload(&frame)), Ok(frame));
    }

    #[test]
    fn message_body_is_zero_copy() {
        let frame = message(Some("ev-7"), br#"{"jsonrpc":"2.0","method":"x"}"#);
        let body_offset = 1 + 1 + 4 + "ev-7".len();

        // Through the Decoder: the body points into the receive buffer.
        let mut buf = wire(&frame);
        buf.extend_from_slice(&wire(&hello())); // a following frame
        let base = buf.as_ptr() as usize;
        let Some(Frame::Message(m)) = Decoder::default().decode(&mut buf).expect("valid") else {
            panic!("not a message");
        };
        assert_eq!(m.body.as_ptr() as usize, base + 4 + body_offset);

        // Through `decode`: the body is a slice of the payload handed in.
        let p = Bytes::from(payload(&frame));
        let base = p.as_ptr() as usize;
        let Ok(Frame::Message(m)) = decode(p.clone()) else {
            panic!("not a message");
        };
        assert_eq!(m.body.as_ptr() as usize, base + body_offset);
        assert_eq!(m.body, p.slice(body_offset..));
    }

    #[test]
    fn failed_frame_is_consumed_and_next_frame_decodes() {
        let decoder = Decoder::default();
        let mut buf = framed(&[0x7f]);
        encode(&hello(), &mut buf);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(DecodeError::UnknownType(0x7f))
        );
        assert_eq!(decoder.decode(&mut buf), Ok(Some(hello())));
    }

    #[test]
    fn unknown_codes_survive_decoding() {
        for frame in [
            Frame::ControlError(ControlError {
                code: ErrorCode(4242),
                message: "newer broker".into(),
            }),
            Frame::Close(CloseStream {
                code: CloseCode(4242),
                message: String::new(),
            }),
        ] {
            assert_eq!(decode_payload(&payload(&frame)), Ok(frame));
        }
        assert_eq!(ErrorCode(4242).name(), "unknown");
        assert_eq!(CloseCode(4242).name(), "unknown");
        assert_eq!(ErrorCode::REVOKED.name(), "revoked");
        assert_eq!(CloseCode::UPSTREAM_ERROR.name(), "upstream_error");
    }

    #[test]
    fn debug_output_never_contains_tokens() {
        let hello = hello();
        let reauth = Frame::Reauth(Reauth {
            token: "fresh-token".into(),
        });
        for (frame, token) in [(&hello, "secret-token-value"), (&reauth, "fresh-token")] {
            for text in [format!("{frame:?}"), format!("{frame:#?}")] {
                assert!(!text.contains(token), "{text}");
                assert!(text.contains("<redacted>"), "{text}");
            }
        }
    }

    #[test]
    fn errors_display_without_panicking() {
        let errors = [
            DecodeError::FrameTooLarge { len: 9, max: 8 },
            DecodeError::Empty,
            DecodeError::UnknownType(0xab),
            DecodeError::Truncated("x"),
            DecodeError::TrailingBytes(3),
            DecodeError::FieldTooLarge {
                field: "x",
                len: 2,
                max: 1,
            },
            DecodeError::InvalidUtf8("x"),
            DecodeError::InvalidValue {
                field: "x",
                value: 9,
            },
        ];
        for e in errors {
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(
            DecodeError::UnknownType(0x0b).to_string(),
            "unknown frame type 0x0b"
        );
    }
}
