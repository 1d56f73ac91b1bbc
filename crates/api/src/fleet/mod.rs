//! The fleet: nodes sharing one database, each registered with its region, addresses and load
//! (its heartbeat, every `heartbeat` seconds), and clients sent to the nearest healthy one.
//!
//! What it does: keep this node's row current ([`run`]), keep a copy of every node's row for
//! routing, answer which nodes an ICE list names ([`route`], [`ice_servers`]), tell the relay
//! where to send clients while this node drains or is full ([`turnpike_proto::Alternates`]).
//! What it does not do: move allocations between nodes (a client keeps its node until it asks
//! again), or replace a load balancer for the API itself.

pub mod geo;
pub mod geoip;
pub mod route;
pub mod settings;
pub mod view;

pub use settings::FleetConfig;
pub use view::Fleet;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use turnpike_proto::{AlternateNode, Alternates, Runtime};
use turnpike_store::{NodeRecord, Store};

use crate::ice::IceServer;
use crate::state::AppState;
pub use route::RouteError;
use route::Want;

/// A node an ICE list names.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// The answering node (its listeners, as it knows them best).
    Local,
    Remote(Box<NodeRecord>),
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the last address
/// of `X-Forwarded-For` that is not a trusted proxy.
pub fn client_ip(state: &AppState, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let trusted = |ip: &IpAddr| {
        state
            .cfg
            .fleet
            .trusted_proxies
            .iter()
            .any(|n| n.contains(ip))
    };
    if !trusted(&peer) {
        return Some(peer);
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect();
    Some(
        hops.iter()
            .rev()
            .find(|ip| !trusted(ip))
            .copied()
            .unwrap_or(peer),
    )
}

/// The nodes an ICE list for a client at `client` names, best first: see [`route`]. With no
/// registry (a node that has not written its first heartbeat) or no healthy node, this node,
/// unless the tenant's `allowed` regions exclude it (then [`RouteError::Unavailable`]).
pub fn targets(
    state: &AppState,
    client: Option<IpAddr>,
    region: Option<&str>,
    allowed: Option<&[String]>,
) -> Result<Vec<Target>, RouteError> {
    let home = &state.cfg.fleet.region;
    let fallback = || match allowed {
        Some(a) if !a.contains(home) => Err(RouteError::Unavailable(a.to_vec())),
        _ => Ok(vec![Target::Local]),
    };
    let nodes = state.fleet.nodes();
    if nodes.is_empty() {
        return match region {
            Some(r) if r != home.as_str() => Err(RouteError::UnknownRegion(vec![home.clone()])),
            _ => fallback(),
        };
    }
    let place = client
        .zip(state.cfg.fleet.geoip.as_ref())
        .and_then(|(ip, g)| g.locate(ip))
        .map(|l| l.place);
    let want = Want {
        region,
        allowed,
        client: place,
        home,
        fallbacks: state.cfg.fleet.fallback_regions,
        this_node: Some(&state.node_id),
    };
    let chosen = route::choose(&nodes, now_ms(), &want)?;
    if chosen.is_empty() {
        // No healthy node: this one, unless it refuses allocations itself (draining or full:
        // naming it would only get the client a 508). Its row may merely be stale while the
        // database is unreachable; then it still serves.
        let local = fallback()?;
        let refuses = nodes
            .iter()
            .find(|n| n.id == state.node_id)
            .is_some_and(|n| {
                route::alive(n, now_ms())
                    && (n.draining || (n.capacity > 0 && n.allocations >= n.capacity))
            });
        if refuses {
            return Err(RouteError::NoHealthyNode);
        }
        return Ok(local);
    }
    Ok(chosen
        .into_iter()
        .map(|n| {
            if n.id == state.node_id {
                Target::Local
            } else {
                Target::Remote(Box::new(n.clone()))
            }
        })
        .collect())
}

/// The regions `tenant`'s ICE lists may name (`None`: any), as the relay knows them (the
/// directory: the tenant's own list narrowed by its parent's, current through the change feed).
pub fn allowed_regions(state: &AppState, tenant: &turnpike_store::TenantId) -> Option<Vec<String>> {
    state
        .directory
        .load()
        .tenant_regions
        .get(tenant.as_str())
        .cloned()
}

/// Where a stopping node's signalling participants of `tenant` reconnect: the signalling URL
/// of the best other healthy node in a region the tenant may use (`None`: there is none; they
/// are told to reconnect without a URL).
pub fn signal_url_for(state: &AppState, tenant: &str) -> Option<String> {
    let allowed = allowed_regions(state, &turnpike_store::TenantId::from(tenant));
    let Some(allowed) = allowed else {
        return state.fleet.alternate().and_then(|n| n.signal_url);
    };
    let others: Vec<NodeRecord> = state
        .fleet
        .nodes()
        .iter()
        .filter(|n| n.id != state.node_id)
        .cloned()
        .collect();
    let want = Want {
        home: &state.cfg.fleet.region,
        client: state.cfg.fleet.location,
        allowed: Some(&allowed),
        ..Want::default()
    };
    route::rank_all(&others, now_ms(), &want)
        .into_iter()
        .find_map(|n| n.signal_url.clone())
}

/// The ICE servers of `targets` carrying `username` and `credential`: per node a STUN entry
/// and a TURN entry. `host`: the address to name for this node instead of its public host.
pub fn ice_servers(
    state: &AppState,
    targets: &[Target],
    host: Option<&str>,
    username: &str,
    credential: &str,
) -> Vec<IceServer> {
    let mut out = Vec::new();
    for t in targets {
        match t {
            Target::Local => out.extend(crate::ice::ice_servers(
                host.or(state.cfg.public_host.as_deref()),
                &state.cfg.listeners,
                username,
                credential,
                false,
            )),
            Target::Remote(n) => {
                let (stun, turn): (Vec<String>, Vec<String>) =
                    n.urls.iter().cloned().partition(|u| u.starts_with("stun:"));
                if !stun.is_empty() {
                    out.push(IceServer {
                        urls: stun,
                        username: None,
                        credential: None,
                    });
                }
                if !turn.is_empty() {
                    out.push(IceServer {
                        urls: turn,
                        username: Some(username.into()),
                        credential: Some(credential.into()),
                    });
                }
            }
        }
    }
    out
}

/// The addresses this node's listeners are bound to (from the driver, after start), per
/// transport, and what stands in for a wildcard address in ALTERNATE-SERVER.
#[derive(Debug, Clone, Default)]
pub struct NodeAddresses {
    pub udp: Vec<SocketAddr>,
    /// TCP listeners (and the shared port's plain STUN/TURN).
    pub tcp: Vec<SocketAddr>,
    /// TLS listeners (and the shared port).
    pub tls: Vec<SocketAddr>,
    pub dtls: Vec<SocketAddr>,
    /// The node's external addresses (`external_ipv4`, `external_ipv6`, or discovered): they
    /// name a wildcard listener. The public host is resolved in addition when it is a name.
    pub external: Vec<IpAddr>,
}

/// How a node's listener addresses are written in its registry row: `transport:ip:port` in
/// `addresses` (`udp:`, `tcp:`, `dtls:`), `ip:port` in `tls_addresses`. A bare `ip:port` in
/// `addresses` (a row written before transports were told apart) serves UDP and TCP.
fn listener_entries(addrs: &NodeAddresses, external: &[IpAddr]) -> (Vec<String>, Vec<String>) {
    let mut plain = Vec::new();
    for (kind, list) in [
        ("udp", &addrs.udp),
        ("tcp", &addrs.tcp),
        ("dtls", &addrs.dtls),
    ] {
        plain.extend(
            nameable(list, external)
                .iter()
                .map(|a| format!("{kind}:{a}")),
        );
    }
    let tls = nameable(&addrs.tls, external)
        .iter()
        .map(ToString::to_string)
        .collect();
    (plain, tls)
}

/// A registry row's listeners per transport (indexed by `Transport as usize`).
pub fn listeners_of(n: &NodeRecord) -> [Vec<SocketAddr>; 4] {
    use turnpike_proto::Transport;
    let mut out: [Vec<SocketAddr>; 4] = Default::default();
    for entry in &n.addresses {
        let (kinds, addr): (&[Transport], &str) = match entry.split_once(':') {
            Some(("udp", a)) => (&[Transport::Udp], a),
            Some(("tcp", a)) => (&[Transport::Tcp], a),
            Some(("dtls", a)) => (&[Transport::Dtls], a),
            _ => (&[Transport::Udp, Transport::Tcp], entry.as_str()),
        };
        if let Ok(a) = addr.parse::<SocketAddr>() {
            for k in kinds {
                out[*k as usize].push(a);
            }
        }
    }
    out[Transport::Tls as usize] = n
        .tls_addresses
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    out
}

/// Process CPU time (utime + stime) in seconds, from `/proc/self/stat` (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let Some(rest) = s.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the name; USER_HZ
    // is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// Listener addresses with a wildcard IP replaced by the node's external addresses of its
/// family (a wildcard with none cannot be named in ALTERNATE-SERVER and is left out; `run`
/// warns about it).
fn nameable(addrs: &[SocketAddr], external: &[IpAddr]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for a in addrs {
        if a.ip().is_unspecified() {
            out.extend(
                external
                    .iter()
                    .filter(|ip| ip.is_ipv4() == a.is_ipv4())
                    .map(|ip| SocketAddr::new(*ip, a.port())),
            );
        } else {
            out.push(*a);
        }
    }
    out.dedup();
    out
}

/// The addresses standing in for this node's wildcard listeners: the configured or discovered
/// external addresses, the public host when it is an IP literal, else what it resolves to
/// (bounded by a timeout: the heartbeat must start without DNS).
async fn external_addresses(addrs: &NodeAddresses, public_host: Option<&str>) -> Vec<IpAddr> {
    let mut out = addrs.external.clone();
    if let Some(h) = public_host {
        match h.parse::<IpAddr>() {
            Ok(ip) => out.push(ip),
            Err(_) => {
                let lookup = tokio::net::lookup_host((h, 0));
                match tokio::time::timeout(Duration::from_secs(5), lookup).await {
                    Ok(Ok(found)) => out.extend(found.map(|a| a.ip())),
                    Ok(Err(e)) => {
                        tracing::warn!(public_host = h, error = %e, "cannot resolve public_host for the node registry");
                    }
                    Err(_) => {
                        tracing::warn!(
                            public_host = h,
                            "resolving public_host for the node registry timed out"
                        );
                    }
                }
            }
        }
    }
    out.retain(|ip| !ip.is_unspecified());
    out.sort();
    out.dedup();
    out
}

/// How long a dead node's row stays listed (and `turnpike_fleet_nodes{state="dead"}` counts
/// it, so the dead-node alert fires) before the registry forgets it.
pub const DEAD_ROW_RETENTION: Duration = Duration::from_secs(3600);

/// The longest a heartbeat's database round trip may take before it counts as failed (a hung
/// connection must not stop routing updates or the node's shutdown).
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// Heartbeats: writes this node's row every `heartbeat` (and at once when it starts to
/// drain), reads every node's row for routing, tells the relay its alternates, prunes rows
/// silent for [`DEAD_ROW_RETENTION`]; at `stop`, removes its row.
pub async fn run(
    state: Arc<AppState>,
    rt: Arc<Runtime>,
    addrs: NodeAddresses,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let cfg = state.cfg.fleet.clone();
    let urls: Vec<String> =
        crate::ice::urls(state.cfg.public_host.as_deref(), &state.cfg.listeners).concat();
    let external = external_addresses(&addrs, state.cfg.public_host.as_deref()).await;
    let wildcards: Vec<SocketAddr> = [&addrs.udp, &addrs.tcp, &addrs.tls, &addrs.dtls]
        .into_iter()
        .flatten()
        .filter(|a| {
            a.ip().is_unspecified() && !external.iter().any(|ip| ip.is_ipv4() == a.is_ipv4())
        })
        .copied()
        .collect();
    if !wildcards.is_empty() {
        tracing::warn!(
            listeners = ?wildcards,
            "wildcard listeners with no external address of their family: other nodes cannot send clients to them with 300 Try Alternate (set external_ipv4 / external_ipv6, or an IP or resolvable public_host)"
        );
    }
    let (addresses, tls_addresses) = listener_entries(&addrs, &external);
    let started_at = state.now();
    let mut me = NodeRecord {
        id: state.node_id.clone(),
        name: cfg.node_name.clone(),
        region: cfg.region.clone(),
        latitude: cfg.location.map(|p| p.lat),
        longitude: cfg.location.map(|p| p.lon),
        version: cfg.version.clone(),
        urls,
        addresses,
        tls_addresses,
        tls_domain: cfg.tls_domain.clone(),
        signal_url: cfg.signal_url.clone(),
        started_at,
        heartbeat_ms: 0,
        interval_ms: cfg.heartbeat.as_millis() as i64,
        draining: false,
        allocations: 0,
        capacity: rt.quota.max_total as i64,
        relayed_bps: 0,
        cpu_percent: 0.0,
    };
    let mut last = (
        std::time::Instant::now(),
        rt.relayed_bytes.load(std::sync::atomic::Ordering::Relaxed),
        cpu_seconds(),
    );
    let mut next_beat = tokio::time::Instant::now();
    let mut last_prune = 0i64;
    let mut failing = false;
    let mut observed = route::Observed::default();
    loop {
        let draining_now = rt.is_draining();
        if tokio::time::Instant::now() >= next_beat || draining_now != me.draining {
            next_beat = tokio::time::Instant::now() + cfg.heartbeat;
            let now = std::time::Instant::now();
            let bytes = rt.relayed_bytes.load(std::sync::atomic::Ordering::Relaxed);
            let cpu = cpu_seconds();
            let dt = now.duration_since(last.0).as_secs_f64();
            if dt > 0.2 {
                me.relayed_bps = ((bytes.saturating_sub(last.1)) as f64 * 8.0 / dt) as i64;
                me.cpu_percent = ((cpu - last.2) / dt * 100.0).max(0.0);
                last = (now, bytes, cpu);
            }
            me.draining = draining_now;
            me.allocations = rt.quota.total() as i64;
            me.heartbeat_ms = now_ms();
            let result = tokio::time::timeout(STORE_TIMEOUT, beat(&state, &me, &mut last_prune))
                .await
                .unwrap_or_else(|_| Err("no answer from the database within 5 s".to_string()));
            match result {
                Ok(nodes) => {
                    if failing {
                        tracing::info!("node registry reachable again");
                        failing = false;
                    }
                    let nodes = observed.apply(nodes, now_ms(), cfg.heartbeat.as_millis() as i64);
                    publish(&state, &rt, &me, nodes);
                }
                Err(e) => {
                    metrics::counter!("turnpike_fleet_heartbeat_failures_total").increment(1);
                    if !failing {
                        tracing::warn!(error = %e, "node heartbeat failed; routing uses the last read of the registry");
                        failing = true;
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.changed() => break,
        }
    }
    match tokio::time::timeout(STORE_TIMEOUT, state.store.delete_node(&me.id)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not remove this node from the registry"),
        Err(_) => tracing::warn!("could not remove this node from the registry: no answer within 5 s (other nodes see it dead after three heartbeats)"),
    }
}

/// One heartbeat: this node's row written, every row read, old rows pruned once a minute.
async fn beat(
    state: &AppState,
    me: &NodeRecord,
    last_prune: &mut i64,
) -> Result<Vec<NodeRecord>, String> {
    state.store.put_node(me).await.map_err(|e| e.to_string())?;
    if me.heartbeat_ms - *last_prune > 60_000 {
        *last_prune = me.heartbeat_ms;
        let gone = state
            .store
            .prune_nodes(me.heartbeat_ms - DEAD_ROW_RETENTION.as_millis() as i64)
            .await
            .map_err(|e| e.to_string())?;
        if gone > 0 {
            tracing::info!(gone, "removed nodes silent for an hour from the registry");
        }
    }
    state.store.list_nodes().await.map_err(|e| e.to_string())
}

/// Keeps the registry's rows for routing, counts nodes by state, and names the relay's
/// alternate: the best other healthy node for a client of this node's region.
fn publish(state: &AppState, rt: &Runtime, me: &NodeRecord, nodes: Vec<NodeRecord>) {
    let now = me.heartbeat_ms;
    let (mut healthy, mut unavailable, mut dead) = (0u32, 0u32, 0u32);
    for n in &nodes {
        if route::healthy(n, now) {
            healthy += 1;
        } else if route::alive(n, now) {
            unavailable += 1;
        } else {
            dead += 1;
        }
    }
    metrics::gauge!("turnpike_fleet_nodes", "state" => "healthy").set(f64::from(healthy));
    metrics::gauge!("turnpike_fleet_nodes", "state" => "unavailable").set(f64::from(unavailable));
    metrics::gauge!("turnpike_fleet_nodes", "state" => "dead").set(f64::from(dead));
    let others: Vec<NodeRecord> = nodes.iter().filter(|n| n.id != me.id).cloned().collect();
    // Every healthy node for a client standing where this node is: its region first, then the
    // nearest, least loaded first within a region. The relay picks the first its client may
    // use (its tenant's allowed regions; this region only before authentication).
    let want = Want {
        home: &me.region,
        client: me
            .latitude
            .zip(me.longitude)
            .map(|(lat, lon)| geo::Place { lat, lon }),
        ..Want::default()
    };
    let ranked = route::rank_all(&others, now, &want);
    let alt = ranked.first().map(|n| (*n).clone());
    rt.set_alternates(Alternates {
        region: me.region.clone(),
        tls_domain: me.tls_domain.as_deref().map(Into::into),
        nodes: ranked
            .iter()
            .map(|n| AlternateNode {
                region: n.region.clone(),
                listeners: listeners_of(n),
                tls_domain: n.tls_domain.as_deref().map(Into::into),
            })
            .collect(),
    });
    state.fleet.set(nodes, alt);
}
