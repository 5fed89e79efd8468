//! Approval: holds calls the policy marked `approve` until an approver
//! decides. Until the approval flow exists such calls are refused with a
//! message saying that approval is required.

use crate::mcp::error::McpError;
use crate::policy::Decision;

#[derive(Debug, Default)]
pub struct Approvals;

impl Approvals {
    pub async fn hold(&self, decision: &Decision) -> Result<(), McpError> {
        match decision {
            Decision::Approve { rule } => Err(McpError::new(
                crate::mcp::error::codes::APPROVAL_REQUIRED,
                format!(
                    "this call needs approval (rule {rule}), and approvals are not available yet"
                ),
            )),
            _ => Ok(()),
        }
    }
}
