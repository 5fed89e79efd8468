//! The process-wide rustls crypto provider. rustls needs exactly one per
//! process, and every TLS user (the QUIC tunnel, the upstream client, OIDC
//! discovery, the CLI) must agree on it, so it is installed from here and
//! nowhere else; ring is the one we build.

/// Installs ring as the provider; a second call changes nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
