//! The control plane as the relay sees it: stored credentials, tenants' shared secrets for
//! ephemeral credentials, revocations and per-account limits, published as one immutable
//! [`Snapshot`] that is swapped atomically (readers never block, never see half an update), plus
//! a short log of disconnect requests.
//!
//! What it does: answer "who is this username, what key, which account, what limits" during
//! authentication and Allocate, and tell workers which live allocations to close.
//! What it does not do: read a database. The control plane (`turnpike-api`) builds snapshots from
//! the store and publishes them here after every change, so a disabled credential is refused by
//! the very next request.

mod credentials;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwap;
use turnpike_stun::Key;

pub use credentials::{CredentialRecord, CredentialTable};

/// Who an allocation is billed to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Account {
    pub tenant_id: Arc<str>,
    /// The stored credential (for ephemeral credentials minted with a credential's publishable
    /// key, that credential); `None` for tenant-wide ephemeral credentials.
    pub credential_id: Option<Arc<str>>,
    /// The user id of an ephemeral credential.
    pub user_id: Option<Arc<str>>,
}

/// A stored credential, by username.
#[derive(Clone)]
pub struct StoredUser {
    pub key_md5: Key,
    pub key_sha256: Key,
    pub enabled: bool,
    /// Unix seconds.
    pub expires_at: Option<u64>,
    pub account: Arc<Account>,
}

impl std::fmt::Debug for StoredUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredUser")
            .field("enabled", &self.enabled)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// Limits of a tenant or a credential, as the relay enforces them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Most live allocations at once.
    pub max_allocations: Option<u32>,
    /// Most relayed bits per second per allocation (both directions together).
    pub max_bitrate_bps: Option<u64>,
    /// New allocations are refused (a quota action).
    pub refuse: bool,
}

/// Everything the relay reads apart from the stored credentials (which change one at a time,
/// in the [`CredentialTable`]), as of one moment.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Client addresses refused on every listener (TURN, STUN and the API), as set through the
    /// API; the configured `denied_client_ranges` apply in addition.
    pub denied_clients: Vec<ipnet::IpNet>,
    /// Live shared secrets per tenant, newest first.
    pub tenant_secrets: HashMap<String, Vec<Vec<u8>>>,
    /// Revoked ephemeral usernames, until (unix seconds).
    pub revoked_usernames: HashMap<String, u64>,
    /// Revoked user ids per tenant, until (unix seconds).
    pub revoked_users: HashMap<(String, String), u64>,
    /// Limits per tenant id.
    pub tenant_limits: HashMap<String, Limits>,
    /// Limits per credential id.
    pub credential_limits: HashMap<String, Limits>,
    /// Tenants the operator suspended (with their projects): every credential of theirs is
    /// refused.
    pub suspended_tenants: HashSet<String>,
    /// The regions a tenant (or its projects) may be served from, for tenants the operator
    /// restricted (data residency): a redirect (300) never names a node outside them.
    pub tenant_regions: HashMap<String, Vec<String>>,
}

impl Snapshot {
    /// The limits that apply to `account`: the stricter of its tenant's and credential's.
    pub fn limits_for(&self, account: &Account) -> Limits {
        let t = self.tenant_limits.get(&*account.tenant_id);
        let c = account
            .credential_id
            .as_ref()
            .and_then(|c| self.credential_limits.get(&**c));
        let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, None) => x,
            (None, y) => y,
        };
        Limits {
            max_allocations: None, // counted per scope, see `Directory::scopes`
            max_bitrate_bps: min(
                t.and_then(|l| l.max_bitrate_bps),
                c.and_then(|l| l.max_bitrate_bps),
            ),
            refuse: t.is_some_and(|l| l.refuse) || c.is_some_and(|l| l.refuse),
        }
    }

    /// Whether an ephemeral credential is revoked at `now`.
    pub fn is_revoked(&self, account: &Account, username: &str, now: u64) -> bool {
        if self
            .revoked_usernames
            .get(username)
            .is_some_and(|&t| t > now)
        {
            return true;
        }
        match &account.user_id {
            Some(u) => self
                .revoked_users
                .get(&(account.tenant_id.to_string(), u.to_string()))
                .is_some_and(|&t| t > now),
            None => false,
        }
    }
}

