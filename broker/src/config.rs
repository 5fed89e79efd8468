//! The broker's configuration file (TOML): where it listens, its TLS
//! material, the upstream MCP targets and, in dev mode, the dev identities.
//!
//! Parsing is strict (`deny_unknown_fields`) so a typo is an error with a
//! line and column, not a silently ignored setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// UDP address of the QUIC listener.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// TLS certificate chain and key (PEM). Required by `serve`; `dev`
    /// creates its own when absent.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Upstream MCP servers, by the name clients use in `hoop connect mcp NAME`.
    #[serde(default)]
    pub targets: BTreeMap<String, TargetConfig>,
    /// Dev identities (only read by `hoop-broker dev`).
    #[serde(default)]
    pub dev: DevConfig,
    /// Limits on what clients may send.
    #[serde(default)]
    pub limits: Limits,
    /// Token issuers the broker trusts (`serve` needs at least one).
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    /// The policy file (docs/policy.md). Without one every call is allowed
    /// under a named built-in rule, which `serve` warns about.
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// The broker's store (revocations, accepted tool definitions,
    /// approvals): an SQLite file, default `broker.db` in the broker's data
    /// directory (`serve`) or state directory (`dev`); or a PostgreSQL
    /// schema shared by several replicas (`{ postgres = "postgres://…" }`).
    #[serde(default)]
    pub store: Option<crate::store::StoreLocation>,
    /// The audit log (docs/audit.md).
    #[serde(default)]
    pub audit: AuditConfig,
    /// The admin HTTP listener (`/healthz`).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Masking of protected data (docs/masking.md).
    #[serde(default)]
    pub masking: MaskingConfig,
    /// Holding calls for approval (docs/approvals.md).
    #[serde(default)]
    pub approvals: ApprovalsConfig,
    /// On SIGTERM, how long the broker lets exchanges in flight finish
    /// before it ends the connections (docs/operations.md); default 25 s
    /// for `serve` (under Kubernetes' 30 s grace period), 2 s for `dev` and
    /// `hoop demo`.
    #[serde(default)]
    pub drain_secs: Option<u64>,
}

/// `drain_secs` unless the config says otherwise, for `serve`.
pub const DEFAULT_DRAIN_SECS: u64 = 25;
/// The same for a dev broker or the demo: a person at a terminal.
pub const DEV_DRAIN_SECS: u64 = 2;

/// `[approvals]`: how long a held call's request stays open before the
/// broker answers "pending, call again", and how often it says it waits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsConfig {
    /// Where the client sent a progress token (default 180).
    #[serde(default = "default_hold_secs")]
    pub hold_secs: u64,
    /// Where it did not: under the 60 s a TypeScript SDK client waits
    /// (default 50).
    #[serde(default = "default_hold_secs_without_progress")]
    pub hold_secs_without_progress: u64,
    /// Progress notifications to a held call (default every 15 s).
    #[serde(default = "default_progress_every_secs")]
    pub progress_every_secs: u64,
    /// Where new requests and decisions are announced.
    #[serde(default)]
    pub webhooks: Vec<crate::approval::webhook::WebhookConfig>,
}

fn default_hold_secs() -> u64 {
    180
}
fn default_hold_secs_without_progress() -> u64 {
    50
}
fn default_progress_every_secs() -> u64 {
    15
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        Self {
            hold_secs: default_hold_secs(),
            hold_secs_without_progress: default_hold_secs_without_progress(),
            progress_every_secs: default_progress_every_secs(),
            webhooks: Vec::new(),
        }
    }
}

/// `[masking]`: on unless turned off; the key file for keyed hashes; and
/// the profiles (`[masking.profiles.default]` changes the one every call
/// uses today).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The keyed-hash secret (made 0600 on first start). Default:
    /// `masking.key` beside the audit log. Brokers that share it give equal
    /// tokens for equal values.
    #[serde(default)]
    pub key: Option<PathBuf>,
    #[serde(default)]
    pub profiles: BTreeMap<String, hoop_masking::ProfileConfig>,
}

fn default_true() -> bool {
    true
}

impl Default for MaskingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            key: None,
            profiles: BTreeMap::new(),
        }
    }
}

