//! The request path, top to bottom, in one place.
//!
//! Every MCP message from a client passes these layers in this order; each
//! is a thin call into its own module, where the concern lives and is
//! tested on its own:
//!
//! 1. **identity** (`crate::identity`): the caller's token is still valid
//!    and the caller is not revoked. First, and on every exchange of every
//!    kind, because the stateless revision has no session to end when a
//!    token lapses or a person is cut off.
//! 2. **parse** (`message`): one strict JSON-RPC parse into the canonical
//!    form every later layer reads. Before anything judges the message,
//!    because nothing may judge bytes that the upstream would read
//!    differently.
//! 3. **session** (`session`): a presented `Mcp-Session-Id` must be the
//!    caller's own, on this target. Before policy, so a stolen handle
//!    reaches nothing. The same holds for task ids and `input_required`
//!    request states (`handles`), which are also recorded, as the answers
//!    stream by, for the identity that received them.
//! 4. **headers** (`headers`): mirrored HTTP headers must agree with the
//!    body (-32020 otherwise). Before policy, so policy judges the body and
//!    only the body.
//! 5. **policy** (`crate::policy`): allow, deny or hold for approval. A
//!    `tasks/get|result|update` is judged again as the call that started
//!    the task, so a task outlives no policy change that denies its tool.
//! 6. **approval** (`crate::approval`): held calls wait for a decision.
//! 7. **audit** (`crate::audit`), request side: recorded before forwarding;
//!    if it cannot be recorded it is not forwarded.
//! 8. **upstream** (`crate::upstream`): the canonical bytes, headers derived
//!    again by the broker, the target's service credential.
//! 9. **masking** (`crate::masking`): every message coming back, before the
//!    client sees it.
//! 10. **audit**, response side: what was delivered, as masked.

pub mod catalog;
pub mod drift;
pub mod error;
pub mod handles;
pub mod headers;
pub mod message;
pub mod session;
pub mod target;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use hoop_proto::{McpHeaders, OpenStream, ResponseBody, ResponseHead, StreamKind};
use serde_json::Value;

use crate::approval::Approvals;
use crate::audit::Audit;
use crate::identity::revocation::RevocationList;
use crate::identity::{now_unix, Identity};
use crate::masking::Masking;
use crate::policy::{Decision, ListingRequest, Policy, PolicyRequest};
use crate::upstream::{Outbound, Upstream, UpstreamError, UpstreamMessage};
use error::{codes, McpError};
use handles::HandleTable;
use message::{McpMessage, MessageKind};
use session::{BrokerSession, SessionTable};
use target::{Revision, Target, KNOWN_VERSIONS};

/// Who is calling: the verified identity of one QUIC connection.
#[derive(Debug)]
pub struct Caller {
    pub identity: Identity,
    /// When the caller's token expires (Unix seconds); moved on by a
    /// successful re-authentication on the control stream.
    pub expires_at: AtomicU64,
    pub remote: SocketAddr,
}

impl Caller {
    pub fn new(identity: Identity, expires_at: u64, remote: SocketAddr) -> Self {
        Self {
            identity,
            expires_at: AtomicU64::new(expires_at),
            remote,
        }
    }

    pub fn expires_at(&self) -> u64 {
        self.expires_at.load(Ordering::Relaxed)
    }
}

/// The answer to one exchange: a response head, then messages.
pub struct Reply {
    pub head: ResponseHead,
    pub messages: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, McpError>> + Send>>,
}

impl Reply {
    fn error(e: &McpError, id: Option<&Value>) -> Self {
        let body = Bytes::from(serde_json::to_vec(&e.to_response(id)).unwrap_or_default());
        Self {
            head: ResponseHead {
                status: e.http_status,
                body: ResponseBody::Json,
                session_id: None,
            },
            messages: Box::pin(futures::stream::once(async move { Ok(body) })),
        }
    }

    fn empty(status: u16) -> Self {
        Self {
            head: ResponseHead {
                status,
                body: ResponseBody::Empty,
                session_id: None,
            },
            messages: Box::pin(futures::stream::empty()),
        }
    }
}

