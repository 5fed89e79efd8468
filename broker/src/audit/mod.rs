//! Audit: the broker's record of everything that happens, kept in its own
//! tamper-evident log (`hoop_audit_log`: an RFC 6962 Merkle tree with
//! signed C2SP checkpoints; docs/audit.md).
//!
//! This module is the layer the request path calls: it turns what happened
//! into an [`event::Event`] and waits until the log holds it durably. A
//! request is recorded before it is forwarded and each message of the
//! answer before the caller receives it; when the log cannot write, the
//! call fails with [`codes::AUDIT_UNAVAILABLE`] naming the cause and
//! nothing is forwarded or delivered (fail closed). Refusals and other
//! events the broker answers or notes anyway are recorded as well as the
//! log allows, and a failure to record them is logged.

mod approval;
pub mod event;
pub mod local;
pub mod location;
pub mod ocsf;
pub mod reader;
pub mod retention;
pub mod view;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hoop_audit_log::AuditLog;
use serde_json::Value;

use crate::identity::Caller;
use crate::masking::{MaskSummary, Masker, Masking};
use crate::mcp::error::{codes, McpError};
use crate::mcp::message::McpMessage;
use crate::mcp::server::ServerMessage;
use crate::policy::Decision;
use event::{Actor, Event, EventKind, Outcome};
pub use location::AuditLocation;

/// One exchange as the record knows it: its id (shared by the request's
/// and the response's events) and when it began.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub id: String,
    pub started: Instant,
}

impl Exchange {
    fn latency_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// The request side's facts about one exchange, for its events.
pub struct RequestFacts<'a> {
    pub caller: &'a Caller,
    pub target: &'a str,
    pub exchange: &'a Exchange,
    pub session: Option<&'a str>,
    pub msg: &'a McpMessage,
}

/// A listen (GET) stream's facts, for the events of the messages on it,
/// which answer no request.
pub struct ListenFacts<'a> {
    pub caller: &'a Caller,
    pub target: &'a str,
    pub exchange: &'a Exchange,
    pub session: Option<&'a str>,
}

pub struct Audit {
    log: AuditLog,
    /// Where the log is, for reads (`hoop audit`).
    location: AuditLocation,
    /// Groups whose members may read the log.
    readers: Vec<String>,
    /// Client messages are masked with it before they are recorded: the
    /// log never holds a raw value (answers arrive masked already).
    masking: Arc<Masking>,
    /// What `/metrics` counts, bumped where the same facts are recorded.
    metrics: Arc<crate::metrics::Metrics>,
    /// Exchange ids: a random start, then one after another, so ids from
    /// two runs of the broker do not collide and ids within one sort.
    next_exchange: AtomicU64,
}

impl Audit {
    pub fn new(
        log: AuditLog,
        location: AuditLocation,
        readers: Vec<String>,
        masking: Arc<Masking>,
    ) -> Self {
        Self {
            log,
            location,
            readers,
            masking,
            metrics: Arc::default(),
            next_exchange: AtomicU64::new(rand::random::<u64>() & !0xffff_ffff),
        }
    }

    pub fn log(&self) -> &AuditLog {
        &self.log
    }

    pub fn location(&self) -> &AuditLocation {
        &self.location
    }

    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// Refuses a caller outside the reader groups.
    pub fn may_read(&self, who: &crate::identity::Identity) -> Result<(), McpError> {
        if who.groups.iter().any(|g| self.readers.contains(g)) {
            Ok(())
        } else {
            Err(not_a_reader(&self.readers))
        }
    }

    /// Records a read of the log before it is served: a read that cannot
    /// be recorded is not served.
    pub async fn read_recorded(
        &self,
        caller: &Caller,
        exchange: &Exchange,
        req: &reader::AuditRequest,
    ) -> Result<(), McpError> {
        let mut e = Event::now(EventKind::AuditRead);
        e.exchange = Some(&exchange.id);
        e.actor = Some(Actor::of(caller));
        e.method = Some(req.op());
        e.detail = serde_json::to_value(req).ok();
        self.record(&e, None).await
    }

    /// A new exchange, starting now.
    pub fn exchange(&self) -> Exchange {
        Exchange {
            id: format!(
                "{:016x}",
                self.next_exchange.fetch_add(1, Ordering::Relaxed)
            ),
            started: Instant::now(),
        }
    }

