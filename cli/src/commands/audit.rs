//! `hoop audit`: read the broker's audit log (search, replay, export,
//! verify), as a member of the log's reader groups. Every read is itself
//! recorded by the broker. `hoop audit verify FILE --key KEY` needs no
//! broker at all: it proves an export unaltered on its own.

use std::path::PathBuf;

use bytes::Bytes;
use hoop_broker::audit::reader::{AuditRequest, ExportFlags, SearchFlags};
use hoop_broker::audit::view;
use hoop_proto::StreamKind;
use serde_json::{json, Value};

use super::{exit, CommandError};
use crate::settings::ConnectionArgs;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  hoop audit search --user alice --since 1h\n  hoop audit search --tool delete_model --decision deny --json\n  hoop audit replay 5f0c2a1b00000007          # an exchange id or an MCP session id\n  hoop audit export --since 2026-12-01 --out dec.jsonl\n  hoop audit export --since 7d --format ocsf --out week.ocsf.jsonl\n  hoop audit verify dec.jsonl --key \"$(hoop audit key)\"   # offline, no broker\n  hoop audit verify                            # the broker checks its whole log\n\nReading the log needs membership in one of the broker's [audit] readers groups.\nExit codes (the table: hoop --help): 0 ok, 1 verification failed or other failure,\n2 usage, 3 not logged in or the token was refused, 4 broker unreachable, 5 not allowed\nto read the log, 9 the broker's certificate is not trusted"
)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Events matching every filter given, oldest first (page on with
    /// --after, as the note on stderr says when more match).
    #[command(
        after_help = "Examples:\n  hoop audit search --user alice --since 1h\n  hoop audit search --target payments --tool get_customer --since 2026-12-01\n  hoop audit search --decision deny --json | jq .actor.sub"
    )]
    Search {
        #[command(flatten)]
        filters: SearchFlags,
        /// The events as JSON lines, exactly as recorded.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// The timeline of one exchange or one MCP session.
    #[command(
        after_help = "Examples:\n  hoop audit replay 5f0c2a1b00000007      # an exchange id from `hoop audit search`\n  hoop audit replay 9b1e…                 # an MCP session id: the whole session\n  hoop audit replay 5f0c2a1b00000007 --json"
    )]
    Replay {
        /// An exchange id or an MCP session id (from `search`).
        id: String,
        /// The timeline as JSON, instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Events with the checkpoints and proofs they need, to a file that
    /// verifies on its own (`--format jsonl`), or as OCSF API Activity.
    #[command(
        after_help = "Examples:\n  hoop audit export --since 2026-12-01 --out dec.jsonl\n  hoop audit export --since 7d --format ocsf --out week.ocsf.jsonl\n  hoop audit verify dec.jsonl --key \"$(hoop audit key)\"    # then check it offline"
    )]
    Export {
        #[command(flatten)]
        export: ExportFlags,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Prove an export unaltered (FILE, offline: no broker), or have the
    /// broker check its whole log (no FILE).
    #[command(
        after_help = "Examples:\n  hoop audit verify dec.jsonl --key \"$(hoop audit key)\"\n  hoop audit verify dec.jsonl --key OLD_KEY --key NEW_KEY   # across a key rotation\n  hoop audit verify                    # the broker checks its whole log\n\nExit codes: 0 verified, 1 verification failed, 2 usage, 3 not logged in or the token\nwas refused, 4 broker unreachable, 5 not allowed to read the log, 9 the broker's\ncertificate is not trusted"
    )]
    Verify {
        /// An export written by `hoop audit export --format jsonl`.
        file: Option<PathBuf>,
        /// The broker's verifier key (`hoop audit key`, or from its
        /// operator: `hoop-broker audit pubkey`); repeat for rotated keys.
        #[arg(long)]
        key: Vec<String>,
        /// The verdict as JSON (`ok`, counts, or the first bad seq).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// The broker's audit verifier key (`name+id+base64`).
    #[command(after_help = "Examples:\n  hoop audit key > broker.vkey\n  hoop audit key --json")]
    Key {
        /// The key and its origin as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

pub async fn run(args: AuditArgs) -> Result<(), CommandError> {
    let now = hoop_broker::audit::event::now_ns();
    match args.command {
        AuditCommand::Search {
            filters,
            json,
            connection,
        } => {
            let req = filters.request(now).map_err(usage)?;
            let lines = ask(&connection, &req).await?;
            print_events(&lines, json, view::table)
        }
        AuditCommand::Replay {
            id,
            json,
            connection,
        } => {
            let lines = ask(&connection, &AuditRequest::Replay { id: id.clone() }).await?;
            if lines.is_empty() {
                // Not found is a wrong argument, as `hoop approve show 99` is.
                return Err(CommandError::usage(anyhow::anyhow!(
                    "no exchange or session {id:?} in the audit log"
                ))
                .with_hint(
                    "ids come from `hoop audit search` (its exchange and session columns)",
                ));
            }
            print_events(&lines, json, view::timeline)
        }
        AuditCommand::Export { export, connection } => {
            let req = export.request(now).map_err(usage)?;
            let out = export.out;
            let lines = ask(&connection, &req).await?;
            view::write_export(&out, &joined(&lines)).map_err(CommandError::from)
        }
        AuditCommand::Verify {
            file: Some(file),
            key,
            json,
            ..
        } => verify_file(&file, &key, json),
        AuditCommand::Verify {
            file: None,
            key,
            json,
            connection,
        } => {
            if !key.is_empty() {
                // The broker checks its log with its own key: a key given
                // here would be silently unused, and an examiner would
                // think the log was checked against theirs.
                return Err(usage(
                    "--key checks an export offline, against a key you trust: `hoop audit export --since 30d --out FILE`, then `hoop audit verify FILE --key KEY`; without FILE the broker checks its whole log with its own key".into(),
                ));
            }
            let lines = ask(&connection, &AuditRequest::Verify).await?;
            let report: Value = lines
                .first()
                .and_then(|l| serde_json::from_slice(l).ok())
                .ok_or_else(|| anyhow::anyhow!("the broker sent no verification report"))?;
            if json {
                println!("{report}");
            } else {
                println!("{}", report["summary"].as_str().unwrap_or("?"));
            }
            if report["ok"] == Value::Bool(true) {
                Ok(())
            } else {
                Err(CommandError::new(
                    exit::FAILURE,
                    anyhow::anyhow!("the audit log does not verify"),
                ))
            }
        }
        AuditCommand::Key { json, connection } => {
            let lines = ask(&connection, &AuditRequest::Key).await?;
            let v: Value = lines
                .first()
                .and_then(|l| serde_json::from_slice(l).ok())
                .ok_or_else(|| anyhow::anyhow!("the broker sent no key"))?;
            if json {
                println!("{v}");
            } else {
                println!("{}", v["key"].as_str().unwrap_or(""));
            }
            Ok(())
        }
    }
}

fn usage(message: String) -> CommandError {
    CommandError::new(exit::USAGE, anyhow::anyhow!(message))
}

/// Offline: no broker, no network; the key decides.
fn verify_file(file: &std::path::Path, keys: &[String], json: bool) -> Result<(), CommandError> {
    if keys.is_empty() {
        return Err(usage(
            "--key KEY is needed to verify an export: get it from the broker's operator (`hoop-broker audit pubkey`) or `hoop audit key`".into(),
        ));
    }
    if let Err(e) = hoop_audit_log::TrustedKeys::parse(keys) {
        return Err(usage(format!(
            "--key: {e}; a verifier key looks like `name+8hex+base64`, as `hoop audit key` or `hoop-broker audit pubkey` print it"
        )));
    }
    let f = std::fs::File::open(file)
        .map_err(|e| usage(format!("cannot open {}: {e}", file.display())))?;
    match hoop_audit_log::verify_export(std::io::BufReader::new(f), keys) {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    json!({"ok": true, "origin": report.origin, "events": report.events, "checkpoints": report.checkpoints, "first_seq": report.first_seq, "last_seq": report.last_seq, "tree_size": report.tree_size, "root": report.root, "summary": report.to_string()})
                );
            } else {
                println!("{report}");
            }
            Ok(())
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    json!({"ok": false, "seq": e.seq, "line": e.line, "problem": e.problem.code(), "detail": e.detail, "summary": format!("FAIL {e}")})
                );
            } else {
                println!("FAIL {e}");
            }
            Err(CommandError::new(
                exit::FAILURE,
                anyhow::anyhow!(
                    "{} does not verify{}",
                    file.display(),
                    e.seq
                        .map(|s| format!(": first bad event is seq {s}"))
                        .unwrap_or_default()
                ),
            ))
        }
    }
}

/// Sends one audit request and reads every line of the answer.
async fn ask(connection: &ConnectionArgs, req: &AuditRequest) -> Result<Vec<Bytes>, CommandError> {
    let body = Bytes::from(serde_json::to_vec(req).map_err(anyhow::Error::from)?);
    let lines = super::ask_broker(connection, StreamKind::Audit, Some(body)).await?;
    // The broker refuses with one error line; a read that fails part way
    // ends with one. Either way nothing partial is taken for an answer.
    let ends = [lines.first(), lines.last()];
    for line in ends.into_iter().flatten() {
        if let Ok(v) = serde_json::from_slice::<Value>(line) {
            if let Some(e) = v.get("error") {
                return Err(super::broker_refusal(e));
            }
        }
    }
    Ok(lines)
}

fn print_events(
    lines: &[Bytes],
    json: bool,
    render: fn(&[Value]) -> String,
) -> Result<(), CommandError> {
    view::print_lines(&joined(lines), json, render).map_err(CommandError::from)
}

/// An answer's lines as one text, a line each.
fn joined(lines: &[Bytes]) -> Vec<u8> {
    let mut text = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for l in lines {
        text.extend_from_slice(l);
        text.push(b'\n');
    }
    text
}
