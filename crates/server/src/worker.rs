//! One worker: a thread with a single-threaded tokio runtime, its own listener sockets (shared
//! with the other workers' through `SO_REUSEPORT`), its own relay sockets and its own
//! `turnpike_proto::Server`. Tasks on the worker share state through `Rc<RefCell<..>>`, which is
//! sound because they all run on this one thread; nothing on the packet path takes a lock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use turnpike_proto::{
    ConnectionId, Dest, Direction, DropReason, FiveTuple, Output, RelayError, RelayRequest,
    RelayResult, RelayTransport, Server, ServerConfig, Stats, Transmit, Transport, PEER_HEADROOM,
    PEER_TAILROOM,
};

use crate::relay::{bind_relay, relay_task, LeasedSocket, Reservations};
use crate::relay_ports::{PortLease, RelayPorts};
use crate::udp::UdpListener;
use crate::DriverConfig;

/// What a worker thread starts from.
pub(crate) struct WorkerInit {
    pub index: usize,
    pub proto: Arc<ServerConfig>,
    pub rt: Arc<turnpike_proto::Runtime>,
    pub cfg: Arc<DriverConfig>,
    pub stop: Arc<AtomicBool>,
    pub notify: Arc<Notify>,
    pub reservations: Arc<Reservations>,
    pub relay_ports: Arc<RelayPorts>,
    pub peer_streams: Arc<crate::tcp_relay::PeerStreams>,
    pub udp: Vec<std::net::UdpSocket>,
    /// TCP listeners: plain, TLS, or shared (`true`: sniffed per connection).
    pub tcp: Vec<(
        std::net::TcpListener,
        Option<tokio_rustls::TlsAcceptor>,
        bool,
    )>,
    pub dtls: Vec<std::net::UdpSocket>,
}

struct RelayEntry {
    sock: Rc<tokio::net::UdpSocket>,
    task: JoinHandle<()>,
    /// Holds the address reserved until the entry goes.
    _lease: PortLease,
}

/// A relayed TCP listener: its accept task and its address reservation.
struct TcpRelayEntry {
    task: JoinHandle<()>,
    _lease: PortLease,
}

/// An RFC 6062 data connection bound to its peer connection, waiting for the bind's success
/// response to be written before bytes flow both ways.
pub(crate) struct Splice {
    pub connection: ConnectionId,
    pub peer: tokio::net::TcpStream,
    /// Whose usage the copied bytes count in (none for static users).
    pub account: Option<std::sync::Arc<turnpike_proto::Account>>,
    /// The serial of the allocation the connection belongs to.
    pub allocation: u64,
}