/// Which live allocations to close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disconnect {
    Username(String),
    Credential(String),
    Tenant(String),
    User { tenant_id: String, user_id: String },
}

impl Disconnect {
    pub fn matches(&self, username: &str, account: Option<&Account>) -> bool {
        match (self, account) {
            (Self::Username(u), _) => u == username,
            (Self::Credential(c), Some(a)) => a.credential_id.as_deref() == Some(c.as_str()),
            (Self::Tenant(t), Some(a)) => &*a.tenant_id == t.as_str(),
            (Self::User { tenant_id, user_id }, Some(a)) => {
                &*a.tenant_id == tenant_id.as_str()
                    && a.user_id.as_deref() == Some(user_id.as_str())
            }
            _ => false,
        }
    }
}

/// Disconnect requests are kept this many entries back; a worker that falls further behind
/// (impossible at one check per second) re-reads them all.
const KEEP_DISCONNECTS: usize = 1024;

/// The published state, shared by every worker.
#[derive(Debug, Default)]
pub struct Directory {
    current: ArcSwap<Snapshot>,
    /// The stored credentials. Usernames are unique per tenant, not globally, so one name may
    /// stand for credentials of several tenants: authentication tries each one's key. Readers
    /// hold the lock for one lookup.
    credentials: RwLock<CredentialTable>,
    /// Bumped on every publish and disconnect; workers re-check limits when it moves.
    generation: AtomicU64,
    disconnects: Mutex<Vec<(u64, Disconnect)>>,
    /// Client ranges refused by configuration (`denied_client_ranges`, re-read on SIGHUP);
    /// the snapshot's `denied_clients` (set through the API) apply too.
    configured_denied: ArcSwap<Vec<ipnet::IpNet>>,
}

