//! `hoop demo`: the whole data path on this machine in one command — a dev
//! broker, the built-in demo MCP server (a fictional bank) and the tunnel,
//! served at `http://127.0.0.1:PORT/mcp` with no local secret so any MCP
//! client works at once.

use std::path::PathBuf;
use std::sync::Arc;

use hoop_broker::config::{
    AuditConfig, AuditDurability, BrokerConfig, DevConfig, TargetConfig, TransportKind,
};
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
    config.drain_secs = Some(hoop_broker::config::DEV_DRAIN_SECS);
    // The demo's audit log outlives the demo, in hoop's data dir; handed
    // to the OS rather than fsync-ed per batch (a laptop, not a bank), and
    // readable by the demo's own identities.
    let dir = demo_dir()?;
    config.audit = AuditConfig {
        path: Some(dir.join("audit.db")),
        durability: Some(AuditDurability::Os),
        readers: DevConfig::default()
            .identities
            .iter()
            .flat_map(|i| i.groups.clone())
            .collect(),
        ..AuditConfig::default()
    };
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
    let dev = DevConfig::default();
    let names: Vec<String> = dev.identities.iter().map(|i| i.name.clone()).collect();
    if !names.contains(&args.identity) {
        let _ = stop_tx.send(());
        return Err(CommandError::usage(anyhow::anyhow!(
            "no demo identity {:?} (the demo has: {})",
            args.identity,
            names.join(", ")
        )));
    }
    // Who can release the demo's held deploy_model for this run's identity.
    let approver = dev
        .identities
        .iter()
        .find(|i| i.name != args.identity && i.groups.iter().any(|g| g == "ml-leads"))
        .map(|i| i.name.clone());
    let identities = Arc::new(DevIdentities::ephemeral(dev)?);
    let token = identities.mint(&args.identity)?;
    let policy = Policy::parse(
        DEMO_POLICY,
        "the demo policy (cli/src/demo_server/policy.toml)",
    )?;
    let broker = hoop_broker::run::start_with_policy(
        &config,
        tls::self_signed()?,
        identities.clone(),
        policy,
    )
    .await?;
    let tunnel = TunnelClient::connect(TunnelSettings {
        broker: broker.addr,
        fallbacks: Vec::new(),
        server_name: "localhost".into(),
        trust: Trust::Pin(broker.fingerprint.clone()),
        token: TokenSource::Static(token.clone()),
    })
    .await?;
    write_profile(&dir, &broker, "profile.toml", "token", &token)?;
    // The held deploy_model and its decision, told on stderr as they happen.
    tokio::spawn(crate::tui::approve::notices::follow(tunnel.clone()));
    // Every dev identity gets a profile of its own (`demo-bob`), so a
    // second terminal can act as someone else: an approver.
    let mut others = Vec::new();
    for name in &names {
        let token = identities.mint(name)?;
        write_profile(
            &dir,
            &broker,
            &format!("profile-{name}.toml"),
            &format!("token-{name}"),
            &token,
        )?;
        if *name != args.identity {
            others.push(name.clone());
        }
    }
    if !args.json {
        println!(
            "hoop demo: dev broker on {} (QUIC), demo bank MCP server behind it as target \"demo\"",
            broker.addr
        );
        println!(
            "audit log: {} — see the calls you make, from another terminal: hoop audit search --profile demo",
            dir.join("audit.db").display()
        );
        match &approver {
            Some(a) => println!(
                "approvals: deploy_model waits for an approver in ml-leads; as {a}, from another terminal: hoop approve --profile demo-{a} (or hoop approve list|grant ID --profile demo-{a})"
            ),
            None => println!(
                "approvals: deploy_model waits for an approver in ml-leads, and no other demo identity is in it: run `hoop demo --as alice` to approve as bob"
            ),
        }
        if !others.is_empty() {
            let profiles: Vec<String> = others.iter().map(|n| format!("demo-{n}")).collect();
            println!(
                "profiles for this run: demo (you, {}), {}",
                args.identity,
                profiles.join(", ")
            );
        }
        // The identity features against the same broker, from a second
        // terminal: the profiles carry all of this, and here it is spelled
        // out for `--broker --pin --token-file` (and for other machines'
        // habits, a token file per identity).
        println!(
            "broker: {} (QUIC), certificate pin {}",
            broker.addr, broker.fingerprint
        );
        let tokens: Vec<String> = names
            .iter()
            .map(|n| format!("{n} {}", dir.join(format!("token-{n}")).display()))
            .collect();
        println!("tokens (valid while this demo runs): {}", tokens.join(", "));
        println!(
            "try, from another terminal:\n  hoop exec mcp demo --tool get_customer --args '{{\"customer_id\":\"c-1001\"}}' --profile demo\n  hoop connect mcp demo --port 8931 --broker {} --pin {} --token-file {}",
            broker.addr,
            broker.fingerprint,
            dir.join(format!("token-{}", args.identity)).display()
        );
    }
    let extra = serde_json::json!({
        "broker": {
            "addr": broker.addr.to_string(),
            "pin": broker.fingerprint,
            "tokens": names
                .iter()
                .map(|n| (n.clone(), dir.join(format!("token-{n}")).display().to_string().into()))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
            "profiles": std::iter::once("demo".to_owned())
                .chain(others.iter().map(|n| format!("demo-{n}")))
                .collect::<Vec<_>>(),
        }
    });
    // No Claude Desktop snippet: a `hoop` it launched could not reach this
    // process's in-memory broker.
    let result = super::connect::serve_http(
        tunnel,
        "demo",
        args.port,
        None,
        None,
        args.json,
        Some(extra),
    )
    .await;
    broker.shutdown().await;
    // The profiles pointed at this run; no demo answers there any more.
    let _ = std::fs::remove_file(dir.join("profile.toml"));
    let _ = std::fs::remove_file(dir.join("token"));
    for name in &names {
        let _ = std::fs::remove_file(dir.join(format!("profile-{name}.toml")));
        let _ = std::fs::remove_file(dir.join(format!("token-{name}")));
    }
    if !args.json {
        eprintln!(
            "the calls just made: hoop-broker audit search --audit-log {} (or hoop audit search --profile demo while a demo runs)",
            dir.join("audit.db").display()
        );
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), server).await;
    result
}

