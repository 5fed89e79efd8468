//! Stdio upstreams: MCP over a child process's stdin/stdout.
//!
//! Handshake-era sessions get a child of their own (an `initialize` starts
//! it, the end of the session reaps it). Stateless 2026-07-28 requests share
//! a small pool; there, several identities use one child, so request ids and
//! progress tokens are rewritten to broker-chosen ones, answers are routed by
//! those alone, and nothing a client sends without a request of its own
//! (responses, notifications) reaches a shared child.
//! Every child runs in its own process group so that wrappers such as `npx`
//! are reaped together with the server they start, and gets a clean
//! environment: only what the config names, never the broker's own secrets.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use hoop_proto::ResponseBody;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, LinesCodec};

use super::{Outbound, UpstreamError, UpstreamMessage, UpstreamReply, UpstreamSession};
use crate::mcp::message::{McpMessage, MessageKind};

/// Environment variable through which a stdio server receives the target's
/// service credential.
pub const CREDENTIAL_ENV: &str = "HOOP_UPSTREAM_TOKEN";

/// Variables a child inherits from the broker; everything else comes from
/// the target's `env` table. The broker's environment may hold other
/// targets' credentials, so it is never passed on whole.
const INHERITED_ENV: &[&str] = &[
    "PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "LOGNAME", "TZ",
];

/// Longest line accepted from a child (one JSON-RPC message).
const MAX_LINE: usize = 64 * 1024 * 1024;
/// Server-initiated messages kept while no stream can take them.
const MAX_BACKLOG: usize = 256;
/// Messages queued per request before a shared child's reader drops them
/// rather than wait for one slow client.
const ROUTE_QUEUE: usize = 64;

type Tx = mpsc::Sender<Result<UpstreamMessage, UpstreamError>>;

struct ChildSpec {
    target: String,
    command: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    credential: Option<String>,
}

pub struct StdioUpstream {
    spec: Arc<ChildSpec>,
    pool: tokio::sync::Mutex<Vec<Arc<StdioChild>>>,
    pool_size: usize,
    next: AtomicUsize,
    idle_timeout: Duration,
}

impl StdioUpstream {
    pub fn new(
        target: &str,
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        credential: Option<String>,
        pool_size: usize,
        timeout_secs: u64,
    ) -> Self {
        Self {
            spec: Arc::new(ChildSpec {
                target: target.to_owned(),
                command,
                args,
                env,
                credential,
            }),
            pool: tokio::sync::Mutex::new(Vec::new()),
            pool_size: pool_size.max(1),
            next: AtomicUsize::new(0),
            idle_timeout: Duration::from_secs(timeout_secs.max(1)),
        }
    }

    pub async fn post(&self, out: Outbound<'_>) -> Result<UpstreamReply, UpstreamError> {
        let msg = out.message;
        let (child, new_session) = match out.session {
            Some(UpstreamSession::Stdio(c)) => (c.clone(), false),
            Some(UpstreamSession::Http(_)) => {
                return Err(UpstreamError::Protocol(
                    "HTTP session on a stdio target".into(),
                ))
            }
            None if msg.is_method("initialize") => (StdioChild::spawn(&self.spec, false)?, true),
            None if msg.kind != MessageKind::Request => {
                // Without a session a response or notification has no child
                // of its own, and a shared child's traffic is not the
                // caller's to answer or cancel.
                tracing::debug!(target = %self.spec.target, method = ?msg.method,
                    "not forwarding a sessionless notification or response to a shared child");
                return Ok(UpstreamReply::empty(202));
            }
            None => (self.pooled().await?, false),
        };
        let mut reply = match msg.kind {
            MessageKind::Request => child.request(msg, out.body, self.idle_timeout).await?,
            MessageKind::Notification | MessageKind::Response => {
                child.write(out.body).await?;
                UpstreamReply::empty(202)
            }
        };
        if new_session {
            reply.session = Some(UpstreamSession::Stdio(child));
        }
        Ok(reply)
    }

