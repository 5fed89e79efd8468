//! TLS for the QUIC listener: loading certificate and key files, and the
//! self-signed material `dev` mode creates on first start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Certificate chain and key as loaded from PEM files.
pub struct TlsMaterial {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl TlsMaterial {
    /// A secret for QUIC stateless resets, derived from the private key so
    /// that it survives a restart: clients of a restarted broker then learn
    /// at once that their old connection is gone, instead of waiting for
    /// the idle timeout.
    pub fn reset_secret(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"hoop stateless reset v1");
        h.update(self.key.secret_der());
        h.finalize().into()
    }
}

impl TlsMaterial {
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let cert_pem = std::fs::read(cert)
            .map_err(|e| anyhow::anyhow!("cannot read TLS certificate {}: {e}", cert.display()))?;
        let chain = rustls_pemfile::certs(&mut cert_pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                anyhow::anyhow!("{} is not a PEM certificate chain: {e}", cert.display())
            })?;
        if chain.is_empty() {
            anyhow::bail!("{} holds no certificate", cert.display());
        }
        let key_pem = std::fs::read(key)
            .map_err(|e| anyhow::anyhow!("cannot read TLS key {}: {e}", key.display()))?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
            .map_err(|e| anyhow::anyhow!("{} is not a PEM private key: {e}", key.display()))?
            .ok_or_else(|| anyhow::anyhow!("{} holds no private key", key.display()))?;
        Ok(Self { chain, key })
    }

    /// SHA-256 fingerprint of the leaf certificate, as `sha256:<hex>`; what
    /// `hoop connect --pin` takes.
    pub fn fingerprint(&self) -> String {
        self.chain
            .first()
            .map(|c| fingerprint(c))
            .unwrap_or_default()
    }
}

/// `sha256:<lowercase hex>` of a DER certificate.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = Sha256::digest(cert.as_ref());
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Paths of the dev broker's self-signed certificate and key.
pub struct DevTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Creates (once) a self-signed certificate for `localhost`, 127.0.0.1 and
/// ::1 under `dir`, and returns the paths.
pub fn ensure_dev_cert(dir: &Path) -> anyhow::Result<DevTlsFiles> {
    let files = DevTlsFiles {
        cert: dir.join("broker-cert.pem"),
        key: dir.join("broker-key.pem"),
    };
    if files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    let (cert_pem, key_pem) = self_signed_pem()?;
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    std::fs::write(&files.cert, cert_pem)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", files.cert.display()))?;
    write_private(&files.key, key_pem.as_bytes())?;
    Ok(files)
}

/// A fresh self-signed loopback certificate and key, as PEM.
pub fn self_signed_pem() -> anyhow::Result<(String, String)> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let ck = rcgen::generate_simple_self_signed(names)?;
    Ok((ck.cert.pem(), ck.signing_key.serialize_pem()))
}

/// Same, already parsed (for in-process brokers that never touch disk).
pub fn self_signed() -> anyhow::Result<TlsMaterial> {
    let (cert, key) = self_signed_pem()?;
    let chain = rustls_pemfile::certs(&mut cert.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut key.as_bytes())?
        .ok_or_else(|| anyhow::anyhow!("generated key did not parse"))?;
    Ok(TlsMaterial { chain, key })
}

/// Writes a secret file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    f.write_all(bytes)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

/// The QUIC server crypto: TLS 1.3 only, ALPN `hoop/1`.
pub fn quic_server_config(material: TlsMaterial) -> anyhow::Result<quinn::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(material.chain, material.key)
        .map_err(|e| anyhow::anyhow!("TLS certificate and key do not fit together: {e}"))?;
    tls.alpn_protocols = vec![hoop_proto::ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = transport();
    // Each stream may buffer one message of up to the broker's frame limit,
    // so the number of concurrent streams bounds a connection's memory.
    transport.max_concurrent_bidi_streams(256u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// QUIC transport settings both ends share: keep-alives well inside the idle
/// timeout, and flow-control windows wide enough that a multi-MiB tool
/// result is not throttled.
///
/// The idle timeout is how long a client takes to notice a broker that
/// vanished without closing (killed, or its host gone) and turn to another
/// replica; keep-alives every 2 s keep a quiet but healthy connection well
/// inside it, and cost a few dozen bytes each.
pub fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(std::time::Duration::from_secs(2)));
    // 10 s is far below QUIC's limit, so the conversion cannot fail.
    t.max_idle_timeout(quinn::IdleTimeout::try_from(std::time::Duration::from_secs(10)).ok());
    t.stream_receive_window((8u32 * 1024 * 1024).into());
    t.receive_window((32u32 * 1024 * 1024).into());
    t.send_window(32 * 1024 * 1024);
    t
}
