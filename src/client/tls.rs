//! The process-wide TLS crypto provider.

/// Installs rustls' ring provider for the process (reqwest and ureq are built
/// without one, to keep aws-lc out of the build). Idempotent.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