    async fn pooled(&self) -> Result<Arc<StdioChild>, UpstreamError> {
        let mut pool = self.pool.lock().await;
        pool.retain(|c| c.alive.load(Ordering::Acquire));
        if pool.len() < self.pool_size {
            let c = StdioChild::spawn(&self.spec, true)?;
            pool.push(c.clone());
            return Ok(c);
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % pool.len();
        Ok(pool[i].clone())
    }
}

/// One running MCP server process.
pub struct StdioChild {
    target: String,
    writer: mpsc::Sender<Bytes>,
    routes: Mutex<Routes>,
    /// A pooled child serves many identities: ids and progress tokens are
    /// rewritten, and nothing is routed by guesswork.
    shared: bool,
    next_id: AtomicU64,
    alive: AtomicBool,
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

#[derive(Default)]
struct Routes {
    pending: HashMap<String, Pending>,
    /// Keys of in-flight requests, oldest first.
    order: Vec<String>,
    /// progress token (as JSON text) → pending key.
    progress: HashMap<String, String>,
    listen: Option<Tx>,
    backlog: VecDeque<UpstreamMessage>,
}

struct Pending {
    tx: Tx,
    /// The client's own id and progress token, where the wire carries
    /// broker-chosen ones (shared children).
    original_id: Option<Value>,
    original_token: Option<Value>,
    progress_key: Option<String>,
}

impl Routes {
    fn remove(&mut self, key: &str) -> Option<Pending> {
        let p = self.pending.remove(key)?;
        self.order.retain(|k| k != key);
        if let Some(pk) = &p.progress_key {
            self.progress.remove(pk);
        }
        Some(p)
    }
}

/// Just enough of a message to route it.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    params: Option<EnvelopeParams>,
}

#[derive(Deserialize)]
struct EnvelopeParams {
    #[serde(default, rename = "progressToken")]
    progress_token: Option<Value>,
    #[serde(default, rename = "_meta")]
    meta: Option<EnvelopeMeta>,
}

#[derive(Deserialize)]
struct EnvelopeMeta {
    /// 2026-07-28 `subscriptions/listen` frames carry the listen request's
    /// id here (the id the child saw: the broker's own on a shared child).
    #[serde(default, rename = "io.modelcontextprotocol/subscriptionId")]
    subscription_id: Option<Value>,
}

const SUBSCRIPTION_ID_META: &str = "io.modelcontextprotocol/subscriptionId";

impl StdioChild {
    fn spawn(spec: &ChildSpec, shared: bool) -> Result<Arc<Self>, UpstreamError> {
        let mut cmd = tokio::process::Command::new(&spec.command);
        cmd.args(&spec.args)
            .env_clear()
            .envs(
                INHERITED_ENV
                    .iter()
                    .filter_map(|k| Some((*k, std::env::var_os(k)?))),
            )
            .envs(&spec.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(c) = &spec.credential {
            cmd.env(CREDENTIAL_ENV, c);
        }
        #[cfg(unix)]
        cmd.process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            UpstreamError::Unavailable(format!(
                "cannot start {:?} for target {}: {e}",
                spec.command, spec.target
            ))
        })?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(UpstreamError::Unavailable(
                "child has no stdio pipes".into(),
            ));
        };
        let pid = child.id();
        let (writer, mut lines_out) = mpsc::channel::<Bytes>(64);
        let (stop_tx, stop_rx) = oneshot::channel();
        let this = Arc::new(Self {
            target: spec.target.clone(),
            writer,
            routes: Mutex::new(Routes::default()),
            shared,
            next_id: AtomicU64::new(1),
            alive: AtomicBool::new(true),
            stop: Mutex::new(Some(stop_tx)),
        });
        tracing::debug!(target = %spec.target, ?pid, shared, "started stdio upstream");

        tokio::spawn(async move {
            while let Some(line) = lines_out.recv().await {
                if stdin.write_all(&line).await.is_err() || stdin.write_all(b"\n").await.is_err() {
                    break;
                }
                if stdin.flush().await.is_err() {
                    break;
                }
            }
        });

