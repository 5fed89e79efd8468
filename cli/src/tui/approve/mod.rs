//! `hoop approve` with no subcommand: the approver's live view. The broker
//! pushes a snapshot of the requests the approver may see whenever one
//! changes (a `watch` on the `Approvals` stream); decisions go back over
//! the same connection. State and keys are in [`app`], drawing in
//! [`view`]; this module only wires them to the terminal and the broker.

pub mod app;
pub mod notices;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crossterm::event::{Event, EventStream, KeyEventKind};
use futures::StreamExt;
use hoop_broker::approval::Verdict;
use hoop_broker::pipeline::approval_view::{ApprovalCommand, Snapshot};
use hoop_proto::{McpHeaders, OpenStream, StreamKind};

use crate::commands::approve::send;
use crate::commands::CommandError;
use crate::tunnel::TunnelClient;
use app::{Action, App};

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs the view until the approver quits (or the broker ends it).
pub async fn run(tunnel: Arc<TunnelClient>) -> Result<(), CommandError> {
    let open = OpenStream {
        target: String::new(),
        kind: StreamKind::Approvals,
        headers: McpHeaders::default(),
    };
    let body =
        Bytes::from(serde_json::to_vec(&ApprovalCommand::Watch).map_err(anyhow::Error::from)?);
    let mut watch = tunnel.exchange(open, Some(body)).await?;
    // The first snapshot before the screen changes: a refusal or a broker
    // too old for the view is reported as a plain error.
    let first = match watch.next_message().await? {
        Some(m) => parse(&m.body)?,
        None => {
            return Err(anyhow::anyhow!("the broker ended the live view at once").into());
        }
    };
    let mut app = App::new(now_unix());
    app.apply(first);
    let mut terminal = ratatui::init();
    let result = drive(&mut terminal, &mut app, &tunnel, &mut watch).await;
    ratatui::restore();
    tunnel.close().await;
    result
}

/// The loop: redraw, then wait for a key, a snapshot or the clock. Ends
/// when the approver quits; bounded by them.
async fn drive(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    tunnel: &Arc<TunnelClient>,
    watch: &mut crate::tunnel::Exchange,
) -> Result<(), CommandError> {
    let mut keys = EventStream::new();
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    loop {
        terminal
            .draw(|f| view::render(f, app))
            .map_err(anyhow::Error::from)?;
        tokio::select! {
            m = watch.next_message(), if app.live => match m {
                Ok(Some(m)) => match parse(&m.body) {
                    Ok(s) => app.apply(s),
                    Err(e) => app.status = Some(format!("{}", e.error)),
                },
                Ok(None) | Err(_) => {
                    app.live = false;
                    app.status = Some("the broker ended the live view; q quits, then run `hoop approve` again".into());
                }
            },
            e = keys.next() => match e {
                Some(Ok(Event::Key(k))) if k.kind == KeyEventKind::Press => match app.on_key(k) {
                    Action::Quit => return Ok(()),
                    Action::Nothing => {}
                    Action::Decide { id, verdict, reason } => {
                        let command = match verdict {
                            Verdict::Granted => ApprovalCommand::Grant { id, reason },
                            Verdict::Denied => ApprovalCommand::Deny { id, reason },
                        };
                        app.status = Some(match send(tunnel, &command).await {
                            Ok(done) => done.first().map_or(format!("#{id}: decided"), |r| match r.state.as_str() {
                                "approved" => format!("#{id} approved: it releases {}", hoop_broker::approval::printable(&r.grant_scope())),
                                "denied" => format!("#{id} denied: the requester reads your reason"),
                                _ => format!("#{id}: your grant is recorded ({} of {})", r.grants(), r.quorum),
                            }),
                            Err(e) => format!("#{id}: {}", e.error),
                        });
                    }
                },
                Some(Ok(_)) => {}
                // The terminal is gone: nothing more to show.
                Some(Err(_)) | None => return Ok(()),
            },
            _ = clock.tick() => app.now = now_unix(),
        }
    }
}

fn parse(line: &[u8]) -> Result<Snapshot, CommandError> {
    let v: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| anyhow::anyhow!("the broker sent something that is not JSON: {e}"))?;
    if let Some(e) = v.get("error") {
        return Err(crate::commands::broker_refusal(e));
    }
    serde_json::from_value(v).map_err(|e| {
        anyhow::anyhow!("the broker's live view is in a form this hoop cannot read ({e}); is hoop older than the broker?").into()
    })
}
