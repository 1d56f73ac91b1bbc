//! The stored credentials as the relay holds them: one compact entry per credential, found by
//! username (authentication) and by id (changes from the control plane, credential-scoped
//! ephemeral credentials), changed one at a time.
//!
//! Sized for a million entries: an entry holds the two long-term keys, the username, the id
//! (12 bytes for the control plane's `cred_` + 24 hex ids), the tenant as an index into a
//! table of tenant ids, the expiry and the flag; both indexes are hash tables of 4-byte slot
//! numbers. Accounts are built when a lookup needs one, not stored per entry.

use std::collections::BTreeSet;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;
use turnpike_stun::Key;

use super::{Account, StoredUser};

/// One stored credential, as the control plane hands it over.
#[derive(Debug, Clone, Copy)]
pub struct CredentialRecord<'a> {
    pub id: &'a str,
    pub tenant_id: &'a str,
    pub username: &'a str,
    pub key_md5: [u8; 16],
    pub key_sha256: [u8; 32],
    pub enabled: bool,
    /// Unix seconds.
    pub expires_at: Option<u64>,
}

/// A credential id: the control plane's `cred_` + 24 hex digits in 12 bytes, anything else as
/// text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CredId {
    Hex([u8; 12]),
    Text(Box<str>),
}

const ID_PREFIX: &str = "cred_";

impl CredId {
    fn new(id: &str) -> Self {
        Self::parse_hex(id).map_or_else(|| Self::Text(id.into()), Self::Hex)
    }

    fn parse_hex(id: &str) -> Option<[u8; 12]> {
        let hex = id.strip_prefix(ID_PREFIX)?;
        if hex.len() != 24 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut out = [0u8; 12];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(out)
    }

    fn key(&self) -> IdKey<'_> {
        match self {
            Self::Hex(b) => IdKey::Hex(*b),
            Self::Text(t) => IdKey::Text(t),
        }
    }

    fn to_arc(&self) -> Arc<str> {
        match self {
            Self::Hex(b) => {
                let mut s = String::with_capacity(ID_PREFIX.len() + 24);
                s.push_str(ID_PREFIX);
                for x in b {
                    s.push_str(&format!("{x:02x}"));
                }
                s.into()
            }
            Self::Text(t) => Arc::from(&**t),
        }
    }
}

/// An id as the `by_id` index hashes and compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum IdKey<'a> {
    Hex([u8; 12]),
    Text(&'a str),
}

impl<'a> IdKey<'a> {
    fn of(id: &'a str) -> Self {
        CredId::parse_hex(id).map_or(Self::Text(id), Self::Hex)
    }
}

const NONE: u32 = u32::MAX;

#[derive(Debug)]
struct Entry {
    username: Box<str>,
    id: CredId,
    key_md5: [u8; 16],
    key_sha256: [u8; 32],
    /// Unix seconds; 0: never.
    expires_at: u64,
    tenant: u32,
    /// The next entry with the same username (another tenant's), or `NONE`.
    next_same_name: u32,
    enabled: bool,
}

/// The table. Not synchronised: the [`Directory`](super::Directory) holds it behind a lock.
#[derive(Debug, Default)]
pub struct CredentialTable {
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    /// Slot of the first entry with each username.
    by_name: HashTable<u32>,
    by_id: HashTable<u32>,
    tenants: Vec<Arc<str>>,
    tenant_index: HashMap<Arc<str>, u32>,
    /// (expires_at, slot) of the entries that expire.
    expiring: BTreeSet<(u64, u32)>,
    hasher: hashbrown::DefaultHashBuilder,
    len: usize,
}

impl CredentialTable {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn entry(&self, slot: u32) -> &Entry {
        self.slots[slot as usize]
            .as_ref()
            .expect("indexes point at occupied slots only")
    }

    fn entry_mut(&mut self, slot: u32) -> &mut Entry {
        self.slots[slot as usize]
            .as_mut()
            .expect("indexes point at occupied slots only")
    }

