//! `hoop connect` (and `hoop demo`) tell the person at the terminal about
//! approvals as they happen: their own calls held for approval, and calls
//! waiting for their decision. One line on stderr per change, from the
//! same live view `hoop approve` shows.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use hoop_broker::approval::{printable, ApprovalRequest, ApprovalState};
use hoop_broker::pipeline::approval_view::{ApprovalCommand, Snapshot};
use hoop_proto::{McpHeaders, OpenStream, StreamKind};

use crate::tunnel::TunnelClient;

/// Follows the broker's approvals and prints each change that concerns
/// the viewer; returns when the broker ends the view (or refuses it: an
/// older broker has none, and then nothing is printed).
pub async fn follow(tunnel: Arc<TunnelClient>) {
    let open = OpenStream {
        target: String::new(),
        kind: StreamKind::Approvals,
        headers: McpHeaders::default(),
    };
    let Ok(body) = serde_json::to_vec(&ApprovalCommand::Watch) else {
        return;
    };
    let Ok(mut watch) = tunnel.exchange(open, Some(Bytes::from(body))).await else {
        return;
    };
    let mut seen: HashMap<u64, ApprovalState> = HashMap::new();
    let mut first = true;
    // Bounded by the broker: the view ends with the connection.
    while let Ok(Some(m)) = watch.next_message().await {
        let Ok(snapshot) = serde_json::from_slice::<Snapshot>(&m.body) else {
            return;
        };
        for line in changes(&snapshot, &mut seen, first) {
            eprintln!("{line}");
        }
        first = false;
    }
}

/// The lines to print for what changed since `seen`. The first snapshot
/// names only what is still open (not the history).
pub fn changes(
    snapshot: &Snapshot,
    seen: &mut HashMap<u64, ApprovalState>,
    first: bool,
) -> Vec<String> {
    let you = &snapshot.you;
    let mut out = Vec::new();
    for r in &snapshot.requests {
        let before = seen.insert(r.id, r.state);
        if before == Some(r.state) || (first && !r.state.is_open()) {
            continue;
        }
        let own = r.requested_by(&you.sub, &you.iss);
        let call = printable(&format!("{} on {}", r.binding.name, r.binding.target));
        let line = match (own, r.state) {
            (true, ApprovalState::Pending) => format!(
                "hoop: your call to {call} waits for {}",
                r.waiting_for()
            ),
            (true, ApprovalState::Approved) => format!(
                "hoop: approval #{} granted: your call to {call} runs (or runs when your client calls again)",
                r.id
            ),
            (true, ApprovalState::Denied) => format!(
                "hoop: approval #{} denied{}: your call to {call} will not run",
                r.id,
                denial(r)
            ),
            (true, ApprovalState::Expired) => format!(
                "hoop: approval #{} expired undecided: your call to {call} will not run",
                r.id
            ),
            (false, ApprovalState::Pending) if before.is_none() => format!(
                "hoop: approval #{} waits for your decision: {} wants to call {call} (\"{}\") — hoop approve",
                r.id,
                printable(r.requester.email.as_deref().unwrap_or(&r.requester.subject)),
                printable(&r.reason)
            ),
            _ => continue,
        };
        out.push(line);
    }
    out
}

fn denial(r: &ApprovalRequest) -> String {
    r.decisions
        .last()
        .map(|d| {
            format!(
                " by {}{}",
                printable(d.email.as_deref().unwrap_or(&d.approver)),
                d.reason
                    .as_deref()
                    .map(|x| format!(": {}", printable(x)))
                    .unwrap_or_default()
            )
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::app::tests::request;
    use super::*;
    use hoop_broker::pipeline::approval_view::Viewer;

    #[test]
    fn own_calls_and_calls_to_decide_are_told_once_each() {
        let you = |sub: &str| Viewer {
            sub: sub.into(),
            iss: "https://idp".into(),
            groups: vec!["ml-leads".into()],
        };
        let mut seen = HashMap::new();
        let snapshot = Snapshot {
            you: you("alice"),
            requests: vec![
                request(1, "alice", "deploy_model", ApprovalState::Pending),
                request(2, "carol", "deploy_model", ApprovalState::Pending),
                request(3, "alice", "deploy_model", ApprovalState::Denied),
            ],
        };
        let lines = changes(&snapshot, &mut seen, true);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("your call to deploy_model on models waits for approval #1"));
        assert!(lines[1].contains("approval #2 waits for your decision: carol@bank.example"));
        assert!(
            changes(&snapshot, &mut seen, false).is_empty(),
            "nothing new"
        );
        let mut later = snapshot.clone();
        later.requests[0].state = ApprovalState::Approved;
        let lines = changes(&later, &mut seen, false);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("approval #1 granted"), "{lines:?}");
    }
}
