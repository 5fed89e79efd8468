//! `hoop-broker`: run the broker (`serve`), or a loopback-only dev broker
//! with built-in identities (`dev`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use hoop_broker::config::BrokerConfig;
use hoop_broker::identity::dev::DevIdentities;
use hoop_broker::identity::now_unix;
use hoop_broker::identity::oidc::OidcVerifier;
use hoop_broker::store::{BrokerStore, NewRevocation, StoreLocation};
use hoop_broker::tunnel::tls::{self, TlsMaterial};

#[derive(Parser)]
#[command(
    name = "hoop-broker",
    version,
    about = "The hoop access broker: the one enforcement point between MCP clients and MCP servers",
    after_help = "Examples:\n  hoop-broker dev                          # loopback dev broker, identities alice and bob\n  hoop-broker dev --config broker.toml     # same, with your targets\n  hoop-broker dev token alice              # print a fresh dev token for alice\n  hoop-broker serve --config /etc/hoop/broker.toml\n  hoop-broker revoke --subject carol --config /etc/hoop/broker.toml\n  hoop-broker revocations --config /etc/hoop/broker.toml\n  hoop-broker policy check policy.toml\n  echo '{\"ssn\": \"078-05-1120\"}' | hoop-broker mask --config broker.toml\n  hoop-broker policy explain policy.toml --subject alice --groups eng --target demo --tool delete_model"
)]
struct Cli {
    /// Log filter (e.g. info, debug, hoop_broker=debug).
    #[arg(
        long,
        global = true,
        env = "HOOP_LOG",
        default_value = "info",
        help_heading = "Global options"
    )]
    log: String,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, help_heading = "Global options")]
    log_json: bool,
    /// Worker threads for the async runtime; 1 runs everything on one
    /// thread. Default: one per core for `serve`, 1 for `dev`.
    #[arg(
        long,
        global = true,
        env = "HOOP_BROKER_WORKER_THREADS",
        help_heading = "Global options"
    )]
    worker_threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  source <(hoop-broker completion bash)\n  hoop-broker completion zsh > \"${fpath[1]}/_hoop-broker\"\n  hoop-broker completion fish > ~/.config/fish/completions/hoop-broker.fish"
    )]
    Completion { shell: clap_complete::Shell },
    /// Run the broker from a config file.
    #[command(
        after_help = "Examples:\n  hoop-broker serve --config /etc/hoop/broker.toml\n  HOOP_LOG=info hoop-broker serve -c broker.toml\n\nIt prints its certificate fingerprint (what clients --pin), its targets and\nissuers; /healthz on the admin listener (127.0.0.1:9478 unless [admin] listen)."
    )]
    Serve {
        /// The broker's TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a loopback-only dev broker with a self-signed certificate and
    /// built-in dev identities (never for production).
    #[command(
        after_help = "Examples:\n  hoop-broker dev\n  hoop-broker dev --config broker.toml --state-dir ./state\n  hoop-broker dev --state-dir ./state token alice     # a fresh token for alice"
    )]
    Dev(DevArgs),
    /// Cut a subject off now: its live connections end within 2 seconds and
    /// new ones are refused until the revocation expires or is lifted.
    #[command(
        after_help = "Examples:\n  hoop-broker revoke --subject carol --reason \"off-boarded\" --config /etc/hoop/broker.toml\n  hoop-broker revoke --subject workload:models-deploy --for 2h --config broker.toml\n  hoop-broker revoke --subject bob --issuer https://idp.example --dev"
    )]
    Revoke {
        /// The subject (`sub` of a person's token, or `workload:NAME`).
        #[arg(long)]
        subject: String,
        /// Only tokens from this issuer (default: every issuer).
        #[arg(long)]
        issuer: Option<String>,
        /// Lift the revocation by itself after this long (e.g. 30m, 8h, 7d).
        #[arg(long = "for", value_parser = parse_duration)]
        duration: Option<u64>,
        /// Why, for the record and for the person cut off.
        #[arg(long, default_value = "revoked by an administrator")]
        reason: String,
        /// Print the revocation as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Tool definitions the upstreams listed, and accepting changed ones.
    #[command(
        subcommand,
        after_help = "Examples:\n  hoop-broker tools list --config broker.toml\n  hoop-broker tools accept --target payments --tool transfer --config broker.toml"
    )]
    Tools(ToolsCommand),
    /// Check a policy file, or explain a decision, without a running broker.
    #[command(
        subcommand,
        after_help = "Examples:\n  hoop-broker policy check policy.toml\n  hoop-broker policy explain policy.toml --subject alice --groups eng --target demo --tool delete_model"
    )]
    Policy(hoop_broker::policy::command::PolicyCommand),
    /// List revocations (those in force, or --all).
    #[command(
        after_help = "Examples:\n  hoop-broker revocations --config /etc/hoop/broker.toml\n  hoop-broker revocations --all --json --dev"
    )]
    Revocations {
        /// Include lifted and expired ones.
        #[arg(long)]
        all: bool,
        /// Print JSON instead of a table (for scripts).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Read the audit log on this host: its key, search, replay, export,
    /// verify. Every read is itself recorded.
    #[command(
        subcommand,
        after_help = "Examples:\n  hoop-broker audit search --user alice --since 1h --config broker.toml\n  hoop-broker audit verify --config broker.toml\n  hoop-broker audit pubkey --dev"
    )]
    Audit(AuditCommand),
    /// Mask a document (JSON or text) with a masking profile, offline:
    /// what the broker would deliver and record.
    Mask(hoop_broker::masking::command::MaskArgs),
    /// Lift a revocation by its id (see `revocations`).
    #[command(
        after_help = "Examples:\n  hoop-broker unrevoke 3 --config /etc/hoop/broker.toml\n  hoop-broker unrevoke 1 --dev"
    )]
    Unrevoke {
        id: i64,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum ToolsCommand {
    /// Tools whose latest definition is not the accepted one (or --all).
    #[command(
        after_help = "Examples:\n  hoop-broker tools list --config broker.toml\n  hoop-broker tools list --all --json --dev"
    )]
    List {
        /// Only this target's tools.
        #[arg(long)]
        target: Option<String>,
        /// Every tool seen, accepted or not.
        #[arg(long)]
        all: bool,
        /// Print JSON instead of a table (for scripts).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Accept the latest definition of a tool, or of every changed tool of
    /// the target; a running broker unblocks it within a second.
    #[command(
        after_help = "Examples:\n  hoop-broker tools list --config broker.toml\n  hoop-broker tools accept --target payments --tool transfer --config broker.toml"
    )]
    Accept {
        /// The target (a name from the broker's config).
        #[arg(long)]
        target: String,
        /// The tool (default: every changed tool of the target).
        #[arg(long)]
        tool: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print the verifier key of the log's checkpoints (`name+id+base64`),
    /// what examiners verify exports with.
    #[command(
        after_help = "Examples:\n  hoop-broker audit pubkey --config /etc/hoop/broker.toml\n  hoop audit verify export.jsonl --key \"$(hoop-broker audit pubkey --dev)\""
    )]
    Pubkey {
        #[command(flatten)]
        log: LogArgs,
    },
    /// Events matching every filter given, oldest first.
    #[command(
        after_help = "Examples:\n  hoop-broker audit search --user alice --since 1h --config broker.toml\n  hoop-broker audit search --type auth.failure --json --dev"
    )]
    Search {
        #[command(flatten)]
        filters: hoop_broker::audit::reader::SearchFlags,
        /// One event per line as JSON (the log's own form), instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        log: LogArgs,
    },
    /// The timeline of one exchange or one MCP session.
    #[command(
        after_help = "Examples:\n  hoop-broker audit replay 5f0c2a1b00000007 --config broker.toml\n  hoop-broker audit replay 5f0c2a1b00000007 --json --dev"
    )]
    Replay {
        /// An exchange id or an MCP session id (from `search`).
        id: String,
        /// The timeline as JSON, instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Events with the checkpoints and proofs they need, to a file that
    /// verifies on its own; signed to the last event with the log's key.
    #[command(
        after_help = "Examples:\n  hoop-broker audit export --since 2026-12-01 --out dec.jsonl --config broker.toml\n  hoop-broker audit export --since 7d --format ocsf --out week.ocsf.jsonl --dev"
    )]
    Export {
        #[command(flatten)]
        export: hoop_broker::audit::reader::ExportFlags,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Check the whole log (every leaf, stored hash and checkpoint), or an
    /// export (FILE; offline, with --key).
    #[command(
        after_help = "Examples:\n  hoop-broker audit verify --config broker.toml\n  hoop-broker audit verify dec.jsonl --key \"$(hoop-broker audit pubkey --config broker.toml)\""
    )]
    Verify {
        /// An export (`audit export --format jsonl`); without it, the whole log.
        file: Option<PathBuf>,
        /// A verifier key (`audit pubkey`); repeat for rotated keys. Default
        /// for the whole log: the log's own key.
        #[arg(long)]
        key: Vec<String>,
        #[command(flatten)]
        log: LogArgs,
    },
}

