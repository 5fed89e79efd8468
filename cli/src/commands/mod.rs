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

/// Exit codes shared by every subcommand (documented in `hoop --help`).
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
}

/// An error with the exit code it should end the process with.
#[derive(Debug)]
pub struct CommandError {
    pub code: u8,
    pub error: anyhow::Error,
}

impl From<anyhow::Error> for CommandError {
    fn from(error: anyhow::Error) -> Self {
        Self {
            code: exit::FAILURE,
            error,
        }
    }
}

impl CommandError {
    /// A connection that could not be resolved: a usage or configuration
    /// error, except a demo profile with no demo running (unreachable).
    pub fn unresolved(error: anyhow::Error) -> Self {
        let code = if error
            .downcast_ref::<crate::settings::NoRunningDemo>()
            .is_some()
        {
            exit::BROKER_UNREACHABLE
        } else {
            exit::USAGE
        };
        Self { code, error }
    }
}

impl From<crate::tunnel::TunnelError> for CommandError {
    fn from(e: crate::tunnel::TunnelError) -> Self {
        use crate::tunnel::TunnelError;
        let code = match &e {
            TunnelError::Refused { .. } if e.is_auth() => exit::AUTH_FAILED,
            TunnelError::Unreachable { .. } => exit::BROKER_UNREACHABLE,
            // An unreadable or empty token file is a configuration error.
            TunnelError::Token(_) => exit::USAGE,
            _ => exit::FAILURE,
        };
        Self {
            code,
            error: e.into(),
        }
    }
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
    let tunnel = crate::tunnel::TunnelClient::connect(resolved.tunnel).await?;
    let open = hoop_proto::OpenStream {
        target: String::new(),
        kind,
        headers: hoop_proto::McpHeaders::default(),
    };
    let mut ex = tunnel.exchange(open, body).await?;
    let mut messages = Vec::new();
    // Bounded by the broker: the answer ends with Close.
    while let Some(m) = ex.next_message().await? {
        messages.push(m.body);
    }
    tunnel.close().await;
    Ok(messages)
}