/// `[audit]`: where the log lives, how durable an append is, how often it
/// is checkpointed, and who may read it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The log's SQLite file. Default: `audit.db` beside the store.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// The checkpoint signing key (created 0600 on first start). Default:
    /// `audit-signing.key` beside the log.
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    /// `fsync` (on disk before the call goes on; the default) or `os`
    /// (handed to the operating system: survives a crash of the broker, not
    /// of the machine; the default of `hoop demo`).
    #[serde(default)]
    pub durability: Option<AuditDurability>,
    /// The checkpoints' origin line and key name. Default: a name made once
    /// for this log, `hoop.local/audit/<8 hex digits>`.
    #[serde(default)]
    pub origin: Option<String>,
    /// A signed checkpoint after this many events…
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// …or this many seconds after the first event it does not cover yet.
    #[serde(default = "default_checkpoint_secs")]
    pub checkpoint_interval_secs: u64,
    /// Groups whose members may read the log through `hoop audit`.
    #[serde(default)]
    pub readers: Vec<String>,
    /// Events older than this many days are removed (cut at a signed
    /// checkpoint, so the rest still verifies). Default 400: PCI DSS's
    /// twelve months with margin.
    #[serde(default = "default_retention_days")]
    pub retention_days: u64,
}

fn default_retention_days() -> u64 {
    400
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditDurability {
    Fsync,
    Os,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: None,
            signing_key: None,
            durability: None,
            origin: None,
            checkpoint_every: default_checkpoint_every(),
            checkpoint_interval_secs: default_checkpoint_secs(),
            readers: Vec::new(),
            retention_days: default_retention_days(),
        }
    }
}

fn default_checkpoint_every() -> u64 {
    1000
}

fn default_checkpoint_secs() -> u64 {
    10
}

/// `[admin]`: the admin HTTP listener. `serve` listens on 127.0.0.1:4434
/// unless told otherwise; `dev` only when `listen` is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// One trusted token issuer: an OIDC identity provider for people, or a
/// workload issuer (CI, Kubernetes) for machines.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The exact `iss` of its tokens, e.g. `https://bank.okta.com/oauth2/default`.
    pub issuer: String,
    /// Where its OIDC discovery document is. Default:
    /// `<issuer>/.well-known/openid-configuration`.
    #[serde(default)]
    pub discovery_url: Option<String>,
    /// The `aud` its tokens must carry for this broker.
    pub audience: String,
    /// Where the groups are in the token's claims: a dotted path, so
    /// `realm_access.roles` (Keycloak) works. Default `groups`.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// `human` (people, via `hoop login`) or `workload` (CI jobs, services).
    #[serde(default = "default_issuer_kind")]
    pub kind: IssuerKind,
    /// Clock skew tolerated on exp, nbf and iat, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Signature algorithms accepted; only asymmetric ones are allowed.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// For `workload` issuers: which tokens are which workload. The first
    /// rule whose claims all match wins; a token no rule matches is refused.
    #[serde(default)]
    pub workloads: Vec<WorkloadRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssuerKind {
    Human,
    Workload,
}

/// Maps a workload token to a named workload identity with its own groups.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadRule {
    /// The workload's name; it becomes the identity's subject as
    /// `workload:<name>`, so policy and audit name the job, not a person.
    pub name: String,
    /// Claims the token must carry, each exactly, or as a prefix when the
    /// value ends in `*` (`ref = "refs/heads/release/*"`).
    pub claims: BTreeMap<String, String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

fn default_groups_claim() -> String {
    "groups".into()
}

fn default_issuer_kind() -> IssuerKind {
    IssuerKind::Human
}

fn default_leeway() -> u64 {
    30
}

