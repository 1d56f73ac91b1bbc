//! The quota actions in force, as the meter derives them from usage and the directory sync
//! publishes them to the relay.

use std::collections::{HashMap, HashSet};

use turnpike_store::QuotaScope;

/// What quota actions currently apply, by scope key (`t:<tenant>` or `c:<credential>`),
/// recomputed by the meter from usage.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QuotaState {
    pub refused: HashSet<String>,
    pub throttled: HashMap<String, u64>,
}

/// `t:<tenant>` or `c:<credential>`, as the relay's directory keys limits.
pub fn scope_key(tenant_id: &str, scope: &QuotaScope) -> String {
    match scope {
        QuotaScope::Tenant => format!("t:{tenant_id}"),
        QuotaScope::Credential(id) => format!("c:{id}"),
    }
}
