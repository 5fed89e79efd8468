//! Unit tests of the policy engine: precedence, globs, conditions, who,
//! both phases, names, methods, `policy check` findings, file errors, and
//! `policy explain`.

#![allow(clippy::unwrap_used)]

use hoop_proto::{Identity, IdentityKind};
use serde_json::{json, Value};

use super::*;

fn human(subject: &str, groups: &[&str]) -> Identity {
    Identity {
        subject: subject.into(),
        email: Some(format!("{subject}@bank.example")),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        issuer: "https://idp.bank.example".into(),
        kind: IdentityKind::Human,
    }
}

fn workload(name: &str, groups: &[&str]) -> Identity {
    Identity {
        subject: format!("workload:{name}"),
        email: None,
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        issuer: "https://token.actions.githubusercontent.com".into(),
        kind: IdentityKind::Workload,
    }
}

fn policy(text: &str) -> Policy {
    match Policy::parse(text, "test.toml") {
        Ok(p) => p,
        Err(e) => panic!("policy does not load: {e:#}"),
    }
}

fn load_err(text: &str) -> String {
    match Policy::parse(text, "test.toml") {
        Ok(_) => panic!("policy loaded but should not:\n{text}"),
        Err(e) => format!("{e:#}"),
    }
}

fn req<'a>(
    id: &'a Identity,
    target: &'a str,
    method: &'a str,
    name: Option<&'a str>,
    args: Option<&'a Value>,
) -> PolicyRequest<'a> {
    PolicyRequest {
        identity: id,
        target,
        method,
        name,
        arguments: args,
    }
}

fn tool(p: &Policy, id: &Identity, target: &str, name: &str, args: Option<&Value>) -> Decision {
    p.decide(&req(id, target, "tools/call", Some(name), args))
}

fn allow(rule: &str) -> Decision {
    Decision::Allow { rule: rule.into() }
}

fn denied_by(d: &Decision) -> Option<&str> {
    match d {
        Decision::Deny { rule, .. } => Some(rule),
        _ => None,
    }
}

fn reason(d: &Decision) -> &str {
    match d {
        Decision::Deny { reason, .. } => reason,
        _ => "",
    }
}

fn visible(p: &Policy, id: &Identity, target: &str, kind: ItemKind, name: &str) -> Visibility {
    p.visibility(&ListingRequest {
        identity: id,
        target,
        kind,
        name,
    })
}

const DEMO: &str = include_str!("../../../cli/src/demo_server/policy.toml");

#[test]
fn policy_is_send_and_sync() {
    fn assert<T: Send + Sync>() {}
    assert::<Policy>();
}

#[test]
fn allow_all_keeps_its_rule_name() {
    let p = Policy::allow_all();
    let alice = human("alice", &[]);
    assert_eq!(
        p.decide(&req(&alice, "t", "anything/at-all", None, None)),
        allow("builtin:allow-all (no policy file configured)")
    );
    assert_eq!(
        visible(&p, &alice, "t", ItemKind::Tool, "x"),
        Visibility::Allowed
    );
    assert!(p.lint().is_empty());
}

#[test]
fn demo_policy_decides_what_the_issue_asks() {
    let p = policy(DEMO);
    let alice = human("alice", &["eng"]);
    assert_eq!(tool(&p, &alice, "demo", "echo", None), allow("demo-basics"));
    assert_eq!(
        tool(&p, &alice, "demo", "get_customer", None),
        allow("eng-read")
    );
    assert_eq!(
        tool(&p, &alice, "demo", "deploy_model", None),
        Decision::Approve {
            rule: "deploy-needs-approval".into()
        }
    );
    for blocked in ["delete_model", "export_transactions"] {
        let d = tool(&p, &alice, "demo", blocked, None);
        assert_eq!(denied_by(&d), Some("no-destructive"));
        assert_eq!(
            reason(&d),
            "deleting models and bulk exports are blocked by policy"
        );
    }
    // bob (ml-leads) gets the basics but not the customer records.
    let bob = human("bob", &["ml-leads"]);
    assert_eq!(
        tool(&p, &bob, "demo", "slow_count", None),
        allow("demo-basics")
    );
    let d = tool(&p, &bob, "demo", "get_customer", None);
    assert_eq!(denied_by(&d), Some("default-deny"));
    assert!(reason(&d).contains("no rule allows bob to call tool `get_customer`"));
    // Listing shows exactly the allowed and approvable tools.
    let shown: Vec<(&str, Visibility)> = [
        "echo",
        "get_customer",
        "deploy_model",
        "delete_model",
        "export_transactions",
        "slow_count",
        "big_payload",
    ]
    .into_iter()
    .map(|t| (t, visible(&p, &alice, "demo", ItemKind::Tool, t)))
    .filter(|(_, v)| *v != Visibility::Hidden)
    .collect();
    assert_eq!(
        shown,
        vec![
            ("echo", Visibility::Allowed),
            ("get_customer", Visibility::Allowed),
            (
                "deploy_model",
                Visibility::NeedsApproval {
                    rule: "deploy-needs-approval".into()
                }
            ),
            ("slow_count", Visibility::Allowed),
            ("big_payload", Visibility::Allowed),
        ]
    );
    assert_eq!(
        p.decide(&req(
            &alice,
            "demo",
            "resources/read",
            Some("hoop-demo://policies/retention"),
            None
        )),
        allow("eng-docs")
    );
    assert!(p.lint().is_empty(), "{:?}", p.lint());
}

