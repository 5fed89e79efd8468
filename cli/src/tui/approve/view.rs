//! Drawing the approver's view: a title with counts, the list of requests,
//! the selected one in full, and a footer with the keys or what is being
//! typed. A function of [`App`] alone, so snapshot tests draw it on a
//! `TestBackend`.

use hoop_broker::approval::{clock_time, printable, ApprovalRequest, ApprovalState, Verdict};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use super::app::{App, Mode, Tab};

/// Smaller than this, the view says so instead of drawing a mess.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 12;
/// From this width on, the list and the detail sit side by side.
const WIDE: u16 = 110;

pub fn render(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "hoop approve needs at least {MIN_WIDTH}×{MIN_HEIGHT}; this terminal is {}×{}. Make it larger, or use `hoop approve list`.",
            area.width, area.height
        );
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
        return;
    }
    let [title, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(4),
        Constraint::Length(2),
    ])
    .areas(area);
    frame.render_widget(title_line(app), title);
    let [list, detail] = if area.width >= WIDE {
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(body)
    } else {
        Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(body)
    };
    render_list(frame, app, list);
    render_detail(frame, app, detail);
    frame.render_widget(footer_lines(app), footer);
    if app.mode == Mode::Help {
        render_help(frame, body);
    }
}

fn title_line(app: &App) -> Paragraph<'static> {
    let open = app.requests.iter().filter(|r| r.state.is_open()).count();
    let done = app.requests.len() - open;
    let you = app.you.as_ref().map_or("…".to_owned(), |y| {
        if y.groups.is_empty() {
            y.sub.clone()
        } else {
            format!("{} ({})", y.sub, y.groups.join(", "))
        }
    });
    let tab = |t: Tab, label: String| {
        let style = if app.tab == t {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new()
        };
        Span::styled(label, style)
    };
    let mut spans = vec![
        Span::styled(" hoop approve ", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!("— {you} — ")),
        tab(Tab::Open, format!(" open {open} ")),
        Span::raw(" "),
        tab(Tab::History, format!(" history {done} ")),
    ];
    if !app.filter.is_empty() {
        spans.push(Span::raw(format!("  filter: {}", app.filter)));
    }
    if !app.live {
        spans.push(Span::styled(
            "  (live view ended)",
            Style::new().add_modifier(Modifier::BOLD),
        ));
    }
    Paragraph::new(Line::from(spans))
}