/// Signing keys decide every identity, so where they come from must be
/// authenticated: `https://`, or plain `http://` only on loopback (tests).
pub fn secure_url(url: &str) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let loopback = u.host_str().is_some_and(|h| {
        h == "localhost"
            || h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    match u.scheme() {
        "https" => Ok(u),
        "http" if loopback => Ok(u),
        _ => Err(format!(
            "{url:?} must be https:// (plain http only on loopback, for tests)"
        )),
    }
}

/// The asymmetric algorithms the broker accepts by default.
pub const ASYMMETRIC_ALGORITHMS: [&str; 4] = ["RS256", "PS256", "ES256", "EdDSA"];

fn default_algorithms() -> Vec<String> {
    ASYMMETRIC_ALGORITHMS
        .iter()
        .map(|a| (*a).to_owned())
        .collect()
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4433))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One upstream MCP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// `http` (MCP streamable HTTP) or `stdio` (a child process).
    pub transport: TransportKind,
    /// The upstream's MCP endpoint (`http`).
    #[serde(default)]
    pub url: Option<String>,
    /// The program to start (`stdio`).
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment of the child (`stdio`); the broker's own is inherited.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Children kept for stateless (2026-07-28) requests (`stdio`).
    #[serde(default = "default_pool")]
    pub pool_size: usize,
    /// Where the broker's own credential for this upstream comes from.
    #[serde(default)]
    pub credential: Option<CredentialSource>,
    /// Seconds to wait for an upstream's first answer.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// What to do when the upstream changes a tool after it was accepted:
    /// `warn` (log it) or `block` (also hide and refuse it until
    /// `hoop-broker tools accept`).
    #[serde(default)]
    pub tool_drift: DriftMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftMode {
    #[default]
    Warn,
    Block,
}

fn default_timeout() -> u64 {
    300
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    Http,
    Stdio,
}

fn default_pool() -> usize {
    2
}

/// A bearer token the broker presents upstream, read at start-up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSource {
    /// Name of an environment variable holding the token.
    #[serde(default)]
    pub bearer_env: Option<String>,
    /// A file holding the token (surrounding whitespace is trimmed).
    #[serde(default)]
    pub bearer_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevConfig {
    #[serde(default = "default_dev_identities")]
    pub identities: Vec<DevIdentityConfig>,
    /// Lifetime of minted dev tokens, in seconds.
    #[serde(default = "default_dev_ttl")]
    pub token_ttl_secs: u64,
}

impl Default for DevConfig {
    fn default() -> Self {
        Self {
            identities: default_dev_identities(),
            token_ttl_secs: default_dev_ttl(),
        }
    }
}

fn default_dev_ttl() -> u64 {
    12 * 3600
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevIdentityConfig {
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

fn default_dev_identities() -> Vec<DevIdentityConfig> {
    vec![
        DevIdentityConfig {
            name: "alice".into(),
            email: Some("alice@example.com".into()),
            groups: vec!["eng".into()],
        },
        DevIdentityConfig {
            name: "bob".into(),
            email: Some("bob@example.com".into()),
            groups: vec!["ml-leads".into()],
        },
    ]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest single frame (one JSON-RPC message) accepted, in bytes.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: default_max_message(),
        }
    }
}

fn default_max_message() -> usize {
    hoop_proto::limits::DEFAULT_MAX_FRAME_LEN
}

