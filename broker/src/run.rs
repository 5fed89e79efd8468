//! Starting a broker: from a config, TLS material and a token verifier to a
//! listening QUIC endpoint. Used by the `hoop-broker` binary, by `hoop demo`
//! and by tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::BrokerConfig;
use crate::identity::revocation::{self, RevocationList};
use crate::identity::TokenVerifier;
use crate::pipeline::drift::ToolDrift;
use crate::pipeline::Pipeline;
use crate::policy::Policy;
use crate::store::BrokerStore;
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
    endpoint: quinn::Endpoint,
    task: tokio::task::JoinHandle<()>,
}

impl RunningBroker {
    /// Stops accepting, closes every connection and waits for the listener.
    pub async fn shutdown(self) {
        self.endpoint.close(0u32.into(), b"broker shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        self.task.abort();
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
    crate::crypto::install_crypto_provider();
    let fingerprint = tls.fingerprint();
    let mut targets = BTreeMap::new();
    for (name, t) in &config.targets {
        targets.insert(
            name.clone(),
            (Upstream::from_config(name, t)?, t.tool_drift),
        );
    }
    let drift = Arc::new(ToolDrift::new(config.store.clone())?);
    let revocations = Arc::new(RevocationList::default());
    if let Some(path) = &config.store {
        // Read before the listener opens, so no revoked subject slips in.
        let store = BrokerStore::open(path)?;
        revocations.load(&store)?;
    }
    let pipeline = Arc::new(Pipeline::new(
        targets,
        revocations.clone(),
        policy,
        drift.clone(),
    ));
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
    });
    let policy_watch = reload.map(|(path, text)| {
        let pipeline = pipeline.clone();
        crate::policy::reload::watch(path, text, move |p| pipeline.set_policy(p))
    });
    let watcher = config.store.clone().map(|path| {
        let server = server.clone();
        let list = revocations.clone();
        // The same store carries accepted tool definitions.
        revocation::watch(revocations.clone(), path, move || {
            server.live.enforce(&list);
            let drift = drift.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = drift.reload() {
                    tracing::error!("cannot reload accepted tool definitions: {e:#}");
                }
            });
        })
    });
    let ep = endpoint.clone();
    let reaper = pipeline.clone();
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
        tokio::select! {
            _ = server.run(ep) => {}
            _ = sweep => {}
            _ = watch => {}
            _ = policy_watch => {}
        }
    });
    Ok(RunningBroker {
        addr,
        fingerprint,
        pipeline,
        endpoint,
        task,
    })
}
