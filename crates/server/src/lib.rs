//! The tokio driver around `turnpike-proto`: it owns sockets and clocks.
//!
//! What it does: binds the client-facing listeners (UDP, TCP), runs one worker thread per core
//! (each a single-threaded tokio runtime with its own `SO_REUSEPORT` sockets and its own
//! `turnpike_proto::Server`, so no lock sits on the packet path), receives in batches with
//! `quinn-udp` (recvmmsg), binds relay sockets on request, feeds time to the state machine, and
//! exports its counters to the `metrics` facade once a second.
//!
//! What it does not do: decide anything about STUN/TURN (that is `turnpike-proto`), parse
//! configuration files, or serve HTTP.

mod config;
pub mod conn_limit;
pub mod dtls;
mod export;
pub mod mux;
mod relay;
mod relay_ports;
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

pub use config::DriverConfig;
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
    let cfg = Arc::new(cfg);
    let workers = cfg.workers.max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let notify = Arc::new(tokio::sync::Notify::new());
    let reservations = Arc::new(Reservations::default());
    let relay_ports = Arc::new(RelayPorts::default());
    let peer_streams = Arc::new(tcp_relay::PeerStreams::default());

    // Bind the first worker's sockets on the configured addresses; the others bind the very
    // addresses the first one got (so port 0 works), sharing them through SO_REUSEPORT.
    let mut udp_addrs = Vec::new();
    let mut tcp_addrs = Vec::new();
    let mut tls_addrs = Vec::new();
    let mut per_worker = Vec::new();
    if (!cfg.tls_listen.is_empty() && cfg.tls.is_none())
        || (!cfg.dtls_listen.is_empty() && cfg.dtls.is_none())
    {
        return Err(StartError::NoTlsConfig);
    }
    let mut dtls_addrs = Vec::new();
    let mut mux_addrs = Vec::new();
    let mux_acceptor = cfg.mux_tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let acceptor = cfg.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    for w in 0..workers {
        let mut udp = Vec::new();
        let udp_targets = if w == 0 {
            cfg.udp_listen.clone()
        } else {
            udp_addrs.clone()
        };
        for addr in udp_targets {
            let s = udp::bind(addr).map_err(|source| StartError::Listen {
                transport: "udp",
                addr,
                source,
            })?;
            if w == 0 {
                udp_addrs.push(s.local_addr().map_err(|source| StartError::Listen {
                    transport: "udp",
                    addr,
                    source,
                })?);
            }
            udp.push(s);
        }
        let mut tcp = Vec::new();
        let tcp_targets = if w == 0 {
            cfg.tcp_listen.clone()
        } else {
            tcp_addrs.clone()
        };
        for addr in tcp_targets {
            let s = tcp::bind(addr).map_err(|source| StartError::Listen {
                transport: "tcp",
                addr,
                source,
            })?;
            if w == 0 {
                tcp_addrs.push(s.local_addr().map_err(|source| StartError::Listen {
                    transport: "tcp",
                    addr,
                    source,
                })?);
            }
            tcp.push((s, None, false));
        }
        let tls_targets = if w == 0 {
            cfg.tls_listen.clone()
        } else {
            tls_addrs.clone()
        };
        for addr in tls_targets {
            let s = tcp::bind(addr).map_err(|source| StartError::Listen {
                transport: "tls",
                addr,
                source,
            })?;
            if w == 0 {
                tls_addrs.push(s.local_addr().map_err(|source| StartError::Listen {
                    transport: "tls",
                    addr,
                    source,
                })?);
            }
            tcp.push((s, acceptor.clone(), false));
        }
        let mux_targets = if w == 0 {
            cfg.mux_listen.clone()
        } else {
            mux_addrs.clone()
        };
        for addr in mux_targets {
            let s = tcp::bind(addr).map_err(|source| StartError::Listen {
                transport: "mux",
                addr,
                source,
            })?;
            if w == 0 {
                mux_addrs.push(s.local_addr().map_err(|source| StartError::Listen {
                    transport: "mux",
                    addr,
                    source,
                })?);
            }
            tcp.push((s, mux_acceptor.clone(), true));
        }
        let dtls_targets = if w == 0 {
            cfg.dtls_listen.clone()
        } else {
            dtls_addrs.clone()
        };
        let mut dtls = Vec::new();
        for addr in dtls_targets {
            let s = udp::bind(addr).map_err(|source| StartError::Listen {
                transport: "dtls",
                addr,
                source,
            })?;
            if w == 0 {
                dtls_addrs.push(s.local_addr().map_err(|source| StartError::Listen {
                    transport: "dtls",
                    addr,
                    source,
                })?);
            }
            dtls.push(s);
        }
        per_worker.push((udp, tcp, dtls));
    }

    let mut threads = Vec::new();
    for (index, (udp, tcp, dtls)) in per_worker.into_iter().enumerate() {
        let ctx = worker::WorkerInit {
            index,
            proto: proto.clone(),
            rt: rt.clone(),
            cfg: cfg.clone(),
            stop: stop.clone(),
            notify: notify.clone(),
            reservations: reservations.clone(),
            relay_ports: relay_ports.clone(),
            peer_streams: peer_streams.clone(),
            udp,
            tcp,
            dtls,
        };
        let t = std::thread::Builder::new()
            .name(format!("turnpike-worker-{index}"))
            .spawn(move || worker::run(ctx))
            .map_err(StartError::Thread)?;
        threads.push(t);
    }
    Ok(RunningServer {
        stop,
        notify,
        threads,
        udp_addrs,
        tcp_addrs,
        tls_addrs,
        dtls_addrs,
        mux_addrs,
    })
}