    /// Records an event; the error says why the log could not take it.
    pub async fn record(&self, event: &Event<'_>, message: Option<&[u8]>) -> Result<(), McpError> {
        // A benchmark build (Cargo feature `bench-unrecorded`, never
        // `serve`): the event is dropped unbuilt, to measure what recording costs.
        if cfg!(feature = "bench-unrecorded") {
            return Ok(());
        }
        let started = Instant::now();
        let appended = match event.entry(message) {
            Ok(entry) => self.log.append_built(entry).await,
            Err(e) => Err(e.into()),
        };
        self.metrics.audit_append(started.elapsed().as_secs_f64());
        appended.map_err(|e| {
            // The caller learns what kind of failure it is; the file and
            // SQLite's words stay in the broker's log and /healthz.
            tracing::error!(event = event.kind, "audit log: {e}");
            unavailable(cause_for_clients(&e))
        })
    }

    /// Records an event the broker goes ahead without: a failure is logged.
    pub async fn note(&self, event: &Event<'_>, message: Option<&[u8]>) {
        if let Err(e) = self.record(event, message).await {
            tracing::error!(
                event = event.kind,
                "not recorded in the audit log: {}",
                e.message
            );
        }
    }

    /// Layer 7: the request, as it will be forwarded (`body`: its canonical
    /// bytes), with the decision that let it pass; recorded masked.
    pub async fn request(
        &self,
        f: &RequestFacts<'_>,
        body: &[u8],
        decision: &Decision,
        masker: &Masker,
        approval: Option<u64>,
    ) -> Result<(), McpError> {
        let mut e = self.exchange_event(EventKind::Request, f);
        let decided = decision_name(decision);
        e.approval = approval;
        e.decision = Some(decided);
        e.rule = Some(decision.rule());
        e.masking = masker.name();
        e.bytes = Some(body.len());
        match masker.client_message(f.msg) {
            Some((masked, found)) => {
                e.masked = Some(found).filter(|v| !v.is_null());
                self.record(&e, Some(&masked)).await
            }
            None => self.record(&e, Some(body)).await,
        }?;
        // Counted once recorded: a call the log could not take is counted
        // as the refusal it becomes, not as a call too.
        self.metrics.call(
            f.target,
            f.msg.method.as_deref().unwrap_or("response"),
            decided,
        );
        Ok(())
    }

    /// A client message the broker refused: never forwarded. `session`:
    /// the `Mcp-Session-Id` the request presented, if any.
    #[allow(clippy::too_many_arguments)] // each is one fact of the refusal
    pub async fn refused(
        &self,
        caller: &Caller,
        target: &str,
        exchange: &Exchange,
        session: Option<&str>,
        msg: Option<&McpMessage>,
        raw: Option<&[u8]>,
        why: &McpError,
    ) {
        let mut e = Event::now(EventKind::Refused);
        e.exchange = Some(&exchange.id);
        // As presented: replaying a session shows what it was refused too.
        e.session = session;
        e.actor = Some(Actor::of(caller));
        e.target = Some(target).filter(|t| !t.is_empty());
        if let Some(m) = msg {
            e.jsonrpc_id = m.id.as_ref();
            e.method = m.method.as_deref();
            e.name = m.item.as_deref();
        }
        e.decision = match why.code {
            codes::DENIED => Some("deny"),
            codes::APPROVAL_REQUIRED => Some("approve"),
            _ => None,
        };
        e.rule = denied_rule(&why.message).or_else(|| approval_rule(&why.message));
        e.outcome = Some(Outcome::Refused.as_str());
        e.error_code = Some(why.code);
        e.reason = Some(&why.message);
        self.metrics.refusal(target, why.code);
        e.latency_us = Some(exchange.latency_us());
        // Masked as any client message: a refused call's arguments are as
        // sensitive as a forwarded one's.
        let message = match (msg, raw) {
            (Some(m), _) => Some(match self.masking.default_masker().client_message(m) {
                Some((masked, found)) => {
                    e.masked = Some(found).filter(|v| !v.is_null());
                    masked.to_vec()
                }
                None => m.to_bytes().to_vec(),
            }),
            (None, Some(raw)) => {
                let text = String::from_utf8_lossy(raw);
                let text = self.masking.default_masker().text(&text);
                Some(event::one_line(text.as_bytes(), None).into_owned())
            }
            _ => None,
        };
        e.bytes = message.as_ref().map(Vec::len);
        self.note(&e, message.as_deref()).await;
    }

