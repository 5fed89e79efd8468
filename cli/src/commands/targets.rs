//! `hoop targets`: what the broker lets me reach, as policy sees me now:
//! each target and the tools I may call, or call with an approval.

use hoop_proto::StreamKind;
use serde_json::Value;

use super::CommandError;
use crate::settings::ConnectionArgs;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  hoop targets\n  hoop targets --json | jq '.targets[].name'\n\nTools appear once the broker knows a target's tool list: it asks a 2026-07-28\nserver itself; for an older server, after anyone has listed its tools."
)]
pub struct TargetsArgs {
    /// Print the broker's answer as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

pub async fn run(args: TargetsArgs) -> Result<(), CommandError> {
    let body = super::ask_broker(&args.connection, StreamKind::Catalog, None)
        .await?
        .pop()
        .unwrap_or_default();
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| anyhow::anyhow!("the broker's answer is not JSON: {e}"))?;
    if let Some(e) = v.get("error") {
        return Err(anyhow::anyhow!(
            "{} (JSON-RPC error {})",
            e["message"].as_str().unwrap_or("refused"),
            e["code"]
        )
        .into());
    }
    if args.json {
        println!("{v}");
        return Ok(());
    }
    let who = &v["identity"];
    println!(
        "as {} ({}), groups: {}",
        who["subject"].as_str().unwrap_or("?"),
        who["issuer"].as_str().unwrap_or("?"),
        who["groups"]
            .as_array()
            .map(|g| g
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    );
    for t in v["targets"].as_array().into_iter().flatten() {
        let name = t["name"].as_str().unwrap_or("?");
        let tools = t["tools"].as_array().cloned().unwrap_or_default();
        if t["tools_known"] != Value::Bool(true) {
            println!(
                "{name}\n  (tools not known yet: list them once through `hoop connect mcp {name}`)"
            );
            continue;
        }
        if tools.is_empty() {
            println!("{name}\n  (no tools you may use)");
            continue;
        }
        println!("{name}");
        for tool in tools {
            let n = tool["name"].as_str().unwrap_or("?");
            match tool["access"].as_str() {
                Some("approval") => println!(
                    "  {n}  (needs approval: rule {})",
                    tool["rule"].as_str().unwrap_or("?")
                ),
                _ => println!("  {n}"),
            }
        }
    }
    Ok(())
}

/// The broker's target names, as its catalog lists them to this caller;
/// `None` when the catalog cannot be read (then nothing is concluded).
pub async fn target_names(tunnel: &crate::tunnel::TunnelClient) -> Option<Vec<String>> {
    let open = hoop_proto::OpenStream {
        target: String::new(),
        kind: StreamKind::Catalog,
        headers: hoop_proto::McpHeaders::default(),
    };
    let mut ex = tunnel.exchange(open, None).await.ok()?;
    let mut last = None;
    // Bounded by the broker: the answer ends with Close.
    while let Ok(Some(m)) = ex.next_message().await {
        last = Some(m.body);
    }
    let v: Value = serde_json::from_slice(&last?).ok()?;
    Some(
        v.get("targets")?
            .as_array()?
            .iter()
            .filter_map(|t| t["name"].as_str().map(str::to_owned))
            .collect(),
    )
}
