//! Holding allocations: what keeping N allocations alive costs the server. An idle phase
//! first (no requests: the server's timers and bookkeeping only), then a refreshing phase in
//! which every allocation sends a Refresh and renews its channel (or permission) once per
//! `--refresh-period`, spread evenly over the period. Server CPU (utime+stime from /proc) is
//! measured over each phase; the per-request cost is what the refreshing phase spent above the
//! idle rate, divided by the requests answered.

use std::time::{Duration, Instant};

use crate::procfs;
use crate::req::{self, Auth, Reply, Request};
use crate::setup::{self, Alloc};

/// Requests a client makes per allocation per second at the natural rate: a Refresh and a
/// channel (or permission) renewal every 300 s, as often as any common client does (libwebrtc
/// refreshes a 600 s allocation at 540 s and renews permissions every 4-5 minutes).
pub(crate) const NATURAL_REQUESTS_PER_ALLOCATION_PER_S: f64 = 2.0 / 300.0;

#[derive(serde::Serialize)]
pub(crate) struct HoldReport {
    pub(crate) allocations: usize,
    pub(crate) idle_secs: f64,
    /// Server CPU over the idle phase, % of one core.
    pub(crate) idle_cpu_pct: Option<f64>,
    pub(crate) refresh_secs: f64,
    pub(crate) refresh_period_secs: f64,
    pub(crate) requests: u64,
    pub(crate) request_errors: u64,
    pub(crate) requests_per_s: f64,
    /// Server CPU over the refreshing phase, % of one core.
    pub(crate) refresh_cpu_pct: Option<f64>,
    /// Server CPU per request above the idle rate, µs.
    pub(crate) cpu_us_per_request: Option<f64>,
    /// Idle cost plus the natural request rate at the measured per-request cost, % of one core.
    pub(crate) natural_cpu_pct: Option<f64>,
}

impl std::fmt::Display for HoldReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
        write!(
            f,
            "hold: {} allocations; idle {:.0} s: server CPU {} % of a core; refreshing {:.0} s \
             ({} requests, {} failed, {:.0}/s): {} %, {} µs per request; at the natural rate \
             ({NATURAL_REQUESTS_PER_ALLOCATION_PER_S:.4} requests per allocation per s): {} % \
             of a core",
            self.allocations,
            self.idle_secs,
            pct(self.idle_cpu_pct),
            self.refresh_secs,
            self.requests,
            self.request_errors,
            self.requests_per_s,
            pct(self.refresh_cpu_pct),
            self.cpu_us_per_request
                .map_or("-".into(), |v| format!("{v:.1}")),
            pct(self.natural_cpu_pct),
        )
    }
}

/// Holds `allocs` for `secs` idle, then `secs` refreshing each once per `period`.
pub(crate) fn hold(
    allocs: &mut [Alloc],
    secs: f64,
    period: f64,
    send_indications: bool,
    pid: Option<u32>,
) -> Result<HoldReport, String> {
    let cpu = || pid.and_then(procfs::cpu_seconds);
    let c0 = cpu();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let c1 = cpu();
    let idle_rate = c0.zip(c1).map(|(a, b)| (b - a) / secs);

    let n = allocs.len().max(1);
    let interval = Duration::from_secs_f64(period / n as f64);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let (mut requests, mut errors, mut counter) = (0u64, 0u64, 0u32);
    let mut buf = [0u8; 1024];
    let mut rbuf = Vec::new();
    let mut k = 0usize;
    while Instant::now() < end {
        let due = start + interval * k as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            if due >= end {
                break;
            }
            std::thread::sleep(wait);
        }
        let i = k % n;
        k += 1;
        let Some(a) = allocs.get_mut(i) else { break };
        let renew = if send_indications {
            Request::CreatePermission { peer: a.peer }
        } else {
            Request::ChannelBind {
                channel: a.channel,
                peer: a.peer,
            }
        };
        for r in [Request::Refresh { lifetime: 600 }, renew] {
            requests += 1;
            if !refresh_one(a, &r, &mut buf, &mut rbuf, i, &mut counter) {
                errors += 1;
            }
        }
    }
    let refresh_secs = start.elapsed().as_secs_f64();
    let c2 = cpu();
    let refresh_rate = c1.zip(c2).map(|(a, b)| (b - a) / refresh_secs);
    let per_request = idle_rate.zip(refresh_rate).and_then(|(idle, busy)| {
        let answered = requests.saturating_sub(errors);
        (answered > 0).then(|| (busy - idle) * refresh_secs / answered as f64 * 1e6)
    });
    let natural = idle_rate.zip(per_request).map(|(idle, us)| {
        (idle + us * 1e-6 * NATURAL_REQUESTS_PER_ALLOCATION_PER_S * allocs.len() as f64) * 100.0
    });
    Ok(HoldReport {
        allocations: allocs.len(),
        idle_secs: secs,
        idle_cpu_pct: idle_rate.map(|r| r * 100.0),
        refresh_secs,
        refresh_period_secs: period,
        requests,
        request_errors: errors,
        requests_per_s: requests as f64 / refresh_secs,
        refresh_cpu_pct: refresh_rate.map(|r| r * 100.0),
        cpu_us_per_request: per_request,
        natural_cpu_pct: natural,
    })
}

/// One authenticated request, renewing the nonce once on 438; true on success.
fn refresh_one(
    a: &mut Alloc,
    r: &Request,
    buf: &mut [u8],
    rbuf: &mut Vec<u8>,
    i: usize,
    counter: &mut u32,
) -> bool {
    for _ in 0..2 {
        let s = &a.session;
        let auth = Auth {
            user: &s.user,
            realm: &s.realm,
            nonce: &s.nonce,
            key: &s.key,
        };
        let t = setup::tid(u32::MAX, counter, i);
        let Ok(len) = req::write(buf, t, r, Some(&auth)) else {
            return false;
        };
        match setup::transact(&mut a.conn, rbuf, &buf[..len], &t) {
            Ok(Reply::Success { .. }) => return true,
            Ok(Reply::Challenge { nonce, .. }) => a.session.nonce = nonce,
            Ok(Reply::Error { .. }) | Err(_) => return false,
        }
    }
    false
}
