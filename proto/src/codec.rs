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
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        let Some(len) = self.frame_len(buf)? else {
            return Ok(None);
        };
        if buf.len() < 4 + len {
            buf.reserve(4 + len - buf.len());
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