/// The request path and the state it needs.
pub struct Pipeline {
    targets: BTreeMap<String, Arc<Target>>,
    sessions: SessionTable,
    /// Task ids and request states, bound to the identity they were issued to.
    handles: Arc<HandleTable>,
    /// Swapped whole on a reload; each message judges under one version.
    policy: std::sync::RwLock<Arc<Policy>>,
    approvals: Approvals,
    audit: Arc<Audit>,
    masking: Arc<Masking>,
    revocations: Arc<RevocationList>,
}

impl Pipeline {
    pub fn new(
        targets: BTreeMap<String, (Upstream, crate::config::DriftMode)>,
        revocations: Arc<RevocationList>,
        policy: Policy,
        drift: Arc<drift::ToolDrift>,
    ) -> Self {
        Self {
            revocations,
            targets: targets
                .into_iter()
                .map(|(n, (u, mode))| {
                    let t = Target::new(n.clone(), u).with_drift(drift.clone(), mode);
                    (n, Arc::new(t))
                })
                .collect(),
            sessions: SessionTable::default(),
            handles: Arc::new(HandleTable::default()),
            policy: std::sync::RwLock::new(Arc::new(policy)),
            approvals: Approvals,
            audit: Arc::new(Audit),
            masking: Arc::new(Masking),
        }
    }

    /// The policy in force now.
    pub fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the policy; messages already judged keep their decision.
    pub fn set_policy(&self, policy: Policy) {
        match self.policy.write() {
            Ok(mut p) => *p = Arc::new(policy),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(policy),
        }
    }

    /// The revocations in force, shared with the tunnel.
    pub fn revocations(&self) -> &Arc<RevocationList> {
        &self.revocations
    }

    pub fn target_names(&self) -> impl Iterator<Item = &str> {
        self.targets.keys().map(String::as_str)
    }

    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    /// Handles one MCP stream: an HTTP exchange of the caller's MCP client.
    pub async fn handle(
        &self,
        caller: &Arc<Caller>,
        open: OpenStream,
        body: Option<Bytes>,
    ) -> Reply {
        // 1. identity: before anything else, even the target lookup, so a
        //    caller whose token lapsed or who was revoked learns nothing.
        if caller.expires_at() <= now_unix() {
            let e = McpError::new(
                codes::TOKEN_EXPIRED,
                "your hoop token has expired: run `hoop login` (in dev: `hoop-broker dev token NAME`) and retry",
            );
            self.audit.refused(caller, &open.target, &e);
            let id = body.as_deref().and_then(McpMessage::salvage_id);
            return Reply::error(&e, id.as_ref());
        }
        if let Some(r) = self
            .revocations
            .find(&caller.identity.subject, &caller.identity.issuer)
        {
            let e = McpError::new(
                codes::REVOKED,
                format!(
                    "access revoked for {}: {} (a broker administrator can lift it with `hoop-broker unrevoke`)",
                    r.subject, r.reason
                ),
            );
            self.audit.refused(caller, &open.target, &e);
            let id = body.as_deref().and_then(McpMessage::salvage_id);
            return Reply::error(&e, id.as_ref());
        }
        if open.kind == StreamKind::Catalog {
            return self.targets_view(caller).await;
        }
        let Some(target) = self.targets.get(&open.target).cloned() else {
            let known: Vec<&str> = self.target_names().collect();
            let e = McpError::new(
                codes::INVALID_PARAMS,
                format!(
                    "no target named {:?} on this broker; targets: {}",
                    open.target,
                    known.join(", ")
                ),
            );
            return Reply::error(
                &McpError {
                    http_status: 404,
                    ..e
                },
                None,
            );
        };
        match open.kind {
            StreamKind::Post => match body {
                Some(body) => self.post(caller, target, &open.headers, body).await,
                None => Reply::error(&McpError::invalid_request("POST without a message"), None),
            },
            StreamKind::Listen => self.listen(caller, &target, &open.headers).await,
            StreamKind::EndSession => self.end_session(caller, &target, &open.headers).await,
            // Answered above, before any target is looked up.
            StreamKind::Catalog => self.targets_view(caller).await,
        }
    }

