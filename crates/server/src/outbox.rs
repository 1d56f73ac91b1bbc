//! The outbound queue of one stream connection (TCP/TLS): frames the worker queues (responses,
//! relayed data), written by the connection's own task. The frames are appended to one byte
//! buffer (no allocation per frame), and the writer takes everything queued at once, so a burst
//! of frames costs one write (one TLS record) instead of one per frame.
//!
//! Bounded: at most `cap` frames wait in the queue; beyond that a frame is dropped (the caller
//! counts it), so a slow reader loses frames instead of holding memory. The writer holds at
//! most one taken batch besides, so a connection holds at most twice `cap` frames.

use std::cell::{Cell, RefCell};

use tokio::sync::Notify;

/// A writer's buffer larger than this is released once written out, so a burst does not keep
/// its memory for the connection's life.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Frames queued for one stream connection by the worker, written by the connection's task.
pub(crate) struct Outbox {
    bytes: RefCell<Vec<u8>>,
    frames: Cell<usize>,
    /// Signalled when a frame arrives in an empty queue.
    pub(crate) ready: Notify,
    cap: usize,
}

impl Outbox {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            bytes: RefCell::new(Vec::new()),
            frames: Cell::new(0),
            ready: Notify::new(),
            cap,
        }
    }

    /// Queues a frame; false (dropped) when the queue is full.
    pub(crate) fn push(&self, frame: &[u8]) -> bool {
        let n = self.frames.get();
        if n >= self.cap {
            return false;
        }
        self.bytes.borrow_mut().extend_from_slice(frame);
        self.frames.set(n + 1);
        if n == 0 {
            self.ready.notify_one();
        }
        true
    }

    /// Moves every queued byte into `into` (which must be empty) and empties the queue; false
    /// when nothing was queued. `into`'s own capacity becomes the queue's, so two buffers take
    /// turns and a steady flow allocates nothing.
    pub(crate) fn take(&self, into: &mut Vec<u8>) -> bool {
        debug_assert!(into.is_empty(), "the writer finished its last batch");
        if self.frames.get() == 0 {
            return false;
        }
        std::mem::swap(&mut *self.bytes.borrow_mut(), into);
        self.frames.set(0);
        true
    }
}

/// A connection task's batch being written: the bytes taken from its [`Outbox`] and how far
/// the writes got.
#[derive(Default)]
pub(crate) struct Writing {
    buf: Vec<u8>,
    off: usize,
    /// Hand out one frame at a time (TLS: one record per STUN message or ChannelData frame).
    per_frame: bool,
    /// With `per_frame`: where the frame being written ends.
    frame_end: usize,
}

impl Writing {
    /// Writes whole batches at once (plain TCP), or with `per_frame` one frame at a time: over
    /// TLS each message then has a record of its own, as some clients need (coturn's test
    /// client handles one message per record and stalls on a second one in the same record).
    pub(crate) fn new(per_frame: bool) -> Self {
        Self {
            per_frame,
            ..Self::default()
        }
    }

    /// The bytes to write next (the rest of the batch, or of its current frame); when the
    /// batch is done, takes the next one from `outbox` first.
    pub(crate) fn next<'a>(&'a mut self, outbox: &Outbox) -> &'a [u8] {
        if self.off == self.buf.len() {
            self.buf.clear();
            if self.buf.capacity() > KEEP_CAPACITY {
                self.buf = Vec::new();
            }
            self.off = 0;
            self.frame_end = 0;
            outbox.take(&mut self.buf);
        }
        if !self.per_frame {
            return &self.buf[self.off..];
        }
        if self.off >= self.frame_end {
            // The outbox holds whole frames only, so a frame starts here.
            let rest = self.buf.len() - self.off;
            let len = match turnpike_stun::frame_size(&self.buf[self.off..]) {
                Ok(Some(len)) if len > 0 => len.min(rest),
                _ => rest,
            };
            self.frame_end = self.off + len;
        }
        &self.buf[self.off..self.frame_end]
    }

    /// `n` more bytes were written.
    pub(crate) fn advance(&mut self, n: usize) {
        self.off = (self.off + n).min(self.buf.len());
    }

    /// The unwritten rest of the batch, leaving this empty.
    pub(crate) fn take_rest(&mut self) -> Vec<u8> {
        let rest = self.buf.split_off(self.off);
        self.buf.clear();
        self.off = 0;
        self.frame_end = 0;
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_in_order_in_one_batch_and_the_cap_drops_the_excess() {
        let o = Outbox::new(3);
        let mut w = Writing::default();
        assert!(w.next(&o).is_empty());
        assert!(o.push(b"ab") && o.push(b"cd") && o.push(b"e"));
        assert!(!o.push(b"dropped"), "a full queue drops the frame");
        assert_eq!(w.next(&o), b"abcde");
        // The taken batch no longer counts against the queue.
        assert!(o.push(b"fg"));
        w.advance(2);
        assert_eq!(
            w.next(&o),
            b"cde",
            "a partial write resumes where it stopped"
        );
        w.advance(3);
        assert_eq!(w.next(&o), b"fg", "the next batch once this one is out");
        assert_eq!(w.take_rest(), b"fg".to_vec());
        assert!(w.next(&o).is_empty());
    }

    #[test]
    fn per_frame_mode_hands_out_one_whole_frame_at_a_time() {
        let o = Outbox::new(8);
        let mut w = Writing::new(true);
        // A STUN message (20-byte header, 4-byte body) and a padded ChannelData frame.
        let stun = [
            0x01, 0x01, 0, 4, 0x21, 0x12, 0xA4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 0,
            0, 0,
        ];
        let chan = [0x40, 0x00, 0, 3, 9, 9, 9, 0];
        assert!(o.push(&stun) && o.push(&chan));
        assert_eq!(w.next(&o), &stun[..]);
        w.advance(10);
        assert_eq!(
            w.next(&o),
            &stun[10..],
            "a partial write resumes inside the frame"
        );
        w.advance(14);
        assert_eq!(w.next(&o), &chan[..]);
        w.advance(8);
        assert!(w.next(&o).is_empty());
    }
}
