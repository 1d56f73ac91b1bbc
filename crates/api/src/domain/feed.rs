//! Reading the store's change feed in order, with gaps (sans-IO: time is an argument).
//!
//! The feed's sequence numbers ascend, but on PostgreSQL a transaction that took number 7 may
//! commit after one that took 8: a reader that has seen 8 must still pick up 7 when it appears,
//! and must not wait forever for a number whose transaction rolled back (it never appears). The
//! cursor keeps `applied` (every number up to it is handled or given up) and the numbers seen
//! above it; a hole older than [`GAP_TIMEOUT`] is given up. Each poll reads everything after
//! `applied`, so a late number inside a hole is found; changes seen before are not handed out
//! twice.
//!
//! What it does not do: read the store or apply changes (the directory sync does both).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use turnpike_store::Change;

/// How long a hole in the sequence may wait for its transaction to commit. A write transaction
/// on the directory's tables that runs longer than this could be missed by other nodes until
/// their next full reload.
pub const GAP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a reader is in the feed.
#[derive(Debug, Clone)]
pub struct FeedCursor {
    applied: i64,
    /// Numbers above `applied` already handed out.
    seen: BTreeSet<i64>,
    /// Holes above `applied`: when each was first noticed.
    holes: BTreeMap<i64, Instant>,
}

impl FeedCursor {
    /// A cursor that has handled everything up to `applied` (the feed's latest number, read
    /// before a full load).
    pub fn new(applied: i64) -> Self {
        Self {
            applied,
            seen: BTreeSet::new(),
            holes: BTreeMap::new(),
        }
    }

    /// Read the feed after this number.
    pub fn after(&self) -> i64 {
        self.applied
    }

    /// Takes one read of the feed (everything after [`Self::after`], ascending, possibly cut
    /// at a limit) and returns the changes not handed out before. `complete` says whether the
    /// read reached the end of the feed (fewer rows than the limit): only then are missing
    /// numbers below the highest one holes rather than rows not read yet.
    pub fn accept<'a>(
        &mut self,
        now: Instant,
        changes: &'a [Change],
        complete: bool,
    ) -> Vec<&'a Change> {
        let mut fresh = Vec::new();
        for c in changes {
            if c.seq > self.applied && self.seen.insert(c.seq) {
                self.holes.remove(&c.seq);
                fresh.push(c);
            }
        }
        if complete {
            if let Some(&top) = self.seen.last() {
                for n in self.applied + 1..top {
                    if !self.seen.contains(&n) {
                        self.holes.entry(n).or_insert(now);
                    }
                }
            }
        }
        self.advance(now);
        fresh
    }

    /// Moves `applied` over every number handled or given up.
    fn advance(&mut self, now: Instant) {
        loop {
            let next = self.applied + 1;
            if self.seen.remove(&next) {
                self.applied = next;
            } else if self
                .holes
                .get(&next)
                .is_some_and(|&t| now.saturating_duration_since(t) >= GAP_TIMEOUT)
            {
                self.holes.remove(&next);
                tracing::debug!(
                    seq = next,
                    "change feed hole given up (a rolled-back write)"
                );
                self.applied = next;
            } else {
                break;
            }
        }
    }

    /// Holes waiting for their transaction.
    pub fn holes(&self) -> usize {
        self.holes.len()
    }

    /// Whether the feed no longer holds what this cursor needs (pruned past it): the reader
    /// must reload everything. `oldest` is the lowest number the feed still keeps (0: empty).
    pub fn fell_behind(&self, oldest: i64) -> bool {
        oldest > self.applied + 1
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests drive the clock from a real starting instant
mod tests {
    use turnpike_store::ChangeEntity;

    use super::*;

    fn ch(seq: i64) -> Change {
        Change {
            seq,
            entity: ChangeEntity::Credential,
            key: format!("cred_{seq}"),
        }
    }

    fn seqs(v: &[&Change]) -> Vec<i64> {
        v.iter().map(|c| c.seq).collect()
    }

    #[test]
    fn in_order_changes_are_handed_out_once() {
        let t = Instant::now();
        let mut c = FeedCursor::new(10);
        let read = [ch(11), ch(12), ch(13)];
        assert_eq!(seqs(&c.accept(t, &read, true)), [11, 12, 13]);
        assert_eq!(c.after(), 13);
        // The same rows read again (an overlapping poll): nothing new.
        assert!(c.accept(t, &read, true).is_empty());
        // Rows at or below the start are not handed out.
        assert!(c.accept(t, &[ch(9), ch(10)], true).is_empty());
    }

    #[test]
    fn a_late_commit_inside_a_hole_is_picked_up() {
        let t = Instant::now();
        let mut c = FeedCursor::new(0);
        // 2 is not visible yet (its transaction commits after 3's).
        assert_eq!(seqs(&c.accept(t, &[ch(1), ch(3)], true)), [1, 3]);
        assert_eq!((c.after(), c.holes()), (1, 1));
        // The next poll reads after 1 again: 3 is not handed out twice, 2 is.
        let later = t + Duration::from_millis(500);
        assert_eq!(seqs(&c.accept(later, &[ch(2), ch(3), ch(4)], true)), [2, 4]);
        assert_eq!((c.after(), c.holes()), (4, 0));
    }

    #[test]
    fn a_hole_that_never_fills_is_given_up_after_the_timeout() {
        let t = Instant::now();
        let mut c = FeedCursor::new(0);
        c.accept(t, &[ch(1), ch(3)], true);
        c.accept(t + GAP_TIMEOUT / 2, &[ch(3)], true);
        assert_eq!(c.after(), 1, "still waiting");
        c.accept(t + GAP_TIMEOUT, &[ch(3)], true);
        assert_eq!((c.after(), c.holes()), (3, 0));
    }

    #[test]
    fn a_read_cut_at_its_limit_makes_no_holes() {
        let t = Instant::now();
        let mut c = FeedCursor::new(0);
        // Rows 1..=2 of more: 3 is simply not read yet, whatever the time.
        assert_eq!(seqs(&c.accept(t, &[ch(1), ch(2)], false)), [1, 2]);
        assert_eq!((c.after(), c.holes()), (2, 0));
        // Out-of-order rows in an incomplete read: the missing one is not a hole yet.
        c.accept(t, &[ch(4)], false);
        assert_eq!((c.after(), c.holes()), (2, 0));
        c.accept(t + GAP_TIMEOUT * 2, &[ch(3), ch(4)], true);
        assert_eq!(c.after(), 4);
    }

    #[test]
    fn a_pruned_feed_needs_a_reload() {
        let c = FeedCursor::new(100);
        assert!(!c.fell_behind(0));
        assert!(!c.fell_behind(101));
        assert!(c.fell_behind(150));
    }
}
