//! turnload: a TURN load generator for comparing relays on one machine (issue 14).
//!
//! It makes N allocations over UDP, TCP or TLS with long-term credentials (a static or stored
//! user, or REST shared-secret usernames it mints), binds a channel (or permits a peer for Send
//! indications) towards echo peers it runs itself on 127.0.0.1, then offers a fixed packet rate
//! or an open-loop ramp of rates and reports, per step: offered, sent and delivered rates, loss,
//! latency percentiles (HDR histogram), and the server's CPU time and RSS from /proc.
//! `--setup-only` measures allocation setup rate and memory per allocation instead.

mod hold;
mod load;
mod procfs;
mod req;
mod setup;
mod sys;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::setup::{Creds, Plan, Transport};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
enum Direction {
    /// client -> relay -> peer; the peer counts deliveries and one-way latency.
    OneWay,
    /// client -> relay -> peer -> relay -> client; the client measures the round trip.
    TwoWay,
}

#[derive(Parser, Debug)]
#[command(name = "turnload", version, about)]
struct Args {
    /// The TURN server (UDP/TCP port, or the TLS port with --transport tls).
    #[arg(long, default_value = "127.0.0.1:3478")]
    server: SocketAddr,
    #[arg(long, value_enum, default_value = "udp")]
    transport: Transport,
    /// Server name for TLS (SNI and certificate check).
    #[arg(long, default_value = "localhost")]
    tls_name: String,
    /// PEM file of the certificate(s) to trust for TLS.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Accept any TLS certificate (for a self-signed test certificate). Never against a real server.
    #[arg(long)]
    insecure: bool,
    /// Number of allocations, each over its own socket or connection.
    #[arg(long, default_value_t = 100)]
    allocations: usize,
    /// ChannelBind and ChannelData (the default).
    #[arg(long, conflicts_with = "send")]
    channel: bool,
    /// CreatePermission and Send/Data indications instead of channels.
    #[arg(long)]
    send: bool,
    /// Payload bytes per packet (at least 24: the stamp; at most 1400).
    #[arg(long, default_value_t = 100)]
    size: usize,
    #[arg(long, value_enum, default_value = "two-way")]
    direction: Direction,
    /// Fixed total packet rate (packets per second, all allocations together) for --duration.
    #[arg(long, conflicts_with = "ramp")]
    rate: Option<u64>,
    /// Open-loop ramp START:STEP:END (packets per second), each step lasting --step-secs.
    #[arg(long)]
    ramp: Option<String>,
    #[arg(long, default_value_t = 5.0)]
    step_secs: f64,
    /// Length of a --rate run, seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Make the allocations, report setup rate and server RSS per allocation, and stop.
    #[arg(long)]
    setup_only: bool,
    /// After setup, hold the allocations: SECS idle, then SECS refreshing each once per
    /// --refresh-period (Refresh and a channel/permission renewal); reports the server's CPU
    /// in each phase, per request, and at the natural refresh rate. No data is sent.
    #[arg(long, conflicts_with_all = ["rate", "ramp", "setup_only"])]
    hold: Option<f64>,
    /// Seconds in which every allocation is refreshed once during --hold (default: the hold).
    #[arg(long, requires = "hold")]
    refresh_period: Option<f64>,
    /// Username (static or stored credential), or the user part of REST usernames with --secret.
    #[arg(long, default_value = "u")]
    user: String,
    #[arg(long)]
    password: Option<String>,
    /// REST API shared secret: usernames `expiry:USER-N` and HMAC-SHA1 passwords are minted.
    #[arg(long)]
    secret: Option<String>,
    /// Lifetime of minted REST usernames, seconds.
    #[arg(long, default_value_t = 3600)]
    secret_ttl: u64,
    /// The server's process id, for CPU (utime+stime) and RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A label copied into the JSON and the table (e.g. the server's name).
    #[arg(long, default_value = "")]
    label: String,
    /// Echo peer sockets (allocation i uses peer i mod P).
    #[arg(long, default_value_t = 4)]
    peers: usize,
    /// Frames per sendmmsg (per socket) in one go.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// UDP GSO (UDP_SEGMENT): a batch to one socket as one send, and the peers echo each run of
    /// datagrams from one relay address as one segmented message.
    #[arg(long)]
    gso: bool,
    /// Threads making allocations at once.
    #[arg(long, default_value_t = 16)]
    setup_threads: usize,
    /// After the last step, how long to wait for late packets, seconds.
    #[arg(long, default_value_t = 0.5)]
    drain_secs: f64,
    /// Spread UDP clients over this many loopback source addresses (127.1.0.1, 127.1.0.2, ...), as
    /// real clients come from many: a server's per-source limits (Turnpike's byte budget for
    /// unauthenticated answers) then see many sources. 0: every client on 127.0.0.1.
    #[arg(long, default_value_t = 64)]
    source_ips: usize,
    /// Socket buffer size for client and peer sockets, bytes.
    #[arg(long, default_value_t = 4 << 20)]
    sock_buf: usize,
}

