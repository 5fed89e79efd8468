//! `hoop login` / `whoami` / `logout` and silent refresh against a real
//! OpenID provider (npm oidc-provider, tests/fixtures/oidc/provider.mjs):
//! the real `hoop` binary runs the device flow while the test plays the
//! person at the verification page (device_user.mjs). Tokens go to the
//! file store (`HOOP_KEYRING=file`, or a real keyring probe that finds no
//! D-Bus session) in a scratch data dir (`HOOP_DATA_DIR`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hoop_e2e::*;
use serde_json::Value;

/// A scratch hoop environment: config with profile `dev` naming `issuer`,
/// its own data dir, the file token store.
struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
    /// Leave `HOOP_KEYRING` unset, so hoop really probes the OS keyring,
    /// with the secret-service client pointed at a bus that does not exist.
    real_keyring_probe: bool,
}

/// A D-Bus session address nothing listens on.
const NO_BUS: &str = "unix:path=/nonexistent/hoop-e2e/bus";

impl Env {
    fn new(issuer: &str) -> Self {
        let dir = scratch();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!("default_profile = \"dev\"\n[profiles.dev]\nissuer = \"{issuer}\"\n"),
        )
        .unwrap();
        Self {
            dir,
            config,
            real_keyring_probe: false,
        }
    }

    /// The same, but hoop probes the real keyring (and finds none).
    fn without_keyring(issuer: &str) -> Self {
        Self {
            real_keyring_probe: true,
            ..Self::new(issuer)
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn token_file(&self) -> PathBuf {
        self.path().join("data/tokens/dev.json")
    }

    fn stored(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.token_file()).unwrap()).unwrap()
    }

    fn hoop(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("hoop"));
        cmd.args(args)
            .env("HOOP_CONFIG", &self.config)
            .env("HOOP_DATA_DIR", self.path().join("data"))
            .env("HOOP_KEYRING", "file")
            // The machine's own settings must not leak in.
            .env_remove("HOOP_PROFILE")
            .env_remove("HOOP_TOKEN")
            .env_remove("HOOP_TOKEN_FILE")
            .env_remove("BROWSER")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY");
        if self.real_keyring_probe {
            cmd.env_remove("HOOP_KEYRING")
                .env("DBUS_SESSION_BUS_ADDRESS", NO_BUS);
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        run_bounded(self.hoop(args), Duration::from_secs(30))
    }

    /// `hoop login --json`, with `who` approving (or denying) at the
    /// device page; returns the exit code, stdout lines after the prompt
    /// line, and stderr.
    fn login(&self, who: &str, deny: bool) -> (Option<i32>, Vec<String>, String) {
        self.login_with(who, deny, &[])
    }

    /// [`Env::login`] with extra arguments (`--log debug`).
    fn login_with(
        &self,
        who: &str,
        deny: bool,
        extra: &[&str],
    ) -> (Option<i32>, Vec<String>, String) {
        let mut args = vec!["login", "--json", "--no-browser"];
        args.extend_from_slice(extra);
        let mut p = Proc::spawn("hoop-login", self.hoop(&args), self.path());
        let prompt: Value = serde_json::from_str(&p.line(Duration::from_secs(20))).unwrap();
        assert!(prompt["user_code"].is_string(), "{prompt}");
        assert!(prompt["verification_uri"].is_string(), "{prompt}");
        let url = prompt["verification_uri_complete"].as_str().unwrap();
        let user = play_device_user(url, who, deny);
        assert_eq!(
            user.status,
            Some(if deny { 2 } else { 0 }),
            "device_user: {}",
            user.stderr
        );
        let code = p.wait_exit(Duration::from_secs(30));
        let mut rest = Vec::new();
        if code == Some(0) {
            rest.push(p.line(Duration::from_secs(5)));
        }
        (code, rest, p.stderr())
    }
}

fn json_of(out: &Output) -> Value {
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", out.stdout, out.stderr))
}

