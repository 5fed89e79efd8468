//! `hoop approve`: decide the calls a policy `approve` rule holds, as one
//! of the approvers the rule names. With no subcommand, the live view
//! (`crate::tui::approve`); `list` shows what waits (and, to a
//! requester, their own requests), `show` one request in full, `grant` and
//! `deny` decide. Every decision is recorded by the broker before it takes
//! effect; nobody decides their own call.

use bytes::Bytes;
use hoop_broker::approval::{clock_time, printable, ApprovalRequest};
use hoop_broker::pipeline::approval_view::ApprovalCommand;
use hoop_proto::StreamKind;
use serde_json::Value;

use super::{exit, CommandError};
use crate::settings::ConnectionArgs;
use crate::tui::approve::view::{requester as who, span};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  hoop approve                             # the live view: a grant, d deny, ? keys\n  hoop approve list                       # what waits for you\n  hoop approve list --all --json          # with recent decisions, as JSON lines\n  hoop approve show 42                    # arguments (masked), digest, rule, votes\n  hoop approve grant 42 --reason \"change CHG-1234\"\n  hoop approve deny 42 --reason \"not during the freeze\"\n\nOnly members of the groups a rule names as approvers may decide its calls,\nnever the person (or workload) who made the call.\nExit codes (the table: hoop --help): 0 ok, 1 other failure, 2 usage (no such request,\na denial without a reason), 3 not logged in or the token was refused, 4 broker\nunreachable, 5 not allowed to decide, 9 the broker's certificate is not trusted"
)]
pub struct ApproveArgs {
    #[command(subcommand)]
    pub command: Option<ApproveCommand>,
    /// For the live view (the subcommands take these too).
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum ApproveCommand {
    /// Requests waiting for a decision that you may make, and your own.
    #[command(
        after_help = "Examples:\n  hoop approve list\n  hoop approve list --all --json | jq 'select(.state == \"pending\")'"
    )]
    List {
        /// Recent finished requests too (approved, denied, expired, used).
        #[arg(long)]
        all: bool,
        /// One JSON object per line, as the broker keeps them.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// One request in full: the arguments (masked), their digest, the
    /// rule, the tool's fingerprint, the decisions so far.
    #[command(after_help = "Examples:\n  hoop approve show 42\n  hoop approve show 42 --json")]
    Show {
        /// The request's number (`#42` in `hoop approve list`).
        id: u64,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Grant a request: with the rule's quorum met, the held call runs (once, or for the rule's window).
    #[command(
        after_help = "Examples:\n  hoop approve grant 42\n  hoop approve grant 42 --reason \"change CHG-1234\" --profile work"
    )]
    Grant {
        id: u64,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Deny a request: the held call is refused with your reason.
    #[command(after_help = "Examples:\n  hoop approve deny 42 --reason \"not during the freeze\"")]
    Deny {
        id: u64,
        /// Why: the requester reads it (required).
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

pub async fn run(args: ApproveArgs) -> Result<(), CommandError> {
    let Some(command) = args.command else {
        if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            let profile = args
                .connection
                .profile
                .as_deref()
                .map(|p| format!(" --profile {p}"))
                .unwrap_or_default();
            return Err(CommandError::usage(anyhow::anyhow!(
                "the live view needs a terminal"
            ))
            .with_hint(format!(
                "in scripts use `hoop approve list --json{profile}`, `hoop approve grant ID{profile}` or `hoop approve deny ID --reason R{profile}`"
            )));
        }
        let resolved = args
            .connection
            .resolve()
            .map_err(CommandError::unresolved)?;
        let tunnel = crate::tunnel::TunnelClient::connect(resolved.tunnel)
            .await
            .map_err(|e| CommandError::from(e).for_login(&resolved.login))?;
        return crate::tui::approve::run(tunnel).await;
    };
    match command {
        ApproveCommand::List {
            all,
            json,
            connection,
        } => {
            let requests = ask(&connection, &ApprovalCommand::List { all }).await?;
            if json {
                print_json(&requests);
            } else if requests.is_empty() {
                eprintln!(
                    "nothing waits for your decision{}",
                    if all {
                        " and nothing was decided recently"
                    } else {
                        " (--all shows recent decisions)"
                    }
                );
            } else {
                print!("{}", table(&requests, now_unix()));
            }
            Ok(())
        }
        ApproveCommand::Show {
            id,
            json,
            connection,
        } => {
            let requests = ask(&connection, &ApprovalCommand::Get { id }).await?;
            if json {
                print_json(&requests);
            } else {
                for r in &requests {
                    print!("{}", detail(r, now_unix()));
                }
            }
            Ok(())
        }
        ApproveCommand::Grant {
            id,
            reason,
            json,
            connection,
        } => {
            let requests = ask(&connection, &ApprovalCommand::Grant { id, reason }).await?;
            report_decision(&requests, json);
            Ok(())
        }
        ApproveCommand::Deny {
            id,
            reason,
            json,
            connection,
        } => {
            if reason.trim().is_empty() {
                return Err(CommandError::new(
                    exit::USAGE,
                    anyhow::anyhow!(
                        "a denial needs a reason the requester can read: --reason TEXT"
                    ),
                ));
            }
            let command = ApprovalCommand::Deny {
                id,
                reason: Some(reason),
            };
            let requests = ask(&connection, &command).await?;
            report_decision(&requests, json);
            Ok(())
        }
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Sends one command over a new connection; the requests the broker
/// answered with.
async fn ask(
    connection: &ConnectionArgs,
    command: &ApprovalCommand,
) -> Result<Vec<ApprovalRequest>, CommandError> {
    let body = Bytes::from(serde_json::to_vec(command).map_err(anyhow::Error::from)?);
    let lines = super::ask_broker(connection, StreamKind::Approvals, Some(body)).await?;
    answered(&lines)
}

/// Sends one command over an open connection (the live view's).
pub async fn send(
    tunnel: &crate::tunnel::TunnelClient,
    command: &ApprovalCommand,
) -> Result<Vec<ApprovalRequest>, CommandError> {
    let body = Bytes::from(serde_json::to_vec(command).map_err(anyhow::Error::from)?);
    let open = hoop_proto::OpenStream {
        target: String::new(),
        kind: StreamKind::Approvals,
        headers: hoop_proto::McpHeaders::default(),
    };
    let mut ex = tunnel.exchange(open, Some(body)).await?;
    let mut lines = Vec::new();
    // Bounded by the broker: the answer ends with Close.
    while let Some(m) = ex.next_message().await? {
        lines.push(m.body);
    }
    answered(&lines)
}

/// The requests in the broker's answer, or its refusal.
fn answered(lines: &[Bytes]) -> Result<Vec<ApprovalRequest>, CommandError> {
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        let v: Value = serde_json::from_slice(line)
            .map_err(|e| anyhow::anyhow!("the broker sent something that is not JSON: {e}"))?;
        if let Some(e) = v.get("error") {
            return Err(super::broker_refusal(e));
        }
        out.push(
            serde_json::from_value(v)
                .map_err(|e| anyhow::anyhow!("the broker sent an approval request this hoop cannot read ({e}); is hoop older than the broker?"))?,
        );
    }
    Ok(out)
}

fn print_json(requests: &[ApprovalRequest]) {
    for r in requests {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
    }
}

fn report_decision(requests: &[ApprovalRequest], json: bool) {
    if json {
        print_json(requests);
        return;
    }
    for r in requests {
        let what = match r.state.as_str() {
            "approved" => format!("approved: it releases {}", printable(&r.grant_scope())),
            "denied" => "denied: the requester is told your reason".to_owned(),
            _ => format!(
                "your grant is recorded: {} of {} approvers so far",
                r.grants(),
                r.quorum
            ),
        };
        println!(
            "#{} {} on {}: {what}",
            r.id, r.binding.name, r.binding.target
        );
    }
}

/// The list as a table, one request a line.
fn table(requests: &[ApprovalRequest], now: u64) -> String {
    let rows: Vec<[String; 8]> = requests
        .iter()
        .map(|r| {
            let left = match r.state.as_str() {
                "pending" | "approved" => span(r.expires_at.saturating_sub(now)),
                _ => "-".into(),
            };
            [
                format!("#{}", r.id),
                r.state.as_str().to_owned(),
                who(r),
                printable(&format!("{}/{}", r.binding.target, r.binding.name)),
                r.binding.rule.clone(),
                format!("{}/{}", r.grants(), r.quorum),
                format!(
                    "{} ago, {left} left",
                    span(now.saturating_sub(r.created_at))
                ),
                r.reason.clone(),
            ]
        })
        .collect();
    let head = [
        "ID",
        "STATE",
        "REQUESTER",
        "CALL",
        "RULE",
        "VOTES",
        "AGE",
        "REASON",
    ];
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push('\n');
    };
    line(head.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// One request in full.
fn detail(r: &ApprovalRequest, now: u64) -> String {
    let b = &r.binding;
    let mut out = format!(
        "approval #{} ({})\n  requester:  {} [{}] groups: {}\n  call:       {} {} on {}\n  reason:     {}\n  rule:       {} (policy {}), approvers: {}, quorum {}{}\n  releases:   {}\n  arguments:  sha256 {}\n",
        r.id,
        r.state.as_str(),
        who(r),
        r.requester.issuer,
        r.requester.groups.join(", "),
        b.method,
        printable(&b.name),
        b.target,
        printable(&r.reason),
        b.rule,
        b.policy_version,
        r.approvers.join(", "),
        r.quorum,
        if r.human_approver { ", a person must decide" } else { "" },
        r.grant_scope(),
        b.args_digest,
    );
    let pretty = serde_json::to_string_pretty(&r.arguments).unwrap_or_default();
    for l in pretty.lines() {
        out.push_str("    ");
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(&format!(
        "  tool:       {}\n  opened:     {} ({} ago), expires {}\n",
        b.tool_fingerprint
            .as_deref()
            .map_or("definition not seen yet".to_owned(), |f| format!(
                "definition sha256 {f}"
            )),
        clock_time(r.created_at),
        span(now.saturating_sub(r.created_at)),
        clock_time(r.expires_at),
    ));
    for d in &r.decisions {
        out.push_str(&format!(
            "  {}: {} at {}{}\n",
            d.verdict.as_str(),
            d.email.as_deref().unwrap_or(&d.approver),
            clock_time(d.at),
            d.reason
                .as_deref()
                .map(|r| format!(" — {}", printable(r)))
                .unwrap_or_default()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hoop_broker::approval::{ApprovalState, Binding, Requester};
    use serde_json::json;

    fn request() -> ApprovalRequest {
        ApprovalRequest {
            id: 42,
            state: ApprovalState::Pending,
            binding: Binding {
                subject: "workload:deploy".into(),
                issuer: "https://ci".into(),
                target: "demo".into(),
                method: "tools/call".into(),
                name: "deploy_model".into(),
                args_digest: "ab".repeat(32),
                tool_fingerprint: None,
                rule: "deploy-needs-approval".into(),
                policy_version: "0123456789abcdef".into(),
            },
            requester: Requester {
                subject: "workload:deploy".into(),
                email: None,
                issuer: "https://ci".into(),
                groups: vec!["ci".into()],
                kind: "workload".into(),
            },
            reason: "release 7".into(),
            arguments: json!({"model": "fraud", "version": "7"}),
            approvers: vec!["ml-leads".into()],
            quorum: 2,
            human_approver: true,
            created_at: 1_000,
            expires_at: 4_600,
            decisions: vec![],
            exchange: "e".into(),
            grant_window_secs: None,
            pin_arguments: false,
            tool_state: None,
        }
    }

    #[test]
    fn the_list_says_who_asked_for_what_and_how_far_it_got() {
        let t = table(&[request()], 1_180);
        let mut lines = t.lines();
        assert!(lines.next().unwrap().starts_with("ID"));
        let row = lines.next().unwrap();
        for part in [
            "#42",
            "pending",
            "workload:deploy (workload)",
            "demo/deploy_model",
            "0/2",
            "3m ago, 57m left",
            "release 7",
        ] {
            assert!(row.contains(part), "{part} missing from {row}");
        }
    }

    #[test]
    fn the_detail_shows_the_arguments_and_their_digest() {
        let d = detail(&request(), 1_180);
        assert!(d.contains("\"model\": \"fraud\""), "{d}");
        assert!(d.contains(&"ab".repeat(32)));
        assert!(d.contains("a person must decide"));
        assert!(d.contains("definition not seen yet"));
    }
}
