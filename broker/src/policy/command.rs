//! `hoop-broker policy check|explain`: validate a policy file and see what
//! it decides for one identity and one message, without a running broker.
//!
//! Exit codes, so scripts and CI can gate on a policy change:
//! `check`: 0 valid and no findings, 1 valid with findings, 2 invalid file.
//! `explain`: 0 allow, 5 deny, 6 approval required, 2 invalid file or input.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{ArgGroup, Subcommand, ValueEnum};
use hoop_proto::{Identity, IdentityKind};
use serde_json::json;

use super::{
    ConditionOutcome, Decision, ItemKind, ListingRequest, Policy, PolicyRequest, Visibility,
};

/// Largest `--args` accepted.
const MAX_ARGS_BYTES: usize = 1024 * 1024;

pub const EXIT_ALLOW: u8 = 0;
pub const EXIT_FINDINGS: u8 = 1;
pub const EXIT_INVALID: u8 = 2;
pub const EXIT_DENY: u8 = 5;
pub const EXIT_APPROVE: u8 = 6;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    Human,
    Workload,
}

// Parsed once per process, so the size gap between variants costs nothing;
// struct-like variants keep `PolicyCommand::Explain { .. }` easy to build.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file and report rules that cannot do what they say
    /// (exit 0 clean, 1 findings, 2 invalid).
    #[command(
        after_help = "Examples:\n  hoop-broker policy check policy.toml\n  hoop-broker policy check policy.toml --config broker.toml --json"
    )]
    Check {
        file: PathBuf,
        /// The broker's config: the masking profiles rules name must be
        /// defined in it (without it, only their spelling is checked).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the decision for one identity and message, the rule that made
    /// it and every rule that applied (exit 0 allow, 5 deny, 6 approve, 2
    /// invalid file or input).
    #[command(
        group(ArgGroup::new("item").args(["tool", "resource", "prompt"])),
        after_help = "Examples:\n  hoop-broker policy explain policy.toml --subject alice --groups eng --target demo --tool delete_model\n  hoop-broker policy explain policy.toml --subject workload:ci --target models --tool deploy_model --json"
    )]
    Explain {
        file: PathBuf,
        /// The caller's subject (`workload:NAME` for a workload).
        #[arg(long)]
        subject: String,
        /// The caller's groups, comma separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Human or workload (default: workload when the subject starts
        /// with `workload:`, else human).
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
        #[arg(long, default_value = "explain")]
        issuer: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        target: String,
        /// JSON-RPC method (default: tools/call, or resources/read with
        /// --resource, prompts/get with --prompt).
        #[arg(long)]
        method: Option<String>,
        #[arg(long, value_name = "NAME")]
        tool: Option<String>,
        #[arg(long, value_name = "URI")]
        resource: Option<String>,
        #[arg(long, value_name = "NAME")]
        prompt: Option<String>,
        /// The call's arguments, a JSON object.
        #[arg(long, value_name = "JSON")]
        args: Option<String>,
        /// The broker's config, to check that the masking profile the
        /// deciding rule names is defined.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: PolicyCommand) -> Result<ExitCode> {
    match cmd {
        PolicyCommand::Check { file, config, json } => {
            let policy = match load(&file, config.as_deref()) {
                Ok(p) => p,
                Err(e) => return Ok(invalid(&e, json)),
            };
            if config.is_none() && !json {
                let named: Vec<&str> = policy
                    .masking_profiles()
                    .map(|(_, p)| p)
                    .filter(|p| *p != "default")
                    .collect();
                if !named.is_empty() {
                    eprintln!("note: rules name masking profiles ({}); pass --config FILE to check that the broker's config defines them", named.join(", "));
                }
            }
            let findings = policy.lint();
            if json {
                println!(
                    "{}",
                    json!({"valid": true, "rules": policy.rule_count(), "findings": findings})
                );
            } else {
                println!("{}: {} rules, valid", file.display(), policy.rule_count());
                for f in &findings {
                    println!("warning: {f}");
                }
            }
            Ok(ExitCode::from(if findings.is_empty() {
                EXIT_ALLOW
            } else {
                EXIT_FINDINGS
            }))
        }
        PolicyCommand::Explain {
            file,
            subject,
            groups,
            kind,
            issuer,
            email,
            target,
            method,
            tool,
            resource,
            prompt,
            args,
            config,
            json,
        } => {
            let policy = match load(&file, config.as_deref()) {
                Ok(p) => p,
                Err(e) => return Ok(invalid(&e, json)),
            };
            let arguments = match args.as_deref().map(parse_args).transpose() {
                Ok(a) => a,
                Err(e) => return Ok(invalid(&e, json)),
            };
            let kind = match kind {
                Some(KindArg::Workload) => IdentityKind::Workload,
                Some(KindArg::Human) => IdentityKind::Human,
                None if subject.starts_with("workload:") => IdentityKind::Workload,
                None => IdentityKind::Human,
            };
            let identity = Identity {
                subject,
                email,
                groups: groups.into_iter().filter(|g| !g.is_empty()).collect(),
                issuer,
                kind,
            };
            let (item_kind, name) = match (tool, resource, prompt) {
                (Some(t), _, _) => (Some(ItemKind::Tool), Some(t)),
                (_, Some(r), _) => (Some(ItemKind::Resource), Some(r)),
                (_, _, Some(p)) => (Some(ItemKind::Prompt), Some(p)),
                _ => (None, None),
            };
            let method = method.unwrap_or_else(|| {
                match item_kind {
                    Some(ItemKind::Resource | ItemKind::ResourceTemplate) => "resources/read",
                    Some(ItemKind::Prompt) => "prompts/get",
                    _ => "tools/call",
                }
                .to_owned()
            });
            let req = PolicyRequest {
                identity: &identity,
                target: &target,
                method: &method,
                name: name.as_deref(),
                arguments: arguments.as_ref(),
            };
            let ex = policy.explain(&req);
            let listing = match (item_kind, name.as_deref()) {
                (Some(kind), Some(name)) => Some(policy.visibility(&ListingRequest {
                    identity: &identity,
                    target: &target,
                    kind,
                    name,
                })),
                _ => None,
            };
            print_explanation(&ex, listing.as_ref(), json);
            Ok(ExitCode::from(match ex.decision {
                Decision::Allow { .. } => EXIT_ALLOW,
                Decision::Deny { .. } => EXIT_DENY,
                Decision::Approve { .. } => EXIT_APPROVE,
            }))
        }
    }
}

