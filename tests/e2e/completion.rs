//! Shell completions: `hoop completion bash` and `hoop-broker completion
//! bash` produce scripts that bash itself (not our code) loads and uses to
//! complete subcommands.

use std::process::Command;
use std::time::Duration;

use hoop_e2e::*;

/// What bash completes for `words` (the last one being typed) with the
/// script of `binary` loaded.
fn complete(binary: &str, words: &[&str]) -> Vec<String> {
    let function = format!("_{}", binary.replace('-', "__"));
    let script = format!(
        "source <({} completion bash) || exit 3\n\
         COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE=\"{}\"; COMP_POINT=${{#COMP_LINE}}\n\
         {function} {binary} \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        bin(binary).display(),
        words.join(" "),
        words.len() - 1,
        words.join(" "),
    );
    let mut c = Command::new("bash");
    c.args(["-c", &script]);
    let out = run_bounded(c, Duration::from_secs(20));
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    out.stdout.lines().map(str::to_owned).collect()
}

#[test]
fn bash_completes_hoop_and_hoop_broker_subcommands() {
    assert_eq!(complete("hoop", &["hoop", "app"]), ["approve"]);
    assert_eq!(complete("hoop", &["hoop", "approve", "gr"]), ["grant"]);
    let audit = complete("hoop", &["hoop", "audit", "re"]);
    assert!(audit.contains(&"replay".to_owned()), "{audit:?}");
    let broker = complete("hoop-broker", &["hoop-broker", "rev"]);
    assert!(broker.contains(&"revoke".to_owned()), "{broker:?}");
    assert!(broker.contains(&"revocations".to_owned()), "{broker:?}");
}
