//! Allocate (RFC 8656 §7.2, RFC 6156 §4, RFC 6062 §5.1): the numbered steps of the RFC on a
//! typed request, then the relay is requested from the driver and the response is written when
//! it reports back ([`Server::handle_relay_created`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use turnpike_stun::*;

use super::response::{write_response, Reply, ResponseCtx};
use super::{Cx, Server, Timer};
use crate::accounting::AccountingEvent;
use crate::allocation::{Allocation, AllocationState};
use crate::directory::Directory;
use crate::error::TurnError;
use crate::output::{AllocationId, Output, RelayError, RelayRequest, RelayResult};
use crate::quota::QuotaLease;
use crate::request::{self, Parsed};
use crate::runtime::RegionScope;

impl Server {
    pub(super) fn handle_allocate(
        &mut self,
        cx: &Cx<'_>,
        req: Parsed<request::Allocate>,
    ) -> Result<Reply, TurnError> {
        // 1. Authentication was done by the caller.
        // 2. The 5-tuple must not have an allocation (a retransmission was answered from cache).
        if self.allocations.by_five_tuple(&cx.ft).is_some() {
            return Err(TurnError::AllocationMismatch);
        }
        // 3-7. REQUESTED-TRANSPORT, DONT-FRAGMENT, RESERVATION-TOKEN, EVEN-PORT, families.
        let req = req?;
        // 8. Capacity and quotas: drain mode, the account's limits, node, user and scopes.
        if self.rt.refuses_new() {
            // Only to a region the tenant may use (data residency); any for static users and
            // tenants without a restriction.
            let dir = self.rt.directory.load();
            let allowed = cx
                .auth
                .account
                .as_ref()
                .and_then(|a| dir.tenant_regions.get(&*a.tenant_id));
            let scope = match allowed {
                Some(regions) => RegionScope::Only(regions),
                None => RegionScope::Any,
            };
            if let Some(r) = self.redirect(&cx.ft, scope) {
                return Err(TurnError::TryAlternate(r));
            }
            if self.rt.is_draining() {
                return Err(TurnError::InsufficientCapacity("draining"));
            }
        }
        let (lease, throttle) = self.admit(cx)?;
        // 9. Lifetime: the client's, clamped to [default, max] (RFC 8656 §7.2).
        let lifetime = self.granted_lifetime(req.lifetime, true);
        // Create the allocation (pending its relay) and ask the driver for the socket(s).
        let generation = self.generation();
        let ft = cx.ft;
        let id = self.allocations.insert(Allocation {
            five_tuple: ft,
            state: AllocationState::Pending {
                tid: cx.resp.tid,
                fingerprint: cx.resp.fingerprint,
                lifetime,
                dual: req.families.ipv4 && req.families.ipv6,
                draft_dual: req.draft_dual,
            },
            relays: [None, None],
            username: cx.auth.username.clone(),
            key: cx.auth.key,
            sha256: cx.auth.sha256,
            expires: cx.now + lifetime,
            generation,
            permissions: crate::FastMap::default(),
            channels: crate::FastMap::default(),
            peer_channels: crate::FastMap::default(),
            last_response: None,
            transport: req.transport,
            tcp_connections: HashMap::new(),
            account: cx.auth.account.clone(),
            usage: Default::default(),
            usage_reported: Default::default(),
            started_unix: 0,
            peers: Default::default(),
            throttle,
            credential_expires: cx.auth.expires_at,
            _quota: lease,
        });
        self.stats.allocations = self.allocations.len() as u64;
        self.outputs.push_back(Output::CreateRelay(RelayRequest {
            allocation: id,
            generation,
            five_tuple: ft,
            families: req.families,
            even_port: req.even_port,
            reservation_token: req.reservation_token,
            dont_fragment: req.dont_fragment,
            transport: req.transport,
        }));
        Ok(Reply::Pending)
    }

