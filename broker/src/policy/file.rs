//! The policy file (TOML) and its compilation into [`Rule`]s.
//!
//! Everything a rule can get wrong is refused here, before a broker runs
//! with it: unknown keys (a typo would otherwise silently widen or narrow a
//! rule), a rule about nobody, globs that do not compile or are not NFC,
//! CEL that does not compile or reads unknown variables, an unknown action,
//! a `deny` without the reason its callers will see. Errors name the file
//! and line, and the rule and field.

use std::collections::HashSet;

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use toml::Spanned;
use unicode_normalization::is_nfc;

use super::cond::Condition;
use super::rule::{
    categories_of, Action, ApprovalSpec, Category, Patterns, Rule, Who, ITEM_METHODS,
};

/// Largest policy file read.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Most rules in one policy.
pub const MAX_RULES: usize = 10_000;
/// Most entries in one list of a rule.
pub const MAX_LIST: usize = 1_000;
/// Longest name, pattern, group, subject or reason.
pub const MAX_STRING: usize = 1_024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    rules: Vec<Spanned<RuleFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: String,
    anyone: Option<bool>,
    groups: Option<Vec<String>>,
    subjects: Option<Vec<String>>,
    workloads: Option<Vec<String>>,
    issuers: Option<Vec<String>>,
    targets: Option<Vec<String>>,
    methods: Option<Vec<String>>,
    tools: Option<Vec<String>>,
    resources: Option<Vec<String>>,
    prompts: Option<Vec<String>>,
    when: Option<String>,
    action: String,
    reason: Option<String>,
    /// The masking profile (`[masking.profiles.NAME]` of the broker's
    /// config) for what the calls this rule lets through return.
    masking: Option<String>,
    /// `approve` rules: the groups that may release the call.
    approvers: Option<Vec<String>>,
    /// `approve` rules: distinct approvers needed (default 1).
    quorum: Option<u32>,
    /// `approve` rules: how long a request waits (`90s`, `30m`, `2h`;
    /// default `1h`).
    expires: Option<String>,
    /// `approve` rules: only a person may approve (not a workload token).
    human_approver: Option<bool>,
    /// `approve` rules: the reason recorded when the client gives none.
    default_reason: Option<String>,
    /// `approve` rules: what an approval releases: `"call"` (the one call,
    /// the default) or a window (`"15m"`): the requester's calls of the
    /// tool on the target until it ends.
    grant: Option<String>,
    /// `approve` rules with a window: only calls with the approved
    /// arguments.
    pin_arguments: Option<bool>,
}

/// The approval fields of a rule, as written.
struct ApprovalFields {
    approvers: Option<Vec<String>>,
    quorum: Option<u32>,
    expires: Option<String>,
    human_approver: Option<bool>,
    default_reason: Option<String>,
    grant: Option<String>,
    pin_arguments: Option<bool>,
}

/// Most distinct approvers a rule may ask for.
pub const MAX_QUORUM: u32 = 10;
/// Longest a request may wait for its approvers: 7 days.
pub const MAX_EXPIRY_SECS: u64 = 7 * 24 * 3600;
/// When an `approve` rule does not say.
pub const DEFAULT_EXPIRY_SECS: u64 = 3600;

/// Names a decision can carry without a rule in the file.
pub const RESERVED_PREFIX: &str = "builtin:";
pub const DEFAULT_DENY: &str = "default-deny";

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

