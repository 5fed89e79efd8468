//! One module per `hoop` subcommand.

pub mod approve;
pub mod audit;
pub mod auth;
pub mod connect;
pub mod demo;
pub mod demo_server;
pub mod exec;
pub mod login;
pub mod logout;
pub mod targets;
pub mod whoami;

/// Exit codes shared by every subcommand: one table, shown by `hoop --help`
/// and in docs/cli.md (a test holds the three to each other).
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const AUTH_FAILED: u8 = 3;
    pub const BROKER_UNREACHABLE: u8 = 4;
    /// `hoop exec`: a policy denied the call (or held it for approval).
    pub const DENIED: u8 = 5;
    /// `hoop exec`: the tool ran and reported an error.
    pub const TOOL_ERROR: u8 = 6;
    /// `hoop exec`: an approver denied the held call.
    pub const APPROVAL_DENIED: u8 = 7;
    /// `hoop exec`: the approval expired undecided, or `--wait` ran out
    /// while it was pending.
    pub const APPROVAL_EXPIRED: u8 = 8;
    /// The broker answered, but its certificate failed the trust check
    /// (pin, CA file, name or validity).
    pub const UNTRUSTED: u8 = 9;

    /// Every code: its number, its name in `--json` errors, and what it means.
    pub const TABLE: &[(u8, &str, &str)] = &[
        (OK, "ok", "success"),
        (
            FAILURE,
            "failure",
            "any other failure (upstream down, protocol or local I/O error)",
        ),
        (
            USAGE,
            "usage",
            "usage or configuration error (flag, config, profile, target, issuer)",
        ),
        (
            AUTH_FAILED,
            "auth_failed",
            "not logged in, token refused, or sign-in denied or expired",
        ),
        (
            BROKER_UNREACHABLE,
            "unreachable",
            "the broker or the identity provider cannot be reached",
        ),
        (
            DENIED,
            "denied",
            "denied: the call by policy (exec), or the action (approve, audit)",
        ),
        (
            TOOL_ERROR,
            "tool_error",
            "the tool ran and reported an error (exec)",
        ),
        (
            APPROVAL_DENIED,
            "approval_denied",
            "an approver denied the held call (exec)",
        ),
        (
            APPROVAL_EXPIRED,
            "approval_expired",
            "the approval expired, or --wait ran out first (exec)",
        ),
        (
            UNTRUSTED,
            "untrusted",
            "the broker's (or the IdP's) certificate failed the trust check",
        ),
    ];

    /// The `--json` name of `code`.
    pub fn name(code: u8) -> &'static str {
        TABLE
            .iter()
            .find(|(c, _, _)| *c == code)
            .map_or("failure", |(_, n, _)| n)
    }

    /// The table as `hoop --help` shows it: code, `--json` name, meaning.
    pub fn help() -> String {
        let mut s = String::from("Exit codes:\n");
        for (code, name, meaning) in TABLE {
            s.push_str(&format!("  {code}  {name:<16} {meaning}\n"));
        }
        s
    }
}

/// An error with the exit code it should end the process with, and the
/// next step for the person when the message alone does not say it.
#[derive(Debug)]
pub struct CommandError {
    pub code: u8,
    pub error: anyhow::Error,
    pub hint: Option<String>,
    /// More for `--json` (`hoop exec`: the JSON-RPC error, or the tool's
    /// result that reported the error).
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl From<anyhow::Error> for CommandError {
    fn from(error: anyhow::Error) -> Self {
        // An error from the sign-in or the token store keeps its own code
        // and hint wherever it was wrapped.
        if let Some(auth) = error.downcast_ref::<crate::auth::AuthError>() {
            return Self {
                code: auth.exit_code(),
                hint: auth.hint(),
                error,
                details: serde_json::Map::new(),
            };
        }
        Self::new(exit::FAILURE, error)
    }
}

impl CommandError {
    pub fn new(code: u8, error: anyhow::Error) -> Self {
        Self {
            code,
            error,
            hint: None,
            details: serde_json::Map::new(),
        }
    }

    /// A usage or configuration error.
    pub fn usage(error: anyhow::Error) -> Self {
        Self::new(exit::USAGE, error)
    }

    /// Adds `key` to the `--json` error object.
    pub fn with_detail(mut self, key: &str, value: serde_json::Value) -> Self {
        self.details.insert(key.to_owned(), value);
        self
    }

