//! Reaching PostgreSQL: the one place the audit log and the broker store
//! (`hoop-broker`'s `store/`) turn a connection string into a connection.
//!
//! The string is libpq's, as a DBA writes it (`postgres://USER@HOST:5432/DB`
//! or `host=… user=…`), with TLS asked for the libpq way:
//!
//! - `sslmode=require` (or `verify-ca`, `verify-full`): TLS 1.2 or 1.3
//!   through rustls, and the server's certificate is always verified
//!   against the roots and the host name in the string, as libpq's
//!   `verify-full` does: rustls has no unverified mode, and a broker that
//!   talks to a database it cannot authenticate would hand its audit log
//!   to whoever answers;
//! - `sslrootcert=FILE`: the PEM roots to verify it with (a private CA,
//!   or the server's own self-signed certificate); without it, the
//!   operating system's roots;
//! - `sslmode=disable` or `prefer` (the default): plain TCP, as before.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use postgres::config::SslMode;
use postgres::{Client, NoTls};

/// A parsed connection string: the driver's config and the roots file.
#[derive(Debug, Clone)]
pub struct PostgresTarget {
    pub config: postgres::Config,
    root_cert: Option<PathBuf>,
}

impl std::str::FromStr for PostgresTarget {
    type Err = String;

    /// Parses `s`, taking out what the driver does not read itself
    /// (`sslrootcert`, and `verify-ca`/`verify-full`, which are what
    /// `require` does here).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut root_cert = None;
        let mut take = |key: &str, value: &str| -> Option<String> {
            match (key, value) {
                ("sslrootcert", v) => {
                    root_cert = Some(PathBuf::from(v));
                    None
                }
                ("sslmode", "verify-ca" | "verify-full") => Some("sslmode=require".into()),
                _ => Some(format!("{key}={value}")),
            }
        };
        let rewritten = match s.split_once("://") {
            // URL form: the parameters are the query's.
            Some((scheme, rest)) => match rest.split_once('?') {
                Some((base, query)) => {
                    let kept: Vec<String> = query
                        .split('&')
                        .filter(|p| !p.is_empty())
                        .filter_map(|p| {
                            let (k, v) = p.split_once('=').unwrap_or((p, ""));
                            take(k, v)
                        })
                        .collect();
                    if kept.is_empty() {
                        format!("{scheme}://{base}")
                    } else {
                        format!("{scheme}://{base}?{}", kept.join("&"))
                    }
                }
                None => s.to_owned(),
            },
            // key=value form, separated by spaces (values with spaces in
            // quotes are left to the driver, untouched).
            None => s
                .split(' ')
                .filter(|p| !p.is_empty())
                .filter_map(|p| match p.split_once('=') {
                    Some((k, v)) if !v.starts_with('\'') => take(k, v),
                    _ => Some(p.to_owned()),
                })
                .collect::<Vec<_>>()
                .join(" "),
        };
        // The driver's own words name the option only among the causes.
        let config = rewritten
            .parse::<postgres::Config>()
            .map_err(|e| with_causes(&e))?;
        Ok(Self { config, root_cert })
    }
}

impl PostgresTarget {
    /// Whether connections are TLS (`sslmode=require` and up).
    pub fn tls(&self) -> bool {
        self.config.get_ssl_mode() == SslMode::Require
    }

    /// Connects with `config` (this target's, with whatever the caller set
    /// on a copy: timeouts, application name).
    pub fn connect_with(&self, config: &postgres::Config) -> Result<Client, String> {
        let mut config = config.clone();
        // The server's notices ("schema … already exists, skipping") are
        // not news to an operator: debug, not the driver's default info.
        config.notice_callback(|notice| {
            tracing::debug!("PostgreSQL: {}: {}", notice.severity(), notice.message())
        });
        if !self.tls() {
            return config.connect(NoTls).map_err(|e| with_causes(&e));
        }
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.client_config()?);
        config.connect(tls).map_err(|e| {
            // The words for a refused certificate are rustls's, under the
            // driver's (UnknownIssuer, NotValidForName, …): say what to do.
            let text = with_causes(&e);
            if text.contains("certificate") {
                format!("{text}: the server's TLS certificate was not accepted; give its CA (or the certificate itself) as sslrootcert=FILE in the URL, and connect by a name the certificate holds")
            } else {
                text
            }
        })
    }

    fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.root_cert {
            Some(file) => {
                for cert in read_pem_certs(file)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("sslrootcert {}: {e}", file.display()))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    // One unreadable system root is not a reason to refuse
                    // the others.
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err("sslmode=require, but this system has no CA roots to verify the server with: give sslrootcert=FILE in the URL".into());
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

/// `e` and what caused it, "outer: inner: …" (the driver's own words
/// for a failed handshake say only that it failed).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    // Bounded: chains are short, but a cycle must not hang a connect.
    for _ in 0..8 {
        let Some(c) = cause else { break };
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

fn read_pem_certs(file: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    let pem = std::fs::read(file)
        .map_err(|e| format!("cannot read sslrootcert {}: {e}", file.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("sslrootcert {}: not PEM certificates ({e})", file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "sslrootcert {}: no certificate in it (want PEM: -----BEGIN CERTIFICATE-----)",
            file.display()
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslrootcert_is_taken_out_and_verify_modes_are_require() {
        let t: PostgresTarget =
            "postgres://hoop@db:5432/hoop?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=3"
                .parse()
                .unwrap();
        assert!(t.tls());
        assert_eq!(t.root_cert.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(t.config.get_dbname(), Some("hoop"));
        let t: PostgresTarget = "host=db user=hoop sslmode=require sslrootcert=/ca.pem"
            .parse()
            .unwrap();
        assert!(t.tls());
        assert_eq!(t.root_cert.as_deref(), Some(Path::new("/ca.pem")));
        let t: PostgresTarget = "postgres://hoop@db/hoop?sslrootcert=/ca.pem"
            .parse()
            .unwrap();
        assert!(!t.tls(), "roots alone do not ask for TLS");
        let t: PostgresTarget = "postgres://hoop@db/hoop".parse().unwrap();
        assert!(!t.tls());
        let e = "postgres://hoop@db/hoop?sslmode=requre"
            .parse::<PostgresTarget>()
            .unwrap_err();
        assert!(e.contains("sslmode"), "names the option: {e}");
        assert!("postgres://hoop@db/hoop?bogus=1"
            .parse::<PostgresTarget>()
            .is_err());
    }

    #[test]
    fn a_roots_file_that_is_not_pem_certificates_says_so() {
        let dir = std::env::temp_dir().join(format!("hoop-pg-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ca.pem");
        std::fs::write(&file, "not a certificate").unwrap();
        let t: PostgresTarget = format!(
            "postgres://hoop@127.0.0.1:1/hoop?sslmode=require&sslrootcert={}",
            file.display()
        )
        .parse()
        .unwrap();
        let e = t.connect_with(&t.config).err().expect("refused");
        assert!(e.contains("no certificate in it"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