        let target = spec.target.clone();
        tokio::spawn(async move {
            let mut lines = FramedRead::new(stderr, LinesCodec::new_with_max_length(64 * 1024));
            // Ends when the child closes stderr; skips over-long lines.
            while let Some(line) = lines.next().await {
                if let Ok(line) = line {
                    tracing::debug!(target = %target, "upstream stderr: {line}");
                }
            }
        });

        let weak = Arc::downgrade(&this);
        tokio::spawn(async move {
            // Whatever ends this task (EOF, a bad line, a panic), the child
            // is marked gone and its waiting requests are answered.
            let _exit = ExitGuard(weak.clone());
            let mut lines = FramedRead::new(stdout, LinesCodec::new_with_max_length(MAX_LINE));
            while let Some(line) = lines.next().await {
                let Some(child) = weak.upgrade() else { break };
                match line {
                    Ok(line) if line.trim().is_empty() => {}
                    Ok(line) => child.route(Bytes::from(line)).await,
                    Err(e) => {
                        tracing::warn!(target = %child.target, "stdio upstream sent an unreadable line ({e}); stopping it");
                        child.terminate();
                        break;
                    }
                }
            }
        });

        tokio::spawn(reap(child, pid, stop_rx));
        Ok(this)
    }

    async fn write(&self, line: Bytes) -> Result<(), UpstreamError> {
        if !self.alive.load(Ordering::Acquire) {
            return Err(self.gone());
        }
        self.writer.send(line).await.map_err(|_| self.gone())
    }

    fn gone(&self) -> UpstreamError {
        UpstreamError::Unavailable(format!(
            "the stdio server of target {} has exited",
            self.target
        ))
    }

    async fn request(
        self: &Arc<Self>,
        msg: &McpMessage,
        body: Bytes,
        idle_timeout: Duration,
    ) -> Result<UpstreamReply, UpstreamError> {
        let (tx, rx) = mpsc::channel(ROUTE_QUEUE);
        let original_token = msg.progress_token().cloned();
        let (key, line, progress_key) = if self.shared {
            let n = self.next_id.fetch_add(1, Ordering::Relaxed);
            let wire = Value::from(n);
            let mut v = msg.value.clone();
            v["id"] = wire.clone();
            let token = original_token
                .as_ref()
                .map(|_| Value::from(format!("hoop-{n}")));
            if let Some(t) = &token {
                if let Some(meta) = v
                    .pointer_mut("/params/_meta")
                    .and_then(Value::as_object_mut)
                {
                    meta.insert("progressToken".into(), t.clone());
                }
            }
            let line = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
            (wire.to_string(), line, token.map(|t| t.to_string()))
        } else {
            let key = msg.id.as_ref().map(Value::to_string).unwrap_or_default();
            (key, body, original_token.as_ref().map(Value::to_string))
        };
        {
            let mut r = self.lock();
            if let Some(pk) = &progress_key {
                r.progress.insert(pk.clone(), key.clone());
            }
            r.order.push(key.clone());
            r.pending.insert(
                key.clone(),
                Pending {
                    tx,
                    original_id: self.shared.then(|| msg.id.clone()).flatten(),
                    original_token: if self.shared { original_token } else { None },
                    progress_key,
                },
            );
        }
        let guard = PendingGuard {
            child: Arc::downgrade(self),
            key: key.clone(),
        };
        if let Err(e) = self.write(line).await {
            self.lock().remove(&key);
            return Err(e);
        }
        Ok(UpstreamReply {
            status: 200,
            body: ResponseBody::EventStream,
            messages: receiver_stream(rx, Some(guard), Some(idle_timeout)),
            session: None,
        })
    }

    /// A stream for server-initiated messages that relate to no request.
    pub fn listen(&self) -> UpstreamReply {
        let mut r = self.lock();
        let (tx, rx) = mpsc::channel(ROUTE_QUEUE + r.backlog.len());
        while let Some(m) = r.backlog.pop_front() {
            // Room was made for the whole backlog above.
            let _ = tx.try_send(Ok(m));
        }
        r.listen = Some(tx);
        UpstreamReply {
            status: 200,
            body: ResponseBody::EventStream,
            messages: receiver_stream(rx, None, None),
            session: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        // A poisoned lock only means another task panicked mid-update; the
        // routing table is still usable.
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn route(&self, line: Bytes) {
        // Only a JSON object is a JSON-RPC message (serde would also read an
        // array into the envelope).
        let env: Envelope = match line.trim_ascii_start().first() {
            Some(b'{') => match serde_json::from_slice(&line) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(target = %self.target, "stdio upstream sent non-JSON-RPC output: {e}");
                    return;
                }
            },
            _ => {
                tracing::warn!(target = %self.target, "stdio upstream sent a line that is not a JSON object");
                return;
            }
        };
        let msg = UpstreamMessage {
            event_id: None,
            body: line,
        };
        let subscription = env
            .params
            .as_ref()
            .and_then(|p| p.meta.as_ref())
            .and_then(|m| m.subscription_id.as_ref())
            .map(Value::to_string);
        let (tx, msg) = {
            let mut r = self.lock();
            let listen_frame = subscription
                .and_then(|k| r.pending.get(&k))
                .map(|p| (p.tx.clone(), p.original_id.clone()));
            match (&env.method, &env.id, listen_frame) {
                // A response: goes to the request that asked, and ends it.
                (None, Some(id), _) => {
                    let Some(p) = r.remove(&id.to_string()) else {
                        tracing::debug!(target = %self.target, "response to an unknown or abandoned request");
                        return;
                    };
                    let msg = match p.original_id {
                        Some(orig) => rewrite(msg, |v| {
                            if let Some(o) = v.as_object_mut() {
                                o.insert("id".into(), orig);
                            }
                        }),
                        None => msg,
                    };
                    (Some(p.tx), msg)
                }
                // Progress goes to the request whose token it carries.
                (Some(m), None, _) if m == "notifications/progress" => {
                    let found = env
                        .params
                        .as_ref()
                        .and_then(|p| p.progress_token.as_ref())
                        .and_then(|t| r.progress.get(&t.to_string()))
                        .and_then(|k| r.pending.get(k))
                        .map(|p| (p.tx.clone(), p.original_token.clone()));
                    match found {
                        Some((tx, Some(orig))) => (
                            Some(tx),
                            rewrite(msg, |v| {
                                if let Some(p) = v.get_mut("params").and_then(Value::as_object_mut)
                                {
                                    p.insert("progressToken".into(), orig);
                                }
                            }),
                        ),
                        Some((tx, None)) => (Some(tx), msg),
                        None => (self.unrelated(&mut r), msg),
                    }
                }
                // Frames of a 2026-07-28 listen stream go to the listen
                // request they name, with the client's own id put back.
                (Some(_), None, Some((tx, original_id))) => match original_id {
                    Some(orig) => (
                        Some(tx),
                        rewrite(msg, |v| {
                            if let Some(m) = v
                                .pointer_mut("/params/_meta")
                                .and_then(Value::as_object_mut)
                            {
                                m.insert(SUBSCRIPTION_ID_META.into(), orig);
                            }
                        }),
                    ),
                    None => (Some(tx), msg),
                },
                // Other notifications and server requests (sampling,
                // elicitation, roots): newest in-flight request, else the
                // listen stream, else held until one opens.
                _ => (self.unrelated(&mut r), msg),
            }
        };
        match tx {
            // A shared child's reader must not wait for any one client.
            Some(tx) if self.shared => {
                if tx.try_send(Ok(msg)).is_err() {
                    tracing::warn!(target = %self.target, "a client is not reading; dropped a message for it");
                }
            }
            Some(tx) => {
                let _ = tx.send(Ok(msg)).await;
            }
            None if self.shared => {
                tracing::debug!(target = %self.target, "dropped a server message that belongs to no request");
            }
            None => {
                let mut r = self.lock();
                if r.backlog.len() >= MAX_BACKLOG {
                    r.backlog.pop_front();
                    tracing::warn!(target = %self.target, "dropping an undeliverable server message");
                }
                r.backlog.push_back(msg);
            }
        }
    }

    /// Where a message that answers no request goes. On a shared child
    /// there is no telling whose it is, so it goes nowhere.
    fn unrelated(&self, r: &mut Routes) -> Option<Tx> {
        if self.shared {
            return None;
        }
        if let Some(p) = r.order.last().and_then(|k| r.pending.get(k)) {
            return Some(p.tx.clone());
        }
        r.listen.as_ref().filter(|t| !t.is_closed()).cloned()
    }

    fn exited(&self) {
        self.alive.store(false, Ordering::Release);
        let pending: Vec<Pending> = {
            let mut r = self.lock();
            r.order.clear();
            r.progress.clear();
            r.listen = None;
            r.pending.drain().map(|(_, p)| p).collect()
        };
        for p in pending {
            let _ = p.tx.try_send(Err(self.gone()));
        }
        tracing::debug!(target = %self.target, "stdio upstream exited");
    }

    /// Stops the process group; the reaper collects the exit status.
    pub fn terminate(&self) {
        let stop = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
    }
}