    /// Makes a hint's `hoop login` the one for the profile and config in
    /// use (`hoop login --profile work`).
    pub fn for_login(mut self, login: &str) -> Self {
        if let Some(h) = &mut self.hint {
            *h = h.replace("`hoop login`", &format!("`{login}`"));
        }
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A connection that could not be resolved: a usage or configuration
    /// error, except a demo profile with no demo running (unreachable) and
    /// no login to take a token from (not logged in).
    pub fn unresolved(error: anyhow::Error) -> Self {
        if error
            .downcast_ref::<crate::settings::NoRunningDemo>()
            .is_some()
        {
            return Self::new(exit::BROKER_UNREACHABLE, error);
        }
        if error.downcast_ref::<crate::auth::AuthError>().is_some() {
            return Self::from(error);
        }
        Self::usage(error)
    }

    /// Tells the person, on stderr; with `json`, also as one JSON object on
    /// stdout (`{"error": {"code", "exit_code", "message", "hint", …}}`,
    /// with the command's `details`), so a script that asked for JSON gets
    /// JSON on failure too.
    pub fn report(&self, json: bool) {
        eprintln!("hoop: {:#}", self.error);
        if let Some(h) = &self.hint {
            eprintln!("hint: {h}");
        }
        if json {
            let mut error = serde_json::Map::new();
            error.insert("code".into(), exit::name(self.code).into());
            error.insert("exit_code".into(), self.code.into());
            error.insert("message".into(), format!("{:#}", self.error).into());
            error.insert("hint".into(), self.hint.clone().into());
            for (k, v) in &self.details {
                error.insert(k.clone(), v.clone());
            }
            println!("{}", serde_json::json!({ "error": error }));
        }
    }
}

impl From<crate::tunnel::TunnelError> for CommandError {
    fn from(e: crate::tunnel::TunnelError) -> Self {
        use crate::tunnel::TunnelError;
        let code = match &e {
            TunnelError::Refused { .. } if e.is_auth() => exit::AUTH_FAILED,
            TunnelError::Unreachable { .. } => exit::BROKER_UNREACHABLE,
            TunnelError::Untrusted { .. } => exit::UNTRUSTED,
            TunnelError::Login(a) => a.exit_code(),
            // An unreadable or empty token file is a configuration error.
            TunnelError::Token(_) => exit::USAGE,
            _ => exit::FAILURE,
        };
        Self {
            code,
            hint: e.hint(),
            error: e.into(),
            details: serde_json::Map::new(),
        }
    }
}

/// A JSON-RPC error the broker answered a CLI request with, as the exit
/// code the help promises.
pub fn broker_refusal(e: &serde_json::Value) -> CommandError {
    use serde_json::Value;
    let code = e.get("code").and_then(Value::as_i64);
    let message = e
        .get("message")
        .and_then(Value::as_str)
        .or(e.as_str())
        .unwrap_or("refused");
    let exit_code = match code {
        Some(-32041) => exit::DENIED,
        Some(-32053 | -32054) => exit::AUTH_FAILED,
        Some(-32602 | -32600) => exit::USAGE,
        _ => exit::FAILURE,
    };
    CommandError::new(exit_code, anyhow::anyhow!("{message}"))
}

/// One exchange with the broker itself (no target): resolves the
/// connection, opens a stream of `kind` with `body`, reads every message of
/// the answer, and closes the connection. `hoop targets`, `hoop audit`.
pub async fn ask_broker(
    connection: &crate::settings::ConnectionArgs,
    kind: hoop_proto::StreamKind,
    body: Option<bytes::Bytes>,
) -> Result<Vec<bytes::Bytes>, CommandError> {
    let resolved = connection.resolve().map_err(CommandError::unresolved)?;
    let tunnel = crate::tunnel::TunnelClient::connect(resolved.tunnel)
        .await
        .map_err(|e| CommandError::from(e).for_login(&resolved.login))?;
    let open = hoop_proto::OpenStream {
        target: String::new(),
        kind,
        headers: hoop_proto::McpHeaders::default(),
    };
    let answer = async {
        let mut ex = tunnel.exchange(open, body).await?;
        let mut messages = Vec::new();
        // Bounded by the broker: the answer ends with Close.
        while let Some(m) = ex.next_message().await? {
            messages.push(m.body);
        }
        Ok::<_, crate::tunnel::TunnelError>(messages)
    }
    .await;
    // Whatever the answer, the broker sees this client leave now.
    tunnel.close().await;
    Ok(answer?)
}
