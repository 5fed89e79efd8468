//! The shared suite on a real PostgreSQL (`HOOP_TEST_POSTGRES`, default
//! the machine's own at 127.0.0.1:5432, database `test`), one fresh schema
//! per store, dropped afterwards; and what only several writers show:
//! replicas appending to one log at once.

use std::sync::atomic::{AtomicU64, Ordering};

use tlog_tiles::{stored_hashes, tree_hash};

use super::*;
use crate::store::tests::{conformance_suite, Harness};
use crate::test_support::{events, MemoryHashes};
use crate::tree;
use postgres::NoTls;

/// Where the tests find PostgreSQL.
pub(crate) fn test_url() -> String {
    std::env::var("HOOP_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A schema name no other test (or test process) uses.
pub(crate) fn scratch_schema() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "t_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn admin() -> Client {
    postgres::Client::connect(&test_url(), NoTls)
        .unwrap_or_else(|e| panic!("PostgreSQL at {} (HOOP_TEST_POSTGRES): {e}", test_url()))
}

/// Drops the schemas it made when the test ends.
pub(crate) struct SchemaGuard(pub(crate) Vec<String>);

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&test_url(), NoTls) {
            for s in &self.0 {
                let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {s} CASCADE"));
            }
        }
    }
}

struct PostgresHarness {
    schemas: SchemaGuard,
}

impl PostgresHarness {
    fn new() -> Self {
        Self {
            schemas: SchemaGuard(Vec::new()),
        }
    }

    fn current(&self) -> &str {
        self.schemas.0.last().map(String::as_str).unwrap_or("none")
    }
}

impl Harness for PostgresHarness {
    fn fresh(&mut self) -> Box<dyn AuditStore> {
        self.schemas.0.push(scratch_schema());
        Box::new(PostgresStore::open(&test_url(), self.current(), Durability::Os).unwrap())
    }

    fn reopen(&mut self) -> Result<Box<dyn AuditStore>, StoreError> {
        Ok(Box::new(PostgresStore::open(
            &test_url(),
            self.current(),
            Durability::Fsync,
        )?))
    }

    fn drop_last_hash(&mut self) {
        admin()
            .batch_execute(&format!(
                "DELETE FROM {0}.hashes WHERE idx = (SELECT MAX(idx) FROM {0}.hashes)",
                self.current()
            ))
            .unwrap();
    }
}

mod conformance {
    use super::*;
    conformance_suite!(PostgresHarness::new());
}

