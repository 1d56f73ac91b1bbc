//! The hot loop: one thread, one epoll set over every client socket and echo peer, open-loop
//! pacing per step, batched sendmmsg/recvmmsg (or UDP GSO), RTT from the send time stamped in
//! each payload. Buffers, frames and histograms are made before the first packet; the loop
//! itself does not allocate (rustls may, inside the TLS leg).

use std::io::{self, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rustls::ClientConnection;

use crate::procfs;
use crate::req::{self, Frame};
use crate::setup::{Alloc, Conn};
use crate::sys::{self, Batch, Epoll};

const PEER_TOKEN: u64 = 1 << 32;
const STREAM_RBUF: usize = 256 * 1024;
const STREAM_WBUF: usize = 1 << 20;

pub(crate) struct Config {
    pub(crate) rates: Vec<u64>,
    pub(crate) step_secs: f64,
    pub(crate) drain_secs: f64,
    pub(crate) batch: usize,
    pub(crate) two_way: bool,
    pub(crate) gso: bool,
    pub(crate) server_pid: Option<u32>,
}

#[derive(serde::Serialize, Default, Clone)]
pub(crate) struct Step {
    pub(crate) offered_pps: u64,
    pub(crate) secs: f64,
    /// Frames handed to the kernel (or refused by it / by a full TCP buffer: see the two below).
    pub(crate) sent: u64,
    pub(crate) sent_pps: f64,
    /// Frames not even tried because the generator fell behind by more than 10 ms.
    pub(crate) generator_skipped: u64,
    /// Frames refused by a full client TCP/TLS send buffer or by sendmmsg (counted as lost).
    pub(crate) client_blocked: u64,
    /// Frames of this step that came back (two-way) or reached the peer (one-way).
    pub(crate) delivered: u64,
    /// Final-leg deliveries during the step's time window, per second.
    pub(crate) delivered_pps: f64,
    pub(crate) loss_pct: f64,
    /// "rtt" (two-way) or "one-way" (client -> relay -> peer).
    pub(crate) latency: &'static str,
    pub(crate) lat_p50_us: f64,
    pub(crate) lat_p99_us: f64,
    pub(crate) lat_p999_us: f64,
    pub(crate) lat_max_us: f64,
    /// Datagrams the server relayed during the window (peer receptions + client receptions).
    pub(crate) relayed_datagrams: u64,
    pub(crate) server_cpu_s: Option<f64>,
    pub(crate) cpu_us_per_datagram: Option<f64>,
    pub(crate) server_rss_kb: Option<u64>,
}

#[derive(serde::Serialize, Default)]
pub(crate) struct Counters {
    pub(crate) malformed: u64,
    pub(crate) peer_echo_refused: u64,
    pub(crate) stream_errors: u64,
}

enum Kind {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<ClientConnection>, TcpStream),
}

struct Client {
    kind: Kind,
    fd: RawFd,
    frame: Frame,
    /// Stream receive buffer and its filled range; stream send backlog.
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    wbuf: Vec<u8>,
    pending: bool,
    dead: bool,
}

struct Stats {
    sent: Vec<u64>,
    blocked: Vec<u64>,
    skipped: Vec<u64>,
    tagged: Vec<u64>,
    hist: Vec<Histogram<u64>>,
    win_peer: u64,
    win_client: u64,
    counters: Counters,
}

impl Stats {
    /// A payload arrived at its last leg (peer in one-way, client in two-way) or at the peer.
    #[inline]
    fn arrived(
        &mut self,
        payload: &[u8],
        now_ns: u64,
        at_peer: bool,
        two_way: bool,
        n_alloc: usize,
    ) {
        let Some((idx, step, ts)) = req::read_stamp(payload) else {
            self.counters.malformed += 1;
            return;
        };
        let step = step as usize;
        if idx as usize >= n_alloc || step >= self.tagged.len() {
            self.counters.malformed += 1;
            return;
        }
        if at_peer {
            self.win_peer += 1;
        } else {
            self.win_client += 1;
        }
        if at_peer != two_way {
            self.tagged[step] += 1;
            let _ = self.hist[step].record(now_ns.saturating_sub(ts).max(1));
        }
    }
}

