//! `hoop approve`: the `Approvals` stream kind. An approver lists the
//! requests they may decide (and a requester their own), reads one, and
//! grants or denies it; each decision is recorded before it takes effect
//! (`crate::approval`). The answer is JSON lines, one request each.

use std::sync::Arc;

use bytes::Bytes;
use hoop_proto::{ResponseBody, ResponseHead};
use serde::{Deserialize, Serialize};

use super::{Pipeline, Reply};
use crate::approval::{ApprovalRequest, Verdict};
use crate::audit::Exchange;
use crate::identity::Caller;
use crate::mcp::error::McpError;

/// What `hoop approve` asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ApprovalCommand {
    /// The requests the caller may see; with `all`, recent finished ones.
    List {
        #[serde(default)]
        all: bool,
    },
    Get {
        id: u64,
    },
    Grant {
        id: u64,
        #[serde(default)]
        reason: Option<String>,
    },
    Deny {
        id: u64,
        #[serde(default)]
        reason: Option<String>,
    },
    /// A live view: a [`Snapshot`] now and after every change, until the
    /// client leaves.
    Watch,
}

/// What a `watch` sends, one line each time anything changed: who the
/// viewer is (to tell their own requests apart) and every request they may
/// see, open and recent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub you: Viewer,
    pub requests: Vec<ApprovalRequest>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Viewer {
    pub sub: String,
    pub iss: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Pipeline {
    pub(super) async fn approval_view(
        self: &Arc<Self>,
        caller: &Arc<Caller>,
        exchange: &Exchange,
        body: Option<Bytes>,
    ) -> Reply {
        let command = match body
            .as_deref()
            .map(serde_json::from_slice::<ApprovalCommand>)
        {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                let e = McpError::invalid_params(format!("not an approval command: {e}"));
                self.audit
                    .refused(caller, "", exchange, None, None, body.as_deref(), &e)
                    .await;
                return Reply::error(&e, None);
            }
            None => {
                let e = McpError::invalid_request("an approval command needs a message");
                return Reply::error(&e, None);
            }
        };
        let who = &caller.identity;
        let decides = matches!(
            command,
            ApprovalCommand::Grant { .. } | ApprovalCommand::Deny { .. }
        );
        let answer: Result<Vec<ApprovalRequest>, McpError> = match command {
            ApprovalCommand::Watch => return self.watch_approvals(caller),
            ApprovalCommand::List { all } => Ok(self.approvals.list(who, all).await),
            ApprovalCommand::Get { id } => {
                self.approvals.get(who, id).await.map(|r| vec![r]).ok_or_else(|| {
                    McpError::invalid_params(format!(
                        "no approval request #{id} that you may see (you see those you may decide and your own)"
                    ))
                })
            }
            ApprovalCommand::Grant { id, reason } => {
                self.decide(caller, id, Verdict::Granted, reason).await
            }
            ApprovalCommand::Deny { id, reason } => {
                self.decide(caller, id, Verdict::Denied, reason).await
            }
        };
        match answer {
            Ok(requests) => {
                let lines: Vec<Result<Bytes, McpError>> = requests
                    .iter()
                    .map(|r| Ok(Bytes::from(serde_json::to_vec(r).unwrap_or_default())))
                    .collect();
                Reply {
                    head: ResponseHead {
                        status: 200,
                        body: ResponseBody::EventStream,
                        session_id: None,
                    },
                    messages: Box::pin(futures::stream::iter(lines)),
                }
            }
            Err(e) => {
                // A decision refused (one's own call, not an approver, a
                // second vote) is on the record too.
                if decides {
                    self.audit
                        .refused(caller, "", exchange, None, None, body.as_deref(), &e)
                        .await;
                }
                Reply::error(&e, None)
            }
        }
    }
}

impl Pipeline {
    async fn decide(
        &self,
        caller: &Arc<Caller>,
        id: u64,
        verdict: Verdict,
        reason: Option<String>,
    ) -> Result<Vec<ApprovalRequest>, McpError> {
        self.approvals
            .decide(caller, id, verdict, reason)
            .await
            .map(|r| vec![r])
            .map_err(|e| e.to_error())
    }

    /// The live view: a snapshot now, then one after each change. Ends
    /// when the client leaves (the tunnel drops the stream).
    fn watch_approvals(self: &Arc<Self>, caller: &Arc<Caller>) -> Reply {
        let changes = self.approvals.subscribe();
        let state = (self.clone(), caller.clone(), changes, true);
        let snapshots =
            futures::stream::unfold(state, |(p, caller, mut changes, first)| async move {
                if !first {
                    // The sender lives as long as the broker: an error is its end.
                    changes.changed().await.ok()?;
                }
                changes.borrow_and_update();
                let who = &caller.identity;
                let snapshot = Snapshot {
                    you: Viewer {
                        sub: who.subject.clone(),
                        iss: who.issuer.clone(),
                        groups: who.groups.clone(),
                    },
                    requests: p.approvals.list(who, true).await,
                };
                let line = Bytes::from(serde_json::to_vec(&snapshot).unwrap_or_default());
                Some((Ok(line), (p, caller, changes, false)))
            });
        Reply {
            head: ResponseHead {
                status: 200,
                body: ResponseBody::EventStream,
                session_id: None,
            },
            messages: Box::pin(snapshots),
        }
    }
}