#[test]
fn deny_beats_approve_beats_allow_regardless_of_order() {
    let text = r#"
[[rules]]
name = "a-allow"
anyone = true
tools = ["t"]
action = "allow"

[[rules]]
name = "b-approve"
groups = ["g"]
tools = ["t"]
action = "approve"
approvers = ["leads"]

[[rules]]
name = "c-deny"
subjects = ["mallory"]
tools = ["t"]
action = "deny"
reason = "mallory may not"
"#;
    let p = policy(text);
    assert_eq!(
        tool(&p, &human("x", &[]), "any", "t", None),
        allow("a-allow")
    );
    assert_eq!(
        tool(&p, &human("x", &["g"]), "any", "t", None),
        Decision::Approve {
            rule: "b-approve".into()
        }
    );
    let d = tool(&p, &human("mallory", &["g"]), "any", "t", None);
    assert_eq!(denied_by(&d), Some("c-deny"));
    assert_eq!(reason(&d), "mallory may not");
}

#[test]
fn no_match_is_default_deny_and_says_why() {
    let p = policy(
        r#"
[[rules]]
name = "only-echo"
groups = ["eng"]
targets = ["demo"]
tools = ["echo"]
action = "allow"
"#,
    );
    let alice = human("alice", &["eng"]);
    // Other target, other tool, other person.
    for d in [
        tool(&p, &alice, "prod", "echo", None),
        tool(&p, &alice, "demo", "other", None),
        tool(&p, &human("bob", &["ops"]), "demo", "echo", None),
    ] {
        assert_eq!(denied_by(&d), Some("default-deny"));
        assert!(reason(&d).starts_with("no rule allows"), "{d:?}");
    }
}

#[test]
fn globs_for_tools_targets_resources_and_prompts() {
    let p = policy(
        r#"
[[rules]]
name = "reads"
groups = ["eng"]
targets = ["prod-*"]
tools = ["get_*", "list_{a,b}"]
action = "allow"

[[rules]]
name = "docs"
groups = ["eng"]
resources = ["file:///docs/*", "db://reports/**"]
action = "allow"

[[rules]]
name = "prompts"
groups = ["eng"]
prompts = ["summ?rize"]
action = "allow"
"#,
    );
    let a = human("alice", &["eng"]);
    assert_eq!(
        tool(&p, &a, "prod-eu", "get_customer", None),
        allow("reads")
    );
    assert_eq!(tool(&p, &a, "prod-eu", "list_b", None), allow("reads"));
    assert!(denied_by(&tool(&p, &a, "prod-eu", "list_c", None)).is_some());
    assert!(denied_by(&tool(&p, &a, "staging", "get_customer", None)).is_some());
    let read = |uri| p.decide(&req(&a, "t", "resources/read", Some(uri), None));
    assert_eq!(read("file:///docs/a.md"), allow("docs"));
    // `*` stops at `/` in resource URIs; `**` crosses it.
    assert!(denied_by(&read("file:///docs/private/a.md")).is_some());
    assert_eq!(read("db://reports/2026/q1"), allow("docs"));
    assert_eq!(
        p.decide(&req(&a, "t", "prompts/get", Some("summarize"), None)),
        allow("prompts")
    );
}

#[test]
fn names_are_case_sensitive_and_must_be_nfc() {
    let p = policy(
        r#"
[[rules]]
name = "cafe"
anyone = true
tools = ["café", "echo"]
action = "allow"

[[rules]]
name = "block-delete"
anyone = true
tools = ["delete_*"]
action = "deny"
reason = "no"
"#,
    );
    let a = human("alice", &[]);
    assert_eq!(tool(&p, &a, "t", "café", None), allow("cafe"));
    // A case variant is another tool that no rule names.
    assert_eq!(
        denied_by(&tool(&p, &a, "t", "Echo", None)),
        Some("default-deny")
    );
    assert_eq!(
        denied_by(&tool(&p, &a, "t", "ECHO", None)),
        Some("default-deny")
    );
    assert_eq!(
        denied_by(&tool(&p, &a, "t", "Delete_x", None)),
        Some("default-deny")
    );
    // The decomposed form of "café" is refused, never normalized into a match.
    let decomposed = "cafe\u{301}";
    assert_eq!(
        denied_by(&tool(&p, &a, "t", decomposed, None)),
        Some(NON_NFC_RULE)
    );
    assert_eq!(
        visible(&p, &a, "t", ItemKind::Tool, decomposed),
        Visibility::Hidden
    );
    // Policy globs must be NFC themselves.
    let e = load_err(
        "[[rules]]\nname = \"x\"\nanyone = true\ntools = [\"cafe\u{301}\"]\naction = \"allow\"\n",
    );
    assert!(e.contains("rule `x`") && e.contains("NFC"), "{e}");
}

