//! The request path, top to bottom, in one place.
//!
//! Every MCP message from a client passes these layers in this order; each
//! is one call into its own module, where the concern lives and is tested
//! on its own:
//!
//! 1. **identity** (`crate::identity`): the caller's token is still valid
//!    and the caller is not revoked. First, and on every exchange of every
//!    kind, because the stateless revision has no session to end when a
//!    token lapses or a person is cut off.
//! 2. **parse** (`crate::mcp::message`): one strict JSON-RPC parse into the
//!    canonical form every later layer reads. Before anything judges the
//!    message, because nothing may judge bytes that the upstream would read
//!    differently.
//! 3. **session** (`session`): a presented `Mcp-Session-Id` must be the
//!    caller's own, on this target; so must a task id or `input_required`
//!    request state (`handles`). Before policy, so a stolen handle reaches
//!    nothing.
//! 4. **headers** (`headers`): mirrored HTTP headers must agree with the
//!    body (-32020 otherwise). Before policy, so policy judges the body and
//!    only the body.
//! 5. **policy** (`authorize`): allow, deny or hold for approval, with the
//!    built-in rules (plain URIs, case variants, drift, listen
//!    subscriptions, tasks judged as the call that started them).
//! 6. **approval** (`crate::approval`): held calls wait for a decision.
//! 7. **audit** (`crate::audit`), request side: recorded before forwarding;
//!    if it cannot be recorded it is not forwarded.
//! 8. **upstream** (`crate::upstream`): the canonical bytes, headers derived
//!    again by the broker, the target's service credential.
//! 9. **response** (`relay`): each message coming back is parsed once, then
//!    learned from, bound, masked (`crate::masking`) and filtered, before
//!    the client sees it.
//! 10. **audit**, response side: what was delivered, as delivered.

pub mod approval_view;
pub mod audit_view;
pub mod authorize;
pub mod catalog;
pub mod drift;
pub mod handles;
pub mod headers;
mod held_task;
mod hold;
pub mod relay;
pub mod session;
pub mod target;
pub mod uri;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use hoop_proto::{McpHeaders, OpenStream, ResponseBody, ResponseHead, StreamKind};
use serde_json::Value;

use crate::approval::{Admission, Approvals, Ticket};
use crate::audit::{Audit, Exchange, RequestFacts};
use crate::identity::revocation::RevocationList;
use crate::identity::{now_unix, Caller};
use crate::masking::{Masker, Masking};
use crate::mcp::error::{codes, McpError};
use crate::mcp::message::{McpMessage, MessageKind};
use crate::mcp::server::ServerMessage;
use crate::policy::{Decision, Policy};
use crate::upstream::{Outbound, Upstream, UpstreamError};
use handles::HandleTable;
use relay::ResponseLayers;
use session::{BrokerSession, SessionTable};
use target::{Revision, Target, TargetLearner};

/// The answer to one exchange: a response head, then messages.
pub struct Reply {
    pub head: ResponseHead,
    pub messages: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, McpError>> + Send>>,
}

