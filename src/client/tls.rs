//! TLS for the load client: the process-wide crypto provider, and whom to trust.
//!
//! Trust is the platform's store (on Linux the system's CA bundle, or the file
//! `SSL_CERT_FILE` names and the directories of `SSL_CERT_DIR`), plus the
//! certificates of `--ca-cert`. A certificate given there is trusted both as a
//! CA and as the server's own: a self-signed certificate made by
//! `openssl req -x509` is marked as a CA, which WebPKI refuses as a server's
//! certificate, so a server presenting exactly that certificate is accepted (it
//! is pinned). `--insecure` accepts any certificate (a warning is logged).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Installs rustls' ring provider for the process (reqwest and ureq are built
/// without one, to keep aws-lc out of the build). Idempotent.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whom the load client trusts besides the platform's store.
#[derive(Clone, Debug, Default)]
pub struct TlsTrust {
    /// `--ca-cert`: CA certificates, or a server's own (self-signed) certificate.
    pub ca_certs: Vec<CertificateDer<'static>>,
    /// `--insecure`: no verification at all.
    pub insecure: bool,
}

/// Reads the certificates of a PEM file (`--ca-cert`).
pub fn read_pem_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let text = std::fs::read(path).map_err(|e| format!("--ca-cert: cannot read {path}: {e}"))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--ca-cert: {path} is not a PEM certificate file: {e:?}"))?;
    if certs.is_empty() {
        return Err(format!(
            "--ca-cert: {path} holds no `BEGIN CERTIFICATE` block; give the PEM file of the CA or of the server's certificate"
        ));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    install_tls_provider();
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// The client configuration for `https://` under `trust` (HTTP/1.1 by ALPN).
pub fn client_config(trust: &TlsTrust) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = if trust.insecure {
        Arc::new(AcceptAny(provider.clone()))
    } else {
        let platform = rustls_platform_verifier::Verifier::new_with_extra_roots(
            trust.ca_certs.iter().cloned(),
            provider.clone(),
        )
        .map_err(|e| format!("cannot load the TLS trust store: {e}"))?;
        // SSL_CERT_FILE's certificates are pinned as --ca-cert's are: a self-signed
        // server certificate is a valid trust anchor but not a valid server
        // certificate to WebPKI.
        let mut pinned = trust.ca_certs.clone();
        if let Some(f) = std::env::var_os("SSL_CERT_FILE") {
            pinned.extend(read_pem_certs(&f.to_string_lossy()).unwrap_or_default());
        }
        Arc::new(Pinned {
            inner: platform,
            pinned,
        })
    };
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The platform's verification, and acceptance of a server certificate that is
/// byte for byte one given with `--ca-cert`.
#[derive(Debug)]
struct Pinned {
    inner: rustls_platform_verifier::Verifier,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Ok(v) => Ok(v),
            Err(_)
                if self
                    .pinned
                    .iter()
                    .any(|c| c.as_ref() == end_entity.as_ref()) =>
            {
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `--insecure`: any certificate; the handshake's signatures are still checked
/// against the certificate presented.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