impl BrokerConfig {
    /// Reads and validates a config file; errors name the file and position.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        let mut config =
            Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        // Paths in the file mean the same whatever directory the broker (or
        // an admin command) is started from: relative to the file.
        let base = path.parent().unwrap_or(Path::new("."));
        let anchor = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(crate::store::StoreLocation::Sqlite(s)) = config.store.as_mut() {
            anchor(s);
        }
        if let Some(a) = config.audit.path.as_mut() {
            anchor(a);
        }
        if let Some(k) = config.audit.signing_key.as_mut() {
            anchor(k);
        }
        if let Some(p) = config.policy.as_mut() {
            anchor(p);
        }
        if let Some(k) = config.masking.key.as_mut() {
            anchor(k);
        }
        if let Some(t) = config.tls.as_mut() {
            anchor(&mut t.cert);
            anchor(&mut t.key);
        }
        Ok(config)
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: Self = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// An empty config: loopback listener, no targets, default dev identities.
    pub fn empty() -> Self {
        Self {
            listen: default_listen(),
            tls: None,
            targets: BTreeMap::new(),
            dev: DevConfig::default(),
            limits: Limits::default(),
            issuers: Vec::new(),
            store: None,
            policy: None,
            audit: AuditConfig::default(),
            admin: AdminConfig::default(),
            masking: MaskingConfig::default(),
            approvals: ApprovalsConfig::default(),
            drain_secs: None,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        for (i, iss) in self.issuers.iter().enumerate() {
            let at = format!("issuers[{i}] ({})", iss.issuer);
            secure_url(&iss.issuer).map_err(|e| anyhow::anyhow!("{at}: issuer {e}"))?;
            if let Some(d) = &iss.discovery_url {
                secure_url(d).map_err(|e| anyhow::anyhow!("{at}: discovery_url {e}"))?;
            }
            if iss.audience.trim().is_empty() {
                anyhow::bail!("{at}: audience must not be empty");
            }
            if iss.algorithms.is_empty() {
                anyhow::bail!(
                    "{at}: algorithms must name at least one of {}",
                    ASYMMETRIC_ALGORITHMS.join(", ")
                );
            }
            for a in &iss.algorithms {
                if !ASYMMETRIC_ALGORITHMS.contains(&a.as_str()) {
                    anyhow::bail!(
                        "{at}: algorithm {a:?} is not accepted; use asymmetric ones: {}",
                        ASYMMETRIC_ALGORITHMS.join(", ")
                    );
                }
            }
            if iss.leeway_secs > 300 {
                anyhow::bail!("{at}: leeway_secs is at most 300");
            }
            match iss.kind {
                IssuerKind::Human if !iss.workloads.is_empty() => {
                    anyhow::bail!("{at}: workloads rules need kind = \"workload\"");
                }
                IssuerKind::Workload if iss.workloads.is_empty() => {
                    anyhow::bail!("{at}: a workload issuer needs at least one [[issuers.workloads]] rule (name, claims, groups)");
                }
                _ => {}
            }
            for w in &iss.workloads {
                if w.claims.is_empty() {
                    anyhow::bail!("{at}: workload {:?} must match at least one claim", w.name);
                }
            }
            if self.issuers[..i].iter().any(|o| o.issuer == iss.issuer) {
                anyhow::bail!("{at}: issuer listed twice");
            }
        }
        let a = &self.approvals;
        if [
            a.hold_secs,
            a.hold_secs_without_progress,
            a.progress_every_secs,
        ]
        .iter()
        .any(|s| !(1..=3600).contains(s))
        {
            anyhow::bail!("[approvals] hold_secs, hold_secs_without_progress and progress_every_secs must be 1 to 3600 seconds");
        }
        if self.audit.retention_days == 0 {
            anyhow::bail!("[audit] retention_days must be at least 1 (PCI DSS asks for 365)");
        }
        if self.audit.checkpoint_every == 0 || self.audit.checkpoint_interval_secs == 0 {
            anyhow::bail!(
                "[audit] checkpoint_every and checkpoint_interval_secs must be at least 1"
            );
        }
        // Both become deadlines (an instant plus them): bounded, so the
        // arithmetic cannot overflow at shutdown or at a checkpoint.
        if self.audit.checkpoint_interval_secs > 86_400 {
            anyhow::bail!("[audit] checkpoint_interval_secs must be at most 86400 (a day); signed checkpoints are what an examiner verifies against");
        }
        if self.drain_secs.is_some_and(|d| d > 3_600) {
            anyhow::bail!("drain_secs must be at most 3600; Kubernetes gives a pod 30 s by default (terminationGracePeriodSeconds)");
        }
        if let Some(o) = &self.audit.origin {
            if o.is_empty() || o.contains(char::is_whitespace) || o.contains('+') {
                anyhow::bail!("[audit] origin {o:?} must be non-empty, without spaces or '+' (it names the signing key), e.g. \"bank.example/hoop/audit\"");
            }
        }
        for (name, t) in &self.targets {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                anyhow::bail!(
                    "target name {name:?} may only hold letters, digits, '-', '_' and '.'"
                );
            }
            match t.transport {
                TransportKind::Http => {
                    let Some(url) = &t.url else {
                        anyhow::bail!("target {name}: transport \"http\" needs url = \"http://host:port/mcp\"");
                    };
                    let u = reqwest::Url::parse(url).map_err(|e| {
                        anyhow::anyhow!("target {name}: url {url:?} is not a URL: {e}")
                    })?;
                    if !matches!(u.scheme(), "http" | "https") {
                        anyhow::bail!(
                            "target {name}: url must be http:// or https://, got {url:?}"
                        );
                    }
                }
                TransportKind::Stdio => {
                    if t.command.as_deref().unwrap_or("").is_empty() {
                        anyhow::bail!(
                            "target {name}: transport \"stdio\" needs command = \"program\""
                        );
                    }
                    if t.pool_size == 0 || t.pool_size > 64 {
                        anyhow::bail!("target {name}: pool_size must be between 1 and 64");
                    }
                }
            }
            if let Some(c) = &t.credential {
                if c.bearer_env.is_some() == c.bearer_file.is_some() {
                    anyhow::bail!(
                        "target {name}: credential needs exactly one of bearer_env or bearer_file"
                    );
                }
            }
        }
        Ok(())
    }
}

