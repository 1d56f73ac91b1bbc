//! The file descriptor budget: the soft RLIMIT_NOFILE is raised to the hard limit at start, and
//! the caps on what outside parties can make the process hold (client TCP/TLS connections,
//! relay sockets, HTTP connections) are derived from it, so that a reserve of descriptors always
//! stays for the database, listeners, logs and health checks, whatever one source does.
//!
//! Split of the descriptors above the reserve: 40 % client TCP/TLS connections, 40 % relay
//! sockets (allocations), 20 % HTTP connections (API, console, signalling WebSockets). Any cap
//! set in the configuration wins over its derived value.

use std::io;

/// Descriptors kept for everything else: listeners (per worker), database pool, files.
const RESERVE_BASE: u64 = 64;

/// What the limit allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    /// The soft limit in force (after raising).
    pub limit: u64,
    /// The soft limit the process started with.
    pub started_with: u64,
    pub turn_connections: usize,
    pub turn_per_source: usize,
    pub relays: usize,
    pub http_connections: usize,
    pub http_per_source: usize,
}

/// Raises the soft limit to the hard limit; returns (before, after).
pub(crate) fn raise_nofile() -> io::Result<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = r.rlim_cur;
    if r.rlim_cur < r.rlim_max {
        r.rlim_cur = r.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, r.rlim_cur))
}

impl Budget {
    /// The caps a descriptor limit of `limit` allows with `workers` workers and `listeners`
    /// listening sockets per worker.
    pub(crate) fn derive(started_with: u64, limit: u64, workers: usize, listeners: usize) -> Self {
        let reserve = RESERVE_BASE + (workers * listeners) as u64;
        let avail = limit.saturating_sub(reserve).max(16);
        let clamp = |v: u64| usize::try_from(v).unwrap_or(usize::MAX).max(1);
        let turn = clamp(avail * 2 / 5);
        let http = clamp(avail / 5);
        Self {
            limit,
            started_with,
            turn_connections: turn,
            turn_per_source: (turn / 8).max(4),
            relays: clamp(avail * 2 / 5),
            http_connections: http,
            http_per_source: (http / 4).max(4),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_1024_limit_keeps_a_reserve_and_caps_one_source() {
        let b = Budget::derive(1024, 1024, 2, 8);
        assert!(b.turn_connections + b.relays + b.http_connections <= 1024 - 64);
        assert!(b.turn_per_source * 4 <= b.turn_connections);
        assert!(b.turn_connections >= 300, "{b:?}");
        let big = Budget::derive(1024, 1 << 20, 2, 8);
        assert!(big.turn_connections > 400_000);
    }
}

/// The caps in force: configured values, else derived from the [`Budget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caps {
    /// Live allocations on the node (0: unlimited).
    pub allocations: usize,
    /// Live allocations per user (0: unlimited).
    pub allocations_per_user: usize,
    /// Live allocations of a tenant without its own allocation quota (0: unlimited).
    pub tenant_allocations: usize,
    pub turn_connections: usize,
    pub turn_per_source: usize,
    pub http_connections: usize,
    pub http_per_source: usize,
}

impl Caps {
    /// Settles every cap. The relay capacity is the smaller of the port range and the
    /// allocation cap; by default no user may hold more than a quarter of it and no tenant
    /// more than half, so one credential cannot starve the others.
    pub(crate) fn resolve(cfg: &crate::config::Config, b: &Budget) -> Self {
        let allocations = cfg.max_allocations.unwrap_or(b.relays);
        let ports = usize::from(cfg.relay_port_max - cfg.relay_port_min) + 1;
        let capacity = if allocations == 0 {
            ports
        } else {
            ports.min(allocations)
        };
        let turn_connections = if cfg.max_connections == 0 {
            b.turn_connections
        } else {
            cfg.max_connections
        };
        let turn_per_source = if cfg.tcp_max_per_source == 0 {
            (turn_connections / 8).max(4)
        } else {
            cfg.tcp_max_per_source
        };
        let http_connections = if cfg.http_max_connections == 0 {
            b.http_connections
        } else {
            cfg.http_max_connections
        };
        Self {
            allocations,
            allocations_per_user: cfg
                .max_allocations_per_user
                .unwrap_or((capacity / 4).max(1)),
            tenant_allocations: cfg.tenant_max_allocations.unwrap_or((capacity / 2).max(1)),
            turn_connections,
            turn_per_source: turn_per_source.min(turn_connections),
            http_connections,
            http_per_source: b.http_per_source.min(http_connections),
        }
    }
}
