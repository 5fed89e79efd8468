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

/// clap's own usage error, exit 2; with `--json` among the arguments, also
/// as the JSON error object every failure prints then.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(exit::USAGE));
    }
    if std::env::args_os().any(|a| a == "--json") {
        let text = e.to_string();
        // The first paragraph: "the following required arguments were
        // not provided:" and the arguments under it.
        let message = text
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ")
            .trim_start_matches("error: ")
            .to_owned();
        let hint = text
            .lines()
            .find(|l| l.starts_with("For more information"))
            .map(|l| l.trim_start_matches("For more information, ").to_owned());
        println!(
            "{}",
            serde_json::json!({"error": {
                "code": exit::name(exit::USAGE),
                "exit_code": exit::USAGE,
                "message": message,
                "hint": hint,
            }})
        );
    }
    let _ = e.print();
    ExitCode::from(exit::USAGE)
}

/// A reader that stops reading (`hoop … | head`) ends hoop quietly with
/// 141, as the SIGPIPE a C program dies of would, instead of a panic:
/// Rust ignores SIGPIPE, so `println!` panics on the closed pipe.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    if let Command::Completion { shell } = cli.command {
        use clap::CommandFactory as _;
        clap_complete::generate(shell, &mut Cli::command(), "hoop", &mut std::io::stdout());
        return ExitCode::from(exit::OK);
    }
    // The platform verifier logs its own ERROR for a certificate it
    // refuses, which hoop already explains; only a chosen filter shows it.
    let log = match cli.log.as_str() {
        "warn" => "warn,rustls_platform_verifier=off",
        other => other,
    };
    let filter = tracing_subscriber::EnvFilter::try_new(log)
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