    async fn post(
        &self,
        caller: &Arc<Caller>,
        target: Arc<Target>,
        h: &McpHeaders,
        body: Bytes,
    ) -> Reply {
        // 2. parse
        let msg = match McpMessage::parse(&body) {
            Ok(m) => m,
            Err(e) => {
                self.audit.refused(caller, &target.name, &e);
                let id = match e.code {
                    codes::PARSE_ERROR => None,
                    _ => McpMessage::salvage_id(&body),
                };
                return Reply::error(&e, id.as_ref());
            }
        };
        let id = msg.id.clone();
        match self.judge(caller, &target, h, &msg).await {
            Ok(judged) => self.forward(caller, target, msg, judged).await,
            Err(e) => {
                self.audit.refused(caller, &target.name, &e);
                match msg.kind {
                    MessageKind::Request => Reply::error(&e, id.as_ref()),
                    // Notifications and responses get no JSON-RPC answer.
                    _ => Reply::empty(e.http_status),
                }
            }
        }
    }

    /// Layers 3–7: everything that may refuse the message before it leaves.
    async fn judge(
        &self,
        caller: &Arc<Caller>,
        target: &Target,
        h: &McpHeaders,
        msg: &McpMessage,
    ) -> Result<Judged, McpError> {
        // 3. session
        let session = match &h.session_id {
            Some(sid) => Some(self.sessions.get(
                sid,
                &caller.identity.subject,
                &caller.identity.issuer,
                &target.name,
            )?),
            None => None,
        };
        // 3b. handles: a task id or request state must be the caller's.
        let origin = self.handles.check(&caller.identity, &target.name, msg)?;
        // 4. headers
        let mut params = msg.name.as_deref().and_then(|n| target.param_headers(n));
        if params.is_none() && !h.params.is_empty() && msg.is_method("tools/call") {
            // Argument headers can only be checked against the tool's schema.
            target.fetch_tools().await;
            params = msg.name.as_deref().and_then(|n| target.param_headers(n));
            if params.is_none() {
                return Err(error::McpError::header_mismatch(format!(
                    "cannot check Mcp-Param-* headers: tool {:?} is not in the upstream's tool list",
                    msg.name.as_deref().unwrap_or("")
                )));
            }
        }
        headers::check(msg, h, params.as_ref())?;
        let version = protocol_version(msg, session.as_deref(), h)?;
        // 5. policy (a tool that changed since it was accepted, on a target
        //    that blocks drift, is refused first: its policy was written for
        //    what it was)
        let method = msg.method.as_deref().unwrap_or("");
        // A request named like a notification is not one: it would pass as
        // plumbing while the upstream treats it as a call.
        if msg.kind == MessageKind::Request && method.starts_with("notifications/") {
            return Err(McpError::invalid_request(
                "a notifications/* method cannot carry an id",
            ));
        }
        let name = policy_name(msg);
        if let Some(uri) = name.as_deref().filter(|_| judges_a_uri(msg)) {
            if let Some(why) = non_canonical_uri(uri) {
                return Err(McpError::new(
                    codes::DENIED,
                    format!("denied by rule builtin:non-canonical-uri: {why}; send the URI in its plain form"),
                ));
            }
        }
        if msg.is_method("completion/complete") && name.is_none() {
            return Err(McpError::invalid_params(
                "completion/complete needs a ref of type ref/prompt (with name) or ref/resource (with uri)",
            ));
        }
        let policy = self.policy();
        let decision = policy.decide(&PolicyRequest {
            identity: &caller.identity,
            target: &target.name,
            method,
            name: name.as_deref(),
            arguments: policy_arguments(msg),
        });
        if let Decision::Deny { rule, reason } = &decision {
            return Err(McpError::new(
                codes::DENIED,
                format!("denied by rule {rule}: {reason}"),
            ));
        }
        // A 2026-07-28 listen stream subscribes to resources by URI, as
        // `resources/subscribe` did: each URI is judged as that call would
        // be, so updates about a resource reach only who may read it.
        for uri in listened_resources(msg)? {
            if let Some(why) = non_canonical_uri(uri) {
                return Err(McpError::new(
                    codes::DENIED,
                    format!("denied by rule builtin:non-canonical-uri: {why}; send the URI in its plain form"),
                ));
            }
            if let Decision::Deny { rule, reason } = policy.decide(&PolicyRequest {
                identity: &caller.identity,
                target: &target.name,
                method: "resources/subscribe",
                name: Some(uri),
                arguments: None,
            }) {
                return Err(McpError::new(
                    codes::DENIED,
                    format!("denied by rule {rule}: {reason} (subscribing to {uri:?})"),
                ));
            }
        }
        if let (true, Some(tool)) = (msg.is_method("tools/call"), msg.name.as_deref()) {
            // A name that differs only in case from a tool the upstream
            // lists is refused: an upstream that matches names loosely
            // would run the listed tool under a name no rule judged.
            if let Some(real) = target.case_variant_of(tool) {
                return Err(McpError::new(
                    codes::DENIED,
                    format!(
                        "denied by rule builtin:case-variant: {tool:?} is not a tool of {}; did you mean {real:?}?",
                        target.name
                    ),
                ));
            }
            if target.drift_blocked(tool) {
                return Err(McpError::new(
                    codes::DENIED,
                    format!(
                        "denied by rule {}: tool {tool:?} changed since it was accepted; an administrator must accept it (hoop-broker tools accept --target {} --tool {tool})",
                        drift::DRIFT_RULE,
                        target.name
                    ),
                ));
            }
        }
        // Reading a task's status or result, or feeding it input, is use of
        // the tool that started it. Cancelling is not: stopping one's own
        // work stays possible after the tool is denied. An approve decision
        // does not block here: approval is for starting the work.
        if let (Some(o), false) = (&origin, msg.is_method("tasks/cancel")) {
            if let Decision::Deny { rule, reason } = policy.decide(&PolicyRequest {
                identity: &caller.identity,
                target: &target.name,
                method: &o.method,
                name: o.name.as_deref(),
                arguments: o.arguments.as_ref(),
            }) {
                return Err(McpError::new(
                    codes::DENIED,
                    format!(
                        "denied by rule {rule}: {reason} (the task was started by {} {:?})",
                        o.method,
                        o.name.as_deref().unwrap_or("")
                    ),
                ));
            }
        }
        // 6. approval
        self.approvals.hold(&decision).await?;
        // 7. audit (request)
        self.audit.request(caller, &target.name, msg, &decision)?;
        Ok(Judged {
            session,
            version,
            params,
            policy,
        })
    }

