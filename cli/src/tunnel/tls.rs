//! TLS trust for the tunnel: a CA file, or a pinned certificate fingerprint
//! (what a self-signed dev broker needs).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// How the CLI decides to trust the broker's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// PEM file with the CA (or the self-signed certificate itself).
    CaFile(std::path::PathBuf),
    /// `sha256:<hex>` of the broker's certificate.
    Pin(String),
}

pub fn client_config(trust: &Trust) -> anyhow::Result<quinn::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let mut tls = match trust {
        Trust::CaFile(path) => builder
            .with_root_certificates(load_roots(path)?)
            .with_no_client_auth(),
        Trust::Pin(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCert::new(pin, provider)?))
            .with_no_client_auth(),
    };
    tls.alpn_protocols = vec![hoop_proto::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let transport = hoop_broker::tunnel::tls::transport();
    config.transport_config(Arc::new(transport));
    Ok(config)
}

fn load_roots(path: &Path) -> anyhow::Result<rustls::RootCertStore> {
    let pem = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read CA file {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| anyhow::anyhow!("{} is not PEM: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| anyhow::anyhow!("{}: unusable certificate: {e}", path.display()))?;
    }
    if roots.is_empty() {
        anyhow::bail!("CA file {} holds no certificate", path.display());
    }
    Ok(roots)
}

/// Accepts exactly one certificate, by its SHA-256 fingerprint; signatures
/// are still verified, so the peer must hold that certificate's key.
#[derive(Debug)]
struct PinnedCert {
    digest: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl PinnedCert {
    fn new(pin: &str, provider: Arc<CryptoProvider>) -> anyhow::Result<Self> {
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
        Ok(Self { digest, provider })
    }
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use sha2::Digest;
        let got: [u8; 32] = sha2::Sha256::digest(end_entity.as_ref()).into();
        // Fingerprints are public, but compare in constant time anyway.
        if subtle::ConstantTimeEq::ct_eq(&got[..], &self.digest[..]).into() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the broker's certificate does not match the pinned fingerprint".into(),
            ))
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

    fn pin(p: &str) -> anyhow::Result<PinnedCert> {
        PinnedCert::new(p, Arc::new(rustls::crypto::ring::default_provider()))
    }

    #[test]
    fn good_pins_parse() {
        let hex = "ab".repeat(32);
        assert_eq!(pin(&format!("sha256:{hex}")).unwrap().digest, [0xab; 32]);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(pin(&colons).unwrap().digest, [0xab; 32]);
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
            assert!(pin(&p).is_err(), "{p:?}");
        }
    }
}
