//! `hoop connect mcp TARGET`: serve one target behind the broker to local
//! MCP clients, on a loopback HTTP port or on stdin/stdout.

use std::sync::Arc;

use rand::RngCore;
use serde_json::json;

use super::CommandError;
use crate::local;
use crate::settings::{ConnectionArgs, Resolved};
use crate::tunnel::{TokenSource, TunnelClient};

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
    let resolved = args
        .connection
        .resolve()
        .map_err(CommandError::unresolved)?;
    let launch = StdioLaunch::new(&args.target, &resolved);
    let tunnel = TunnelClient::connect(resolved.tunnel)
        .await
        .map_err(|e| CommandError::from(e).for_login(&resolved.login))?;
    // A target the broker does not have is a typo to say now, not an
    // endpoint that answers every request with an error.
    // The catalog asks every upstream for its tools: a slow one must not
    // hold up the endpoint, so past a few seconds nothing is concluded.
    let names = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        super::targets::target_names(&tunnel),
    )
    .await
    .ok()
    .flatten();
    if let Some(names) = names {
        if !names.contains(&args.target) {
            tunnel.close().await;
            return Err(CommandError::usage(anyhow::anyhow!(
                "no target named {:?} on this broker (targets: {})",
                args.target,
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            ))
            .with_hint("`hoop targets` lists them with the tools you may use"));
        }
    }
    // Held calls and calls to decide, told on stderr as they happen.
    tokio::spawn(crate::tui::approve::notices::follow(tunnel.clone()));
    let served = if args.stdio {
        local::stdio::serve(tunnel.clone(), args.target)
            .await
            .map_err(CommandError::from)
    } else {
        let secret = (!args.no_local_auth).then(new_secret);
        serve_http(
            tunnel.clone(),
            &args.target,
            args.port,
            secret,
            Some(launch),
            args.json,
            None,
        )
        .await
    };
    // The broker sees this client leave now, not at its idle timeout.
    tunnel.close().await;
    served
}

/// How a client that launches its servers as commands (Claude Desktop)
/// runs this target: `hoop connect mcp TARGET --stdio` with the connection
/// flags this run resolved, since that client has neither this shell's
/// environment nor necessarily a profile.
pub struct StdioLaunch {
    pub command: String,
    pub args: Vec<String>,
    /// The token came from `HOOP_TOKEN`, which the snippet must not copy.
    pub token_from_env: bool,
}

impl StdioLaunch {
    fn new(target: &str, resolved: &Resolved) -> Self {
        // The absolute path, so the client finds hoop without its PATH.
        let command = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "hoop".into());
        let mut args: Vec<String> = ["connect", "mcp", target, "--stdio"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        args.extend(resolved.launch_args.iter().cloned());
        Self {
            command,
            args,
            token_from_env: matches!(resolved.tunnel.token, TokenSource::Static(_)),
        }
    }
}

/// Serves the local HTTP endpoint until Ctrl-C; shared with `hoop demo`.
pub async fn serve_http(
    tunnel: Arc<TunnelClient>,
    target: &str,
    port: u16,
    secret: Option<String>,
    launch: Option<StdioLaunch>,
    json_out: bool,
    extra: Option<serde_json::Value>,
) -> Result<(), CommandError> {
    let listener = local::http::bind(port).await?;
    let addr = listener.local_addr().map_err(anyhow::Error::from)?;
    let url = format!("http://{addr}{}", local::http::MCP_PATH);
    let who = tunnel
        .welcome()
        .map(|w| w.identity.subject)
        .unwrap_or_default();
    print_endpoint(
        &url,
        target,
        &who,
        secret.as_deref(),
        launch.as_ref(),
        json_out,
        extra,
    );
    let state = Arc::new(local::http::LocalHttp {
        tunnel,
        target: target.to_owned(),
        secret,
    });
    local::http::serve(listener, state, shutdown_signal()).await?;
    eprintln!("hoop: stopped");
    Ok(())
}

fn print_endpoint(
    url: &str,
    target: &str,
    who: &str,
    secret: Option<&str>,
    launch: Option<&StdioLaunch>,
    json_out: bool,
    extra: Option<serde_json::Value>,
) {
    let name = format!("hoop-{target}");
    let headers = secret.map(|s| json!({"Authorization": format!("Bearer {s}")}));
    let vscode = json!({"servers": {&name: {"type": "http", "url": url, "headers": headers.clone().unwrap_or(json!({}))}}});
    let cursor = json!({"mcpServers": {&name: {"url": url, "headers": headers.clone().unwrap_or(json!({}))}}});
    let claude =
        launch.map(|l| json!({"mcpServers": {&name: {"command": l.command, "args": l.args}}}));
    if json_out {
        let mut out = json!({
            "url": url, "target": target, "identity": who, "secret": secret,
            "config": {"vscode": vscode, "cursor": cursor, "claude_desktop": claude},
        });
        if let (Some(o), Some(serde_json::Value::Object(more))) = (out.as_object_mut(), extra) {
            o.extend(more);
        }
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
    if let (Some(claude), Some(launch)) = (&claude, launch) {
        println!(
            "\nClaude Desktop (claude_desktop_config.json, runs hoop over stdio):\n{}",
            pretty(claude)
        );
        if launch.token_from_env {
            println!(
                "(the token came from HOOP_TOKEN, which is not copied here: add it to that entry's \"env\", or use --token-file)"
            );
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::{Trust, TunnelSettings};

    fn resolved(token: TokenSource, launch_args: &[&str]) -> Resolved {
        Resolved {
            tunnel: TunnelSettings {
                broker: ([127, 0, 0, 1], 4433).into(),
                fallbacks: Vec::new(),
                server_name: "localhost".into(),
                trust: Trust::Pin("sha256:00".into()),
                token,
            },
            login: "hoop login".into(),
            launch_args: launch_args.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_stdio_launch_carries_the_connection_flags() {
        let r = resolved(
            TokenSource::File("/t.token".into()),
            &["--broker", "127.0.0.1:4433", "--token-file", "/t.token"],
        );
        let l = StdioLaunch::new("payments", &r);
        assert_eq!(
            l.args,
            [
                "connect",
                "mcp",
                "payments",
                "--stdio",
                "--broker",
                "127.0.0.1:4433",
                "--token-file",
                "/t.token"
            ]
        );
        assert!(
            std::path::Path::new(&l.command).is_absolute(),
            "{}",
            l.command
        );
        assert!(!l.token_from_env);
    }

    #[test]
    fn a_literal_token_never_reaches_the_snippet() {
        let r = resolved(TokenSource::Static("s3cret".into()), &["--profile", "a"]);
        let l = StdioLaunch::new("payments", &r);
        assert!(l.token_from_env);
        assert!(!l.args.iter().any(|a| a.contains("s3cret")));
    }
}
