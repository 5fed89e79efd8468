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
//! ```

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use serde::Deserialize;

use crate::tunnel::{Trust, TunnelSettings};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub default_profile: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub broker: Option<String>,
    pub server_name: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub pin: Option<String>,
    pub token_file: Option<PathBuf>,
}

/// Connection options as given on the command line (all optional).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Broker address, host:port (env HOOP_BROKER).
    #[arg(long, env = "HOOP_BROKER")]
    pub broker: Option<String>,
    /// Profile in config.toml to act as (env HOOP_PROFILE).
    #[arg(long, env = "HOOP_PROFILE")]
    pub profile: Option<String>,
    /// PEM file of the CA that signed the broker's certificate (env HOOP_CA_FILE).
    #[arg(long, env = "HOOP_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Trust exactly this broker certificate: sha256:<hex> (env HOOP_PIN).
    #[arg(long, env = "HOOP_PIN")]
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
        Ok(text) => toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            Ok(ConfigFile::default())
        }
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

impl ConnectionArgs {
    /// Resolves everything needed to open the tunnel, or says what is missing.
    pub fn resolve(&self) -> anyhow::Result<TunnelSettings> {
        let file = load_config(self.config.as_ref())?;
        let profile_name = self.profile.clone().or(file.default_profile.clone());
        let profile = match &profile_name {
            Some(n) => file.profiles.get(n).cloned().ok_or_else(|| {
                let known: Vec<&str> = file.profiles.keys().map(String::as_str).collect();
                anyhow::anyhow!(
                    "no profile {n:?} in config.toml (profiles: {})",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                )
            })?,
            None => Profile::default(),
        };
        let broker = self.broker.clone().or(profile.broker).ok_or_else(|| {
            anyhow::anyhow!("no broker address: pass --broker HOST:PORT, set HOOP_BROKER, or add broker = \"…\" to a profile")
        })?;
        let addr = resolve_addr(&broker)?;
        let trust = if let Some(pin) = self.pin.clone().or(profile.pin) {
            Trust::Pin(pin)
        } else if let Some(ca) = self.ca_file.clone().or(profile.ca_file) {
            Trust::CaFile(ca)
        } else {
            anyhow::bail!("no way to trust the broker: pass --pin sha256:… or --ca-file FILE (or set them in a profile)");
        };
        let token = read_token(self.token_file.clone().or(profile.token_file))?;
        let server_name = self
            .server_name
            .clone()
            .or(profile.server_name)
            .unwrap_or_else(|| default_server_name(&broker));
        Ok(TunnelSettings {
            broker: addr,
            server_name,
            trust,
            token,
        })
    }
}

fn resolve_addr(broker: &str) -> anyhow::Result<SocketAddr> {
    broker
        .to_socket_addrs()
        .map_err(|e| {
            anyhow::anyhow!("broker address {broker:?} does not resolve: {e} (expected host:port)")
        })?
        .next()
        .ok_or_else(|| anyhow::anyhow!("broker address {broker:?} resolves to nothing"))
}

/// The host part of `host:port` when it is a name, else `localhost` (the
/// dev certificate's name).
fn default_server_name(broker: &str) -> String {
    let host = broker.rsplit_once(':').map_or(broker, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.parse::<std::net::IpAddr>().is_ok() {
        "localhost".into()
    } else {
        host.into()
    }
}

/// The bearer token: `HOOP_TOKEN`, else the token file.
fn read_token(file: Option<PathBuf>) -> anyhow::Result<String> {
    if let Ok(t) = std::env::var("HOOP_TOKEN") {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_owned());
        }
    }
    let Some(file) = file else {
        anyhow::bail!(
            "no token: set HOOP_TOKEN, pass --token-file FILE, or add token_file to a profile"
        );
    };
    let t = std::fs::read_to_string(&file)
        .map_err(|e| anyhow::anyhow!("cannot read token file {}: {e}", file.display()))?;
    let t = t.trim().to_owned();
    if t.is_empty() {
        anyhow::bail!("token file {} is empty", file.display());
    }
    Ok(t)
}