#[test]
fn conditions_true_false_and_error() {
    let p = policy(
        r#"
[[rules]]
name = "small-transfers"
groups = ["payments"]
tools = ["transfer"]
when = "args.amount < 10000 && identity.kind == 'human'"
action = "allow"
"#,
    );
    let pay = human("carol", &["payments"]);
    let small = json!({"amount": 500});
    let big = json!({"amount": 50_000});
    let float = json!({"amount": 99.5});
    let text = json!({"amount": "lots"});
    let missing = json!({"to": "x"});
    assert_eq!(
        tool(&p, &pay, "bank", "transfer", Some(&small)),
        allow("small-transfers")
    );
    assert_eq!(
        tool(&p, &pay, "bank", "transfer", Some(&float)),
        allow("small-transfers")
    );
    assert_eq!(
        denied_by(&tool(&p, &pay, "bank", "transfer", Some(&big))),
        Some("default-deny")
    );
    // Errors deny, name the rule and say the condition failed.
    for bad in [&text, &missing] {
        let d = tool(&p, &pay, "bank", "transfer", Some(bad));
        assert_eq!(denied_by(&d), Some("small-transfers"), "{d:?}");
        assert!(reason(&d).contains("could not be evaluated"), "{d:?}");
    }
    let d = tool(&p, &pay, "bank", "transfer", None);
    assert_eq!(denied_by(&d), Some("small-transfers"));
    // Same group, but a workload: the condition is false.
    let ci = workload("ci", &["payments"]);
    assert_eq!(
        denied_by(&tool(&p, &ci, "bank", "transfer", Some(&small))),
        Some("default-deny")
    );
    // Listing: a condition on arguments counts as "could allow".
    assert_eq!(
        visible(&p, &pay, "bank", ItemKind::Tool, "transfer"),
        Visibility::Allowed
    );
}

#[test]
fn failing_condition_on_deny_or_approve_denies() {
    let p = policy(
        r#"
[[rules]]
name = "all"
anyone = true
tools = ["*"]
action = "allow"

[[rules]]
name = "no-prod-accounts"
anyone = true
tools = ["query"]
when = "args.account.startsWith('prod-')"
action = "deny"
reason = "production accounts are off limits"

[[rules]]
name = "big-needs-approval"
anyone = true
tools = ["pay"]
when = "args.amount > 1000"
action = "approve"
approvers = ["leads"]
"#,
    );
    let a = human("a", &[]);
    let ok = json!({"account": "dev-1"});
    let prod = json!({"account": "prod-1"});
    let bad = json!({"account": 7});
    assert_eq!(tool(&p, &a, "t", "query", Some(&ok)), allow("all"));
    assert_eq!(
        denied_by(&tool(&p, &a, "t", "query", Some(&prod))),
        Some("no-prod-accounts")
    );
    let d = tool(&p, &a, "t", "query", Some(&bad));
    assert_eq!(denied_by(&d), Some("no-prod-accounts"));
    assert!(reason(&d).contains("could not be evaluated"), "{d:?}");
    let d = tool(&p, &a, "t", "pay", Some(&json!({"amount": "x"})));
    assert_eq!(denied_by(&d), Some("big-needs-approval"));
    assert_eq!(
        tool(&p, &a, "t", "pay", Some(&json!({"amount": 5000}))),
        Decision::Approve {
            rule: "big-needs-approval".into()
        }
    );
    assert_eq!(
        tool(&p, &a, "t", "pay", Some(&json!({"amount": 5}))),
        allow("all")
    );
    // A deny whose condition reads arguments does not hide the tool.
    assert_eq!(
        visible(&p, &a, "t", ItemKind::Tool, "query"),
        Visibility::Allowed
    );
}

