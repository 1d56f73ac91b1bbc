//! The TURN server state machine: demultiplexing, authentication, dispatch of typed requests,
//! error responses, housekeeping and the deadline queue. Its state has owners:
//! [`allocations`] (the table and its indexes), [`replay`] (answers for retransmissions),
//! [`metering`] (accounting events); the per-method decisions live in one file per method
//! (`binding`, `allocate`, `refresh`, `permission`, `channel_bind`, `send_data`,
//! `tcp_relay`), each a child of this module that reads the server's private fields.
//!
//! Inputs: [`Server::handle_client_packet`], [`Server::handle_peer_packet`],
//! [`Server::handle_relay_created`], [`Server::handle_connection_closed`],
//! [`Server::handle_timeout`] and the RFC 6062 connection events. Outputs: the [`Transmit`]
//! returned for the packet at hand, and [`Server::poll_output`] / [`Server::poll_timeout`] /
//! [`Server::poll_accounting`] for everything else. No sockets, no clock: every input carries
//! `now`.

mod allocate;
mod allocations;
mod binding;
mod channel_bind;
mod connects;
mod metering;
mod permission;
mod refresh;
mod replay;
mod response;
mod send_data;
mod tcp_relay;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use turnpike_stun::*;

use crate::accounting::AccountingEvent;
use crate::allocation::{Allocation, AllocationState};
use crate::auth::{AuthInfo, OFFERED_PASSWORD_ALGORITHMS};
use crate::auth_log::AuthLog;
use crate::config::ServerConfig;
use crate::directory::{Account, Limits};
use crate::error::{DropReason, TurnError, MAX_UNKNOWN};
use crate::five_tuple::{FiveTuple, Transport};
use crate::nonce;
use crate::output::{AllocationId, ConnectionId, Dest, Output, RelayTransport, Transmit};
use crate::request::Request;
use crate::runtime::Runtime;
use crate::stats::{Direction, Stats};
use crate::timer::DeadlineQueue;
use crate::unauth_budget::UnauthBudget;

use allocations::Allocations;
use connects::PendingConnect;
use metering::Metering;
use replay::ReplayCache;
use response::{write_response, Reply, ResponseCtx};

/// Largest message the scratch buffer holds: a maximal UDP payload plus Data indication framing.
pub(crate) const SCRATCH_LEN: usize = 65_536 + 256;
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(10);

/// What a deadline-queue entry refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    Allocation(AllocationId, u64),
    Permission(AllocationId, u64, IpAddr),
    Channel(AllocationId, u64, u16),
    TcpConnection(ConnectionId),
    Housekeeping,
}

/// Attributes understood in TURN requests; any other comprehension-required one gets 420.
const KNOWN_REQUEST_ATTRS: &[u16] = &[
    ATTR_USERNAME,
    ATTR_MESSAGE_INTEGRITY,
    ATTR_MESSAGE_INTEGRITY_SHA256,
    ATTR_REALM,
    ATTR_NONCE,
    ATTR_USERHASH,
    ATTR_PASSWORD_ALGORITHM,
    ATTR_CHANNEL_NUMBER,
    ATTR_LIFETIME,
    ATTR_XOR_PEER_ADDRESS,
    ATTR_DATA,
    ATTR_REQUESTED_ADDRESS_FAMILY,
    ATTR_EVEN_PORT,
    ATTR_REQUESTED_TRANSPORT,
    ATTR_DONT_FRAGMENT,
    ATTR_RESERVATION_TOKEN,
    ATTR_PRIORITY,
    ATTR_USE_CANDIDATE,
    ATTR_PADDING,
    ATTR_RESPONSE_PORT,
    ATTR_CHANGE_REQUEST,
    ATTR_CONNECTION_ID,
];

/// What an authenticated request handler is given beside its typed request.
pub(crate) struct Cx<'a> {
    pub now: Instant,
    pub ft: FiveTuple,
    pub auth: &'a AuthInfo,
    pub resp: ResponseCtx,
}