    fn hash_name(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    fn slot_by_id(&self, id: &str) -> Option<u32> {
        let key = IdKey::of(id);
        self.by_id
            .find(self.hasher.hash_one(key), |&s| {
                self.entry(s).id.key() == key
            })
            .copied()
    }

    fn head_by_name(&self, name: &str) -> Option<u32> {
        let h = self.hash_name(name);
        self.by_name
            .find(h, |&s| &*self.entry(s).username == name)
            .copied()
    }

    fn tenant(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.tenant_index.get(id) {
            return i;
        }
        let arc: Arc<str> = id.into();
        let i = u32::try_from(self.tenants.len()).expect("fewer than 4 billion tenants");
        self.tenants.push(arc.clone());
        self.tenant_index.insert(arc, i);
        i
    }

    /// Adds a credential or replaces the one with its id.
    pub fn upsert(&mut self, c: &CredentialRecord<'_>) {
        if let Some(slot) = self.slot_by_id(c.id) {
            if &*self.entry(slot).username == c.username {
                let tenant = self.tenant(c.tenant_id);
                let old_exp = self.entry(slot).expires_at;
                let e = self.entry_mut(slot);
                e.key_md5 = c.key_md5;
                e.key_sha256 = c.key_sha256;
                e.enabled = c.enabled;
                e.tenant = tenant;
                e.expires_at = c.expires_at.unwrap_or(0);
                if old_exp != 0 {
                    self.expiring.remove(&(old_exp, slot));
                }
                if let Some(t) = c.expires_at {
                    self.expiring.insert((t, slot));
                }
                return;
            }
            // A new username: re-link under it.
            self.remove(c.id);
        }
        let tenant = self.tenant(c.tenant_id);
        let entry = Entry {
            username: c.username.into(),
            id: CredId::new(c.id),
            key_md5: c.key_md5,
            key_sha256: c.key_sha256,
            expires_at: c.expires_at.unwrap_or(0),
            tenant,
            next_same_name: NONE,
            enabled: c.enabled,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(entry);
                s
            }
            None => {
                self.slots.push(Some(entry));
                u32::try_from(self.slots.len() - 1).expect("fewer than 4 billion credentials")
            }
        };
        self.len += 1;
        if let Some(t) = c.expires_at {
            self.expiring.insert((t, slot));
        }
        let hid = self.hasher.hash_one(IdKey::of(c.id));
        let Self {
            by_id,
            slots,
            hasher,
            ..
        } = self;
        by_id.insert_unique(hid, slot, |&s| {
            hasher.hash_one(slot_entry(slots, s).id.key())
        });
        match self.head_by_name(c.username) {
            Some(head) => {
                // Second and later entries with one name go after the first.
                let next = self.entry(head).next_same_name;
                self.entry_mut(slot).next_same_name = next;
                self.entry_mut(head).next_same_name = slot;
            }
            None => {
                let h = self.hash_name(c.username);
                let Self {
                    by_name,
                    slots,
                    hasher,
                    ..
                } = self;
                by_name.insert_unique(h, slot, |&s| {
                    hasher.hash_one(&*slot_entry(slots, s).username)
                });
            }
        }
    }

    /// Removes the credential with this id; false if there was none.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(slot) = self.slot_by_id(id) else {
            return false;
        };
        let h = self.hasher.hash_one(IdKey::of(id));
        if let Ok(o) = self.by_id.find_entry(h, |&s| s == slot) {
            o.remove();
        }
        let name = self.entry(slot).username.clone();
        let next = self.entry(slot).next_same_name;
        let head = self
            .head_by_name(&name)
            .expect("every entry is reachable from its name's first entry");
        if head == slot {
            let h = self.hash_name(&name);
            let o = self
                .by_name
                .find_entry(h, |&s| s == slot)
                .expect("the first entry is indexed");
            if next == NONE {
                o.remove();
            } else {
                *o.into_mut() = next;
            }
        } else {
            let mut prev = head;
            while self.entry(prev).next_same_name != slot {
                prev = self.entry(prev).next_same_name;
            }
            self.entry_mut(prev).next_same_name = next;
        }
        let exp = self.entry(slot).expires_at;
        if exp != 0 {
            self.expiring.remove(&(exp, slot));
        }
        self.slots[slot as usize] = None;
        self.free.push(slot);
        self.len -= 1;
        true
    }

    /// Every credential with this username (one per tenant that uses the name).
    pub fn lookup(&self, username: &str) -> Vec<StoredUser> {
        let mut out = Vec::new();
        let mut slot = self.head_by_name(username).unwrap_or(NONE);
        while slot != NONE {
            let e = self.entry(slot);
            out.push(StoredUser {
                key_md5: Key::from_slice(&e.key_md5).expect("16 bytes fit a key"),
                key_sha256: Key::from_slice(&e.key_sha256).expect("32 bytes fit a key"),
                enabled: e.enabled,
                expires_at: (e.expires_at != 0).then_some(e.expires_at),
                account: Arc::new(Account {
                    tenant_id: self.tenants[e.tenant as usize].clone(),
                    credential_id: Some(e.id.to_arc()),
                    user_id: None,
                }),
            });
            slot = e.next_same_name;
        }
        out
    }

    /// The tenant of the credential with this id, and whether it is enabled.
    pub fn by_id(&self, id: &str) -> Option<(Arc<str>, bool)> {
        let e = self.entry(self.slot_by_id(id)?);
        Some((self.tenants[e.tenant as usize].clone(), e.enabled))
    }

    /// Drops the credentials that expired before `before` (unix seconds); returns how many.
    pub fn remove_expired(&mut self, before: u64) -> usize {
        let mut n = 0;
        while let Some(&(t, slot)) = self.expiring.first() {
            if t >= before {
                break;
            }
            let id = self.entry(slot).id.to_arc();
            self.remove(&id);
            n += 1;
        }
        n
    }
}

