//! TLS trust for the tunnel: a CA file, or a pinned certificate fingerprint
//! (what a self-signed dev broker needs).
//!
//! A certificate that fails the check is told apart from a broker that
//! cannot be reached: the verifier keeps what it found wrong in a
//! [`TrustFailure`], which the tunnel turns into its own error and exit code.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// How the CLI decides to trust the broker's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// PEM file with the CA (or the self-signed certificate itself).
    CaFile(std::path::PathBuf),
    /// `sha256:<hex>` of the broker's certificate.
    Pin(String),
}

/// Why the broker's certificate was not trusted, in a person's words, and
/// what to do about it. Set by the verifier during the handshake.
#[derive(Debug, Clone, Default)]
pub struct TrustFailure(Arc<std::sync::Mutex<Option<Untrusted>>>);

/// One failed trust check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untrusted {
    pub why: String,
    pub hint: String,
}

impl TrustFailure {
    fn set(&self, u: Untrusted) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(u);
    }

    /// What the last handshake's check found wrong, once.
    pub fn take(&self) -> Option<Untrusted> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The QUIC client config for `trust`, and where its verifier tells why it
/// refused a certificate.
pub fn client_config(trust: &Trust) -> anyhow::Result<(quinn::ClientConfig, TrustFailure)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let failure = TrustFailure::default();
    let check = match trust {
        Trust::CaFile(path) => {
            let anchors = load_certs(path)?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in &anchors {
                roots.add(cert.clone()).map_err(|e| {
                    anyhow::anyhow!("{}: unusable certificate: {e}", path.display())
                })?;
            }
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Check::Ca {
                webpki,
                anchors,
                file: path.clone(),
            }
        }
        Trust::Pin(pin) => Check::Pin(parse_pin(pin)?),
    };
    let verifier = BrokerCertVerifier {
        check,
        failure: failure.clone(),
        provider: provider.clone(),
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![hoop_proto::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let transport = hoop_broker::tunnel::tls::transport();
    config.transport_config(Arc::new(transport));
    Ok((config, failure))
}

fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read CA file {}: {e}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "CA file {} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(certs)
}

/// `sha256:<64 hex digits>` (colons between digit pairs allowed).
fn parse_pin(pin: &str) -> anyhow::Result<[u8; 32]> {
    let hex = pin.strip_prefix("sha256:").unwrap_or(pin).replace(':', "");
    // Checked first: slicing below assumes one byte per character, and
    // `from_str_radix` alone would accept a leading `+`.
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        anyhow::bail!("--pin must be sha256:<64 hex digits>, got {pin:?}");
    }
    let mut digest = [0u8; 32];
    for (i, d) in digest.iter_mut().enumerate() {
        *d = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| anyhow::anyhow!("--pin {pin:?} is not hexadecimal"))?;
    }
    Ok(digest)
}

/// What the broker's certificate is checked against.
enum Check {
    /// Exactly one certificate, by its SHA-256 fingerprint.
    Pin([u8; 32]),
    /// A chain to one of the CA file's certificates, as webpki checks it;
    /// or one of those certificates itself, for a broker whose self-signed
    /// certificate was handed out as the trust anchor (webpki refuses a
    /// certificate marked CA as an end entity, which is what `openssl req
    /// -x509` makes).
    Ca {
        webpki: Arc<WebPkiServerVerifier>,
        anchors: Vec<CertificateDer<'static>>,
        file: PathBuf,
    },
}

/// Checks the broker's certificate and, when it fails, says why in a
/// [`TrustFailure`]; handshake signatures are verified as rustls does, so
/// the peer must hold the certificate's key.
struct BrokerCertVerifier {
    check: Check,
    failure: TrustFailure,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for BrokerCertVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrokerCertVerifier")
    }
}

fn fingerprint(cert: &CertificateDer<'_>) -> (String, [u8; 32]) {
    use sha2::Digest;
    let digest: [u8; 32] = sha2::Sha256::digest(cert.as_ref()).into();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    (format!("sha256:{hex}"), digest)
}

