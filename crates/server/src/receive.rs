//! The receive loops of a worker's UDP sockets: its listeners (batched recvmmsg through
//! `quinn-udp`, GRO segments split by stride, DTLS told apart by first byte) and its relay
//! sockets (all in one readiness set, see `relay_poll.rs`).
//!
//! Batch bounds: a listener reads up to [`BATCH`] datagrams per `recvmmsg` and at most
//! [`BATCHES_PER_WAKE`] batches before yielding; a pass over the relay sockets reads up to 64
//! ready sockets, 16 datagrams each (`Worker::relays_ready`), and at most
//! [`RELAY_PASSES_PER_WAKE`] passes run before yielding. Under the benchmark's saturating load (BENCHMARKS.md)
//! a `recvmmsg` returned about 13 datagrams on average, so a wake-up rarely reaches the bound;
//! the bound exists so one flooded socket cannot starve the worker's other sockets and timers
//! (a yield follows a full budget).

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use quinn_udp::RecvMeta;
use tokio::io::Interest;
use turnpike_proto::{FiveTuple, Transport};

use crate::worker::Worker;

/// Datagrams read per recvmmsg call.
const BATCH: usize = 32;
/// recvmmsg calls per wake-up before yielding to the worker's other tasks.
const BATCHES_PER_WAKE: usize = 16;
/// Each receive buffer holds one maximal datagram (or a GRO train of them).
const BUF_LEN: usize = 65_536;

/// Receives on listener `idx` of worker `w` until the runtime stops.
pub(crate) async fn listener_task(w: Rc<Worker>, idx: usize) {
    let l = &w.udp[idx];
    let mut storage = vec![0u8; BATCH * BUF_LEN];
    let mut iovs: Vec<IoSliceMut<'_>> = storage.chunks_mut(BUF_LEN).map(IoSliceMut::new).collect();
    let mut meta = vec![RecvMeta::default(); BATCH];
    loop {
        if l.sock.readable().await.is_err() {
            return;
        }
        // Drain what is queued, a bounded number of batches per wake-up for fairness.
        let mut drained = false;
        for _ in 0..BATCHES_PER_WAKE {
            let r = l.sock.try_io(Interest::READABLE, || {
                l.state.recv((&l.sock).into(), &mut iovs, &mut meta)
            });
            let n = match r {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive error");
                    continue;
                }
            };
            let now = Instant::now();
            for (m, buf) in meta.iter().zip(iovs.iter()).take(n) {
                let server = SocketAddr::new(m.dst_ip.unwrap_or(l.bound.ip()), l.bound.port());
                let ft = FiveTuple {
                    client: m.addr,
                    server,
                    transport: Transport::Udp,
                };
                if l.dtls && crate::dtls::is_dtls(&buf[..m.len]) {
                    let ft = FiveTuple {
                        transport: Transport::Dtls,
                        ..ft
                    };
                    w.on_dtls_datagram(now, ft, &buf[..m.len]);
                    continue;
                }
                if m.len == 0 {
                    // An empty datagram: still counted (as malformed) by the state machine.
                    w.on_client_packet(now, ft, &[]);
                    continue;
                }
                let stride = m.stride.max(1);
                for seg in buf[..m.len].chunks(stride) {
                    w.on_client_packet(now, ft, seg);
                }
            }
        }
        if !drained {
            tokio::task::yield_now().await;
        }
    }
}

/// Relay passes per wake-up before yielding to the worker's other tasks.
const RELAY_PASSES_PER_WAKE: usize = 8;

/// Receives peer datagrams on all of the worker's relay sockets until the runtime stops: waits
/// for the readiness set, then passes over the ready sockets until they are empty (a bounded
/// number of passes per wake-up).
pub(crate) async fn relay_poll_task(w: Rc<Worker>) {
    loop {
        let Ok(mut guard) = w.relay_poll.readable().await else {
            return;
        };
        let mut passes = 0;
        loop {
            if w.relays_ready() {
                guard.clear_ready();
                break;
            }
            passes += 1;
            if passes == RELAY_PASSES_PER_WAKE {
                drop(guard);
                tokio::task::yield_now().await;
                break;
            }
        }
    }
}