/// Which audit log an admin command reads.
#[derive(clap::Args)]
struct LogArgs {
    /// The audit log file itself.
    #[arg(long = "audit-log", env = "HOOP_BROKER_AUDIT_LOG")]
    audit_log: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

impl LogArgs {
    fn local(&self) -> anyhow::Result<hoop_broker::audit::local::LocalLog> {
        use hoop_broker::audit::local::LocalLog;
        if let Some(p) = &self.audit_log {
            return Ok(LocalLog::new(
                hoop_broker::audit::AuditLocation::Sqlite(p.clone()),
                p.with_file_name("audit-signing.key"),
            ));
        }
        let mut config = match &self.store.config {
            Some(c) => BrokerConfig::load(c)?,
            None => BrokerConfig::empty(),
        };
        if config.store.is_none() {
            config.store = Some(self.store.location()?);
        }
        let (path, key) = hoop_broker::run::audit_paths(&config)?;
        Ok(LocalLog::new(path, key))
    }
}

/// Which broker store an admin command works on.
#[derive(clap::Args)]
struct StoreArgs {
    /// The store file itself.
    #[arg(long, env = "HOOP_BROKER_STORE")]
    store: Option<PathBuf>,
    /// The broker's config file (its `store`, or the default location).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The dev broker's store (under --state-dir, or its default state dir).
    #[arg(long)]
    dev: bool,
    /// The dev broker's state directory.
    #[arg(long, env = "HOOP_BROKER_STATE_DIR")]
    state_dir: Option<PathBuf>,
}

impl StoreArgs {
    fn location(&self) -> anyhow::Result<StoreLocation> {
        if let Some(p) = &self.store {
            return Ok(StoreLocation::Sqlite(p.clone()));
        }
        if let Some(c) = &self.config {
            return match BrokerConfig::load(c)?.store {
                Some(l) => Ok(l),
                None => Ok(StoreLocation::Sqlite(serve_store()?)),
            };
        }
        if let Some(d) = &self.state_dir {
            return Ok(StoreLocation::Sqlite(d.join("broker.db")));
        }
        if self.dev {
            return Ok(StoreLocation::Sqlite(dev_state_dir()?.join("broker.db")));
        }
        Ok(StoreLocation::Sqlite(serve_store()?))
    }
}

fn data_dir() -> anyhow::Result<PathBuf> {
    Ok(directories::ProjectDirs::from("dev", "hoop", "hoop")
        .ok_or_else(|| anyhow::anyhow!("no home directory; pass --store or --state-dir"))?
        .data_dir()
        .to_owned())
}

fn serve_store() -> anyhow::Result<PathBuf> {
    Ok(data_dir()?.join("broker.db"))
}

fn dev_state_dir() -> anyhow::Result<PathBuf> {
    Ok(data_dir()?.join("dev-broker"))
}

/// `30s`, `15m`, `8h`, `7d` (or plain seconds) as seconds.
fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30m, 8h or 7d"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{text:?}: unit must be s, m, h or d")),
    };
    match n.checked_mul(mult) {
        Some(0) | None => Err(format!("{text:?} is not a usable duration")),
        Some(secs) => Ok(secs),
    }
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
    #[command(
        after_help = "Examples:\n  hoop-broker dev token alice\n  hoop-broker dev --state-dir ./state token bob > bob.token"
    )]
    Token {
        /// The dev identity, e.g. alice.
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completion { shell } = cli.command {
        use clap::CommandFactory as _;
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "hoop-broker",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    if let Command::Mask(args) = cli.command {
        return match hoop_broker::masking::command::run(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Policy(cmd) = cli.command {
        return match hoop_broker::policy::command::run(cmd) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    // Everything the broker writes (its store and the store's journal
    // files, dev keys and tokens) is for its own user only.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    init_logging(&cli.log, cli.log_json);
    // A dev broker serves one person on loopback: one thread handles that
    // with less latency than handing every wake-up between workers
    // (docs/benchmarks.md). A shared broker needs every core.
    let threads = cli.worker_threads.unwrap_or(match cli.command {
        Command::Serve { .. } => 0,
        _ => 1,
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
        Command::Serve { config } => serve(&config).await,
        Command::Dev(args) => dev(args).await,
        // The admin commands block on their stores, off the runtime's
        // thread: PostgreSQL's client runs a runtime of its own, which
        // cannot start on a thread that drives this one.
        other => tokio::task::spawn_blocking(move || admin(other))
            .await
            .map_err(|e| anyhow::anyhow!("the command did not finish: {e}"))?,
    }
}

/// The commands that read or change the store and the audit log.
fn admin(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { .. } | Command::Dev(_) => Ok(()),
        Command::Policy(_) | Command::Mask(_) | Command::Completion { .. } => Ok(()),
        Command::Revoke {
            subject,
            issuer,
            duration,
            reason,
            json,
            store,
        } => {
            if let (Some(i), Some(c)) = (&issuer, &store.config) {
                let config = BrokerConfig::load(c)?;
                if !config.issuers.iter().any(|t| &t.issuer == i) {
                    let known: Vec<&str> =
                        config.issuers.iter().map(|t| t.issuer.as_str()).collect();
                    anyhow::bail!(
                        "--issuer {i:?} is not one this broker trusts, so the revocation would never match; trusted: {}",
                        known.join(", ")
                    );
                }
            }
            let s = BrokerStore::open_existing(&store.location()?)?;
            record_admin(
                &store,
                serde_json::json!({"command": "revoke", "subject": subject, "issuer": issuer, "reason": reason, "for_secs": duration}),
            )?;
            let now = now_unix();
            let by = hoop_broker::audit::local::os_user();
            let r = s.add_revocation(
                &NewRevocation {
                    subject: &subject,
                    issuer: issuer.as_deref(),
                    reason: &reason,
                    expires_at: duration.map(|d| now + d),
                    created_by: &by,
                },
                now,
            )?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "revoked {} ({}) as revocation {}{}; a running broker using {} ends its connections within 2 s",
                    r.subject,
                    r.issuer.as_deref().unwrap_or("every issuer"),
                    r.id,
                    match r.expires_at {
                        Some(e) => format!(", until {} (unix)", e),
                        None => ", until lifted with `hoop-broker unrevoke`".into(),
                    },
                    s.location()
                );
            }
            Ok(())
        }
        Command::Revocations { all, json, store } => {
            let s = BrokerStore::open_existing(&store.location()?)?;
            let list = s.revocations(all, now_unix())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no revocations{}", if all { "" } else { " in force" });
            } else {
                println!(
                    "{:<5} {:<32} {:<28} {:<12} {:<12} REASON",
                    "ID", "SUBJECT", "ISSUER", "CREATED", "UNTIL"
                );
                for r in list {
                    println!(
                        "{:<5} {:<32} {:<28} {:<12} {:<12} {}",
                        r.id,
                        r.subject,
                        r.issuer.as_deref().unwrap_or("*"),
                        r.created_at,
                        match (r.lifted_at, r.expires_at) {
                            (Some(l), _) => format!("lifted {l}"),
                            (None, Some(e)) => e.to_string(),
                            (None, None) => "until lifted".into(),
                        },
                        r.reason
                    );
                }
            }
            Ok(())
        }
        Command::Tools(ToolsCommand::List {
            target,
            all,
            json,
            store,
        }) => {
            let s = BrokerStore::open_existing(&store.location()?)?;
            let rows: Vec<_> = s
                .tool_status(target.as_deref())?
                .into_iter()
                .filter(|r| all || r.accepted.as_ref() != r.seen.as_ref())
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!(
                    "{}",
                    if all {
                        "no tools seen yet"
                    } else {
                        "no changed tools"
                    }
                );
            } else {
                println!("{:<20} {:<32} STATE", "TARGET", "TOOL");
                for r in rows {
                    let state = match (&r.accepted, &r.seen) {
                        (Some(a), Some(s)) if a == s => "accepted",
                        (None, _) => "new, not accepted",
                        _ => "changed since accepted",
                    };
                    println!("{:<20} {:<32} {state}", r.target, r.tool);
                }
            }
            Ok(())
        }
        Command::Tools(ToolsCommand::Accept {
            target,
            tool,
            store,
        }) => {
            let s = BrokerStore::open_existing(&store.location()?)?;
            record_admin(
                &store,
                serde_json::json!({"command": "tools accept", "target": target, "tool": tool}),
            )?;
            let by = hoop_broker::audit::local::os_user();
            let n = s.accept_tools(&target, tool.as_deref(), &by, now_unix())?;
            if n == 0 {
                anyhow::bail!(
                    "nothing to accept on target {target}{}: see `hoop-broker tools list`",
                    tool.map(|t| format!(" for tool {t}")).unwrap_or_default()
                );
            }
            println!("accepted {n} tool definition(s) on target {target}");
            Ok(())
        }
        Command::Audit(cmd) => audit_command(cmd),
        Command::Unrevoke { id, store } => {
            let s = BrokerStore::open_existing(&store.location()?)?;
            record_admin(&store, serde_json::json!({"command": "unrevoke", "id": id}))?;
            if s.lift_revocation(id, now_unix())? {
                println!("revocation {id} lifted");
                Ok(())
            } else {
                anyhow::bail!("no revocation {id} in force (see `hoop-broker revocations --all`)")
            }
        }
    }
}