/// Where the demo keeps its audit log and, while it runs, how to reach it
/// (`profile.toml`, read as the built-in profile `demo`).
pub fn demo_dir() -> anyhow::Result<PathBuf> {
    Ok(crate::settings::data_dir()?.join("demo"))
}

/// Writes a demo profile (`file`): this run's broker address, pin and a
/// token (in `token_name`, 0600), so `hoop audit --profile demo`, `hoop
/// approve --profile demo-bob` and any other command reach the running
/// demo from another terminal.
fn write_profile(
    dir: &std::path::Path,
    broker: &hoop_broker::RunningBroker,
    file: &str,
    token_name: &str,
    token: &str,
) -> anyhow::Result<()> {
    let token_file = dir.join(token_name);
    let profile_name = match file.strip_prefix("profile-") {
        Some(rest) => format!("demo-{}", rest.trim_end_matches(".toml")),
        None => "demo".to_owned(),
    };
    tls::write_private(&token_file, token.as_bytes())?;
    let quoted = |v: String| toml::Value::String(v).to_string();
    let profile = format!(
        "# written by `hoop demo` for this run; read as the profile `{}`\nbroker = {}\npin = {}\ntoken_file = {}\n",
        profile_name,
        quoted(broker.addr.to_string()),
        quoted(broker.fingerprint.clone()),
        quoted(token_file.display().to_string())
    );
    tls::write_private(&dir.join(file), profile.as_bytes())?;
    Ok(())
}
