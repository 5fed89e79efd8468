//! Starting a broker: from a config, TLS material and a token verifier to a
//! listening QUIC endpoint. Used by the `hoop-broker` binary, by `hoop demo`
//! and by tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::path::PathBuf;

use hoop_audit_log::{AuditLog, Durability, LogConfig};

use crate::approval::{Approvals, HoldSettings, StoredApprovals};
use crate::audit::event::{Actor, Event, EventKind};
use crate::audit::{Audit, AuditLocation};
use crate::config::{AuditDurability, BrokerConfig};
use crate::identity::revocation::{self, RevocationList};
use crate::identity::TokenVerifier;
use crate::masking::Masking;
use crate::pipeline::drift::ToolDrift;
use crate::pipeline::Pipeline;
use crate::policy::Policy;
use crate::store::changes::{tick_or_change, StoreChanges, Topic};
use crate::store::{BrokerStore, StoreLocation};
use crate::tunnel::server::TunnelServer;
use crate::tunnel::tls::{quic_server_config, TlsMaterial};
use crate::upstream::Upstream;

/// How long an MCP session may sit unused before the broker ends it.
const SESSION_IDLE_SECS: u64 = 3600;

/// A broker that is accepting connections.
pub struct RunningBroker {
    pub addr: SocketAddr,
    /// `sha256:<hex>` of the certificate, for `hoop connect --pin`.
    pub fingerprint: String,
    pub pipeline: Arc<Pipeline>,
    /// Where `/healthz` answers, when the admin listener is on.
    pub admin_addr: Option<SocketAddr>,
    endpoint: quinn::Endpoint,
    server: Arc<TunnelServer>,
    /// How long a drain waits for exchanges in flight.
    drain: Duration,
    task: tokio::task::JoinHandle<()>,
    admin: Option<tokio::task::JoinHandle<()>>,
}

impl RunningBroker {
    /// Drains (no new connections, `/readyz` 503, the exchanges in flight
    /// finish within `drain_secs`, then every connection is ended with a
    /// reason that tells clients to reconnect at once), closes the
    /// listener, then signs a last checkpoint over everything recorded.
    pub async fn shutdown(self) {
        self.server.drain(self.drain).await;
        self.endpoint.close(0u32.into(), b"broker shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        self.task.abort();
        if let Some(a) = self.admin {
            a.abort();
        }
        if let Err(e) = self.pipeline.audit().log().shutdown().await {
            tracing::error!("the audit log did not close cleanly: {e}");
        }
    }

    /// The audit log's verifier key (`name+id+base64`).
    pub fn audit_key(&self) -> &str {
        self.pipeline.audit().log().verifier_key()
    }

    /// Runs until the endpoint closes.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Binds the listener and starts serving, under the config's policy file
/// (or allow-all without one).
pub async fn start(
    config: &BrokerConfig,
    tls: TlsMaterial,
    verifier: Arc<dyn TokenVerifier>,
) -> anyhow::Result<RunningBroker> {
    match &config.policy {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("cannot read the policy file {}: {e}", path.display())
            })?;
            let policy = Policy::parse(&text, &path.display().to_string())?;
            start_inner(config, tls, verifier, policy, Some((path.clone(), text))).await
        }
        None => start_inner(config, tls, verifier, Policy::allow_all(), None).await,
    }
}

/// The same with a policy given in place of the config's (`hoop demo`
/// ships its own).
pub async fn start_with_policy(
    config: &BrokerConfig,
    tls: TlsMaterial,
    verifier: Arc<dyn TokenVerifier>,
    policy: Policy,
) -> anyhow::Result<RunningBroker> {
    start_inner(config, tls, verifier, policy, None).await
}