    /// Layer 10: one message of the answer, as delivered (`bytes`, masked),
    /// with what masking replaced in it.
    pub async fn response(
        &self,
        f: &RequestFacts<'_>,
        m: &ServerMessage,
        bytes: &[u8],
        masked: MaskSummary,
    ) -> Result<(), McpError> {
        let answer = f.msg.id.as_ref().is_some_and(|id| m.answers(id));
        let kind = if answer {
            EventKind::Response
        } else {
            EventKind::ServerMessage
        };
        let mut e = self.exchange_event(kind, f);
        if !answer {
            speaks_for_itself(&mut e, m);
            e.name = None;
        } else {
            let (outcome, code) = outcome_of(m);
            e.outcome = Some(outcome.as_str());
            e.error_code = code;
        }
        e.bytes = Some(bytes.len());
        e.masked = masked;
        let line = event::one_line(bytes, m.value());
        self.record(&e, Some(&line)).await?;
        // Counted once recorded, as the call is.
        if let Some(outcome) = e.outcome {
            self.metrics
                .answer(f.target, outcome, f.exchange.latency_us());
        }
        Ok(())
    }

    /// An upstream message masking could not handle: not delivered, and
    /// not recorded (it may hold raw values); the event says why.
    /// `request`: the exchange's request, `None` on a listen stream.
    pub async fn withheld(
        &self,
        on: Result<RequestFacts<'_>, ListenFacts<'_>>,
        m: &ServerMessage,
        why: &McpError,
    ) -> Result<(), McpError> {
        let on = on.as_ref();
        let answer = on.is_ok_and(|f| f.msg.id.as_ref().is_some_and(|id| m.answers(id)));
        let kind = if answer {
            EventKind::Response
        } else {
            EventKind::ServerMessage
        };
        let mut e = match on {
            Ok(f) => self.exchange_event(kind, f),
            Err(l) => Self::listen_event(l),
        };
        if !answer {
            speaks_for_itself(&mut e, m);
            e.name = None;
        }
        e.outcome = Some(Outcome::Withheld.as_str());
        e.error_code = Some(why.code);
        e.reason = Some(&why.message);
        e.bytes = Some(m.raw_len());
        self.record(&e, None).await
    }

    /// A message of a handshake-era session's listen (GET) stream, which
    /// answers no request.
    pub async fn listened(
        &self,
        l: &ListenFacts<'_>,
        m: &ServerMessage,
        bytes: &[u8],
        masked: MaskSummary,
    ) -> Result<(), McpError> {
        let mut e = Self::listen_event(l);
        speaks_for_itself(&mut e, m);
        e.bytes = Some(bytes.len());
        e.masked = masked;
        let line = event::one_line(bytes, m.value());
        self.record(&e, Some(&line)).await.map(drop)
    }

    /// An exchange that carries no JSON-RPC message: opening a session's
    /// listen (GET) stream (`method` "listen") or ending a session (DELETE,
    /// "end_session"). Recorded before it reaches the upstream.
    pub async fn stream_request(
        &self,
        caller: &Caller,
        target: &str,
        exchange: &Exchange,
        session: &str,
        method: &'static str,
    ) -> Result<(), McpError> {
        let mut e = self.stream_event(EventKind::Request, caller, target, exchange, session);
        e.method = Some(method);
        self.record(&e, None).await.map(drop)
    }

    /// The upstream refused or broke off an exchange without a JSON-RPC
    /// request (a listen stream).
    pub async fn stream_failed(
        &self,
        caller: &Caller,
        target: &str,
        exchange: &Exchange,
        session: &str,
        why: &McpError,
    ) {
        let mut e = self.stream_event(EventKind::UpstreamFailed, caller, target, exchange, session);
        e.method = Some("listen");
        e.outcome = Some(Outcome::UpstreamFailed.as_str());
        e.error_code = Some(why.code);
        e.reason = Some(&why.message);
        self.note(&e, None).await;
    }

