//! What the control plane shares: the store, the relay's directory, settings, the clock, the
//! quota state the meter maintains, and the HTTP side's rate limiters and idempotency cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use turnpike_proto::Directory;
use turnpike_store::AnyStore;

use crate::auth_failures::AuthFailures;
pub use crate::clock::unix_now;
use crate::clock::Clock;
use crate::config::ApiConfig;
use crate::domain::alerts::Notifier;
use crate::domain::quota_state::QuotaState;
use crate::domain::sessions::Sessions;
use crate::domain::sync_state::SyncState;
use crate::keys;

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
    /// Where operations read the time (see [`AppState::now`]).
    pub clock: Arc<dyn Clock>,
    pub quota_state: Mutex<QuotaState>,
    pub buckets: Mutex<HashMap<String, Bucket>>,
    pub idempotency: Mutex<IdempotencyCache>,
    pub notifier: Notifier,
    /// The directory sync's position in the change feed (one sync at a time).
    pub sync_lock: tokio::sync::Mutex<SyncState>,
    /// This process's id among the nodes sharing the database (random per start).
    pub node_id: String,
    /// Other nodes' disconnect requests already acted on (id → when made), and when the
    /// table was last pruned.
    pub seen_disconnects: Mutex<(HashMap<i64, i64>, i64)>,
    /// When a lookup last missed the directory and reloaded it (see `sync::tenant_secrets`).
    pub last_miss_reload: Mutex<Option<Instant>>,
    /// Failed API keys per client address.
    pub auth_failures: AuthFailures,
    /// Console sessions, by the SHA-256 of the key each was signed in with.
    pub sessions: Mutex<Sessions<[u8; 32]>>,
    /// The last read of the fleet's node registry.
    pub fleet: crate::fleet::view::Fleet,
}

pub type Shared = Arc<AppState>;

impl AppState {
    /// The state of a control plane on `store`, publishing to `directory`, reading the time
    /// from `clock`.
    pub fn new(
        store: AnyStore,
        directory: Arc<Directory>,
        cfg: ApiConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            directory,
            quota_state: Mutex::default(),
            buckets: Mutex::new(HashMap::new()),
            idempotency: Mutex::new(HashMap::new()),
            notifier: Notifier::new(&cfg),
            cfg,
            clock,
            sync_lock: tokio::sync::Mutex::default(),
            node_id: keys::random_hex(6),
            seen_disconnects: Mutex::default(),
            last_miss_reload: Mutex::default(),
            auth_failures: AuthFailures::default(),
            sessions: Mutex::default(),
            fleet: crate::fleet::view::Fleet::default(),
        }
    }

    /// Now, in unix seconds, by the state's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

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