#[derive(serde::Serialize)]
struct SetupReport {
    allocations: usize,
    secs: f64,
    allocations_per_s: f64,
    server_cpu_s: Option<f64>,
    server_rss_before_kb: Option<u64>,
    server_rss_after_kb: Option<u64>,
    server_rss_per_allocation_kb: Option<f64>,
}

#[derive(serde::Serialize)]
struct Report<'a> {
    label: &'a str,
    server: SocketAddr,
    transport: Transport,
    mode: &'static str,
    direction: Direction,
    size: usize,
    allocations: usize,
    gso: bool,
    setup: SetupReport,
    steps: Vec<load::Step>,
    counters: Option<load::Counters>,
    hold: Option<hold::HoldReport>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("turnload: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_ramp(s: &str) -> Result<Vec<u64>, String> {
    let p: Vec<u64> = s
        .split(':')
        .map(|x| x.trim().parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("--ramp {s}: expected START:STEP:END in packets per second"))?;
    let [start, step, end] = p[..] else {
        return Err(format!("--ramp {s}: expected START:STEP:END"));
    };
    if step == 0 || start == 0 || end < start {
        return Err(format!(
            "--ramp {s}: need START > 0, STEP > 0, END >= START"
        ));
    }
    let rates: Vec<u64> = (0..)
        .map(|i| start + i * step)
        .take_while(|r| *r <= end)
        .collect();
    if rates.len() > 100 {
        return Err(format!("--ramp {s}: more than 100 steps"));
    }
    Ok(rates)
}

fn tls_config(args: &Args) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let cfg = if args.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth()
    } else {
        let ca = args.ca.as_ref().ok_or(
            "--transport tls needs --ca FILE (or --insecure for a throw-away test certificate)",
        )?;
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
            let c = c.map_err(|e| format!("{}: {e}", ca.display()))?;
            roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(cfg))
}

/// Accepts any server certificate but still checks the handshake signatures (--insecure).
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn run(args: &Args) -> Result<(), String> {
    if !(req::STAMP_LEN..=1400).contains(&args.size) {
        return Err(format!("--size {}: must be 24..=1400", args.size));
    }
    if args.allocations == 0 || args.allocations > 50_000 {
        return Err("--allocations must be 1..=50000".into());
    }
    if !(args.step_secs > 0.0
        && args.step_secs <= 600.0
        && args.duration > 0.0
        && args.duration <= 600.0)
    {
        return Err("--step-secs and --duration must be in (0, 600]".into());
    }
    let (rates, step_secs) = match (&args.rate, &args.ramp) {
        (Some(r), None) => (vec![*r], args.duration),
        (None, Some(s)) => (parse_ramp(s)?, args.step_secs),
        (None, None) if args.setup_only || args.hold.is_some() => (vec![], 0.0),
        _ => return Err("give --rate PPS, --ramp START:STEP:END or --setup-only".into()),
    };
    if rates.len() as f64 * step_secs > 1800.0 {
        return Err("the run would last more than 30 minutes".into());
    }
    let creds = match (&args.secret, &args.password) {
        (Some(s), None) => Creds::Secret {
            secret: s.clone(),
            user: args.user.clone(),
            ttl: args.secret_ttl,
        },
        (None, Some(p)) => Creds::Static {
            user: args.user.clone(),
            password: p.clone(),
        },
        _ => return Err("give either --password or --secret".into()),
    };
    let tls = if args.transport == Transport::Tls {
        let name =
            ServerName::try_from(args.tls_name.clone()).map_err(|e| format!("--tls-name: {e}"))?;
        Some((tls_config(args)?, name))
    } else {
        None
    };
    // Echo peers on loopback.
    let mut peers = Vec::new();
    for _ in 0..args.peers.clamp(1, 64) {
        let p = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("peer bind: {e}"))?;
        sys::set_buffers(p.as_raw_fd(), args.sock_buf.max(8 << 20));
        peers.push(p);
    }
    let peer_addrs = peers
        .iter()
        .map(|p| p.local_addr())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let plan = Plan {
        server: args.server,
        transport: args.transport,
        tls,
        creds,
        send_indications: args.send,
        peers: peer_addrs,
        sock_buf: args.sock_buf,
        source_ips: args.source_ips.min(60_000),
    };
    let pid = args.server_pid;
    let rss0 = pid.and_then(procfs::rss_kb);
    let cpu0 = pid.and_then(procfs::cpu_seconds);
    let t0 = Instant::now();
    let allocs = setup::make_all(&plan, args.allocations, args.setup_threads)?;
    let secs = t0.elapsed().as_secs_f64();
    let cpu1 = pid.and_then(procfs::cpu_seconds);
    let rss1 = pid.and_then(procfs::rss_kb);
    let setup = SetupReport {
        allocations: allocs.len(),
        secs,
        allocations_per_s: allocs.len() as f64 / secs,
        server_cpu_s: cpu0.zip(cpu1).map(|(a, b)| b - a),
        server_rss_before_kb: rss0,
        server_rss_after_kb: rss1,
        server_rss_per_allocation_kb: rss0
            .zip(rss1)
            .map(|(a, b)| (b as f64 - a as f64) / allocs.len() as f64),
    };
    eprintln!(
        "setup: {} allocations in {:.2} s ({:.0}/s), server RSS {} -> {} kB",
        setup.allocations,
        setup.secs,
        setup.allocations_per_s,
        rss0.map_or("-".into(), |v| v.to_string()),
        rss1.map_or("-".into(), |v| v.to_string())
    );
    let mut steps = Vec::new();
    let mut counters = None;
    let mut held = None;
    let mut allocs = allocs;
    if let Some(secs) = args.hold {
        if !(secs > 0.0 && secs <= 600.0) {
            return Err("--hold must be in (0, 600]".into());
        }
        let period = args.refresh_period.unwrap_or(secs);
        if !(period > 0.0 && period <= 3600.0) {
            return Err("--refresh-period must be in (0, 3600]".into());
        }
        let h = hold::hold(&mut allocs, secs, period, args.send, pid)?;
        eprintln!("{h}");
        held = Some(h);
    } else if !args.setup_only {
        let pad = args.transport != Transport::Udp;
        let frames = allocs
            .iter()
            .enumerate()
            .map(|(i, a)| req::Frame::new(args.send, a.channel, a.peer, args.size, i as u32, pad))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(a) = allocs.first() {
            eprintln!("first relay address {}, peer {}", a.relay, a.peer);
        }
        let cfg = load::Config {
            rates,
            step_secs,
            drain_secs: args.drain_secs.clamp(0.0, 10.0),
            batch: args.batch,
            two_way: args.direction == Direction::TwoWay,
            gso: args.gso,
            server_pid: pid,
        };
        let (s, c) = load::run(&cfg, allocs, frames, &peers)?;
        steps = s;
        counters = Some(c);
    }
    let report = Report {
        label: &args.label,
        server: args.server,
        transport: args.transport,
        mode: if args.send { "send" } else { "channel" },
        direction: args.direction,
        size: args.size,
        allocations: args.allocations,
        gso: args.gso,
        setup,
        steps,
        counters,
        hold: held,
    };
    print_table(&report);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.prec$}"))
}

