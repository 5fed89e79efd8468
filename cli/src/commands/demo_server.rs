//! `hoop demo-server`: the demo bank MCP server on its own, over HTTP or
//! stdio (for tests, benchmarks, and as a stdio target of a broker).

use std::path::PathBuf;

use super::CommandError;
use crate::demo_server::{self, DemoServerConfig};

#[derive(Debug, clap::Args)]
pub struct DemoServerArgs {
    /// Serve MCP streamable HTTP on this loopback port (0 picks one).
    #[arg(long, conflicts_with = "stdio")]
    pub port: Option<u16>,
    /// Serve MCP on stdin/stdout.
    #[arg(long)]
    pub stdio: bool,
    /// Append every message received to this file (JSON lines).
    #[arg(long)]
    pub record: Option<PathBuf>,
}

pub async fn run(args: DemoServerArgs) -> Result<(), CommandError> {
    let config = DemoServerConfig {
        record: args.record,
    };
    if args.stdio {
        demo_server::serve_stdio(config).await?;
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port.unwrap_or(0)))
        .await
        .map_err(anyhow::Error::from)?;
    let addr = listener.local_addr().map_err(anyhow::Error::from)?;
    println!("demo MCP server: http://{addr}{}", demo_server::MCP_PATH);
    demo_server::serve_http(listener, config, super::connect::shutdown_signal()).await?;
    Ok(())
}
