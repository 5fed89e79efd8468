//! Policy: may this identity send this message to this target, and which
//! catalog items may it see?
//!
//! A policy is a list of rules (see `docs/policy.md`): who, what, an
//! optional CEL condition, and an action. It is judged in two phases:
//! [`Policy::decide`] for a message whose arguments are known, and
//! [`Policy::visibility`] for a catalog item being listed, where no
//! arguments exist yet. Precedence: any matching `deny` beats `approve`,
//! `approve` beats `allow`, and nothing matching is a denial by
//! `default-deny`. Every decision names the rule that made it.
//!
//! The compiled policy is immutable and shared (`Send + Sync`); a reload
//! builds a new one. Rules are indexed ([`index`]) so that a decision looks
//! only at rules that can apply, and runs CEL only for those.

pub mod command;
mod cond;
mod file;
mod index;
mod lint;
pub mod reload;
mod rule;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use hoop_proto::Identity;
use unicode_normalization::is_nfc;

use cond::{Scope, ScopeInput};
use index::Index;
use rule::{categories_of, is_plumbing, Action, Category, Rule};

pub use file::{parse_duration, DEFAULT_DENY};
pub use rule::has_arguments;
pub use rule::ApprovalSpec;

/// The rule name of every decision made without a policy file.
pub const ALLOW_ALL_RULE: &str = "builtin:allow-all (no policy file configured)";
/// The rule name under which protocol plumbing passes.
pub const PLUMBING_RULE: &str = "builtin:protocol";
/// The rule name of a refusal of a name that is not NFC.
pub const NON_NFC_RULE: &str = "builtin:non-nfc-name";

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

/// A message in the calling phase.
#[derive(Debug, Clone, Copy)]
pub struct PolicyRequest<'a> {
    pub identity: &'a Identity,
    pub target: &'a str,
    /// The JSON-RPC method from the body; `""` for a response (which is
    /// plumbing: it answers a request the server made).
    pub method: &'a str,
    /// `tools/call`: the tool name; `prompts/get`: the prompt name;
    /// `resources/read|subscribe|unsubscribe`: the URI;
    /// `completion/complete`: the ref's name or URI.
    pub name: Option<&'a str>,
    /// `tools/call` and `prompts/get` `arguments`, else `None`.
    pub arguments: Option<&'a serde_json::Value>,
}

/// What kind of catalog item is being listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Tool,
    Resource,
    ResourceTemplate,
    Prompt,
}

impl ItemKind {
    /// The method that uses an item of this kind, as the listing phase
    /// judges it.
    fn call_method(self) -> &'static str {
        match self {
            Self::Tool => "tools/call",
            Self::Resource | Self::ResourceTemplate => "resources/read",
            Self::Prompt => "prompts/get",
        }
    }

    fn category(self) -> Category {
        match self {
            Self::Tool => Category::Tool,
            Self::Resource | Self::ResourceTemplate => Category::Resource,
            Self::Prompt => Category::Prompt,
        }
    }
}

/// A catalog item in the listing phase.
#[derive(Debug, Clone, Copy)]
pub struct ListingRequest<'a> {
    pub identity: &'a Identity,
    pub target: &'a str,
    pub kind: ItemKind,
    /// Tool or prompt name, resource URI, or resource template's `uriTemplate`.
    pub name: &'a str,
}

/// Whether a listed item is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    Hidden,
    Allowed,
    NeedsApproval { rule: String },
}

/// How a rule fared in one decision, for `policy explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    pub rule: String,
    pub action: &'static str,
    /// `None`: the rule has no condition.
    pub condition: Option<ConditionOutcome>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionOutcome {
    True,
    False,
    Error(String),
}

impl RuleMatch {
    /// Whether the rule took part in the decision (no condition, a true
    /// one, or a failed one on a deny/approve rule, which counts as a deny).
    pub fn matched(&self) -> bool {
        !matches!(self.condition, Some(ConditionOutcome::False))
    }
}

/// A decision with the rules that applied to it (who, target, method and
/// name matched), in file order.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub decision: Decision,
    pub rules: Vec<RuleMatch>,
    /// The masking profile the deciding rule names (`None`: `default`).
    pub masking: Option<Arc<str>>,
}

/// Compiled rules, immutable.
pub struct Policy {
    rules: Vec<Rule>,
    index: Index,
    /// Rule name to the masking profile it names, for the rules that name
    /// one: most policies name none, and then a call pays nothing for it.
    masking: std::collections::HashMap<String, Arc<str>>,
    env: Arc<cel::Env>,
    allow_all: bool,
    origin: String,
    /// The first 16 hex digits of the text's SHA-256: which policy judged
    /// a call, as an approval binds it.
    version: String,
}