impl Directory {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current snapshot (lock-free).
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Replaces the snapshot.
    pub fn publish(&self, s: Snapshot) {
        self.current.store(Arc::new(s));
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Stored credentials with this username (one per tenant that uses it).
    pub fn stored_users(&self, username: &str) -> Vec<StoredUser> {
        self.read_credentials().lookup(username)
    }

    /// The tenant of the stored credential with this id, and whether it is enabled.
    pub fn credential(&self, id: &str) -> Option<(Arc<str>, bool)> {
        self.read_credentials().by_id(id)
    }

    /// How many stored credentials the relay holds.
    pub fn credential_count(&self) -> usize {
        self.read_credentials().len()
    }

    fn read_credentials(&self) -> std::sync::RwLockReadGuard<'_, CredentialTable> {
        self.credentials.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_credentials(&self) -> std::sync::RwLockWriteGuard<'_, CredentialTable> {
        self.credentials.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds or replaces stored credentials and removes the ids in `removed`, then tells the
    /// workers (one lock for the batch).
    pub fn change_credentials(&self, upserts: &[CredentialRecord<'_>], removed: &[&str]) {
        {
            let mut t = self.write_credentials();
            for c in upserts {
                t.upsert(c);
            }
            for id in removed {
                t.remove(id);
            }
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Replaces every stored credential (a full load); the old table is freed outside the lock.
    pub fn replace_credentials(&self, table: CredentialTable) {
        let old = std::mem::replace(&mut *self.write_credentials(), table);
        self.generation.fetch_add(1, Ordering::SeqCst);
        drop(old);
    }

    /// Drops stored credentials that expired before `before` (unix seconds); returns how many.
    pub fn remove_expired_credentials(&self, before: u64) -> usize {
        self.write_credentials().remove_expired(before)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Asks every worker to close the live allocations matching `d` (within a second).
    pub fn disconnect(&self, d: Disconnect) {
        let mut l = self.disconnects.lock().unwrap_or_else(|e| e.into_inner());
        let seq = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        l.push((seq, d));
        if l.len() > KEEP_DISCONNECTS {
            let n = l.len() - KEEP_DISCONNECTS;
            l.drain(..n);
        }
    }

    /// Disconnect requests made after generation `seen`.
    pub fn disconnects_since(&self, seen: u64) -> Vec<Disconnect> {
        let l = self.disconnects.lock().unwrap_or_else(|e| e.into_inner());
        l.iter()
            .filter(|(s, _)| *s > seen)
            .map(|(_, d)| d.clone())
            .collect()
    }

    /// Replaces the configured client deny list.
    pub fn set_configured_denied_clients(&self, ranges: Vec<ipnet::IpNet>) {
        self.configured_denied.store(Arc::new(ranges));
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether `ip` is refused on every listener (configured or API deny list). IPv4-mapped
    /// IPv6 addresses are judged as their IPv4 address.
    pub fn is_client_denied(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        let configured = self.configured_denied.load();
        if configured.iter().any(|n| n.contains(&ip)) {
            return true;
        }
        let snap = self.current.load();
        snap.denied_clients.iter().any(|n| n.contains(&ip))
    }

    /// Whether any client range is denied at all (a cheap check before per-packet work).
    pub fn has_denied_clients(&self) -> bool {
        !self.configured_denied.load().is_empty() || !self.current.load().denied_clients.is_empty()
    }

    /// The allocation-count scopes of an account: its tenant and, if any, its credential.
    pub fn scopes(account: &Account) -> (String, Option<String>) {
        (
            format!("t:{}", account.tenant_id),
            account.credential_id.as_ref().map(|c| format!("c:{c}")),
        )
    }
}

/// Splits an ephemeral username `expiry:scope:user` (user may be empty; `expiry:scope` too).
/// `scope` is a tenant id (`ten_…`) or a credential id (`cred_…`).
pub fn parse_ephemeral(username: &str) -> Option<(u64, &str, Option<&str>)> {
    let mut it = username.splitn(3, ':');
    let expiry = it.next()?.parse::<u64>().ok()?;
    let scope = it.next()?;
    if !(scope.starts_with("ten_") || scope.starts_with("cred_")) {
        return None;
    }
    let user = it.next().filter(|u| !u.is_empty());
    Some((expiry, scope, user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_usernames() {
        assert_eq!(
            parse_ephemeral("1700000000:ten_ab:alice:x"),
            Some((1_700_000_000, "ten_ab", Some("alice:x")))
        );
        assert_eq!(
            parse_ephemeral("1700000000:cred_ab"),
            Some((1_700_000_000, "cred_ab", None))
        );
        assert_eq!(parse_ephemeral("1700000000:alice"), None);
        assert_eq!(parse_ephemeral("x:ten_ab:alice"), None);
    }

    #[test]
    fn disconnect_log() {
        let d = Directory::new();
        let g = d.generation();
        d.disconnect(Disconnect::Username("a".into()));
        assert_eq!(
            d.disconnects_since(g),
            vec![Disconnect::Username("a".into())]
        );
        assert!(d.disconnects_since(d.generation()).is_empty());
        let acct = Account {
            tenant_id: "ten_1".into(),
            credential_id: Some("cred_1".into()),
            user_id: Some("u".into()),
        };
        assert!(Disconnect::Credential("cred_1".into()).matches("x", Some(&acct)));
        assert!(Disconnect::Tenant("ten_1".into()).matches("x", Some(&acct)));
        assert!(!Disconnect::Tenant("ten_2".into()).matches("x", Some(&acct)));
        assert!(Disconnect::User {
            tenant_id: "ten_1".into(),
            user_id: "u".into()
        }
        .matches("x", Some(&acct)));
        assert!(!Disconnect::Credential("cred_1".into()).matches("x", None));
    }

    #[test]
    fn stricter_limits_win() {
        let mut s = Snapshot::default();
        s.tenant_limits.insert(
            "ten_1".into(),
            Limits {
                max_bitrate_bps: Some(1000),
                ..Default::default()
            },
        );
        s.credential_limits.insert(
            "cred_1".into(),
            Limits {
                max_bitrate_bps: Some(500),
                refuse: true,
                ..Default::default()
            },
        );
        let a = Account {
            tenant_id: "ten_1".into(),
            credential_id: Some("cred_1".into()),
            user_id: None,
        };
        let l = s.limits_for(&a);
        assert_eq!(l.max_bitrate_bps, Some(500));
        assert!(l.refuse);
    }
}
