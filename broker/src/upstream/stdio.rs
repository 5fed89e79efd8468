//! Stdio upstreams: MCP over a child process's stdin/stdout.
//!
//! Handshake-era sessions get a child of their own (an `initialize` starts
//! it, the end of the session reaps it); stateless 2026-07-28 requests share
//! a small pool, with JSON-RPC ids rewritten so clients cannot collide.
//! Every child runs in its own process group so that wrappers such as `npx`
//! are reaped together with the server they start.

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
use crate::pipeline::message::MessageKind;

/// Environment variable through which a stdio server receives the target's
/// service credential.
pub const CREDENTIAL_ENV: &str = "HOOP_UPSTREAM_TOKEN";

/// Longest line accepted from a child (one JSON-RPC message).
const MAX_LINE: usize = 64 * 1024 * 1024;
/// Server-initiated messages kept while no stream can take them.
const MAX_BACKLOG: usize = 256;

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
}

impl StdioUpstream {
    pub fn new(
        target: &str,
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        credential: Option<String>,
        pool_size: usize,
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
            None => (self.pooled().await?, false),
        };
        let mut reply = match msg.kind {
            MessageKind::Request => {
                child
                    .request(msg.id.as_ref(), msg.progress_token(), out.body)
                    .await?
            }
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
    /// Pooled children serve many clients, so request ids are rewritten.
    remap_ids: bool,
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
    original_id: Option<Value>,
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
}

impl StdioChild {
    fn spawn(spec: &ChildSpec, remap_ids: bool) -> Result<Arc<Self>, UpstreamError> {
        let mut cmd = tokio::process::Command::new(&spec.command);
        cmd.args(&spec.args)
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
            remap_ids,
            next_id: AtomicU64::new(1),
            alive: AtomicBool::new(true),
            stop: Mutex::new(Some(stop_tx)),
        });
        tracing::debug!(target = %spec.target, ?pid, "started stdio upstream");

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
            while let Some(Ok(line)) = lines.next().await {
                tracing::debug!(target = %target, "upstream stderr: {line}");
            }
        });

        let weak = Arc::downgrade(&this);
        tokio::spawn(async move {
            let mut lines = FramedRead::new(stdout, LinesCodec::new_with_max_length(MAX_LINE));
            while let Some(line) = lines.next().await {
                let Some(child) = weak.upgrade() else { break };
                match line {
                    Ok(line) if line.trim().is_empty() => {}
                    Ok(line) => child.route(Bytes::from(line)).await,
                    Err(e) => {
                        tracing::warn!(target = %child.target, "stdio upstream sent a bad line: {e}");
                        break;
                    }
                }
            }
            if let Some(child) = weak.upgrade() {
                child.exited();
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
        id: Option<&Value>,
        progress_token: Option<&Value>,
        body: Bytes,
    ) -> Result<UpstreamReply, UpstreamError> {
        let (tx, rx) = mpsc::channel(64);
        let (key, line) = if self.remap_ids {
            let wire = Value::from(self.next_id.fetch_add(1, Ordering::Relaxed));
            let mut v: Value = serde_json::from_slice(&body)
                .map_err(|e| UpstreamError::Protocol(format!("re-reading request: {e}")))?;
            v["id"] = wire.clone();
            let line = serde_json::to_vec(&v).unwrap_or_default();
            (wire.to_string(), Bytes::from(line))
        } else {
            (id.map(Value::to_string).unwrap_or_default(), body)
        };
        let progress_key = progress_token.map(Value::to_string);
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
                    original_id: self.remap_ids.then(|| id.cloned()).flatten(),
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
        let stream = tokio_stream_from(rx, guard);
        Ok(UpstreamReply {
            status: 200,
            body: ResponseBody::EventStream,
            messages: stream,
            session: None,
        })
    }

    /// A stream for server-initiated messages that relate to no request.
    pub fn listen(&self) -> UpstreamReply {
        let (tx, rx) = mpsc::channel(64);
        {
            let mut r = self.lock();
            while let Some(m) = r.backlog.pop_front() {
                if tx.try_send(Ok(m)).is_err() {
                    break;
                }
            }
            r.listen = Some(tx);
        }
        UpstreamReply {
            status: 200,
            body: ResponseBody::EventStream,
            messages: tokio_stream_from(
                rx,
                PendingGuard {
                    child: Weak::new(),
                    key: String::new(),
                },
            ),
            session: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        // A poisoned lock only means another task panicked mid-update; the
        // routing table is still usable.
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn route(&self, line: Bytes) {
        let env: Envelope = match serde_json::from_slice(&line) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(target = %self.target, "stdio upstream sent non-JSON-RPC output: {e}");
                return;
            }
        };
        let msg = UpstreamMessage {
            event_id: None,
            body: line,
        };
        let (tx, msg) = {
            let mut r = self.lock();
            match (&env.method, &env.id) {
                // A response: goes to the request that asked, and ends it.
                (None, Some(id)) => {
                    let Some(p) = r.remove(&id.to_string()) else {
                        tracing::debug!(target = %self.target, "response to an unknown or abandoned request");
                        return;
                    };
                    let msg = match p.original_id {
                        Some(orig) => restore_id(msg, orig),
                        None => msg,
                    };
                    (Some(p.tx), msg)
                }
                // Progress goes to the request whose token it carries.
                (Some(m), None) if m == "notifications/progress" => {
                    let tx = env
                        .params
                        .as_ref()
                        .and_then(|p| p.progress_token.as_ref())
                        .and_then(|t| r.progress.get(&t.to_string()))
                        .and_then(|k| r.pending.get(k))
                        .map(|p| p.tx.clone());
                    match tx {
                        Some(tx) => (Some(tx), msg),
                        None => (unrelated(&mut r), msg),
                    }
                }
                // Other notifications and server requests (sampling,
                // elicitation, roots): newest in-flight request, else the
                // listen stream, else held until one opens.
                _ => (unrelated(&mut r), msg),
            }
        };
        match tx {
            Some(tx) => {
                let _ = tx.send(Ok(msg)).await;
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

fn unrelated(r: &mut Routes) -> Option<Tx> {
    if let Some(k) = r.order.last() {
        if let Some(p) = r.pending.get(k) {
            return Some(p.tx.clone());
        }
    }
    r.listen.as_ref().filter(|t| !t.is_closed()).cloned()
}

fn restore_id(msg: UpstreamMessage, orig: Value) -> UpstreamMessage {
    match serde_json::from_slice::<Value>(&msg.body) {
        Ok(mut v) => {
            v["id"] = orig;
            UpstreamMessage {
                event_id: None,
                body: Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
            }
        }
        Err(_) => msg,
    }
}

/// Removes an abandoned request's route when its stream is dropped (the
/// client went away), so late answers are discarded instead of queued.
struct PendingGuard {
    child: Weak<StdioChild>,
    key: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Some(c) = self.child.upgrade() {
            c.lock().remove(&self.key);
        }
    }
}

fn tokio_stream_from(
    rx: mpsc::Receiver<Result<UpstreamMessage, UpstreamError>>,
    guard: PendingGuard,
) -> super::MessageStream {
    Box::pin(futures::stream::unfold(
        (rx, guard),
        |(mut rx, guard)| async move { rx.recv().await.map(|m| (m, (rx, guard))) },
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
