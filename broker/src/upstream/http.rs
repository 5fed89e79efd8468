//! Streamable HTTP upstreams (both MCP revisions).
//!
//! The broker calls the upstream with the target's own service credential,
//! never the client's token, and with MCP headers it derived itself. JSON
//! and SSE answers both become a message stream; the upstream's
//! `Mcp-Session-Id` stays inside the broker.

use std::time::Duration;

use bytes::Bytes;
use hoop_proto::ResponseBody;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};

use super::{sse, Outbound, UpstreamError, UpstreamMessage, UpstreamReply, UpstreamSession};

const SESSION_HEADER: &str = "mcp-session-id";

pub struct HttpUpstream {
    client: reqwest::Client,
    url: reqwest::Url,
    /// `Bearer <token>`, prepared once; marked sensitive so it never prints.
    authorization: Option<HeaderValue>,
    timeout_secs: u64,
}

impl HttpUpstream {
    pub fn new(url: &str, credential: Option<String>, timeout_secs: u64) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(url)?;
        let authorization = credential
            .map(|c| {
                let mut v = HeaderValue::from_str(&format!("Bearer {c}")).map_err(|_| {
                    anyhow::anyhow!("service credential holds characters not allowed in a header")
                })?;
                v.set_sensitive(true);
                Ok::<_, anyhow::Error>(v)
            })
            .transpose()?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            client,
            url,
            authorization,
            timeout_secs,
        })
    }

    fn base_headers(&self, accept: &'static str) -> HeaderMap {
        let mut h = HeaderMap::with_capacity(6);
        h.insert(ACCEPT, HeaderValue::from_static(accept));
        if let Some(a) = &self.authorization {
            h.insert(AUTHORIZATION, a.clone());
        }
        h
    }

    pub async fn post(&self, out: Outbound<'_>) -> Result<UpstreamReply, UpstreamError> {
        let mut headers = self.base_headers("application/json, text/event-stream");
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (k, v) in &out.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| UpstreamError::Protocol(format!("bad header name {k}")))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| UpstreamError::Protocol(format!("bad value for header {k}")))?;
            headers.insert(name, value);
        }
        if let Some(UpstreamSession::Http(id)) = out.session {
            insert_session(&mut headers, id)?;
        }
        let req = self
            .client
            .post(self.url.clone())
            .headers(headers)
            .body(out.body);
        self.exchange(req).await
    }

    pub async fn listen(
        &self,
        session: &str,
        version: Option<&str>,
        last_event_id: Option<&str>,
    ) -> Result<UpstreamReply, UpstreamError> {
        let mut headers = self.base_headers("text/event-stream");
        insert_session(&mut headers, session)?;
        insert_opt(&mut headers, "mcp-protocol-version", version)?;
        insert_opt(&mut headers, "last-event-id", last_event_id)?;
        self.exchange(self.client.get(self.url.clone()).headers(headers))
            .await
    }

    pub async fn end_session(&self, session: &str, version: Option<&str>) {
        let mut headers = self.base_headers("application/json");
        if insert_session(&mut headers, session).is_err()
            || insert_opt(&mut headers, "mcp-protocol-version", version).is_err()
        {
            return;
        }
        let req = self.client.delete(self.url.clone()).headers(headers);
        if let Err(e) = tokio::time::timeout(Duration::from_secs(5), req.send()).await {
            tracing::debug!("upstream DELETE did not finish: {e}");
        }
    }

    async fn exchange(&self, req: reqwest::RequestBuilder) -> Result<UpstreamReply, UpstreamError> {
        let resp = tokio::time::timeout(Duration::from_secs(self.timeout_secs), req.send())
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout_secs))?
            .map_err(|e| UpstreamError::Unavailable(without_url(e)))?;
        let status = resp.status().as_u16();
        let session = resp
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|s| UpstreamSession::Http(s.into()));
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.starts_with("text/event-stream") {
            return Ok(UpstreamReply {
                status,
                body: ResponseBody::EventStream,
                messages: sse::messages(resp.bytes_stream()),
                session,
            });
        }
        let body = tokio::time::timeout(Duration::from_secs(self.timeout_secs), read_capped(resp))
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout_secs))??;
        if body.iter().all(u8::is_ascii_whitespace) {
            let mut reply = UpstreamReply::empty(status);
            reply.session = session;
            return Ok(reply);
        }
        if !content_type.starts_with("application/json") {
            return Err(UpstreamError::Protocol(format!(
                "HTTP {status} with content type {content_type:?}: {}",
                snippet(&body)
            )));
        }
        Ok(UpstreamReply {
            status,
            body: ResponseBody::Json,
            messages: Box::pin(futures::stream::once(async move {
                Ok(UpstreamMessage {
                    event_id: None,
                    body,
                })
            })),
            session,
        })
    }
}

/// Largest JSON answer read from an upstream; past it the call fails
/// instead of the broker buffering without bound.
const MAX_JSON_BODY: usize = 64 * 1024 * 1024;

async fn read_capped(mut resp: reqwest::Response) -> Result<Bytes, UpstreamError> {
    let mut body = bytes::BytesMut::new();
    // Bounded: each chunk grows `body`, and past the cap the loop ends.
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| UpstreamError::Unavailable(without_url(e)))?
    {
        if body.len() + chunk.len() > MAX_JSON_BODY {
            return Err(UpstreamError::Protocol(format!(
                "the answer is larger than {} MiB",
                MAX_JSON_BODY / (1024 * 1024)
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn insert_session(h: &mut HeaderMap, id: &str) -> Result<(), UpstreamError> {
    let v = HeaderValue::from_str(id)
        .map_err(|_| UpstreamError::Protocol("upstream session id is not a valid header".into()))?;
    h.insert(SESSION_HEADER, v);
    Ok(())
}

fn insert_opt(h: &mut HeaderMap, name: &'static str, v: Option<&str>) -> Result<(), UpstreamError> {
    if let Some(v) = v {
        let v = HeaderValue::from_str(v)
            .map_err(|_| UpstreamError::Protocol(format!("bad value for header {name}")))?;
        h.insert(name, v);
    }
    Ok(())
}

/// reqwest errors name the URL; keep the cause, which says what went wrong.
fn without_url(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

fn snippet(body: &Bytes) -> String {
    let end = body.len().min(200);
    String::from_utf8_lossy(&body[..end]).into_owned()
}
