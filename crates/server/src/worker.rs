//! One worker's state and the glue between its sockets and its `turnpike_proto::Server`.
//!
//! A worker is a thread with a single-threaded tokio runtime, its own listener sockets (shared
//! with the other workers' through `SO_REUSEPORT`), its own relay sockets and its own state
//! machine. Everything that changes is in one [`State`] behind one `RefCell`: tasks on the
//! worker borrow it for the synchronous handling of one input (never across an `await`), which
//! is sound because they all run on this one thread; nothing on the packet path takes a lock.
//!
//! This file stands below the tasks that drive it: it starts tasks only through the [`Tasks`]
//! table the runner gives it (relay receive loops, relayed TCP listeners, outbound peer
//! connections), so the task files can name the [`Worker`] without a circle.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinHandle;
use turnpike_proto::{
    Account, ConnectionId, Dest, Direction, DropReason, FiveTuple, Limits, Output, RelayError,
    RelayRequest, RelayResult, RelayTransport, Server, Stats, Transmit, Transport, PEER_HEADROOM,
    PEER_TAILROOM,
};

use crate::mmsg::Outgoing;
use crate::outbox::Outbox;
use crate::peer_streams::PeerStreams;
use crate::relay::{bind_relay, LeasedSocket, Reservations};
use crate::relay_poll::RelayPoll;
use crate::relay_ports::{PortLease, RelayPorts};
use crate::relay_set::RelaySet;
use crate::udp::UdpListener;
use crate::DriverConfig;

/// The tasks a worker starts on its own, given by the runner.
#[derive(Clone, Copy)]
pub(crate) struct Tasks {
    /// Accepts peer connections on a relayed TCP listener until aborted.
    pub tcp_relay: fn(Rc<Worker>, tokio::net::TcpListener, SocketAddr) -> JoinHandle<()>,
    /// Connects from a relayed address to a peer (RFC 6062 Connect).
    pub connect_peer: fn(Rc<Worker>, ConnectionId, SocketAddr, SocketAddr),
}

/// A relayed TCP listener: its accept task and its address reservation.
struct TcpRelayEntry {
    task: Option<JoinHandle<()>>,
    _lease: PortLease,
}

/// An RFC 6062 data connection bound to its peer connection, waiting for the bind's success
/// response to be written before bytes flow both ways.
pub(crate) struct Splice {
    pub connection: ConnectionId,
    pub peer: tokio::net::TcpStream,
    /// Whose usage the copied bytes count in (none for static users).
    pub account: Option<Arc<Account>>,
    /// The serial of the allocation the connection belongs to.
    pub allocation: u64,
}

/// A task the state asked for; started once the state is no longer borrowed.
enum Spawn {
    TcpRelay(tokio::net::TcpListener, SocketAddr),
    ConnectPeer(ConnectionId, SocketAddr, SocketAddr),
}

/// Everything of a worker that changes.
pub(crate) struct State {
    pub server: Server,
    relays: RelaySet,
    tcp_relays: HashMap<SocketAddr, TcpRelayEntry>,
    /// Stream connections' outbound queues.
    streams: HashMap<FiveTuple, Rc<Outbox>>,
    /// DTLS associations of this worker's DTLS listeners.
    dtls: crate::dtls::Sessions,
    /// Peer connections ready to be spliced with the data connection on this 5-tuple.
    splices: HashMap<FiveTuple, Splice>,
    /// Receive buffers for relay sockets: [`RX_BATCH`] slots of [`RX_STRIDE`] bytes, each a
    /// datagram with the state machine's head- and tailroom around it.
    relay_rx: Vec<u8>,
    /// Length and source of each datagram of the last relay read.
    relay_rx_meta: Vec<(usize, SocketAddr)>,
    /// Tokens of the relay sockets found ready.
    ready: Vec<u64>,
    /// Datagrams to clients waiting for the end of a relay pass, sent then in batches.
    to_clients: ClientBatch,
    /// The counters as last exported.
    exported: Stats,
    /// Tasks to start after this borrow.
    spawns: Vec<Spawn>,
}

