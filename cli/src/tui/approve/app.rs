//! The approver's view as state: the requests the broker last sent, which
//! one is selected, what is being typed, and what each key does. Pure: no
//! terminal and no network, so every key is testable on its own.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use hoop_broker::approval::{ApprovalRequest, ApprovalState, Verdict};
use hoop_broker::pipeline::approval_view::{Snapshot, Viewer};

/// Longest reason or filter typed.
const MAX_INPUT: usize = 1024;

/// Which requests the list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    /// Waiting for a decision, or approved and not yet used.
    Open,
    /// Decided, expired, used or withdrawn; newest first.
    History,
}

/// What the keyboard is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Browse,
    /// Typing the reason for a decision on `id`.
    Reason {
        id: u64,
        verdict: Verdict,
        text: String,
    },
    /// Typing a filter (matches requester, target, tool, rule, reason).
    Filter,
    Help,
}

/// What the run loop must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing,
    Quit,
    Decide {
        id: u64,
        verdict: Verdict,
        reason: Option<String>,
    },
}

pub struct App {
    pub you: Option<Viewer>,
    pub requests: Vec<ApprovalRequest>,
    pub tab: Tab,
    /// The selected request's id (kept across snapshots).
    pub selected: Option<u64>,
    pub filter: String,
    pub mode: Mode,
    /// The last thing to tell the approver (a decision's outcome, why a key
    /// did nothing).
    pub status: Option<String>,
    /// Unix seconds, for ages and time left.
    pub now: u64,
    /// Whether the broker's live view is still flowing.
    pub live: bool,
}

impl App {
    pub fn new(now: u64) -> Self {
        Self {
            you: None,
            requests: Vec::new(),
            tab: Tab::Open,
            selected: None,
            filter: String::new(),
            mode: Mode::Browse,
            status: None,
            now,
            live: true,
        }
    }

    /// A new snapshot from the broker; the selection stays on its request
    /// while it is still listed.
    pub fn apply(&mut self, snapshot: Snapshot) {
        self.you = Some(snapshot.you);
        self.requests = snapshot.requests;
        self.keep_selection();
    }

    /// The requests the list shows, in order.
    pub fn visible(&self) -> Vec<&ApprovalRequest> {
        let needle = self.filter.to_lowercase();
        let mut out: Vec<&ApprovalRequest> = self
            .requests
            .iter()
            .filter(|r| match self.tab {
                Tab::Open => r.state.is_open(),
                Tab::History => !r.state.is_open(),
            })
            .filter(|r| needle.is_empty() || haystack(r).contains(&needle))
            .collect();
        match self.tab {
            Tab::Open => out.sort_by_key(|r| r.id),
            Tab::History => out.sort_by_key(|r| std::cmp::Reverse(r.id)),
        }
        out
    }

    pub fn selected_request(&self) -> Option<&ApprovalRequest> {
        let id = self.selected?;
        self.visible().into_iter().find(|r| r.id == id)
    }

    /// Decided requests on the same target and tool as `r`, newest first:
    /// what others made of such calls before.
    pub fn earlier(&self, r: &ApprovalRequest) -> Vec<&ApprovalRequest> {
        let mut out: Vec<&ApprovalRequest> = self
            .requests
            .iter()
            .filter(|o| {
                o.id != r.id
                    && !o.state.is_open()
                    && o.binding.target == r.binding.target
                    && o.binding.name == r.binding.name
            })
            .collect();
        out.sort_by_key(|o| std::cmp::Reverse(o.id));
        out.truncate(5);
        out
    }

    pub fn is_own(&self, r: &ApprovalRequest) -> bool {
        self.you
            .as_ref()
            .is_some_and(|y| r.requested_by(&y.sub, &y.iss))
    }

    /// Why the viewer cannot decide `r` now, if they cannot. The broker
    /// checks all of this again; the view only spares a round trip.
    pub fn why_not(&self, r: &ApprovalRequest) -> Option<String> {
        if self.is_own(r) {
            return Some(format!(
                "#{} is your own call: an approver from {} decides it",
                r.id,
                r.approvers.join(" or ")
            ));
        }
        if r.state != ApprovalState::Pending {
            return Some(format!("#{} is already {}", r.id, r.state.as_str()));
        }
        if let Some(you) = &self.you {
            if !you.groups.iter().any(|g| r.approvers.contains(g)) {
                return Some(format!(
                    "only members of {} decide #{}",
                    r.approvers.join(", "),
                    r.id
                ));
            }
            if r.decisions
                .iter()
                .any(|d| d.approver == you.sub && d.issuer == you.iss)
            {
                return Some(format!("you already decided #{}", r.id));
            }
        }
        None
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        match self.mode.clone() {
            Mode::Help => {
                self.mode = Mode::Browse;
                Action::Nothing
            }
            Mode::Filter => {
                self.on_filter_key(key);
                Action::Nothing
            }
            Mode::Reason { id, verdict, text } => self.on_reason_key(key, id, verdict, text),
            Mode::Browse => self.on_browse_key(key),
        }
    }