/// Two replicas appending to one log at once: each batch gets its own
/// seqs, and the stored tree is the tree of the stored entries.
#[test]
fn replicas_appending_at_once_build_one_tree() {
    let guard = SchemaGuard(vec![scratch_schema()]);
    let schema = guard.0[0].clone();
    // Created once, before the replicas race.
    drop(PostgresStore::open(&test_url(), &schema, Durability::Os).unwrap());
    let writers: Vec<_> = (0..3u64)
        .map(|w| {
            let schema = schema.clone();
            std::thread::spawn(move || {
                let mut store = PostgresStore::open(&test_url(), &schema, Durability::Os).unwrap();
                for b in 0..20u64 {
                    let first = 1_000 * w + 5 * b;
                    store.append_batch(&events(first..first + 5)).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let store = PostgresStore::open_read_only(&test_url(), &schema).unwrap();
    assert_eq!(store.tree_size().unwrap(), 300);
    let mut memory = MemoryHashes(Vec::new());
    let mut page = store.entries(0..300).unwrap();
    assert_eq!(page.len(), 300);
    page.sort_by_key(|e| e.seq);
    for (i, e) in page.iter().enumerate() {
        assert_eq!(e.seq, i as u64);
        let added = stored_hashes(e.seq, &e.entry, &memory).unwrap();
        memory.0.extend(added);
    }
    assert_eq!(
        tree::root(&store, 300).unwrap(),
        tree_hash(300, &memory).unwrap()
    );
    // Every writer's events are there, each once.
    let exchanges: std::collections::BTreeSet<String> = page
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_slice(&e.entry).unwrap();
            v["exchange"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(exchanges.len(), 300);
}

#[test]
fn a_reader_cannot_write_and_a_bad_url_or_schema_says_so() {
    let guard = SchemaGuard(vec![scratch_schema()]);
    let schema = &guard.0[0];
    let err = PostgresStore::open_read_only(&test_url(), schema)
        .err()
        .expect("no tables yet");
    assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("not an audit log"), "{err}");
    let mut w = PostgresStore::open(&test_url(), schema, Durability::Fsync).unwrap();
    w.append_batch(&events(0..3)).unwrap();
    let mut r = PostgresStore::open_read_only(&test_url(), schema).unwrap();
    assert_eq!(r.tree_size().unwrap(), 3);
    let err = r.append_batch(&events(3..4)).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::ReadOnly, "{err}");
    // The location names the server and schema, never a password.
    let with_password = test_url().replace("postgres@", "postgres:s3cret@");
    let s = PostgresStore::open(&with_password, schema, Durability::Os);
    if let Ok(s) = &s {
        assert!(!s.location().contains("s3cret"), "{}", s.location());
        assert!(s.location().contains(&format!("(schema {schema})")));
    }
    let err = PostgresStore::open(&test_url(), "Bad;Name", Durability::Os)
        .err()
        .unwrap();
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
    let err = PostgresStore::open("not a url at all ://", schema, Durability::Os)
        .err()
        .unwrap();
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
    // Nobody listens there: an I/O error that says what to check.
    let err = PostgresStore::open(
        "postgres://postgres@127.0.0.1:9/test",
        schema,
        Durability::Os,
    )
    .err()
    .unwrap();
    assert_eq!(err.kind(), StoreErrorKind::Io, "{err}");
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

#[test]
fn sync_flushes_asynchronous_commits() {
    let guard = SchemaGuard(vec![scratch_schema()]);
    let mut s = PostgresStore::open(&test_url(), &guard.0[0], Durability::Os).unwrap();
    s.append_batch(&events(0..4)).unwrap();
    s.sync().unwrap();
    assert_eq!(s.meta("synced_at_size").unwrap().as_deref(), Some("4"));
    assert_eq!(s.schema(), guard.0[0]);
}

/// One writer at a time signs the regular checkpoints: the lease is taken
/// when free, renewed by its holder, refused to others while it runs, and
/// taken over once it lapses.
#[test]
fn one_replica_at_a_time_holds_the_signing_lease() {
    use std::time::Duration;
    let guard = SchemaGuard(vec![scratch_schema()]);
    let mut a = PostgresStore::open(&test_url(), &guard.0[0], Durability::Os).unwrap();
    let mut b = PostgresStore::open(&test_url(), &guard.0[0], Durability::Os).unwrap();
    let long = Duration::from_secs(60);
    assert!(a.take_signing_lease("a", long).unwrap());
    assert!(!b.take_signing_lease("b", long).unwrap());
    assert!(a.take_signing_lease("a", long).unwrap(), "renewed");
    // A holder whose lease lapses (here: renewed for no time) loses it.
    assert!(a.take_signing_lease("a", Duration::ZERO).unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // Bounded: the lease lapses at once; now() moves on within a moment.
    while !b.take_signing_lease("b", long).unwrap() {
        assert!(std::time::Instant::now() < deadline, "b never took over");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!a.take_signing_lease("a", long).unwrap());
    let mut reader = PostgresStore::open_read_only(&test_url(), &guard.0[0]).unwrap();
    assert_eq!(
        reader.take_signing_lease("r", long).unwrap_err().kind(),
        StoreErrorKind::ReadOnly
    );
}

/// Two writers (replicas) on one log: the one holding the lease signs the
/// regular checkpoints, the other does not sign over it, and the holder's
/// next checkpoint covers the other's events too.
#[test]
fn the_lease_holder_signs_for_every_replica() {
    use crate::test_support::TestDir;
    use crate::{AuditLog, LogConfig};
    let guard = SchemaGuard(vec![scratch_schema()]);
    let schema = &guard.0[0];
    let dir = TestDir::new("lease");
    let key = dir.path().join("audit-signing.key");
    let config = || LogConfig {
        durability: Durability::Os,
        checkpoint_every: 1,
        checkpoint_interval: std::time::Duration::from_secs(3600),
        journal: false,
        ..LogConfig::default()
    };
    // Stores are opened outside the runtime: the blocking client runs
    // its own.
    let store_a = PostgresStore::open(&test_url(), schema, Durability::Os).unwrap();
    let store_b = PostgresStore::open(&test_url(), schema, Durability::Os).unwrap();
    let reader = || PostgresStore::open_read_only(&test_url(), schema).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let a = AuditLog::open(Box::new(store_a), &key, config()).unwrap();
    let b = AuditLog::open(Box::new(store_b), &key, config()).unwrap();
    let sizes = || -> Vec<u64> {
        reader()
            .checkpoints(0..u64::MAX, 100)
            .unwrap()
            .iter()
            .map(|c| c.size)
            .collect()
    };
    rt.block_on(async {
        for e in events(0..3) {
            a.append(e).await.unwrap();
        }
        // A flush is answered after the writer's checkpoint decision.
        a.flush().await.unwrap();
    });
    assert_eq!(sizes().last(), Some(&3), "a took the lease and signed");
    rt.block_on(async {
        for e in events(3..6) {
            b.append(e).await.unwrap();
        }
        b.flush().await.unwrap();
    });
    assert!(
        !sizes().contains(&6),
        "b does not sign while a holds the lease: {:?}",
        sizes()
    );
    rt.block_on(async {
        a.append(events(6..7).remove(0)).await.unwrap();
        a.flush().await.unwrap();
    });
    assert_eq!(sizes().last(), Some(&7), "a's checkpoint covers b's events");
    rt.block_on(async {
        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
    });
}

/// The URL of the test server by the name its TLS certificate holds,
/// asking for TLS verified against that certificate; the server's
/// certificate file. The machine's PostgreSQL runs with `ssl = on` and a
/// self-signed certificate for `localhost` (Debian's default).
pub(crate) fn tls_url() -> (String, String) {
    let mut a = admin();
    let on: String = a.query_one("SHOW ssl", &[]).unwrap().get(0);
    assert_eq!(
        on,
        "on",
        "the PostgreSQL at {} must run with ssl = on (Debian's default) for the TLS tests",
        test_url()
    );
    let cert: String = a.query_one("SHOW ssl_cert_file", &[]).unwrap().get(0);
    let config: postgres::Config = test_url().parse().unwrap();
    let user = config.get_user().unwrap_or("postgres");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("test");
    (
        format!("postgres://{user}@localhost:{port}/{db}?sslmode=require&sslrootcert={cert}"),
        cert,
    )
}

#[test]
fn tls_is_used_when_asked_and_the_servers_certificate_is_checked() {
    let (url, _) = tls_url();
    let guard = SchemaGuard(vec![scratch_schema()]);
    let schema = &guard.0[0];
    let mut w = PostgresStore::open(&url, schema, Durability::Fsync).unwrap();
    w.append_batch(&events(0..2)).unwrap();
    let ssl: bool = w
        .client
        .get_mut()
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(ssl, "the session is TLS");
    // verify-full is what require does here.
    let full = url.replace("sslmode=require", "sslmode=verify-full");
    assert_eq!(
        PostgresStore::open_read_only(&full, schema)
            .unwrap()
            .tree_size()
            .unwrap(),
        2
    );
    // By an address the certificate does not name: refused.
    let by_ip = url.replace("@localhost:", "@127.0.0.1:");
    let err = PostgresStore::open(&by_ip, schema, Durability::Os)
        .err()
        .expect("the certificate names localhost only");
    assert!(err.to_string().contains("not accepted"), "{err}");
    // Against other roots (the public CAs' bundle): an unknown issuer.
    let (base, _) = url.split_once("&sslrootcert").unwrap();
    let public = format!("{base}&sslrootcert=/etc/ssl/certs/ca-certificates.crt");
    let err = PostgresStore::open(&public, schema, Durability::Os)
        .err()
        .expect("an unknown issuer");
    assert!(err.to_string().contains("not accepted"), "{err}");
}