/// Datagrams relayed to UDP clients during one pass over the ready relay sockets, per
/// listener; sent together at the end of the pass (`sendmmsg`).
#[derive(Default)]
struct ClientBatch {
    arena: Vec<u8>,
    /// Per listener: the datagrams and the relay each came through (for send-failure
    /// accounting).
    per_listener: Vec<(Vec<Outgoing>, Vec<SocketAddr>)>,
}

/// Datagrams read from one relay socket per `recvmmsg`.
const RX_BATCH: usize = 16;
/// Bytes per relay receive slot: a maximal datagram and the state machine's head- and tailroom.
const RX_STRIDE: usize = PEER_HEADROOM + RX_MAX + PEER_TAILROOM;
/// The largest peer datagram read whole.
const RX_MAX: usize = 65_536;

/// A worker: its immutable parts and its [`State`].
pub(crate) struct Worker {
    pub cfg: Arc<DriverConfig>,
    pub udp: Vec<UdpListener>,
    /// Readiness of this worker's UDP relay sockets.
    pub relay_poll: RelayPoll,
    /// RFC 6062 peer connections, shared by all workers.
    pub peer_streams: Arc<PeerStreams>,
    reservations: Arc<Reservations>,
    /// Relay addresses reserved process-wide.
    relay_ports: Arc<RelayPorts>,
    tasks: Tasks,
    /// This worker's number (for metering).
    pub index: usize,
    state: std::cell::RefCell<State>,
}

/// What a worker is made of.
pub(crate) struct Parts {
    pub server: Server,
    pub cfg: Arc<DriverConfig>,
    pub udp: Vec<UdpListener>,
    pub relay_poll: RelayPoll,
    pub peer_streams: Arc<PeerStreams>,
    pub reservations: Arc<Reservations>,
    pub relay_ports: Arc<RelayPorts>,
    pub tasks: Tasks,
    pub index: usize,
}

impl Worker {
    pub(crate) fn new(p: Parts) -> Rc<Self> {
        Rc::new(Self {
            cfg: p.cfg,
            udp: p.udp,
            relay_poll: p.relay_poll,
            peer_streams: p.peer_streams,
            reservations: p.reservations,
            relay_ports: p.relay_ports,
            tasks: p.tasks,
            index: p.index,
            state: std::cell::RefCell::new(State {
                server: p.server,
                relays: RelaySet::default(),
                tcp_relays: HashMap::new(),
                streams: HashMap::new(),
                dtls: crate::dtls::Sessions::default(),
                splices: HashMap::new(),
                relay_rx: vec![0u8; RX_BATCH * RX_STRIDE],
                relay_rx_meta: vec![(0, SocketAddr::from(([0, 0, 0, 0], 0))); RX_BATCH],
                ready: Vec::with_capacity(crate::relay_poll::MAX_READY),
                to_clients: ClientBatch::default(),
                exported: Stats::default(),
                spawns: Vec::new(),
            }),
        })
    }

    /// Runs `f` on the state, then starts the tasks it asked for.
    fn with<R>(self: &Rc<Self>, f: impl FnOnce(&Self, &mut State) -> R) -> R {
        let (r, spawns) = {
            let mut st = self.state.borrow_mut();
            let r = f(self, &mut st);
            (r, std::mem::take(&mut st.spawns))
        };
        for s in spawns {
            self.spawn(s);
        }
        r
    }

    fn spawn(self: &Rc<Self>, s: Spawn) {
        match s {
            Spawn::TcpRelay(listener, addr) => {
                let task = (self.tasks.tcp_relay)(self.clone(), listener, addr);
                if let Some(e) = self.state.borrow_mut().tcp_relays.get_mut(&addr) {
                    e.task = Some(task);
                } else {
                    task.abort();
                }
            }
            Spawn::ConnectPeer(cid, relay, peer) => {
                (self.tasks.connect_peer)(self.clone(), cid, relay, peer);
            }
        }
    }

    /// Counts a packet dropped outside the state machine (malformed streams, timeouts).
    pub(crate) fn count_drop(&self, r: DropReason) {
        self.state.borrow_mut().server.stats.drop(r);
    }