/// `reload`: the policy file and the text the policy came from, to keep
/// the running policy in step with the file.
async fn start_inner(
    config: &BrokerConfig,
    tls: TlsMaterial,
    verifier: Arc<dyn TokenVerifier>,
    policy: Policy,
    reload: Option<(std::path::PathBuf, String)>,
) -> anyhow::Result<RunningBroker> {
    // A benchmark build records nothing: it runs only where a benchmark
    // asked for it by name, never by accident (`hoop demo`, an
    // `--all-features` build).
    if cfg!(feature = "bench-unrecorded")
        && std::env::var_os("HOOP_BENCH_UNRECORDED").as_deref() != Some("1".as_ref())
    {
        anyhow::bail!("this broker was built with the benchmark feature `bench-unrecorded` and records nothing in its audit log; it runs only with HOOP_BENCH_UNRECORDED=1 (tests/bench/run.sh sets it); build it without that feature");
    }
    if cfg!(feature = "bench-unrecorded") {
        tracing::warn!("built with the benchmark feature `bench-unrecorded`: NOTHING is recorded in the audit log");
    }
    crate::crypto::install_crypto_provider();
    let fingerprint = tls.fingerprint();
    let mut targets = BTreeMap::new();
    for (name, t) in &config.targets {
        targets.insert(
            name.clone(),
            (Upstream::from_config(name, t)?, t.tool_drift),
        );
    }
    let revocations = Arc::new(RevocationList::default());
    // What blocks on the stores runs off the runtime's threads (the
    // PostgreSQL client runs a runtime of its own, which cannot start on a
    // thread that drives this one).
    let (drift, log, stored_approvals) = {
        let config = config.clone();
        let revocations = revocations.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let drift = Arc::new(ToolDrift::new(config.store.clone())?);
            if let Some(location) = &config.store {
                // Read before the listener opens, so no revoked subject
                // slips in.
                let store = BrokerStore::open(location)?;
                revocations.load(&store)?;
            }
            let log = open_audit_log(&config)?;
            let stored = StoredApprovals::read(config.store.as_ref())?;
            Ok((drift, log, stored))
        })
        .await
        .map_err(|e| anyhow::anyhow!("the broker's start did not finish: {e}"))??
    };
    let masking = Arc::new(masking_layer(config)?);
    masking
        .check_policy(&policy)
        .map_err(|why| anyhow::anyhow!("policy: {why}"))?;
    let audit = Arc::new(Audit::new(
        log.clone(),
        audit_paths(config)?.0,
        config.audit.readers.clone(),
        masking.clone(),
    ));
    let approvals = Approvals::new(
        config.store.clone(),
        stored_approvals,
        audit.clone(),
        HoldSettings {
            hold_secs: config.approvals.hold_secs,
            hold_secs_without_progress: config.approvals.hold_secs_without_progress,
            progress_every_secs: config.approvals.progress_every_secs,
        },
        crate::approval::webhook::Webhooks::start(&config.approvals.webhooks)?,
    )?;
    let pipeline = Arc::new(Pipeline::new(
        targets,
        revocations.clone(),
        policy,
        drift.clone(),
        audit,
        masking.clone(),
        approvals,
    ));
    // Held calls answered with a task before a restart wait on.
    pipeline.restore_held_tasks().await?;
    // Expiry of approval requests nobody decided; ends with the pipeline.
    let sweeping = Arc::downgrade(&pipeline);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(pipeline) = sweeping.upgrade() else {
                break;
            };
            pipeline.approvals().sweep().await;
        }
    });
    // Other brokers sharing a PostgreSQL store announce their changes.
    let store_changes = config.store.as_ref().and_then(StoreChanges::listen);
    if let Some(location @ StoreLocation::Postgres { .. }) = config.store.clone() {
        // Other brokers share this store: follow their approval requests
        // and decisions (a grant made through any of them releases a call
        // held here), as each is announced, and polled like the admin
        // counter; ends with the broker.
        let following = Arc::downgrade(&pipeline);
        let changes = store_changes.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(revocation::POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seen = None;
            loop {
                tick_or_change(&mut tick, changes.as_deref(), Topic::Approvals).await;
                let Some(pipeline) = following.upgrade() else {
                    break;
                };
                let location = location.clone();
                let version = tokio::task::spawn_blocking(move || {
                    BrokerStore::open(&location)?.version(Topic::Approvals)
                })
                .await;
                match version {
                    Ok(Ok(v)) if seen != Some(v) => {
                        match pipeline.approvals().sync_from_store().await {
                            Ok(()) => seen = Some(v),
                            Err(e) => tracing::error!("approvals: cannot follow the store: {e:#}"),
                        }
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!("approvals: cannot read the store: {e:#}"),
                    Err(e) => tracing::error!("approvals: the store poll failed: {e}"),
                }
            }
        });
    }
    let (drift_tx, mut drift_rx) = tokio::sync::mpsc::unbounded_channel();
    drift.report_to(drift_tx);
    let drift_audit = pipeline.audit().clone();
    let drift_events = tokio::spawn(async move {
        // Ends when the last sender (the drift table) goes.
        while let Some((target, tool, kind)) = drift_rx.recv().await {
            let mut e = Event::now(EventKind::ToolDrift);
            e.actor = Some(Actor::local("hoop-broker"));
            e.target = Some(&target);
            e.name = Some(&tool);
            e.detail = Some(serde_json::json!({ "change": format!("{kind:?}").to_lowercase() }));
            drift_audit.note(&e, None).await;
        }
    });
    let reset = tls.reset_secret();
    let server_config = quic_server_config(tls)?;
    let socket = std::net::UdpSocket::bind(config.listen).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on udp {}: {e} (is another broker running there?)",
            config.listen
        )
    })?;
    let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &reset);
    let endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::new(Arc::new(reset_key)),
        Some(server_config),
        socket,
        crate::tunnel::runtime::QuicRuntime::shared(),
    )?;
    let addr = endpoint.local_addr()?;
    let server = Arc::new(TunnelServer {
        pipeline: pipeline.clone(),
        verifier,
        max_frame_len: config.limits.max_message_bytes,
        live: Default::default(),
        in_flight: Default::default(),
        draining: Default::default(),
    });
    let (admin_addr, admin) = match config.admin.listen {
        Some(addr) => {
            let health = BrokerHealth {
                log,
                pipeline: Arc::downgrade(&pipeline),
                server: Arc::downgrade(&server),
            };
            let (bound, task) = crate::admin::start(addr, Arc::new(health)).await?;
            (Some(bound), Some(task))
        }
        None => (None, None),
    };
    let policy_watch = reload.map(|(path, text)| {
        let pipeline = pipeline.clone();
        let file = path.display().to_string();
        let check = move |p: &Policy| masking.check_policy(p);
        crate::policy::reload::watch(path, text, check, move |outcome, sha256| {
            let pipeline = pipeline.clone();
            let detail = serde_json::json!({
                "file": file,
                "sha256": sha256,
                "accepted": outcome.is_ok(),
            });
            async move {
                let audit = pipeline.audit();
                let mut e = Event::now(EventKind::PolicyReload);
                e.actor = Some(Actor::local("hoop-broker"));
                e.detail = Some(detail);
                match outcome {
                    // Recorded before it takes effect: a policy change the
                    // log cannot hold does not happen (tried again in a
                    // second, the running policy judging meanwhile).
                    Ok(policy) => {
                        e.outcome = Some("ok");
                        if let Err(why) = audit.record(&e, None).await {
                            tracing::error!(
                                "policy not reloaded: the reload cannot be recorded in the audit log ({}); the running policy stays and the file is tried again",
                                why.message
                            );
                            return false;
                        }
                        pipeline.set_policy(policy);
                    }
                    Err(why) => {
                        e.outcome = Some("refused");
                        e.reason = Some(&why);
                        audit.note(&e, None).await;
                    }
                }
                true
            }
        })
    });
    let watcher = config.store.clone().map(|path| {
        let server = server.clone();
        let list = revocations.clone();
        // The same store carries accepted tool definitions.
        let audit = pipeline.audit().clone();
        let changes = store_changes.clone();
        revocation::watch(revocations.clone(), path, changes, move |added, ended| {
            let cut = server.live.enforce(&list);
            audit.metrics().connections_revoked(cut);
            if !added.is_empty() || !ended.is_empty() {
                let audit = audit.clone();
                tokio::spawn(async move {
                    for (kind, r) in added
                        .iter()
                        .map(|r| (EventKind::RevocationAdded, r))
                        .chain(ended.iter().map(|r| (EventKind::RevocationLifted, r)))
                    {
                        let mut e = Event::now(kind);
                        e.actor = Some(Actor::local(&r.created_by));
                        e.reason = Some(&r.reason);
                        e.detail = serde_json::to_value(r).ok();
                        audit.note(&e, None).await;
                    }
                });
            }
            let drift = drift.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = drift.reload() {
                    tracing::error!("cannot reload accepted tool definitions: {e:#}");
                }
            });
        })
    });
    let retention_days = config.audit.retention_days;
    let keeper = pipeline.clone();
    let retention = async move {
        let mut tick = tokio::time::interval(crate::audit::retention::EVERY);
        loop {
            tick.tick().await;
            if let Err(e) = crate::audit::retention::enforce(keeper.audit(), retention_days).await {
                tracing::error!("audit retention did not run: {e:#}");
            }
        }
    };
    let ep = endpoint.clone();
    let reaper = pipeline.clone();
    let serving = server.clone();
    let task = tokio::spawn(async move {
        let sweep = async {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                reaper.reap_idle_sessions(SESSION_IDLE_SECS).await;
            }
        };
        let watch = async {
            match watcher {
                Some(w) => w.await,
                None => std::future::pending().await,
            }
        };
        let policy_watch = async {
            match policy_watch {
                Some(w) => w.await,
                None => std::future::pending().await,
            }
        };
        let _drift_events = AbortOnDrop(drift_events);
        tokio::select! {
            _ = serving.run(ep) => {}
            _ = sweep => {}
            _ = retention => {}
            _ = watch => {}
            _ = policy_watch => {}
        }
    });
    Ok(RunningBroker {
        addr,
        fingerprint,
        pipeline,
        admin_addr,
        endpoint,
        server,
        drain: Duration::from_secs(
            config
                .drain_secs
                .unwrap_or(crate::config::DEFAULT_DRAIN_SECS),
        ),
        task,
        admin,
    })
}

