//! CPU cost of one policy decision (`Policy::decide`) and one listing
//! check (`Policy::visibility`) at 20, 200 and 2,000 rules.
//!
//! The policies are a realistic mix: rules spread over many targets and
//! teams, 70% naming exact tools, 20% tool globs, 10% with a CEL condition
//! on the arguments. The requests: a call an exact rule allows, a call a
//! CEL rule judges, a call no rule allows (every candidate looked at, then
//! default-deny), and a listing check.
//!
//! Run: `cargo bench -p hoop-broker --bench policy`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hoop_broker::policy::{Decision, ItemKind, ListingRequest, Policy, PolicyRequest};
use hoop_proto::{Identity, IdentityKind};
use serde_json::json;

/// Builds an `n`-rule policy. Rule `i` is for team `i % 10` on target
/// `svc{i % targets}`; one target has 20 rules whatever `n` is.
fn policy_text(n: usize) -> String {
    let targets = (n / 20).max(1);
    let mut s = String::new();
    for i in 0..n {
        let target = format!("svc{}", i % targets);
        let team = i % 10;
        let (tools, when) = match i % 10 {
            0..=6 => (format!("[\"tool_{i}\", \"read_{i}\"]"), None),
            7 | 8 => (format!("[\"get_{i}_*\", \"list_{i}_*\"]"), None),
            _ => (
                format!("[\"pay_{i}\"]"),
                Some("args.amount < 10000 && identity.kind == 'human'"),
            ),
        };
        let action = match i % 13 {
            0 => "deny",
            1 => "approve",
            _ => "allow",
        };
        let _ = writeln!(
            s,
            "[[rules]]\nname = \"r{i}\"\ngroups = [\"team{team}\"]\ntargets = [\"{target}\"]\ntools = {tools}\naction = \"{action}\""
        );
        if action == "deny" {
            let _ = writeln!(s, "reason = \"blocked\"");
        }
        if let Some(w) = when {
            let _ = writeln!(s, "when = \"{w}\"");
        }
        s.push('\n');
    }
    // A few organisation-wide rules every call sees.
    s.push_str(
        "[[rules]]\nname = \"no-destructive\"\nanyone = true\ntools = [\"delete_*\", \"drop_*\"]\naction = \"deny\"\nreason = \"blocked\"\n\n\
         [[rules]]\nname = \"auditors-read\"\ngroups = [\"audit\"]\ntargets = [\"svc*\"]\ntools = [\"read_*\"]\naction = \"allow\"\n",
    );
    s
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy");
    for n in [20usize, 200, 2_000] {
        let text = policy_text(n);
        let policy = Policy::parse(&text, "bench").expect("the bench policy loads");
        let targets = (n / 20).max(1);
        // Rule 2: exact tools, team 2, allow. Rule 9: CEL, team 9.
        let id = |team: usize| Identity {
            subject: "alice".into(),
            email: Some("alice@bank.example".into()),
            groups: vec![format!("team{team}"), "staff".into()],
            issuer: "https://idp.bank.example".into(),
            kind: IdentityKind::Human,
        };
        let (alice2, alice9) = (id(2), id(9));
        let t2 = format!("svc{}", 2 % targets);
        let t9 = format!("svc{}", 9 % targets);
        let args = json!({"amount": 500, "to": "GB00TEST"});

        let exact = PolicyRequest {
            identity: &alice2,
            target: &t2,
            method: "tools/call",
            name: Some("tool_2"),
            arguments: Some(&args),
        };
        assert_eq!(policy.decide(&exact), Decision::Allow { rule: "r2".into() });
        let cel = PolicyRequest {
            identity: &alice9,
            target: &t9,
            method: "tools/call",
            name: Some("pay_9"),
            arguments: Some(&args),
        };
        assert_eq!(policy.decide(&cel), Decision::Allow { rule: "r9".into() });
        let miss = PolicyRequest {
            identity: &alice2,
            target: &t2,
            method: "tools/call",
            name: Some("unknown_tool"),
            arguments: Some(&args),
        };
        assert!(matches!(policy.decide(&miss), Decision::Deny { .. }));
        let listing = ListingRequest {
            identity: &alice9,
            target: &t9,
            kind: ItemKind::Tool,
            name: "pay_9",
        };

        g.bench_with_input(BenchmarkId::new("decide_exact", n), &exact, |b, r| {
            b.iter(|| black_box(policy.decide(black_box(r))))
        });
        g.bench_with_input(BenchmarkId::new("decide_cel", n), &cel, |b, r| {
            b.iter(|| black_box(policy.decide(black_box(r))))
        });
        g.bench_with_input(BenchmarkId::new("decide_default_deny", n), &miss, |b, r| {
            b.iter(|| black_box(policy.decide(black_box(r))))
        });
        g.bench_with_input(BenchmarkId::new("visibility", n), &listing, |b, r| {
            b.iter(|| black_box(policy.visibility(black_box(r))))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