    /// Layers 8–10.
    async fn forward(
        &self,
        caller: &Arc<Caller>,
        target: Arc<Target>,
        msg: McpMessage,
        judged: Judged,
    ) -> Reply {
        let Judged {
            session,
            version,
            params,
            policy,
        } = judged;
        let id = msg.id.clone();
        // A handshake-era upstream already told us how it refuses
        // server/discover: answer from that instead of probing it again.
        if msg.is_method("server/discover") && session.is_none() {
            if let Revision::HandshakeOnly { status, error } = target.revision() {
                let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "error": error});
                return json_reply(
                    status,
                    Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
                );
            }
        }
        let opens_session = msg.is_method("initialize") && session.is_none();
        if opens_session {
            let open = self.sessions.count_for(
                &caller.identity.subject,
                &caller.identity.issuer,
                &target.name,
            );
            if open >= MAX_SESSIONS_PER_CALLER {
                let e = McpError::new(
                    codes::INVALID_REQUEST,
                    format!(
                        "too many open MCP sessions ({open}) for {} on target {}: end some (DELETE) or wait for idle ones to expire",
                        caller.identity.subject, target.name
                    ),
                );
                self.audit.refused(caller, &target.name, &e);
                return Reply::error(&e, id.as_ref());
            }
        }
        // 8. upstream
        let derived = headers::derive(&msg, version.as_deref(), params.as_ref());
        let reply = target
            .upstream
            .post(Outbound {
                message: &msg,
                body: msg.to_bytes(),
                headers: derived,
                session: session.as_ref().map(|s| &s.upstream),
            })
            .await;
        let mut reply = match reply {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(target = %target.name, "upstream call failed: {e}");
                let e = upstream_error(&target.name, &e);
                self.audit.refused(caller, &target.name, &e);
                return match msg.kind {
                    MessageKind::Request => Reply::error(&e, id.as_ref()),
                    _ => Reply::empty(e.http_status),
                };
            }
        };
        // A broker session, bound to the caller, only once the upstream
        // accepted the handshake: a failed initialize leaves nothing behind.
        let mut early = Vec::new();
        let mut new_session = None;
        if let (true, Some(up), Some(id)) = (opens_session, reply.session.take(), &id) {
            match accepted_handshake(&mut reply.messages, id, &mut early).await {
                Some(version) => {
                    let s = self.sessions.create(
                        &caller.identity.subject,
                        &caller.identity.issuer,
                        &target.name,
                        up,
                    );
                    s.set_protocol_version(&version);
                    new_session = Some(s);
                }
                None => target.upstream.end_session(&up, None).await,
            }
        }
        let head = ResponseHead {
            status: reply.status,
            body: reply.body,
            session_id: new_session.as_ref().map(|s| s.id.to_string()),
        };
        let learns = Learner::for_request(&msg, reply.status, target.clone());
        let minted = self.handles.observer(&caller.identity, &target.name, &msg);
        let task_list = msg.is_method("tasks/list").then(|| self.handles.clone());
        let in_use = session.as_ref().map(|s| s.in_use());
        let masking = self.masking.clone();
        let audit = self.audit.clone();
        let caller = caller.clone();
        let method = msg.method.clone();
        let target_name = target.name.clone();
        let drift_target = target.clone();
        // A catalog answer shows only what this caller may use, judged
        // under the policy that judged the request.
        let catalog = catalog::is_catalog(method.as_deref()).then(|| {
            let stateless = version.as_deref() == Some(STATELESS_REVISION);
            (policy, stateless)
        });
        // 9. masking and 10. audit, per message as it streams by.
        let messages = futures::stream::iter(early)
            .chain(reply.messages)
            .map(move |m| {
                let _in_use = &in_use;
                match m {
                    Ok(m) => {
                        if let Some(l) = &learns {
                            l.observe(&m);
                        }
                        // Before masking: the handle the upstream minted.
                        if let Some(h) = &minted {
                            h.observe(&m.body);
                        }
                        let mut m = masking.apply(m);
                        if let Some(h) = &task_list {
                            m.body = h.filter_task_list(m.body, &caller.identity, &target_name);
                        }
                        if let (Some((policy, stateless)), Some(method)) = (&catalog, &method) {
                            m.body = catalog::filter(m.body, method, *stateless, |kind, name| {
                                if kind == crate::policy::ItemKind::Tool
                                    && drift_target.drift_blocked(name)
                                {
                                    return crate::policy::Visibility::Hidden;
                                }
                                policy.visibility(&ListingRequest {
                                    identity: &caller.identity,
                                    target: &target_name,
                                    kind,
                                    name,
                                })
                            });
                        }
                        audit.response(&caller, &target_name, method.as_deref(), m.body.len());
                        Ok(m.body)
                    }
                    Err(e) => Err(upstream_error(&target_name, &e)),
                }
            });
        let messages = with_error_answer(messages, id);
        Reply {
            head,
            messages: Box::pin(messages),
        }
    }

    async fn listen(&self, caller: &Arc<Caller>, target: &Target, h: &McpHeaders) -> Reply {
        let Some(sid) = &h.session_id else {
            // No session: nothing server-initiated can be addressed to it.
            return Reply::empty(405);
        };
        let session = match self.sessions.get(
            sid,
            &caller.identity.subject,
            &caller.identity.issuer,
            &target.name,
        ) {
            Ok(s) => s,
            Err(e) => return Reply::error(&e, None),
        };
        let version = session.protocol_version();
        match target
            .upstream
            .listen(
                &session.upstream,
                version.as_deref(),
                h.last_event_id.as_deref(),
            )
            .await
        {
            Ok(reply) => {
                let masking = self.masking.clone();
                let audit = self.audit.clone();
                let caller = caller.clone();
                let name = target.name.clone();
                let in_use = session.in_use();
                Reply {
                    head: ResponseHead {
                        status: reply.status,
                        body: reply.body,
                        session_id: None,
                    },
                    messages: Box::pin(reply.messages.map(move |m| {
                        let _in_use = &in_use;
                        match m {
                            Ok(m) => {
                                let m = masking.apply(m);
                                audit.response(&caller, &name, None, m.body.len());
                                Ok(m.body)
                            }
                            Err(e) => Err(upstream_error(&name, &e)),
                        }
                    })),
                }
            }
            Err(e) => Reply::error(&upstream_error(&target.name, &e), None),
        }
    }

    async fn end_session(&self, caller: &Arc<Caller>, target: &Target, h: &McpHeaders) -> Reply {
        let Some(sid) = &h.session_id else {
            return Reply::error(
                &McpError::invalid_request("DELETE needs an Mcp-Session-Id"),
                None,
            );
        };
        match self.sessions.get(
            sid,
            &caller.identity.subject,
            &caller.identity.issuer,
            &target.name,
        ) {
            Ok(s) => {
                self.sessions.remove(sid);
                target
                    .upstream
                    .end_session(&s.upstream, s.protocol_version().as_deref())
                    .await;
                Reply::empty(200)
            }
            Err(e) => Reply::error(&e, None),
        }
    }

    /// Ends sessions idle for longer than `max_idle_secs` (clients that left
    /// without DELETE), reaping their upstream sessions and processes.
    pub async fn reap_idle_sessions(&self, max_idle_secs: u64) {
        for s in self.sessions.take_idle(max_idle_secs) {
            if let Some(t) = self.targets.get(&s.target) {
                t.upstream
                    .end_session(&s.upstream, s.protocol_version().as_deref())
                    .await;
            }
        }
    }
}

