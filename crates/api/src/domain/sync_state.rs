//! The directory sync's own state: its place in the change feed and what it last published.

use std::collections::HashMap;

use turnpike_store::Quota;

use super::feed::FeedCursor;
use super::quota_state::QuotaState;

/// The sync's own state, under `AppState::sync_lock`.
#[derive(Debug, Default)]
pub struct SyncState {
    /// Where this node is in the change feed; `None`: load everything first.
    pub(super) cursor: Option<FeedCursor>,
    /// Every tenant's quota rows (limits are derived from all of them and the meter's state).
    pub(super) quotas: HashMap<String, Vec<Quota>>,
    /// The meter's quota state the published limits were derived from.
    pub(super) applied: QuotaState,
    pub(super) last_housekeeping: i64,
}
