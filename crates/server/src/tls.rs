//! TLS for TURNS (RFC 8656 §3.1 over TLS 1.2/1.3, rustls): certificates from PEM files or a
//! generated self-signed development certificate, swapped in place on reload so live connections
//! keep their session and the next handshake gets the new certificate.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The ALPN identifier of ACME's TLS-ALPN-01 challenge (RFC 8737).
pub const ALPN_ACME_TLS: &[u8] = b"acme-tls/1";

/// ALPN identifiers of RFC 7443 that a TURNS listener accepts.
pub const ALPN_STUN_TURN: &[u8] = b"stun.turn";
pub const ALPN_STUN_NAT_DISCOVERY: &[u8] = b"stun.nat-discovery";

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no usable PEM private key found")]
    NoKey { path: PathBuf },
    #[error("certificate and key do not form a usable pair: {0}")]
    Pair(String),
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
}

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// PEM files, reloaded by [`CertStore::reload`].
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate for these names, generated at start (development only).
    SelfSigned { names: Vec<String> },
}

/// The current certificate, replaceable while the server runs.
pub struct CertStore {
    source: CertSource,
    current: RwLock<Arc<CertifiedKey>>,
    /// DER certificate and key for DTLS, which needs ECDSA: the configured pair when its key is
    /// ECDSA, otherwise a generated self-signed ECDSA pair.
    dtls: RwLock<(Vec<u8>, Vec<u8>)>,
    /// ACME TLS-ALPN-01 challenge certificates by domain (RFC 8737), shown only to clients that
    /// ask for ALPN `acme-tls/1` with that name.
    acme_challenges: RwLock<std::collections::HashMap<String, Arc<CertifiedKey>>>,
}

/// Loaded material: the rustls key and the DTLS pair.
struct Loaded {
    certified: CertifiedKey,
    dtls: (Vec<u8>, Vec<u8>),
}

/// The ASN.1 OID of id-ecPublicKey, as it appears in a PKCS#8 ECDSA key.
const EC_PUBLIC_KEY_OID: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

fn is_ecdsa(key: &PrivateKeyDer<'_>) -> bool {
    match key {
        PrivateKeyDer::Sec1(_) => true,
        PrivateKeyDer::Pkcs8(k) => k
            .secret_pkcs8_der()
            .windows(EC_PUBLIC_KEY_OID.len())
            .any(|w| w == EC_PUBLIC_KEY_OID),
        _ => false,
    }
}

