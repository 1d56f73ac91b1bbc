//! Which nodes a client is sent to: a pure function of the registry (as last read), the time,
//! the client's place and what it asked for.
//!
//! A node is *healthy* while its heartbeat is at most three of its intervals old, it is not
//! draining and it is below its capacity. Regions are ordered: an explicit region first (it
//! must be known: one with a registered node); otherwise by distance from the client's place
//! (GeoIP) to each region's place; without a client place, the answering node's region first,
//! then by distance from it. A tenant's allowed regions, when set, filter the list. The first
//! `1 + fallbacks` regions with a healthy node each give their least loaded node (allocations
//! relative to capacity; ties by fewer allocations, then the answering node, then id).

use std::collections::BTreeMap;

use turnpike_store::NodeRecord;

use super::geo::Place;

/// Heartbeats a node may miss before it is dead for routing.
pub const MISSED_HEARTBEATS: i64 = 3;

/// Allocations a node without a configured capacity is taken to hold at full load (for the
/// load ratio only; such a node is never full).
const UNCAPPED: f64 = 1_000_000.0;

/// What the client asked for, and where it is.
#[derive(Debug, Clone, Default)]
pub struct Want<'a> {
    /// `region=`: this region first.
    pub region: Option<&'a str>,
    /// The tenant's allowed regions (`None`: any).
    pub allowed: Option<&'a [String]>,
    /// Where the client is (GeoIP), if known.
    pub client: Option<Place>,
    /// The answering node's region (the default when the client's place is unknown).
    pub home: &'a str,
    /// Regions to add after the first.
    pub fallbacks: usize,
    /// The answering node's id: preferred among equally loaded nodes of a region.
    pub this_node: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// `region=` names no registered region (or one the tenant may not use): the known ones.
    UnknownRegion(Vec<String>),
    /// The tenant may use only these regions and none has a healthy node.
    Unavailable(Vec<String>),
    /// No node is healthy, and this one refuses allocations (draining or full).
    NoHealthyNode,
}

/// Whether `n` may be handed to clients at `now_ms`.
pub fn healthy(n: &NodeRecord, now_ms: i64) -> bool {
    alive(n, now_ms) && !n.draining && (n.capacity <= 0 || n.allocations < n.capacity)
}

/// Whether `n`'s heartbeat is recent enough (at most [`MISSED_HEARTBEATS`] intervals old).
pub fn alive(n: &NodeRecord, now_ms: i64) -> bool {
    now_ms - n.heartbeat_ms <= MISSED_HEARTBEATS * n.interval_ms.max(1)
}

/// Every healthy node, best first: regions in [`choose`]'s order, and within a region its
/// least loaded node first, then the others by load (so a redirect can still name a node of a
/// region whose best node lacks the client's transport or address family).
pub fn rank_all<'n>(nodes: &'n [NodeRecord], now_ms: i64, want: &Want<'_>) -> Vec<&'n NodeRecord> {
    let want = Want {
        fallbacks: usize::MAX,
        ..want.clone()
    };
    let Ok(best) = choose(nodes, now_ms, &want) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for b in best {
        out.push(b);
        let mut rest: Vec<&NodeRecord> = nodes
            .iter()
            .filter(|n| n.region == b.region && n.id != b.id && healthy(n, now_ms))
            .filter(|n| want.allowed.is_none_or(|a| a.contains(&n.region)))
            .collect();
        rest.sort_by(|x, y| by_load(x, y, want.this_node));
        out.extend(rest);
    }
    out
}

/// When each node's heartbeat was last seen to change, on this node's clock: liveness is
/// judged by it, so a node whose clock runs ahead or behind is neither kept alive nor taken
/// for dead by the skew (a row's `heartbeat_ms` is written on its own node's clock).
#[derive(Debug, Default)]
pub struct Observed {
    /// Node id: (its last heartbeat value, when we saw it change).
    seen: std::collections::HashMap<String, (i64, i64)>,
}

impl Observed {
    /// `nodes` with `heartbeat_ms` replaced by when this node saw it change (`now_ms`, on this
    /// node's clock). A row seen for the first time keeps its own time, if not in the future:
    /// a dead row read at start must not look fresh. A change is only seen at this node's
    /// reads, every `read_interval_ms`: a row's interval counts as at least that long, or a
    /// node beating faster than this one reads would look dead between reads.
    pub fn apply(
        &mut self,
        mut nodes: Vec<NodeRecord>,
        now_ms: i64,
        read_interval_ms: i64,
    ) -> Vec<NodeRecord> {
        let mut next = std::collections::HashMap::with_capacity(nodes.len());
        for n in &mut nodes {
            let at = match self.seen.get(&n.id) {
                Some(&(hb, at)) if hb == n.heartbeat_ms => at,
                Some(_) => now_ms,
                None => n.heartbeat_ms.min(now_ms),
            };
            next.insert(n.id.clone(), (n.heartbeat_ms, at));
            n.heartbeat_ms = at;
            n.interval_ms = n.interval_ms.max(read_interval_ms);
        }
        self.seen = next;
        nodes
    }
}