    fn on_browse_key(&mut self, key: KeyEvent) -> Action {
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Up | KeyCode::Char('k') => self.step(-1),
            KeyCode::Down | KeyCode::Char('j') => self.step(1),
            KeyCode::Home | KeyCode::Char('g') => self.select_first(),
            KeyCode::Tab | KeyCode::Char('h') => {
                self.tab = match self.tab {
                    Tab::Open => Tab::History,
                    Tab::History => Tab::Open,
                };
                self.select_first();
            }
            KeyCode::Char('/') => self.mode = Mode::Filter,
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Char('a') | KeyCode::Char('d') => {
                let verdict = match key.code {
                    KeyCode::Char('a') => Verdict::Granted,
                    _ => Verdict::Denied,
                };
                match self.selected_request() {
                    None => self.status = Some("no request selected".into()),
                    Some(r) => match self.why_not(r) {
                        Some(why) => self.status = Some(why),
                        None => {
                            self.mode = Mode::Reason {
                                id: r.id,
                                verdict,
                                text: String::new(),
                            };
                            self.status = None;
                        }
                    },
                }
            }
            _ => {}
        }
        Action::Nothing
    }

    fn on_filter_key(&mut self, key: KeyEvent) {
        match key.code {
            KeyCode::Enter => self.mode = Mode::Browse,
            KeyCode::Esc => {
                self.filter.clear();
                self.mode = Mode::Browse;
            }
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Char(c) if self.filter.len() < MAX_INPUT => self.filter.push(c),
            _ => {}
        }
        self.keep_selection();
    }

    fn on_reason_key(
        &mut self,
        key: KeyEvent,
        id: u64,
        verdict: Verdict,
        mut text: String,
    ) -> Action {
        match key.code {
            KeyCode::Esc => {
                self.mode = Mode::Browse;
                self.status = Some(format!("#{id}: nothing decided"));
                Action::Nothing
            }
            KeyCode::Enter => {
                let reason = text.trim().to_owned();
                if verdict == Verdict::Denied && reason.is_empty() {
                    self.status = Some("a denial needs a reason the requester can read".into());
                    return Action::Nothing;
                }
                self.mode = Mode::Browse;
                Action::Decide {
                    id,
                    verdict,
                    reason: (!reason.is_empty()).then_some(reason),
                }
            }
            KeyCode::Backspace => {
                text.pop();
                self.mode = Mode::Reason { id, verdict, text };
                Action::Nothing
            }
            KeyCode::Char(c) => {
                if text.len() < MAX_INPUT {
                    text.push(c);
                }
                self.mode = Mode::Reason { id, verdict, text };
                Action::Nothing
            }
            _ => Action::Nothing,
        }
    }

    fn step(&mut self, by: isize) {
        let ids: Vec<u64> = self.visible().iter().map(|r| r.id).collect();
        if ids.is_empty() {
            self.selected = None;
            return;
        }
        let at = self
            .selected
            .and_then(|s| ids.iter().position(|i| *i == s))
            .unwrap_or(0);
        let next = at.saturating_add_signed(by).min(ids.len() - 1);
        self.selected = ids.get(next).copied();
    }

    fn select_first(&mut self) {
        self.selected = self.visible().first().map(|r| r.id);
    }

    fn keep_selection(&mut self) {
        let visible: Vec<u64> = self.visible().iter().map(|r| r.id).collect();
        if !self.selected.is_some_and(|s| visible.contains(&s)) {
            self.selected = visible.first().copied();
        }
    }
}