/// Where the audit log lives: `[audit] path`; else `audit.db` beside an
/// SQLite store, or the schema `<store schema>_audit` (`hoop_audit`) of a
/// PostgreSQL store (every replica writes one log). Its key: `[audit] signing_key`, else beside an
/// SQLite log; with PostgreSQL it must be named, since every replica signs
/// with the same key.
pub fn audit_paths(config: &BrokerConfig) -> anyhow::Result<(AuditLocation, PathBuf)> {
    let location = match (&config.audit.path, &config.store) {
        (Some(p), _) => AuditLocation::Sqlite(p.clone()),
        (None, Some(StoreLocation::Sqlite(store))) => {
            AuditLocation::Sqlite(store.with_file_name("audit.db"))
        }
        (None, Some(StoreLocation::Postgres { url, schema })) => AuditLocation::Postgres {
            url: url.clone(),
            schema: format!("{schema}_audit"),
        },
        (None, None) => anyhow::bail!(
            "the broker needs a place for its audit log: set `store` or [audit] path in the config"
        ),
    };
    let key = match (&config.audit.signing_key, &location) {
        (Some(k), _) => k.clone(),
        (None, AuditLocation::Sqlite(path)) => path.with_file_name("audit-signing.key"),
        (None, AuditLocation::Postgres { .. }) => anyhow::bail!(
            "with the store in PostgreSQL, the audit log is one log for every replica: set [audit] signing_key to a key file every replica shares (made 0600 on the first start if missing; see docs/operations.md)"
        ),
    };
    Ok((location, key))
}

