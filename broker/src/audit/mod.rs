//! Audit: records every request before it is forwarded and every response
//! before it is delivered, with the caller's identity.
//!
//! Today the record is a structured log event (tracing target `hoop::audit`);
//! the tamper-evident store replaces it behind the same calls. `request`
//! returns a `Result` because the broker fails closed: a request that cannot
//! be recorded is not forwarded.

use crate::identity::Caller;
use crate::mcp::error::McpError;
use crate::mcp::message::McpMessage;
use crate::policy::Decision;

#[derive(Debug, Default)]
pub struct Audit;

impl Audit {
    pub fn request(
        &self,
        caller: &Caller,
        target: &str,
        msg: &McpMessage,
        decision: &Decision,
    ) -> Result<(), McpError> {
        tracing::info!(
            target: "hoop::audit",
            event = "request",
            subject = %caller.identity.subject,
            issuer = %caller.identity.issuer,
            remote = %caller.remote,
            mcp_target = %target,
            method = msg.method.as_deref().unwrap_or("(response)"),
            name = msg.name.as_deref().unwrap_or(""),
            rule = decision.rule(),
        );
        Ok(())
    }

    pub fn response(&self, caller: &Caller, target: &str, method: Option<&str>, bytes: usize) {
        tracing::debug!(
            target: "hoop::audit",
            event = "response",
            subject = %caller.identity.subject,
            mcp_target = %target,
            method = method.unwrap_or(""),
            bytes,
        );
    }

    pub fn refused(&self, caller: &Caller, target: &str, why: &McpError) {
        tracing::info!(
            target: "hoop::audit",
            event = "refused",
            subject = %caller.identity.subject,
            mcp_target = %target,
            code = why.code,
            reason = %why.message,
        );
    }
}