fn self_signed(
    names: &[String],
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    // rcgen's default key is ECDSA P-256, usable by both TLS and DTLS.
    let c = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let key = PrivateKeyDer::try_from(c.signing_key.serialize_der())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok((c.cert.der().clone(), key))
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("source", &self.source)
            .finish()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The certificate chain and key as rustls serves them; the leaf's expiry goes to the gauge
/// `turnpike_tls_certificate_expiry_seconds` (unix seconds), for alerts.
fn certified(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, TlsError> {
    let not_after = certs.first().and_then(|leaf| {
        x509_parser::parse_x509_certificate(leaf)
            .ok()
            .map(|(_, c)| c.validity().not_after.timestamp())
    });
    let k = CertifiedKey::from_der(certs, key, &provider())
        .map_err(|e| TlsError::Pair(e.to_string()))?;
    if let Some(t) = not_after {
        metrics::gauge!("turnpike_tls_certificate_expiry_seconds").set(t as f64);
    }
    Ok(k)
}

fn load(source: &CertSource) -> Result<Loaded, TlsError> {
    match source {
        CertSource::Files { cert, key } => {
            let cert_pem = read(cert)?;
            let key_pem = read(key)?;
            let certs: Vec<_> = CertificateDer::pem_slice_iter(&cert_pem)
                .filter_map(Result::ok)
                .collect();
            if certs.is_empty() {
                return Err(TlsError::NoCertificate { path: cert.clone() });
            }
            let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|_| TlsError::NoKey { path: key.clone() })?;
            let dtls = if is_ecdsa(&key_der) {
                (certs[0].to_vec(), key_der.secret_der().to_vec())
            } else {
                tracing::warn!("tls_key is not ECDSA; DTLS (which needs ECDSA) uses a generated self-signed certificate");
                let (c, k) = self_signed(&["localhost".to_string()])?;
                (c.to_vec(), k.secret_der().to_vec())
            };
            Ok(Loaded {
                certified: certified(certs, key_der)?,
                dtls,
            })
        }
        CertSource::SelfSigned { names } => {
            let (c, k) = self_signed(names)?;
            let dtls = (c.to_vec(), k.secret_der().to_vec());
            Ok(Loaded {
                certified: certified(vec![c], k)?,
                dtls,
            })
        }
    }
}

impl CertStore {
    /// Loads the first certificate.
    pub fn new(source: CertSource) -> Result<Arc<Self>, TlsError> {
        let l = load(&source)?;
        Ok(Arc::new(Self {
            source,
            current: RwLock::new(Arc::new(l.certified)),
            dtls: RwLock::new(l.dtls),
            acme_challenges: RwLock::default(),
        }))
    }

    /// Reloads from the source; on error the old certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let l = load(&self.source)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(l.certified);
        *self.dtls.write().unwrap_or_else(|e| e.into_inner()) = l.dtls;
        Ok(())
    }

    /// Puts a certificate chain and its key (PEM, e.g. from ACME) in use for new TLS and (when
    /// the key is ECDSA) DTLS handshakes; live connections keep theirs. On error the current
    /// certificate stays.
    pub fn install_pem(&self, chain_pem: &[u8], key_pem: &[u8]) -> Result<(), TlsError> {
        let certs: Vec<_> = CertificateDer::pem_slice_iter(chain_pem)
            .filter_map(Result::ok)
            .collect();
        let first = certs
            .first()
            .ok_or(TlsError::Pair("no certificate in the chain".into()))?;
        let first = first.to_vec();
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| TlsError::Pair(format!("no usable private key: {e}")))?;
        let dtls = is_ecdsa(&key).then(|| (first, key.secret_der().to_vec()));
        let certified = certified(certs, key)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(certified);
        if let Some(d) = dtls {
            *self.dtls.write().unwrap_or_else(|e| e.into_inner()) = d;
        }
        Ok(())
    }

    /// Answers ACME TLS-ALPN-01 for `domain` (RFC 8737): a self-signed certificate for the name
    /// carrying the `acmeIdentifier` extension with `digest` (SHA-256 of the key
    /// authorization), shown to clients that ask for ALPN `acme-tls/1` and that name.
    pub fn set_acme_challenge(&self, domain: &str, digest: &[u8]) -> Result<(), TlsError> {
        let mut params = rcgen::CertificateParams::new(vec![domain.to_string()])
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
        let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let key = PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        // Not `certified()`: its consistency check parses the certificate with webpki, which
        // refuses the critical acmeIdentifier extension this certificate exists for.
        let signing = provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::Pair(e.to_string()))?;
        let certified = CertifiedKey::new(vec![cert.der().clone()], signing);
        self.acme_challenges
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(domain.to_ascii_lowercase(), Arc::new(certified));
        Ok(())
    }

    /// Stops answering TLS-ALPN-01 for `domain`.
    pub fn clear_acme_challenge(&self, domain: &str) {
        self.acme_challenges
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&domain.to_ascii_lowercase());
    }

    /// DER certificate and private key for DTLS (ECDSA).
    pub fn dtls_der(&self) -> (Vec<u8>, Vec<u8>) {
        self.dtls.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The files to watch for changes, if any.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        match &self.source {
            CertSource::Files { cert, key } => vec![cert.clone(), key.clone()],
            CertSource::SelfSigned { .. } => vec![],
        }
    }

    /// A rustls server configuration (TLS 1.2 and 1.3) that takes its certificate from here and
    /// accepts the RFC 7443 ALPN identifiers (and `extra_alpn`, e.g. `http/1.1` on a shared port).
    pub fn server_config_with_alpn(
        self: &Arc<Self>,
        extra_alpn: &[&[u8]],
    ) -> Arc<rustls::ServerConfig> {
        let mut cfg = (*self.server_config()).clone();
        cfg.alpn_protocols
            .extend(extra_alpn.iter().map(|a| a.to_vec()));
        Arc::new(cfg)
    }

    /// A rustls server configuration (TLS 1.2 and 1.3) that takes its certificate from here.
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        cfg.alpn_protocols = vec![
            ALPN_STUN_TURN.to_vec(),
            ALPN_STUN_NAT_DISCOVERY.to_vec(),
            ALPN_ACME_TLS.to_vec(),
        ];
        Arc::new(cfg)
    }
}

#[derive(Debug)]
struct Resolver(Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // RFC 8737: an ACME validator asks for `acme-tls/1` alone, with the name it checks.
        let acme = hello
            .alpn()
            .is_some_and(|mut a| a.any(|p| p == ALPN_ACME_TLS));
        if acme {
            let name = hello.server_name()?.to_ascii_lowercase();
            return self
                .0
                .acme_challenges
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&name)
                .cloned();
        }
        Some(
            self.0
                .current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}
