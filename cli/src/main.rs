//! `hoop`: the command line of the hoop MCP access broker.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hoop_cli::commands::{
    self, approve, audit, auth, connect, demo, demo_server, exec, exit, login, logout, targets,
    whoami,
};

/// `hoop --help`: what to type first, and where to read on.
const EXAMPLES: &str = "Examples:\n  hoop demo                                   # everything local: broker, demo server, endpoint\n  hoop connect mcp payments --port 8931       # serve target payments on 127.0.0.1:8931/mcp\n  hoop connect mcp payments --stdio           # for clients that launch a command\n  hoop login                                  # sign in with the profile's identity provider\n  hoop whoami                                 # who the stored login says you are\n  hoop exec mcp payments --tool get_customer --args '{\"customer_id\":\"c-1001\"}'\n  hoop audit search --user alice --since 1h   # who ran which call (audit readers)\n  hoop approve                                # decide calls held for approval\n\nWith --json, a failure is one JSON object on stdout too:\n  {\"error\": {\"code\": NAME, \"exit_code\": N, \"message\": TEXT, \"hint\": TEXT or null}}\nDocs: docs/cli.md (flags, profiles, exit codes), docs/certificates.md (trusting the broker)";

#[derive(Parser)]
#[command(
    name = "hoop",
    version,
    about = "Reach MCP servers through the hoop broker: identity, policy and a tamper-evident audit record on every call",
    after_help = format!("{EXAMPLES}\n\n{}", commands::exit::help()),
)]
struct Cli {
    /// Log filter for messages on stderr (e.g. info, debug).
    #[arg(
        long,
        global = true,
        env = "HOOP_LOG",
        default_value = "warn",
        help_heading = "Global options"
    )]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve an MCP target behind the broker to local MCP clients.
    Connect(connect::ConnectArgs),
    /// List the targets and the tools you may use on them.
    Targets(targets::TargetsArgs),
    /// Call one tool through the broker and exit (scripts, CI).
    Exec(exec::ExecArgs),
    /// Run broker, demo MCP server and endpoint on this machine.
    Demo(demo::DemoArgs),
    /// Run only the built-in demo MCP server.
    #[command(hide = true)]
    DemoServer(demo_server::DemoServerArgs),
    /// Sign in with the profile's OpenID provider (device code flow).
    Login(login::LoginArgs),
    /// Revoke the stored login at the identity provider and delete it here.
    Logout(logout::LogoutArgs),
    /// Show who the stored login says you are (subject, email, groups, issuer, expiry).
    Whoami(whoami::WhoamiArgs),
    /// Read the broker's audit log: search, replay, export, verify.
    Audit(audit::AuditArgs),
    /// Decide calls held for approval: the live view, or list, show, grant, deny.
    Approve(approve::ApproveArgs),
    /// Token helpers for scripts (`hoop auth token`).
    #[command(hide = true)]
    Auth(auth::AuthArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  source <(hoop completion bash)             # now, in this shell\n  hoop completion bash > ~/.local/share/bash-completion/completions/hoop\n  hoop completion zsh > \"${fpath[1]}/_hoop\"\n  hoop completion fish > ~/.config/fish/completions/hoop.fish"
    )]
    Completion { shell: clap_complete::Shell },
}

impl Command {
    /// Whether the command was asked for JSON output, so a failure is
    /// reported as JSON too.
    fn json(&self) -> bool {
        use approve::ApproveCommand as A;
        use audit::AuditCommand as U;
        match self {
            Self::Connect(a) => a.json,
            Self::Targets(a) => a.json,
            Self::Exec(a) => a.json,
            Self::Demo(a) => a.json,
            Self::Login(a) => a.json,
            Self::Whoami(a) => a.json,
            Self::Approve(a) => matches!(
                a.command,
                Some(
                    A::List { json: true, .. }
                        | A::Show { json: true, .. }
                        | A::Grant { json: true, .. }
                        | A::Deny { json: true, .. }
                )
            ),
            Self::Audit(a) => matches!(
                a.command,
                U::Search { json: true, .. }
                    | U::Replay { json: true, .. }
                    | U::Verify { json: true, .. }
                    | U::Key { json: true, .. }
            ),
            Self::DemoServer(_) | Self::Logout(_) | Self::Auth(_) | Self::Completion { .. } => {
                false
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completion { shell } = cli.command {
        use clap::CommandFactory as _;
        clap_complete::generate(shell, &mut Cli::command(), "hoop", &mut std::io::stdout());
        return ExitCode::from(exit::OK);
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colour codes only when a person reads stderr at a terminal.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    // One thread: the CLI serves one person's clients, and measured on
    // loopback a single-threaded runtime adds less latency per call than
    // handing each wake-up between worker threads (docs/benchmarks.md).
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hoop: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let json = cli.command.json();
    let result = rt.block_on(async {
        match cli.command {
            Command::Connect(a) => connect::run(a).await,
            Command::Exec(a) => exec::run(a).await,
            Command::Targets(a) => targets::run(a).await,
            Command::Demo(a) => demo::run(a).await,
            Command::DemoServer(a) => demo_server::run(a).await,
            Command::Login(a) => login::run(a).await,
            Command::Logout(a) => logout::run(a).await,
            Command::Whoami(a) => whoami::run(a).await,
            Command::Auth(a) => auth::run(a).await,
            Command::Audit(a) => audit::run(a).await,
            Command::Approve(a) => approve::run(a).await,
            // Answered before the runtime starts.
            Command::Completion { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            e.report(json);
            ExitCode::from(e.code)
        }
    }
}
