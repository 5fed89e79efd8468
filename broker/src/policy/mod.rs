//! Policy: may this identity send this message to this target?
//!
//! For now every message is allowed under one named built-in rule; rule
//! files, CEL conditions, filtered catalogs and `explain` plug in here
//! without changing the pipeline's shape.

use crate::pipeline::message::McpMessage;
use crate::pipeline::Caller;

/// What the policy decided, and which rule decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow { rule: String },
    Deny { rule: String, reason: String },
    Approve { rule: String },
}

impl Decision {
    pub fn rule(&self) -> &str {
        match self {
            Self::Allow { rule } | Self::Deny { rule, .. } | Self::Approve { rule } => rule,
        }
    }
}

#[derive(Debug, Default)]
pub struct Policy;

impl Policy {
    pub fn decide(&self, _caller: &Caller, _target: &str, _msg: &McpMessage) -> Decision {
        Decision::Allow {
            rule: "builtin:allow-all (no policy file configured)".into(),
        }
    }
}