    /// Step 8 for the caller: refused by a quota action (486), or its lease of the node's,
    /// user's, tenant's and credential's allocation counts; with the account's bitrate cap.
    fn admit(
        &self,
        cx: &Cx<'_>,
    ) -> Result<(QuotaLease, Option<crate::throttle::TokenBucket>), TurnError> {
        let Some(acct) = &cx.auth.account else {
            let lease = self
                .rt
                .quota
                .lease(&cx.auth.username, &[])
                .map_err(|_| TurnError::QuotaReached)?;
            return Ok((lease, None));
        };
        let dir = self.rt.directory.load();
        let limits = dir.limits_for(acct);
        if limits.refuse {
            return Err(TurnError::QuotaReached);
        }
        let (t, c) = Directory::scopes(acct);
        let tmax = dir
            .tenant_limits
            .get(&*acct.tenant_id)
            .and_then(|l| l.max_allocations)
            .or(self.cfg.default_tenant_max_allocations);
        let cmax = acct
            .credential_id
            .as_ref()
            .and_then(|c| dir.credential_limits.get(&**c))
            .and_then(|l| l.max_allocations);
        let mut scopes = vec![(t.as_str(), tmax)];
        if let Some(c) = &c {
            scopes.push((c.as_str(), cmax));
        }
        let lease = self
            .rt
            .quota
            .lease(&cx.auth.username, &scopes)
            .map_err(|_| TurnError::QuotaReached)?;
        let throttle = limits
            .max_bitrate_bps
            .map(|bps| crate::throttle::TokenBucket::new(cx.now, bps));
        Ok((lease, throttle))
    }

    /// The lifetime to grant for a LIFETIME attribute (or its absence). Allocate never grants
    /// less than the default; Refresh grants what was asked, up to the maximum.
    pub(super) fn granted_lifetime(&self, asked: Option<Duration>, allocate: bool) -> Duration {
        match asked {
            None => self.cfg.default_lifetime,
            Some(d) if allocate => d.clamp(
                self.cfg.default_lifetime.min(self.cfg.max_lifetime),
                self.cfg.max_lifetime,
            ),
            Some(d) => d.min(self.cfg.max_lifetime),
        }
    }

