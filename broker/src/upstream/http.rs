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
/// redirect layer parses the URL again on every request). The broker does
/// not follow an upstream's redirects: the service credential must go only
/// where the config says, so a redirect is an error that names where the
/// upstream pointed. Proxy environment variables are not used either.
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
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            anyhow::bail!(
                "upstream url {url:?} carries a user name or password: put the service credential in the target's `credential` instead"
            );
        }
        for var in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            if std::env::var_os(var).is_some() {
                tracing::warn!(
                    "{var} is set, but the broker connects to upstream MCP servers directly: {url} must be reachable without a proxy"
                );
                break;
            }
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
        crate::crypto::install_crypto_provider();
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
        if resp.status().is_redirection() {
            let to = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("(no Location)");
            return Err(UpstreamError::Protocol(format!(
                "HTTP {status}: the upstream redirects to {to}; the broker does not follow redirects (the service credential goes only where the config says): set the target's url to where it should go"
            )));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::message::McpMessage;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot HTTP server on loopback that answers the first request
    /// with `answer` (raw bytes), and reports the request it read.
    async fn answering(answer: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            // Bounded: until the end of the (small) request, or 64 reads.
            for _ in 0..64 {
                let n = tcp.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
                if n == 0 || seen.ends_with(b"}") {
                    break;
                }
            }
            tcp.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&seen).into_owned()
        });
        (url, task)
    }

    async fn post(upstream: &HttpUpstream) -> Result<UpstreamReply, UpstreamError> {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let msg = McpMessage::parse(body).unwrap();
        upstream
            .post(Outbound {
                message: &msg,
                body: Bytes::from_static(body),
                headers: vec![("mcp-method".into(), "ping".into())],
                session: None,
            })
            .await
    }

    #[tokio::test]
    async fn a_redirect_is_an_error_that_says_where_it_pointed() {
        let (url, server) = answering(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:9/mcp/\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
        let upstream = HttpUpstream::new(&url, Some("s3cret".into()), 10).unwrap();
        let err = post(&upstream).await.err().expect("a redirect must fail");
        let text = err.to_string();
        assert!(
            text.contains("307") && text.contains("http://127.0.0.1:9/mcp/"),
            "{text}"
        );
        // The request carried the service credential and the derived header.
        let seen = server.await.unwrap().to_ascii_lowercase();
        assert!(seen.contains("authorization: bearer s3cret"), "{seen}");
        assert!(seen.contains("mcp-method: ping"), "{seen}");
    }

    #[tokio::test]
    async fn a_json_answer_comes_back_as_one_message() {
        let (url, _server) = answering(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 36\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}",
        )
        .await;
        let upstream = HttpUpstream::new(&url, None, 10).unwrap();
        let reply = post(&upstream).await.unwrap();
        assert_eq!(reply.status, 200);
        let messages: Vec<_> = futures::StreamExt::collect(reply.messages).await;
        assert_eq!(messages.len(), 1);
        assert_eq!(
            messages[0].as_ref().unwrap().body.as_ref(),
            br#"{"jsonrpc":"2.0","id":1,"result":{}}"#
        );
    }

    #[test]
    fn urls_with_credentials_or_other_schemes_are_refused() {
        for bad in [
            "http://user:pw@127.0.0.1/mcp",
            "ftp://127.0.0.1/mcp",
            "/mcp",
            "not a url",
        ] {
            assert!(HttpUpstream::new(bad, None, 10).is_err(), "{bad}");
        }
    }
}