/// The protocol version the upstream is told: the body's (2026-07-28), the
/// session's (negotiated in initialize), or the client's header when it
/// names a revision we know.
fn protocol_version(
    msg: &McpMessage,
    session: Option<&BrokerSession>,
    h: &McpHeaders,
) -> Result<Option<String>, McpError> {
    if let Some(v) = &msg.protocol_version {
        if !KNOWN_VERSIONS.contains(&v.as_str()) {
            return Err(McpError::new(
                codes::UNSUPPORTED_VERSION,
                format!(
                    "protocol version {v:?} is not supported; supported: {}",
                    KNOWN_VERSIONS.join(", ")
                ),
            ));
        }
        return Ok(Some(v.clone()));
    }
    if let Some(v) = session.and_then(BrokerSession::protocol_version) {
        return Ok(Some(v));
    }
    match &h.protocol_version {
        Some(v) if KNOWN_VERSIONS.contains(&v.as_str()) => Ok(Some(v.clone())),
        Some(v) => Err(McpError::new(
            codes::UNSUPPORTED_VERSION,
            format!(
                "MCP-Protocol-Version {v:?} is not supported; supported: {}",
                KNOWN_VERSIONS.join(", ")
            ),
        )),
        None => Ok(None),
    }
}

fn upstream_error(target: &str, e: &UpstreamError) -> McpError {
    McpError::upstream(format!("target {target}: {e}"))
}

