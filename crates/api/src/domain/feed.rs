//! Reading the store's change feed in order, with gaps (sans-IO: time is an argument).
//!
//! The feed's sequence numbers ascend, but on PostgreSQL a transaction that took number 7 may
//! commit after one that took 8: a reader that has seen 8 must still pick up 7 when it appears,
//! and must not wait forever for a number whose transaction rolled back (it never appears).
//!
//! The cursor reads forward from the highest number it has read ([`FeedCursor::after`]), page
//! by page: in a page read in order, a number missing below the page's last row is not visible
//! now, a hole, whether the page was cut at its limit or not. Holes are looked up on their own
//! ([`FeedCursor::holes_to_check`]) until their row appears or [`GAP_TIMEOUT`] passes. So a
//! reader never reads the same page twice, however many rows follow a hole. `applied` (every
//! number up to it handled or given up) only tells whether the feed was pruned past the reader.
//!
//! What it does not do: read the store or apply changes (the directory sync does both).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use turnpike_store::Change;

/// How long a hole in the sequence may wait for its transaction to commit. A write transaction
/// on the directory's tables that runs longer than this could be missed by other nodes until
/// their next full reload.
pub const GAP_TIMEOUT: Duration = Duration::from_secs(60);

/// How far before the feed's latest number a full load starts reading it.
pub const START_MARGIN: i64 = 100;

/// Where a reader is in the feed.
#[derive(Debug, Clone)]
pub struct FeedCursor {
    /// Every number up to here is handled or given up.
    applied: i64,
    /// The highest number read; forward reads continue after it.
    read: i64,
    /// Numbers in `applied..=read` handed out.
    seen: BTreeSet<i64>,
    /// Numbers in `applied..read` not visible yet: when each was first noticed.
    holes: BTreeMap<i64, Instant>,
}

impl FeedCursor {
    /// A cursor that has handled everything up to `applied` (read before a full load).
    pub fn new(applied: i64) -> Self {
        Self {
            applied,
            read: applied,
            seen: BTreeSet::new(),
            holes: BTreeMap::new(),
        }
    }

    /// The cursor of a full load, given the feed's latest number (its high-water mark) and its
    /// oldest kept one (0: empty), both read before the load: it starts [`START_MARGIN`] before
    /// the latest, so a write transaction that took its number before the load but commits
    /// after it is still applied (applying a change twice is harmless), and never below what
    /// the feed still keeps or below 0 (numbers that cannot appear would only be holes).
    pub fn starting(latest: i64, oldest: i64) -> Self {
        // An empty feed keeps nothing (oldest 0): only the floor at 0 applies.
        Self::new((latest - START_MARGIN).max(oldest - 1).max(0))
    }

    /// Read the feed forward after this number.
    pub fn after(&self) -> i64 {
        self.read
    }

    /// The lowest holes (at most `limit`), to look up by number.
    pub fn holes_to_check(&self, limit: usize) -> Vec<i64> {
        self.holes.keys().take(limit).copied().collect()
    }