/// The policy at `file`; with `config`, also refused when it names a
/// masking profile that config does not define, as the broker would.
fn load(file: &std::path::Path, config: Option<&std::path::Path>) -> Result<Policy> {
    let policy = Policy::load(file)?;
    if let Some(path) = config {
        let config = crate::config::BrokerConfig::load(path)?;
        if config.masking.enabled {
            let defined: Vec<&str> = config.masking.profiles.keys().map(String::as_str).collect();
            crate::masking::check_profile_names(&policy, &defined)
                .map_err(|why| anyhow::anyhow!("{}: {why} ({})", file.display(), path.display()))?;
        }
    }
    Ok(policy)
}

fn parse_args(s: &str) -> Result<serde_json::Value> {
    if s.len() > MAX_ARGS_BYTES {
        bail!("--args: longer than {MAX_ARGS_BYTES} bytes");
    }
    let v: serde_json::Value =
        serde_json::from_str(s).map_err(|e| anyhow::anyhow!("--args: not JSON: {e}"))?;
    if !v.is_object() {
        bail!("--args: must be a JSON object");
    }
    Ok(v)
}

fn invalid(e: &anyhow::Error, json: bool) -> ExitCode {
    if json {
        println!("{}", json!({"valid": false, "error": format!("{e:#}")}));
    } else {
        eprintln!("error: {e:#}");
    }
    ExitCode::from(EXIT_INVALID)
}

fn print_explanation(ex: &super::Explanation, listing: Option<&Visibility>, json: bool) {
    let (decision, reason) = match &ex.decision {
        Decision::Allow { .. } => ("allow", None),
        Decision::Deny { reason, .. } => ("deny", Some(reason.as_str())),
        Decision::Approve { .. } => ("approve", None),
    };
    // What the call returns is masked with this profile; a refused call
    // returns nothing.
    let masking = match (&ex.decision, &ex.masking) {
        (Decision::Deny { .. }, _) => None,
        (_, Some(p)) => Some(p.to_string()),
        (_, None) => Some("default".to_owned()),
    };
    let listing_text = listing.map(|v| match v {
        Visibility::Allowed => "shown".to_owned(),
        Visibility::Hidden => "hidden".to_owned(),
        Visibility::NeedsApproval { rule } => format!("shown, needs approval (rule {rule})"),
    });
    if json {
        let rules: Vec<_> = ex
            .rules
            .iter()
            .map(|m| {
                let (cond, error) = match &m.condition {
                    None => (serde_json::Value::Null, None),
                    Some(ConditionOutcome::True) => (json!(true), None),
                    Some(ConditionOutcome::False) => (json!(false), None),
                    Some(ConditionOutcome::Error(e)) => (json!("error"), Some(e.as_str())),
                };
                json!({"rule": m.rule, "action": m.action, "condition": cond, "error": error, "matched": m.matched()})
            })
            .collect();
        println!(
            "{}",
            json!({
                "decision": decision,
                "rule": ex.decision.rule(),
                "reason": reason,
                "masking": masking,
                "listing": listing.map(|v| match v {
                    Visibility::Allowed => json!({"visibility": "allowed"}),
                    Visibility::Hidden => json!({"visibility": "hidden"}),
                    Visibility::NeedsApproval { rule } => json!({"visibility": "needs_approval", "rule": rule}),
                }),
                "rules": rules,
            })
        );
        return;
    }
    println!("decision: {decision}");
    println!("rule:     {}", ex.decision.rule());
    if let Some(r) = reason {
        println!("reason:   {r}");
    }
    if let Some(l) = listing_text {
        println!("listing:  {l}");
    }
    if let Some(m) = masking {
        println!("masking:  {m}");
    }
    if ex.rules.is_empty() {
        println!("rules that applied: none");
    } else {
        println!("rules that applied (who, target, method and name match):");
        for m in &ex.rules {
            let cond = match &m.condition {
                None => String::new(),
                Some(ConditionOutcome::True) => ", when: true".into(),
                Some(ConditionOutcome::False) => ", when: false (not matched)".into(),
                Some(ConditionOutcome::Error(e)) => format!(", when: error: {e}"),
            };
            println!("  {} ({}{cond})", m.rule, m.action);
        }
    }
}