fn json_reply(status: u16, body: Bytes) -> Reply {
    Reply {
        head: ResponseHead {
            status,
            body: ResponseBody::Json,
            session_id: None,
        },
        messages: Box::pin(futures::stream::once(async move { Ok(body) })),
    }
}

/// When the upstream breaks off mid-stream, the client still gets an answer
/// to its request: a JSON-RPC error with its id, then the stream ends.
fn with_error_answer(
    messages: impl Stream<Item = Result<Bytes, McpError>> + Send + 'static,
    id: Option<Value>,
) -> impl Stream<Item = Result<Bytes, McpError>> + Send + 'static {
    messages.scan(false, move |ended, m| {
        if *ended {
            return futures::future::ready(None);
        }
        let out = match m {
            Ok(b) => Ok(b),
            Err(e) => {
                *ended = true;
                match &id {
                    Some(id) => Ok(Bytes::from(
                        serde_json::to_vec(&e.to_response(Some(id))).unwrap_or_default(),
                    )),
                    None => Err(e),
                }
            }
        };
        futures::future::ready(Some(out))
    })
}

/// Looks inside the responses the broker learns from: `tools/list`
/// (argument headers) and `server/discover` (the upstream's revision).
/// Other traffic is not parsed at all.
struct Learner {
    id: Value,
    method: String,
    status: u16,
    target: Arc<Target>,
    /// The request carried no cursor: its answer starts the list.
    first_page: bool,
}

