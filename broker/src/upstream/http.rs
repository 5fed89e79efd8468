//! Streamable HTTP upstreams (both MCP revisions).
//!
//! The broker calls the upstream with the target's own service credential,
//! never the client's token, and with MCP headers it derived itself. JSON
//! and SSE answers both become a message stream; the upstream's
//! `Mcp-Session-Id` stays inside the broker.

use std::time::Duration;

use bytes::Bytes;
use hoop_proto::ResponseBody;
use http::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, Uri};
use http_body_util::{BodyDataStream, BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::{sse, Outbound, UpstreamError, UpstreamMessage, UpstreamReply, UpstreamSession};

const SESSION_HEADER: &str = "mcp-session-id";

/// A plain hyper client rather than reqwest: this is the request path, and
/// reqwest's layers cost per call what the broker has no use for (its
/// redirect layer parses the URL again on every request; the broker never
/// follows an upstream's redirects anyway, since the service credential
/// must not travel elsewhere).
type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

pub struct HttpUpstream {
    client: UpstreamClient,
    uri: Uri,
    /// `Bearer <token>`, prepared once; marked sensitive so it never prints.
    authorization: Option<HeaderValue>,
    timeout_secs: u64,
}

impl HttpUpstream {
    pub fn new(url: &str, credential: Option<String>, timeout_secs: u64) -> anyhow::Result<Self> {
        let uri: Uri = url
            .parse()
            .map_err(|e| anyhow::anyhow!("upstream url {url:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => anyhow::bail!("upstream url {url:?} must start with http:// or https://"),
        }
        if uri.host().is_none() {
            anyhow::bail!("upstream url {url:?} names no host");
        }
        let authorization = credential
            .map(|c| {
                let mut v = HeaderValue::from_str(&format!("Bearer {c}")).map_err(|_| {
                    anyhow::anyhow!("service credential holds characters not allowed in a header")
                })?;
                v.set_sensitive(true);
                Ok::<_, anyhow::Error>(v)
            })
            .transpose()?;
        crate::run::install_crypto_provider();
        // The system's trust store only where TLS is used: a plain-http
        // upstream must not depend on the machine having CA certificates.
        let tls = if uri.scheme_str() == Some("https") {
            <rustls::ClientConfig as rustls_platform_verifier::ConfigVerifierExt>::with_platform_verifier()
                .map_err(|e| anyhow::anyhow!("cannot load the system's trusted certificates: {e}"))?
        } else {
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Self {
            client,
            uri,
            authorization,
            timeout_secs,
        })
    }

    fn base_headers(&self, accept: &'static str) -> HeaderMap {
        let mut h = HeaderMap::with_capacity(8);
        h.insert(ACCEPT, HeaderValue::from_static(accept));
        if let Some(a) = &self.authorization {
            h.insert(AUTHORIZATION, a.clone());
        }
        h
    }

    fn request(&self, method: Method, headers: HeaderMap, body: Bytes) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = headers;
        req
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
        self.exchange(self.request(Method::POST, headers, out.body))
            .await
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
        self.exchange(self.request(Method::GET, headers, Bytes::new()))
            .await
    }

    pub async fn end_session(&self, session: &str, version: Option<&str>) {
        let mut headers = self.base_headers("application/json");
        if insert_session(&mut headers, session).is_err()
            || insert_opt(&mut headers, "mcp-protocol-version", version).is_err()
        {
            return;
        }
        let req = self
            .client
            .request(self.request(Method::DELETE, headers, Bytes::new()));
        match tokio::time::timeout(Duration::from_secs(5), req).await {
            Ok(Ok(resp)) => {
                // Read the (small) answer so the connection can serve again.
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    Limited::new(resp.into_body(), 64 * 1024).collect(),
                )
                .await;
            }
            Ok(Err(e)) => tracing::debug!("upstream DELETE failed: {}", causes(&e)),
            Err(_) => tracing::debug!("upstream DELETE did not finish within 5 s"),
        }
    }

    async fn exchange(&self, req: Request<Full<Bytes>>) -> Result<UpstreamReply, UpstreamError> {
        let resp = tokio::time::timeout(
            Duration::from_secs(self.timeout_secs),
            self.client.request(req),
        )
        .await
        .map_err(|_| UpstreamError::Timeout(self.timeout_secs))?
        .map_err(|e| UpstreamError::Unavailable(causes(&e)))?;
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
                messages: sse::messages(BodyDataStream::new(resp.into_body())),
                session,
            });
        }
        let body = tokio::time::timeout(
            Duration::from_secs(self.timeout_secs),
            read_capped(resp.into_body()),
        )
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

async fn read_capped(body: hyper::body::Incoming) -> Result<Bytes, UpstreamError> {
    match Limited::new(body, MAX_JSON_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(UpstreamError::Protocol(format!(
                "the answer is larger than {} MiB",
                MAX_JSON_BODY / (1024 * 1024)
            )))
        }
        Err(e) => Err(UpstreamError::Unavailable(causes(e.as_ref()))),
    }
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

/// An error and its causes, outermost first: hyper's own message ("client
/// error (Connect)") says little without what lies under it.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    // Bounded: error chains are short, and this stops at eight.
    for _ in 0..8 {
        let Some(s) = src else { break };
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