#[test]
fn conditions_see_identity_target_method_and_name() {
    let p = policy(
        r#"
[[rules]]
name = "vars"
anyone = true
tools = ["*"]
when = "target == 'demo' && method == 'tools/call' && name.startsWith('get_') && 'eng' in identity.groups && identity.email.endsWith('@bank.example') && identity.issuer != ''"
action = "allow"

[[rules]]
name = "comprehension"
anyone = true
tools = ["order"]
when = "args.items.all(i, i.qty < 5)"
action = "allow"
"#,
    );
    let a = human("alice", &["eng"]);
    assert_eq!(tool(&p, &a, "demo", "get_x", None), allow("vars"));
    assert!(denied_by(&tool(&p, &a, "other", "get_x", None)).is_some());
    let ok = json!({"items": [{"qty": 1}, {"qty": 4}]});
    let no = json!({"items": [{"qty": 1}, {"qty": 9}]});
    assert_eq!(
        tool(&p, &a, "demo", "order", Some(&ok)),
        allow("comprehension")
    );
    assert!(denied_by(&tool(&p, &a, "demo", "order", Some(&no))).is_some());
}

#[test]
fn deeply_nested_arguments_fail_conditions_that_read_them() {
    let p = policy(
        r#"
[[rules]]
name = "c"
anyone = true
tools = ["t"]
when = "has(args.x)"
action = "allow"
"#,
    );
    let mut v = json!(1);
    for _ in 0..40 {
        v = json!({ "x": v });
    }
    let d = tool(&p, &human("a", &[]), "t", "t", Some(&v));
    assert_eq!(denied_by(&d), Some("c"));
    assert!(reason(&d).contains("nested deeper"), "{d:?}");
}

#[test]
fn workloads_and_people_are_told_apart() {
    let p = policy(
        r#"
[[rules]]
name = "ci-deploys"
workloads = ["deployer"]
tools = ["deploy"]
action = "allow"

[[rules]]
name = "bob"
subjects = ["bob"]
tools = ["deploy"]
action = "allow"

[[rules]]
name = "okta-only"
groups = ["ops"]
issuers = ["https://idp.bank.example"]
tools = ["restart"]
action = "allow"
"#,
    );
    assert_eq!(
        tool(&p, &workload("deployer", &[]), "t", "deploy", None),
        allow("ci-deploys")
    );
    // A person whose subject merely looks like the workload's does not match.
    let impostor = human("workload:deployer", &[]);
    assert!(denied_by(&tool(&p, &impostor, "t", "deploy", None)).is_some());
    assert!(denied_by(&tool(&p, &workload("other", &[]), "t", "deploy", None)).is_some());
    assert_eq!(
        tool(&p, &human("bob", &[]), "t", "deploy", None),
        allow("bob")
    );
    assert_eq!(
        tool(&p, &human("o", &["ops"]), "t", "restart", None),
        allow("okta-only")
    );
    // Same group from another issuer does not count.
    assert!(denied_by(&tool(&p, &workload("x", &["ops"]), "t", "restart", None)).is_some());
}

#[test]
fn plumbing_passes_without_rules_and_only_deny_rules_touch_it() {
    let p = policy(
        r#"
[[rules]]
name = "x"
anyone = true
tools = ["x"]
action = "allow"

[[rules]]
name = "no-logging-for-ci"
workloads = ["ci"]
methods = ["logging/setLevel"]
action = "deny"
reason = "CI may not change log levels"
"#,
    );
    let a = human("a", &[]);
    for m in [
        "initialize",
        "notifications/initialized",
        "notifications/cancelled",
        "ping",
        "server/discover",
        "logging/setLevel",
        "tools/list",
        "resources/list",
        "resources/templates/list",
        "prompts/list",
        "subscriptions/listen",
        "tasks/get",
        "tasks/list",
        "tasks/update",
        "tasks/cancel",
        "tasks/result",
        "",
    ] {
        assert_eq!(
            p.decide(&req(&a, "t", m, None, None)),
            allow(PLUMBING_RULE),
            "{m}"
        );
    }
    let ci = workload("ci", &[]);
    assert_eq!(
        denied_by(&p.decide(&req(&ci, "t", "logging/setLevel", None, None))),
        Some("no-logging-for-ci")
    );
}

#[test]
fn item_methods_and_unknown_methods_need_a_rule() {
    let p = policy(
        r#"
[[rules]]
name = "everything-on-dev"
anyone = true
targets = ["dev"]
action = "allow"

[[rules]]
name = "custom"
groups = ["eng"]
methods = ["acme/reindex"]
action = "allow"
"#,
    );
    let a = human("a", &["eng"]);
    let b = human("b", &[]);
    // A rule with no "what" covers every tool, resource and prompt...
    for m in [
        "tools/call",
        "resources/read",
        "resources/subscribe",
        "prompts/get",
        "completion/complete",
    ] {
        assert_eq!(
            p.decide(&req(&b, "dev", m, Some("anything"), None)),
            allow("everything-on-dev"),
            "{m}"
        );
        assert!(denied_by(&p.decide(&req(&b, "prod", m, Some("anything"), None))).is_some());
    }
    // ...but not an unknown method, which needs a rule that lists it.
    let d = p.decide(&req(&b, "dev", "acme/reindex", None, None));
    assert_eq!(denied_by(&d), Some("default-deny"));
    assert!(reason(&d).contains("lists it in `methods`"), "{d:?}");
    assert_eq!(
        p.decide(&req(&a, "prod", "acme/reindex", None, None)),
        allow("custom")
    );
    assert!(denied_by(&p.decide(&req(&a, "prod", "acme/other", None, None))).is_some());
    // An item method without a name is refused.
    assert!(denied_by(&p.decide(&req(&a, "dev", "tools/call", None, None))).is_some());
}