pub(crate) fn run(
    cfg: &Config,
    allocs: Vec<Alloc>,
    frames: Vec<Frame>,
    peers: &[UdpSocket],
) -> Result<(Vec<Step>, Counters), String> {
    let n_alloc = allocs.len();
    let steps = cfg.rates.len();
    let ep = Epoll::new().map_err(|e| format!("epoll: {e}"))?;
    let mut clients = Vec::with_capacity(n_alloc);
    for (i, (a, frame)) in allocs.into_iter().zip(frames).enumerate() {
        let fd = a.conn.fd();
        let (kind, stream) = match a.conn {
            Conn::Udp(s) => (Kind::Udp(s), false),
            Conn::Tcp(s) => (Kind::Tcp(s), true),
            Conn::Tls(b) => {
                let b = *b;
                (Kind::Tls(Box::new(b.conn), b.sock), true)
            }
        };
        match &kind {
            Kind::Udp(s) => s.set_nonblocking(true),
            Kind::Tcp(s) | Kind::Tls(_, s) => s.set_nonblocking(true),
        }
        .map_err(|e| format!("nonblocking: {e}"))?;
        ep.add(fd, i as u64)
            .map_err(|e| format!("epoll add: {e}"))?;
        clients.push(Client {
            kind,
            fd,
            frame,
            rbuf: if stream {
                vec![0; STREAM_RBUF]
            } else {
                Vec::new()
            },
            rstart: 0,
            rend: 0,
            wbuf: Vec::with_capacity(if stream { STREAM_WBUF } else { 0 }),
            pending: false,
            dead: false,
        });
    }
    for (j, p) in peers.iter().enumerate() {
        p.set_nonblocking(true)
            .map_err(|e| format!("nonblocking: {e}"))?;
        ep.add(p.as_raw_fd(), PEER_TOKEN + j as u64)
            .map_err(|e| format!("epoll add: {e}"))?;
    }
    let batch = cfg.batch.clamp(1, 64);
    let mut tx = Batch::new(batch);
    let mut rx = Batch::new(64);
    let mut px = Batch::new(64);
    let frame_len = clients.first().map(|c| c.frame.bytes.len()).unwrap_or(0);
    let mut scratch = vec![0u8; batch * frame_len.max(1)];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut st = Stats {
        sent: vec![0; steps],
        blocked: vec![0; steps],
        skipped: vec![0; steps],
        tagged: vec![0; steps],
        hist: (0..steps)
            .map(|_| Histogram::new_with_bounds(1, 60_000_000_000, 3))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("histogram: {e}"))?,
        win_peer: 0,
        win_client: 0,
        counters: Counters::default(),
    };
    let epoch = Instant::now();
    let mut out = Vec::with_capacity(steps);
    let mut cursor = 0usize;
    let mut n_pending = 0usize;

    for (s, &rate) in cfg.rates.iter().enumerate() {
        let cpu0 = cfg.server_pid.and_then(procfs::cpu_seconds);
        st.win_peer = 0;
        st.win_client = 0;
        let t0 = Instant::now();
        let end = t0 + Duration::from_secs_f64(cfg.step_secs);
        let backlog_cap = (rate / 100).max(batch as u64 * 4);
        let mut accounted = 0u64;
        loop {
            let now = Instant::now();
            if now >= end {
                break;
            }
            let target = (rate as f64 * (now - t0).as_secs_f64()) as u64;
            let mut due = target.saturating_sub(accounted);
            if due > backlog_cap {
                st.skipped[s] += due - backlog_cap;
                accounted += due - backlog_cap;
                due = backlog_cap;
            }
            // At most 1024 frames per pass, then look at what arrived.
            let mut budget = due.min(1024);
            let ts = (now - epoch).as_nanos() as u64;
            while budget > 0 && n_alloc > 0 {
                let c = &mut clients[cursor];
                cursor = (cursor + 1) % n_alloc;
                let k = (budget as usize).min(batch);
                budget -= k as u64;
                accounted += k as u64;
                if c.dead {
                    st.blocked[s] += k as u64;
                    continue;
                }
                let (sent, blocked) = send_frames(
                    c,
                    k,
                    s as u32,
                    ts,
                    &mut tx,
                    &mut scratch,
                    cfg.gso,
                    &mut st.counters,
                );
                st.sent[s] += sent as u64;
                st.blocked[s] += blocked as u64;
                if c.pending {
                    n_pending += 1;
                }
            }
            let timeout = if target.saturating_sub(accounted) > 0 {
                0
            } else {
                1
            };
            poll(
                &ep,
                &mut events,
                timeout,
                &mut clients,
                peers,
                &mut rx,
                &mut px,
                &mut st,
                epoch,
                cfg.two_way,
                cfg.gso,
            )?;
            if n_pending > 0 {
                n_pending = flush_all(&mut clients, &mut st.counters);
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let cpu1 = cfg.server_pid.and_then(procfs::cpu_seconds);
        let relayed = st.win_peer + if cfg.two_way { st.win_client } else { 0 };
        let cpu = match (cpu0, cpu1) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        out.push(Step {
            offered_pps: rate,
            secs,
            sent: st.sent[s],
            sent_pps: st.sent[s] as f64 / secs,
            generator_skipped: st.skipped[s],
            client_blocked: st.blocked[s],
            delivered_pps: if cfg.two_way {
                st.win_client
            } else {
                st.win_peer
            } as f64
                / secs,
            relayed_datagrams: relayed,
            server_cpu_s: cpu,
            cpu_us_per_datagram: cpu
                .filter(|_| relayed > 0)
                .map(|c| c * 1e6 / relayed as f64),
            server_rss_kb: cfg.server_pid.and_then(procfs::rss_kb),
            latency: if cfg.two_way { "rtt" } else { "one-way" },
            ..Step::default()
        });
        eprintln!(
            "step {}: offered {rate}/s sent {:.0}/s delivered {:.0}/s server CPU {}",
            s + 1,
            out[s].sent_pps,
            out[s].delivered_pps,
            cpu.map(|c| format!("{c:.2} s"))
                .unwrap_or_else(|| "-".into())
        );
    }
    // Drain: nothing more is sent; late arrivals still count for their step.
    let end = Instant::now() + Duration::from_secs_f64(cfg.drain_secs);
    while Instant::now() < end {
        poll(
            &ep,
            &mut events,
            1,
            &mut clients,
            peers,
            &mut rx,
            &mut px,
            &mut st,
            epoch,
            cfg.two_way,
            cfg.gso,
        )?;
        if n_pending > 0 {
            n_pending = flush_all(&mut clients, &mut st.counters);
        }
    }
    for (s, step) in out.iter_mut().enumerate() {
        let tried = st.sent[s] + st.blocked[s];
        step.delivered = st.tagged[s];
        step.loss_pct = if tried > 0 {
            100.0 * (tried.saturating_sub(st.tagged[s])) as f64 / tried as f64
        } else {
            0.0
        };
        let h = &st.hist[s];
        if !h.is_empty() {
            step.lat_p50_us = h.value_at_quantile(0.5) as f64 / 1e3;
            step.lat_p99_us = h.value_at_quantile(0.99) as f64 / 1e3;
            step.lat_p999_us = h.value_at_quantile(0.999) as f64 / 1e3;
            step.lat_max_us = h.max() as f64 / 1e3;
        }
    }
    Ok((out, st.counters))
}

/// Sends `k` frames of one client; returns (sent, refused).
#[allow(clippy::too_many_arguments)]
#[inline]
fn send_frames(
    c: &mut Client,
    k: usize,
    step: u32,
    ts: u64,
    tx: &mut Batch,
    scratch: &mut [u8],
    gso: bool,
    counters: &mut Counters,
) -> (usize, usize) {
    let len = c.frame.bytes.len();
    let at = c.frame.payload_at;
    let idx = {
        let p = &c.frame.bytes[at..];
        u32::from_be_bytes([p[4], p[5], p[6], p[7]])
    };
    match &mut c.kind {
        Kind::Udp(_) if gso && k > 1 => {
            for j in 0..k {
                let f = &mut scratch[j * len..(j + 1) * len];
                f.copy_from_slice(&c.frame.bytes);
                req::stamp(&mut f[at..], idx, step, ts);
            }
            // One GSO send per `cap` frames: 64 frames of 1204 B would exceed the 64 kB
            // UDP limit and be refused whole. After a refusal (a full socket buffer) the rest
            // of the batch is counted as refused too.
            let cap = sys::gso_max_segments(len);
            let mut sent = 0;
            for chunk in scratch[..k * len].chunks(cap * len) {
                if !sys::send_gso(c.fd, chunk, len as u16) {
                    break;
                }
                sent += chunk.len() / len;
            }
            (sent, k - sent)
        }
        Kind::Udp(_) => {
            for j in 0..k {
                let f = &mut tx.slot_mut(j)[..len];
                f.copy_from_slice(&c.frame.bytes);
                req::stamp(&mut f[at..], idx, step, ts);
            }
            let n = tx.send(c.fd, k, len);
            (n, k - n)
        }
        Kind::Tcp(_) | Kind::Tls(..) => {
            if c.pending {
                return (0, k); // the previous frames are still waiting for the socket
            }
            for j in 0..k {
                let f = &mut scratch[j * len..(j + 1) * len];
                f.copy_from_slice(&c.frame.bytes);
                req::stamp(&mut f[at..], idx, step, ts);
            }
            let bytes = &scratch[..k * len];
            match &mut c.kind {
                Kind::Tcp(s) => match s.write(bytes) {
                    Ok(n) if n == bytes.len() => {}
                    Ok(n) => {
                        c.wbuf.extend_from_slice(&bytes[n..]);
                        c.pending = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        c.wbuf.extend_from_slice(bytes);
                        c.pending = true;
                    }
                    Err(_) => {
                        c.dead = true;
                        counters.stream_errors += 1;
                        return (0, k);
                    }
                },
                Kind::Tls(conn, s) => {
                    if conn.writer().write_all(bytes).is_err() {
                        c.dead = true;
                        counters.stream_errors += 1;
                        return (0, k);
                    }
                    if !flush_tls(conn, s) {
                        c.dead = true;
                        counters.stream_errors += 1;
                    } else if conn.wants_write() {
                        c.pending = true;
                    }
                }
                Kind::Udp(_) => {}
            }
            (k, 0)
        }
    }
}

/// Writes what rustls holds; false on a hard error.
fn flush_tls(conn: &mut ClientConnection, s: &mut TcpStream) -> bool {
    while conn.wants_write() {
        match conn.write_tls(s) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
    true
}

/// Retries pending stream writes; returns how many are still pending.
fn flush_all(clients: &mut [Client], counters: &mut Counters) -> usize {
    let mut still = 0;
    for c in clients.iter_mut().filter(|c| c.pending && !c.dead) {
        match &mut c.kind {
            Kind::Tcp(s) => match s.write(&c.wbuf) {
                Ok(n) => {
                    c.wbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    c.dead = true;
                    counters.stream_errors += 1;
                }
            },
            Kind::Tls(conn, s) => {
                if !flush_tls(conn, s) {
                    c.dead = true;
                    counters.stream_errors += 1;
                }
            }
            Kind::Udp(_) => {}
        }
        c.pending = match &c.kind {
            Kind::Tcp(_) => !c.wbuf.is_empty(),
            Kind::Tls(conn, _) => conn.wants_write(),
            Kind::Udp(_) => false,
        } && !c.dead;
        if c.pending {
            still += 1;
        }
    }
    still
}

#[allow(clippy::too_many_arguments)]
fn poll(
    ep: &Epoll,
    events: &mut [libc::epoll_event],
    timeout: i32,
    clients: &mut [Client],
    peers: &[UdpSocket],
    rx: &mut Batch,
    px: &mut Batch,
    st: &mut Stats,
    epoch: Instant,
    two_way: bool,
    gso: bool,
) -> Result<(), String> {
    let n = ep
        .wait(events, timeout)
        .map_err(|e| format!("epoll_wait: {e}"))?;
    let n_alloc = clients.len();
    for ev in &events[..n] {
        let token = ev.u64;
        if token >= PEER_TOKEN {
            let fd = peers[(token - PEER_TOKEN) as usize].as_raw_fd();
            // A few rounds per wake-up, then the others get their turn.
            for _ in 0..4 {
                let got = px
                    .recv(fd, px.len(), true)
                    .map_err(|e| format!("peer recvmmsg: {e}"))?;
                if got == 0 {
                    break;
                }
                let now = (Instant::now() - epoch).as_nanos() as u64;
                for i in 0..got {
                    st.arrived(px.received(i), now, true, two_way, n_alloc);
                }
                if two_way {
                    let echoed = if gso {
                        px.echo_gso(fd, got)
                    } else {
                        px.echo(fd, got)
                    };
                    st.counters.peer_echo_refused += (got - echoed) as u64;
                }
                if got < px.len() {
                    break;
                }
            }
            continue;
        }
        let c = &mut clients[token as usize];
        if c.dead {
            continue;
        }
        match &mut c.kind {
            Kind::Udp(_) => {
                for _ in 0..4 {
                    let got = rx
                        .recv(c.fd, rx.len(), false)
                        .map_err(|e| format!("client recvmmsg: {e}"))?;
                    if got == 0 {
                        break;
                    }
                    let now = (Instant::now() - epoch).as_nanos() as u64;
                    for i in 0..got {
                        match req::relayed_payload(rx.received(i)) {
                            Some(p) => st.arrived(p, now, false, two_way, n_alloc),
                            None => st.counters.malformed += 1,
                        }
                    }
                    if got < rx.len() {
                        break;
                    }
                }
            }
            Kind::Tcp(_) | Kind::Tls(..) => {
                if read_stream(c).is_err() {
                    c.dead = true;
                    st.counters.stream_errors += 1;
                }
                let now = (Instant::now() - epoch).as_nanos() as u64;
                // Split complete frames out of the buffer.
                loop {
                    let buf = &c.rbuf[c.rstart..c.rend];
                    match turnpike_stun::frame_len(buf) {
                        Ok(Some(len)) => {
                            match req::relayed_payload(&buf[..len]) {
                                Some(p) => st.arrived(p, now, false, two_way, n_alloc),
                                None => st.counters.malformed += 1,
                            }
                            c.rstart += len;
                        }
                        Ok(None) => break,
                        Err(_) => {
                            st.counters.malformed += 1;
                            c.dead = true;
                            break;
                        }
                    }
                }
                if c.rstart == c.rend {
                    c.rstart = 0;
                    c.rend = 0;
                } else if c.rstart > STREAM_RBUF / 2 {
                    c.rbuf.copy_within(c.rstart..c.rend, 0);
                    c.rend -= c.rstart;
                    c.rstart = 0;
                }
            }
        }
    }
    Ok(())
}

/// Reads what a stream has into its buffer (without blocking).
fn read_stream(c: &mut Client) -> io::Result<()> {
    match &mut c.kind {
        Kind::Tcp(s) => {
            while c.rend < c.rbuf.len() {
                match s.read(&mut c.rbuf[c.rend..]) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => c.rend += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        Kind::Tls(conn, s) => {
            for _ in 0..4 {
                match conn.read_tls(s) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
                conn.process_new_packets().map_err(io::Error::other)?;
                while c.rend < c.rbuf.len() {
                    match conn.reader().read(&mut c.rbuf[c.rend..]) {
                        Ok(0) => break,
                        Ok(n) => c.rend += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                if c.rend == c.rbuf.len() {
                    break;
                }
            }
        }
        Kind::Udp(_) => {}
    }
    Ok(())
}
