//! `policy check`'s static findings: rules that load but cannot do what
//! their author meant. Each finding names the rule and says why, so the
//! author can fix the file before a broker runs it.

use cel::Env;
use hoop_proto::{Identity, IdentityKind};

use super::cond::{Scope, ScopeInput};
use super::rule::{has_arguments, is_plumbing, Action, Category, Rule};

pub fn lint(rules: &[Rule], env: &std::sync::Arc<Env>) -> Vec<String> {
    let mut out = Vec::new();
    if rules.iter().all(|r| r.action == Action::Deny) {
        out.push(
            "no rule allows or approves anything: every tool call, resource read and prompt is denied"
                .to_owned(),
        );
    }
    for r in rules {
        let head = format!("rule `{}` (line {})", r.name, r.line);
        if r.action != Action::Deny
            && !r.methods.is_empty()
            && r.methods.iter().all(|m| is_plumbing(m))
        {
            out.push(format!(
                "{head}: has no effect: {} {} protocol plumbing, allowed without a rule (only a deny rule can refuse it)",
                r.methods.join(", "),
                if r.methods.len() == 1 { "is" } else { "are" }
            ));
        }
        if let Some(m) = r.methods.iter().find(|m| m.contains(['*', '?', '['])) {
            out.push(format!(
                "{head}: `methods` entry `{m}` looks like a glob, but methods are compared exactly; list each method"
            ));
        }
        if let Some(c) = &r.when {
            let argless: Vec<&str> = r
                .methods
                .iter()
                .map(String::as_str)
                .filter(|m| !has_arguments(m))
                .collect();
            if c.reads_args && !argless.is_empty() {
                out.push(format!(
                    "{head}: `when` reads `args`, but {} {} no arguments (there `args` is always {{}}, so the condition sees nothing to judge)",
                    argless.join(", "),
                    if argless.len() == 1 { "carries" } else { "carry" }
                ));
            }
            if c.is_constant {
                // Constants can be judged now; any identity will do.
                let id = Identity {
                    subject: "lint".into(),
                    email: None,
                    groups: Vec::new(),
                    issuer: "lint".into(),
                    kind: IdentityKind::Human,
                };
                let scope = Scope::new(
                    env,
                    &ScopeInput {
                        identity: &id,
                        target: "",
                        method: "",
                        name: None,
                        arguments: None,
                    },
                );
                match c.eval(&scope) {
                    Ok(true) => out.push(format!("{head}: `when` is always true; remove it")),
                    Ok(false) => {
                        out.push(format!("{head}: can never match: `when` is always false"))
                    }
                    Err(e) => out.push(format!(
                        "{head}: `when` always fails ({e}), so the rule {}",
                        if r.action == Action::Allow {
                            "never allows"
                        } else {
                            "denies everything it covers"
                        }
                    )),
                }
            }
        }
        if r.action == Action::Deny && r.when.is_none() && denies_everything(r) {
            out.push(format!(
                "{head}: denies every tool, resource and prompt on every target to everyone; no allow or approve rule can take effect"
            ));
        }
        if r.action != Action::Deny {
            if let Some(d) = rules.iter().find(|d| shadows(d, r)) {
                out.push(format!(
                    "{head}: can never match: everything it names is denied to everyone by rule `{}`",
                    d.name
                ));
            }
        }
    }
    out
}

fn denies_everything(r: &Rule) -> bool {
    r.who.anyone
        && r.who.issuers.is_empty()
        && r.targets.matches_everything()
        && !r.names_items()
        && super::rule::ITEM_METHODS.iter().all(|m| r.covers_method(m))
}

/// Whether unconditional deny rule `d` covers all of rule `r`: everyone,
/// every target and method of `r`, and every item name `r` lists exactly.
/// Conservative: globs in `r` are not compared, so such rules are never
/// reported as shadowed.
fn shadows(d: &Rule, r: &Rule) -> bool {
    if d.action != Action::Deny || d.when.is_some() || !d.who.anyone || !d.who.issuers.is_empty() {
        return false;
    }
    if !r.methods.iter().all(|m| d.covers_method(m)) {
        return false;
    }
    let targets_covered = d.targets.matches_everything()
        || (r.targets.globs.is_none() && r.targets.literals.iter().all(|t| d.targets.matches(t)));
    if !targets_covered {
        return false;
    }
    if !d.names_items() {
        return true;
    }
    if !r.names_items() {
        return false;
    }
    Category::ALL
        .iter()
        .all(|c| match (r.items(*c), d.items(*c)) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(rp), Some(dp)) => rp.globs.is_none() && rp.literals.iter().all(|n| dp.matches(n)),
        })
}