#[test]
fn completion_is_judged_as_use_of_the_prompt_or_resource() {
    let p = policy(
        r#"
[[rules]]
name = "prompts"
anyone = true
prompts = ["*"]
action = "allow"

[[rules]]
name = "no-secret-prompt"
anyone = true
prompts = ["secret"]
action = "deny"
reason = "blocked"
"#,
    );
    let a = human("a", &[]);
    let complete = |n| p.decide(&req(&a, "t", "completion/complete", Some(n), None));
    assert_eq!(complete("open"), allow("prompts"));
    assert_eq!(denied_by(&complete("secret")), Some("no-secret-prompt"));
}

#[test]
fn visibility_in_the_listing_phase() {
    let p = policy(
        r#"
[[rules]]
name = "read"
groups = ["eng"]
tools = ["a", "b", "c", "d", "e"]
action = "allow"

[[rules]]
name = "b-approve"
groups = ["eng"]
tools = ["b"]
action = "approve"
approvers = ["leads"]

[[rules]]
name = "c-deny"
anyone = true
tools = ["c"]
action = "deny"
reason = "no"

[[rules]]
name = "d-deny-big"
anyone = true
tools = ["d"]
when = "args.n > 5"
action = "deny"
reason = "too big"

[[rules]]
name = "e-deny-workloads"
anyone = true
tools = ["e"]
when = "identity.kind == 'workload'"
action = "deny"
reason = "people only"

[[rules]]
name = "f-approve-big"
groups = ["eng"]
tools = ["f"]
when = "args.n > 5"
action = "approve"
approvers = ["leads"]

[[rules]]
name = "templates"
groups = ["eng"]
resources = ["db://customers/*"]
action = "allow"
"#,
    );
    let a = human("a", &["eng"]);
    let w = workload("w", &["eng"]);
    let v = |id, name| visible(&p, id, "t", ItemKind::Tool, name);
    assert_eq!(v(&a, "a"), Visibility::Allowed);
    assert_eq!(
        v(&a, "b"),
        Visibility::NeedsApproval {
            rule: "b-approve".into()
        }
    );
    assert_eq!(v(&a, "c"), Visibility::Hidden);
    assert_eq!(v(&a, "d"), Visibility::Allowed);
    assert_eq!(v(&a, "e"), Visibility::Allowed);
    // A condition that reads no arguments is judged while listing.
    assert_eq!(v(&w, "e"), Visibility::Hidden);
    assert_eq!(
        v(&a, "f"),
        Visibility::NeedsApproval {
            rule: "f-approve-big".into()
        }
    );
    assert_eq!(v(&a, "zzz"), Visibility::Hidden);
    assert_eq!(v(&human("x", &[]), "a"), Visibility::Hidden);
    assert_eq!(
        visible(
            &p,
            &a,
            "t",
            ItemKind::ResourceTemplate,
            "db://customers/{id}"
        ),
        Visibility::Allowed
    );
    assert_eq!(
        visible(&p, &a, "t", ItemKind::Resource, "db://customers/42"),
        Visibility::Allowed
    );
    assert_eq!(
        visible(&p, &a, "t", ItemKind::Prompt, "a"),
        Visibility::Hidden
    );
}

#[test]
fn toml_errors_name_file_line_and_column() {
    let e = load_err("[[rules]]\nname = \"x\"\nanyone = true\naction = allow\n");
    assert!(e.contains("test.toml") && e.contains("line 4"), "{e}");
    assert!(e.contains("column"), "{e}");
    let e =
        load_err("[[rules]]\nname = \"x\"\nanyone = true\ntoolz = [\"a\"]\naction = \"allow\"\n");
    assert!(e.contains("line 4") && e.contains("toolz"), "{e}");
}