#[test]
fn login_stores_tokens_in_a_private_file_and_whoami_reads_them() {
    let env0 = scratch();
    let (_idp, issuer) = human_oidc_provider(env0.path(), &[]);
    let env = Env::new(&issuer);

    let (code, rest, stderr) = env.login_with("alice", false, &["--qr"]);
    assert_eq!(code, Some(0), "{stderr}");
    let done: Value = serde_json::from_str(&rest[0]).unwrap();
    assert_eq!(done["logged_in"], true, "{done}");
    assert_eq!(done["subject"], "alice", "{done}");
    assert!(stderr.contains("To sign in, open "), "{stderr}");
    // --qr draws the sign-in link as a QR code of half blocks.
    let drawn = stderr
        .lines()
        .filter(|l| l.chars().any(|c| matches!(c, '█' | '▀' | '▄')))
        .count();
    assert!(drawn >= 10, "no QR code on stderr: {stderr}");

    // The fallback is said once, with where the tokens went.
    let note = format!(
        "no OS keyring available (HOOP_KEYRING=file); tokens stored in {} (mode 0600)",
        env.token_file().display()
    );
    assert_eq!(stderr.matches(&note).count(), 1, "{stderr}");
    assert_eq!(stderr.matches("no OS keyring").count(), 1, "{stderr}");

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.token_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(env.path().join("data/tokens"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let stored = env.stored();
    for key in ["access_token", "refresh_token", "id_token"] {
        assert!(stored[key].is_string(), "{key} missing");
    }
    assert_eq!(stored["issuer"], issuer.as_str());

    let who = env.run(&["whoami", "--json"]);
    assert_eq!(who.status, Some(0), "{}", who.stderr);
    let v = json_of(&who);
    assert_eq!(v["subject"], "alice", "{v}");
    assert_eq!(v["email"], "alice@bank.example", "{v}");
    assert_eq!(v["groups"], serde_json::json!(["eng"]), "{v}");
    assert_eq!(v["groups_from"], "access_token", "{v}");
    assert_eq!(v["groups_claim"], "groups", "{v}");
    assert_eq!(v["issuer"], issuer.as_str(), "{v}");
    assert_eq!(v["expired"], false, "{v}");
    assert!(v["expires_at"].as_u64().unwrap() > now_unix(), "{v}");
    assert!(v["expires_in_secs"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(
        v["token_store"],
        format!("file:{}", env.token_file().display()).as_str()
    );
    // Nothing secret in whoami's output.
    let at = stored["access_token"].as_str().unwrap();
    assert!(!who.stdout.contains(at) && !who.stderr.contains(at));

    // The human form names the same facts.
    let human = env.run(&["whoami"]);
    assert_eq!(human.status, Some(0), "{}", human.stderr);
    assert!(human.stdout.contains("subject:  alice"), "{}", human.stdout);
    assert!(human.stdout.contains("groups:   eng"), "{}", human.stdout);
    assert!(human.stdout.contains("(access token"), "{}", human.stdout);

    // A Keycloak-style path the tokens do not have: no groups, and not
    // the `groups` claim either.
    std::fs::write(
        &env.config,
        format!(
            "default_profile = \"dev\"\n[profiles.dev]\nissuer = \"{issuer}\"\ngroups_claim = \"realm_access.roles\"\n"
        ),
    )
    .unwrap();
    let v = json_of(&env.run(&["whoami", "--json"]));
    assert_eq!(v["groups"], serde_json::json!([]), "{v}");
    assert_eq!(v["groups_from"], Value::Null, "{v}");
    assert_eq!(v["groups_claim"], "realm_access.roles", "{v}");
}

#[test]
fn an_expired_access_token_is_refreshed_silently_and_the_rotated_refresh_token_kept() {
    let env0 = scratch();
    let (_idp, issuer) = human_oidc_provider(env0.path(), &[("OIDC_AT_TTL", "5")]);
    let env = Env::new(&issuer);
    let (code, _, stderr) = env.login("alice", false);
    assert_eq!(code, Some(0), "{stderr}");
    let first = env.stored();
    let exp = first["expires_at"].as_u64().unwrap();

    // Wait (bounded) until the access token has expired.
    let deadline = Instant::now() + Duration::from_secs(15);
    while now_unix() <= exp {
        assert!(Instant::now() < deadline, "the token never expired");
        std::thread::sleep(Duration::from_millis(200));
    }
    let who = json_of(&env.run(&["whoami", "--json"]));
    assert_eq!(who["expired"], true, "{who}");

    let out = env.run(&["auth", "token"]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let fresh = out.stdout.trim();
    assert_ne!(fresh, first["access_token"].as_str().unwrap());
    let claims = hoop_cli::auth::claims::decode_unverified(fresh).unwrap();
    assert_eq!(claims.sub.as_deref(), Some("alice"));
    assert!(
        claims.exp.unwrap() > now_unix(),
        "the refreshed token is expired"
    );

    // The provider rotated the refresh token, and the new one was saved…
    let second = env.stored();
    assert_eq!(second["access_token"].as_str(), Some(fresh));
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    // …so a second refresh works (the old one would be a replay, which
    // oidc-provider answers by revoking the whole grant).
    let out = env.run(&["auth", "token", "--refresh"]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert_ne!(out.stdout.trim(), fresh);
    let third = env.stored();
    assert_ne!(third["refresh_token"], second["refresh_token"]);
    let who = json_of(&env.run(&["whoami", "--json"]));
    assert_eq!(who["expired"], false, "{who}");
    assert_eq!(who["subject"], "alice", "{who}");
}

#[test]
fn a_denied_sign_in_exits_3_and_says_so() {
    let env0 = scratch();
    let (_idp, issuer) = human_oidc_provider(env0.path(), &[]);
    let env = Env::new(&issuer);
    let (code, _, stderr) = env.login("bob", true);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("the sign-in was denied at the identity provider"),
        "{stderr}"
    );
    assert!(!env.token_file().exists());
    // …and what to do next.
    assert!(
        stderr.contains("hint: if you denied it, run `hoop login` again"),
        "{stderr}"
    );
    let who = env.run(&["whoami"]);
    assert_eq!(who.status, Some(3), "{}", who.stderr);
}

#[test]
fn a_profile_issuer_that_differs_from_discovery_is_refused() {
    let env0 = scratch();
    let (_idp, issuer) = human_oidc_provider(env0.path(), &[]);
    // Same server, but not the name it gives itself.
    let wrong = issuer.replace("127.0.0.1", "localhost");
    let env = Env::new(&wrong);
    let out = env.run(&["login", "--no-browser"]);
    assert_eq!(out.status, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("wrong issuer"), "{}", out.stderr);
    assert!(out.stderr.contains(&issuer), "{}", out.stderr);
    assert!(!out.stderr.contains("To sign in"), "{}", out.stderr);

    // The provider reached at a URL where it is not (404 at discovery) is
    // a configuration error, as a wrong issuer is, not "unreachable".
    let out = env.run(&[
        "login",
        "--no-browser",
        "--issuer",
        &format!("{issuer}/no-such-realm"),
    ]);
    assert_eq!(out.status, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("404") && out.stderr.contains("fix `issuer`"),
        "{}",
        out.stderr
    );

    // An unreachable provider is exit 4.
    let out = env.run(&["login", "--no-browser", "--issuer", "http://127.0.0.1:9"]);
    assert_eq!(out.status, Some(4), "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot reach the identity provider"),
        "{}",
        out.stderr
    );
}

#[test]
fn logout_revokes_at_the_provider_and_wipes_locally() {
    let env0 = scratch();
    let (_idp, issuer) = human_oidc_provider(env0.path(), &[]);
    let env = Env::new(&issuer);
    let (code, _, stderr) = env.login("carol", false);
    assert_eq!(code, Some(0), "{stderr}");
    let rt = env.stored()["refresh_token"].as_str().unwrap().to_owned();

    let out = env.run(&["logout"]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("revoked"), "{}", out.stdout);
    assert!(!env.token_file().exists());

    // The provider no longer honours the refresh token.
    assert!(rt
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c)));
    let resp = http()
        .post(format!("{issuer}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=refresh_token&client_id=hoop-cli&refresh_token={rt}"
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().unwrap();
    assert_eq!(v["error"], "invalid_grant", "{v}");

    // One condition, one message, one code, one hint that keeps the
    // profile: whoami, exec and auth token agree.
    let who = env.run(&["whoami"]);
    assert_eq!(who.status, Some(3), "{}", who.stderr);
    let said = "hoop: not logged in (profile dev)\nhint: run `hoop login --profile dev";
    assert!(who.stderr.contains(said), "{}", who.stderr);
    let exec = env.run(&[
        "exec",
        "mcp",
        "demo",
        "--tool",
        "echo",
        "--broker",
        "127.0.0.1:9",
        "--pin",
        &format!("sha256:{}", "0".repeat(64)),
    ]);
    assert_eq!(exec.status, Some(3), "{}", exec.stderr);
    assert!(exec.stderr.contains(said), "{}", exec.stderr);
    let token = env.run(&["auth", "token"]);
    assert_eq!(token.status, Some(3), "{}", token.stderr);
    assert!(token.stderr.contains(said), "{}", token.stderr);
    // With --json, the failure is JSON on stdout too.
    let who = env.run(&["whoami", "--json"]);
    assert_eq!(who.status, Some(3), "{}", who.stderr);
    let e = &json_of(&who)["error"];
    assert_eq!(e["code"], "auth_failed", "{e}");
    assert_eq!(e["exit_code"], 3, "{e}");
    assert_eq!(e["message"], "not logged in (profile dev)", "{e}");
    assert!(
        e["hint"]
            .as_str()
            .unwrap()
            .contains("hoop login --profile dev"),
        "{e}"
    );
    // A profile that is not in config.toml says which ones are.
    let typo = env.run(&["whoami", "--profile", "typo"]);
    assert_eq!(typo.status, Some(2), "{}", typo.stderr);
    assert!(
        typo.stderr.contains("no profile \"typo\"") && typo.stderr.contains("dev"),
        "{}",
        typo.stderr
    );

    // Logging out again is fine.
    let again = env.run(&["logout"]);
    assert_eq!(again.status, Some(0), "{}", again.stderr);
    assert!(again.stderr.contains("not logged in"), "{}", again.stderr);
}

/// A 2026-07-28 `tools/call` of the demo server's `echo` through `url`.
fn echo(url: &str, id: u32) -> (u16, Vec<Value>) {
    call_tool(url, id.into(), "echo", r#"{"text":"hi"}"#)
}

/// The whole story: `hoop login`, then `hoop connect` with no token file
/// uses the login, and outlives its first access token by refreshing it
/// and re-authenticating on the control stream — no reconnect.
#[test]
fn connect_with_a_login_outlives_the_first_access_token() {
    let env0 = scratch();
    let dir = env0.path();
    let (_idp, issuer) = human_oidc_provider(dir, &[("OIDC_AT_TTL", "10")]);
    let (_demo, demo_url) = demo_server(dir, &dir.join("record.jsonl"));
    let broker = serve_broker(
        dir,
        &format!(
            "[[issuers]]\nissuer = \"{issuer}\"\naudience = \"hoop-broker\"\nkind = \"human\"\n"
        ),
        &http_target("demo", &demo_url),
    );
    let env = Env::new(&issuer);
    std::fs::write(
        &env.config,
        format!(
            "default_profile = \"dev\"\n[profiles.dev]\nissuer = \"{issuer}\"\nbroker = \"{}\"\npin = \"{}\"\n",
            broker.addr, broker.pin
        ),
    )
    .unwrap();
    let (code, _, stderr) = env.login("alice", false);
    assert_eq!(code, Some(0), "{stderr}");
    let first_exp = env.stored()["expires_at"].as_u64().unwrap();

    let mut connect = Proc::spawn(
        "hoop-connect",
        {
            let mut c = env.hoop(&[
                "--log",
                "info",
                "connect",
                "mcp",
                "demo",
                "--port",
                "0",
                "--json",
                "--no-local-auth",
            ]);
            c.env_remove("HOOP_BROKER").env_remove("HOOP_PIN");
            c
        },
        dir,
    );
    let line = connect.line(Duration::from_secs(20));
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(v["identity"], "alice", "{v}");
    let url = v["url"].as_str().unwrap().to_owned();
    let (status, msgs) = echo(&url, 1);
    assert_eq!(status, 200, "{msgs:?}");

    // Past the first token's expiry (bounded wait), the same connection
    // still serves calls.
    let deadline = Instant::now() + Duration::from_secs(20);
    while now_unix() <= first_exp + 2 {
        assert!(Instant::now() < deadline, "the first token never expired");
        std::thread::sleep(Duration::from_millis(250));
    }
    let (status, msgs) = echo(&url, 2);
    assert_eq!(status, 200, "{msgs:?}\n{}", connect.stderr());
    assert!(
        msgs.iter()
            .any(|m| m["result"]["content"][0]["text"] == "hi"),
        "{msgs:?}"
    );
    let log = connect.stderr();
    assert!(log.contains("re-authenticated with the broker"), "{log}");
    assert!(
        !log.contains("re-established"),
        "it reconnected instead:\n{log}"
    );
    // The rotated refresh token was saved along the way.
    assert!(env.stored()["expires_at"].as_u64().unwrap() > first_exp);
    // The record names the token each call came with: the first call's,
    // then the one the connection re-authenticated with.
    let store = broker.state.join("broker.db");
    let events: Vec<Value> = host_audit_search(
        &[
            "--type".as_ref(),
            "mcp.request".as_ref(),
            "--store".as_ref(),
            store.as_os_str(),
        ],
        |events| events.iter().filter(|e| e["name"] == "echo").count() >= 2,
    )
    .into_iter()
    .filter(|e| e["name"] == "echo")
    .collect();
    let jti_of = |id: u64| {
        events
            .iter()
            .find(|e| e["jsonrpc_id"] == id)
            .map(|e| e["actor"]["jti"].clone())
            .unwrap_or_else(|| panic!("no request event for call {id}: {events:#?}"))
    };
    let (first_jti, second_jti) = (jti_of(1), jti_of(2));
    assert!(first_jti.is_string(), "{first_jti}");
    assert!(second_jti.is_string(), "{second_jti}");
    assert_ne!(
        first_jti, second_jti,
        "the call after re-authentication names the new token"
    );
}

/// Two `hoop` processes that refresh at the same moment must not both
/// spend the same (rotating) refresh token: oidc-provider, like Keycloak
/// and Okta, treats the replay as theft and revokes the whole grant. The
/// cross-process lock around reload → refresh → save serialises them.
#[test]
fn concurrent_refreshes_from_several_processes_keep_the_grant() {
    let env0 = scratch();
    let (_idp, issuer) = human_oidc_provider(env0.path(), &[("OIDC_AT_TTL", "30")]);
    let env = Env::new(&issuer);
    let (code, _, stderr) = env.login("alice", false);
    assert_eq!(code, Some(0), "{stderr}");
    let first = env.stored();

    // Started together; each one loads the same refresh token.
    let racers: Vec<Proc> = (0..4)
        .map(|i| {
            Proc::spawn(
                &format!("hoop-refresh-{i}"),
                env.hoop(&["--log", "debug", "auth", "token", "--refresh"]),
                env.path(),
            )
        })
        .collect();
    let mut tokens = Vec::new();
    for mut p in racers {
        let code = p.wait_exit(Duration::from_secs(60));
        assert_eq!(code, Some(0), "{}: {}", p.name, p.stderr());
        let token = p.line(Duration::from_secs(5));
        let claims = hoop_cli::auth::claims::decode_unverified(&token).unwrap();
        assert_eq!(claims.sub.as_deref(), Some("alice"));
        tokens.push(token);
    }
    assert!(tokens
        .iter()
        .all(|t| t != first["access_token"].as_str().unwrap()));
    assert_ne!(env.stored()["refresh_token"], first["refresh_token"]);

    // The grant survived: one more refresh works, and so does whoami.
    let out = env.run(&["auth", "token", "--refresh"]);
    assert_eq!(out.status, Some(0), "the grant was revoked: {}", out.stderr);
    let who = json_of(&env.run(&["whoami", "--json"]));
    assert_eq!(who["subject"], "alice", "{who}");
    assert_eq!(who["expired"], false, "{who}");

    // The lock file is private and stays (removing it would race).
    use std::os::unix::fs::PermissionsExt;
    let lock = env.path().join("data/tokens/dev.lock");
    let mode = std::fs::metadata(&lock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// No `HOOP_KEYRING`: hoop probes the real OS keyring, which cannot be
/// reached (no D-Bus session), so the tokens go to the 0600 file.
#[test]
fn without_a_reachable_keyring_login_falls_back_to_the_file_and_says_so_once() {
    let env0 = scratch();
    let (_idp, issuer) = human_oidc_provider(env0.path(), &[]);
    let env = Env::without_keyring(&issuer);

    let (code, rest, stderr) = env.login("alice", false);
    assert_eq!(code, Some(0), "{stderr}");
    let done: Value = serde_json::from_str(&rest[0]).unwrap();
    assert_eq!(done["subject"], "alice", "{done}");
    let file = format!("file:{}", env.token_file().display());
    assert_eq!(done["token_store"], file.as_str(), "{done}");

    assert_eq!(
        stderr.matches("no OS keyring available (").count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("HOOP_KEYRING=file"), "{stderr}");
    let tail = format!(
        "); tokens stored in {} (mode 0600)",
        env.token_file().display()
    );
    assert_eq!(stderr.matches(&tail).count(), 1, "{stderr}");

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.token_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(env.stored()["refresh_token"].is_string());
    assert!(!env.path().join("data/tokens/dev.keyring").exists());

    let who = env.run(&["whoami", "--json"]);
    assert_eq!(who.status, Some(0), "{}", who.stderr);
    let v = json_of(&who);
    assert_eq!(v["subject"], "alice", "{v}");
    assert_eq!(v["token_store"], file.as_str(), "{v}");
    // Said once, at login; later commands stay quiet about it.
    assert!(!who.stderr.contains("no OS keyring"), "{}", who.stderr);

    // Signing in again: hoop says whose session it replaces, and does not
    // repeat the note about the file store (once per store, as promised).
    let (code, _, stderr) = env.login("alice", false);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("Profile dev is logged in as alice")
            && stderr.contains("signing in again replaces that session"),
        "{stderr}"
    );
    assert!(!stderr.contains("no OS keyring"), "{stderr}");
}

/// A login kept in the OS keyring cannot be wiped while the keyring cannot
/// be read: logout says so and keeps the pointer, rather than forgetting
/// where the secret is and claiming nobody was logged in.
#[test]
fn logout_with_the_keyring_unreachable_keeps_the_pointer_and_fails_clearly() {
    let env0 = scratch();
    let issuer = "http://127.0.0.1:9";
    let env = Env::without_keyring(issuer);
    let tokens = env.path().join("data/tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let pointer = tokens.join("dev.keyring");
    std::fs::write(&pointer, issuer).unwrap();

    let out = env.run(&["logout"]);
    assert_eq!(out.status, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("OS keyring"), "{}", out.stderr);
    assert!(out.stderr.contains("nothing was deleted"), "{}", out.stderr);
    assert!(!out.stderr.contains("not logged in"), "{}", out.stderr);
    assert!(!out.stdout.contains("Logged out"), "{}", out.stdout);
    assert_eq!(std::fs::read_to_string(&pointer).unwrap(), issuer);

    // whoami names the same cause, not "not logged in".
    let who = env.run(&["whoami"]);
    assert_eq!(who.status, Some(1), "{}", who.stderr);
    assert!(who.stderr.contains("OS keyring"), "{}", who.stderr);
    drop(env0);
}

/// Nobody approves before the device code expires: exit 3, and it says so.
#[test]
fn a_code_nobody_approves_expires_with_exit_3() {
    let env0 = scratch();
    let (_idp, issuer) = human_oidc_provider(env0.path(), &[("OIDC_DEVICE_TTL", "3")]);
    let env = Env::new(&issuer);
    let mut p = Proc::spawn(
        "hoop-login",
        env.hoop(&["login", "--json", "--no-browser"]),
        env.path(),
    );
    let prompt: Value = serde_json::from_str(&p.line(Duration::from_secs(20))).unwrap();
    assert!(prompt["expires_in"].as_u64().unwrap() <= 3, "{prompt}");
    let code = p.wait_exit(Duration::from_secs(20));
    let stderr = p.stderr();
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("the code expired before it was approved; run `hoop login` again"),
        "{stderr}"
    );
    assert!(!env.token_file().exists());
}

/// The provider answers the first poll with `slow_down` (the fixture's
/// OIDC_SLOW_DOWN_ONCE hook): hoop polls 5 s less often and still signs in.
#[test]
fn slow_down_makes_login_poll_less_often_and_still_succeed() {
    let env0 = scratch();
    let (_idp, issuer) = human_oidc_provider(env0.path(), &[("OIDC_SLOW_DOWN_ONCE", "1")]);
    let env = Env::new(&issuer);
    let started = Instant::now();
    let (code, rest, stderr) = env.login_with("alice", false, &["--log", "debug"]);
    let elapsed = started.elapsed();
    assert_eq!(code, Some(0), "{stderr}");
    let done: Value = serde_json::from_str(&rest[0]).unwrap();
    assert_eq!(done["subject"], "alice", "{done}");
    // The fixture's interval is 1 s; after slow_down, 6 s.
    assert_eq!(stderr.matches("slowing down").count(), 1, "{stderr}");
    assert!(stderr.contains("polling every 6s"), "{stderr}");
    assert!(elapsed >= Duration::from_secs(6), "{elapsed:?}\n{stderr}");
    // The debug log carries no secret.
    let stored = env.stored();
    for key in ["access_token", "refresh_token", "id_token"] {
        let secret = stored[key].as_str().unwrap();
        assert!(!stderr.contains(secret), "{key} in the log");
    }
}
