//! The real OpenID provider (npm `oidc-provider`, tests/fixtures/oidc) and
//! a `hoop-broker serve` that trusts it: the pieces the identity tests share.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::{
    bin, free_tcp_port, free_udp_port, http, play_device_user, run_bounded, tests_dir, Broker, Proc,
};

/// One running provider: `kind` is `human` (device flow) or `workload`
/// (client credentials, GitHub-Actions-like claims).
pub struct OidcProvider {
    pub proc: Proc,
    pub issuer: String,
    /// The provider's private JWKS, for forging tokens with its real keys.
    pub keys: PathBuf,
}

impl OidcProvider {
    pub fn start(dir: &Path, kind: &str, env: &[(&str, &str)]) -> Self {
        Self::start_on(dir, kind, free_tcp_port(), env)
    }

    /// The same on a given port (to start it after a broker that trusts it).
    pub fn start_on(dir: &Path, kind: &str, port: u16, env: &[(&str, &str)]) -> Self {
        assert!(
            tests_dir().join("node_modules/oidc-provider").exists(),
            "tests/node_modules/oidc-provider is missing: run `bash tests/setup.sh` first"
        );
        let keys = dir.join(format!("oidc-{kind}-{port}-keys.json"));
        let mut cmd = Command::new("node");
        cmd.arg(tests_dir().join("fixtures/oidc/provider.mjs"))
            .args(["--port", &port.to_string(), "--kind", kind, "--keys-file"])
            .arg(&keys);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut proc = Proc::spawn(&format!("oidc-{kind}"), cmd, dir);
        let ready = proc.line_matching(Duration::from_secs(30), |l| l.starts_with("ready "));
        let issuer = ready.trim_start_matches("ready ").trim().to_owned();
        Self { proc, issuer, keys }
    }

    /// A person's access token, by the real device flow: the test is both
    /// the device (requests and polls) and the person at the browser.
    pub fn device_login(&self, user: &str) -> Value {
        let client = http();
        let auth: Value = client
            .post(format!("{}/device/auth", self.issuer))
            .form(&[
                ("client_id", "hoop-cli"),
                ("scope", "openid offline_access email groups"),
            ])
            .send()
            .unwrap()
            .json()
            .unwrap();
        let url = auth["verification_uri_complete"].as_str().unwrap();
        let out = play_device_user(url, user, false);
        assert_eq!(out.status, Some(0), "device_user failed: {}", out.stderr);
        let device_code = auth["device_code"].as_str().unwrap();
        for _ in 0..30 {
            let resp = client
                .post(format!("{}/token", self.issuer))
                .form(&[
                    ("client_id", "hoop-cli"),
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("device_code", device_code),
                ])
                .send()
                .unwrap();
            let v: Value = resp.json().unwrap();
            if v["access_token"].is_string() {
                return v;
            }
            assert_eq!(v["error"], "authorization_pending", "{v}");
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("the device flow never produced a token");
    }

    /// A workload token by client credentials.
    pub fn client_credentials(&self, client: &str, secret: &str) -> String {
        let v: Value = http()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access token: {v}"))
            .to_owned()
    }

    /// A token signed with this provider's real key (or deliberately not:
    /// see tests/fixtures/oidc/forge.mjs for `args`).
    pub fn forge(&self, claims: &Value, args: &[&str]) -> String {
        let mut c = Command::new("node");
        c.arg(tests_dir().join("fixtures/oidc/forge.mjs"))
            .arg("--keys")
            .arg(&self.keys)
            .args(["--claims", &claims.to_string()])
            .args(args);
        let out = run_bounded(c, Duration::from_secs(20));
        assert_eq!(out.status, Some(0), "forge failed: {}", out.stderr);
        out.stdout.trim().to_owned()
    }
}

/// `hoop-broker serve` with a fresh certificate, trusting `issuers_toml`
/// (`[[issuers]]` tables), serving `targets_toml`, its store in `dir`.
/// The workload rule the tests' CI provider's client `ci-deploy` matches:
/// `workload:models-deploy`, group `ci-deploy`.
pub const WORKLOAD_RULES: &str = r#"
[[issuers.workloads]]
name = "models-deploy"
claims = { repository = "bank/models", ref = "refs/heads/main", environment = "prod" }
groups = ["ci-deploy"]
"#;

/// `[[issuers]]` for a human provider and a workload provider (with
/// [`WORKLOAD_RULES`]).
pub fn issuers_toml(human: &OidcProvider, workload: &OidcProvider) -> String {
    format!(
        "[[issuers]]\nissuer = \"{}\"\naudience = \"hoop-broker\"\nkind = \"human\"\n\n\
         [[issuers]]\nissuer = \"{}\"\naudience = \"hoop-broker\"\nkind = \"workload\"\n{WORKLOAD_RULES}",
        human.issuer, workload.issuer
    )
}

pub fn serve_broker(dir: &Path, issuers_toml: &str, targets_toml: &str) -> Broker {
    serve_broker_top(dir, "", issuers_toml, targets_toml)
}

/// [`serve_broker`] with top-level settings (`policy = "…"`) before the
/// config's tables.
pub fn serve_broker_top(
    dir: &Path,
    top_toml: &str,
    issuers_toml: &str,
    targets_toml: &str,
) -> Broker {
    let state = dir.join("serve-state");
    let files = hoop_broker::tunnel::tls::ensure_dev_cert(&state).unwrap();
    let port = free_udp_port();
    let config = dir.join("serve.toml");
    std::fs::write(
        &config,
        format!(
            // Several brokers run at once: the admin listener on a free port.
            "listen = \"127.0.0.1:{port}\"\nstore = \"{}\"\n{top_toml}\n[admin]\nlisten = \"127.0.0.1:0\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n\n{issuers_toml}\n{targets_toml}",
            state.join("broker.db").display(),
            files.cert.display(),
            files.key.display()
        ),
    )
    .unwrap();
    serve_broker_with(dir, config, state)
}

/// (Re)starts `hoop-broker serve` from an existing config.
pub fn serve_broker_with(dir: &Path, config: PathBuf, state: PathBuf) -> Broker {
    let mut cmd = Command::new(bin("hoop-broker"));
    cmd.args(["--log", "info,hoop_broker=debug", "serve", "--config"])
        .arg(&config);
    let mut proc = Proc::spawn("hoop-broker-serve", cmd, dir);
    let listening = proc.line_matching(Duration::from_secs(30), |l| l.contains("listening on"));
    let addr = listening
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();
    let fp = proc.line_matching(Duration::from_secs(5), |l| {
        l.starts_with("certificate fingerprint:")
    });
    let pin = fp.rsplit(' ').next().unwrap().to_owned();
    Broker {
        proc,
        addr,
        pin,
        state,
        config,
    }
}