#[test]
fn rule_errors_name_the_rule_and_field() {
    let base = "[[rules]]\nname = \"r\"\nanyone = true\n";
    let cases: &[(&str, &str)] = &[
        ("tools = [\"[a\"]\naction = \"allow\"\n", "`tools`"),
        (
            "when = \"args.x <\"\naction = \"allow\"\n",
            "`when` does not compile",
        ),
        (
            "when = \"arg.x < 1\"\naction = \"allow\"\n",
            "unknown variable `arg`",
        ),
        ("action = \"permit\"\n", "unknown action `permit`"),
        ("action = \"deny\"\n", "`reason` is required"),
        (
            "action = \"allow\"\nreason = \"x\"\n",
            "only shown for `deny`",
        ),
        (
            "tools = []\naction = \"allow\"\n",
            "`tools` is an empty list",
        ),
        (
            "methods = [\"resources/read\"]\ntools = [\"a\"]\naction = \"allow\"\n",
            "reaches resources",
        ),
        (
            "methods = [\"acme/x\"]\ntools = [\"a\"]\naction = \"allow\"\n",
            "`acme/x` names no tool",
        ),
    ];
    for (tail, want) in cases {
        let e = load_err(&format!("{base}{tail}"));
        assert!(e.contains("test.toml:1:1: rule `r`"), "{e}");
        assert!(e.contains(want), "want {want:?} in {e}");
    }
    // Who is required.
    let e = load_err("[[rules]]\nname = \"r\"\ntools = [\"a\"]\naction = \"allow\"\n");
    assert!(e.contains("names nobody"), "{e}");
    let e =
        load_err("[[rules]]\nname = \"r\"\nanyone = true\ngroups = [\"g\"]\naction = \"allow\"\n");
    assert!(e.contains("ambiguous"), "{e}");
    let e =
        load_err("[[rules]]\nname = \"r\"\nworkloads = [\"workload:ci\"]\naction = \"allow\"\n");
    assert!(e.contains("without the `workload:` prefix"), "{e}");
    // Names are unique and not reserved; the second rule's line is named.
    let e = load_err("[[rules]]\nname = \"r\"\nanyone = true\naction = \"allow\"\n\n[[rules]]\nname = \"r\"\nanyone = true\naction = \"allow\"\n");
    assert!(
        e.contains("test.toml:6:1") && e.contains("same name"),
        "{e}"
    );
    let e = load_err("[[rules]]\nname = \"default-deny\"\nanyone = true\naction = \"allow\"\n");
    assert!(e.contains("reserved"), "{e}");
}

