//! Certificates from an ACME CA (RFC 8555, Let's Encrypt by default) without hand work: with
//! `acme_domains` and `acme_email` set, Turnpike obtains a certificate for the names, keeps it
//! (and the ACME account) in the data directory, puts it in use for TLS, DTLS and HTTPS without
//! dropping live connections, and renews it at two thirds of its lifetime, backing off on
//! failure. Challenges: HTTP-01 on the plain shared listener (port 80) or TLS-ALPN-01 (RFC
//! 8737) on the TLS listeners (port 443).
//!
//! The protocol and its JOSE signing are the `instant-acme` crate's; this module decides when,
//! answers the challenges, stores and installs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use turnpike_server::dtls::DtlsContext;
use turnpike_server::tls::CertStore;

use crate::config::{AcmeChallenge, Config};

/// First retry after a failed issuance; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// HTTP-01 key authorizations by token, served at `/.well-known/acme-challenge/{token}`.
#[derive(Debug, Default)]
pub(crate) struct Http01 {
    tokens: Mutex<HashMap<String, String>>,
}

impl Http01 {
    /// The key authorization for `token`, while its challenge is open.
    pub(crate) fn answer(&self, token: &str) -> Option<String> {
        self.lock().get(token).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the ACME task needs.
pub(crate) struct Acme {
    domains: Vec<String>,
    email: String,
    directory: String,
    ca_file: Option<PathBuf>,
    challenge: ChallengeType,
    renew_after: Option<Duration>,
    dir: PathBuf,
    pub http01: Arc<Http01>,
}

impl Acme {
    /// The ACME settings of `cfg`, if ACME is on.
    pub(crate) fn from_config(cfg: &Config) -> Option<Self> {
        if cfg.acme_domains.is_empty() {
            return None;
        }
        let challenge = match cfg.acme_challenge {
            AcmeChallenge::Http01 => ChallengeType::Http01,
            AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            AcmeChallenge::Auto if !cfg.listen_mux_plain.is_empty() => ChallengeType::Http01,
            AcmeChallenge::Auto => ChallengeType::TlsAlpn01,
        };
        Some(Self {
            domains: cfg.acme_domains.clone(),
            email: cfg.acme_email.clone().unwrap_or_default(),
            directory: cfg.acme_directory.clone(),
            ca_file: cfg.acme_ca_file.clone(),
            challenge,
            renew_after: cfg.acme_renew_after.map(crate::duration::Span::get),
            dir: cfg.data_dir.join("acme"),
            http01: Arc::default(),
        })
    }

    /// Installs a stored certificate that still covers the names, if any, before the listeners
    /// start (so a restart serves the real certificate at once).
    pub(crate) fn install_stored(&self, certs: &CertStore) {
        if let Some(stored) = self.stored() {
            match certs.install_pem(stored.chain.as_bytes(), stored.key.as_bytes()) {
                Ok(()) => {
                    tracing::info!(domains = ?self.domains, not_after = ?stored.not_after, "ACME certificate loaded from the data directory");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the stored ACME certificate is unusable; a new one will be requested");
                }
            }
        }
    }

    /// Keeps a valid certificate in use: issues when there is none, renews when due, retries
    /// with backoff. Runs until the process ends.
    pub(crate) async fn run(self, certs: Arc<CertStore>, dtls: Option<Arc<DtlsContext>>) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            if let Some(wait) = self.stored().map(|s| self.renewal_due(&s)) {
                if !wait.is_zero() {
                    tracing::info!(
                        renew_in_secs = wait.as_secs(),
                        "ACME certificate valid; renewal scheduled"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
            match self.issue(&certs).await {
                Ok(stored) => {
                    backoff = FIRST_BACKOFF;
                    match certs.install_pem(stored.chain.as_bytes(), stored.key.as_bytes()) {
                        Ok(()) => {
                            if let Some(d) = &dtls {
                                let (c, k) = certs.dtls_der();
                                d.set_certificate(c, k);
                            }
                            tracing::info!(domains = ?self.domains, not_after = ?stored.not_after, "ACME certificate issued and in use");
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "the issued ACME certificate is unusable");
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), retry_in_secs = backoff.as_secs(), "ACME issuance failed (keys `acme_domains`, `acme_directory`; the CA must reach this node on port 80 or 443)");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// How long until the stored certificate should be renewed (zero: now).
    fn renewal_due(&self, s: &Stored) -> Duration {
        let now = SystemTime::now();
        let at = match self.renew_after {
            Some(after) => s.not_before + after,
            // Two thirds of the lifetime, as Let's Encrypt recommends.
            None => {
                s.not_before
                    + (s.not_after.duration_since(s.not_before).unwrap_or_default() * 2 / 3)
            }
        };
        at.duration_since(now).unwrap_or_default()
    }

    /// The stored certificate, when it covers every name and has not expired.
    fn stored(&self) -> Option<Stored> {
        let chain = std::fs::read_to_string(self.dir.join("cert.pem")).ok()?;
        let key = std::fs::read_to_string(self.dir.join("key.pem")).ok()?;
        let s = Stored::parse(chain, key).ok()?;
        let covers = self
            .domains
            .iter()
            .all(|d| s.names.iter().any(|n| n.eq_ignore_ascii_case(d)));
        (covers && SystemTime::now() < s.not_after).then_some(s)
    }

    async fn account(&self) -> Result<Account> {
        let path = self.dir.join("account.json");
        let builder = || -> Result<_> {
            Ok(match &self.ca_file {
                Some(ca) => Account::builder_with_root(ca)
                    .with_context(|| format!("key `acme_ca_file` ({})", ca.display()))?,
                None => Account::builder()?,
            })
        };
        if let Ok(json) = std::fs::read_to_string(&path) {
            let creds: AccountCredentials =
                serde_json::from_str(&json).context("the stored ACME account is unreadable")?;
            return Ok(builder()?.from_credentials(creds).await?);
        }
        let contact = format!("mailto:{}", self.email);
        let contacts = [contact.as_str()];
        let (account, creds) = builder()?
            .create(
                &NewAccount {
                    contact: if self.email.is_empty() {
                        &[]
                    } else {
                        &contacts
                    },
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.directory.clone(),
                None,
            )
            .await
            .context("cannot create the ACME account (key `acme_directory`)")?;
        write_private(&path, serde_json::to_string(&creds)?.as_bytes())?;
        Ok(account)
    }

    /// One issuance: order, challenges, finalization, download; stores the result.
    async fn issue(&self, certs: &CertStore) -> Result<Stored> {
        crate::instance::ensure_data_dir(&self.dir)?;
        let account = self.account().await?;
        let ids: Vec<Identifier> = self.domains.iter().cloned().map(Identifier::Dns).collect();
        let mut order = account.new_order(&NewOrder::new(&ids)).await?;
        let mut opened = Vec::new();
        let result = async {
            let mut authorizations = order.authorizations();
            while let Some(a) = authorizations.next().await {
                let mut a = a?;
                match a.status {
                    AuthorizationStatus::Pending => {}
                    AuthorizationStatus::Valid => continue,
                    other => bail!("authorization is {other:?}"),
                }
                let mut ch = a
                    .challenge(self.challenge.clone())
                    .with_context(|| format!("the CA offers no {:?} challenge", self.challenge))?;
                let key_auth = ch.key_authorization();
                let domain = ch.identifier().to_string();
                match self.challenge {
                    ChallengeType::Http01 => {
                        self.http01
                            .lock()
                            .insert(ch.token.clone(), key_auth.as_str().to_string());
                        opened.push((ch.token.clone(), domain));
                    }
                    _ => {
                        certs.set_acme_challenge(&domain, key_auth.digest().as_ref())?;
                        opened.push((String::new(), domain));
                    }
                }
                ch.set_ready().await?;
            }
            let status = order
                .poll_ready(&RetryPolicy::new().timeout(Duration::from_secs(90)))
                .await?;
            if status != OrderStatus::Ready {
                bail!("the order is {status:?} after the challenges");
            }
            let key = order.finalize().await?;
            let chain = order
                .poll_certificate(&RetryPolicy::new().timeout(Duration::from_secs(90)))
                .await?;
            Ok((chain, key))
        }
        .await;
        for (token, domain) in opened {
            if token.is_empty() {
                certs.clear_acme_challenge(&domain);
            } else {
                self.http01.lock().remove(&token);
            }
        }
        let (chain, key) = result?;
        let stored = Stored::parse(chain, key)?;
        write_private(&self.dir.join("key.pem"), stored.key.as_bytes())?;
        write_private(&self.dir.join("cert.pem"), stored.chain.as_bytes())?;
        Ok(stored)
    }
}

/// A certificate chain and key as stored, with what the leaf says.
struct Stored {
    chain: String,
    key: String,
    names: Vec<String>,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl Stored {
    fn parse(chain: String, key: String) -> Result<Self> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(chain.as_bytes())
            .map_err(|e| anyhow::anyhow!("the certificate is not PEM: {e}"))?;
        let cert = pem
            .parse_x509()
            .map_err(|e| anyhow::anyhow!("the certificate does not parse: {e}"))?;
        let to_time = |t: x509_parser::time::ASN1Time| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0).unsigned_abs())
        };
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                    names.push((*d).to_string());
                }
            }
        }
        Ok(Self {
            not_before: to_time(cert.validity().not_before),
            not_after: to_time(cert.validity().not_after),
            names,
            chain,
            key,
        })
    }
}

/// Writes a file only its owner can read (0600, whatever the umask).
fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