/// The masking layer the config asks for, its key made on first start.
pub fn masking_layer(config: &BrokerConfig) -> anyhow::Result<Masking> {
    if !config.masking.enabled {
        tracing::warn!("[masking] enabled = false: protected data is delivered and recorded as the upstream sends it");
        return Ok(Masking::off());
    }
    let key = match &config.masking.key {
        Some(k) => k.clone(),
        None => default_masking_key(config)?,
    };
    let key = crate::masking::load_or_create_key(&key)?;
    Ok(Masking::from_config(&config.masking.profiles, key)?)
}

/// The masking key beside the audit log's file, or beside the signing key
/// when the log is in PostgreSQL (the replicas share both).
pub fn default_masking_key(config: &BrokerConfig) -> anyhow::Result<PathBuf> {
    let (location, key) = audit_paths(config)?;
    Ok(match location {
        AuditLocation::Sqlite(path) => path.with_file_name("masking.key"),
        AuditLocation::Postgres { .. } => key.with_file_name("masking.key"),
    })
}

fn open_audit_log(config: &BrokerConfig) -> anyhow::Result<AuditLog> {
    let (location, key) = audit_paths(config)?;
    let durability = match config.audit.durability {
        Some(AuditDurability::Os) => Durability::Os,
        Some(AuditDurability::Fsync) | None => Durability::Fsync,
    };
    let log_config = LogConfig {
        durability,
        origin: config.audit.origin.clone(),
        checkpoint_every: config.audit.checkpoint_every,
        checkpoint_interval: Duration::from_secs(config.audit.checkpoint_interval_secs),
        ..LogConfig::default()
    };
    let log = match &location {
        AuditLocation::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot create the audit log's directory {}: {e}",
                        dir.display()
                    )
                })?;
            }
            AuditLog::open_sqlite(path, &key, log_config)?
        }
        // No local journal in front: the database is the durable place
        // every replica shares, and a batch is durable once it commits.
        AuditLocation::Postgres { .. } => {
            let store = location.open(durability)?;
            AuditLog::open(
                store,
                &key,
                LogConfig {
                    journal: false,
                    ..log_config
                },
            )?
        }
    };
    Ok(log)
}

