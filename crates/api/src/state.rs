//! What every handler shares: the store, the relay's directory, settings, rate limiters, the
//! idempotency cache and the quota state the meter maintains.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ice::Listeners;
use turnpike_proto::Directory;
use turnpike_store::AnyStore;

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
    /// How often the directory is rebuilt from the store even without local changes (changes
    /// made by other nodes sharing the database show up within this).
    pub sync_interval: Duration,
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
            listeners: Listeners::default(),
            default_ttl: 3600,
            max_ttl: 86_400 * 7,
            rate_burst: 100,
            rate_per_sec: 50,
            max_body: 64 * 1024,
            sync_interval: Duration::from_secs(2),
            flush_interval: Duration::from_secs(2),
            smtp: None,
            webhook_attempts: 6,
            webhook_first_retry: Duration::from_secs(1),
            danger_allow_webhook_ranges: Vec::new(),
            auth_failures_per_minute: 30,
        }
    }
}

/// What quota actions currently apply, by scope key (`t:<tenant>` or `c:<credential>`),
/// recomputed by the meter from usage.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QuotaState {
    pub refused: HashSet<String>,
    pub throttled: HashMap<String, u64>,
}

/// A token bucket per key.
#[derive(Debug)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Responses to creates, kept briefly by `Idempotency-Key` (in memory only: they can contain
/// secrets shown once, which must not be written to the database).
pub type IdempotencyCache = HashMap<(String, String), Idempotent>;

/// One `Idempotency-Key` of one API key.
#[derive(Debug, Clone)]
pub enum Idempotent {
    /// The first request with it is still running (since then).
    InFlight(Instant),
    /// It finished: when, and its status and body to replay.
    Done(Instant, u16, String),
}

pub struct AppState {
    pub store: AnyStore,
    pub directory: Arc<Directory>,
    pub cfg: ApiConfig,
    pub quota_state: Mutex<QuotaState>,
    pub buckets: Mutex<HashMap<String, Bucket>>,
    pub idempotency: Mutex<IdempotencyCache>,
    pub notifier: crate::alerts::Notifier,
    /// Serializes directory rebuilds.
    pub sync_lock: tokio::sync::Mutex<()>,
    /// This process's id among the nodes sharing the database (random per start).
    pub node_id: String,
    /// Other nodes' disconnect requests already acted on (id → when made), and when the
    /// table was last pruned.
    pub seen_disconnects: Mutex<(HashMap<i64, i64>, i64)>,
    /// When a lookup last missed the directory and reloaded it (see `sync::tenant_secrets`).
    pub last_miss_reload: Mutex<Option<Instant>>,
    /// Failed API keys per client address (see `guard`).
    pub auth_failures: crate::guard::AuthFailures,
}

pub type Shared = Arc<AppState>;

impl AppState {
    /// False once the SQLite database file was removed or replaced under the running server
    /// (writes then fail with 503 `database_lost` until it is restored and the server
    /// restarted); always true on PostgreSQL. Costs one `stat`: fit for a health check.
    pub fn database_ok(&self) -> bool {
        self.store.database_ok()
    }

    /// Takes one request from `key`'s bucket; `Err(seconds)` to wait when empty.
    pub fn take_token(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut m = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() > 100_000 {
            m.retain(|_, b| now.duration_since(b.last) < Duration::from_secs(60));
        }
        let burst = self.cfg.rate_burst.max(1) as f64;
        let rate = self.cfg.rate_per_sec.max(1) as f64;
        let b = m.entry(key.to_string()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

/// Seconds since 1970.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