    /// Whether `ip` is on the client deny list (configured or set through the API); counted.
    pub(crate) fn client_denied(&self, ip: IpAddr) -> bool {
        let mut st = self.state.borrow_mut();
        let dir = &st.server.runtime().directory;
        if dir.has_denied_clients() && dir.is_client_denied(ip) {
            st.server.stats.drop(DropReason::Denied);
            return true;
        }
        false
    }

    /// A packet from a client (UDP datagram or one TCP frame).
    pub(crate) fn on_client_packet(self: &Rc<Self>, now: Instant, ft: FiveTuple, data: &[u8]) {
        self.with(|w, st| st.on_client_packet(w, now, ft, data));
    }

    /// A DTLS record from a client: handshake progress, or decrypted STUN/ChannelData.
    pub(crate) fn on_dtls_datagram(self: &Rc<Self>, now: Instant, ft: FiveTuple, data: &[u8]) {
        let Some(ctx) = self.cfg.dtls.as_ref() else {
            return;
        };
        self.with(|w, st| {
            let Some(p) = st.dtls.receive(ctx, now, ft, data) else {
                st.server.stats.drop(DropReason::Malformed);
                return;
            };
            for r in &p.packets {
                w.send_raw_udp(&ft, r);
            }
            for d in &p.app_data {
                st.on_client_packet(w, now, ft, d);
            }
        });
    }

    /// One pass over the relay sockets with datagrams queued: reads each (one `recvmmsg`),
    /// relays what it read, and sends what goes to UDP clients in batches. True when every
    /// ready socket was emptied (the pass can wait for the next readiness).
    pub(crate) fn relays_ready(self: &Rc<Self>) -> bool {
        self.with(|w, st| {
            let mut ready = std::mem::take(&mut st.ready);
            if let Err(e) = w.relay_poll.ready(&mut ready) {
                tracing::debug!(error = %e, "relay readiness error");
                st.ready = ready;
                return true;
            }
            let mut drained = ready.len() < crate::relay_poll::MAX_READY;
            let now = Instant::now();
            for &token in &ready {
                drained &= st.read_relay(w, now, token as usize);
            }
            st.flush_to_clients(w);
            st.ready = ready;
            drained
        })
    }

    /// A stream connection starts: its outbound queue.
    pub(crate) fn open_stream(&self, ft: FiveTuple) -> Rc<Outbox> {
        let outbox = Rc::new(Outbox::new(self.cfg.tcp_queue_frames));
        self.state.borrow_mut().streams.insert(ft, outbox.clone());
        outbox
    }

    /// A stream connection stops taking frames (closed, or become an RFC 6062 data connection).
    pub(crate) fn forget_stream(&self, ft: &FiveTuple) {
        self.state.borrow_mut().streams.remove(ft);
    }

    /// The peer connection to splice with the data connection on `ft`, if its ConnectionBind
    /// just succeeded.
    pub(crate) fn take_splice(&self, ft: &FiveTuple) -> Option<Splice> {
        self.state.borrow_mut().splices.remove(ft)
    }

    /// A stream connection ended: its allocation goes with it.
    pub(crate) fn connection_closed(self: &Rc<Self>, now: Instant, ft: FiveTuple) {
        self.with(|w, st| {
            st.server.handle_connection_closed(now, ft);
            st.drain_outputs(w, now);
        });
    }

    /// A peer connected to a relayed TCP address.
    pub(crate) fn incoming_peer(
        self: &Rc<Self>,
        now: Instant,
        relay: SocketAddr,
        peer: SocketAddr,
        stream: tokio::net::TcpStream,
    ) {
        self.with(|w, st| {
            if let Some(cid) = st.server.handle_incoming_peer_connection(now, relay, peer) {
                let _ = stream.set_nodelay(true);
                w.peer_streams.put_waiting(cid, stream);
            }
            st.drain_outputs(w, now);
        });
    }

    /// An outbound peer connection finished connecting (or failed).
    pub(crate) fn peer_connect_result(self: &Rc<Self>, now: Instant, cid: ConnectionId, ok: bool) {
        self.with(|w, st| {
            st.server.handle_peer_connect_result(now, cid, ok);
            st.drain_outputs(w, now);
        });
    }