/// One TURN server instance. The driver runs one per core; they share the configuration and
/// the [`Runtime`] (quotas, drain switch, RFC 6062 connection ids, directory).
pub struct Server {
    cfg: Arc<ServerConfig>,
    rt: Arc<Runtime>,
    epoch: Instant,
    epoch_unix: u64,
    allocations: Allocations,
    timers: DeadlineQueue<Timer>,
    outputs: VecDeque<Output>,
    scratch: Box<[u8]>,
    /// Per-source byte budget for unauthenticated answers over UDP.
    unauth: UnauthBudget,
    /// Rate-limited log of failed authentications.
    auth_log: AuthLog,
    replay: ReplayCache,
    next_generation: u64,
    pending_connects: HashMap<ConnectionId, PendingConnect>,
    /// Where the response being written goes, when not back on the request's 5-tuple (RFC 5780
    /// CHANGE-REQUEST / RESPONSE-PORT).
    reply_via: Option<FiveTuple>,
    /// The nonce's security feature characters (RFC 8489 §9.2).
    features: [u8; 4],
    /// Counters; read by the driver.
    pub stats: Stats,
    metering: Metering,
    /// This server's number in the process (allocation serials are unique across workers).
    instance: u64,
    /// The directory generation last acted on (limits, disconnects, deny list).
    directory_seen: u64,
    /// Wall clock (unix seconds) as of the last input, for metering timestamps.
    clock_unix: u64,
}