/// What a filter matches, lowercased.
fn haystack(r: &ApprovalRequest) -> String {
    format!(
        "#{} {} {} {} {} {} {}",
        r.id,
        r.requester.subject,
        r.requester.email.as_deref().unwrap_or(""),
        r.binding.target,
        r.binding.name,
        r.binding.rule,
        r.reason
    )
    .to_lowercase()
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use hoop_broker::approval::{ApprovalDecision, Binding, Requester};
    use serde_json::json;

    pub fn request(id: u64, sub: &str, tool: &str, state: ApprovalState) -> ApprovalRequest {
        ApprovalRequest {
            id,
            state,
            binding: Binding {
                subject: sub.into(),
                issuer: "https://idp".into(),
                target: "models".into(),
                method: "tools/call".into(),
                name: tool.into(),
                args_digest: format!("{id:064x}"),
                tool_fingerprint: Some("ab".repeat(32)),
                rule: "deploys-need-a-lead".into(),
                policy_version: "0123456789abcdef".into(),
            },
            requester: Requester {
                subject: sub.into(),
                email: Some(format!("{sub}@bank.example")),
                issuer: "https://idp".into(),
                groups: vec!["eng".into()],
                kind: "human".into(),
            },
            reason: format!("release {id}"),
            arguments: json!({"model": "fraud", "version": id.to_string(), "card": "************1111"}),
            approvers: vec!["ml-leads".into()],
            quorum: 1,
            human_approver: false,
            created_at: 1_000,
            expires_at: 4_600,
            decisions: Vec::new(),
            exchange: "e".into(),
            grant_window_secs: None,
            pin_arguments: false,
            tool_state: Some("accepted".into()),
        }
    }

    pub fn app() -> App {
        let mut app = App::new(1_180);
        let mut denied = request(3, "carol", "deploy_model", ApprovalState::Denied);
        denied.decisions.push(ApprovalDecision {
            approver: "dave".into(),
            email: Some("dave@bank.example".into()),
            issuer: "https://idp".into(),
            verdict: Verdict::Denied,
            reason: Some("freeze".into()),
            at: 1_100,
        });
        app.apply(Snapshot {
            you: Viewer {
                sub: "bob".into(),
                iss: "https://idp".into(),
                groups: vec!["ml-leads".into()],
            },
            requests: vec![
                request(42, "alice", "deploy_model", ApprovalState::Pending),
                request(43, "bob", "deploy_model", ApprovalState::Pending),
                denied,
            ],
        });
        app
    }

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    fn typed(app: &mut App, text: &str) {
        for c in text.chars() {
            app.on_key(key(KeyCode::Char(c)));
        }
    }

    #[test]
    fn approving_asks_for_an_optional_reason_then_decides() {
        let mut app = app();
        assert_eq!(app.selected, Some(42));
        app.on_key(key(KeyCode::Char('a')));
        assert!(matches!(app.mode, Mode::Reason { id: 42, .. }));
        typed(&mut app, "CHG-1");
        let action = app.on_key(key(KeyCode::Enter));
        assert_eq!(
            action,
            Action::Decide {
                id: 42,
                verdict: Verdict::Granted,
                reason: Some("CHG-1".into())
            }
        );
        assert_eq!(app.mode, Mode::Browse);
    }

    #[test]
    fn a_denial_needs_a_reason_and_escape_decides_nothing() {
        let mut app = app();
        app.on_key(key(KeyCode::Char('d')));
        assert_eq!(app.on_key(key(KeyCode::Enter)), Action::Nothing);
        assert!(app.status.as_deref().unwrap().contains("needs a reason"));
        app.on_key(key(KeyCode::Esc));
        assert_eq!(app.mode, Mode::Browse);
        assert!(app.status.as_deref().unwrap().contains("nothing decided"));
    }

    #[test]
    fn ones_own_request_cannot_be_decided_here() {
        let mut app = app();
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.selected, Some(43));
        assert_eq!(app.on_key(key(KeyCode::Char('a'))), Action::Nothing);
        assert_eq!(app.mode, Mode::Browse);
        assert!(app.status.as_deref().unwrap().contains("your own call"));
    }

    #[test]
    fn history_filters_and_the_selection_survive_a_new_snapshot() {
        let mut app = app();
        app.on_key(key(KeyCode::Tab));
        assert_eq!(app.tab, Tab::History);
        assert_eq!(app.selected, Some(3));
        app.on_key(key(KeyCode::Tab));
        app.on_key(key(KeyCode::Char('/')));
        typed(&mut app, "bob");
        app.on_key(key(KeyCode::Enter));
        assert_eq!(app.visible().len(), 1);
        assert_eq!(app.selected, Some(43));
        // A snapshot without #43 moves the selection to what is left.
        let snapshot = Snapshot {
            you: app.you.clone().unwrap(),
            requests: vec![request(42, "alice", "deploy_model", ApprovalState::Pending)],
        };
        app.on_key(key(KeyCode::Char('/')));
        app.on_key(key(KeyCode::Esc));
        app.apply(snapshot);
        assert_eq!(app.selected, Some(42));
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), Action::Quit);
    }
}
