//! `hoop demo`: the whole data path on this machine in one command — a dev
//! broker, the built-in demo MCP server (a fictional bank) and the tunnel,
//! served at `http://127.0.0.1:PORT/mcp` with no local secret so any MCP
//! client works at once.

use std::path::PathBuf;
use std::sync::Arc;

use hoop_broker::config::{BrokerConfig, DevConfig, TargetConfig, TransportKind};
use hoop_broker::identity::dev::DevIdentities;
use hoop_broker::policy::Policy;
use hoop_broker::tunnel::tls;

use super::CommandError;
use crate::demo_server::{self, DemoServerConfig};
use crate::tunnel::{TokenSource, Trust, TunnelClient, TunnelSettings};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  hoop demo                    # serves http://127.0.0.1:18080/mcp\n  hoop demo --port 9000 --as bob\n  hoop demo --record /tmp/received.jsonl   # what the demo server received"
)]
pub struct DemoArgs {
    /// Local port for the MCP endpoint.
    #[arg(long, default_value_t = 18080)]
    pub port: u16,
    /// Dev identity to act as (alice is in group eng, bob in ml-leads).
    #[arg(long = "as", default_value = "alice")]
    pub identity: String,
    /// Append every message the demo server receives to this file (JSON lines).
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Print the endpoint details as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The policy the demo runs with: alice (eng) may read, `deploy_model`
/// needs approval, deleting models and bulk exports are blocked.
pub const DEMO_POLICY: &str = include_str!("../demo_server/policy.toml");

pub async fn run(args: DemoArgs) -> Result<(), CommandError> {
    let upstream = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(anyhow::Error::from)?;
    let upstream_addr = upstream.local_addr().map_err(anyhow::Error::from)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_config = DemoServerConfig {
        record: args.record.clone(),
    };
    let server = tokio::spawn(demo_server::serve_http(upstream, server_config, async {
        let _ = stop_rx.await;
    }));

    let mut config = BrokerConfig::empty();
    config.listen = ([127, 0, 0, 1], 0).into();
    config.targets.insert(
        "demo".into(),
        TargetConfig {
            transport: TransportKind::Http,
            url: Some(format!("http://{upstream_addr}{}", demo_server::MCP_PATH)),
            command: None,
            args: vec![],
            env: Default::default(),
            pool_size: 1,
            credential: None,
            timeout_secs: 300,
            tool_drift: Default::default(),
        },
    );
    let identities = Arc::new(DevIdentities::ephemeral(DevConfig::default())?);
    let token = identities.mint(&args.identity)?;
    let policy = Policy::parse(
        DEMO_POLICY,
        "the demo policy (cli/src/demo_server/policy.toml)",
    )?;
    let broker =
        hoop_broker::run::start_with_policy(&config, tls::self_signed()?, identities, policy)
            .await?;
    let tunnel = TunnelClient::connect(TunnelSettings {
        broker: broker.addr,
        server_name: "localhost".into(),
        trust: Trust::Pin(broker.fingerprint.clone()),
        token: TokenSource::Static(token),
    })
    .await?;
    if !args.json {
        println!(
            "hoop demo: dev broker on {} (QUIC), demo bank MCP server behind it as target \"demo\"",
            broker.addr
        );
    }
    // No Claude Desktop snippet: a `hoop` it launched could not reach this
    // process's in-memory broker.
    let result = super::connect::serve_http(tunnel, "demo", args.port, None, None, args.json).await;
    broker.shutdown().await;
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), server).await;
    result
}