fn print_table(r: &Report<'_>) {
    println!(
        "{} {:?} {} {:?} {} B, {} allocations: setup {:.0}/s, RSS/allocation {} kB",
        r.label,
        r.transport,
        r.mode,
        r.direction,
        r.size,
        r.allocations,
        r.setup.allocations_per_s,
        opt(r.setup.server_rss_per_allocation_kb, 1)
    );
    if r.steps.is_empty() {
        return;
    }
    let lat = r.steps[0].latency;
    println!(
        "{:>9} {:>9} {:>10} {:>7} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9}",
        "offered/s",
        "sent/s",
        "deliver/s",
        "loss%",
        &format!("{lat} p50"),
        "p99 µs",
        "p99.9 µs",
        "srv CPU",
        "µs/dgram",
        "RSS MB"
    );
    for s in &r.steps {
        println!(
            "{:>9} {:>9.0} {:>10.0} {:>7.3} {:>9.1} {:>9.1} {:>9.1} {:>8} {:>9} {:>9}",
            s.offered_pps,
            s.sent_pps,
            s.delivered_pps,
            s.loss_pct,
            s.lat_p50_us,
            s.lat_p99_us,
            s.lat_p999_us,
            opt(s.server_cpu_s, 2),
            opt(s.cpu_us_per_datagram, 2),
            opt(s.server_rss_kb.map(|k| k as f64 / 1024.0), 1)
        );
    }
    if let Some(c) = &r.counters {
        if c.malformed + c.peer_echo_refused + c.stream_errors > 0 {
            println!(
                "malformed {} | peer echo refused {} | stream errors {}",
                c.malformed, c.peer_echo_refused, c.stream_errors
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ramps() {
        assert_eq!(super::parse_ramp("10:10:40").unwrap(), vec![10, 20, 30, 40]);
        assert_eq!(super::parse_ramp("10:15:40").unwrap(), vec![10, 25, 40]);
        assert!(super::parse_ramp("10:0:40").is_err());
        assert!(super::parse_ramp("40:10:10").is_err());
        assert!(super::parse_ramp("1:1:1000").is_err()); // more than 100 steps
        assert!(super::parse_ramp("a:b").is_err());
    }
}