    /// A spliced peer connection ended.
    pub(crate) fn peer_connection_closed(self: &Rc<Self>, now: Instant, cid: ConnectionId) {
        self.peer_streams.forget(cid);
        self.with(|w, st| {
            st.server.handle_peer_connection_closed(now, cid);
            st.drain_outputs(w, now);
        });
    }

    /// Counts bytes copied on a spliced data connection (see `Server::handle_spliced`).
    pub(crate) fn spliced(
        &self,
        transport: Transport,
        metered: Option<(&Arc<Account>, u64)>,
        toward_peer: bool,
        n: usize,
    ) {
        self.state
            .borrow_mut()
            .server
            .handle_spliced(transport, metered, toward_peer, n);
    }

    /// The current limits of an account.
    pub(crate) fn limits_for(&self, account: &Account) -> Limits {
        self.state.borrow().server.limits_for(account)
    }

    /// Feeds time to the state machine; returns when it next wants to be called.
    pub(crate) fn timeout(self: &Rc<Self>, now: Instant) -> Option<Instant> {
        self.with(|w, st| {
            st.server.handle_timeout(now);
            st.drain_outputs(w, now);
            st.server.poll_timeout()
        })
    }

    /// Drives DTLS retransmission timers and drops idle or closed associations (their
    /// allocations go with them, as for a closed TCP connection).
    pub(crate) fn dtls_tick(self: &Rc<Self>, now: Instant, idle: std::time::Duration) {
        self.with(|w, st| {
            let (sends, ended) = st.dtls.tick(now, idle);
            for (ft, r) in &sends {
                w.send_raw_udp(ft, r);
            }
            for ft in ended {
                st.server.handle_connection_closed(now, ft);
            }
            st.drain_outputs(w, now);
        });
    }

    /// Hands metering events to the sink and publishes counters (once a second, and last at
    /// shutdown).
    pub(crate) fn export(self: &Rc<Self>, now: Instant) {
        self.with(|w, st| {
            st.report_accounting(w, now);
            // Relays released by closed allocations are carried out here too.
            st.drain_outputs(w, now);
            let State {
                server, exported, ..
            } = st;
            let sent = crate::export::publish(exported, &server.stats);
            server
                .runtime()
                .relayed_bytes
                .fetch_add(sent, std::sync::atomic::Ordering::Relaxed);
        });
    }

    /// Shutdown: closes every allocation so its final usage is reported, publishes the last
    /// counters, and drops relays and connections.
    pub(crate) fn shut_down(self: &Rc<Self>, now: Instant) {
        self.with(|w, st| {
            st.server.close_all(now);
            st.report_accounting(w, now);
            let State {
                server, exported, ..
            } = st;
            let sent = crate::export::publish(exported, &server.stats);
            server
                .runtime()
                .relayed_bytes
                .fetch_add(sent, std::sync::atomic::Ordering::Relaxed);
            st.streams.clear();
            st.relays.clear();
            for (_, t) in st.tcp_relays.drain() {
                t.abort();
            }
        });
    }

    /// Sends a datagram to a UDP (or DTLS) client from the listener it used.
    fn send_raw_udp(&self, ft: &FiveTuple, data: &[u8]) -> bool {
        match self.listener_for(&ft.server) {
            Some(i) => self.udp[i].send(&ft.server, ft.client, data).is_ok(),
            None => false,
        }
    }

    /// The UDP listener serving `server` (the address a client sent to).
    fn listener_for(&self, server: &SocketAddr) -> Option<usize> {
        self.udp.iter().position(|l| l.serves(server))
    }

    /// The IPs a relay of the given family may bind to for a client that reached us on
    /// `server`, in the order to try them: the configured ones, those with the fewest relays
    /// first (so allocations spread evenly over them, whichever worker makes them), else the
    /// one the client's address implies.
    fn relay_ips(&self, ipv6: bool, server: &SocketAddr) -> Vec<IpAddr> {
        let configured = if ipv6 {
            &self.cfg.relay_ipv6
        } else {
            &self.cfg.relay_ipv4
        };
        if !configured.is_empty() {
            return self.relay_ports.least_used_first(configured);
        }
        let reached = server.ip().to_canonical();
        let implied = if reached.is_ipv6() == ipv6 {
            (!reached.is_unspecified()).then_some(reached)
        } else {
            self.cfg.listener_ip(ipv6)
        };
        implied.into_iter().collect()
    }

