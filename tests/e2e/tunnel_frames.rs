//! The broker's QUIC side under hostile input: bad tokens, garbage frames,
//! wrong frame order, unknown targets. Each gets a typed refusal, and the
//! broker keeps serving the next, well-behaved client.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hoop_broker::config::{BrokerConfig, DevConfig};
use hoop_broker::identity::dev::DevIdentities;
use hoop_broker::tunnel::framed::{FrameReader, FrameWriter};
use hoop_broker::tunnel::tls;
use hoop_cli::tunnel::{tls::client_config, Trust};
use hoop_proto::*;

struct Fixture {
    broker: hoop_broker::RunningBroker,
    _dir: tempfile::TempDir,
    identities: Arc<DevIdentities>,
    endpoint: quinn::Endpoint,
}

async fn fixture() -> Fixture {
    let mut config = BrokerConfig::empty();
    config.listen = ([127, 0, 0, 1], 0).into();
    let dir = tempfile::tempdir().unwrap();
    config.audit.path = Some(dir.path().join("audit.db"));
    let identities = Arc::new(DevIdentities::ephemeral(DevConfig::default()).unwrap());
    let broker = hoop_broker::start(&config, tls::self_signed().unwrap(), identities.clone())
        .await
        .unwrap();
    let mut endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
    endpoint.set_default_client_config(
        client_config(&Trust::Pin(broker.fingerprint.clone()))
            .unwrap()
            .0,
    );
    Fixture {
        broker,
        _dir: dir,
        identities,
        endpoint,
    }
}

impl Fixture {
    async fn conn(&self) -> quinn::Connection {
        self.endpoint
            .connect(self.broker.addr, "localhost")
            .unwrap()
            .await
            .unwrap()
    }

    /// Opens the control stream and sends `hello` bytes; returns the answer.
    async fn hello_raw(&self, conn: &quinn::Connection, bytes: &[u8]) -> Option<Frame> {
        let (mut send, recv) = conn.open_bi().await.unwrap();
        send.write_all(bytes).await.unwrap();
        let mut reader = FrameReader::new(recv, 1 << 20);
        tokio::time::timeout(Duration::from_secs(10), reader.next())
            .await
            .unwrap()
            .ok()
            .flatten()
    }

    async fn authenticated(&self) -> (quinn::Connection, quinn::SendStream) {
        let conn = self.conn().await;
        let (send, recv) = conn.open_bi().await.unwrap();
        let mut w = FrameWriter::new(send);
        let token = self.identities.mint("alice").unwrap();
        w.send(&Frame::Hello(hello(&token))).await.unwrap();
        let mut r = FrameReader::new(recv, 1 << 20);
        match r.next().await.unwrap() {
            Some(Frame::Welcome(w)) => assert_eq!(w.identity.subject, "alice"),
            other => panic!("expected Welcome, got {other:?}"),
        }
        std::mem::forget(r);
        (conn, w.into_inner())
    }
}

fn hello(token: &str) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        token: token.into(),
        client_name: "test".into(),
        client_version: "0".into(),
    }
}

fn encoded(f: &Frame) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode(f, &mut b);
    b.to_vec()
}