/// Numbers the servers of a process.
static NEXT_INSTANCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Server {
    /// A server whose clock reads `now` and whose wall clock reads `now_unix` (seconds since
    /// 1970) at the same moment.
    pub fn new(cfg: Arc<ServerConfig>, rt: Arc<Runtime>, now: Instant, now_unix: u64) -> Self {
        let mut timers = DeadlineQueue::default();
        timers.push(now + HOUSEKEEPING_EVERY, Timer::Housekeeping);
        // RFC 8489 §9.2: the nonce's feature bits promise what the challenge and the lookups
        // deliver. "Password algorithms": every challenge carries PASSWORD-ALGORITHMS.
        // "Username anonymity": only when every credential kind in use can be found by
        // USERHASH (static users alone, no shared secrets, no control-plane credentials).
        let anonymity = cfg.credentials.userhash_for_all() && !cfg.directory_credentials;
        let features = nonce::feature_chars(true, anonymity);
        // Disconnect requests made before this server existed do not concern its allocations.
        let directory_seen = rt.directory.generation();
        Self {
            unauth: UnauthBudget::new(cfg.unauth_bytes_burst, cfg.unauth_bytes_per_sec),
            auth_log: AuthLog::default(),
            cfg,
            rt,
            epoch: now,
            epoch_unix: now_unix,
            allocations: Allocations::default(),
            timers,
            outputs: VecDeque::new(),
            scratch: vec![0u8; SCRATCH_LEN].into_boxed_slice(),
            replay: ReplayCache::default(),
            next_generation: 1,
            pending_connects: HashMap::new(),
            reply_via: None,
            features,
            stats: Stats::default(),
            metering: Metering::default(),
            instance: NEXT_INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            directory_seen,
            clock_unix: now_unix,
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    fn unix_now(&self, now: Instant) -> u64 {
        self.epoch_unix + now.saturating_duration_since(self.epoch).as_secs()
    }

    /// The current limits of an account (for traffic the driver carries itself: RFC 6062 data
    /// connections).
    pub fn limits_for(&self, account: &Account) -> Limits {
        self.rt.directory.load().limits_for(account)
    }

    /// Number of live allocations on this instance.
    pub fn allocation_count(&self) -> usize {
        self.allocations.len()
    }

    /// Next thing the driver must do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Server::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// A packet from a client on `ft`. Returns what to send right away (a response, or relayed
    /// data for a peer); further work is queued for [`Server::poll_output`].
    pub fn handle_client_packet<'a>(
        &'a mut self,
        now: Instant,
        ft: FiveTuple,
        data: &'a [u8],
    ) -> Option<Transmit<'a>> {
        match data.first().map(|b| b >> 6) {
            Some(1) => self.handle_channel_data(now, ft, data),
            Some(0) => self.handle_stun(now, ft, data),
            _ => {
                self.stats.drop(DropReason::Malformed);
                None
            }
        }
    }

    fn handle_stun<'a>(
        &'a mut self,
        now: Instant,
        ft: FiveTuple,
        data: &'a [u8],
    ) -> Option<Transmit<'a>> {
        self.clock_unix = self.unix_now(now);
        let dir = &self.rt.directory;
        if dir.has_denied_clients() && dir.is_client_denied(ft.client.ip()) {
            self.stats.drop(DropReason::Denied);
            return None;
        }
        let Ok(msg) = Message::parse_exact(data) else {
            self.stats.drop(DropReason::Malformed);
            return None;
        };
        if msg.check_fingerprint().is_err() {
            self.stats.drop(DropReason::Malformed);
            return None;
        }
        match msg.class() {
            Class::Request => {
                self.reply_via = None;
                let n = self.handle_request(now, ft, &msg)?;
                let to = self.reply_via.take().unwrap_or(ft);
                Some(Transmit {
                    dest: Dest::Client(to),
                    data: &self.scratch[..n],
                })
            }
            Class::Indication if msg.method() == METHOD_SEND => {
                self.handle_send_indication(now, ft, msg)
            }
            _ => {
                self.stats.drop(DropReason::Unexpected);
                None
            }
        }
    }

    /// The answer already given to `tid` on `ft`, for a retransmission (RFC 8489 §6.3.1), or
    /// `Err(())` when the original is still being processed (the retransmission is dropped).
    fn replayed(&self, ft: &FiveTuple, tid: &TransactionId) -> Result<Option<&[u8]>, ()> {
        if let Some(a) = self
            .allocations
            .by_five_tuple(ft)
            .map(|id| &self.allocations[id])
        {
            if let Some((t, bytes)) = &a.last_response {
                if t == tid {
                    return Ok(Some(bytes));
                }
            }
            if matches!(a.state, AllocationState::Pending { tid: t, .. } if t == *tid) {
                return Err(());
            }
        }
        Ok(self.replay.get(ft, tid))
    }

    /// Processes a request; returns the length of the response in the scratch buffer.
    fn handle_request(&mut self, now: Instant, ft: FiveTuple, msg: &Message<'_>) -> Option<usize> {
        self.stats.requests += 1;
        let tid = msg.transaction_id();
        match self.replayed(&ft, &tid) {
            Ok(Some(bytes)) => {
                let n = bytes.len();
                let bytes = bytes.to_vec();
                self.scratch[..n].copy_from_slice(&bytes);
                return Some(n);
            }
            Ok(None) => {}
            Err(()) => {
                self.stats.drop(DropReason::InProgress);
                return None;
            }
        }

        let mut resp = ResponseCtx::new(msg, None);
        let mut authenticated = false;
        let result = if msg.method() == METHOD_BINDING {
            self.stats.binding_requests += 1;
            self.handle_binding(ft, msg, &resp)
        } else if let Some(r) = self.redirect_unauthenticated(&ft, msg) {
            // Sent before authentication, as coturn does and browsers expect: their first
            // Allocate carries no credentials, and their retry at the alternate starts over
            // with its challenge (a 300 after authentication would carry this node's nonce,
            // which the alternate does not accept). RFC 8489 §14.8 asks for an authenticated
            // 300; see docs/fleet.md.
            Err(TurnError::TryAlternate(r))
        } else {
            match self.authenticate(now, ft, msg) {
                Err(e) => Err(e),
                Ok(auth) => {
                    authenticated = true;
                    resp.key = Some((auth.key, auth.sha256));
                    let cx = Cx {
                        now,
                        ft,
                        auth: &auth,
                        resp,
                    };
                    self.check_unknown(msg)
                        .and_then(|()| Request::parse(msg, ft.transport))
                        .and_then(|req| self.dispatch(&cx, req))
                }
            }
        };
        let (n, signed, error) = match result {
            Ok(Reply::Written(n)) => (n, authenticated, false),
            Ok(Reply::Pending) => return None,
            Err(e) => {
                let signed = authenticated && !e.carries_challenge();
                (self.write_error(now, ft, &resp, &e)?, signed, true)
            }
        };
        // Unauthenticated answers over UDP come out of the source's byte budget: over TCP, TLS
        // and DTLS a handshake has already proven the source address, so there is nothing to
        // reflect, and a dropped answer would stall a stream client that never retransmits.
        if !signed
            && ft.transport == Transport::Udp
            && !self.unauth.allow(now, ft.client.ip(), resp.request_len, n)
        {
            self.stats.drop(DropReason::RateLimited);
            // Not sent after all.
            self.stats.error_responses -= u64::from(error);
            return None;
        }
        // Remember the answer on the allocation for retransmissions.
        if msg.method() != METHOD_BINDING {
            if let Some(id) = self.allocations.by_five_tuple(&ft) {
                self.allocations[id].last_response = Some((tid, self.scratch[..n].to_vec()));
            }
        }
        Some(n)
    }

    /// An Allocate without MESSAGE-INTEGRITY while this node refuses new allocations: where to
    /// send it, if the fleet named an alternate.
    fn redirect_unauthenticated(
        &self,
        ft: &FiveTuple,
        msg: &Message<'_>,
    ) -> Option<crate::runtime::Redirect> {
        if msg.method() != METHOD_ALLOCATE || msg.has_integrity() || !self.rt.refuses_new() {
            return None;
        }
        self.redirect(ft, crate::runtime::RegionScope::Home)
    }

    /// Where to send the client of `ft` instead of this node, within `scope`.
    pub(super) fn redirect(
        &self,
        ft: &FiveTuple,
        scope: crate::runtime::RegionScope<'_>,
    ) -> Option<crate::runtime::Redirect> {
        self.rt
            .alternates()
            .redirect(ft.client.ip(), ft.transport, scope)
    }

    /// Hands a typed request to its method's handler.
    fn dispatch(&mut self, cx: &Cx<'_>, req: Request) -> Result<Reply, TurnError> {
        match req {
            Request::Allocate(r) => self.handle_allocate(cx, r),
            Request::Refresh(r) => self.handle_refresh(cx, r),
            Request::CreatePermission(r) => self.handle_create_permission(cx, r),
            Request::ChannelBind(r) => self.handle_channel_bind(cx, r),
            Request::Connect(r) => self.handle_connect(cx, r),
            Request::ConnectionBind(r) => self.handle_connection_bind(cx, r),
        }
    }

    /// Long-term credential checks of RFC 8489 §9.2.4, in the RFC's order.
    fn authenticate(
        &mut self,
        now: Instant,
        ft: FiveTuple,
        msg: &Message<'_>,
    ) -> Result<AuthInfo, TurnError> {
        if !msg.has_integrity() {
            return Err(TurnError::Unauthorized("no MESSAGE-INTEGRITY"));
        }
        let (Some(realm), Some(nonce)) = (msg.get(ATTR_REALM), msg.get(ATTR_NONCE)) else {
            return Err(TurnError::BadRequest("REALM or NONCE missing"));
        };
        if msg.get(ATTR_USERNAME).is_none() && msg.get(ATTR_USERHASH).is_none() {
            return Err(TurnError::BadRequest("USERNAME missing"));
        }
        let unix = self.unix_now(now);
        let lifetime = self.cfg.nonce_lifetime.as_secs();
        // A nonce of the fleet's key minted with other security features (another node's
        // configuration) is stale here: its bits must be this server's (RFC 8489 §9.2 bid-down
        // protection). A portable nonce is good for an Allocate only.
        let features_match = nonce.get(9..13) == Some(&self.features[..]);
        if !features_match
            || !nonce::verify(
                &self.cfg.nonce_secret,
                nonce,
                unix,
                lifetime,
                ft.client.ip(),
                msg.method() == METHOD_ALLOCATE,
            )
        {
            self.stats.stale_nonces += 1;
            return Err(TurnError::StaleNonce);
        }
        let result = if realm == self.cfg.realm.as_bytes() {
            self.cfg
                .credentials
                .authenticate(msg, &self.cfg.realm, unix, &self.rt.directory)
                .and_then(|auth| self.check_expiry(msg, auth, unix))
        } else {
            Err(TurnError::Unauthorized("wrong realm"))
        };
        if let Err(e) = &result {
            self.stats.auth_failures += 1;
            let reason = match e {
                TurnError::Unauthorized(r) | TurnError::BadRequest(r) => r,
                _ => "refused",
            };
            let username = msg
                .get(ATTR_USERNAME)
                .or_else(|| msg.get(ATTR_USERHASH).map(|_| &b"<userhash>"[..]));
            let logged = self
                .auth_log
                .failed(now, ft.client.ip(), username, reason, ft.transport);
            if logged {
                self.record_auth_failure(msg, &ft, reason, unix);
            }
        }
        result
    }

    /// Tells the control plane of a refused request, for the tenants its username belongs to.
    fn record_auth_failure(
        &mut self,
        msg: &Message<'_>,
        ft: &FiveTuple,
        reason: &'static str,
        unix: u64,
    ) {
        let Some(name) = msg
            .get(ATTR_USERNAME)
            .and_then(|u| std::str::from_utf8(u).ok())
        else {
            return;
        };
        let mut tenants: Vec<Arc<str>> = match crate::directory::parse_ephemeral(name) {
            Some((_, tenant, _)) => vec![Arc::from(tenant)],
            None => self
                .rt
                .directory
                .stored_users(name)
                .into_iter()
                .map(|u| u.account.tenant_id.clone())
                .collect(),
        };
        tenants.sort();
        tenants.dedup();
        if tenants.is_empty() {
            return;
        }
        self.metering.push(AccountingEvent::AuthFailed {
            tenants,
            username: name.chars().take(256).collect(),
            client: ft.client,
            transport: ft.transport,
            reason,
            at_unix: unix,
        });
    }

    /// An expired credential may still act on what it created, within `credential_grace`:
    /// Refresh, CreatePermission, ChannelBind, Connect and ConnectionBind of a live allocation
    /// (a revoked, disabled or deleted credential was refused before this). A new Allocate always
    /// needs a valid credential.
    fn check_expiry(
        &self,
        msg: &Message<'_>,
        auth: AuthInfo,
        unix: u64,
    ) -> Result<AuthInfo, TurnError> {
        let Some(expires_at) = auth.expires_at.filter(|_| auth.is_expired(unix)) else {
            return Ok(auth);
        };
        let grace_ends = expires_at.saturating_add(self.cfg.credential_grace.as_secs());
        if msg.method() == METHOD_ALLOCATE || unix >= grace_ends {
            return Err(TurnError::Unauthorized("credential expired"));
        }
        Ok(auth)
    }

    fn check_unknown(&self, msg: &Message<'_>) -> Result<(), TurnError> {
        let mut unknown = [0u16; MAX_UNKNOWN];
        let n = msg.unknown_required(KNOWN_REQUEST_ATTRS, &mut unknown);
        if n > 0 {
            return Err(TurnError::UnknownAttributes(unknown, n));
        }
        Ok(())
    }

    /// Writes a success response with `body` into the scratch buffer; signed (and with
    /// SOFTWARE) when the request was authenticated.
    fn write_success(
        &mut self,
        ctx: &ResponseCtx,
        body: impl FnOnce(&mut MessageWriter<'_>) -> Result<(), StunError>,
    ) -> Result<usize, TurnError> {
        // Unauthenticated answers (Binding) carry no SOFTWARE: as small as they can be.
        let software = if ctx.key.is_some() {
            self.cfg.software.as_str()
        } else {
            ""
        };
        write_response(&mut self.scratch, ctx, Class::Success, software, body)
            .map_err(|_| TurnError::ServerError("response too large"))
    }

    /// Writes the error response for `e`, or returns `None` when it is to be dropped.
    fn write_error(
        &mut self,
        now: Instant,
        ft: FiveTuple,
        ctx: &ResponseCtx,
        e: &TurnError,
    ) -> Option<usize> {
        let Some(code) = e.code() else {
            if let TurnError::Drop(r) = e {
                self.stats.drop(*r);
            }
            return None;
        };
        tracing::debug!(client = %ft.client, code = code.code(), reason = ?e, "error response");
        self.stats.error_responses += 1;
        let mut ctx = *ctx;
        let challenge = e.carries_challenge();
        if challenge {
            // Challenges are not signed: the client has no valid key yet (or its nonce is stale).
            ctx.key = None;
        }
        // A signed 300 (RFC 8489 §10) carries a fresh nonce as well: the fleet's nodes share
        // the nonce key, so a client that takes it (libwebrtc does) goes on at the alternate
        // without another challenge (a nonce the alternate refused would end libwebrtc's
        // allocation: it does not retry an Allocate after 438).
        // It is portable (good from any address for a minute): the client's address at the
        // alternate may differ from the one this node sees.
        let signed_redirect = matches!(e, TurnError::TryAlternate(_)) && ctx.key.is_some();
        let nonce = if signed_redirect {
            Some(nonce::mint_portable(
                &self.cfg.nonce_secret,
                self.features,
                self.unix_now(now),
            ))
        } else {
            challenge.then(|| {
                nonce::mint(
                    &self.cfg.nonce_secret,
                    self.features,
                    self.unix_now(now),
                    ft.client.ip(),
                )
            })
        };
        // Unauthenticated answers carry no SOFTWARE: keep them as small as possible.
        let software = if ctx.key.is_some() {
            self.cfg.software.as_str()
        } else {
            ""
        };
        let realm = self.cfg.realm.as_bytes();
        // The nonce sets the "password algorithms" bit, so every challenge carries
        // PASSWORD-ALGORITHMS (RFC 8489 §9.2.5: without it a client must give up). Amplification
        // is bounded by the per-source byte budget for unauthenticated answers instead.
        let r = write_response(&mut self.scratch, &ctx, Class::Error, software, |w| {
            w.error_code(code)?;
            if let TurnError::UnknownAttributes(list, n) = e {
                w.unknown_attributes(&list[..*n])?;
            }
            if let TurnError::TryAlternate(r) = e {
                w.address(ATTR_ALTERNATE_SERVER, r.primary)?;
                if let Some(s) = r.secondary {
                    w.address(ATTR_ALTERNATE_SERVER, s)?;
                }
                if let Some(d) = &r.domain {
                    w.attr(ATTR_ALTERNATE_DOMAIN, d.as_bytes())?;
                }
            }
            if let Some(nonce) = &nonce {
                w.attr(ATTR_REALM, realm)?;
                w.attr(ATTR_NONCE, nonce)?;
                w.attr(ATTR_PASSWORD_ALGORITHMS, &OFFERED_PASSWORD_ALGORITHMS)?;
            }
            Ok(())
        });
        r.ok()
    }

    /// Allocates a fresh generation number for a new allocation.
    fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    /// The address advertised for a bound relay address (external IP mapping for NAT).
    fn advertised(&self, bound: SocketAddr) -> SocketAddr {
        let ext = if bound.is_ipv4() {
            self.cfg.external_ipv4
        } else {
            self.cfg.external_ipv6
        };
        match ext {
            Some(ip) => SocketAddr::new(ip, bound.port()),
            None => bound,
        }
    }

    /// The allocation on `ft` for a request by `auth`: 437 without one, 441 for another user
    /// (RFC 8656 §5: later requests must use the credentials of the Allocate).
    fn owned_allocation(&self, ft: &FiveTuple, auth: &AuthInfo) -> Result<AllocationId, TurnError> {
        let id = self
            .allocations
            .by_five_tuple(ft)
            .ok_or(TurnError::AllocationMismatch)?;
        let a = &self.allocations[id];
        if matches!(a.state, AllocationState::Pending { .. }) {
            return Err(TurnError::AllocationMismatch);
        }
        if a.username != auth.username {
            return Err(TurnError::WrongCredentials);
        }
        Ok(id)
    }

    /// Removes an allocation and everything attached to it (its quota lease goes with it).
    fn remove_allocation(&mut self, id: AllocationId) -> Allocation {
        let a = self.allocations.remove(id);
        for r in a.relays.iter().flatten() {
            self.outputs.push_back(Output::ReleaseRelay(*r));
        }
        if let (Some(acct), AllocationState::Active) = (&a.account, &a.state) {
            let at_unix = self.clock_unix;
            let delta = a.usage.since(&a.usage_reported);
            if !delta.is_zero() {
                self.metering.push(AccountingEvent::Usage {
                    account: acct.clone(),
                    delta,
                    at_unix,
                    spliced: None,
                });
            }
            self.metering.push(AccountingEvent::Ended {
                serial: crate::accounting::allocation_serial(self.instance, a.generation),
                account: acct.clone(),
                started_unix: a.started_unix,
                at_unix,
                total: a.usage,
                peers: a.peers.len(),
            });
        }
        self.close_tcp_connections(a.tcp_connections.values().copied());
        self.stats.allocations = self.allocations.len() as u64;
        self.stats.permissions -= a.permissions.len() as u64;
        self.stats.channels -= a.channels.values().filter(|c| c.counted).count() as u64;
        a
    }

    /// A stream connection (TCP/TLS) closed: its allocation goes with it (RFC 8656 §3.1).
    pub fn handle_connection_closed(&mut self, _now: Instant, ft: FiveTuple) {
        if let Some(id) = self.allocations.by_five_tuple(&ft) {
            self.remove_allocation(id);
            self.stats.allocations_deleted += 1;
        }
    }

    /// Metering events since the last call, with the usage of live allocations up to `now`.
    /// The driver calls this periodically (every second) and once more after [`Self::close_all`].
    pub fn poll_accounting(&mut self, now: Instant) -> Vec<AccountingEvent> {
        self.clock_unix = self.unix_now(now);
        for (_, a) in self.allocations.iter_mut() {
            let Some(account) = &a.account else { continue };
            let delta = a.usage.since(&a.usage_reported);
            if !delta.is_zero() {
                a.usage_reported = a.usage;
                self.metering.push(AccountingEvent::Usage {
                    account: account.clone(),
                    delta,
                    at_unix: self.clock_unix,
                    spliced: None,
                });
            }
        }
        self.metering.take(self.clock_unix)
    }

    /// The driver copied `n` bytes on a spliced RFC 6062 data connection over `transport`: from
    /// the client toward the peer (`toward_peer`) or back. They count on both legs of that way
    /// in the statistics and, given `metered` (the account and the allocation serial from
    /// [`Output::SpliceData`]), in that account's usage, one read as one packet (reported by the
    /// next [`Self::poll_accounting`]).
    pub fn handle_spliced(
        &mut self,
        transport: Transport,
        metered: Option<(&Arc<Account>, u64)>,
        toward_peer: bool,
        n: usize,
    ) {
        let (a, b) = if toward_peer {
            (Direction::ClientToServer, Direction::ServerToPeer)
        } else {
            (Direction::PeerToServer, Direction::ServerToClient)
        };
        self.stats.count(a, transport, n);
        self.stats.count(b, transport, n);
        if let Some((account, serial)) = metered {
            self.metering.spliced(account, serial, a, b, n);
        }
    }

    /// The driver could not send relayed data of the allocation on `relay` (`dir`: to the peer
    /// or to the client): it is taken back out of the usage, which counts what was relayed.
    pub fn handle_relay_send_failed(&mut self, relay: SocketAddr, dir: Direction, len: usize) {
        if let Some(id) = self.allocations.by_relay(RelayTransport::Udp, relay) {
            let u = &mut self.allocations[id].usage;
            u.packets[dir as usize] = u.packets[dir as usize].saturating_sub(1);
            u.bytes[dir as usize] = u.bytes[dir as usize].saturating_sub(len as u64);
        }
    }

    /// Closes every allocation (shutdown), so their final usage and end are reported.
    pub fn close_all(&mut self, now: Instant) {
        self.clock_unix = self.unix_now(now);
        for id in self.allocations.ids() {
            self.remove_allocation(id);
            self.stats.allocations_deleted += 1;
        }
    }

    /// Acts on a changed directory: closes allocations the operator disconnected or whose
    /// client is now denied, and applies changed bitrate limits to live allocations.
    fn apply_directory(&mut self, now: Instant) {
        let dir = self.rt.directory.clone();
        let generation = dir.generation();
        if generation == self.directory_seen {
            return;
        }
        let disconnects = dir.disconnects_since(self.directory_seen);
        self.directory_seen = generation;
        let snap = dir.load();
        let deny = dir.has_denied_clients();
        let unix = self.clock_unix;
        let mut doomed = Vec::new();
        for (id, a) in self.allocations.iter_mut() {
            if disconnects
                .iter()
                .any(|d| d.matches(&a.username, a.account.as_deref()))
                || (deny && dir.is_client_denied(a.five_tuple.client.ip()))
            {
                doomed.push(id);
                continue;
            }
            if let Some(acct) = &a.account {
                let limits = snap.limits_for(acct);
                // Living on an expired credential: a `refuse` quota ends that grace.
                if limits.refuse && a.credential_expires.is_some_and(|e| unix >= e) {
                    doomed.push(id);
                    continue;
                }
                let want = limits.max_bitrate_bps;
                let have = a.throttle.as_ref().map(|t| t.bits_per_sec());
                if want.map(|b| (b / 8).max(1) * 8) != have {
                    a.throttle = want.map(|bps| crate::throttle::TokenBucket::new(now, bps));
                }
            }
        }
        for id in doomed {
            tracing::debug!(id, "allocation disconnected by the operator");
            self.remove_allocation(id);
            self.stats.allocations_deleted += 1;
        }
    }

    /// Expires whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock_unix = self.unix_now(now);
        self.apply_directory(now);
        while let Some((_, t)) = self.timers.pop_due(now) {
            match t {
                Timer::Allocation(id, gen) => {
                    if self
                        .allocations
                        .get(id)
                        .is_some_and(|a| a.generation == gen && a.expires <= now)
                    {
                        tracing::debug!(id, "allocation expired");
                        self.remove_allocation(id);
                        self.stats.allocations_expired += 1;
                    }
                }
                Timer::Permission(id, gen, ip) => {
                    if let Some(a) = self.allocations.get_mut(id).filter(|a| a.generation == gen) {
                        if a.permissions.get(&ip).is_some_and(|&e| e <= now) {
                            a.permissions.remove(&ip);
                            self.stats.permissions -= 1;
                        }
                    }
                }
                Timer::Channel(id, gen, num) => self.expire_channel(now, id, gen, num),
                Timer::TcpConnection(cid) => self.expire_tcp_connection(cid),
                Timer::Housekeeping => {
                    self.unauth.sweep(now);
                    self.replay.sweep(now);
                    self.timers
                        .push(now + HOUSEKEEPING_EVERY, Timer::Housekeeping);
                }
            }
        }
    }

    /// A channel expires in two steps: at `expires` it stops carrying data; after the cool-down
    /// its number and peer are free again.
    fn expire_channel(&mut self, now: Instant, id: AllocationId, gen: u64, num: u16) {
        let Some(a) = self.allocations.get_mut(id).filter(|a| a.generation == gen) else {
            return;
        };
        let Some(c) = a.channels.get_mut(&num) else {
            return;
        };
        if c.expires > now {
            return; // refreshed since
        }
        let free_at = c.expires + crate::allocation::CHANNEL_COOLDOWN;
        if now < free_at {
            if c.counted {
                c.counted = false;
                self.stats.channels -= 1;
            }
            self.timers.push(free_at, Timer::Channel(id, gen, num));
        } else {
            let c = *c;
            a.channels.remove(&num);
            a.peer_channels.remove(&c.peer);
        }
    }

    /// Counts a relayed packet leaving to a peer and returns the transmit.
    #[inline]
    fn relay_to_peer<'a>(
        &mut self,
        id: AllocationId,
        ft: &FiveTuple,
        relay: SocketAddr,
        peer: SocketAddr,
        data: &'a [u8],
    ) -> Transmit<'a> {
        self.stats
            .count(Direction::ServerToPeer, ft.transport, data.len());
        self.allocations[id]
            .usage
            .count(Direction::ServerToPeer, data.len());
        Transmit {
            dest: Dest::Peer { relay, peer },
            data,
        }
    }
}
