//! `hoop-broker`: run the broker (`serve`), or a loopback-only dev broker
//! with built-in identities (`dev`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use hoop_broker::config::BrokerConfig;
use hoop_broker::identity::dev::DevIdentities;
use hoop_broker::tunnel::tls::{self, TlsMaterial};

#[derive(Parser)]
#[command(
    name = "hoop-broker",
    version,
    about = "The hoop access broker: the one enforcement point between MCP clients and MCP servers",
    after_help = "Examples:\n  hoop-broker dev                          # loopback dev broker, identities alice and bob\n  hoop-broker dev --config broker.toml     # same, with your targets\n  hoop-broker dev token alice              # print a fresh dev token for alice\n  hoop-broker serve --config /etc/hoop/broker.toml"
)]
struct Cli {
    /// Log filter (e.g. info, debug, hoop_broker=debug).
    #[arg(long, global = true, env = "HOOP_LOG", default_value = "info")]
    log: String,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    /// Worker threads for the async runtime; 1 runs everything on one
    /// thread. Default: one per core for `serve`, 1 for `dev`.
    #[arg(long, global = true, env = "HOOP_BROKER_WORKER_THREADS")]
    worker_threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker from a config file.
    Serve {
        /// The broker's TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a loopback-only dev broker with a self-signed certificate and
    /// built-in dev identities (never for production).
    Dev(DevArgs),
}

#[derive(clap::Args)]
struct DevArgs {
    /// A TOML config with targets (and optionally dev identities).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// UDP address to listen on; must be loopback.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Where the dev certificate, signing key and tokens live.
    #[arg(long, env = "HOOP_BROKER_STATE_DIR")]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    action: Option<DevAction>,
}

#[derive(Subcommand)]
enum DevAction {
    /// Print a fresh token for a dev identity.
    Token {
        /// The dev identity, e.g. alice.
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log, cli.log_json);
    // A dev broker serves one person on loopback: one thread handles that
    // with less latency than handing every wake-up between workers
    // (docs/benchmarks.md). A shared broker needs every core.
    let threads = cli.worker_threads.unwrap_or(match cli.command {
        Command::Dev(_) => 1,
        Command::Serve { .. } => 0,
    });
    let rt = match threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Runtime::new(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config } => {
            let config = BrokerConfig::load(&config)?;
            let Some(files) = &config.tls else {
                anyhow::bail!("serve needs [tls] cert and key files in the config");
            };
            let _material = TlsMaterial::load(&files.cert, &files.key)?;
            anyhow::bail!(
                "serve needs trusted token issuers, and OIDC issuers are not supported yet; \
                 use `hoop-broker dev --config FILE` on this machine for now"
            )
        }
        Command::Dev(args) => dev(args).await,
    }
}

async fn dev(args: DevArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(p) => BrokerConfig::load(p)?,
        None => BrokerConfig::empty(),
    };
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if !config.listen.ip().is_loopback() {
        anyhow::bail!(
            "dev mode only listens on loopback (127.0.0.1 or ::1), not {}: its identities are not real",
            config.listen
        );
    }
    let state = match args.state_dir {
        Some(d) => d,
        None => directories::ProjectDirs::from("dev", "hoop", "hoop")
            .ok_or_else(|| anyhow::anyhow!("no home directory; pass --state-dir"))?
            .data_dir()
            .join("dev-broker"),
    };
    let identities =
        DevIdentities::load_or_create(&state.join("signing-key.pem"), config.dev.clone())?;
    if let Some(DevAction::Token { name }) = args.action {
        println!("{}", identities.mint(&name)?);
        return Ok(());
    }
    let files = tls::ensure_dev_cert(&state)?;
    let material = TlsMaterial::load(&files.cert, &files.key)?;
    let names: Vec<String> = identities.names().map(str::to_owned).collect();
    let mut token_files = Vec::new();
    for n in &names {
        let path = state.join("tokens").join(format!("{n}.token"));
        tls::write_private(&path, identities.mint(n)?.as_bytes())?;
        token_files.push((n.clone(), path));
    }
    let broker = hoop_broker::start(&config, material, Arc::new(identities)).await?;
    let targets: Vec<&str> = broker.pipeline.target_names().collect();
    println!("hoop dev broker listening on {} (QUIC)", broker.addr);
    println!(
        "certificate: {} ({})",
        files.cert.display(),
        broker.fingerprint
    );
    println!(
        "targets: {}",
        if targets.is_empty() {
            "(none: pass --config)".to_string()
        } else {
            targets.join(", ")
        }
    );
    for (n, p) in &token_files {
        println!("token for {n}: {}", p.display());
    }
    if let (Some(t), Some((_, p))) = (targets.first(), token_files.first()) {
        println!(
            "connect:  hoop connect mcp {t} --broker {} --pin {} --token-file {}",
            broker.addr,
            broker.fingerprint,
            p.display()
        );
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate() => {}
    }
    eprintln!("shutting down");
    broker.shutdown().await;
    Ok(())
}

async fn terminate() {
    #[cfg(unix)]
    {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
            return;
        }
    }
    std::future::pending::<()>().await
}

fn init_logging(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
