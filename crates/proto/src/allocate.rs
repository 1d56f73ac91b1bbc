//! Allocate (RFC 8656 §7.2, RFC 6156 §4): the numbered steps of the RFC, then the relay is
//! requested from the driver and the response is written when it reports back
//! ([`Server::handle_relay_created`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use turnpike_stun::*;

use crate::accounting::AccountingEvent;
use crate::allocation::{Allocation, AllocationId, AllocationState};
use crate::auth::AuthInfo;
use crate::error::TurnError;
use crate::five_tuple::FiveTuple;
use crate::output::{Families, Output, RelayError, RelayRequest, RelayResult, RelayTransport};
use crate::server::{write_response, Reply, ResponseCtx, Server, Timer};

impl Server {
    pub(crate) fn handle_allocate(
        &mut self,
        now: Instant,
        ft: FiveTuple,
        msg: &Message<'_>,
        auth: &AuthInfo,
        _ctx: &ResponseCtx,
    ) -> Result<Reply, TurnError> {
        // 1. Authentication was done by the caller.
        // 2. The 5-tuple must not have an allocation (a retransmission was answered from cache).
        if self.by_five_tuple.contains_key(&ft) {
            return Err(TurnError::AllocationMismatch);
        }
        // 3. REQUESTED-TRANSPORT: present, and UDP.
        let rt = msg
            .get(ATTR_REQUESTED_TRANSPORT)
            .ok_or(TurnError::BadRequest("REQUESTED-TRANSPORT missing"))?;
        if rt.len() != 4 {
            return Err(TurnError::BadRequest("REQUESTED-TRANSPORT malformed"));
        }
        let transport = match rt[0] {
            PROTO_UDP => RelayTransport::Udp,
            // RFC 6062 §5.1: TCP relays only for clients on TCP/TLS, without DONT-FRAGMENT,
            // EVEN-PORT or RESERVATION-TOKEN.
            PROTO_TCP => {
                if !ft.transport.is_stream() {
                    return Err(TurnError::BadRequest(
                        "TCP relay needs a TCP or TLS client connection",
                    ));
                }
                for a in [ATTR_DONT_FRAGMENT, ATTR_EVEN_PORT, ATTR_RESERVATION_TOKEN] {
                    if msg.get(a).is_some() {
                        return Err(TurnError::BadRequest(
                            "attribute not allowed with a TCP relay",
                        ));
                    }
                }
                RelayTransport::Tcp
            }
            _ => return Err(TurnError::UnsupportedTransport),
        };
        // 4. DONT-FRAGMENT: supported (the driver sets DF on the relay socket).
        let dont_fragment = msg.get(ATTR_DONT_FRAGMENT).is_some();
        // 5. RESERVATION-TOKEN excludes EVEN-PORT and REQUESTED-ADDRESS-FAMILY (RFC 6156 §4.2).
        let token = match msg.get(ATTR_RESERVATION_TOKEN) {
            None => None,
            Some(t) => {
                let t: [u8; 8] = t
                    .try_into()
                    .map_err(|_| TurnError::BadRequest("RESERVATION-TOKEN malformed"))?;
                Some(u64::from_be_bytes(t))
            }
        };
        let even = msg.get(ATTR_EVEN_PORT);
        let requested_family = msg.get(ATTR_REQUESTED_ADDRESS_FAMILY);
        let draft_dual = msg.get(ATTR_ADDITIONAL_ADDRESS_FAMILY_DRAFT).is_some();
        let additional_family = msg
            .get(ATTR_ADDITIONAL_ADDRESS_FAMILY)
            .or_else(|| msg.get(ATTR_ADDITIONAL_ADDRESS_FAMILY_DRAFT));
        if token.is_some() && (even.is_some() || requested_family.is_some()) {
            return Err(TurnError::BadRequest(
                "RESERVATION-TOKEN with EVEN-PORT or REQUESTED-ADDRESS-FAMILY",
            ));
        }
        // 6. EVEN-PORT: R bit asks to reserve the next port.
        let even_port = match even {
            None => None,
            Some([]) => return Err(TurnError::BadRequest("EVEN-PORT malformed")),
            Some(v) => Some(v[0] & 0x80 != 0),
        };
        // 7. Address families (RFC 8656 §7.2 steps on REQUESTED-/ADDITIONAL-ADDRESS-FAMILY).
        if requested_family.is_some() && additional_family.is_some() {
            return Err(TurnError::BadRequest(
                "both REQUESTED- and ADDITIONAL-ADDRESS-FAMILY",
            ));
        }
        let families = match (requested_family, additional_family) {
            (Some(v), None) => match v.first() {
                Some(&ADDRESS_FAMILY_IPV4) => Families {
                    ipv4: true,
                    ipv6: false,
                },
                Some(&ADDRESS_FAMILY_IPV6) => Families {
                    ipv4: false,
                    ipv6: true,
                },
                _ => return Err(TurnError::AddressFamilyNotSupported),
            },
            (None, Some(v)) => match v.first() {
                Some(&ADDRESS_FAMILY_IPV6) => Families {
                    ipv4: true,
                    ipv6: true,
                },
                _ => {
                    return Err(TurnError::BadRequest(
                        "ADDITIONAL-ADDRESS-FAMILY must be IPv6",
                    ))
                }
            },
            _ => Families {
                ipv4: true,
                ipv6: false,
            },
        };
        // 8. Capacity and quotas: drain mode, total and per-user allocations.
        if self.cfg.draining.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(TurnError::InsufficientCapacity("draining"));
        }
        // The control plane's account limits: refused by a quota action, or at its tenant's
        // or credential's concurrent-allocation limit.
        let mut throttle = None;
        if let Some(acct) = &auth.account {
            let dir = self.cfg.directory.load();
            let limits = dir.limits_for(acct);
            if limits.refuse {
                return Err(TurnError::QuotaReached);
            }
            let (t, c) = crate::directory::Directory::scopes(acct);
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
            if !self.cfg.quota.try_acquire_scopes(&scopes) {
                return Err(TurnError::QuotaReached);
            }
            throttle = limits
                .max_bitrate_bps
                .map(|bps| crate::throttle::TokenBucket::new(now, bps));
        }
        if !self.cfg.quota.try_acquire(&auth.username) {
            if let Some(acct) = &auth.account {
                release_account_scopes(&self.cfg.quota, acct);
            }
            return Err(TurnError::QuotaReached);
        }
        // 9. Lifetime: the client's, clamped to [default, max] (RFC 8656 §7.2).
        let lifetime = self.granted_lifetime(msg, true);
        // Create the allocation (pending its relay) and ask the driver for the socket(s).
        let generation = self.generation();
        let id = self.allocations.insert(Allocation {
            five_tuple: ft,
            state: AllocationState::Pending {
                tid: msg.transaction_id(),
                fingerprint: msg.has_fingerprint(),
                lifetime,
                dual: families.ipv4 && families.ipv6,
                draft_dual,
            },
            relays: [None, None],
            username: auth.username.clone(),
            key: auth.key,
            sha256: auth.sha256,
            expires: now + lifetime,
            generation,
            permissions: HashMap::new(),
            channels: HashMap::new(),
            peer_channels: HashMap::new(),
            last_response: None,
            transport,
            tcp_connections: HashMap::new(),
            account: auth.account.clone(),
            usage: Default::default(),
            usage_reported: Default::default(),
            started_unix: 0,
            peers: Default::default(),
            throttle,
        });
        self.by_five_tuple.insert(ft, id);
        self.stats.allocations = self.allocations.len() as u64;
        self.outputs.push_back(Output::CreateRelay(RelayRequest {
            allocation: id,
            generation,
            five_tuple: ft,
            families,
            even_port,
            reservation_token: token,
            dont_fragment,
            transport,
        }));
        Ok(Reply::Pending)
    }

    /// The lifetime to grant for a LIFETIME attribute (or its absence). Allocate never grants
    /// less than the default; Refresh grants what was asked, up to the maximum.
    pub(crate) fn granted_lifetime(&self, msg: &Message<'_>, allocate: bool) -> Duration {
        let asked = msg
            .get(ATTR_LIFETIME)
            .filter(|v| v.len() == 4)
            .map(|v| Duration::from_secs(u32::from_be_bytes([v[0], v[1], v[2], v[3]]) as u64));
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
                let err = match e {
                    RelayError::FamilyUnsupported => TurnError::AddressFamilyNotSupported,
                    RelayError::Exhausted => TurnError::InsufficientCapacity("no relay port free"),
                    RelayError::BadToken => {
                        TurnError::InsufficientCapacity("reservation token unknown")
                    }
                };
                self.remove_allocation(id);
                if let Some(n) = self.write_error(now, ft, &ctx, &err) {
                    let data = self.scratch[..n].to_vec();
                    self.remember_deleted(now, ft, tid, data.clone());
                    self.outputs.push_back(Output::Transmit { to: ft, data });
                }
                return;
            }
        };
        let transport = self.allocations[id].transport;
        let mut relays = [None, None];
        relays[primary.is_ipv6() as usize] = Some(primary);
        if let Some(Ok(extra)) = additional {
            relays[extra.is_ipv6() as usize] = Some(extra);
        }
        for r in relays.iter().flatten() {
            self.by_relay.insert((transport, *r), id);
        }
        let advertised: Vec<_> = relays
            .iter()
            .flatten()
            .map(|r| self.advertised(*r))
            .collect();
        let unix = self.unix_now(now);
        let a = &mut self.allocations[id];
        a.relays = relays;
        a.state = AllocationState::Active;
        a.expires = now + lifetime;
        a.started_unix = unix;
        if let Some(account) = a.account.clone() {
            self.accounting.push(AccountingEvent::Started {
                serial: crate::accounting::allocation_serial(self.instance, generation),
                account,
                username: a.username.clone(),
                client: ft.client,
                transport: ft.transport,
                relay: relays.iter().flatten().next().copied(),
                at_unix: unix,
            });
        }
        self.timers
            .push(a.expires, Timer::Allocation(id, generation));
        self.stats.allocations_created += 1;
        let address_error = match additional {
            Some(Err(RelayError::FamilyUnsupported)) => Some(ERR_ADDRESS_FAMILY_NOT_SUPPORTED),
            Some(Err(_)) => Some(ERR_INSUFFICIENT_CAPACITY),
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
}

/// Gives back the tenant / credential allocation counts of `acct`.
pub(crate) fn release_account_scopes(
    quota: &crate::quota::AllocationQuota,
    acct: &crate::directory::Account,
) {
    let (t, c) = crate::directory::Directory::scopes(acct);
    match c {
        Some(c) => quota.release_scopes(&[&t, &c]),
        None => quota.release_scopes(&[&t]),
    }
}