/// The state shared by a worker's tasks.
pub(crate) struct Worker {
    pub server: RefCell<Server>,
    pub cfg: Arc<DriverConfig>,
    pub udp: Vec<UdpListener>,
    relays: RefCell<HashMap<SocketAddr, RelayEntry>>,
    pub tcp_conns: RefCell<HashMap<FiveTuple, Rc<crate::tcp::Outbox>>>,
    /// Receive buffer for relay sockets (one at a time runs on this thread).
    pub relay_buf: RefCell<Vec<u8>>,
    reservations: Arc<Reservations>,
    /// Relay addresses reserved process-wide.
    relay_ports: Arc<RelayPorts>,
    /// RFC 6062 peer connections, shared by all workers.
    pub peer_streams: Arc<crate::tcp_relay::PeerStreams>,
    /// Relayed TCP listeners of TCP allocations.
    tcp_relays: RefCell<HashMap<SocketAddr, TcpRelayEntry>>,
    /// DTLS associations of this worker's DTLS listeners.
    dtls_sessions: RefCell<crate::dtls::Sessions>,
    /// Peer connections ready to be spliced with the data connection on this 5-tuple.
    pub splices: RefCell<HashMap<FiveTuple, Splice>>,
    me: RefCell<std::rc::Weak<Self>>,
    /// The counters as last exported.
    exported: RefCell<Stats>,
    /// This worker's number (for metering ids).
    index: usize,
}

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
            .checked_sub(Duration::from_nanos(wall.subsec_nanos() as u64))
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
        let w = Rc::new(Worker {
            server: RefCell::new(Server::new(init.proto.clone(), init.rt.clone(), now, unix)),
            cfg: init.cfg.clone(),
            udp,
            relays: RefCell::new(HashMap::new()),
            tcp_conns: RefCell::new(HashMap::new()),
            relay_buf: RefCell::new(vec![0u8; PEER_HEADROOM + 65_536 + PEER_TAILROOM]),
            reservations: init.reservations,
            relay_ports: init.relay_ports,
            peer_streams: init.peer_streams,
            tcp_relays: RefCell::new(HashMap::new()),
            splices: RefCell::new(HashMap::new()),
            dtls_sessions: RefCell::new(crate::dtls::Sessions::default()),
            me: RefCell::new(std::rc::Weak::new()),
            exported: RefCell::new(Stats::default()),
            index: init.index,
        });
        *w.me.borrow_mut() = Rc::downgrade(&w);
        for i in 0..w.udp.len() {
            tokio::task::spawn_local(crate::udp::listener_task(w.clone(), i));
        }
        for (l, tls, mux) in init.tcp {
            match tokio::net::TcpListener::from_std(l) {
                Ok(l) => {
                    tokio::task::spawn_local(crate::tcp::accept_task(w.clone(), l, tls, mux));
                }
                Err(e) => tracing::error!(error = %e, "cannot register TCP listener"),
            }
        }
        tokio::task::spawn_local(timer_task(w.clone()));
        if let Some(ctx) = init.cfg.dtls.clone() {
            tokio::task::spawn_local(dtls_task(w.clone(), ctx));
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
        {
            let now = Instant::now();
            let mut srv = w.server.borrow_mut();
            srv.close_all(now);
            w.report_accounting(now, &mut srv);
        }
        let stats = w.server.borrow().stats.clone();
        let mut last = w.exported.take();
        crate::export::publish(&mut last, &stats);
        w.relays.borrow_mut().clear();
        w.tcp_conns.borrow_mut().clear();
        for (_, t) in w.tcp_relays.borrow_mut().drain() {
            t.task.abort();
        }
        tracing::debug!(worker = init.index, "worker stopped");
    });
}

impl Worker {
    /// Hands the state machine's metering events to the sink, if metering is on.
    fn report_accounting(&self, now: Instant, srv: &mut Server) {
        let events = srv.poll_accounting(now);
        if let (Some(sink), false) = (&self.cfg.accounting, events.is_empty()) {
            sink(self.index, events);
        }
    }

    fn rc(&self) -> Rc<Self> {
        self.me
            .borrow()
            .upgrade()
            .expect("the worker outlives its tasks: they hold an Rc to it")
    }

    /// Whether `ip` is on the client deny list (configured or set through the API); counted.
    pub(crate) fn client_denied(&self, ip: IpAddr) -> bool {
        let mut srv = self.server.borrow_mut();
        let dir = &srv.runtime().directory;
        if dir.has_denied_clients() && dir.is_client_denied(ip) {
            srv.stats.drop(DropReason::Denied);
            return true;
        }
        false
    }

    /// A packet from a client (UDP datagram or one TCP frame).
    pub(crate) fn on_client_packet(&self, now: Instant, ft: FiveTuple, data: &[u8]) {
        let mut srv = self.server.borrow_mut();
        let failed = match srv.handle_client_packet(now, ft, data) {
            Some(t) => {
                let (dest, len) = (t.dest, t.data.len());
                (!self.transmit(t)).then_some((dest, len))
            }
            None => None,
        };
        if let Some((dest, len)) = failed {
            srv.stats.drop(DropReason::SendFailed);
            if let Dest::Peer { relay, .. } = dest {
                srv.handle_relay_send_failed(relay, Direction::ServerToPeer, len);
            }
        }
        self.drain_outputs(now, &mut srv);
    }