/// `3m`, `2h`, `1d`: how long ago or from now.
pub fn span(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// Who asked: their e-mail (else subject), and `(workload)` for a job.
pub fn requester(r: &ApprovalRequest) -> String {
    let name = printable(r.requester.email.as_deref().unwrap_or(&r.requester.subject));
    match r.requester.kind.as_str() {
        "workload" => format!("{name} (workload)"),
        _ => name,
    }
}

fn render_list(frame: &mut Frame, app: &App, area: Rect) {
    let visible = app.visible();
    let rows: Vec<Row> = visible
        .iter()
        .map(|r| {
            let left = match r.state {
                ApprovalState::Pending | ApprovalState::Approved => {
                    span(r.expires_at.saturating_sub(app.now))
                }
                _ => r.state.as_str().to_owned(),
            };
            let who = if app.is_own(r) {
                format!("{} (you)", requester(r))
            } else {
                requester(r)
            };
            let row = Row::new(vec![
                format!("#{}", r.id),
                span(app.now.saturating_sub(r.created_at)),
                left,
                who,
                printable(&format!("{}/{}", r.binding.target, r.binding.name)),
                format!("{}/{}", r.grants(), r.quorum),
            ]);
            if app.is_own(r) {
                row.style(Style::new().add_modifier(Modifier::DIM))
            } else {
                row
            }
        })
        .collect();
    let title = match app.tab {
        Tab::Open => " waiting for a decision ",
        Tab::History => " decided, expired, used ",
    };
    let table = Table::new(
        rows,
        [
            Constraint::Length(5),
            Constraint::Length(4),
            Constraint::Length(8),
            Constraint::Fill(3),
            Constraint::Fill(2),
            Constraint::Length(5),
        ],
    )
    .header(
        Row::new(vec!["ID", "AGE", "LEFT", "REQUESTER", "CALL", "VOTES"])
            .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
    .highlight_symbol("> ")
    .block(Block::bordered().title(title));
    let mut state = TableState::default();
    state.select(
        app.selected
            .and_then(|s| visible.iter().position(|r| r.id == s)),
    );
    if visible.is_empty() {
        let empty = match (app.tab, app.filter.is_empty()) {
            (_, false) => "nothing matches the filter (Esc in / clears it)",
            (Tab::Open, true) => "nothing waits for your decision",
            (Tab::History, true) => "nothing decided recently",
        };
        frame.render_widget(
            Paragraph::new(empty).block(Block::bordered().title(title)),
            area,
        );
        return;
    }
    frame.render_stateful_widget(table, area, &mut state);
}

fn render_detail(frame: &mut Frame, app: &App, area: Rect) {
    let block = Block::bordered().title(" request ");
    let Some(r) = app.selected_request() else {
        frame.render_widget(Paragraph::new("").block(block), area);
        return;
    };
    let b = &r.binding;
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let field = |name: &str, value: String| {
        Line::from(vec![
            Span::styled(format!("{name:<10} "), bold),
            Span::raw(value),
        ])
    };
    let mut lines = vec![field(
        "approval",
        format!(
            "#{} {}, {} of {} from {}, expires {}",
            r.id,
            r.state.as_str(),
            r.grants(),
            r.quorum,
            r.approvers.join(" or "),
            clock_time(r.expires_at)
        ),
    )];
    if let Some(why) = app.why_not(r) {
        lines.push(Line::styled(why, Style::new().add_modifier(Modifier::DIM)));
    }
    lines.extend([
        field(
            "requester",
            format!(
                "{} [{}] {}, groups {}",
                requester(r),
                r.requester.kind,
                r.requester.issuer,
                r.requester.groups.join(", ")
            ),
        ),
        field(
            "call",
            printable(&format!("{} {} on {}", b.method, b.name, b.target)),
        ),
        field("reason", printable(&r.reason)),
        field(
            "rule",
            format!(
                "{} (policy {}), quorum {}{}",
                b.rule,
                b.policy_version,
                r.quorum,
                if r.human_approver {
                    ", a person decides"
                } else {
                    ""
                }
            ),
        ),
        field("releases", printable(&r.grant_scope())),
        field("tool", {
            let f = b
                .tool_fingerprint
                .as_deref()
                .map_or("definition not seen yet".to_owned(), |f| {
                    format!("definition sha256 {}…", f.get(..16).unwrap_or(f))
                });
            match &r.tool_state {
                Some(state) => format!("{f}, {state}"),
                None => f,
            }
        }),
        field("arguments", format!("sha256 {}", b.args_digest)),
    ]);
    let pretty = serde_json::to_string_pretty(&r.arguments).unwrap_or_default();
    lines.extend(pretty.lines().map(|l| Line::raw(format!("  {l}"))));
    for d in &r.decisions {
        lines.push(field(
            d.verdict.as_str(),
            format!(
                "{} at {}{}",
                d.email.as_deref().unwrap_or(&d.approver),
                clock_time(d.at),
                d.reason
                    .as_deref()
                    .map(|x| format!(": {x}"))
                    .unwrap_or_default()
            ),
        ));
    }
    let earlier = app.earlier(r);
    if !earlier.is_empty() {
        lines.push(Line::styled("earlier on this tool", bold));
        for o in earlier {
            let by = o
                .decisions
                .last()
                .map(|d| {
                    format!(
                        " by {}{}",
                        d.email.as_deref().unwrap_or(&d.approver),
                        d.reason
                            .as_deref()
                            .map(|x| format!(": {x}"))
                            .unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            lines.push(Line::raw(format!(
                "  #{} {}{by} ({})",
                o.id,
                o.state.as_str(),
                requester(o)
            )));
        }
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        area,
    );
}

fn footer_lines(app: &App) -> Paragraph<'static> {
    let first = match &app.mode {
        Mode::Reason { id, verdict, text } => {
            let what = match verdict {
                Verdict::Granted => format!("Grant #{id}, reason (optional)"),
                Verdict::Denied => format!("Deny #{id}, reason (required)"),
            };
            format!("{what}: {text}█   Enter send · Esc cancel")
        }
        Mode::Filter => format!("Filter: {}█   Enter keep · Esc clear", app.filter),
        _ => "↑↓ select · a grant · d deny · / filter · Tab history · ? help · q quit".to_owned(),
    };
    let second = app.status.clone().unwrap_or_default();
    Paragraph::new(vec![
        Line::raw(first),
        Line::styled(second, Style::new().add_modifier(Modifier::BOLD)),
    ])
}

fn render_help(frame: &mut Frame, body: Rect) {
    let text = vec![
        Line::raw("↑ ↓ / j k   select a request"),
        Line::raw("a           grant it (a reason is optional)"),
        Line::raw("d           deny it (a reason is required: the requester reads it)"),
        Line::raw("/           filter by requester, target, tool, rule or reason"),
        Line::raw("Tab / h     open requests, or the history"),
        Line::raw("q / Esc     quit"),
        Line::raw(""),
        Line::raw("The list follows the broker live. You cannot decide your own calls,"),
        Line::raw("nor one you already voted on; every decision is in the audit log."),
        Line::raw(""),
        Line::raw("any key closes this help"),
    ];
    let width = body.width.min(76);
    let height = body.height.min(text.len() as u16 + 2);
    let area = Rect {
        x: body.x + (body.width - width) / 2,
        y: body.y + (body.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(text).block(Block::bordered().title(" keys ")),
        area,
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::app::tests::app;
    use super::*;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn draw(app: &App, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| render(f, app)).unwrap();
        terminal.backend().to_string()
    }

    fn press(app: &mut App, c: KeyCode) {
        app.on_key(KeyEvent::new(c, KeyModifiers::NONE));
    }

    #[test]
    fn wide_list_and_detail() {
        insta::assert_snapshot!(draw(&app(), 140, 30));
    }

    #[test]
    fn narrow_terminal_stacks_list_over_detail() {
        insta::assert_snapshot!(draw(&app(), 80, 34));
    }

    #[test]
    fn too_small_says_so() {
        insta::assert_snapshot!(draw(&app(), 40, 8));
    }

    #[test]
    fn typing_a_denial_reason() {
        let mut app = app();
        press(&mut app, KeyCode::Char('d'));
        for c in "not now".chars() {
            press(&mut app, KeyCode::Char(c));
        }
        insta::assert_snapshot!(draw(&app, 120, 24));
    }

    #[test]
    fn history_and_help() {
        let mut app = app();
        press(&mut app, KeyCode::Tab);
        let history = draw(&app, 120, 30);
        assert!(history.contains("#3"), "{history}");
        assert!(
            history.contains("denied     dave@bank.example"),
            "{history}"
        );
        press(&mut app, KeyCode::Char('?'));
        insta::assert_snapshot!(draw(&app, 120, 24));
    }

    #[test]
    fn own_requests_are_marked_and_cannot_be_decided() {
        let mut app = app();
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Char('a'));
        let screen = draw(&app, 120, 24);
        assert!(screen.contains("bob@bank.example (you"), "{screen}");
        assert!(screen.contains("#43 is your own call"), "{screen}");
    }
}
