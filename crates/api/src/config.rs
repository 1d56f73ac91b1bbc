//! Settings of the control plane, built by the binary from its configuration.

use std::time::Duration;

use crate::ice::Listeners;

/// Settings of the control plane (built by the binary from its configuration).
#[derive(Clone)]
pub struct ApiConfig {
    /// The TURN realm (long-term keys of stored credentials are derived with it).
    pub realm: String,
    /// SHA-256 of the operator's admin key given in the configuration, if any (admin keys
    /// generated at first start are in the store).
    pub admin_key_hash: Option<[u8; 32]>,
    /// Host name clients use in ICE server URIs.
    pub public_host: Option<String>,
    /// When `public_host` was detected rather than configured: this machine's interface
    /// addresses. A Metered-compatible ICE request whose `Host` header is one of these IP
    /// literals gets a list naming that address (the one the client reached us at). Empty: ICE
    /// lists always name `public_host`.
    pub host_header_ips: Vec<std::net::IpAddr>,
    /// Listeners advertised in ICE server lists.
    pub listeners: Listeners,
    /// Lifetime of minted ephemeral credentials when not asked (seconds).
    pub default_ttl: u64,
    /// Longest lifetime of ephemeral credentials (seconds).
    pub max_ttl: u64,
    /// Requests per key: burst and sustained rate per second.
    pub rate_burst: u32,
    pub rate_per_sec: u32,
    /// Largest request body accepted (bytes).
    pub max_body: usize,
    /// How often the change feed is read even without local changes (changes made by other
    /// nodes sharing the database show up within this).
    pub sync_interval: Duration,
    /// How long the relay keeps using a credential after it expired (for live allocations);
    /// expired stored credentials leave the directory after this.
    pub credential_grace: Duration,
    /// How often metered usage is written to the store.
    pub flush_interval: Duration,
    /// SMTP settings for email alerts.
    pub smtp: Option<SmtpConfig>,
    /// Webhook delivery: attempts and the first retry delay (doubling).
    pub webhook_attempts: u32,
    pub webhook_first_retry: Duration,
    /// DANGER: webhook targets in these otherwise-refused ranges are allowed.
    pub danger_allow_webhook_ranges: Vec<ipnet::IpNet>,
    /// Failed API key lookups allowed per client IP and minute (0: no limit).
    pub auth_failures_per_minute: u32,
    /// This node's region, heartbeat and routing settings.
    pub fleet: crate::fleet::settings::FleetConfig,
}

#[derive(Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    /// `none`, `starttls` or `tls`.
    pub security: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub from: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            realm: "turnpike".into(),
            admin_key_hash: None,
            public_host: None,
            host_header_ips: Vec::new(),
            listeners: Listeners::default(),
            default_ttl: 3600,
            max_ttl: 86_400 * 7,
            rate_burst: 100,
            rate_per_sec: 50,
            max_body: 64 * 1024,
            sync_interval: Duration::from_millis(500),
            credential_grace: Duration::from_secs(86_400),
            flush_interval: Duration::from_secs(2),
            smtp: None,
            webhook_attempts: 6,
            webhook_first_retry: Duration::from_secs(1),
            danger_allow_webhook_ranges: Vec::new(),
            auth_failures_per_minute: 30,
            fleet: crate::fleet::settings::FleetConfig::default(),
        }
    }
}
