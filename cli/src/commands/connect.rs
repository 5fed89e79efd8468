//! `hoop connect mcp TARGET`: serve one target behind the broker to local
//! MCP clients, on a loopback HTTP port or on stdin/stdout.

use std::sync::Arc;

use rand::RngCore;
use serde_json::json;

use super::CommandError;
use crate::local;
use crate::settings::ConnectionArgs;
use crate::tunnel::TunnelClient;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  hoop connect mcp payments --port 8931\n  hoop connect mcp payments --stdio          # for clients that launch a command\n  hoop connect mcp payments --json           # machine-readable endpoint and secret"
)]
pub struct ConnectArgs {
    /// What to connect to (only `mcp` for now).
    #[arg(value_parser = ["mcp"])]
    pub kind: String,
    /// The target's name on the broker.
    pub target: String,
    /// Local port for the MCP endpoint (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Speak MCP on stdin/stdout instead of HTTP.
    #[arg(long)]
    pub stdio: bool,
    /// Do not require the per-run local bearer secret (any local program
    /// can then use the endpoint).
    #[arg(long)]
    pub no_local_auth: bool,
    /// Print the endpoint details as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

pub async fn run(args: ConnectArgs) -> Result<(), CommandError> {
    let settings = args.connection.resolve().map_err(|e| CommandError {
        code: super::exit::USAGE,
        error: e,
    })?;
    let tunnel = TunnelClient::connect(settings).await?;
    if args.stdio {
        local::stdio::serve(tunnel, args.target).await?;
        return Ok(());
    }
    let secret = (!args.no_local_auth).then(new_secret);
    serve_http(tunnel, &args.target, args.port, secret, args.json).await
}

/// Serves the local HTTP endpoint until Ctrl-C; shared with `hoop demo`.
pub async fn serve_http(
    tunnel: Arc<TunnelClient>,
    target: &str,
    port: u16,
    secret: Option<String>,
    json_out: bool,
) -> Result<(), CommandError> {
    let listener = local::http::bind(port).await?;
    let addr = listener.local_addr().map_err(anyhow::Error::from)?;
    let url = format!("http://{addr}{}", local::http::MCP_PATH);
    let who = tunnel
        .welcome()
        .map(|w| w.identity.subject)
        .unwrap_or_default();
    print_endpoint(&url, target, &who, secret.as_deref(), json_out);
    let state = Arc::new(local::http::LocalHttp {
        tunnel,
        target: target.to_owned(),
        secret,
    });
    local::http::serve(listener, state, shutdown_signal()).await?;
    eprintln!("hoop: stopped");
    Ok(())
}

fn print_endpoint(url: &str, target: &str, who: &str, secret: Option<&str>, json_out: bool) {
    let name = format!("hoop-{target}");
    let headers = secret.map(|s| json!({"Authorization": format!("Bearer {s}")}));
    let vscode = json!({"servers": {&name: {"type": "http", "url": url, "headers": headers.clone().unwrap_or(json!({}))}}});
    let cursor = json!({"mcpServers": {&name: {"url": url, "headers": headers.clone().unwrap_or(json!({}))}}});
    let claude = json!({"mcpServers": {&name: {"command": "hoop", "args": ["connect", "mcp", target, "--stdio"]}}});
    if json_out {
        let out = json!({
            "url": url, "target": target, "identity": who, "secret": secret,
            "config": {"vscode": vscode, "cursor": cursor, "claude_desktop": claude},
        });
        println!("{out}");
        return;
    }
    println!("MCP endpoint: {url}");
    println!("target: {target}, as: {who}");
    match secret {
        Some(s) => println!("local secret: {s} (send it as 'Authorization: Bearer {s}')"),
        None => println!("local auth: off (any program on this machine can use the endpoint)"),
    }
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    println!("\nVS Code (.vscode/mcp.json):\n{}", pretty(&vscode));
    println!("\nCursor (~/.cursor/mcp.json):\n{}", pretty(&cursor));
    println!(
        "\nClaude Desktop (claude_desktop_config.json, runs hoop over stdio):\n{}",
        pretty(&claude)
    );
    println!("\nPress Ctrl-C to stop.");
}

fn new_secret() -> String {
    let mut raw = [0u8; 24];
    rand::rng().fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
