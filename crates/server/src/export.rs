//! Publishes a worker's counters to the `metrics` facade as deltas, once a second, so the
//! packet path only bumps plain integers. Label sets are fixed (direction x transport, drop
//! reason), so cardinality is bounded.

use metrics::{counter, gauge};
use turnpike_proto::{Direction, DropReason, Stats, Transport};

/// Describes the metrics once, for the exporter's HELP lines.
pub fn describe() {
    metrics::describe_gauge!("turnpike_allocations", "Live TURN allocations");
    metrics::describe_gauge!(
        "turnpike_tls_certificate_expiry_seconds",
        "When the served TLS certificate expires (unix seconds)"
    );
    metrics::describe_gauge!("turnpike_permissions", "Live permissions");
    metrics::describe_gauge!("turnpike_channels", "Live channel bindings");
    metrics::describe_counter!(
        "turnpike_relay_packets_total",
        "Relayed packets by direction and client transport"
    );
    metrics::describe_counter!(
        "turnpike_relay_bytes_total",
        "Relayed bytes by direction and client transport"
    );
    metrics::describe_counter!(
        "turnpike_dropped_packets_total",
        "Packets dropped without an answer, by reason"
    );
    metrics::describe_counter!(
        "turnpike_auth_failures_total",
        "Requests that failed authentication"
    );
    metrics::describe_counter!(
        "turnpike_stale_nonces_total",
        "Requests answered 438 Stale Nonce"
    );
    metrics::describe_counter!("turnpike_requests_total", "STUN/TURN requests received");
    metrics::describe_counter!("turnpike_error_responses_total", "Error responses sent");
    metrics::describe_counter!("turnpike_allocations_created_total", "Allocations created");
    metrics::describe_counter!(
        "turnpike_allocations_expired_total",
        "Allocations that timed out"
    );
    metrics::describe_counter!(
        "turnpike_allocations_deleted_total",
        "Allocations deleted by the client"
    );
    metrics::describe_counter!("turnpike_binding_requests_total", "STUN Binding requests");
    metrics::describe_gauge!(
        "turnpike_connections",
        "Client connections held, by listener kind (turn: TCP/TLS/shared port, http)"
    );
    metrics::describe_counter!(
        "turnpike_connections_refused_total",
        "Connections closed at accept by a cap, by listener kind and reason (total, per_source)"
    );
}

fn delta(now: u64, before: u64) -> u64 {
    now.saturating_sub(before)
}

/// Pushes the change from `last` to `now` and remembers `now`; returns the bytes sent out by
/// the relay since `last` (toward peers and toward clients).
pub(crate) fn publish(last: &mut Stats, now: &Stats) -> u64 {
    let mut sent = 0;
    for d in Direction::ALL {
        for t in Transport::ALL {
            let (di, ti) = (d as usize, t as usize);
            let p = delta(now.packets[di][ti], last.packets[di][ti]);
            if p > 0 {
                counter!("turnpike_relay_packets_total", "direction" => d.as_str(), "transport" => t.as_str()).increment(p);
                let b = delta(now.bytes[di][ti], last.bytes[di][ti]);
                if matches!(d, Direction::ServerToPeer | Direction::ServerToClient) {
                    sent += b;
                }
                counter!("turnpike_relay_bytes_total", "direction" => d.as_str(), "transport" => t.as_str()).increment(b);
            }
        }
    }
    for r in DropReason::ALL {
        let n = delta(now.dropped[r as usize], last.dropped[r as usize]);
        if n > 0 {
            counter!("turnpike_dropped_packets_total", "reason" => r.as_str()).increment(n);
        }
    }
    let pairs = [
        (
            "turnpike_auth_failures_total",
            now.auth_failures,
            last.auth_failures,
        ),
        (
            "turnpike_stale_nonces_total",
            now.stale_nonces,
            last.stale_nonces,
        ),
        ("turnpike_requests_total", now.requests, last.requests),
        (
            "turnpike_error_responses_total",
            now.error_responses,
            last.error_responses,
        ),
        (
            "turnpike_allocations_created_total",
            now.allocations_created,
            last.allocations_created,
        ),
        (
            "turnpike_allocations_expired_total",
            now.allocations_expired,
            last.allocations_expired,
        ),
        (
            "turnpike_allocations_deleted_total",
            now.allocations_deleted,
            last.allocations_deleted,
        ),
        (
            "turnpike_binding_requests_total",
            now.binding_requests,
            last.binding_requests,
        ),
    ];
    for (name, n, l) in pairs {
        counter!(name).increment(delta(n, l));
    }
    let gauges = [
        ("turnpike_allocations", now.allocations, last.allocations),
        ("turnpike_permissions", now.permissions, last.permissions),
        ("turnpike_channels", now.channels, last.channels),
    ];
    for (name, n, l) in gauges {
        gauge!(name).increment(n as f64 - l as f64);
    }
    *last = now.clone();
    sent
}
