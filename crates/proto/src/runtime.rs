//! What the servers of one process share while they run, as opposed to their configuration:
//! allocation counts (quotas), the drain switch, RFC 6062 connection ids and the control
//! plane's directory. One [`Runtime`] is handed to every [`crate::Server`] beside its
//! [`crate::ServerConfig`]; the binary and the control plane keep a clone to act on it (enter
//! drain mode, publish credentials).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::directory::Directory;
use crate::five_tuple::Transport;
use crate::quota::AllocationQuota;
use crate::tcp_registry::TcpConnectionRegistry;

/// Live state shared by all workers.
#[derive(Debug)]
pub struct Runtime {
    /// Live allocation counts and their caps.
    pub quota: Arc<AllocationQuota>,
    /// While set, new allocations are refused with 508 (existing ones keep working).
    draining: AtomicBool,
    /// RFC 6062 connection ids (a data connection may land on another worker).
    pub tcp_connections: TcpConnectionRegistry,
    /// Stored and ephemeral credentials of the control plane, limits, disconnects, deny list.
    pub directory: Arc<Directory>,
    /// Where to send new clients while this node drains or is full (300 Try Alternate),
    /// kept current by the fleet's registry; empty: no alternate (508 / 486 instead).
    alternates: ArcSwap<Alternates>,
    /// Bytes relayed in every direction since start (the workers add their counters once a
    /// second), for the fleet's load figures.
    pub relayed_bytes: AtomicU64,
}

/// Other nodes clients may be sent to (RFC 8489 §10: ALTERNATE-SERVER, ALTERNATE-DOMAIN), best
/// first for a client of this node's region.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alternates {
    /// This node's region: a client not yet authenticated (whose tenant, and so whose allowed
    /// regions, are unknown) is only sent to a node of this region.
    pub region: String,
    /// The domain this node's certificate names: before authentication a TLS or DTLS client
    /// is only sent to a node whose certificate names the same (an unsigned 300's
    /// ALTERNATE-DOMAIN is not to be trusted, so the client checks the original name).
    pub tls_domain: Option<Arc<str>>,
    pub nodes: Vec<AlternateNode>,
}

/// One other node, with its listeners per transport.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlternateNode {
    pub region: String,
    /// Its listeners, indexed by [`Transport`] (`Transport::Tcp as usize`, ...): a client is
    /// only named a listener of the transport it uses.
    pub listeners: [Vec<SocketAddr>; 4],
    /// The domain its certificate names (ALTERNATE-DOMAIN for TLS and DTLS clients).
    pub tls_domain: Option<Arc<str>>,
}

/// Which regions a redirect may name.
#[derive(Debug, Clone, Copy)]
pub enum RegionScope<'a> {
    /// This node's own region (an unauthenticated client).
    Home,
    /// The tenant's allowed regions.
    Only(&'a [String]),
    /// Any region.
    Any,
}

/// The ALTERNATE-SERVER values for one client: one of the client's address family (RFC 8489
/// §10: MUST), then one of the other family if there is one (SHOULD), with ALTERNATE-DOMAIN
/// for a TLS or DTLS client when the node has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub primary: SocketAddr,
    pub secondary: Option<SocketAddr>,
    pub domain: Option<Arc<str>>,
}

impl Alternates {
    /// Where to send a client at `client` using `transport`: the first node in `scope` with a
    /// listener of that transport and of the client's family; `None` when there is none.
    pub fn redirect(
        &self,
        client: IpAddr,
        transport: Transport,
        scope: RegionScope<'_>,
    ) -> Option<Redirect> {
        let v4 = client.to_canonical().is_ipv4();
        let secure = matches!(transport, Transport::Tls | Transport::Dtls);
        // Before authentication (`Home`) the 300 is unsigned: no ALTERNATE-DOMAIN, and only a
        // node with this node's certificate name for a TLS or DTLS client.
        let unsigned = matches!(scope, RegionScope::Home);
        self.nodes
            .iter()
            .filter(|n| match scope {
                RegionScope::Home => n.region == self.region,
                RegionScope::Only(allowed) => allowed.contains(&n.region),
                RegionScope::Any => true,
            })
            .filter(|n| !(unsigned && secure) || n.tls_domain == self.tls_domain)
            .find_map(|n| {
                let list = &n.listeners[transport as usize];
                let primary = *list.iter().find(|a| a.is_ipv4() == v4)?;
                Some(Redirect {
                    primary,
                    secondary: list.iter().find(|a| a.is_ipv4() != v4).copied(),
                    domain: (secure && !unsigned)
                        .then(|| n.tls_domain.clone())
                        .flatten(),
                })
            })
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new(AllocationQuota::new(0, 0), Arc::default())
    }
}

impl Runtime {
    pub fn new(quota: AllocationQuota, directory: Arc<Directory>) -> Self {
        Self {
            quota: Arc::new(quota),
            draining: AtomicBool::new(false),
            tcp_connections: TcpConnectionRegistry::default(),
            directory,
            alternates: ArcSwap::default(),
            relayed_bytes: AtomicU64::new(0),
        }
    }

    /// Enters drain mode: new allocations get 508, existing ones continue.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Sets where new clients go while this node drains or is full.
    pub fn set_alternates(&self, a: Alternates) {
        if **self.alternates.load() != a {
            self.alternates.store(Arc::new(a));
        }
    }

    pub fn alternates(&self) -> arc_swap::Guard<Arc<Alternates>> {
        self.alternates.load()
    }

    /// Whether new allocations should go elsewhere: draining, or every allocation the node
    /// takes is in use.
    pub fn refuses_new(&self) -> bool {
        self.is_draining()
            || (self.quota.max_total != 0 && self.quota.total() >= self.quota.max_total)
    }
}