/// The names a certificate is valid for (DNS names and IP addresses of its
/// subjectAltName), for messages.
fn cert_names(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some((*d).to_owned()),
            GeneralName::IPAddress(ip) => match ip.len() {
                4 => <[u8; 4]>::try_from(*ip)
                    .ok()
                    .map(|a| std::net::IpAddr::from(a).to_string()),
                16 => <[u8; 16]>::try_from(*ip)
                    .ok()
                    .map(|a| std::net::IpAddr::from(a).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Whether `now` lies within the certificate's validity period.
fn cert_current(cert: &CertificateDer<'_>, now: UnixTime) -> Result<(), CertificateError> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Err(CertificateError::BadEncoding);
    };
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let validity = parsed.validity();
    if now < validity.not_before.timestamp() {
        Err(CertificateError::NotValidYet)
    } else if now > validity.not_after.timestamp() {
        Err(CertificateError::Expired)
    } else {
        Ok(())
    }
}

impl BrokerCertVerifier {
    fn refuse(&self, why: String, hint: String, error: rustls::Error) -> rustls::Error {
        self.failure.set(Untrusted { why, hint });
        error
    }

    /// Why a certificate failed against the CA file, and the next step.
    fn explain(
        &self,
        error: &rustls::Error,
        file: &Path,
        cert: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
    ) -> (String, String) {
        let (print, _) = fingerprint(cert);
        let name = server_name.to_str();
        let names = cert_names(cert).join(", ");
        match error {
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => (
                format!("the broker's certificate is not valid for {name:?} (it names: {names})"),
                "pass --server-name with one of the names it has (or set server_name in the profile), or reach the broker by one of them".into(),
            ),
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            ) => (
                "the broker's certificate has expired, or this machine's clock is wrong".into(),
                "check the clock here; if it is right, the broker's operator renews the certificate (docs/certificates.md); a certificate from another CA than --ca-file's can show this too".into(),
            ),
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
            ) => (
                "the broker's certificate is not valid yet (is this machine's clock right?)".into(),
                "check the clock here and on the broker".into(),
            ),
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => (
                format!(
                    "the broker's certificate ({print}) was not issued by a CA in {}",
                    file.display()
                ),
                "--ca-file must hold the CA that signed the broker's certificate, or the broker's own self-signed certificate; or trust it by fingerprint with --pin once its operator confirms it (docs/certificates.md)".into(),
            ),
            // webpki checks the certificate's own constraints before its
            // issuer: a self-signed CA certificate that is not the one in
            // the file fails here.
            rustls::Error::InvalidCertificate(CertificateError::Other(o))
                if format!("{o:?}").contains("CaUsedAsEndEntity") =>
            {
                (
                    format!(
                        "the broker's certificate ({print}) is a self-signed CA certificate, and not the one in {}",
                        file.display()
                    ),
                    "give --ca-file the broker's own certificate (or the CA that issued it), or trust it by fingerprint with --pin once its operator confirms it (docs/certificates.md)".into(),
                )
            }
            other => (
                format!("the broker's certificate failed the check against {}: {other}", file.display()),
                "see docs/certificates.md for making and trusting a broker certificate".into(),
            ),
        }
    }
}

impl ServerCertVerifier for BrokerCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.check {
            Check::Pin(want) => {
                let (print, got) = fingerprint(end_entity);
                // Fingerprints are public, but compare in constant time anyway.
                if subtle::ConstantTimeEq::ct_eq(&got[..], &want[..]).into() {
                    return Ok(ServerCertVerified::assertion());
                }
                Err(self.refuse(
                    format!("the broker's certificate is {print}, not the pinned fingerprint"),
                    "if the broker's certificate was replaced, get its fingerprint from the operator (`hoop-broker serve` prints `certificate fingerprint: sha256:…` at start, `hoop-broker dev` `certificate: PATH (sha256:…)`, `hoop demo` `certificate pin sha256:…`) and update --pin or the profile's pin; if not, this may not be your broker".into(),
                    rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure),
                ))
            }
            Check::Ca {
                webpki,
                anchors,
                file,
            } => {
                let error = match webpki.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp,
                    now,
                ) {
                    Ok(v) => return Ok(v),
                    Err(e) => e,
                };
                // The broker's own certificate, given as the trust anchor:
                // trusted as that exact certificate, for its names and
                // while it is valid.
                if anchors.iter().any(|a| a.as_ref() == end_entity.as_ref()) {
                    let checked = cert_current(end_entity, now)
                        .map_err(rustls::Error::InvalidCertificate)
                        .and_then(|()| {
                            let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
                            rustls::client::verify_server_name(&parsed, server_name)
                        });
                    return match checked {
                        Ok(()) => Ok(ServerCertVerified::assertion()),
                        Err(e) => {
                            let (why, hint) = self.explain(&e, file, end_entity, server_name);
                            Err(self.refuse(why, hint, e))
                        }
                    };
                }
                let (why, hint) = self.explain(&error, file, end_entity, server_name);
                Err(self.refuse(why, hint, error))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_pins_parse() {
        let hex = "ab".repeat(32);
        assert_eq!(parse_pin(&format!("sha256:{hex}")).unwrap(), [0xab; 32]);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_pin(&colons).unwrap(), [0xab; 32]);
    }

    #[test]
    fn bad_pins_are_errors_not_panics() {
        let bad = [
            // 64 bytes, but a multi-byte character straddles a digit pair.
            format!("sha256:a\u{e9}{}", "0".repeat(61)),
            format!("sha256:{}", "é".repeat(32)),
            format!("sha256:+1{}", "0".repeat(62)),
            format!("sha256:{}", "0".repeat(63)),
            format!("sha256:{}", "0".repeat(66)),
            format!("sha256:{}g", "0".repeat(63)),
            String::new(),
        ];
        for p in bad {
            assert!(parse_pin(&p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn names_and_validity_are_read_from_the_certificate() {
        let (pem, _) = hoop_broker::tunnel::tls::self_signed_pem().unwrap();
        let cert = rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(cert_names(&cert), ["localhost", "127.0.0.1", "::1"]);
        assert!(cert_current(&cert, UnixTime::now()).is_ok());
        assert_eq!(
            cert_current(
                &cert,
                UnixTime::since_unix_epoch(std::time::Duration::from_secs(0))
            ),
            Err(CertificateError::NotValidYet)
        );
    }
}