impl CredentialSource {
    /// Reads the credential now; a missing env var or file is an error that
    /// names what to set.
    pub fn read(&self, target: &str) -> anyhow::Result<String> {
        let token = if let Some(var) = &self.bearer_env {
            std::env::var(var).map_err(|_| {
                anyhow::anyhow!("target {target}: environment variable {var} (its service credential) is not set")
            })?
        } else if let Some(file) = &self.bearer_file {
            std::fs::read_to_string(file).map_err(|e| {
                anyhow::anyhow!(
                    "target {target}: cannot read credential file {}: {e}",
                    file.display()
                )
            })?
        } else {
            anyhow::bail!("target {target}: credential has no source");
        };
        let token = token.trim().to_string();
        if token.is_empty() {
            anyhow::bail!("target {target}: its service credential is empty");
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configs shipped for Compose and Kubernetes are configs this
    /// broker reads: replicas on PostgreSQL, keys shared, admin listener
    /// reachable by probes.
    #[test]
    fn the_deployment_configs_parse() {
        for (name, text) in [
            (
                "deploy/broker.toml",
                include_str!("../../deploy/broker.toml"),
            ),
            (
                "deploy/kubernetes/broker.toml",
                include_str!("../../deploy/kubernetes/broker.toml"),
            ),
        ] {
            let c = BrokerConfig::parse(text).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert!(
                matches!(c.store, Some(crate::store::StoreLocation::Postgres { .. })),
                "{name}"
            );
            assert!(
                c.audit.signing_key.is_some(),
                "{name}: one key for every replica"
            );
            assert!(
                c.admin.listen.is_some_and(|a| a.ip().is_unspecified()),
                "{name}"
            );
            assert_eq!(c.drain_secs, Some(25), "{name}");
            assert!(
                c.tls.is_some() && !c.issuers.is_empty(),
                "{name}: serve needs both"
            );
        }
    }

    #[test]
    fn parses_targets_of_both_transports() {
        let c = BrokerConfig::parse(
            r#"
            listen = "127.0.0.1:5000"
            [targets.everything]
            transport = "http"
            url = "http://127.0.0.1:3001/mcp"
            credential = { bearer_env = "EVERYTHING_TOKEN" }
            [targets.local]
            transport = "stdio"
            command = "npx"
            args = ["server-everything"]
            "#,
        )
        .expect("valid config");
        assert_eq!(c.targets.len(), 2);
        assert_eq!(c.targets["local"].transport, TransportKind::Stdio);
    }

    #[test]
    fn an_absent_audit_section_has_the_documented_defaults() {
        let c = BrokerConfig::parse("").expect("empty config");
        assert_eq!(c.audit.checkpoint_every, 1000);
        assert_eq!(c.audit.checkpoint_interval_secs, 10);
        let e = BrokerConfig::empty();
        assert_eq!(e.audit.checkpoint_every, 1000);
        assert_eq!(e.audit.checkpoint_interval_secs, 10);
    }

    #[test]
    fn refuses_unknown_fields_and_bad_urls() {
        let err = format!(
            "{:#}",
            BrokerConfig::parse("lisen = \"127.0.0.1:1\"").unwrap_err()
        );
        assert!(err.contains("lisen"), "{err}");
        let err = BrokerConfig::parse("[targets.x]\ntransport = \"http\"\nurl = \"ftp://x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("http://"), "{err}");
    }
}