#[test]
fn load_reads_a_file_and_names_it() {
    let dir = std::env::temp_dir().join(format!("hoop-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, DEMO).unwrap();
    assert_eq!(Policy::load(&good).unwrap().rule_count(), 5);
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[rules]]\nname = 1\n").unwrap();
    let e = format!("{:#}", Policy::load(&bad).unwrap_err());
    assert!(e.contains("bad.toml") && e.contains("line 2"), "{e}");
    let e = format!("{:#}", Policy::load(&dir.join("missing.toml")).unwrap_err());
    assert!(e.contains("missing.toml"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lint_findings() {
    let p = policy(
        r#"
[[rules]]
name = "block-all"
anyone = true
action = "deny"
reason = "maintenance"

[[rules]]
name = "listing"
anyone = true
methods = ["tools/list"]
action = "allow"

[[rules]]
name = "read-args"
anyone = true
resources = ["file:///*"]
when = "args.size < 10"
action = "allow"

[[rules]]
name = "never"
anyone = true
tools = ["x"]
when = "1 > 2"
action = "allow"

[[rules]]
name = "glob-method"
anyone = true
methods = ["tools/*"]
action = "deny"
reason = "x"

[[rules]]
name = "shadowed"
groups = ["eng"]
tools = ["delete_model"]
action = "allow"

[[rules]]
name = "no-delete"
anyone = true
tools = ["delete_*"]
action = "deny"
reason = "no"
"#,
    );
    let findings = p.lint();
    let has = |rule: &str, text: &str| {
        findings
            .iter()
            .any(|f| f.contains(&format!("rule `{rule}`")) && f.contains(text))
    };
    assert!(has("block-all", "denies every tool"), "{findings:#?}");
    assert!(has("listing", "has no effect"), "{findings:#?}");
    assert!(has("read-args", "reads `args`"), "{findings:#?}");
    assert!(has("never", "always false"), "{findings:#?}");
    assert!(has("glob-method", "looks like a glob"), "{findings:#?}");
    assert!(
        has("shadowed", "denied to everyone by rule `block-all`"),
        "{findings:#?}"
    );

    let deny_only = policy(
        "[[rules]]\nname = \"d\"\nanyone = true\ntools = [\"x\"]\naction = \"deny\"\nreason = \"r\"\n",
    );
    assert!(deny_only
        .lint()
        .iter()
        .any(|f| f.contains("allows or approves anything")));
    assert!(policy("")
        .lint()
        .iter()
        .any(|f| f.contains("every tool call")));
}

#[test]
fn explain_lists_every_rule_that_applied() {
    let p = policy(
        r#"
[[rules]]
name = "all"
anyone = true
tools = ["*"]
action = "allow"

[[rules]]
name = "small"
anyone = true
tools = ["pay"]
when = "args.amount < 10"
action = "allow"

[[rules]]
name = "block"
subjects = ["m"]
tools = ["pay"]
action = "deny"
reason = "no"
"#,
    );
    let args = json!({"amount": 50});
    let ex = p.explain(&req(
        &human("m", &[]),
        "t",
        "tools/call",
        Some("pay"),
        Some(&args),
    ));
    assert_eq!(denied_by(&ex.decision), Some("block"));
    let seen: Vec<(&str, bool)> = ex
        .rules
        .iter()
        .map(|m| (m.rule.as_str(), m.matched()))
        .collect();
    assert_eq!(seen, vec![("all", true), ("small", false), ("block", true)]);
}

#[test]
fn explain_command_exit_codes() {
    use command::{run, PolicyCommand};
    use std::process::ExitCode;
    let dir = std::env::temp_dir().join(format!("hoop-policy-cmd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("demo.toml");
    std::fs::write(&file, DEMO).unwrap();
    let explain = |tool: &str, args: Option<&str>| PolicyCommand::Explain {
        file: file.clone(),
        subject: "alice".into(),
        groups: vec!["eng".into()],
        kind: None,
        issuer: "explain".into(),
        email: None,
        target: "demo".into(),
        method: None,
        tool: Some(tool.into()),
        resource: None,
        prompt: None,
        args: args.map(str::to_owned),
        config: None,
        json: true,
    };
    assert_eq!(run(explain("echo", None)).unwrap(), ExitCode::from(0));
    assert_eq!(
        run(explain("delete_model", None)).unwrap(),
        ExitCode::from(5)
    );
    assert_eq!(
        run(explain("deploy_model", None)).unwrap(),
        ExitCode::from(6)
    );
    assert_eq!(
        run(explain("echo", Some("[1]"))).unwrap(),
        ExitCode::from(2)
    );
    assert_eq!(
        run(PolicyCommand::Check {
            file: file.clone(),
            config: None,
            json: false
        })
        .unwrap(),
        ExitCode::from(0)
    );
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[rules]\n").unwrap();
    assert_eq!(
        run(PolicyCommand::Check {
            file: bad,
            config: None,
            json: false
        })
        .unwrap(),
        ExitCode::from(2)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn index_agrees_with_a_linear_scan_on_many_rules() {
    // Many targets and names; every decision must be the one a rule-by-rule
    // scan gives.
    let mut text = String::new();
    for i in 0..300 {
        let action = ["allow", "approve", "deny"][i % 3];
        let reason = match action {
            "deny" => "reason = \"r\"\n",
            "approve" => "approvers = [\"leads\"]\n",
            _ => "",
        };
        let target = if i % 7 == 0 {
            "\"*\"".to_owned()
        } else {
            format!("\"t{}\"", i % 5)
        };
        let tools = if i % 11 == 0 {
            format!("\"tool{}*\"", i % 13)
        } else {
            format!("\"tool{}\"", i % 17)
        };
        text.push_str(&format!(
            "[[rules]]\nname = \"r{i}\"\ngroups = [\"g{}\"]\ntargets = [{target}]\ntools = [{tools}]\naction = \"{action}\"\n{reason}\n",
            i % 4
        ));
    }
    let p = policy(&text);
    for g in 0..4 {
        let id = human("u", &[&format!("g{g}")]);
        for t in 0..6 {
            for n in 0..20 {
                let target = format!("t{t}");
                let name = format!("tool{n}");
                let got = tool(&p, &id, &target, &name, None);
                // Linear scan over the compiled rules.
                let mut best: Option<&rule::Rule> = None;
                for r in &p.rules {
                    let names = r.tools.as_ref().unwrap();
                    if r.applies(&id, &target, "tools/call")
                        && names.matches(&name)
                        && best.is_none_or(|b| r.action > b.action)
                    {
                        best = Some(r);
                    }
                }
                match best {
                    None => assert_eq!(denied_by(&got), Some("default-deny")),
                    Some(r) => assert_eq!(got.rule(), r.name, "{target} {name} g{g}"),
                }
            }
        }
    }
}

const PROFILES: &str = r#"
[[rules]]
name = "fraud-reads"
groups = ["fraud"]
tools = ["get_customer"]
action = "allow"
masking = "fraud"

[[rules]]
name = "engineers"
groups = ["eng"]
tools = ["*"]
action = "allow"

[[rules]]
name = "deploys"
groups = ["eng"]
tools = ["deploy_model"]
action = "approve"
approvers = ["leads"]
masking = "strict"
"#;

#[test]
fn the_deciding_rule_chooses_the_masking_profile() {
    let p = policy(PROFILES);
    let fraud = human("fay", &["fraud"]);
    let eng = human("eli", &["eng"]);
    let d = tool(&p, &fraud, "crm", "get_customer", None);
    assert_eq!(d, allow("fraud-reads"));
    assert_eq!(p.masking_profile(&d).map(|s| &**s), Some("fraud"));
    // A rule that names none: the broker's default.
    let d = tool(&p, &eng, "crm", "get_customer", None);
    assert_eq!(p.masking_profile(&d), None);
    // An approve rule's profile is the one the released call gets.
    let d = tool(&p, &eng, "crm", "deploy_model", None);
    assert_eq!(p.masking_profile(&d).map(|s| &**s), Some("strict"));
    // Refused: nothing is returned, so no profile.
    let d = tool(&p, &fraud, "crm", "deploy_model", None);
    assert!(denied_by(&d).is_some());
    assert_eq!(p.masking_profile(&d), None);
    let ex = p.explain(&req(
        &fraud,
        "crm",
        "tools/call",
        Some("get_customer"),
        None,
    ));
    assert_eq!(ex.masking.as_deref(), Some("fraud"));
    let mut named: Vec<_> = p.masking_profiles().collect();
    named.sort_unstable();
    assert_eq!(named, [("deploys", "strict"), ("fraud-reads", "fraud")]);
    // A policy that names no profile pays nothing and chooses none.
    let plain = policy(DEMO);
    assert_eq!(plain.masking_profiles().count(), 0);
}

#[test]
fn masking_on_a_deny_rule_or_a_bad_name_is_refused() {
    let e = load_err(
        r#"
[[rules]]
name = "no"
anyone = true
tools = ["x"]
action = "deny"
reason = "never"
masking = "fraud"
"#,
    );
    assert!(e.contains("`deny` rule returns nothing"), "{e}");
    let e = load_err(
        r#"
[[rules]]
name = "bad"
anyone = true
tools = ["x"]
action = "allow"
masking = "fraud team"
"#,
    );
    assert!(e.contains("is not a profile name"), "{e}");
}

#[test]
fn approve_rules_name_their_approvers_and_bounds() {
    let p = policy(
        r#"
[[rules]]
name = "deploy"
groups = ["eng"]
tools = ["deploy_model"]
action = "approve"
approvers = ["ml-leads", "cab"]
quorum = 2
expires = "30m"
human_approver = true
default_reason = "from an MCP client"
"#,
    );
    let spec = p.approval("deploy").unwrap();
    assert_eq!(spec.approvers, ["cab", "ml-leads"]);
    assert_eq!(spec.quorum, 2);
    assert_eq!(spec.expires_secs, 1800);
    assert!(spec.human_approver);
    assert_eq!(spec.default_reason.as_deref(), Some("from an MCP client"));
    assert_eq!(p.version().len(), 16);
    assert!(p.approval("other").is_none());

    let rule = |extra: &str, action: &str| {
        format!("[[rules]]\nname = \"r\"\nanyone = true\ntools = [\"t\"]\naction = \"{action}\"\n{extra}\n")
    };
    let e = load_err(&rule("", "approve"));
    assert!(e.contains("needs `approvers`"), "{e}");
    let e = load_err(&rule("approvers = [\"a\"]\nquorum = 0", "approve"));
    assert!(e.contains("`quorum` must be 1 to 10"), "{e}");
    let e = load_err(&rule("approvers = [\"a\"]\nexpires = \"soon\"", "approve"));
    assert!(e.contains("`expires`: \"soon\" is not a duration"), "{e}");
    let e = load_err(&rule("approvers = [\"a\"]\nexpires = \"8d\"", "approve"));
    assert!(e.contains("from 1s to 7d"), "{e}");
    let e = load_err(&rule("approvers = [\"a\"]", "allow"));
    assert!(
        e.contains("`approvers` is only read on an `approve` rule"),
        "{e}"
    );
    // Another policy text is another version: approvals bind it.
    let q = policy(&rule("approvers = [\"a\"]", "approve"));
    assert_ne!(p.version(), q.version());
    assert_eq!(q.approval("r").unwrap().expires_secs, 3600);
}

#[test]
fn durations_read_as_people_write_them() {
    assert_eq!(parse_duration("90s"), Some(90));
    assert_eq!(parse_duration("30m"), Some(1800));
    assert_eq!(parse_duration("2h"), Some(7200));
    assert_eq!(parse_duration("1d"), Some(86_400));
    assert_eq!(parse_duration("45"), Some(45));
    assert_eq!(parse_duration("1w"), None);
    assert_eq!(parse_duration(""), None);
    assert_eq!(parse_duration("m"), None);
}