fn text_version(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("origin", &self.origin)
            .field("rules", &self.rules.len())
            .field("allow_all", &self.allow_all)
            .finish()
    }
}

/// The best action seen so far in a decision, with what made it.
struct Best<'r> {
    deny: Option<(&'r Rule, Option<String>)>,
    approve: Option<&'r Rule>,
    allow: Option<&'r Rule>,
    /// The first allow rule whose condition failed, to name in a refusal.
    failed_allow: Option<(&'r Rule, String)>,
}

impl Policy {
    /// No policy file configured: everything allowed under one named rule.
    pub fn allow_all() -> Self {
        Self {
            rules: Vec::new(),
            index: Index::empty(),
            masking: Default::default(),
            env: cond::env(),
            allow_all: true,
            origin: "builtin".into(),
            version: "builtin".into(),
        }
    }

    /// Reads and compiles a policy file.
    pub fn load(path: &Path) -> Result<Self> {
        use std::io::Read;
        let origin = path.display().to_string();
        let f = std::fs::File::open(path).with_context(|| format!("{origin}: cannot open"))?;
        let mut text = String::new();
        f.take(file::MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .with_context(|| format!("{origin}: cannot read (it must be UTF-8 text)"))?;
        if text.len() as u64 > file::MAX_FILE_BYTES {
            bail!("{origin}: larger than {} bytes", file::MAX_FILE_BYTES);
        }
        Self::parse(&text, &origin)
    }

    /// Compiles policy text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let env = cond::env();
        let rules = file::parse(text, origin, &env)?;
        let index = Index::build(&rules).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        let masking = rules
            .iter()
            .filter_map(|r| Some((r.name.clone(), r.masking.clone()?)))
            .collect();
        Ok(Self {
            rules,
            index,
            masking,
            env,
            allow_all: false,
            origin: origin.to_owned(),
            version: text_version(text),
        })
    }

    /// Which policy this is: a digest of its text.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// What the `approve` rule `rule` asks of its approvers; `None` for
    /// any other rule.
    pub fn approval(&self, rule: &str) -> Option<&Arc<ApprovalSpec>> {
        self.rules
            .iter()
            .find(|r| r.name == rule)
            .and_then(|r| r.approval.as_ref())
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Calling phase: may this identity send this message?
    pub fn decide(&self, req: &PolicyRequest<'_>) -> Decision {
        self.evaluate(req, None)
    }

    /// [`decide`](Self::decide), with every rule that applied.
    pub fn explain(&self, req: &PolicyRequest<'_>) -> Explanation {
        let mut rules = Vec::new();
        let decision = self.evaluate(req, Some(&mut rules));
        let masking = self.masking_profile(&decision).cloned();
        Explanation {
            decision,
            rules,
            masking,
        }
    }

    /// The masking profile for what a call returns: the one the rule that
    /// let it through names (`None`: the broker's `default`). A refused
    /// call returns nothing, so it has none.
    pub fn masking_profile(&self, decision: &Decision) -> Option<&Arc<str>> {
        match decision {
            Decision::Deny { .. } => None,
            _ if self.masking.is_empty() => None,
            d => self.masking.get(d.rule()),
        }
    }

    /// Every `(rule, profile)` the policy names, so the broker can refuse a
    /// policy that names a profile its config does not have.
    pub fn masking_profiles(&self) -> impl Iterator<Item = (&str, &str)> {
        self.rules
            .iter()
            .filter_map(|r| Some((r.name.as_str(), &**r.masking.as_ref()?)))
    }

    /// Listing phase: may the identity see and use this catalog item?
    pub fn visibility(&self, req: &ListingRequest<'_>) -> Visibility {
        if self.allow_all {
            return Visibility::Allowed;
        }
        if !is_nfc(req.name) {
            // It could never be called (see `decide`), so it is not shown.
            return Visibility::Hidden;
        }
        let method = req.kind.call_method();
        let mut cands = Vec::new();
        self.index
            .items(req.kind.category(), req.target, req.name, &mut cands);
        cands.sort_unstable();
        cands.dedup();
        let mut scope: Option<Scope<'_>> = None;
        let mut definite_approve: Option<&Rule> = None;
        let mut maybe_approve: Option<&Rule> = None;
        let mut could_allow = false;
        for rule in cands.iter().filter_map(|i| self.rules.get(*i as usize)) {
            if !rule.applies(req.identity, req.target, method) {
                continue;
            }
            // Certain: no condition, or one that reads no arguments and so
            // can be judged now. Otherwise the call is judged later.
            let certain = match &rule.when {
                None => Some(true),
                Some(c) if c.reads_args => None,
                Some(c) => {
                    let scope = scope.get_or_insert_with(|| {
                        Scope::new(
                            &self.env,
                            &ScopeInput {
                                identity: req.identity,
                                target: req.target,
                                method,
                                name: Some(req.name),
                                arguments: None,
                            },
                        )
                    });
                    match c.eval(scope) {
                        Ok(b) => Some(b),
                        // A failing condition refuses on deny and approve
                        // rules and never allows (as in `decide`).
                        Err(_) if rule.action == Action::Allow => Some(false),
                        Err(_) => return Visibility::Hidden,
                    }
                }
            };
            match (rule.action, certain) {
                (_, Some(false)) => {}
                (Action::Deny, Some(true)) => return Visibility::Hidden,
                // A deny with a condition on arguments does not hide.
                (Action::Deny, None) => {}
                (Action::Approve, Some(true)) => {
                    definite_approve.get_or_insert(rule);
                }
                (Action::Approve, None) => {
                    maybe_approve.get_or_insert(rule);
                }
                (Action::Allow, _) => could_allow = true,
            }
        }
        if let Some(r) = definite_approve {
            Visibility::NeedsApproval {
                rule: r.name.clone(),
            }
        } else if could_allow {
            Visibility::Allowed
        } else if let Some(r) = maybe_approve {
            Visibility::NeedsApproval {
                rule: r.name.clone(),
            }
        } else {
            Visibility::Hidden
        }
    }

    /// Static checks for `policy check`; empty = fine.
    pub fn lint(&self) -> Vec<String> {
        if self.allow_all {
            return Vec::new();
        }
        lint::lint(&self.rules, &self.env)
    }

    fn evaluate(
        &self,
        req: &PolicyRequest<'_>,
        mut trace: Option<&mut Vec<RuleMatch>>,
    ) -> Decision {
        if self.allow_all {
            return Decision::Allow {
                rule: ALLOW_ALL_RULE.into(),
            };
        }
        let method = req.method;
        let plumbing = method.is_empty() || is_plumbing(method);
        let cats = categories_of(method);
        let mut cands: Vec<u32> = Vec::new();
        if cats.is_empty() {
            cands.extend_from_slice(self.index.method(method));
        } else {
            let Some(name) = req.name else {
                return Decision::Deny {
                    rule: DEFAULT_DENY.into(),
                    reason: format!(
                        "{method} names no item (set params.name, or params.uri for a resource), so no rule can allow it"
                    ),
                };
            };
            if !is_nfc(name) {
                // Policy names are NFC; a non-NFC name could be a different
                // item to the upstream than to the policy, so it is refused
                // rather than normalized.
                return Decision::Deny {
                    rule: NON_NFC_RULE.into(),
                    reason: format!(
                        "{name:?} is not in Unicode normalization form C; send the NFC form"
                    ),
                };
            }
            for c in cats {
                self.index.items(*c, req.target, name, &mut cands);
            }
            cands.sort_unstable();
            cands.dedup();
        }

        let mut best = Best {
            deny: None,
            approve: None,
            allow: None,
            failed_allow: None,
        };
        let mut scope: Option<Scope<'_>> = None;
        let mut conditional: Vec<&Rule> = Vec::new();
        // Pass 1: rules without a condition, in file order.
        for rule in cands.iter().filter_map(|i| self.rules.get(*i as usize)) {
            if !rule.applies(req.identity, req.target, method) {
                continue;
            }
            // On plumbing only a deny counts: it passes without a rule.
            if plumbing && rule.action != Action::Deny {
                continue;
            }
            if rule.when.is_some() {
                conditional.push(rule);
                continue;
            }
            if let Some(t) = trace.as_deref_mut() {
                t.push(RuleMatch {
                    rule: rule.name.clone(),
                    action: rule.action.as_str(),
                    condition: None,
                });
            }
            record(&mut best, rule, None);
        }
        // Pass 2: conditions, only where they could change the outcome
        // (all of them when explaining).
        for rule in conditional {
            let settled = match rule.action {
                Action::Deny => best.deny.is_some(),
                // A failing condition on an approve rule denies, so another
                // approve having matched does not settle it.
                Action::Approve => best.deny.is_some(),
                Action::Allow => {
                    best.deny.is_some() || best.approve.is_some() || best.allow.is_some()
                }
            };
            if settled && trace.is_none() {
                continue;
            }
            let Some(c) = &rule.when else { continue };
            let scope = scope.get_or_insert_with(|| {
                Scope::new(
                    &self.env,
                    &ScopeInput {
                        identity: req.identity,
                        target: req.target,
                        method,
                        name: req.name,
                        arguments: req.arguments,
                    },
                )
            });
            let outcome = c.eval(scope);
            if let Some(t) = trace.as_deref_mut() {
                t.push(RuleMatch {
                    rule: rule.name.clone(),
                    action: rule.action.as_str(),
                    condition: Some(match &outcome {
                        Ok(true) => ConditionOutcome::True,
                        Ok(false) => ConditionOutcome::False,
                        Err(e) => ConditionOutcome::Error(e.clone()),
                    }),
                });
            }
            match outcome {
                Ok(true) => record(&mut best, rule, None),
                Ok(false) => {}
                Err(e) if rule.action == Action::Allow => {
                    if best.failed_allow.is_none() {
                        best.failed_allow = Some((rule, e));
                    }
                }
                // A failed condition on a deny or approve rule refuses: the
                // broker cannot tell whether the rule applies.
                Err(e) => record(&mut best, rule, Some(e)),
            }
        }
        if let Some(t) = trace {
            t.sort_by_key(|m| self.rules.iter().position(|r| r.name == m.rule));
        }

        if let Some((rule, error)) = best.deny {
            let reason = match (rule.action, error) {
                (Action::Deny, None) => rule.reason.clone().unwrap_or_default(),
                (Action::Deny, Some(e)) => format!(
                    "{} (the rule's condition could not be evaluated: {e}; a failed condition on a deny rule denies)",
                    rule.reason.as_deref().unwrap_or_default()
                ),
                (_, e) => format!(
                    "the condition of approve rule `{}` could not be evaluated ({}), so the call is denied",
                    rule.name,
                    e.unwrap_or_default()
                ),
            };
            return Decision::Deny {
                rule: rule.name.clone(),
                reason,
            };
        }
        if let Some(rule) = best.approve {
            return Decision::Approve {
                rule: rule.name.clone(),
            };
        }
        if let Some(rule) = best.allow {
            return Decision::Allow {
                rule: rule.name.clone(),
            };
        }
        if plumbing {
            return Decision::Allow {
                rule: PLUMBING_RULE.into(),
            };
        }
        if let Some((rule, e)) = best.failed_allow {
            return Decision::Deny {
                rule: rule.name.clone(),
                reason: format!(
                    "the condition of rule `{}` could not be evaluated ({e}), so it does not allow this call, and no other rule does",
                    rule.name
                ),
            };
        }
        Decision::Deny {
            rule: DEFAULT_DENY.into(),
            reason: no_rule_reason(req),
        }
    }
}

/// Folds one matching rule into the best action; `error` is set when the
/// rule counts because its condition failed (deny and approve rules).
fn record<'r>(best: &mut Best<'r>, rule: &'r Rule, error: Option<String>) {
    match (rule.action, error) {
        (Action::Deny, e) => {
            if best.deny.is_none() {
                best.deny = Some((rule, e));
            }
        }
        (Action::Approve, Some(e)) => {
            if best.deny.is_none() {
                best.deny = Some((rule, Some(e)));
            }
        }
        (Action::Approve, None) => {
            best.approve.get_or_insert(rule);
        }
        (Action::Allow, _) => {
            best.allow.get_or_insert(rule);
        }
    }
}

fn no_rule_reason(req: &PolicyRequest<'_>) -> String {
    let why = what_no_rule_allows(req);
    format!("{why}; `hoop targets` shows what you may use, and the policy's owner can add a rule")
}

fn what_no_rule_allows(req: &PolicyRequest<'_>) -> String {
    let who = &req.identity.subject;
    let target = req.target;
    match (req.method, req.name) {
        ("tools/call", Some(n)) => {
            format!("no rule allows {who} to call tool `{n}` on target `{target}`")
        }
        ("prompts/get", Some(n)) => {
            format!("no rule allows {who} to get prompt `{n}` on target `{target}`")
        }
        ("completion/complete", Some(n)) => format!(
            "no rule allows {who} to use prompt or resource `{n}` on target `{target}`"
        ),
        (m, Some(n)) => format!("no rule allows {who} {m} on `{n}` on target `{target}`"),
        (m, None) => format!(
            "no rule allows {who} to send {m} to target `{target}` (a method that is not protocol plumbing needs a rule that lists it in `methods`)"
        ),
    }
}