    /// The driver's answer to [`Output::CreateRelay`]: finishes the Allocate and queues its
    /// response.
    pub fn handle_relay_created(
        &mut self,
        now: Instant,
        id: AllocationId,
        generation: u64,
        result: RelayResult,
    ) {
        let current = self
            .allocations
            .get(id)
            .filter(|a| a.generation == generation)
            .and_then(|a| match a.state {
                AllocationState::Pending {
                    tid,
                    fingerprint,
                    lifetime,
                    dual,
                    draft_dual,
                } => Some((tid, fingerprint, lifetime, dual, draft_dual)),
                AllocationState::Active => None,
            });
        let Some((tid, fingerprint, lifetime, dual, draft_dual)) = current else {
            // The allocation went away meanwhile (connection closed): give the sockets back.
            for addr in [result.ipv4, result.ipv6].into_iter().flatten().flatten() {
                self.outputs.push_back(Output::ReleaseRelay(addr));
            }
            return;
        };
        let a = &self.allocations[id];
        let ft = a.five_tuple;
        let ctx = ResponseCtx {
            method: METHOD_ALLOCATE,
            tid,
            fingerprint,
            key: Some((a.key, a.sha256)),
            request_len: usize::MAX,
        };
        // The primary family is IPv4 unless only IPv6 was asked for.
        let (primary, additional) = match (result.ipv4, result.ipv6) {
            (Some(v4), v6) => (v4, if dual { v6 } else { None }),
            (None, Some(v6)) => (v6, None),
            (None, None) => (Err(RelayError::FamilyUnsupported), None),
        };
        let primary = match primary {
            Ok(addr) => addr,
            Err(e) => {
                if let Some(Ok(extra)) = additional {
                    self.outputs.push_back(Output::ReleaseRelay(extra));
                }
                self.refuse_pending(now, id, &ctx, e);
                return;
            }
        };
        let mut relays = [None, None];
        relays[primary.is_ipv6() as usize] = Some(primary);
        if let Some(Ok(extra)) = additional {
            relays[extra.is_ipv6() as usize] = Some(extra);
        }
        let advertised: Vec<_> = relays
            .iter()
            .flatten()
            .map(|r| self.advertised(*r))
            .collect();
        self.activate(now, id, generation, relays, lifetime);
        let address_error = match additional {
            Some(Err(RelayError::FamilyUnsupported)) => Some(ErrorCode::AddressFamilyNotSupported),
            Some(Err(_)) => Some(ErrorCode::InsufficientCapacity),
            _ => None,
        };
        let token = result.reservation_token;
        let software = self.cfg.software.clone();
        let written = write_response(&mut self.scratch, &ctx, Class::Success, &software, |w| {
            for addr in &advertised {
                w.xor_address(ATTR_XOR_RELAYED_ADDRESS, *addr)?;
            }
            if let Some(code) = address_error {
                let typ = if draft_dual {
                    ATTR_ADDRESS_ERROR_CODE_DRAFT
                } else {
                    ATTR_ADDRESS_ERROR_CODE
                };
                w.address_error_code(typ, ADDRESS_FAMILY_IPV6, code)?;
            }
            w.attr_u32(ATTR_LIFETIME, lifetime.as_secs() as u32)?;
            if let Some(t) = token {
                w.attr(ATTR_RESERVATION_TOKEN, &t.to_be_bytes())?;
            }
            w.xor_address(ATTR_XOR_MAPPED_ADDRESS, ft.client)?;
            Ok(())
        });
        let Ok(n) = written else {
            // Cannot happen with a 64 KiB scratch buffer; fail the allocation rather than panic.
            self.remove_allocation(id);
            return;
        };
        let data = self.scratch[..n].to_vec();
        tracing::debug!(client = %ft.client, relays = ?advertised, lifetime = lifetime.as_secs(), "allocation created");
        self.allocations[id].last_response = Some((tid, data.clone()));
        self.outputs.push_back(Output::Transmit { to: ft, data });
    }

    /// A pending Allocate whose relay could not be made: the allocation goes, the client gets
    /// the error (remembered for retransmissions).
    fn refuse_pending(&mut self, now: Instant, id: AllocationId, ctx: &ResponseCtx, e: RelayError) {
        let ft = self.allocations[id].five_tuple;
        let err = match e {
            RelayError::FamilyUnsupported => TurnError::AddressFamilyNotSupported,
            RelayError::Exhausted => TurnError::InsufficientCapacity("no relay port free"),
            RelayError::BadToken => TurnError::InsufficientCapacity("reservation token unknown"),
        };
        self.remove_allocation(id);
        if let Some(n) = self.write_error(now, ft, ctx, &err) {
            let data = self.scratch[..n].to_vec();
            self.replay.remember(now, ft, ctx.tid, data.clone());
            self.outputs.push_back(Output::Transmit { to: ft, data });
        }
    }

    /// A pending allocation gets its relays: it is live from `now` for `lifetime`, metered and
    /// timed.
    fn activate(
        &mut self,
        now: Instant,
        id: AllocationId,
        generation: u64,
        relays: [Option<std::net::SocketAddr>; 2],
        lifetime: Duration,
    ) {
        let unix = self.unix_now(now);
        self.allocations.set_relays(id, relays);
        let a = &mut self.allocations[id];
        a.state = AllocationState::Active;
        a.expires = now + lifetime;
        a.started_unix = unix;
        if let Some(account) = a.account.clone() {
            self.metering.push(AccountingEvent::Started {
                serial: crate::accounting::allocation_serial(self.instance, generation),
                account,
                username: a.username.clone(),
                client: a.five_tuple.client,
                transport: a.five_tuple.transport,
                relay: relays.iter().flatten().next().copied(),
                at_unix: unix,
            });
        }
        self.timers
            .push(a.expires, Timer::Allocation(id, generation));
        self.stats.allocations_created += 1;
    }
}
