//! A worker thread: its single-threaded tokio runtime, the tasks that drive the [`Worker`]
//! (listener receive loops, TCP accept loops, the timer, DTLS timers, the once-a-second
//! export) and its orderly stop. The top of the driver: it names every task file, and gives
//! the worker the [`Tasks`] table it starts its own tasks with.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use turnpike_proto::{Runtime, Server, ServerConfig};

use crate::peer_streams::PeerStreams;
use crate::relay::Reservations;
use crate::relay_ports::RelayPorts;
use crate::udp::UdpListener;
use crate::worker::{Parts, Tasks, Worker};
use crate::DriverConfig;

/// What a worker thread starts from.
pub(crate) struct WorkerInit {
    pub index: usize,
    pub proto: Arc<ServerConfig>,
    pub rt: Arc<Runtime>,
    pub cfg: Arc<DriverConfig>,
    pub stop: Arc<AtomicBool>,
    pub notify: Arc<Notify>,
    pub reservations: Arc<Reservations>,
    pub relay_ports: Arc<RelayPorts>,
    pub peer_streams: Arc<PeerStreams>,
    pub udp: Vec<std::net::UdpSocket>,
    /// TCP listeners: plain, TLS, or shared (`true`: sniffed per connection).
    pub tcp: Vec<(
        std::net::TcpListener,
        Option<tokio_rustls::TlsAcceptor>,
        Option<crate::listeners::Shared>,
    )>,
    pub dtls: Vec<std::net::UdpSocket>,
}

/// The tasks a worker starts itself.
const TASKS: Tasks = Tasks {
    tcp_relay: |w, l, addr| tokio::task::spawn_local(crate::tcp_relay::accept_peers(w, l, addr)),
    connect_peer: |w, cid, relay, peer| {
        tokio::task::spawn_local(crate::tcp_relay::connect_peer(w, cid, relay, peer));
    },
};

/// Runs a worker until the stop switch flips.
pub(crate) fn run(init: WorkerInit) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot build worker runtime");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        // The state machine counts whole seconds from this pair, so the Instant must stand for
        // the whole second the wall clock gives (else the server's clock lags by up to 1 s and an
        // expired credential is accepted a second too long).
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let unix = wall.as_secs();
        let now = Instant::now();
        let now = now
            .checked_sub(Duration::from_nanos(u64::from(wall.subsec_nanos())))
            .unwrap_or(now);
        let mut udp = Vec::new();
        let plain = init.udp.into_iter().map(|s| (s, false));
        let dtls = init.dtls.into_iter().map(|s| (s, true));
        for (s, is_dtls) in plain.chain(dtls) {
            match UdpListener::new(s, init.cfg.socket_buffer, is_dtls) {
                Ok(l) => udp.push(l),
                Err(e) => tracing::error!(error = %e, "cannot register UDP listener"),
            }
        }
        let relay_poll = match crate::relay_poll::RelayPoll::new() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot create the relay readiness set");
                return;
            }
        };
        let w = Worker::new(Parts {
            server: Server::new(init.proto.clone(), init.rt.clone(), now, unix),
            cfg: init.cfg.clone(),
            udp,
            relay_poll,
            peer_streams: init.peer_streams,
            reservations: init.reservations,
            relay_ports: init.relay_ports,
            tasks: TASKS,
            index: init.index,
        });
        for i in 0..w.udp.len() {
            tokio::task::spawn_local(crate::receive::listener_task(w.clone(), i));
        }
        for (l, tls, shared) in init.tcp {
            match tokio::net::TcpListener::from_std(l) {
                Ok(l) => {
                    tokio::task::spawn_local(crate::accept::accept_task(w.clone(), l, tls, shared));
                }
                Err(e) => tracing::error!(error = %e, "cannot register TCP listener"),
            }
        }
        tokio::task::spawn_local(crate::receive::relay_poll_task(w.clone()));
        tokio::task::spawn_local(timer_task(w.clone()));
        if let Some(ctx) = init.cfg.dtls.clone() {
            tokio::task::spawn_local(dtls_task(w.clone(), ctx.idle_timeout));
        }
        tokio::task::spawn_local(export_task(w.clone()));
        tracing::debug!(worker = init.index, "worker started");
        while !init.stop.load(Ordering::SeqCst) {
            let notified = init.notify.notified();
            if init.stop.load(Ordering::SeqCst) {
                break;
            }
            // Wake at least every second to re-check the switch (a notify can race with start-up).
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
        }
        // Close every allocation so its final usage is reported, then the final export so
        // counters are complete at shutdown.
        w.shut_down(Instant::now());
        tracing::debug!(worker = init.index, "worker stopped");
    });
}

/// Feeds time to the state machine: sleeps until its next deadline (at most a second).
async fn timer_task(w: Rc<Worker>) {
    let mut next = None;
    loop {
        let cap = Instant::now() + Duration::from_secs(1);
        let at = next.map_or(cap, |t: Instant| t.min(cap));
        tokio::time::sleep_until(at.into()).await;
        next = w.timeout(Instant::now());
    }
}

/// Drives DTLS retransmission timers and drops idle or closed associations.
async fn dtls_task(w: Rc<Worker>, idle: Duration) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        w.dtls_tick(Instant::now(), idle);
    }
}

/// Publishes counters and metering events once a second.
async fn export_task(w: Rc<Worker>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        w.export(Instant::now());
    }
}
