//! Where the CLI finds its broker, trust and token: flags first, then
//! environment variables, then the selected profile in `config.toml` (in the
//! `directories` config dir, e.g. `~/.config/hoop/config.toml`).
//!
//! ```toml
//! default_profile = "alice"
//! [profiles.alice]
//! broker = "127.0.0.1:4433"
//! pin = "sha256:…"            # or ca_file = "/path/ca.pem"
//! token_file = "/path/alice.token"
//! # for `hoop login` (OIDC device flow) instead of a token file:
//! issuer = "https://idp.example/realms/bank"
//! client_id = "hoop-cli"                                # the default
//! scopes = "openid offline_access email groups"         # the default
//! resource = "https://broker.example"   # RFC 8707; sent only when set (alias: audience)
//! groups_claim = "realm_access.roles"   # where whoami reads groups; the broker's setting
//! ```
//!
//! Tokens from `hoop login` live in the OS keyring, or in files under the
//! `directories` data dir (e.g. `~/.local/share/hoop/tokens/`); the
//! `HOOP_DATA_DIR` environment variable moves that data dir (tests, CI).

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::auth::refresh::LoginSession;
use crate::auth::{AuthConfig, AuthError, DEFAULT_CLIENT_ID, DEFAULT_SCOPES};
use crate::tunnel::{TokenSource, Trust, TunnelSettings};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub default_profile: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
    /// Where this was read from (for messages); none when no file exists.
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub broker: Option<String>,
    pub server_name: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub pin: Option<String>,
    pub token_file: Option<PathBuf>,
    /// OpenID provider for `hoop login`, exactly as it names itself.
    pub issuer: Option<String>,
    /// OAuth client id for `hoop login` (default `hoop-cli`).
    pub client_id: Option<String>,
    /// Space-separated scopes for `hoop login`
    /// (default `openid offline_access email groups`).
    pub scopes: Option<String>,
    /// RFC 8707 resource indicator sent with `hoop login` and refreshes,
    /// only when set.
    #[serde(alias = "audience")]
    pub resource: Option<String>,
    /// Dotted path to the groups in the access token, as the broker's
    /// issuer names it (`groups_claim`), for `hoop whoami` (default `groups`).
    pub groups_claim: Option<String>,
}

/// The name tokens are stored under when no profile was selected.
pub const DEFAULT_PROFILE: &str = "default";

impl Profile {
    /// The identity-provider settings of this profile, flags applied.
    pub fn auth_config(
        &self,
        name: &str,
        issuer_flag: Option<String>,
        client_id_flag: Option<String>,
    ) -> Result<AuthConfig, AuthError> {
        let issuer = issuer_flag.or(self.issuer.clone()).ok_or_else(|| {
            AuthError::Config(format!(
                "no issuer for profile {name}: pass --issuer URL or add issuer = \"…\" to [profiles.{name}] in config.toml"
            ))
        })?;
        let scopes: Vec<String> = self
            .scopes
            .as_deref()
            .unwrap_or(DEFAULT_SCOPES)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        Ok(AuthConfig {
            profile: name.to_owned(),
            issuer,
            client_id: client_id_flag
                .or(self.client_id.clone())
                .unwrap_or_else(|| DEFAULT_CLIENT_ID.to_owned()),
            scopes,
            resource: self.resource.clone(),
        })
    }
}

impl Profile {
    /// The claim path `hoop whoami` reads groups at.
    pub fn groups_claim(&self, name: &str) -> Result<&str, AuthError> {
        let path = self
            .groups_claim
            .as_deref()
            .unwrap_or(crate::auth::claims::DEFAULT_GROUPS_CLAIM);
        if crate::auth::claims::valid_claim_path(path) {
            Ok(path)
        } else {
            Err(AuthError::Config(format!(
                "groups_claim = {path:?} in [profiles.{name}] is not a claim path: use names joined by dots, e.g. \"groups\" or \"realm_access.roles\""
            )))
        }
    }
}

