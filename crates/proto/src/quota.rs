//! Allocation quotas shared by all workers: total and per user (486 Allocation Quota Reached).
//!
//! Taken and released only when allocations are created and destroyed, never per packet, so the
//! mutex here is off the packet path. What an allocation takes is a [`QuotaLease`], given back
//! when the lease is dropped (with the allocation), so no path can forget to release it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Counts live allocations. A limit of 0 means unlimited.
#[derive(Debug)]
pub struct AllocationQuota {
    pub max_total: usize,
    pub max_per_user: usize,
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_user: HashMap<String, usize>,
    /// Per tenant / credential scope (see `Directory::scopes`).
    per_scope: HashMap<String, usize>,
}

impl AllocationQuota {
    pub fn new(max_total: usize, max_per_user: usize) -> Self {
        Self {
            max_total,
            max_per_user,
            inner: Mutex::new(Counts::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // A poisoned lock only means another worker panicked mid-update of plain counters; the
        // counts are still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one allocation for `user`; false when a limit is reached.
    pub fn try_acquire(&self, user: &str) -> bool {
        let mut c = self.lock();
        if self.max_total != 0 && c.total >= self.max_total {
            return false;
        }
        let n = c.per_user.get(user).copied().unwrap_or(0);
        if self.max_per_user != 0 && n >= self.max_per_user {
            return false;
        }
        c.total += 1;
        *c.per_user.entry(user.to_string()).or_insert(0) += 1;
        true
    }

    /// Gives back one allocation of `user`.
    pub fn release(&self, user: &str) {
        let mut c = self.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_user.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                c.per_user.remove(user);
            }
        }
    }

    /// Takes one allocation in each of `scopes` unless one is at its limit (then takes none).
    pub fn try_acquire_scopes(&self, scopes: &[(&str, Option<u32>)]) -> bool {
        let mut c = self.lock();
        for (s, max) in scopes {
            let n = c.per_scope.get(*s).copied().unwrap_or(0);
            if max.is_some_and(|m| n >= m as usize) {
                return false;
            }
        }
        for (s, _) in scopes {
            *c.per_scope.entry(s.to_string()).or_insert(0) += 1;
        }
        true
    }

    /// Gives back one allocation in each of `scopes`.
    pub fn release_scopes(&self, scopes: &[&str]) {
        let mut c = self.lock();
        for s in scopes {
            if let Some(n) = c.per_scope.get_mut(*s) {
                *n -= 1;
                if *n == 0 {
                    c.per_scope.remove(*s);
                }
            }
        }
    }

    /// Live allocations in a scope.
    pub fn scope_count(&self, scope: &str) -> usize {
        self.lock().per_scope.get(scope).copied().unwrap_or(0)
    }

    /// Live allocations across all workers.
    pub fn total(&self) -> usize {
        self.lock().total
    }
}

/// Why a lease was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaRefusal {
    /// The node or the user is at its cap.
    Total,
    /// A tenant or credential scope is at its cap.
    Scope,
}

/// One allocation's share of the quotas: the user's count and its scopes' counts, released
/// when dropped.
#[derive(Debug)]
pub struct QuotaLease {
    quota: Arc<AllocationQuota>,
    user: String,
    scopes: Vec<String>,
}

impl AllocationQuota {
    /// Takes one allocation for `user` and in each of `scopes` (`(name, cap)`), all or nothing.
    pub fn lease(
        self: &Arc<Self>,
        user: &str,
        scopes: &[(&str, Option<u32>)],
    ) -> Result<QuotaLease, QuotaRefusal> {
        if !self.try_acquire_scopes(scopes) {
            return Err(QuotaRefusal::Scope);
        }
        let names: Vec<&str> = scopes.iter().map(|(s, _)| *s).collect();
        if !self.try_acquire(user) {
            self.release_scopes(&names);
            return Err(QuotaRefusal::Total);
        }
        Ok(QuotaLease {
            quota: self.clone(),
            user: user.to_string(),
            scopes: names.into_iter().map(String::from).collect(),
        })
    }
}

impl Drop for QuotaLease {
    fn drop(&mut self) {
        self.quota.release(&self.user);
        let scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        self.quota.release_scopes(&scopes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        let q = AllocationQuota::new(3, 2);
        assert!(q.try_acquire("a"));
        assert!(q.try_acquire("a"));
        assert!(!q.try_acquire("a"));
        assert!(q.try_acquire("b"));
        assert!(!q.try_acquire("c"));
        q.release("a");
        assert!(q.try_acquire("c"));
        assert_eq!(q.total(), 3);
    }

    #[test]
    fn leases_give_back_on_drop() {
        let q = Arc::new(AllocationQuota::new(0, 1));
        let l = q.lease("a", &[("t:1", Some(1))]).unwrap();
        assert_eq!(
            q.lease("b", &[("t:1", Some(1))]).unwrap_err(),
            QuotaRefusal::Scope
        );
        assert_eq!(q.lease("a", &[]).unwrap_err(), QuotaRefusal::Total);
        assert_eq!(q.scope_count("t:1"), 1);
        drop(l);
        assert_eq!((q.total(), q.scope_count("t:1")), (0, 0));
        let _again = q.lease("b", &[("t:1", Some(1))]).unwrap();
    }
}