    /// A datagram from a peer on a relay socket.
    pub(crate) fn on_peer_packet(
        &self,
        now: Instant,
        relay: SocketAddr,
        peer: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) {
        let mut srv = self.server.borrow_mut();
        let failed = match srv.handle_peer_packet(now, relay, peer, buf, len) {
            Some(t) => {
                let n = t.data.len();
                (!self.transmit(t)).then_some(n)
            }
            None => None,
        };
        if let Some(n) = failed {
            srv.stats.drop(DropReason::SendFailed);
            srv.handle_relay_send_failed(relay, Direction::ServerToClient, n);
        }
    }

    /// A TCP connection ended.
    pub(crate) fn connection_closed(&self, now: Instant, ft: FiveTuple) {
        let mut srv = self.server.borrow_mut();
        srv.handle_connection_closed(now, ft);
        self.drain_outputs(now, &mut srv);
    }

    /// Sends one transmit; false if the socket refused it.
    fn transmit(&self, t: Transmit<'_>) -> bool {
        match t.dest {
            Dest::Peer { relay, peer } => match self.relays.borrow().get(&relay) {
                Some(r) => crate::udp::send_now(&r.sock, t.data, peer).is_ok(),
                None => false,
            },
            Dest::Client(ft) => self.send_to_client(&ft, t.data),
        }
    }

    fn send_to_client(&self, ft: &FiveTuple, data: &[u8]) -> bool {
        match ft.transport {
            Transport::Udp => self.send_raw_udp(ft, data),
            Transport::Tcp | Transport::Tls => match self.tcp_conns.borrow().get(ft) {
                Some(outbox) => outbox.push(data.to_vec()),
                None => false,
            },
            Transport::Dtls => {
                let records = self.dtls_sessions.borrow_mut().send(ft, data);
                match records {
                    Some(rs) => rs.iter().all(|r| self.send_raw_udp(ft, r)),
                    None => false,
                }
            }
        }
    }

    /// Sends a datagram to a UDP (or DTLS) client from the listener it used.
    fn send_raw_udp(&self, ft: &FiveTuple, data: &[u8]) -> bool {
        match self.udp.iter().find(|l| l.serves(&ft.server)) {
            Some(l) => l.send(&ft.server, ft.client, data).is_ok(),
            None => false,
        }
    }

    /// A DTLS record from a client: handshake progress, or decrypted STUN/ChannelData.
    pub(crate) fn on_dtls_datagram(&self, now: Instant, ft: FiveTuple, data: &[u8]) {
        let Some(ctx) = self.cfg.dtls.as_ref() else {
            return;
        };
        let pumped = self.dtls_sessions.borrow_mut().receive(ctx, now, ft, data);
        let Some(p) = pumped else {
            self.server.borrow_mut().stats.drop(DropReason::Malformed);
            return;
        };
        for r in &p.packets {
            self.send_raw_udp(&ft, r);
        }
        for d in &p.app_data {
            self.on_client_packet(now, ft, d);
        }
    }

