//! The outbound queue of one stream connection (TCP/TLS): frames the worker queues (responses,
//! relayed data), written by the connection's own task. Bounded: a slow reader loses frames
//! instead of holding memory.

use std::cell::RefCell;
use std::collections::VecDeque;

use tokio::sync::Notify;

/// Frames queued for one stream connection by the worker (responses, relayed data), written
/// by the connection's own task. Bounded: a slow reader loses frames instead of holding memory.
pub(crate) struct Outbox {
    frames: RefCell<VecDeque<Vec<u8>>>,
    pub(crate) ready: Notify,
    cap: usize,
}

impl Outbox {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            frames: RefCell::new(VecDeque::new()),
            ready: Notify::new(),
            cap,
        }
    }

    /// Queues a frame; false (dropped) when the queue is full.
    pub(crate) fn push(&self, frame: Vec<u8>) -> bool {
        let mut q = self.frames.borrow_mut();
        if q.len() >= self.cap {
            return false;
        }
        q.push_back(frame);
        self.ready.notify_one();
        true
    }

    pub(crate) fn pop(&self) -> Option<Vec<u8>> {
        let mut q = self.frames.borrow_mut();
        let f = q.pop_front();
        if q.is_empty() && q.capacity() > 16 {
            // A burst is over: do not keep its queue's memory.
            *q = VecDeque::new();
        }
        f
    }
}
