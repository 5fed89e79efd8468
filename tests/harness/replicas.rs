//! Brokers that share the machine's PostgreSQL (127.0.0.1:5432, or
//! `HOOP_TEST_POSTGRES`): a store schema per test, dropped with its audit
//! log's schema when the test ends, and dev brokers on it that sign one
//! audit log with one shared key.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{free_tcp_port, free_udp_port, now_unix, run_bounded, tests_dir, Broker};

/// The PostgreSQL the replicas share.
pub fn postgres_url() -> String {
    std::env::var("HOOP_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The same PostgreSQL over TLS: by the name its certificate holds
/// (`localhost`), verified against that certificate (the machine's
/// PostgreSQL runs with `ssl = on` and a self-signed certificate, Debian's
/// default).
pub fn postgres_tls_url() -> String {
    let mut psql = Command::new("psql");
    psql.arg(postgres_url())
        .args(["-Atc", "SHOW ssl; SHOW ssl_cert_file"]);
    let out = run_bounded(psql, Duration::from_secs(20));
    let mut lines = out.stdout.lines();
    assert_eq!(
        lines.next(),
        Some("on"),
        "the PostgreSQL at {} must run with ssl = on (Debian's default): {}",
        postgres_url(),
        out.stderr
    );
    let cert = lines.next().unwrap_or("").to_owned();
    let url = postgres_url();
    let (scheme_user, rest) = url.split_once('@').unwrap();
    let (_, port_db) = rest.split_once(':').unwrap();
    format!("{scheme_user}@localhost:{port_db}?sslmode=require&sslrootcert={cert}")
}

/// A store schema and the audit log's beside it (`<schema>_audit`),
/// dropped at the end.
pub struct Schemas(pub String);

impl Schemas {
    /// A schema no other run uses: `prefix`, the process and the time.
    pub fn unique(prefix: &str) -> Self {
        Self(format!(
            "{prefix}_{}_{}",
            std::process::id(),
            now_unix() % 1_000_000
        ))
    }
}

impl Drop for Schemas {
    fn drop(&mut self) {
        let mut psql = Command::new("psql");
        psql.arg(postgres_url()).args([
            "-qc",
            &format!(
                "DROP SCHEMA IF EXISTS {0} CASCADE; DROP SCHEMA IF EXISTS {0}_audit CASCADE;",
                self.0
            ),
        ]);
        let _ = run_bounded(psql, Duration::from_secs(20));
    }
}

/// A dev broker in `dir` on the shared store under the demo's policy,
/// signing the one audit log with the shared `key`; `targets` is the
/// rest of its config.
pub fn replica(dir: &Path, schema: &str, key: &Path, targets: &str) -> Broker {
    let policy = tests_dir().join("../cli/src/demo_server/policy.toml");
    replica_with(dir, schema, key, &policy, "", targets)
}

/// A replica as [`replica`], under `policy`, with `audit` added to its
/// `[audit]` table.
pub fn replica_with(
    dir: &Path,
    schema: &str,
    key: &Path,
    policy: &Path,
    audit: &str,
    rest: &str,
) -> Broker {
    replica_at(&postgres_url(), dir, schema, key, policy, audit, rest)
}

/// A replica as [`replica_with`], reaching PostgreSQL at `url`.
pub fn replica_at(
    url: &str,
    dir: &Path,
    schema: &str,
    key: &Path,
    policy: &Path,
    audit: &str,
    rest: &str,
) -> Broker {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{}\"\nstore = {{ postgres = \"{}\", schema = \"{schema}\" }}\npolicy = \"{}\"\n[admin]\nlisten = \"127.0.0.1:{}\"\n[audit]\nsigning_key = \"{}\"\nreaders = [\"eng\"]\ncheckpoint_every = 5\n{audit}\n{rest}",
            free_udp_port(),
            url,
            policy.display(),
            admin_port(dir),
            key.display()
        ),
    )
    .unwrap();
    Broker::start_with(dir, config, dir.join("state"))
}

/// The admin port a replica in `dir` listens on (kept in a file there, so
/// a restarted replica finds it again).
pub fn admin_port(dir: &Path) -> u16 {
    let file = dir.join("admin-port");
    if let Ok(p) = std::fs::read_to_string(&file) {
        return p.trim().parse().unwrap();
    }
    let port = free_tcp_port();
    std::fs::write(&file, port.to_string()).unwrap();
    port
}