impl Learner {
    fn for_request(msg: &McpMessage, status: u16, target: Arc<Target>) -> Option<Self> {
        let method = msg.method.as_deref()?;
        if !matches!(method, "tools/list" | "server/discover") {
            return None;
        }
        let first_page = msg.params().is_none_or(|p| p.get("cursor").is_none());
        Some(Self {
            id: msg.id.clone()?,
            method: method.to_owned(),
            status,
            target,
            first_page,
        })
    }

    fn observe(&self, m: &UpstreamMessage) {
        let Ok(v) = serde_json::from_slice::<Value>(&m.body) else {
            return;
        };
        if v.get("id") != Some(&self.id) || v.get("method").is_some() {
            return;
        }
        match self.method.as_str() {
            "tools/list" => {
                if let Some(r) = v.get("result") {
                    self.target.learn_tools(r, self.first_page);
                }
            }
            _ => self.target.learn_revision(self.status, &v),
        }
    }
}

/// The resource URIs a `subscriptions/listen` asks updates for
/// (`params.notifications.resourceSubscriptions`); an entry that is not a
/// string is refused rather than passed on unjudged.
fn listened_resources(msg: &McpMessage) -> Result<Vec<&str>, McpError> {
    if !msg.is_method("subscriptions/listen") {
        return Ok(Vec::new());
    }
    let Some(list) = msg
        .params()
        .and_then(|p| p.get("notifications"))
        .and_then(|n| n.get("resourceSubscriptions"))
    else {
        return Ok(Vec::new());
    };
    let Some(items) = list.as_array() else {
        return Err(McpError::invalid_params(
            "notifications.resourceSubscriptions must be a list of resource URIs",
        ));
    };
    items
        .iter()
        .map(|u| {
            u.as_str().ok_or_else(|| {
                McpError::invalid_params(
                    "notifications.resourceSubscriptions must be a list of resource URIs",
                )
            })
        })
        .collect()
}

/// What the layers that judged a message hand on to forwarding.
struct Judged {
    session: Option<Arc<BrokerSession>>,
    version: Option<String>,
    params: Option<headers::ParamHeaders>,
    /// The policy that judged the request: a catalog answer is filtered
    /// under it, even if a reload lands while the upstream answers.
    policy: Arc<Policy>,
}

