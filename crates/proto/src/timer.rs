//! One deadline queue for the whole server instead of a timer per object.
//!
//! Entries are never removed when an object is refreshed or deleted: when an entry comes due, the
//! owner checks whether the object it names still expires at that time (lazy deletion). A refresh
//! pushes a new entry; stale ones are skipped when popped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// A min-heap of `(deadline, key)`.
#[derive(Debug)]
pub struct DeadlineQueue<K: Ord> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Ord> Default for DeadlineQueue<K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Ord> DeadlineQueue<K> {
    pub fn push(&mut self, at: Instant, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Pops one entry due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        if self.next_deadline()? <= now {
            self.heap.pop().map(|Reverse(e)| e)
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests drive the clock from a real starting instant
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn order() {
        let t = Instant::now();
        let mut q = DeadlineQueue::default();
        q.push(t + Duration::from_secs(3), 3);
        q.push(t + Duration::from_secs(1), 1);
        q.push(t + Duration::from_secs(2), 2);
        assert_eq!(q.next_deadline(), Some(t + Duration::from_secs(1)));
        assert!(q.pop_due(t).is_none());
        assert_eq!(q.pop_due(t + Duration::from_secs(2)).unwrap().1, 1);
        assert_eq!(q.pop_due(t + Duration::from_secs(2)).unwrap().1, 2);
        assert!(q.pop_due(t + Duration::from_secs(2)).is_none());
    }
}
