//! The tokio driver around `turnpike-proto`: it owns sockets and clocks.
//!
//! What it does: binds the client-facing listeners (UDP, TCP), runs one worker thread per core
//! (each a single-threaded tokio runtime with its own `SO_REUSEPORT` sockets and its own
//! `turnpike_proto::Server`, so no lock sits on the packet path), receives in batches
//! (`recvmmsg`, through `quinn-udp` on listeners), sends relayed datagrams to UDP clients in
//! batches (`sendmmsg`), watches all of a worker's relay sockets with one readiness set,
//! binds relay sockets on request, feeds time to the state machine, and exports its counters
//! to the `metrics` facade once a second.
//!
//! What it does not do: decide anything about STUN/TURN (that is `turnpike-proto`), parse
//! configuration files, or serve HTTP.

mod accept;
mod config;
pub mod conn_limit;
pub mod dtls;
mod export;
mod listeners;
mod mmsg;
pub mod mux;
mod outbox;
mod peer_streams;
mod receive;
mod relay;
mod relay_poll;
mod relay_ports;
mod relay_set;
mod run;
mod sock;
mod tcp;
mod tcp_relay;
pub mod tls;
mod udp;
mod worker;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use config::{defaults, DriverConfig};
pub use export::describe as describe_metrics;
pub use relay::Reservations;
pub use relay_ports::RelayPorts;
use turnpike_proto::{Runtime, ServerConfig};

/// Errors starting the driver.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {transport} {addr}: {source}")]
    Listen {
        transport: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS or DTLS listeners configured without a certificate")]
    NoTlsConfig,
    #[error("cannot start worker thread: {0}")]
    Thread(std::io::Error),
}

/// A running server: worker threads and the switch that stops them.
pub struct RunningServer {
    stop: Arc<AtomicBool>,
    notify: Arc<tokio::sync::Notify>,
    threads: Vec<JoinHandle<()>>,
    /// The addresses actually bound (useful with port 0).
    pub udp_addrs: Vec<SocketAddr>,
    pub tcp_addrs: Vec<SocketAddr>,
    pub tls_addrs: Vec<SocketAddr>,
    pub dtls_addrs: Vec<SocketAddr>,
    pub mux_addrs: Vec<SocketAddr>,
    pub mux_plain_addrs: Vec<SocketAddr>,
}

impl RunningServer {
    /// Stops the workers: listeners close, allocations and relay sockets are released.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Binds every listener and starts the workers.
pub fn start(
    proto: Arc<ServerConfig>,
    rt: Arc<Runtime>,
    cfg: DriverConfig,
) -> Result<RunningServer, StartError> {
    if (!cfg.tls_listen.is_empty() && cfg.tls.is_none())
        || (!cfg.dtls_listen.is_empty() && cfg.dtls.is_none())
    {
        return Err(StartError::NoTlsConfig);
    }
    let cfg = Arc::new(cfg);
    let workers = cfg.workers.max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let notify = Arc::new(tokio::sync::Notify::new());
    let reservations = Arc::new(Reservations::default());
    let relay_ports = Arc::new(RelayPorts::default());
    let peer_streams = Arc::new(peer_streams::PeerStreams::default());
    let tls = cfg.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let mux_tls = cfg.mux_tls.clone().map(tokio_rustls::TlsAcceptor::from);

    // The first worker binds the configured addresses; the others bind the very addresses it
    // got (so port 0 works), sharing them through SO_REUSEPORT.
    let mut table = listeners::table(&cfg);
    let mut per_worker = Vec::with_capacity(workers);
    for w in 0..workers {
        let (bound, addrs) = listeners::bind(&table, &tls, &mux_tls, &cfg)?;
        if w == 0 {
            for (entry, addr) in table.iter_mut().zip(addrs) {
                entry.1 = addr;
            }
        }
        per_worker.push(bound);
    }
    let addrs_of = |kind| {
        table
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, a)| *a)
            .collect()
    };

    let mut threads = Vec::new();
    for (index, bound) in per_worker.into_iter().enumerate() {
        let init = run::WorkerInit {
            index,
            proto: proto.clone(),
            rt: rt.clone(),
            cfg: cfg.clone(),
            stop: stop.clone(),
            notify: notify.clone(),
            reservations: reservations.clone(),
            relay_ports: relay_ports.clone(),
            peer_streams: peer_streams.clone(),
            udp: bound.udp,
            tcp: bound.tcp,
            dtls: bound.dtls,
        };
        let t = std::thread::Builder::new()
            .name(format!("turnpike-worker-{index}"))
            .spawn(move || run::run(init))
            .map_err(StartError::Thread)?;
        threads.push(t);
    }
    Ok(RunningServer {
        stop,
        notify,
        threads,
        udp_addrs: addrs_of(listeners::Kind::Udp),
        tcp_addrs: addrs_of(listeners::Kind::Tcp),
        tls_addrs: addrs_of(listeners::Kind::Tls),
        dtls_addrs: addrs_of(listeners::Kind::Dtls),
        mux_addrs: addrs_of(listeners::Kind::Mux),
        mux_plain_addrs: addrs_of(listeners::Kind::MuxPlain),
    })
}