pub fn parse(text: &str, origin: &str, env: &cel::Env) -> Result<Vec<Rule>> {
    // toml's message already says "at line L, column C" and quotes the line.
    let file: PolicyFile = toml::from_str(text).map_err(|e| anyhow!("{origin}: {e}"))?;
    if file.rules.len() > MAX_RULES {
        bail!(
            "{origin}: {} rules; at most {MAX_RULES} are allowed",
            file.rules.len()
        );
    }
    let mut names = HashSet::new();
    let mut rules = Vec::with_capacity(file.rules.len());
    for (i, spanned) in file.rules.into_iter().enumerate() {
        let (line, col) = line_col(text, spanned.span().start);
        let raw = spanned.into_inner();
        let label = if raw.name.is_empty() {
            format!("rule #{}", i + 1)
        } else {
            format!("rule `{}`", raw.name)
        };
        let rule = compile_rule(raw, line, env)
            .map_err(|e| anyhow!("{origin}:{line}:{col}: {label}: {e}"))?;
        if !names.insert(rule.name.clone()) {
            bail!(
                "{origin}:{line}:{col}: {label}: another rule has the same name; decisions name their rule, so names must be unique"
            );
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// Checks a list field: present lists are non-empty, bounded, and (for
/// names the broker compares) NFC.
fn list(field: &str, v: Option<Vec<String>>, nfc: bool) -> Result<Option<Vec<String>>, String> {
    let Some(v) = v else { return Ok(None) };
    if v.is_empty() {
        return Err(format!(
            "`{field}` is an empty list, which matches nothing; remove it or name something"
        ));
    }
    if v.len() > MAX_LIST {
        return Err(format!(
            "`{field}` has {} entries; at most {MAX_LIST} are allowed",
            v.len()
        ));
    }
    for s in &v {
        if s.is_empty() {
            return Err(format!("`{field}` has an empty entry"));
        }
        if s.len() > MAX_STRING {
            return Err(format!(
                "`{field}` has an entry longer than {MAX_STRING} bytes"
            ));
        }
        if nfc && !is_nfc(s) {
            return Err(format!(
                "`{field}` entry {s:?} is not in Unicode NFC; names are compared exactly, so write it normalized"
            ));
        }
    }
    Ok(Some(v))
}

fn sorted(v: Option<Vec<String>>) -> Vec<String> {
    let mut v = v.unwrap_or_default();
    v.sort();
    v.dedup();
    v
}

fn compile_rule(r: RuleFile, line: usize, env: &cel::Env) -> Result<Rule, String> {
    if r.name.is_empty() || r.name.len() > 128 {
        return Err("`name` must be 1 to 128 bytes".into());
    }
    if r.name.starts_with(RESERVED_PREFIX) || r.name == DEFAULT_DENY {
        return Err(format!(
            "`name`: `{DEFAULT_DENY}` and names starting with `{RESERVED_PREFIX}` are reserved for the broker's own decisions"
        ));
    }
    let action = match r.action.as_str() {
        "allow" => Action::Allow,
        "deny" => Action::Deny,
        "approve" => Action::Approve,
        other => {
            return Err(format!(
                "`action`: unknown action `{other}` (allow, deny or approve)"
            ))
        }
    };
    let reason = match (action, r.reason) {
        (Action::Deny, None) => {
            return Err("`reason` is required for `deny`: it is what the caller is shown".into())
        }
        (Action::Deny, Some(s)) if s.trim().is_empty() || s.len() > MAX_STRING => {
            return Err(format!("`reason` must be 1 to {MAX_STRING} bytes"))
        }
        (Action::Deny, Some(s)) => Some(s),
        (_, Some(_)) => {
            return Err(format!(
                "`reason` is only shown for `deny`; remove it from this `{}` rule",
                action.as_str()
            ))
        }
        (_, None) => None,
    };
    let masking = match (action, r.masking) {
        (_, None) => None,
        (Action::Deny, Some(_)) => {
            return Err("`masking` names the profile for what an allowed call returns; a `deny` rule returns nothing, so remove it".into())
        }
        (_, Some(p)) if !is_profile_name(&p) => {
            return Err(format!(
                "`masking`: {p:?} is not a profile name (1 to 64 letters, digits, `-` or `_`, as in `[masking.profiles.NAME]`)"
            ))
        }
        (_, Some(p)) => Some(std::sync::Arc::from(p)),
    };

    let approval = approval_spec(
        action,
        ApprovalFields {
            approvers: r.approvers,
            quorum: r.quorum,
            expires: r.expires,
            human_approver: r.human_approver,
            default_reason: r.default_reason,
            grant: r.grant,
            pin_arguments: r.pin_arguments,
        },
    )?;

    // Who.
    let groups = list("groups", r.groups, false)?;
    let subjects = list("subjects", r.subjects, false)?;
    let workloads = list("workloads", r.workloads, false)?;
    let issuers = list("issuers", r.issuers, false)?;
    let anyone = match r.anyone {
        Some(false) => return Err("`anyone = false` means nothing; remove it and name `groups`, `subjects` or `workloads`".into()),
        Some(true) => true,
        None => false,
    };
    let named = groups.is_some() || subjects.is_some() || workloads.is_some();
    if anyone && named {
        return Err("`anyone = true` together with `groups`, `subjects` or `workloads` is ambiguous; use one".into());
    }
    if !anyone && !named {
        return Err("names nobody: set `groups`, `subjects` or `workloads`, or `anyone = true` for everyone".into());
    }
    if let Some(w) = workloads
        .iter()
        .flatten()
        .find(|w| w.starts_with("workload:"))
    {
        return Err(format!(
            "`workloads` entry {w:?}: write the workload name without the `workload:` prefix"
        ));
    }

    // What.
    let targets = list("targets", r.targets, true)?.unwrap_or_else(|| vec!["*".into()]);
    let targets = Patterns::compile(&targets, false).map_err(|e| format!("`targets`: {e}"))?;
    let tools = list("tools", r.tools, true)?;
    let resources = list("resources", r.resources, true)?;
    let prompts = list("prompts", r.prompts, true)?;
    let compile_items = |field: &str, v: Option<Vec<String>>, sep: bool| {
        v.map(|v| Patterns::compile(&v, sep).map_err(|e| format!("`{field}`: {e}")))
            .transpose()
    };
    let tools = compile_items("tools", tools, false)?;
    let resources = compile_items("resources", resources, true)?;
    let prompts = compile_items("prompts", prompts, false)?;
    let has = |c: Category| match c {
        Category::Tool => tools.is_some(),
        Category::Resource => resources.is_some(),
        Category::Prompt => prompts.is_some(),
    };
    let names_items = Category::ALL.iter().any(|c| has(*c));

    let mut methods: Vec<String> = match list("methods", r.methods, true)? {
        Some(m) => {
            if names_items {
                // Item fields constrain the name of an item method; a method
                // that reaches no item of a named kind could never match.
                for method in &m {
                    let cats = categories_of(method);
                    if cats.is_empty() {
                        return Err(format!(
                            "`methods`: `{method}` names no tool, resource or prompt, so it cannot be combined with `tools`, `resources` or `prompts`; put it in a rule of its own"
                        ));
                    }
                    if !cats.iter().any(|c| has(*c)) {
                        let want: Vec<&str> = cats.iter().map(|c| c.field()).collect();
                        return Err(format!(
                            "`methods`: `{method}` reaches {} but this rule names none",
                            want.join(" or ")
                        ));
                    }
                }
            }
            m
        }
        None if names_items => Category::ALL
            .iter()
            .filter(|c| has(**c))
            .flat_map(|c| c.default_methods().iter().map(|m| (*m).to_owned()))
            .collect(),
        None => ITEM_METHODS.iter().map(|m| (*m).to_owned()).collect(),
    };
    methods.sort();
    methods.dedup();

    // When.
    let when = match r.when {
        None => None,
        Some(src) => Some(Condition::compile(env, &src).map_err(|e| format!("`when` {e}"))?),
    };
    Ok(Rule {
        name: r.name,
        line,
        who: Who {
            anyone,
            groups: sorted(groups),
            subjects: sorted(subjects),
            workloads: sorted(workloads),
            issuers: sorted(issuers),
        },
        targets,
        methods,
        tools,
        resources,
        prompts,
        when,
        action,
        reason,
        masking,
        approval,
    })
}

/// The approval fields: required (`approvers`) and allowed only on an
/// `approve` rule, each within its bounds.
fn approval_spec(
    action: Action,
    f: ApprovalFields,
) -> Result<Option<std::sync::Arc<ApprovalSpec>>, String> {
    if action != Action::Approve {
        let given = [
            ("approvers", f.approvers.is_some()),
            ("quorum", f.quorum.is_some()),
            ("expires", f.expires.is_some()),
            ("human_approver", f.human_approver.is_some()),
            ("default_reason", f.default_reason.is_some()),
            ("grant", f.grant.is_some()),
            ("pin_arguments", f.pin_arguments.is_some()),
        ];
        if let Some((field, _)) = given.iter().find(|(_, set)| *set) {
            return Err(format!(
                "`{field}` is only read on an `approve` rule; remove it from this `{}` rule",
                action.as_str()
            ));
        }
        return Ok(None);
    }
    let Some(approvers) = list("approvers", f.approvers, false)? else {
        return Err("an `approve` rule needs `approvers`: the groups whose members may release its calls (for example `approvers = [\"ml-leads\"]`)".into());
    };
    let quorum = f.quorum.unwrap_or(1);
    if !(1..=MAX_QUORUM).contains(&quorum) {
        return Err(format!(
            "`quorum` must be 1 to {MAX_QUORUM} distinct approvers"
        ));
    }
    let duration = |field: &str, text: &str| {
        parse_duration(text)
            .filter(|s| (1..=MAX_EXPIRY_SECS).contains(s))
            .ok_or_else(|| {
                format!("`{field}`: {text:?} is not a duration from 1s to 7d (write `90s`, `30m`, `2h` or `1d`)")
            })
    };
    let expires_secs = match &f.expires {
        None => DEFAULT_EXPIRY_SECS,
        Some(text) => duration("expires", text)?,
    };
    let default_reason = match f.default_reason {
        Some(s) if s.trim().is_empty() || s.len() > MAX_STRING => {
            return Err(format!("`default_reason` must be 1 to {MAX_STRING} bytes"))
        }
        r => r,
    };
    let grant_window_secs = match f.grant.as_deref() {
        None | Some("call") => None,
        Some(text) => Some(
            duration("grant", text).map_err(|e| format!("{e}, or `\"call\"` for the one call"))?,
        ),
    };
    if f.pin_arguments.is_some() && grant_window_secs.is_none() {
        return Err("`pin_arguments` only applies to a `grant` window (a one-call approval is always bound to its arguments)".into());
    }
    Ok(Some(std::sync::Arc::new(ApprovalSpec {
        approvers: sorted(Some(approvers)),
        quorum,
        expires_secs,
        human_approver: f.human_approver.unwrap_or(false),
        default_reason,
        grant_window_secs,
        pin_arguments: f.pin_arguments.unwrap_or(false),
    })))
}

/// `90s`, `30m`, `2h`, `1d` in seconds; a bare number is seconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// Profile names as the broker's config may spell them.
fn is_profile_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