    /// Takes rows read from the feed (a forward page after [`Self::after`], ascending, or the
    /// rows found for [`Self::holes_to_check`]) and returns those not handed out before.
    pub fn accept<'a>(&mut self, now: Instant, changes: &'a [Change]) -> Vec<&'a Change> {
        let mut fresh = Vec::new();
        for c in changes {
            if c.seq <= self.applied || !self.seen.insert(c.seq) {
                continue;
            }
            self.holes.remove(&c.seq);
            if c.seq > self.read {
                for n in self.read + 1..c.seq {
                    self.holes.entry(n).or_insert(now);
                }
                self.read = c.seq;
            }
            fresh.push(c);
        }
        self.advance(now);
        fresh
    }

    /// Gives up holes older than [`GAP_TIMEOUT`] and moves `applied` over every number handled
    /// or given up.
    pub fn advance(&mut self, now: Instant) {
        self.holes.retain(|&n, &mut since| {
            let waiting = now.saturating_duration_since(since) < GAP_TIMEOUT;
            if !waiting {
                tracing::debug!(seq = n, "change feed hole given up (a rolled-back write)");
            }
            waiting
        });
        let lowest_hole = self.holes.keys().next().copied().unwrap_or(i64::MAX);
        let below = lowest_hole.min(self.read + 1);
        // Everything under the lowest hole (and up to `read`) is handled.
        self.seen = self.seen.split_off(&below);
        self.applied = below - 1;
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
        assert_eq!(seqs(&c.accept(t, &read)), [11, 12, 13]);
        assert_eq!((c.after(), c.applied, c.holes()), (13, 13, 0));
        // The same rows read again (an overlapping poll): nothing new.
        assert!(c.accept(t, &read).is_empty());
        // Rows at or below the start are not handed out.
        assert!(c.accept(t, &[ch(9), ch(10)]).is_empty());
    }

    #[test]
    fn a_late_commit_inside_a_hole_is_picked_up() {
        let t = Instant::now();
        let mut c = FeedCursor::new(0);
        // 2 is not visible yet (its transaction commits after 3's).
        assert_eq!(seqs(&c.accept(t, &[ch(1), ch(3)])), [1, 3]);
        assert_eq!(
            (c.after(), c.applied, c.holes_to_check(10)),
            (3, 1, vec![2])
        );
        // The next forward read continues after 3; the hole is looked up on its own.
        let later = t + Duration::from_millis(500);
        assert_eq!(seqs(&c.accept(later, &[ch(4)])), [4]);
        assert_eq!(seqs(&c.accept(later, &[ch(2)])), [2]);
        assert_eq!((c.after(), c.applied, c.holes()), (4, 4, 0));
    }

    #[test]
    fn a_hole_that_never_fills_is_given_up_after_the_timeout() {
        let t = Instant::now();
        let mut c = FeedCursor::new(0);
        c.accept(t, &[ch(1), ch(3)]);
        c.advance(t + GAP_TIMEOUT / 2);
        assert_eq!((c.applied, c.holes()), (1, 1), "still waiting");
        c.advance(t + GAP_TIMEOUT);
        assert_eq!((c.applied, c.holes()), (3, 0));
    }

    #[test]
    fn pages_after_a_hole_move_forward() {
        // The defect this cursor fixes: with a hole below a read cut at its limit, the old
        // cursor read the same page again after the hole, forever (a spinning sync holding
        // its lock, every API write waiting on it). Here: 1,000-row pages after a hole at 1.
        let t = Instant::now();
        let mut c = FeedCursor::new(0);
        let page1: Vec<Change> = (2..=1001).map(ch).collect();
        let page2: Vec<Change> = (1002..=2001).map(ch).collect();
        assert_eq!(c.accept(t, &page1).len(), 1000);
        assert_eq!(c.after(), 1001, "the next read starts after the page");
        assert_eq!(c.accept(t, &page2).len(), 1000);
        assert_eq!((c.after(), c.holes_to_check(10)), (2001, vec![1]));
        // The hole's row commits: handed out, and everything is applied.
        assert_eq!(seqs(&c.accept(t, &[ch(1)])), [1]);
        assert_eq!((c.applied, c.holes(), c.seen.len()), (2001, 0, 0));
    }

    #[test]
    fn a_full_load_starts_a_margin_back_within_the_feed() {
        assert_eq!(FeedCursor::starting(5_000, 1).after(), 5_000 - START_MARGIN);
        // Not before what the feed keeps...
        assert_eq!(FeedCursor::starting(5_000, 4_990).after(), 4_989);
        // ...nor below 0 on a young feed: those numbers never appear, they would only be
        // looked up as holes for a minute.
        for oldest in [0, 1] {
            let mut c = FeedCursor::starting(50, oldest);
            assert_eq!(c.after(), 0);
            c.accept(Instant::now(), &[ch(1)]);
            assert_eq!(c.holes(), 0);
        }
    }

    #[test]
    fn a_pruned_feed_needs_a_reload() {
        let c = FeedCursor::new(100);
        assert!(!c.fell_behind(0));
        assert!(!c.fell_behind(101));
        assert!(c.fell_behind(150));
    }
}