/// Aborts a helper task when the broker's main task ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What `/healthz`, `/readyz` and `/metrics` report.
struct BrokerHealth {
    log: AuditLog,
    pipeline: std::sync::Weak<Pipeline>,
    server: std::sync::Weak<TunnelServer>,
}

impl crate::admin::HealthSource for BrokerHealth {
    fn health(&self) -> (bool, serde_json::Value) {
        let h = self.log.health();
        let mut audit = serde_json::json!({
            "status": if h.degraded.is_some() { "degraded" } else { "ok" },
            "durability": h.durability.as_str(),
            "tree_size": h.tree_size,
            "checkpoint_size": h.last_checkpoint_size,
            "queued": h.queued,
            "location": h.location,
            "origin": h.origin,
        });
        if let Some(why) = &h.degraded {
            audit["error"] = serde_json::Value::from(why.clone());
        }
        (h.degraded.is_none(), serde_json::json!({ "audit": audit }))
    }

    fn ready(&self) -> (bool, serde_json::Value) {
        let draining = self
            .server
            .upgrade()
            .is_none_or(|s| s.draining.load(std::sync::atomic::Ordering::Acquire));
        if draining {
            return (false, serde_json::json!({"draining": true}));
        }
        self.health()
    }

    fn metrics(&self) -> String {
        let Some(pipeline) = self.pipeline.upgrade() else {
            return String::new();
        };
        let h = self.log.health();
        let snapshot = crate::metrics::Snapshot {
            audit_events: h.tree_size,
            audit_batches: h.batches,
            audit_queued: h.queued as u64,
            audit_degraded: h.degraded.is_some(),
            approvals_pending: pipeline.approvals().pending(),
            connections: self.server.upgrade().map_or(0, |s| s.live.len()),
            policy_version: pipeline.policy().version().to_owned(),
        };
        pipeline.audit().metrics().scrape(&snapshot)
    }
}