    /// Binds with `bind` on the first of `ips` that has a free port; `FamilyUnsupported` when
    /// there is no address to try.
    fn on_relay_ip<T>(
        ips: &[IpAddr],
        mut bind: impl FnMut(IpAddr) -> Result<T, RelayError>,
    ) -> Result<T, RelayError> {
        let mut last = RelayError::FamilyUnsupported;
        for &ip in ips {
            match bind(ip) {
                Err(RelayError::Exhausted) => last = RelayError::Exhausted,
                r => return r,
            }
        }
        Err(last)
    }
}

impl State {
    fn on_client_packet(&mut self, w: &Worker, now: Instant, ft: FiveTuple, data: &[u8]) {
        let failed = match self.server.handle_client_packet(now, ft, data) {
            Some(t) => {
                let (dest, len) = (t.dest, t.data.len());
                (!transmit(w, &self.relays, &self.streams, &mut self.dtls, t))
                    .then_some((dest, len))
            }
            None => None,
        };
        if let Some((dest, len)) = failed {
            self.server.stats.drop(DropReason::SendFailed);
            if let Dest::Peer { relay, .. } = dest {
                self.server
                    .handle_relay_send_failed(relay, Direction::ServerToPeer, len);
            }
        }
        self.drain_outputs(w, now);
    }

