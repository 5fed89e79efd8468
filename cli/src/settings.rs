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

use crate::tunnel::{TokenSource, Trust, TunnelSettings};

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

/// What [`ConnectionArgs::resolve`] found.
#[derive(Debug)]
pub struct Resolved {
    pub tunnel: TunnelSettings,
    /// Connection flags that make another `hoop` process (one a client
    /// launches, e.g. Claude Desktop) connect the same way without this
    /// shell's environment: `--profile` when a profile was used, plus every
    /// value given by flag or environment. Never a literal token.
    pub launch_args: Vec<String>,
}

impl ConnectionArgs {
    /// Resolves everything needed to open the tunnel, or says what is missing.
    pub fn resolve(&self) -> anyhow::Result<Resolved> {
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
        let env_token = std::env::var("HOOP_TOKEN").ok();
        let token = token_source(self.token_file.clone(), env_token, profile.token_file)?;
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
            Trust::Pin(p) if self.pin.is_some() => arg("--pin", p.clone()),
            Trust::CaFile(c) if self.ca_file.is_some() => arg("--ca-file", absolute(c)),
            _ => {}
        }
        if let Some(n) = &self.server_name {
            arg("--server-name", n.clone());
        }
        if let (TokenSource::File(f), Some(_)) = (&token, &self.token_file) {
            arg("--token-file", absolute(f));
        }
        Ok(Resolved {
            tunnel: TunnelSettings {
                broker: addr,
                server_name,
                trust,
                token,
            },
            launch_args,
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

fn resolve_addr(broker: &str) -> anyhow::Result<SocketAddr> {
    broker
        .to_socket_addrs()
        .map_err(|e| {
            anyhow::anyhow!("broker address {broker:?} does not resolve: {e} (expected host:port)")
        })?
        .next()
        .ok_or_else(|| anyhow::anyhow!("broker address {broker:?} resolves to nothing"))
}

/// The TLS name to expect when none is configured: the host part of
/// `host:port` when it is a name. For an IP address it depends on what is
/// trusted: with a pin, the pinned certificate is the whole trust and the
/// name only has to match it, so `localhost` (the dev certificate's name);
/// with a CA, the IP itself, so that a certificate the CA issued for
/// `localhost` (or any other host) is not accepted for every address.
fn default_server_name(broker: &str, trust: &Trust) -> String {
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
/// `HOOP_TOKEN` value (`env_token`), then the profile's `token_file`. An
/// explicit file beats an ambient variable; the file is read on connect.
fn token_source(
    flag_file: Option<PathBuf>,
    env_token: Option<String>,
    profile_file: Option<PathBuf>,
) -> anyhow::Result<TokenSource> {
    if let Some(f) = flag_file {
        return Ok(TokenSource::File(f));
    }
    if let Some(t) = env_token {
        if !t.trim().is_empty() {
            return Ok(TokenSource::Static(t.trim().to_owned()));
        }
    }
    if let Some(f) = profile_file {
        return Ok(TokenSource::File(f));
    }
    anyhow::bail!(
        "no token: pass --token-file FILE, set HOOP_TOKEN, or add token_file to a profile"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(source: &TokenSource) -> Option<&std::path::Path> {
        match source {
            TokenSource::File(f) => Some(f),
            TokenSource::Static(_) => None,
        }
    }

    #[test]
    fn token_flag_beats_env_beats_profile() {
        let flag = Some(PathBuf::from("/flag.token"));
        let env = Some("from-env".to_owned());
        let profile = Some(PathBuf::from("/profile.token"));

        let t = token_source(flag.clone(), env.clone(), profile.clone()).unwrap();
        assert_eq!(file(&t), Some("/flag.token".as_ref()));

        let t = token_source(None, env.clone(), profile.clone()).unwrap();
        assert!(matches!(&t, TokenSource::Static(s) if s == "from-env"));

        let t = token_source(None, Some("  \n".into()), profile.clone()).unwrap();
        assert_eq!(file(&t), Some("/profile.token".as_ref()));

        let t = token_source(None, None, profile).unwrap();
        assert_eq!(file(&t), Some("/profile.token".as_ref()));

        assert!(token_source(None, None, None).is_err());
        assert!(token_source(None, Some(" ".into()), None).is_err());
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