/// Within a region, the less loaded node first (allocations relative to capacity; equal load:
/// fewer allocations, then the answering node, then id).
fn by_load(a: &NodeRecord, b: &NodeRecord, this_node: Option<&str>) -> std::cmp::Ordering {
    let other = |n: &NodeRecord| Some(n.id.as_str()) != this_node;
    load(a)
        .total_cmp(&load(b))
        .then(a.allocations.cmp(&b.allocations))
        .then(other(a).cmp(&other(b)))
        .then(a.id.cmp(&b.id))
}

fn load(n: &NodeRecord) -> f64 {
    let cap = if n.capacity > 0 {
        n.capacity as f64
    } else {
        UNCAPPED
    };
    n.allocations as f64 / cap
}

/// The nodes to name, best first (one per region, at most `1 + fallbacks`); empty when no
/// node is healthy.
pub fn choose<'n>(
    nodes: &'n [NodeRecord],
    now_ms: i64,
    want: &Want<'_>,
) -> Result<Vec<&'n NodeRecord>, RouteError> {
    let mut regions: BTreeMap<&str, (Option<Place>, Vec<&NodeRecord>)> = BTreeMap::new();
    for n in nodes.iter().filter(|n| alive(n, now_ms)) {
        let allowed = want
            .allowed
            .is_none_or(|a| a.iter().any(|r| r == &n.region));
        if !allowed {
            continue;
        }
        let e = regions.entry(n.region.as_str()).or_default();
        if e.0.is_none() {
            e.0 = n
                .latitude
                .zip(n.longitude)
                .map(|(lat, lon)| Place { lat, lon });
        }
        if healthy(n, now_ms) {
            e.1.push(n);
        }
    }
    if let Some(r) = want.region {
        if !regions.contains_key(r) {
            return Err(RouteError::UnknownRegion(
                regions.keys().map(|k| k.to_string()).collect(),
            ));
        }
    }
    let origin = want.client.or_else(|| {
        regions
            .get(want.region.unwrap_or(want.home))
            .and_then(|r| r.0)
    });
    let mut order: Vec<(&str, f64)> = regions
        .iter()
        .map(|(name, (place, _))| {
            let d = match (origin, place) {
                (Some(o), Some(p)) => o.km_to(*p),
                _ => f64::INFINITY,
            };
            (*name, d)
        })
        .collect();
    // First the asked region, else (without a client place) the home region; then nearest.
    let first = want.region.or((want.client.is_none()).then_some(want.home));
    order.sort_by(|a, b| {
        (Some(b.0) == first)
            .cmp(&(Some(a.0) == first))
            .then(a.1.total_cmp(&b.1))
            .then(a.0.cmp(b.0))
    });
    let mut out = Vec::new();
    for (name, _) in order {
        let Some((_, members)) = regions.get(name) else {
            continue;
        };
        let best = members.iter().min_by(|a, b| by_load(a, b, want.this_node));
        if let Some(n) = best {
            out.push(*n);
            if out.len() > want.fallbacks {
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, region: &str, place: &str, allocations: i64) -> NodeRecord {
        let p = Place::parse(place).unwrap();
        NodeRecord {
            id: id.into(),
            name: id.into(),
            region: region.into(),
            latitude: Some(p.lat),
            longitude: Some(p.lon),
            version: "t".into(),
            urls: vec![],
            addresses: vec![],
            tls_addresses: vec![],
            tls_domain: None,
            signal_url: None,
            started_at: 0,
            heartbeat_ms: 10_000,
            interval_ms: 2_000,
            draining: false,
            allocations,
            capacity: 100,
            relayed_bps: 0,
            cpu_percent: 0.0,
        }
    }

    fn ids(v: &[&NodeRecord]) -> Vec<String> {
        v.iter().map(|n| n.id.clone()).collect()
    }

    /// A node whose clock runs 10 minutes behind stays alive while its heartbeat changes, and
    /// one whose clock runs ahead goes dead when its heartbeat stops changing.
    #[test]
    fn liveness_follows_this_nodes_clock_not_the_rows() {
        let mut o = Observed::default();
        let mut behind = node("behind", "eu", "frankfurt", 0);
        let mut ahead = node("ahead", "eu", "frankfurt", 0);
        let t0 = 1_000_000_000;
        behind.heartbeat_ms = t0 - 600_000;
        ahead.heartbeat_ms = t0 + 600_000;
        let v = o.apply(vec![behind.clone(), ahead.clone()], t0, 1000);
        // First sight: the slow row looks old (its own time), the fast one is clamped to now.
        assert!(!alive(&v[0], t0));
        assert!(alive(&v[1], t0));
        // Both beat again 2 s later: alive by our clock.
        behind.heartbeat_ms += 2000;
        ahead.heartbeat_ms += 2000;
        let v = o.apply(vec![behind.clone(), ahead.clone()], t0 + 2000, 1000);
        assert!(alive(&v[0], t0 + 2000) && alive(&v[1], t0 + 2000));
        // "ahead" stops; "behind" keeps beating: after four intervals only "behind" is alive,
        // although the stopped row's own time is still ten minutes in our future.
        let t = t0 + 2000 + 4 * 2000;
        behind.heartbeat_ms += 8000;
        let v = o.apply(vec![behind, ahead], t, 1000);
        assert!(alive(&v[0], t));
        assert!(!alive(&v[1], t));
    }

    #[test]
    fn nearest_healthy_region_least_loaded_node() {
        let mut nodes = vec![
            node("fra-1", "eu", "frankfurt", 50),
            node("fra-2", "eu", "frankfurt", 10),
            node("nyc-1", "us", "new-york", 0),
            node("sgp-1", "ap", "singapore", 0),
        ];
        let now = 10_500;
        let paris = Place::parse("paris").ok();
        let w = Want {
            client: paris,
            home: "us",
            ..Want::default()
        };
        assert_eq!(ids(&choose(&nodes, now, &w).unwrap()), ["fra-2"]);
        // Equal load: the answering node first.
        let mine = Want {
            this_node: Some("fra-2"),
            ..w.clone()
        };
        nodes[0].allocations = 10;
        assert_eq!(ids(&choose(&nodes, now, &mine).unwrap()), ["fra-2"]);
        let theirs = Want {
            this_node: Some("fra-1"),
            ..w.clone()
        };
        assert_eq!(ids(&choose(&nodes, now, &theirs).unwrap()), ["fra-1"]);
        nodes[0].allocations = 50;
        // A fallback region: the next nearest.
        let w2 = Want {
            fallbacks: 1,
            ..w.clone()
        };
        assert_eq!(ids(&choose(&nodes, now, &w2).unwrap()), ["fra-2", "nyc-1"]);
        // No client place: the home region first, then nearest to it.
        let home = Want {
            home: "ap",
            fallbacks: 2,
            ..Want::default()
        };
        assert_eq!(
            ids(&choose(&nodes, now, &home).unwrap()),
            ["sgp-1", "fra-2", "nyc-1"]
        );
        // An explicit region wins over geography; an unknown one lists the known.
        let asked = Want {
            region: Some("ap"),
            ..w.clone()
        };
        assert_eq!(ids(&choose(&nodes, now, &asked).unwrap()), ["sgp-1"]);
        let bad = Want {
            region: Some("mars"),
            ..w.clone()
        };
        assert_eq!(
            choose(&nodes, now, &bad),
            Err(RouteError::UnknownRegion(vec![
                "ap".into(),
                "eu".into(),
                "us".into()
            ]))
        );
        // Allowed regions filter (and make the others unknown).
        let allowed = vec!["us".to_string()];
        let only = Want {
            allowed: Some(&allowed),
            ..w.clone()
        };
        assert_eq!(ids(&choose(&nodes, now, &only).unwrap()), ["nyc-1"]);
        // Draining, full and dead nodes are never named.
        nodes[1].draining = true;
        assert_eq!(ids(&choose(&nodes, now, &w).unwrap()), ["fra-1"]);
        nodes[0].allocations = 100;
        assert_eq!(ids(&choose(&nodes, now, &w).unwrap()), ["nyc-1"]);
        nodes[2].heartbeat_ms = now - 6_001;
        assert_eq!(ids(&choose(&nodes, now, &w).unwrap()), ["sgp-1"]);
        // A region whose nodes are all unavailable is still known, and skipped.
        let eu = Want {
            region: Some("eu"),
            ..w.clone()
        };
        assert_eq!(ids(&choose(&nodes, now, &eu).unwrap()), ["sgp-1"]);
    }
}