/// Open handshake-era sessions one caller may hold on one target.
const MAX_SESSIONS_PER_CALLER: usize = 64;
/// How long the upstream may take to answer `initialize`.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Reads an `initialize` answer up to its response (keeping what it read in
/// `early`, to be delivered as usual) and returns the negotiated protocol
/// version when the upstream accepted the handshake.
async fn accepted_handshake(
    messages: &mut crate::upstream::MessageStream,
    id: &Value,
    early: &mut Vec<Result<UpstreamMessage, UpstreamError>>,
) -> Option<String> {
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    // Bounded by the deadline and by the stream, which ends after the response.
    loop {
        let m = tokio::time::timeout_at(deadline, messages.next())
            .await
            .ok()??;
        let Ok(m) = m else {
            early.push(m);
            return None;
        };
        let answer = serde_json::from_slice::<Value>(&m.body)
            .ok()
            .filter(|v| v.get("id") == Some(id) && v.get("method").is_none());
        early.push(Ok(m));
        if let Some(v) = answer {
            return v
                .pointer("/result/protocolVersion")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
    }
}

/// The stateless MCP revision, whose list results carry `cacheScope`.
const STATELESS_REVISION: &str = "2026-07-28";

/// What policy judges a message by, besides its method: the tool, prompt
/// or resource it names (for `completion/complete`, the prompt or resource
/// its `ref` names, so completion cannot probe a blocked prompt).
fn policy_name(msg: &McpMessage) -> Option<String> {
    if msg.is_method("completion/complete") {
        // The ref's type says which field the upstream reads; judging any
        // other field would judge something else than what is completed.
        let r = msg.params()?.get("ref")?;
        let field = match r.get("type").and_then(Value::as_str)? {
            "ref/prompt" => "name",
            "ref/resource" => "uri",
            _ => return None,
        };
        return r.get(field).and_then(Value::as_str).map(str::to_owned);
    }
    msg.name.clone()
}

/// Whether the name policy judges for `msg` is a resource URI.
fn judges_a_uri(msg: &McpMessage) -> bool {
    match msg.method.as_deref() {
        Some("resources/read" | "resources/subscribe" | "resources/unsubscribe") => true,
        Some("completion/complete") => {
            msg.params()
                .and_then(|p| p.get("ref"))
                .and_then(|r| r.get("type"))
                .and_then(Value::as_str)
                == Some("ref/resource")
        }
        _ => false,
    }
}

/// Why a resource URI is not in the one form resource globs judge: dot
/// segments, percent-encoded separators or dots, backslashes or empty
/// segments could reach, once the upstream normalises them, what a glob
/// was written to keep out.
fn non_canonical_uri(uri: &str) -> Option<&'static str> {
    let path = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let lower = path.to_ascii_lowercase();
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Some("the URI has a `.` or `..` segment");
    }
    if ["%2e", "%2f", "%5c"].iter().any(|e| lower.contains(e)) {
        return Some("the URI percent-encodes a dot, slash or backslash");
    }
    if path.contains('\\') {
        return Some("the URI has a backslash");
    }
    if path.contains("//") {
        return Some("the URI has an empty path segment");
    }
    None
}

/// The arguments a condition sees: only where the upstream reads them
/// (`tools/call`, `prompts/get`). Anywhere else a client could add an
/// `arguments` object the upstream ignores, to steer a condition.
pub(crate) fn policy_arguments(msg: &McpMessage) -> Option<&Value> {
    if crate::policy::has_arguments(msg.method.as_deref().unwrap_or("")) {
        msg.params().and_then(|p| p.get("arguments"))
    } else {
        None
    }
}

#[cfg(test)]
mod uri_tests {
    use super::non_canonical_uri;

    #[test]
    fn only_plain_uris_pass() {
        for ok in [
            "fixture://greeting",
            "hoop-demo://policies/retention",
            "file:///srv/data/report.csv",
            "https://example.com/a/b?x=1",
        ] {
            assert_eq!(non_canonical_uri(ok), None, "{ok}");
        }
        for bad in [
            "hoop-demo://policies/../secrets",
            "hoop-demo://policies/./retention",
            "hoop-demo://policies/%2e%2e/secrets",
            "hoop-demo://policies%2Fsecrets",
            "hoop-demo://policies\\secrets",
            "hoop-demo://policies//secrets",
        ] {
            assert!(non_canonical_uri(bad).is_some(), "{bad}");
        }
    }
}