#[tokio::test]
async fn hostile_control_streams_get_typed_refusals() {
    let fx = fixture().await;
    let code_of = |f: Option<Frame>| match f {
        Some(Frame::ControlError(e)) => e.code,
        other => panic!("expected ControlError, got {other:?}"),
    };
    // A token from another signing key, garbage, and no token at all.
    let stranger = DevIdentities::ephemeral(DevConfig::default())
        .unwrap()
        .mint("alice")
        .unwrap();
    for token in [stranger.as_str(), "not-a-jwt", ""] {
        let c = fx.conn().await;
        let answer = fx
            .hello_raw(&c, &encoded(&Frame::Hello(hello(token))))
            .await;
        assert_eq!(code_of(answer), ErrorCode::UNAUTHENTICATED);
    }
    // Bytes that are not a frame.
    let c = fx.conn().await;
    let answer = fx.hello_raw(&c, &[0, 0, 0, 3, 0xee, 1, 2]).await;
    assert_eq!(code_of(answer), ErrorCode::MALFORMED_FRAME);
    // A valid frame, but not Hello.
    let c = fx.conn().await;
    let open = Frame::Open(OpenStream {
        target: "x".into(),
        kind: StreamKind::Post,
        headers: McpHeaders::default(),
    });
    assert_eq!(
        code_of(fx.hello_raw(&c, &encoded(&open)).await),
        ErrorCode::UNEXPECTED_FRAME
    );
    // A version older than any this broker speaks.
    let c = fx.conn().await;
    let old = Frame::Hello(Hello {
        version: 0,
        ..hello(&fx.identities.mint("bob").unwrap())
    });
    assert_eq!(
        code_of(fx.hello_raw(&c, &encoded(&old)).await),
        ErrorCode::UNSUPPORTED_VERSION
    );
    // A length prefix far over the limit is refused before it is buffered.
    let c = fx.conn().await;
    assert_eq!(
        code_of(fx.hello_raw(&c, &[0xff, 0xff, 0xff, 0xff]).await),
        ErrorCode::MALFORMED_FRAME
    );

    // The broker still serves a well-behaved client.
    let (_conn, _control) = fx.authenticated().await;
    fx.broker.shutdown().await;
}

#[tokio::test]
async fn hostile_mcp_streams_are_closed_with_a_reason() {
    let fx = fixture().await;
    let (conn, _control) = fx.authenticated().await;
    let close_of = |frames: Vec<Frame>| -> (CloseCode, String) {
        match frames.last() {
            Some(Frame::Close(c)) => (c.code, c.message.clone()),
            other => panic!("expected Close, got {other:?}"),
        }
    };
    async fn exchange(conn: &quinn::Connection, bytes: Vec<u8>) -> Vec<Frame> {
        let (mut send, recv) = conn.open_bi().await.unwrap();
        send.write_all(&bytes).await.unwrap();
        send.finish().unwrap();
        let mut r = FrameReader::new(recv, 1 << 24);
        let mut out = Vec::new();
        for _ in 0..16 {
            match tokio::time::timeout(Duration::from_secs(10), r.next())
                .await
                .unwrap()
            {
                Ok(Some(f)) => out.push(f),
                _ => break,
            }
        }
        out
    }
    // Garbage where Open should be.
    let (code, msg) = close_of(exchange(&conn, vec![0, 0, 0, 2, 0x99, 0]).await);
    assert_eq!(code, CloseCode::MALFORMED, "{msg}");
    // A Message first.
    let msg_first = encoded(&Frame::Message(McpMessage {
        event_id: None,
        body: "{}".into(),
    }));
    assert_eq!(
        close_of(exchange(&conn, msg_first).await).0,
        CloseCode::MALFORMED
    );
    // A POST without its message.
    let open = |target: &str| {
        encoded(&Frame::Open(OpenStream {
            target: target.into(),
            kind: StreamKind::Post,
            headers: McpHeaders::default(),
        }))
    };
    assert_eq!(
        close_of(exchange(&conn, open("x")).await).0,
        CloseCode::MALFORMED
    );
    // An unknown target: an HTTP-style 404 with a JSON-RPC error naming it.
    let mut bytes = open("nope");
    bytes.extend(encoded(&Frame::Message(McpMessage {
        event_id: None,
        body: r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.into(),
    })));
    let frames = exchange(&conn, bytes).await;
    match &frames[0] {
        Frame::Head(h) => assert_eq!(h.status, 404),
        other => panic!("expected Head, got {other:?}"),
    }
    match &frames[1] {
        Frame::Message(m) => assert!(
            String::from_utf8_lossy(&m.body).contains("no target named \\\"nope\\\""),
            "{m:?}"
        ),
        other => panic!("expected Message, got {other:?}"),
    }
    // The connection survived all of it.
    assert!(conn.close_reason().is_none());
    fx.broker.shutdown().await;
}