impl Drop for StdioChild {
    fn drop(&mut self) {
        self.terminate();
    }
}

struct ExitGuard(Weak<StdioChild>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.upgrade() {
            c.exited();
        }
    }
}

/// Re-serializes a message after changing it (ids and tokens on shared
/// children); left as it was when it does not parse.
fn rewrite(msg: UpstreamMessage, f: impl FnOnce(&mut Value)) -> UpstreamMessage {
    match serde_json::from_slice::<Value>(&msg.body) {
        Ok(mut v) => {
            f(&mut v);
            UpstreamMessage {
                event_id: None,
                body: Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
            }
        }
        Err(_) => msg,
    }
}

/// Removes an abandoned request's route when its stream is dropped (the
/// client went away), so late answers are discarded instead of queued; on
/// a shared child, where closing the stream is how a 2026-07-28 client
/// cancels, the child is told to stop too.
struct PendingGuard {
    child: Weak<StdioChild>,
    key: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let Some(c) = self.child.upgrade() else {
            return;
        };
        let abandoned = c.lock().remove(&self.key).is_some();
        if abandoned && c.shared {
            let cancel = format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{},"reason":"the client went away"}}}}"#,
                self.key
            );
            let _ = c.writer.try_send(Bytes::from(cancel));
        }
    }
}