    /// Reads what is queued on the relay socket in `slot` (one `recvmmsg`) and relays it;
    /// true when the socket is now empty.
    fn read_relay(&mut self, w: &Worker, now: Instant, slot: usize) -> bool {
        let Some(e) = self.relays.by_slot(slot) else {
            return true;
        };
        let (fd, relay) = (e.sock.as_raw_fd(), e.addr);
        let n = match crate::mmsg::recv_batch(
            fd,
            &mut self.relay_rx,
            RX_STRIDE,
            PEER_HEADROOM,
            RX_MAX,
            &mut self.relay_rx_meta,
        ) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) => {
                tracing::trace!(error = %e, %relay, "relay receive error");
                return true;
            }
        };
        for i in 0..n {
            let (len, peer) = self.relay_rx_meta[i];
            if len == usize::MAX {
                self.server.stats.drop(DropReason::Malformed);
                continue;
            }
            self.on_peer_packet(w, now, relay, peer, i, len);
        }
        n < RX_BATCH
    }

    /// A datagram from a peer in receive slot `i`, `len` bytes after its headroom.
    fn on_peer_packet(
        &mut self,
        w: &Worker,
        now: Instant,
        relay: SocketAddr,
        peer: SocketAddr,
        i: usize,
        len: usize,
    ) {
        let buf = &mut self.relay_rx[i * RX_STRIDE..(i + 1) * RX_STRIDE];
        let failed = match self.server.handle_peer_packet(now, relay, peer, buf, len) {
            Some(t) => {
                let n = t.data.len();
                let sent = match t.dest {
                    Dest::Client(ft) if ft.transport == Transport::Udp => {
                        self.to_clients.push(w, &ft, t.data, relay)
                    }
                    _ => transmit(w, &self.relays, &self.streams, &mut self.dtls, t),
                };
                (!sent).then_some(n)
            }
            None => None,
        };
        if let Some(n) = failed {
            self.server.stats.drop(DropReason::SendFailed);
            self.server
                .handle_relay_send_failed(relay, Direction::ServerToClient, n);
        }
    }

    /// Sends the datagrams the last relay pass queued for UDP clients; each one a socket
    /// refuses is counted and taken out of its allocation's usage, as an immediate send's.
    fn flush_to_clients(&mut self, w: &Worker) {
        let ClientBatch {
            arena,
            per_listener,
        } = &mut self.to_clients;
        for (idx, (items, relays)) in per_listener.iter_mut().enumerate() {
            if items.is_empty() {
                continue;
            }
            let Some(l) = w.udp.get(idx) else {
                continue;
            };
            let server = &mut self.server;
            crate::mmsg::send_batch(l.sock.as_raw_fd(), arena, items, |i| {
                server.stats.drop(DropReason::SendFailed);
                server.handle_relay_send_failed(
                    relays[i],
                    Direction::ServerToClient,
                    items[i].bytes.len(),
                );
            });
            items.clear();
            relays.clear();
        }
        arena.clear();
    }

    /// Hands the state machine's metering events to the sink, if metering is on.
    fn report_accounting(&mut self, w: &Worker, now: Instant) {
        let events = self.server.poll_accounting(now);
        if let (Some(sink), false) = (&w.cfg.accounting, events.is_empty()) {
            sink(w.index, events);
        }
    }

    /// Carries out queued outputs.
    fn drain_outputs(&mut self, w: &Worker, now: Instant) {
        while let Some(o) = self.server.poll_output() {
            match o {
                Output::Transmit { to, data } => {
                    if !send_to_client(w, &self.streams, &mut self.dtls, &to, &data) {
                        self.server.stats.drop(DropReason::SendFailed);
                    }
                }
                Output::CreateRelay(req) => {
                    let res = self.create_relay(w, now, &req);
                    self.server
                        .handle_relay_created(now, req.allocation, req.generation, res);
                }
                Output::ReleaseRelay(addr) => {
                    self.relays.remove(&addr);
                    if let Some(t) = self.tcp_relays.remove(&addr) {
                        t.abort();
                    }
                }
                Output::ConnectPeer {
                    connection,
                    relay,
                    peer,
                } => self
                    .spawns
                    .push(Spawn::ConnectPeer(connection, relay, peer)),
                Output::SpliceData {
                    connection,
                    data,
                    account,
                    allocation,
                } => {
                    let stream = w
                        .peer_streams
                        .take_waiting(connection)
                        .and_then(|s| tokio::net::TcpStream::from_std(s).ok());
                    match stream {
                        Some(peer) => {
                            self.splices.insert(
                                data,
                                Splice {
                                    connection,
                                    peer,
                                    account,
                                    allocation,
                                },
                            );
                        }
                        None => self.server.handle_peer_connection_closed(now, connection),
                    }
                }
                Output::ClosePeerConnection(cid) => w.peer_streams.close(cid),
            }
        }
    }

    fn create_relay(&mut self, w: &Worker, now: Instant, req: &RelayRequest) -> RelayResult {
        if req.transport == RelayTransport::Tcp {
            return RelayResult {
                ipv4: req
                    .families
                    .ipv4
                    .then(|| self.create_tcp_relay(w, false, req)),
                ipv6: req
                    .families
                    .ipv6
                    .then(|| self.create_tcp_relay(w, true, req)),
                reservation_token: None,
            };
        }
        let mut token = None;
        // EVEN-PORT and RESERVATION-TOKEN apply to the primary family (IPv4 unless only IPv6
        // was requested); an additional IPv6 relay gets any free port.
        let primary_v6 = !req.families.ipv4;
        let mut one = |ipv6: bool, token: &mut Option<u64>| -> Result<SocketAddr, RelayError> {
            let primary = ipv6 == primary_v6;
            let sock = match req.reservation_token {
                Some(t) if primary => w.reservations.take(t, now).ok_or(RelayError::BadToken)?,
                _ => {
                    let ips = w.relay_ips(ipv6, &req.five_tuple.server);
                    let even = req.even_port.is_some() && primary;
                    let reserve = req.even_port == Some(true) && primary;
                    let (s, next) = Worker::on_relay_ip(&ips, |ip| {
                        bind_relay(
                            &w.relay_ports,
                            ip,
                            w.cfg.relay_port_min,
                            w.cfg.relay_port_max,
                            even,
                            reserve,
                            req.dont_fragment,
                            w.cfg.socket_buffer,
                        )
                    })?;
                    if let Some(n) = next {
                        *token = Some(w.reservations.put(n, now));
                    }
                    s
                }
            };
            self.register_relay(w, sock)
                .map_err(|_| RelayError::Exhausted)
        };
        let ipv4 = req.families.ipv4.then(|| one(false, &mut token));
        let ipv6 = req.families.ipv6.then(|| one(true, &mut token));
        RelayResult {
            ipv4,
            ipv6,
            reservation_token: token,
        }
    }

    fn create_tcp_relay(
        &mut self,
        w: &Worker,
        ipv6: bool,
        req: &RelayRequest,
    ) -> Result<SocketAddr, RelayError> {
        let ips = w.relay_ips(ipv6, &req.five_tuple.server);
        let (ip, lease, l) = Worker::on_relay_ip(&ips, |ip| {
            crate::peer_streams::bind_listener(
                &w.relay_ports,
                ip,
                w.cfg.relay_port_min,
                w.cfg.relay_port_max,
            )
            .map(|(lease, l)| (ip, lease, l))
            .ok_or(RelayError::Exhausted)
        })?;
        let addr = SocketAddr::new(ip, lease.port());
        let l = tokio::net::TcpListener::from_std(l).map_err(|_| RelayError::Exhausted)?;
        self.tcp_relays.insert(
            addr,
            TcpRelayEntry {
                task: None,
                _lease: lease,
            },
        );
        self.spawns.push(Spawn::TcpRelay(l, addr));
        Ok(addr)
    }

    fn register_relay(
        &mut self,
        w: &Worker,
        (sock, lease): LeasedSocket,
    ) -> std::io::Result<SocketAddr> {
        let addr = sock.local_addr()?;
        let fd = sock.as_raw_fd();
        let slot = self.relays.insert(sock, addr, lease);
        if let Err(e) = w.relay_poll.add(fd, slot as u64) {
            self.relays.remove(&addr);
            return Err(e);
        }
        Ok(addr)
    }
}