fn slot_entry(slots: &[Option<Entry>], s: u32) -> &Entry {
    slots[s as usize]
        .as_ref()
        .expect("indexes point at occupied slots only")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec<'a>(id: &'a str, tenant: &'a str, user: &'a str) -> CredentialRecord<'a> {
        CredentialRecord {
            id,
            tenant_id: tenant,
            username: user,
            key_md5: [1; 16],
            key_sha256: [2; 32],
            enabled: true,
            expires_at: None,
        }
    }

    const A: &str = "cred_000000000000000000000001";
    const B: &str = "cred_000000000000000000000002";
    const C: &str = "cred_00000000000000000000000c";

    #[test]
    fn upsert_lookup_and_remove_with_shared_usernames() {
        let mut t = CredentialTable::new();
        t.upsert(&rec(A, "ten_a", "alice"));
        t.upsert(&rec(B, "ten_b", "alice"));
        t.upsert(&rec(C, "ten_a", "carol"));
        assert_eq!(t.len(), 3);
        let alices = t.lookup("alice");
        assert_eq!(alices.len(), 2);
        let ids: Vec<_> = alices
            .iter()
            .map(|u| u.account.credential_id.as_deref().unwrap().to_string())
            .collect();
        assert!(ids.contains(&A.to_string()) && ids.contains(&B.to_string()));
        assert_eq!(t.by_id(B), Some(("ten_b".into(), true)));
        // Disable one in place.
        t.upsert(&CredentialRecord {
            enabled: false,
            ..rec(A, "ten_a", "alice")
        });
        assert_eq!(t.by_id(A), Some(("ten_a".into(), false)));
        assert_eq!(t.len(), 3);
        // Remove the first of the two alices, then the other: the name goes.
        assert!(t.remove(A));
        assert_eq!(t.lookup("alice").len(), 1);
        assert!(t.remove(B));
        assert!(t.lookup("alice").is_empty());
        assert!(!t.remove(B));
        assert_eq!(t.len(), 1);
        // A freed slot is reused.
        t.upsert(&rec(A, "ten_a", "dave"));
        assert_eq!(t.slots.len(), 3);
        assert_eq!(t.lookup("dave").len(), 1);
    }

    #[test]
    fn removing_the_middle_of_a_name_chain_keeps_the_rest() {
        let mut t = CredentialTable::new();
        let ids: Vec<String> = (0..5).map(|i| format!("cred_{i:024x}")).collect();
        for (i, id) in ids.iter().enumerate() {
            t.upsert(&rec(id, &format!("ten_{i}"), "bob"));
        }
        assert!(t.remove(&ids[2]));
        assert!(t.remove(&ids[0]));
        let left: Vec<_> = t
            .lookup("bob")
            .iter()
            .map(|u| u.account.tenant_id.to_string())
            .collect();
        assert_eq!(left.len(), 3);
        for i in [1, 3, 4] {
            assert!(left.contains(&format!("ten_{i}")), "{left:?}");
        }
    }

    #[test]
    fn other_id_forms_and_renames_work() {
        let mut t = CredentialTable::new();
        t.upsert(&rec("legacy-id", "ten_a", "erin"));
        t.upsert(&rec("cred_ABC", "ten_a", "frank"));
        assert_eq!(t.by_id("legacy-id"), Some(("ten_a".into(), true)));
        assert_eq!(
            t.lookup("frank")[0].account.credential_id.as_deref(),
            Some("cred_ABC")
        );
        // The same id under a new username.
        t.upsert(&rec("legacy-id", "ten_a", "erin2"));
        assert!(t.lookup("erin").is_empty());
        assert_eq!(t.lookup("erin2").len(), 1);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn expired_credentials_leave_in_expiry_order() {
        let mut t = CredentialTable::new();
        t.upsert(&CredentialRecord {
            expires_at: Some(100),
            ..rec(A, "ten_a", "a")
        });
        t.upsert(&CredentialRecord {
            expires_at: Some(200),
            ..rec(B, "ten_a", "b")
        });
        t.upsert(&rec(C, "ten_a", "c"));
        assert_eq!(t.remove_expired(100), 0);
        assert_eq!(t.remove_expired(150), 1);
        assert!(t.lookup("a").is_empty());
        // A new expiry replaces the old one.
        t.upsert(&CredentialRecord {
            expires_at: Some(1000),
            ..rec(B, "ten_a", "b")
        });
        assert_eq!(t.remove_expired(500), 0);
        assert_eq!(t.remove_expired(2000), 1);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn an_entry_is_compact() {
        assert!(std::mem::size_of::<Option<Entry>>() <= 112);
    }
}