/// A receiver as a message stream; with `idle`, a silence that long ends it
/// with a timeout error.
fn receiver_stream(
    rx: mpsc::Receiver<Result<UpstreamMessage, UpstreamError>>,
    guard: Option<PendingGuard>,
    idle: Option<Duration>,
) -> super::MessageStream {
    Box::pin(futures::stream::unfold(
        (rx, guard, false),
        move |(mut rx, guard, ended)| async move {
            if ended {
                return None;
            }
            let next = match idle {
                Some(d) => match tokio::time::timeout(d, rx.recv()).await {
                    Ok(m) => m,
                    Err(_) => {
                        return Some((Err(UpstreamError::Timeout(d.as_secs())), (rx, guard, true)))
                    }
                },
                None => rx.recv().await,
            };
            next.map(|m| (m, (rx, guard, false)))
        },
    ))
}

/// Waits for the child to exit, or for a stop request: then SIGTERM to the
/// whole group, SIGKILL after a grace period, and reap.
async fn reap(mut child: tokio::process::Child, pid: Option<u32>, stop: oneshot::Receiver<()>) {
    tokio::select! {
        _ = child.wait() => return,
        _ = stop => {}
    }
    signal_group(pid, nix::sys::signal::Signal::SIGTERM);
    if tokio::time::timeout(Duration::from_secs(2), child.wait())
        .await
        .is_err()
    {
        signal_group(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = child.kill().await;
    }
}

fn signal_group(pid: Option<u32>, sig: nix::sys::signal::Signal) {
    #[cfg(unix)]
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), sig);
    }
}