impl ClientBatch {
    /// Queues a datagram for a UDP client, to go from the listener it used; false when no
    /// listener serves its address.
    fn push(&mut self, w: &Worker, ft: &FiveTuple, data: &[u8], relay: SocketAddr) -> bool {
        let Some(idx) = w.listener_for(&ft.server) else {
            return false;
        };
        if self.per_listener.len() < w.udp.len() {
            self.per_listener.resize_with(w.udp.len(), Default::default);
        }
        let start = self.arena.len();
        self.arena.extend_from_slice(data);
        let (items, relays) = &mut self.per_listener[idx];
        items.push(Outgoing {
            to: ft.client,
            src_ip: w.udp[idx].source_for(&ft.server),
            bytes: start..self.arena.len(),
        });
        relays.push(relay);
        true
    }
}

impl TcpRelayEntry {
    fn abort(self) {
        if let Some(t) = self.task {
            t.abort();
        }
    }
}

/// Sends one transmit; false if the socket refused it.
fn transmit(
    w: &Worker,
    relays: &RelaySet,
    streams: &HashMap<FiveTuple, Rc<Outbox>>,
    dtls: &mut crate::dtls::Sessions,
    t: Transmit<'_>,
) -> bool {
    match t.dest {
        Dest::Peer { relay, peer } => match relays.get(&relay) {
            Some(r) => r.sock.send_to(t.data, peer).is_ok(),
            None => false,
        },
        Dest::Client(ft) => send_to_client(w, streams, dtls, &ft, t.data),
    }
}

fn send_to_client(
    w: &Worker,
    streams: &HashMap<FiveTuple, Rc<Outbox>>,
    dtls: &mut crate::dtls::Sessions,
    ft: &FiveTuple,
    data: &[u8],
) -> bool {
    match ft.transport {
        Transport::Udp => w.send_raw_udp(ft, data),
        Transport::Tcp | Transport::Tls => match streams.get(ft) {
            Some(outbox) => outbox.push(data),
            None => false,
        },
        Transport::Dtls => match dtls.send(ft, data) {
            Some(rs) => rs.iter().all(|r| w.send_raw_udp(ft, r)),
            None => false,
        },
    }
}
