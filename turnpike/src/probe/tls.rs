//! The probe's TLS client (rustls with the `ring` provider): the Mozilla roots of `webpki-roots`
//! (the same on every platform), plus the CAs of `--ca FILE`, or with `--insecure` no
//! certificate check at all (for development certificates).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::error::ProbeError;

/// RFC 7443: the ALPN protocol of TURN over TLS.
pub(crate) const ALPN_TURN: &[u8] = b"stun.turn";

/// Which certificates the client accepts.
#[derive(Debug, Clone)]
pub(crate) struct Trust {
    roots: Arc<RootCertStore>,
    danger_accept_any: bool,
}

impl Trust {
    /// The webpki roots plus every certificate of `ca` (PEM); with `danger_accept_any`, anything.
    pub(crate) fn new(ca: Option<&Path>, danger_accept_any: bool) -> Result<Self, ProbeError> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca {
            let shown = path.display();
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| ProbeError::TlsSetup(format!("--ca {shown}: {e}")))?
                .collect::<Result<_, _>>()
                .map_err(|e| ProbeError::TlsSetup(format!("--ca {shown}: {e}")))?;
            if certs.is_empty() {
                return Err(ProbeError::TlsSetup(format!(
                    "--ca {shown}: no PEM certificate in the file"
                )));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| ProbeError::TlsSetup(format!("--ca {shown}: {e}")))?;
            }
        }
        Ok(Self {
            roots: Arc::new(roots),
            danger_accept_any,
        })
    }

    /// Checks a certificate given without its chain (DTLS): it must be signed directly by a
    /// trusted certificate and name `host`; anything passes with `--insecure`.
    pub(crate) fn verify_leaf(&self, der: &[u8], host: &str) -> Result<(), String> {
        if self.danger_accept_any {
            return Ok(());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            self.roots.clone(),
            provider,
        )
        .build()
        .map_err(|e| e.to_string())?;
        let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        verifier
            .verify_server_cert(&CertificateDer::from(der), &[], &name, &[], UnixTime::now())
            .map(drop)
            .map_err(|e| match e {
                rustls::Error::InvalidCertificate(c) => format!("{c:?}"),
                e => e.to_string(),
            })
    }

    /// A client configuration offering `alpn`.
    pub(crate) fn client_config(&self, alpn: &[&[u8]]) -> Result<ClientConfig, ProbeError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ProbeError::TlsSetup(e.to_string()))?;
        let mut config = if self.danger_accept_any {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(DangerAcceptAnyCertificate(provider)))
                .with_no_client_auth()
        } else {
            builder
                .with_root_certificates(self.roots.clone())
                .with_no_client_auth()
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// `--insecure`: accepts any certificate for any name (the handshake's signatures are still
/// checked, so the peer holds the key of the certificate it sent).
#[derive(Debug)]
struct DangerAcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for DangerAcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = Trust::new(Some(&empty), false).unwrap_err().to_string();
        assert!(
            e.contains("empty.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        let missing = dir.path().join("missing.pem");
        let e = Trust::new(Some(&missing), false).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");
        let t = Trust::new(None, false).unwrap();
        assert!(!t.roots.is_empty());
        t.client_config(&[ALPN_TURN]).unwrap();
    }
}