    fn stream_event<'a>(
        &self,
        kind: EventKind,
        caller: &'a Caller,
        target: &'a str,
        exchange: &'a Exchange,
        session: &'a str,
    ) -> Event<'a> {
        let mut e = Event::now(kind);
        e.exchange = Some(&exchange.id);
        e.actor = Some(Actor::of(caller));
        e.target = Some(target);
        e.session = Some(session);
        e.latency_us = Some(exchange.latency_us());
        e
    }

    /// The upstream could not be reached, or broke off mid-answer.
    pub async fn upstream_failed(&self, f: &RequestFacts<'_>, why: &McpError) {
        let mut e = self.exchange_event(EventKind::UpstreamFailed, f);
        e.outcome = Some(Outcome::UpstreamFailed.as_str());
        e.error_code = Some(why.code);
        e.reason = Some(&why.message);
        self.note(&e, None).await;
    }

    /// A connection authenticated (`ConnectionOpen`) or ended
    /// (`ConnectionClose`, with why).
    pub async fn connection(&self, kind: EventKind, caller: &Caller, detail: Value) {
        let mut e = Event::now(kind);
        e.actor = Some(Actor::of(caller));
        e.detail = Some(detail);
        self.note(&e, None).await;
    }

    /// A token refused, with the precise reason (the client was told less).
    pub async fn auth_failure(
        &self,
        addr: std::net::SocketAddr,
        client: &str,
        who: Option<&crate::identity::Identity>,
        reason: &str,
    ) {
        let mut e = Event::now(EventKind::AuthFailure);
        let mut actor = Actor::unauthenticated(addr, client);
        if let Some(w) = who {
            actor.sub = Some(&w.subject);
            actor.iss = Some(&w.issuer);
        }
        e.actor = Some(actor);
        e.outcome = Some(Outcome::Refused.as_str());
        e.reason = Some(reason);
        self.metrics.auth_failure(reason);
        self.note(&e, None).await;
    }

    /// A request the broker sends an upstream on its own account (its
    /// `tools/list`, read to check argument headers and to list a target's
    /// tools), before it is sent: what cannot be recorded is not sent.
    pub async fn broker_request(
        &self,
        target: &str,
        exchange: &Exchange,
        msg: &McpMessage,
        body: &[u8],
    ) -> Result<(), McpError> {
        let mut e = self.broker_event(EventKind::Request, target, exchange, msg);
        e.bytes = Some(body.len());
        self.record(&e, Some(body)).await
    }

    /// A message of the answer to [`Self::broker_request`], before the
    /// broker uses it.
    pub async fn broker_response(
        &self,
        target: &str,
        exchange: &Exchange,
        msg: &McpMessage,
        m: &ServerMessage,
        bytes: &[u8],
    ) -> Result<(), McpError> {
        let answer = msg.id.as_ref().is_some_and(|id| m.answers(id));
        let kind = if answer {
            EventKind::Response
        } else {
            EventKind::ServerMessage
        };
        let mut e = self.broker_event(kind, target, exchange, msg);
        if answer {
            let (outcome, code) = outcome_of(m);
            e.outcome = Some(outcome.as_str());
            e.error_code = code;
        } else {
            speaks_for_itself(&mut e, m);
        }
        e.bytes = Some(bytes.len());
        let line = event::one_line(bytes, m.value());
        self.record(&e, Some(&line)).await
    }

    fn broker_event<'a>(
        &self,
        kind: EventKind,
        target: &'a str,
        exchange: &'a Exchange,
        msg: &'a McpMessage,
    ) -> Event<'a> {
        let mut e = Event::now(kind);
        e.exchange = Some(&exchange.id);
        e.actor = Some(Actor::broker());
        e.target = Some(target);
        e.jsonrpc_id = msg.id.as_ref();
        e.method = msg.method.as_deref();
        e.latency_us = Some(exchange.latency_us());
        e
    }

    fn listen_event<'a>(l: &ListenFacts<'a>) -> Event<'a> {
        let mut e = Event::now(EventKind::ServerMessage);
        e.exchange = Some(&l.exchange.id);
        e.actor = Some(Actor::of(l.caller));
        e.target = Some(l.target);
        e.session = l.session;
        e.latency_us = Some(l.exchange.latency_us());
        e
    }

    fn exchange_event<'a>(&self, kind: EventKind, f: &RequestFacts<'a>) -> Event<'a> {
        let mut e = Event::now(kind);
        e.exchange = Some(&f.exchange.id);
        e.actor = Some(Actor::of(f.caller));
        e.target = Some(f.target);
        e.session = f.session;
        e.jsonrpc_id = f.msg.id.as_ref();
        e.method = f.msg.method.as_deref();
        e.name = f.msg.item.as_deref();
        e.latency_us = Some(f.exchange.latency_us());
        e
    }
}