    /// Carries out queued outputs.
    fn drain_outputs(&self, now: Instant, srv: &mut Server) {
        while let Some(o) = srv.poll_output() {
            match o {
                Output::Transmit { to, data } => {
                    if !self.send_to_client(&to, &data) {
                        srv.stats.drop(DropReason::SendFailed);
                    }
                }
                Output::CreateRelay(req) => {
                    let res = self.create_relay(now, &req);
                    srv.handle_relay_created(now, req.allocation, req.generation, res);
                }
                Output::ReleaseRelay(addr) => {
                    if let Some(r) = self.relays.borrow_mut().remove(&addr) {
                        r.task.abort();
                    }
                    if let Some(t) = self.tcp_relays.borrow_mut().remove(&addr) {
                        t.task.abort();
                    }
                }
                Output::ConnectPeer {
                    connection,
                    relay,
                    peer,
                } => {
                    tokio::task::spawn_local(crate::tcp_relay::connect_peer(
                        self.rc(),
                        connection,
                        relay,
                        peer,
                    ));
                }
                Output::SpliceData {
                    connection,
                    data,
                    account,
                    allocation,
                } => {
                    let stream = self
                        .peer_streams
                        .take_waiting(connection)
                        .and_then(|s| tokio::net::TcpStream::from_std(s).ok());
                    match stream {
                        Some(peer) => {
                            self.splices.borrow_mut().insert(
                                data,
                                Splice {
                                    connection,
                                    peer,
                                    account,
                                    allocation,
                                },
                            );
                        }
                        None => srv.handle_peer_connection_closed(now, connection),
                    }
                }
                Output::ClosePeerConnection(cid) => self.peer_streams.close(cid),
            }
        }
    }

    /// The IP a relay of the given family binds to for a client that reached us on `server`.
    fn relay_ip(&self, ipv6: bool, server: &SocketAddr) -> Option<IpAddr> {
        let configured = if ipv6 {
            self.cfg.relay_ipv6
        } else {
            self.cfg.relay_ipv4
        };
        configured
            .or_else(|| {
                let ip = server.ip().to_canonical();
                (ip.is_ipv6() == ipv6 && !ip.is_unspecified()).then_some(ip)
            })
            .or_else(|| {
                let reached = server.ip().to_canonical();
                (reached.is_ipv6() != ipv6)
                    .then(|| self.cfg.listener_ip(ipv6))
                    .flatten()
            })
    }

    /// A peer connected to a relayed TCP address.
    pub(crate) fn incoming_peer(
        &self,
        now: Instant,
        relay: SocketAddr,
        peer: SocketAddr,
        stream: tokio::net::TcpStream,
    ) {
        let mut srv = self.server.borrow_mut();
        if let Some(cid) = srv.handle_incoming_peer_connection(now, relay, peer) {
            let _ = stream.set_nodelay(true);
            self.peer_streams.put_waiting(cid, stream);
        }
        self.drain_outputs(now, &mut srv);
    }

    /// An outbound peer connection finished connecting (or failed).
    pub(crate) fn peer_connect_result(&self, now: Instant, cid: ConnectionId, ok: bool) {
        let mut srv = self.server.borrow_mut();
        srv.handle_peer_connect_result(now, cid, ok);
        self.drain_outputs(now, &mut srv);
    }

    /// A spliced peer connection ended.
    pub(crate) fn peer_connection_closed(&self, now: Instant, cid: ConnectionId) {
        self.peer_streams.forget(cid);
        let mut srv = self.server.borrow_mut();
        srv.handle_peer_connection_closed(now, cid);
        self.drain_outputs(now, &mut srv);
    }

    fn create_tcp_relay(&self, ipv6: bool, req: &RelayRequest) -> Result<SocketAddr, RelayError> {
        let ip = self
            .relay_ip(ipv6, &req.five_tuple.server)
            .ok_or(RelayError::FamilyUnsupported)?;
        let (lease, l) = crate::tcp_relay::bind_listener(
            &self.relay_ports,
            ip,
            self.cfg.relay_port_min,
            self.cfg.relay_port_max,
        )
        .ok_or(RelayError::Exhausted)?;
        let addr = SocketAddr::new(ip, lease.port());
        let l = tokio::net::TcpListener::from_std(l).map_err(|_| RelayError::Exhausted)?;
        let task = tokio::task::spawn_local(crate::tcp_relay::accept_peers(self.rc(), l, addr));
        self.tcp_relays.borrow_mut().insert(
            addr,
            TcpRelayEntry {
                task,
                _lease: lease,
            },
        );
        Ok(addr)
    }