/// Reads frames until a `Close` (included) or the end of the stream.
async fn until_close(r: &mut FrameReader) -> Vec<Frame> {
    let mut out = Vec::new();
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_secs(10), r.next())
            .await
            .expect("the broker answered within 10 s")
        {
            Ok(Some(f)) => {
                let done = matches!(f, Frame::Close(_));
                out.push(f);
                if done {
                    break;
                }
            }
            _ => break,
        }
    }
    out
}

/// A ping to a target that does not exist: the broker answers it itself
/// (404 with a JSON-RPC error), so no upstream is needed.
fn ping_nowhere(w: &mut FrameWriter, id: u32) {
    w.queue(&Frame::Open(OpenStream {
        target: "nope".into(),
        kind: StreamKind::Post,
        headers: McpHeaders::default(),
    }));
    w.queue(&Frame::Message(McpMessage {
        event_id: None,
        body: format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#).into(),
    }));
}

fn status_of(frames: &[Frame]) -> Option<u16> {
    match frames.first() {
        Some(Frame::Head(h)) => Some(h.status),
        _ => None,
    }
}

#[tokio::test]
async fn version_2_streams_carry_exchange_after_exchange_and_version_1_streams_one() {
    let fx = fixture().await;
    let (conn, _control) = fx.authenticated().await;
    let (send, recv) = conn.open_bi().await.unwrap();
    let (mut w, mut r) = (FrameWriter::new(send), FrameReader::new(recv, 1 << 20));
    // Three exchanges, one stream, the send side never finished.
    for id in 1..=3 {
        ping_nowhere(&mut w, id);
        w.flush().await.unwrap();
        let frames = until_close(&mut r).await;
        assert_eq!(status_of(&frames), Some(404), "exchange {id}: {frames:?}");
        match frames.last() {
            Some(Frame::Close(c)) => assert_eq!(c.code, CloseCode::DONE, "exchange {id}"),
            other => panic!("exchange {id}: expected Close, got {other:?}"),
        }
    }
    // A framing error ends the stream: Close(malformed), then its end.
    w.send(&Frame::Message(McpMessage {
        event_id: None,
        body: "{}".into(),
    }))
    .await
    .unwrap();
    let frames = until_close(&mut r).await;
    assert!(
        matches!(frames.last(), Some(Frame::Close(c)) if c.code == CloseCode::MALFORMED),
        "{frames:?}"
    );
    let end = tokio::time::timeout(Duration::from_secs(10), r.next()).await;
    assert!(matches!(end, Ok(Ok(None))), "stream not ended: {end:?}");

    // A version-1 client: one exchange per stream, which the broker ends.
    let conn1 = fx.conn().await;
    let (send, recv) = conn1.open_bi().await.unwrap();
    let mut cw = FrameWriter::new(send);
    let mut cr = FrameReader::new(recv, 1 << 20);
    let token = fx.identities.mint("alice").unwrap();
    cw.send(&Frame::Hello(Hello {
        version: 1,
        ..hello(&token)
    }))
    .await
    .unwrap();
    match cr.next().await.unwrap() {
        Some(Frame::Welcome(w)) => assert_eq!(w.version, 1),
        other => panic!("expected Welcome, got {other:?}"),
    }
    let (send, recv) = conn1.open_bi().await.unwrap();
    let (mut w, mut r) = (FrameWriter::new(send), FrameReader::new(recv, 1 << 20));
    ping_nowhere(&mut w, 1);
    w.flush().await.unwrap();
    let frames = until_close(&mut r).await;
    assert_eq!(status_of(&frames), Some(404), "{frames:?}");
    let end = tokio::time::timeout(Duration::from_secs(10), r.next()).await;
    assert!(
        matches!(end, Ok(Ok(None))),
        "a version-1 stream must end after its exchange: {end:?}"
    );
    fx.broker.shutdown().await;
}
