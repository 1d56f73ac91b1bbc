//! Answers kept for retransmissions (RFC 8489 §6.3.1: a retransmitted request gets the same
//! answer as the original): the last response of each live allocation is kept on the
//! allocation; this cache keeps the last response of a deleted one (a Refresh with lifetime 0,
//! or a failed Allocate) for the client's whole retransmission schedule.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use turnpike_stun::TransactionId;

use crate::five_tuple::FiveTuple;

/// How long a deleted allocation's last response is kept (40 s covers a client's whole
/// retransmission schedule).
const REPLAY_WINDOW: Duration = Duration::from_secs(40);

#[derive(Debug, Default)]
pub(crate) struct ReplayCache {
    deleted: HashMap<FiveTuple, (TransactionId, Vec<u8>, Instant)>,
}

impl ReplayCache {
    pub(crate) fn remember(
        &mut self,
        now: Instant,
        ft: FiveTuple,
        tid: TransactionId,
        response: Vec<u8>,
    ) {
        self.deleted.insert(ft, (tid, response, now));
    }

    /// The response to replay for a retransmission of `tid` on `ft`.
    pub(crate) fn get(&self, ft: &FiveTuple, tid: &TransactionId) -> Option<&[u8]> {
        self.deleted
            .get(ft)
            .filter(|(t, _, _)| t == tid)
            .map(|(_, r, _)| r.as_slice())
    }

    /// Forgets answers past the window.
    pub(crate) fn sweep(&mut self, now: Instant) {
        self.deleted
            .retain(|_, (_, _, at)| now.saturating_duration_since(*at) < REPLAY_WINDOW);
    }
}