/// Records an administrator's command in the audit log before it acts:
/// a change that cannot be recorded is not made.
fn record_admin(store: &StoreArgs, detail: serde_json::Value) -> anyhow::Result<()> {
    let log = LogArgs {
        audit_log: None,
        store: StoreArgs {
            store: store.store.clone(),
            config: store.config.clone(),
            dev: store.dev,
            state_dir: store.state_dir.clone(),
        },
    };
    log.local()?
        .record(hoop_broker::audit::event::EventKind::AdminCommand, detail)?;
    Ok(())
}

fn audit_command(cmd: AuditCommand) -> anyhow::Result<()> {
    use hoop_broker::audit::reader::AuditRequest;
    use hoop_broker::audit::view;
    let now = hoop_broker::audit::event::now_ns();
    let read = |log: &LogArgs, req: &AuditRequest, keys: &[String]| -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        log.local()?.read(req, keys, &mut out)?;
        Ok(out)
    };
    let lines_of = |log: &LogArgs, req: &AuditRequest| read(log, req, &[]);
    match cmd {
        AuditCommand::Pubkey { log } => {
            // Recorded as every read is (method `key`); the key printed is
            // the signing key's own where it is readable here.
            let out = read(&log, &AuditRequest::Key, &[])?;
            let recorded: serde_json::Value = serde_json::from_slice(out.trim_ascii_end())?;
            let local = log.local()?;
            let key = local
                .verifier_key()
                .or_else(|| recorded["key"].as_str().map(str::to_owned));
            match key {
                Some(k) => {
                    println!("{k}");
                    Ok(())
                }
                None => anyhow::bail!(
                    "no audit log with a key at {}: the broker makes both when it starts",
                    local.location()
                ),
            }
        }
        AuditCommand::Search { filters, json, log } => {
            let req = filters.request(now).map_err(|e| anyhow::anyhow!(e))?;
            view::print_lines(&lines_of(&log, &req)?, json, view::table)
        }
        AuditCommand::Replay { id, json, log } => {
            let out = lines_of(&log, &AuditRequest::Replay { id: id.clone() })?;
            if out.is_empty() && !json {
                anyhow::bail!(
                    "no exchange or session {id:?} in the audit log (ids come from `audit search`)"
                );
            }
            view::print_lines(&out, json, view::timeline)
        }
        AuditCommand::Export { export, log } => {
            let req = export.request(now).map_err(|e| anyhow::anyhow!(e))?;
            let out = lines_of(&log, &req)?;
            view::write_export(&export.out, &out)
        }
        AuditCommand::Verify {
            file: Some(file),
            key,
            log,
        } => {
            let keys = if key.is_empty() {
                log.local()?.verifier_key().into_iter().collect()
            } else {
                key
            };
            let f = std::fs::File::open(&file)
                .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", file.display()))?;
            match hoop_audit_log::verify_export(std::io::BufReader::new(f), &keys) {
                Ok(r) => {
                    println!("{r}");
                    Ok(())
                }
                Err(e) => {
                    println!("FAIL {e}");
                    anyhow::bail!("{} does not verify", file.display())
                }
            }
        }
        AuditCommand::Verify {
            file: None,
            key,
            log,
        } => {
            let out = read(&log, &AuditRequest::Verify, &key)?;
            let report: serde_json::Value = serde_json::from_slice(out.trim_ascii_end())?;
            println!("{}", report["summary"].as_str().unwrap_or("?"));
            if report["ok"] == serde_json::Value::Bool(true) {
                Ok(())
            } else {
                anyhow::bail!("the audit log does not verify")
            }
        }
    }
}