/// A server request or notification speaks for itself: its own id and
/// method, not those of the request whose exchange carried it.
fn speaks_for_itself<'a>(e: &mut Event<'a>, m: &'a ServerMessage) {
    e.jsonrpc_id = m.value().and_then(|v| v.get("id"));
    e.method = m
        .value()
        .and_then(|v| v.get("method"))
        .and_then(Value::as_str);
}

/// What a caller is told about a failed append.
fn cause_for_clients(e: &hoop_audit_log::AppendError) -> &'static str {
    use hoop_audit_log::{AppendError, StoreErrorKind};
    match e {
        AppendError::Store(s) => match s.kind() {
            StoreErrorKind::DiskFull => "its disk is full",
            StoreErrorKind::ReadOnly => "its log is read-only",
            StoreErrorKind::Busy => "its log is locked by another process",
            StoreErrorKind::Io => "an I/O error",
            _ => "its log cannot be written",
        },
        AppendError::Invalid(hoop_audit_log::EntryError::TooLarge { .. }) => {
            "the event is too large to record"
        }
        AppendError::Invalid(_) => "the event could not be made into a log entry",
        AppendError::Sign(_) => "it cannot sign a checkpoint",
        AppendError::Closed => "it is shutting down",
    }
}

/// The JSON-RPC error of a call the broker would not forward (or deliver)
/// because the log could not record it.
pub fn unavailable(cause: &str) -> McpError {
    McpError::new(
        codes::AUDIT_UNAVAILABLE,
        format!(
            "the broker could not record this call in its audit log, so it did not pass it on: {cause}; the broker's operator must fix the audit log (its /healthz says what is wrong)"
        ),
    )
}

fn decision_name(d: &Decision) -> &'static str {
    match d {
        Decision::Allow { .. } => "allow",
        Decision::Deny { .. } => "deny",
        Decision::Approve { .. } => "approve",
    }
}

/// The rule a denial names (`denied by rule NAME: …`).
fn denied_rule(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("denied by rule ")?;
    rest.split_once(": ").map(|(rule, _)| rule)
}

/// The rule of an approval refusal: `this call needs approval (rule R)…`.
fn approval_rule(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("this call needs approval (rule ")?;
    rest.rsplit_once(')').map(|(rule, _)| rule)
}

/// How an answer ended: a JSON-RPC error (with its code), a tool error
/// (`isError`), or fine.
fn outcome_of(m: &ServerMessage) -> (Outcome, Option<i64>) {
    let Some(v) = m.value() else {
        return (Outcome::Error, None);
    };
    if let Some(err) = v.get("error") {
        return (Outcome::Error, err.get("code").and_then(Value::as_i64));
    }
    let tool_error = v
        .pointer("/result/isError")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if tool_error {
        (Outcome::ToolError, None)
    } else {
        (Outcome::Ok, None)
    }
}

/// The refusal a caller outside the reader groups gets.
pub fn not_a_reader(readers: &[String]) -> McpError {
    let who = if readers.is_empty() {
        "nobody may read the audit log through the broker (its [audit] readers is empty)".to_owned()
    } else {
        format!(
            "reading the audit log is for members of {}",
            readers.join(", ")
        )
    };
    McpError::new(
        codes::DENIED,
        format!("denied by rule builtin:audit-readers: {who}; ask the broker's operator"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_rule_that_denied_or_held_it() {
        assert_eq!(
            denied_rule("denied by rule prod:no-delete: deletes are blocked"),
            Some("prod:no-delete")
        );
        assert_eq!(
            approval_rule(
                "this call needs approval (rule deploys), and approvals are not available yet"
            ),
            Some("deploys")
        );
        assert_eq!(approval_rule("denied by rule x: y"), None);
    }
}