impl Reply {
    fn error(e: &McpError, id: Option<&Value>) -> Self {
        let body = Bytes::from(serde_json::to_vec(&e.to_response(id)).unwrap_or_default());
        json_reply(e.http_status, body)
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

/// What a message that reached no target asked to be answered by.
enum RequestId {
    Id(Value),
    Notification,
    Unreadable,
}

/// The JSON-RPC id of `body`, read without judging anything else in it (a
/// message to a target that does not exist goes no further).
fn request_id(body: &[u8]) -> RequestId {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(default)]
        id: Option<Value>,
        #[serde(default)]
        method: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Head>(body) {
        Ok(Head { id: Some(id), .. }) => RequestId::Id(id),
        Ok(Head {
            id: None,
            method: Some(_),
        }) => RequestId::Notification,
        _ => RequestId::Unreadable,
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
    approvals: Arc<Approvals>,
    /// The broker's own tasks for held calls (clients of the Tasks
    /// extension).
    held_tasks: held_task::HeldTasks,
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
        audit: Arc<Audit>,
        masking: Arc<Masking>,
        approvals: Approvals,
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
            handles: Arc::new(HandleTable::new(approvals.store())),
            policy: std::sync::RwLock::new(Arc::new(policy)),
            // Beside the requests they wait on.
            held_tasks: held_task::HeldTasks::new(approvals.store().cloned()),
            approvals: Arc::new(approvals),
            audit,
            masking,
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

    /// The audit layer, for what happens outside an exchange (connections,
    /// authentication, reloads).
    pub fn audit(&self) -> &Arc<Audit> {
        &self.audit
    }

    /// The approval requests, for the broker's expiry sweep.
    pub fn approvals(&self) -> &Approvals {
        &self.approvals
    }

    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    /// Handles one MCP stream: an HTTP exchange of the caller's MCP client.
    pub async fn handle(
        self: &Arc<Self>,
        caller: &Arc<Caller>,
        open: OpenStream,
        body: Option<Bytes>,
    ) -> Reply {
        let exchange = self.audit.exchange();
        // 1. identity: before anything else, even the target lookup, so a
        //    caller whose token lapsed or who was revoked learns nothing.
        if let Err(e) = self.still_admitted(caller) {
            self.refuse_stream(caller, &open, &exchange, body.as_deref(), &e)
                .await;
            let id = body.as_deref().and_then(McpMessage::salvage_id);
            return Reply::error(&e, id.as_ref());
        }
        match open.kind {
            StreamKind::Catalog => self.targets_view(caller).await,
            StreamKind::Audit => self.audit_view(caller, &exchange, body).await,
            StreamKind::Approvals => self.approval_view(caller, &exchange, body).await,
            StreamKind::Post | StreamKind::Listen | StreamKind::EndSession => {
                self.to_target(caller, exchange, open, body).await
            }
        }
    }

    /// Records a refusal made before a target's layers, with what the
    /// stream presented.
    async fn refuse_stream(
        &self,
        caller: &Caller,
        open: &OpenStream,
        exchange: &Exchange,
        body: Option<&[u8]>,
        e: &McpError,
    ) {
        self.refuse_unparsed(caller, &open.target, exchange, &open.headers, body, e)
            .await;
    }

    /// Records a refusal of an exchange whose message was not parsed (or
    /// that has none), in the session its headers presented.
    async fn refuse_unparsed(
        &self,
        caller: &Caller,
        target: &str,
        exchange: &Exchange,
        h: &McpHeaders,
        body: Option<&[u8]>,
        e: &McpError,
    ) {
        let session = h.session_id.as_deref();
        self.audit
            .refused(caller, target, exchange, session, None, body, e)
            .await;
    }

    /// An exchange of an MCP client with one target.
    async fn to_target(
        self: &Arc<Self>,
        caller: &Arc<Caller>,
        exchange: Exchange,
        open: OpenStream,
        body: Option<Bytes>,
    ) -> Reply {
        let Some(target) = self.targets.get(&open.target).cloned() else {
            let known: Vec<&str> = self.target_names().collect();
            let e = McpError {
                http_status: 404,
                ..McpError::new(
                    codes::UNKNOWN_TARGET,
                    format!(
                        "no target named {:?} on this broker; targets: {}",
                        open.target,
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                )
            };
            self.refuse_stream(caller, &open, &exchange, body.as_deref(), &e)
                .await;
            // Answered to the request it refuses; a notification gets no
            // answer, only the status (JSON-RPC answers no notification).
            return match body.as_deref().map(request_id) {
                Some(RequestId::Notification) => Reply::empty(e.http_status),
                Some(RequestId::Id(id)) => Reply::error(&e, Some(&id)),
                _ => Reply::error(&e, None),
            };
        };
        match (open.kind, body) {
            (StreamKind::Post, Some(body)) => {
                self.post(caller, target, &exchange, &open.headers, body)
                    .await
            }
            (StreamKind::Post, None) => {
                let e = McpError::invalid_request("POST without a message");
                self.refuse_unparsed(caller, &target.name, &exchange, &open.headers, None, &e)
                    .await;
                Reply::error(&e, None)
            }
            (StreamKind::Listen, _) => self.listen(caller, &target, exchange, &open.headers).await,
            _ => {
                self.end_session(caller, &target, &exchange, &open.headers)
                    .await
            }
        }
    }

    /// Layer 1 on every exchange: the token has not lapsed and the caller
    /// is not revoked.
    fn still_admitted(&self, caller: &Caller) -> Result<(), McpError> {
        if caller.expires_at() <= now_unix() {
            return Err(McpError::new(
                codes::TOKEN_EXPIRED,
                "your hoop token has expired: run `hoop login` (in dev: `hoop-broker dev token NAME`) and retry",
            ));
        }
        let who = &caller.identity;
        match self.revocations.find(&who.subject, &who.issuer) {
            Some(r) => Err(McpError::new(
                codes::REVOKED,
                format!(
                    "access revoked for {}: {} (a broker administrator can lift it with `hoop-broker unrevoke`)",
                    r.subject, r.reason
                ),
            )),
            None => Ok(()),
        }
    }

    async fn post(
        self: &Arc<Self>,
        caller: &Arc<Caller>,
        target: Arc<Target>,
        exchange: &Exchange,
        h: &McpHeaders,
        body: Bytes,
    ) -> Reply {
        // 2. parse
        let msg = match McpMessage::parse(&body) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                self.refuse_unparsed(caller, &target.name, exchange, h, Some(&body), &e)
                    .await;
                let id = match e.code {
                    codes::PARSE_ERROR => None,
                    _ => McpMessage::salvage_id(&body),
                };
                return Reply::error(&e, id.as_ref());
            }
        };
        // The broker's own tasks (held calls) are answered here.
        if let Some(reply) = self.answer_held_task(caller, &target, exchange, &msg).await {
            return reply;
        }
        match self.judge(caller, &target, exchange, h, &msg).await {
            Ok(Judgement::Forward(judged)) => {
                self.forward(caller, target, exchange, msg, judged).await
            }
            Ok(Judgement::Held(ticket)) if held_task::wants_task(&msg) => {
                self.held_as_task(caller, target, exchange, h, msg, ticket)
                    .await
            }
            Ok(Judgement::Held(ticket)) => {
                self.held(caller, target, exchange.clone(), h, msg, ticket)
            }
            Err(e) => {
                self.audit
                    .refused(
                        caller,
                        &target.name,
                        exchange,
                        h.session_id.as_deref(),
                        Some(&msg),
                        None,
                        &e,
                    )
                    .await;
                match msg.kind {
                    MessageKind::Request => Reply::error(&e, msg.id.as_ref()),
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
        exchange: &Exchange,
        h: &McpHeaders,
        msg: &McpMessage,
    ) -> Result<Judgement, McpError> {
        // 3. session, and the handles a message may present
        let session =
            self.sessions
                .presented(h.session_id.as_deref(), &caller.identity, &target.name)?;
        self.handles.recall(&target.name, msg).await;
        let origin = self.handles.check(&caller.identity, &target.name, msg)?;
        // 4. headers
        let params = headers::check_on(&self.audit, target, msg, h).await?;
        let version = headers::protocol_version(msg, session.as_deref(), h)?;
        // 5. policy
        let policy = self.policy();
        let authorized = authorize::authorize(&policy, caller, target, msg, origin.as_deref())?;
        let masker = self.masking.chosen(authorized.masking.as_deref())?.clone();
        // 6. approval: only calls an `approve` rule matched
        let approval = match &authorized.decision {
            Decision::Approve { rule } => {
                match self
                    .admit(caller, target, exchange, msg, &policy, rule, &masker)
                    .await?
                {
                    Admission::Released(id) => Some(id),
                    Admission::Held(ticket) => return Ok(Judgement::Held(ticket)),
                }
            }
            _ => None,
        };
        // A new session must have room before anything is recorded as sent.
        if msg.is_method("initialize") && session.is_none() {
            self.sessions.room_for(&caller.identity, &target.name)?;
        }
        // 7. audit (request): the bytes recorded are the bytes forwarded.
        let body = msg.to_bytes();
        let facts = RequestFacts {
            caller,
            target: &target.name,
            exchange,
            session: session.as_ref().map(|s| &*s.id),
            msg,
        };
        self.audit
            .request(&facts, &body, &authorized.decision, &masker, approval)
            .await?;
        Ok(Judgement::Forward(Judged {
            session,
            version,
            params,
            policy,
            body,
            masker,
        }))
    }

    /// Layers 8–10.
    async fn forward(
        &self,
        caller: &Arc<Caller>,
        target: Arc<Target>,
        exchange: &Exchange,
        msg: Arc<McpMessage>,
        judged: Judged,
    ) -> Reply {
        let Judged {
            session,
            version,
            params,
            policy,
            body,
            masker,
        } = judged;
        let id = msg.id.clone();
        // A handshake-era upstream already told us how it refuses
        // server/discover: answer from that instead of probing it again.
        // The answer is recorded like any upstream answer before it goes.
        if msg.is_method("server/discover") && session.is_none() {
            if let Revision::HandshakeOnly { status, error } = target.revision() {
                let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "error": error});
                let facts = RequestFacts {
                    caller,
                    target: &target.name,
                    exchange,
                    session: None,
                    msg: &msg,
                };
                return match self.own_answer(&facts, &body).await {
                    Ok(bytes) => json_reply(status, bytes),
                    Err(e) => Reply::error(&e, id.as_ref()),
                };
            }
        }
        let opens_session = msg.is_method("initialize") && session.is_none();
        // 8. upstream
        let derived = headers::derive(&msg, version.as_deref(), params.as_ref());
        let sent = std::time::Instant::now();
        let reply = target
            .upstream
            .post(Outbound {
                message: &msg,
                body,
                headers: derived,
                session: session.as_ref().map(|s| &s.upstream),
            })
            .await;
        self.audit
            .metrics()
            .upstream(&target.name, sent.elapsed().as_secs_f64());
        let mut reply = match reply {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(target = %target.name, "upstream call failed: {e}");
                let e = upstream_error(&masker, &target.name, &e);
                let facts = RequestFacts {
                    caller,
                    target: &target.name,
                    exchange,
                    session: session.as_ref().map(|s| &*s.id),
                    msg: &msg,
                };
                self.audit.upstream_failed(&facts, &e).await;
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
            match relay::accepted_handshake(&mut reply.messages, id, &mut early).await {
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
        // A catalog answer shows only what this caller may use, judged
        // under the policy that judged the request.
        let catalog = catalog::is_catalog(msg.method.as_deref()).then(|| {
            (
                policy,
                version.as_deref() == Some(target::STATELESS_REVISION),
            )
        });
        let layers = Arc::new(ResponseLayers {
            caller: caller.clone(),
            exchange: exchange.clone(),
            session: new_session
                .as_ref()
                .or(session.as_ref())
                .map(|s| s.id.clone()),
            learner: TargetLearner::for_request(&msg, reply.status, &target),
            minted: self.handles.observer(&caller.identity, &target.name, &msg),
            task_list: msg.is_method("tasks/list").then(|| self.handles.clone()),
            masker,
            catalog,
            audit: self.audit.clone(),
            target,
            request: Some(msg),
        });
        // Held while the answer streams, so the idle sweep spares the session.
        let in_use = Arc::new(session.as_ref().map(|s| s.in_use()));
        // 9. and 10., per message as it streams by, in order.
        let messages = futures::stream::iter(early)
            .chain(
                reply
                    .messages
                    .map(|m| m.map(|m| ServerMessage::parse(m.body))),
            )
            .then(move |m| {
                let layers = layers.clone();
                let in_use = in_use.clone();
                async move {
                    let _in_use = in_use;
                    match m {
                        Ok(m) => layers.apply(m).await,
                        Err(e) => {
                            let e = upstream_error(&layers.masker, &layers.target.name, &e);
                            layers.upstream_failed(&e).await;
                            Err(e)
                        }
                    }
                }
            });
        Reply {
            head,
            messages: Box::pin(relay::with_error_answer(messages, id)),
        }
    }

    async fn listen(
        &self,
        caller: &Arc<Caller>,
        target: &Arc<Target>,
        exchange: Exchange,
        h: &McpHeaders,
    ) -> Reply {
        if h.session_id.is_none() {
            // No session: nothing server-initiated can be addressed to it.
            return Reply::empty(405);
        }
        let session =
            match self
                .sessions
                .presented(h.session_id.as_deref(), &caller.identity, &target.name)
            {
                Ok(Some(s)) => s,
                Ok(None) => return Reply::empty(405),
                Err(e) => {
                    self.refuse_unparsed(caller, &target.name, &exchange, h, None, &e)
                        .await;
                    return Reply::error(&e, None);
                }
            };
        if let Err(e) = self
            .audit
            .stream_request(caller, &target.name, &exchange, &session.id, "listen")
            .await
        {
            return Reply::error(&e, None);
        }
        let version = session.protocol_version();
        let reply = target
            .upstream
            .listen(
                &session.upstream,
                version.as_deref(),
                h.last_event_id.as_deref(),
            )
            .await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                let e = upstream_error(self.masking.default_masker(), &target.name, &e);
                self.audit
                    .stream_failed(caller, &target.name, &exchange, &session.id, &e)
                    .await;
                return Reply::error(&e, None);
            }
        };
        let layers = Arc::new(ResponseLayers {
            caller: caller.clone(),
            target: target.clone(),
            request: None,
            exchange,
            session: Some(session.id.clone()),
            learner: None,
            minted: None,
            // A listen stream answers no call, so no rule chose a profile.
            masker: self.masking.default_masker().clone(),
            task_list: None,
            catalog: None,
            audit: self.audit.clone(),
        });
        let in_use = Arc::new(session.in_use());
        Reply {
            head: ResponseHead {
                status: reply.status,
                body: reply.body,
                session_id: None,
            },
            messages: Box::pin(reply.messages.then(move |m| {
                let layers = layers.clone();
                let in_use = in_use.clone();
                async move {
                    let _in_use = in_use;
                    match m {
                        Ok(m) => layers.apply(ServerMessage::parse(m.body)).await,
                        Err(e) => Err(upstream_error(&layers.masker, &layers.target.name, &e)),
                    }
                }
            })),
        }
    }

    async fn end_session(
        &self,
        caller: &Arc<Caller>,
        target: &Target,
        exchange: &Exchange,
        h: &McpHeaders,
    ) -> Reply {
        let Some(sid) = &h.session_id else {
            let e = McpError::invalid_request("DELETE needs an Mcp-Session-Id");
            self.refuse_unparsed(caller, &target.name, exchange, h, None, &e)
                .await;
            return Reply::error(&e, None);
        };
        match self
            .sessions
            .presented(Some(sid), &caller.identity, &target.name)
        {
            Ok(Some(s)) => {
                if let Err(e) = self
                    .audit
                    .stream_request(caller, &target.name, exchange, &s.id, "end_session")
                    .await
                {
                    return Reply::error(&e, None);
                }
                self.sessions.remove(sid);
                target
                    .upstream
                    .end_session(&s.upstream, s.protocol_version().as_deref())
                    .await;
                Reply::empty(200)
            }
            Ok(None) => Reply::empty(404),
            Err(e) => {
                self.refuse_unparsed(caller, &target.name, exchange, h, None, &e)
                    .await;
                Reply::error(&e, None)
            }
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

impl Pipeline {
    /// An answer the broker gives in the upstream's place (a refusal the
    /// upstream already taught it, one of its own tasks), recorded as the
    /// exchange's response before it goes: its bytes, or why the log could
    /// not take it.
    async fn own_answer(&self, facts: &RequestFacts<'_>, body: &Value) -> Result<Bytes, McpError> {
        // Serializing a Value into a Vec cannot fail.
        let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        self.audit
            .response(facts, &ServerMessage::parse(bytes.clone()), &bytes, None)
            .await?;
        Ok(bytes)
    }
}

/// What the caller (and the audit log) is told when the upstream failed;
/// masked, as it may quote the upstream's own answer.
fn upstream_error(masker: &Masker, target: &str, e: &UpstreamError) -> McpError {
    let message = format!("target {target}: {e}");
    McpError::upstream(masker.text(&message).into_owned())
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

/// What layers 3–7 made of a message.
enum Judgement {
    /// Recorded: forward it.
    Forward(Judged),
    /// Held for approval (layer 6): nothing recorded as sent yet.
    Held(Ticket),
}

/// What the layers that judged a message hand on to forwarding.
struct Judged {
    session: Option<Arc<BrokerSession>>,
    version: Option<String>,
    params: Option<headers::ParamHeaders>,
    /// The policy that judged the request: a catalog answer is filtered
    /// under it, even if a reload lands while the upstream answers.
    policy: Arc<Policy>,
    /// The canonical bytes recorded, and so the bytes forwarded.
    body: Bytes,
    /// The masking profile the deciding rule chose, for every answer.
    masker: Masker,
}
