//! Layer 5, policy: what the policy says about one message, with the
//! built-in rules that must hold whatever the policy file says.
//!
//! In order, each a call into the module that owns it:
//! 1. the resource URI is in plain form (`uri`), before any glob judges it;
//! 2. the policy's decision for the message (`crate::policy`): deny wins;
//! 3. a 2026-07-28 `subscriptions/listen` subscribes to resources by URI, as
//!    `resources/subscribe` did: each URI is judged as that call would be,
//!    so updates about a resource reach only who may read it;
//! 4. the tool is one the target may run under that name (`target`: case
//!    variants, tools blocked by drift);
//! 5. a `tasks/*` call is judged again as the call that started the task
//!    (`handles`), so a task outlives no policy change that denies its tool.
//!
//! The masking profile for the answers is the one named by the rule that
//! let the call through; for a task (or an `input_required` retry), by the
//! rule that lets the call that started it through.

use std::sync::Arc;

use crate::identity::Caller;
use crate::mcp::error::{codes, McpError};
use crate::mcp::message::McpMessage;
use crate::policy::{Decision, Policy, PolicyRequest};

use super::handles::{self, Origin};
use super::target::Target;
use super::uri;

/// A message the policy lets through (or holds for approval).
#[derive(Debug)]
pub struct Authorized {
    pub decision: Decision,
    /// The masking profile for its answers; `None`: the broker's `default`.
    pub masking: Option<Arc<str>>,
}

/// Judges `msg` from `caller` on `target` under `policy`; a refusal is the
/// JSON-RPC error the caller gets, an `approve` decision is for the
/// approval layer to hold.
pub fn authorize(
    policy: &Policy,
    caller: &Caller,
    target: &Target,
    msg: &McpMessage,
    origin: Option<&Origin>,
) -> Result<Authorized, McpError> {
    uri::refuse_non_canonical(msg)?;
    if msg.is_method("completion/complete") && msg.item.is_none() {
        return Err(McpError::invalid_params(
            "completion/complete needs a ref of type ref/prompt (with name) or ref/resource (with uri)",
        ));
    }
    let decision = policy.decide(&PolicyRequest {
        identity: &caller.identity,
        target: &target.name,
        method: msg.method.as_deref().unwrap_or(""),
        name: msg.item.as_deref(),
        arguments: msg.policy_arguments(),
    });
    if let Decision::Deny { rule, reason } = &decision {
        return Err(denied(rule, reason, String::new()));
    }
    for uri in msg.listened_resources()? {
        uri::refuse_uri(uri)?;
        if let Decision::Deny { rule, reason } = policy.decide(&PolicyRequest {
            identity: &caller.identity,
            target: &target.name,
            method: "resources/subscribe",
            name: Some(uri),
            arguments: None,
        }) {
            return Err(denied(&rule, &reason, format!(" (subscribing to {uri:?})")));
        }
    }
    target.refuse_tool(msg)?;
    let started = handles::rejudge_task(policy, &caller.identity, &target.name, msg, origin)?;
    let masking = policy
        .masking_profile(started.as_ref().unwrap_or(&decision))
        .cloned();
    Ok(Authorized { decision, masking })
}

fn denied(rule: &str, reason: &str, context: String) -> McpError {
    McpError::new(
        codes::DENIED,
        format!("denied by rule {rule}: {reason}{context}"),
    )
}