    fn create_relay(&self, now: Instant, req: &RelayRequest) -> RelayResult {
        if req.transport == RelayTransport::Tcp {
            return RelayResult {
                ipv4: req.families.ipv4.then(|| self.create_tcp_relay(false, req)),
                ipv6: req.families.ipv6.then(|| self.create_tcp_relay(true, req)),
                reservation_token: None,
            };
        }
        let mut token = None;
        // EVEN-PORT and RESERVATION-TOKEN apply to the primary family (IPv4 unless only IPv6
        // was requested); an additional IPv6 relay gets any free port.
        let primary_v6 = !req.families.ipv4;
        let one = |ipv6: bool, token: &mut Option<u64>| -> Result<SocketAddr, RelayError> {
            let primary = ipv6 == primary_v6;
            let sock = match req.reservation_token {
                Some(t) if primary => self.reservations.take(t, now).ok_or(RelayError::BadToken)?,
                _ => {
                    let ip = self
                        .relay_ip(ipv6, &req.five_tuple.server)
                        .ok_or(RelayError::FamilyUnsupported)?;
                    let even = req.even_port.is_some() && primary;
                    let reserve = req.even_port == Some(true) && primary;
                    let (s, next) = bind_relay(
                        &self.relay_ports,
                        ip,
                        self.cfg.relay_port_min,
                        self.cfg.relay_port_max,
                        even,
                        reserve,
                        req.dont_fragment,
                        self.cfg.socket_buffer,
                    )?;
                    if let Some(n) = next {
                        *token = Some(self.reservations.put(n, now));
                    }
                    s
                }
            };
            self.register_relay(sock).map_err(|_| RelayError::Exhausted)
        };
        let ipv4 = req.families.ipv4.then(|| one(false, &mut token));
        let ipv6 = req.families.ipv6.then(|| one(true, &mut token));
        RelayResult {
            ipv4,
            ipv6,
            reservation_token: token,
        }
    }

    fn register_relay(&self, (sock, lease): LeasedSocket) -> std::io::Result<SocketAddr> {
        let addr = sock.local_addr()?;
        let sock = Rc::new(tokio::net::UdpSocket::from_std(sock)?);
        let task = tokio::task::spawn_local(relay_task(self.rc(), sock.clone(), addr));
        self.relays.borrow_mut().insert(
            addr,
            RelayEntry {
                sock,
                task,
                _lease: lease,
            },
        );
        Ok(addr)
    }
}

/// Feeds time to the state machine: sleeps until its next deadline (at most a second).
async fn timer_task(w: Rc<Worker>) {
    loop {
        let cap = Instant::now() + Duration::from_secs(1);
        let next = w.server.borrow().poll_timeout().map_or(cap, |t| t.min(cap));
        tokio::time::sleep_until(next.into()).await;
        let now = Instant::now();
        let mut srv = w.server.borrow_mut();
        srv.handle_timeout(now);
        w.drain_outputs(now, &mut srv);
    }
}

/// Drives DTLS retransmission timers and drops idle or closed associations (their
/// allocations go with them, as for a closed TCP connection).
async fn dtls_task(w: Rc<Worker>, ctx: Arc<crate::dtls::DtlsContext>) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        let now = Instant::now();
        let (sends, ended) = w.dtls_sessions.borrow_mut().tick(now, ctx.idle_timeout);
        for (ft, r) in &sends {
            w.send_raw_udp(ft, r);
        }
        for ft in ended {
            w.connection_closed(now, ft);
        }
    }
}

/// Publishes counters and metering events once a second.
async fn export_task(w: Rc<Worker>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        {
            let now = Instant::now();
            let mut srv = w.server.borrow_mut();
            w.report_accounting(now, &mut srv);
            // Relays released by closed allocations are carried out here too.
            w.drain_outputs(now, &mut srv);
        }
        let stats = w.server.borrow().stats.clone();
        let mut last = w.exported.take();
        crate::export::publish(&mut last, &stats);
        w.exported.replace(last);
    }
}