async fn serve(path: &std::path::Path) -> anyhow::Result<()> {
    if cfg!(feature = "bench-unrecorded") {
        anyhow::bail!("this hoop-broker was built with the benchmark feature `bench-unrecorded` and records nothing in its audit log: it only runs `dev`; build it without that feature");
    }
    let mut config = BrokerConfig::load(path)?;
    let Some(files) = &config.tls else {
        anyhow::bail!(
            "{}: serve needs [tls] cert = \"…\" and key = \"…\" (PEM files)",
            path.display()
        );
    };
    let material = TlsMaterial::load(&files.cert, &files.key)?;
    if config.issuers.is_empty() {
        anyhow::bail!(
            "{}: serve needs at least one trusted token issuer ([[issuers]] issuer, audience); see docs/identity.md",
            path.display()
        );
    }
    if config.store.is_none() {
        config.store = Some(StoreLocation::Sqlite(serve_store()?));
    }
    if config.admin.listen.is_none() {
        config.admin.listen = Some(SocketAddr::from(([127, 0, 0, 1], DEFAULT_ADMIN_PORT)));
    }
    if config.policy.is_none() {
        eprintln!(
            "warning: no policy file (policy = \"…\" in {}): every authenticated call is allowed; see docs/policy.md",
            path.display()
        );
    }
    let verifier = Arc::new(OidcVerifier::new(&config.issuers)?);
    verifier.prefetch().await;
    let broker = hoop_broker::start(&config, material, verifier).await?;
    println!("hoop broker listening on {} (QUIC)", broker.addr);
    println!("certificate fingerprint: {}", broker.fingerprint);
    let targets: Vec<&str> = broker.pipeline.target_names().collect();
    println!("targets: {}", targets.join(", "));
    for i in &config.issuers {
        println!(
            "trusts: {} ({:?}, audience {})",
            i.issuer, i.kind, i.audience
        );
    }
    if let Some(s) = &config.store {
        println!("store: {s}");
    }
    if let Some(p) = &config.policy {
        println!(
            "policy: {} (reloaded when it changes, or on SIGHUP)",
            p.display()
        );
    }
    print_audit(&broker);
    serve_until_stopped(broker).await;
    Ok(())
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
    let state = match args.state_dir.clone() {
        Some(d) => d,
        None => dev_state_dir()?,
    };
    // What it prints is pasted into other terminals, other directories.
    let state = std::path::absolute(&state).unwrap_or(state);
    if !config.issuers.is_empty() {
        eprintln!("note: dev mode ignores [[issuers]]; it trusts only its own dev identities");
    }
    if config.store.is_none() {
        config.store = Some(StoreLocation::Sqlite(state.join("broker.db")));
    }
    if config.drain_secs.is_none() {
        config.drain_secs = Some(hoop_broker::config::DEV_DRAIN_SECS);
    }
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
            match &args.config {
                Some(c) => format!("(none in {}: add [targets.NAME] tables)", c.display()),
                None => "(none: pass --config)".to_string(),
            }
        } else {
            targets.join(", ")
        }
    );
    for (n, p) in &token_files {
        println!("token for {n}: {}", p.display());
    }
    print_audit(&broker);
    if let (Some(t), Some((_, p))) = (targets.first(), token_files.first()) {
        println!(
            "connect:  hoop connect mcp {t} --broker {} --pin {} --token-file {}",
            broker.addr,
            broker.fingerprint,
            p.display()
        );
    }
    serve_until_stopped(broker).await;
    Ok(())
}

/// Where `serve` answers `/healthz` unless `[admin] listen` says otherwise.
const DEFAULT_ADMIN_PORT: u16 = 4434;

fn print_audit(broker: &hoop_broker::RunningBroker) {
    let h = broker.pipeline.audit().log().health();
    println!(
        "audit log: {} (durability {}, {} events); verifier key: {}",
        h.location,
        h.durability.as_str(),
        h.tree_size,
        broker.audit_key()
    );
    if let Some(a) = broker.admin_addr {
        println!("admin: http://{a}/healthz");
    }
}

/// Serves until Ctrl-C or SIGTERM, then shuts the broker down cleanly.
async fn serve_until_stopped(broker: hoop_broker::RunningBroker) {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate() => {}
    }
    eprintln!("shutting down");
    broker.shutdown().await;
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
    // Colour codes only for a person at a terminal: a log file or a log
    // collector gets plain lines (and each line is cheaper to write).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
