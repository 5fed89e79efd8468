//! The official conformance suite (`@modelcontextprotocol/conformance`),
//! run against server-everything directly and through hoop: every scenario
//! that passes direct must pass through hoop too.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use hoop_e2e::*;

/// Runs `conformance server --url URL` and returns the scenarios that passed.
fn passing(url: &str, dir: &std::path::Path) -> (BTreeSet<String>, BTreeSet<String>) {
    node_modules();
    let mut cmd = Command::new(tests_dir().join("node_modules/.bin/conformance"));
    cmd.current_dir(tests_dir())
        .args(["server", "--url", url, "-o"])
        .arg(dir);
    let out = run_bounded(cmd, Duration::from_secs(300));
    let (mut pass, mut fail) = (BTreeSet::new(), BTreeSet::new());
    for line in out.stdout.lines() {
        let (mark, rest) = match line.split_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let Some((name, _)) = rest.split_once(": ") else {
            continue;
        };
        match mark {
            "✓" => pass.insert(name.to_owned()),
            "✗" => fail.insert(name.to_owned()),
            _ => continue,
        };
    }
    assert!(
        !pass.is_empty() || !fail.is_empty(),
        "the conformance suite printed no summary:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    (pass, fail)
}

#[test]
fn every_scenario_passing_direct_passes_through_hoop() {
    let dir = scratch();
    let (_everything, upstream) = everything_http(dir.path());
    let (direct, direct_fail) = passing(&upstream, &dir.path().join("direct"));
    let broker = Broker::start(dir.path(), &http_target("everything", &upstream));
    let connect = Connect::start(dir.path(), &broker, "everything", &["--no-local-auth"]);
    let (via, via_fail) = passing(&connect.url, &dir.path().join("via-hoop"));
    eprintln!(
        "conformance direct: {} passed {direct:?}, {} failed",
        direct.len(),
        direct_fail.len()
    );
    eprintln!(
        "conformance via hoop: {} passed {via:?}, {} failed",
        via.len(),
        via_fail.len()
    );
    let lost: Vec<&String> = direct.difference(&via).collect();
    assert!(
        lost.is_empty(),
        "scenarios that pass direct but fail through hoop: {lost:?}"
    );
    assert!(
        direct.len() >= 10,
        "server-everything should pass at least 10 scenarios directly: {direct:?}"
    );
}