/// Which profile to act as, for commands that need no broker
/// (`login`, `logout`, `whoami`).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ProfileArgs {
    /// Profile in config.toml to act as (env HOOP_PROFILE; tokens of no
    /// profile are stored as `default`).
    #[arg(long, env = "HOOP_PROFILE")]
    pub profile: Option<String>,
    /// Config file to read instead of the default one (env HOOP_CONFIG).
    #[arg(long, env = "HOOP_CONFIG")]
    pub config: Option<PathBuf>,
}

impl ProfileArgs {
    /// The selected profile's name (`default` when none) and settings.
    pub fn select(&self) -> anyhow::Result<(String, Profile)> {
        let file = load_config(self.config.as_ref())?;
        let (name, profile) = select_profile(&file, self.profile.as_deref())?;
        Ok((name.unwrap_or_else(|| DEFAULT_PROFILE.to_owned()), profile))
    }
}

/// Where hoop keeps its own data (login tokens when there is no keyring):
/// `HOOP_DATA_DIR` if set, else the platform's data dir for hoop.
pub fn data_dir() -> Result<PathBuf, AuthError> {
    if let Some(d) = std::env::var_os("HOOP_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    directories::ProjectDirs::from("dev", "hoop", "hoop")
        .map(|d| d.data_dir().to_owned())
        .ok_or_else(|| {
            AuthError::Config(
                "cannot find a data directory (no home directory?): set HOOP_DATA_DIR".into(),
            )
        })
}

/// The profile a running `hoop demo` writes for itself, unless config.toml
/// defines one of the same name.
pub const DEMO_PROFILE: &str = "demo";

/// `--profile demo` with no demo running: the broker cannot be reached
/// (exit 4), not a usage error.
#[derive(Debug, thiserror::Error)]
#[error("no running demo to reach ({0}): start one with `hoop demo`")]
pub struct NoRunningDemo(String);

/// The profile a running demo wrote: `demo` for the identity it acts as,
/// `demo-NAME` for another of its dev identities (the approver `demo-bob`).
fn demo_profile(name: &str) -> anyhow::Result<Profile> {
    let file = match name.strip_prefix("demo-") {
        Some(identity) => format!("profile-{identity}.toml"),
        None => "profile.toml".into(),
    };
    let path = data_dir()?.join("demo").join(file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| NoRunningDemo(format!("{}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// `demo`, or `demo-NAME` for a dev identity name (letters, digits, `-`, `_`).
pub fn is_demo_profile(name: &str) -> bool {
    name == DEMO_PROFILE
        || name.strip_prefix("demo-").is_some_and(|n| {
            !n.is_empty()
                && n.len() <= 64
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The named profile, else the file's `default_profile`, else none.
fn select_profile(
    file: &ConfigFile,
    name: Option<&str>,
) -> anyhow::Result<(Option<String>, Profile)> {
    let profile_name = name.map(str::to_owned).or(file.default_profile.clone());
    let profile = match &profile_name {
        Some(n) if is_demo_profile(n) && !file.profiles.contains_key(n) => demo_profile(n)?,
        Some(n) => file.profiles.get(n).cloned().ok_or_else(|| {
            let known: Vec<&str> = file.profiles.keys().map(String::as_str).collect();
            let file_name = file
                .path
                .as_ref()
                .map_or("config.toml".to_owned(), |p| p.display().to_string());
            anyhow::anyhow!(
                "no profile {n:?} in {file_name} (profiles: {}); add [profiles.{n}] there, or name one of those",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )
        })?,
        None => Profile::default(),
    };
    Ok((profile_name, profile))
}

/// Connection options as given on the command line (all optional).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Broker address, host:port; replicas as a comma-separated list, or a
    /// name that resolves to several, tried in turn (env HOOP_BROKER).
    #[arg(long, env = "HOOP_BROKER")]
    pub broker: Option<String>,
    /// Profile in config.toml to act as (env HOOP_PROFILE).
    #[arg(long, env = "HOOP_PROFILE")]
    pub profile: Option<String>,
    /// PEM file of the CA that signed the broker's certificate, or of the
    /// broker's own self-signed certificate (env HOOP_CA_FILE).
    // Trust is read from the environment by `resolve`, not by clap, so
    // that a flag of one kind replaces a variable of the other.
    #[arg(long, conflicts_with = "pin")]
    pub ca_file: Option<PathBuf>,
    /// Trust exactly this broker certificate: sha256:<hex> (env HOOP_PIN).
    #[arg(long)]
    pub pin: Option<String>,
    /// TLS name to expect in the broker's certificate (env HOOP_SERVER_NAME).
    #[arg(long, env = "HOOP_SERVER_NAME")]
    pub server_name: Option<String>,
    /// File holding the bearer token (env HOOP_TOKEN_FILE).
    #[arg(long, env = "HOOP_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Config file to read instead of the default one (env HOOP_CONFIG).
    #[arg(long, env = "HOOP_CONFIG")]
    pub config: Option<PathBuf>,
}

pub fn default_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("dev", "hoop", "hoop")
        .map(|d| d.config_dir().join("config.toml"))
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<ConfigFile> {
    let (path, explicit) = match path {
        Some(p) => (p.clone(), true),
        None => match default_config_path() {
            Some(p) => (p, false),
            None => return Ok(ConfigFile::default()),
        },
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut file: ConfigFile =
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            file.path = Some(path);
            Ok(file)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(ConfigFile {
            path: Some(path),
            ..ConfigFile::default()
        }),
        Err(e) if explicit => Err(anyhow::anyhow!(
            "cannot read the config file {} named by --config or HOOP_CONFIG: {e}; create it (it may be empty), or unset HOOP_CONFIG",
            path.display()
        )),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// What [`ConnectionArgs::resolve`] found.
#[derive(Debug)]
pub struct Resolved {
    pub tunnel: TunnelSettings,
    /// Connection flags that make another `hoop` process (one a client
    /// launches, e.g. Claude Desktop) connect the same way without this
    /// shell's environment: `--profile` when a profile was used, plus every
    /// value given by flag or environment. Never a literal token.
    pub launch_args: Vec<String>,
    /// `hoop login` for this profile and config, for hints.
    pub login: String,
}

impl ConnectionArgs {
    /// Resolves everything needed to open the tunnel, or says what is missing.
    pub fn resolve(&self) -> anyhow::Result<Resolved> {
        let file = load_config(self.config.as_ref())?;
        let (profile_name, profile) = select_profile(&file, self.profile.as_deref())?;
        let broker = self.broker.clone().or(profile.broker).ok_or_else(|| {
            anyhow::anyhow!("no broker address: pass --broker HOST:PORT, set HOOP_BROKER, or add broker = \"…\" to a profile (against a running `hoop demo`: --profile demo)")
        })?;
        let addrs = resolve_addrs(&broker)?;
        // Trust is one setting: flags, then environment, then profile, each
        // level as a whole, so `--ca-file` replaces HOOP_PIN or a profile's
        // `pin`, not only a `ca_file`.
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let levels = [
            ("flags", self.pin.clone(), self.ca_file.clone()),
            (
                "environment",
                env("HOOP_PIN"),
                env("HOOP_CA_FILE").map(PathBuf::from),
            ),
            ("profile", profile.pin, profile.ca_file),
        ];
        let mut trust = None;
        let mut trust_from_profile = false;
        for (level, pin, ca) in levels {
            trust_from_profile = level == "profile";
            trust = match (pin, ca) {
                (Some(_), Some(_)) => anyhow::bail!(
                    "both a pin and a CA file are set in the {level} (HOOP_PIN and HOOP_CA_FILE, or pin and ca_file): keep one"
                ),
                (Some(pin), None) => Some(Trust::Pin(pin)),
                (None, Some(ca)) => Some(Trust::CaFile(ca)),
                (None, None) => continue,
            };
            break;
        }
        let Some(trust) = trust else {
            anyhow::bail!(
                "no way to trust the broker: pass --pin sha256:… (the broker prints its fingerprint at start) or --ca-file FILE (or set pin or ca_file in a profile); see docs/certificates.md"
            );
        };
        let env_token = std::env::var("HOOP_TOKEN").ok();
        let login_profile = profile_name.as_deref().unwrap_or(DEFAULT_PROFILE);
        let issuer = profile.issuer.clone();
        let audience = std::env::var("HOOP_AUDIENCE")
            .ok()
            .or(profile.resource.clone())
            .unwrap_or_else(|| "hoop-broker".into());
        let token = token_source(
            login_profile,
            self.config.as_deref(),
            self.token_file.clone(),
            env_token,
            github_actions(&audience),
            profile.token_file,
            || {
                let session = LoginSession::open(login_profile, &data_dir()?, issuer.as_deref())?;
                Ok(session.map(|s| TokenSource::Login(Arc::new(s))))
            },
        )?;
        let server_name = self
            .server_name
            .clone()
            .or(profile.server_name)
            .unwrap_or_else(|| default_server_name(&broker, &trust));

        let mut launch_args = Vec::new();
        let mut arg = |flag: &str, value: String| {
            launch_args.push(flag.to_owned());
            launch_args.push(value);
        };
        if let Some(config) = &self.config {
            arg("--config", absolute(config));
        }
        if let Some(name) = &profile_name {
            arg("--profile", name.clone());
        }
        if let Some(b) = &self.broker {
            arg("--broker", b.clone());
        }
        match &trust {
            _ if trust_from_profile => {}
            Trust::Pin(p) => arg("--pin", p.clone()),
            Trust::CaFile(c) => arg("--ca-file", absolute(c)),
        }
        if let Some(n) = &self.server_name {
            arg("--server-name", n.clone());
        }
        if let (TokenSource::File(f), Some(_)) = (&token, &self.token_file) {
            arg("--token-file", absolute(f));
        }
        Ok(Resolved {
            tunnel: TunnelSettings {
                broker: addrs[0],
                fallbacks: addrs[1..].to_vec(),
                server_name,
                trust,
                token,
            },
            launch_args,
            login: crate::auth::login_command(login_profile, self.config.as_deref()),
        })
    }
}

/// `path` made absolute against the current directory (a launched process
/// may start elsewhere), as text.
fn absolute(path: &std::path::Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string()
}

/// Every address of `broker`: `HOST:PORT`, or several separated by commas
/// (replicas), each name giving every address it resolves to; in order,
/// without repeats. The first is tried first.
fn resolve_addrs(broker: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for one in broker.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        for addr in resolve_addr(one)? {
            if !out.contains(&addr) {
                out.push(addr);
            }
        }
    }
    if out.is_empty() {
        anyhow::bail!("broker address {broker:?} names no address (expected HOST:PORT)");
    }
    Ok(out)
}

fn resolve_addr(broker: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let has_port = broker
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !has_port {
        anyhow::bail!(
            "broker address {broker:?} has no port: write HOST:PORT, e.g. 127.0.0.1:4433 or [::1]:4433"
        );
    }
    let addrs: Vec<SocketAddr> = broker
        .to_socket_addrs()
        .map_err(|e| {
            anyhow::anyhow!("broker address {broker:?} does not resolve: {e} (expected host:port)")
        })?
        .collect();
    if addrs.is_empty() {
        anyhow::bail!("broker address {broker:?} resolves to nothing");
    }
    Ok(addrs)
}

/// The TLS name to expect when none is configured: the host part of
/// `host:port` when it is a name. For an IP address it depends on what is
/// trusted: with a pin, the pinned certificate is the whole trust and the
/// name only has to match it, so `localhost` (the dev certificate's name);
/// with a CA, the IP itself, so that a certificate the CA issued for
/// `localhost` (or any other host) is not accepted for every address.
fn default_server_name(broker: &str, trust: &Trust) -> String {
    // Replicas share one certificate name: the first one's host.
    let broker = broker.split(',').next().unwrap_or(broker).trim();
    let host = broker.rsplit_once(':').map_or(broker, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => match trust {
            Trust::Pin(_) => "localhost".into(),
            Trust::CaFile(_) => ip.to_string(),
        },
        Err(_) => host.into(),
    }
}

/// Where the bearer token comes from, first match wins: the `--token-file`
/// flag (clap has already merged `HOOP_TOKEN_FILE` into it), then the
/// `HOOP_TOKEN` value (`env_token`), then the profile's `token_file`, then
/// the profile's `hoop login` (`login`, asked only when nothing else is
/// given, since it may touch the OS keyring). An explicit file beats an
/// ambient variable; the file is read on connect.
fn token_source(
    profile: &str,
    config: Option<&std::path::Path>,
    flag_file: Option<PathBuf>,
    env_token: Option<String>,
    ci: Option<TokenSource>,
    profile_file: Option<PathBuf>,
    login: impl FnOnce() -> Result<Option<TokenSource>, AuthError>,
) -> anyhow::Result<TokenSource> {
    if let Some(f) = flag_file {
        return Ok(TokenSource::File(f));
    }
    if let Some(t) = env_token {
        if !t.trim().is_empty() {
            return Ok(TokenSource::Static(t.trim().to_owned()));
        }
    }
    if let Some(ci) = ci {
        return Ok(ci);
    }
    if let Some(f) = profile_file {
        return Ok(TokenSource::File(f));
    }
    if let Some(session) = login()? {
        return Ok(session);
    }
    Err(AuthError::NotLoggedIn {
        profile: profile.to_owned(),
        login: crate::auth::login_command(profile, config),
        other_ways: true,
    }
    .into())
}

/// Inside a GitHub Actions job with `permissions: id-token: write`, the
/// runner's OIDC token endpoint (a fresh token for `audience` on every
/// connection).
fn github_actions(audience: &str) -> Option<TokenSource> {
    let url = std::env::var("ACTIONS_ID_TOKEN_REQUEST_URL").ok()?;
    let token = std::env::var("ACTIONS_ID_TOKEN_REQUEST_TOKEN").ok()?;
    if url.trim().is_empty() || token.trim().is_empty() {
        return None;
    }
    Some(TokenSource::GithubActions {
        request_url: url,
        request_token: token,
        audience: audience.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(source: &TokenSource) -> Option<&std::path::Path> {
        match source {
            TokenSource::File(f) => Some(f),
            _ => None,
        }
    }

    #[test]
    fn token_flag_beats_env_beats_profile() {
        let flag = Some(PathBuf::from("/flag.token"));
        let env = Some("from-env".to_owned());
        let profile = Some(PathBuf::from("/profile.token"));

        // The login is the last resort, and is not even looked at before.
        let unasked = || -> Result<Option<TokenSource>, AuthError> {
            panic!("the login store must not be opened when a token is given")
        };
        let t = token_source(
            "p",
            None,
            flag.clone(),
            env.clone(),
            None,
            profile.clone(),
            unasked,
        )
        .unwrap();
        assert_eq!(file(&t), Some("/flag.token".as_ref()));

        let t = token_source("p", None, None, env.clone(), None, profile.clone(), unasked).unwrap();
        assert!(matches!(&t, TokenSource::Static(s) if s == "from-env"));

        let t = token_source(
            "p",
            None,
            None,
            Some("  \n".into()),
            None,
            profile.clone(),
            unasked,
        )
        .unwrap();
        assert_eq!(file(&t), Some("/profile.token".as_ref()));

        let t = token_source("p", None, None, None, None, profile, unasked).unwrap();
        assert_eq!(file(&t), Some("/profile.token".as_ref()));

        let t = token_source("p", None, None, None, None, None, || {
            Ok(Some(TokenSource::Static("l".into())))
        });
        assert!(matches!(t, Ok(TokenSource::Static(s)) if s == "l"));

        let e = token_source("p", None, None, None, None, None, || Ok(None)).unwrap_err();
        assert_eq!(e.to_string(), "not logged in (profile p)");
        assert!(token_source("p", None, None, Some(" ".into()), None, None, || Ok(None)).is_err());
    }

    #[test]
    fn login_settings_default_and_yield_to_flags() {
        let p: Profile = toml::from_str(
            "issuer = \"https://idp.example\"\naudience = \"https://broker.example\"\n",
        )
        .unwrap();
        let c = p.auth_config("work", None, None).unwrap();
        assert_eq!(c.issuer, "https://idp.example");
        assert_eq!(c.client_id, "hoop-cli");
        assert_eq!(c.scopes, ["openid", "offline_access", "email", "groups"]);
        assert_eq!(c.resource.as_deref(), Some("https://broker.example"));
        let c = p
            .auth_config(
                "work",
                Some("https://other.example".into()),
                Some("mine".into()),
            )
            .unwrap();
        assert_eq!(c.issuer, "https://other.example");
        assert_eq!(c.client_id, "mine");
        let e = Profile::default()
            .auth_config("work", None, None)
            .unwrap_err();
        assert!(e.to_string().contains("--issuer"), "{e}");
    }

    #[test]
    fn groups_claim_defaults_to_groups_and_must_be_a_path() {
        assert_eq!(Profile::default().groups_claim("w").unwrap(), "groups");
        let p: Profile = toml::from_str("groups_claim = \"realm_access.roles\"\n").unwrap();
        assert_eq!(p.groups_claim("w").unwrap(), "realm_access.roles");
        let p: Profile = toml::from_str("groups_claim = \"realm_access.\"\n").unwrap();
        let e = p.groups_claim("w").unwrap_err();
        assert!(e.to_string().contains("[profiles.w]"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn server_name_defaults() {
        let pin = Trust::Pin("sha256:00".into());
        let ca = Trust::CaFile("/ca.pem".into());
        assert_eq!(
            default_server_name("broker.example:4433", &pin),
            "broker.example"
        );
        assert_eq!(
            default_server_name("broker.example:4433", &ca),
            "broker.example"
        );
        assert_eq!(default_server_name("127.0.0.1:4433", &pin), "localhost");
        assert_eq!(default_server_name("[::1]:4433", &pin), "localhost");
        // With a CA, an IP broker is checked against the IP, not localhost.
        assert_eq!(default_server_name("10.0.0.7:4433", &ca), "10.0.0.7");
        assert_eq!(default_server_name("[::1]:4433", &ca), "::1");
    }

    /// A scratch directory of this test's own (no tempfile crate here).
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hoop-settings-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    // These set --config and --token-file explicitly, so neither the real
    // config file nor HOOP_TOKEN can change the outcome.
    #[test]
    fn launch_args_name_the_profile_when_one_was_used() {
        let dir = scratch("profile");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            "[profiles.alice]\nbroker = \"127.0.0.1:4433\"\npin = \"sha256:00\"\n",
        )
        .unwrap();
        let args = ConnectionArgs {
            profile: Some("alice".into()),
            token_file: Some(dir.join("alice.token")),
            config: Some(config.clone()),
            ..Default::default()
        };
        let r = args.resolve().unwrap();
        let token = dir.join("alice.token").display().to_string();
        let config = config.display().to_string();
        assert_eq!(
            r.launch_args,
            [
                "--config",
                &config,
                "--profile",
                "alice",
                "--token-file",
                &token
            ]
        );
        assert_eq!(r.tunnel.server_name, "localhost");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn launch_args_carry_the_resolved_flags() {
        let dir = scratch("flags");
        let config = dir.join("config.toml");
        std::fs::write(&config, "").unwrap();
        let args = ConnectionArgs {
            broker: Some("127.0.0.1:4433".into()),
            ca_file: Some(dir.join("ca.pem")),
            token_file: Some(dir.join("t.token")),
            config: Some(config.clone()),
            ..Default::default()
        };
        let r = args.resolve().unwrap();
        let ca = dir.join("ca.pem").display().to_string();
        let token = dir.join("t.token").display().to_string();
        let config = config.display().to_string();
        assert_eq!(
            r.launch_args,
            [
                "--config",
                &config,
                "--broker",
                "127.0.0.1:4433",
                "--ca-file",
                &ca,
                "--token-file",
                &token
            ]
        );
        assert_eq!(r.tunnel.server_name, "127.0.0.1");
        assert!(!r.launch_args.iter().any(|a| a == "--token"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
