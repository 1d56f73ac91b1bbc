//! RFC 6062 TCP allocations: Connect (§5.2), ConnectionAttempt for incoming peer connections
//! (§5.3), ConnectionBind on a client data connection (§5.4), and the 30-second limit for a
//! ConnectionBind to arrive (§5.3, §5.4).
//!
//! The state machine decides and answers; the driver owns the TCP connections and copies bytes
//! once a data connection is spliced to its peer connection.

use std::net::SocketAddr;
use std::time::Instant;

use turnpike_stun::*;

use super::connects::PendingConnect;
use super::response::{write_response, Reply};
use super::{Cx, Server, Timer};
use crate::error::{DropReason, TurnError};
use crate::output::{ConnectionId, Output, RelayTransport};
use crate::request::{self, Parsed};
use crate::tcp_registry::ClaimError;
use crate::tcp_registry::CONNECTION_BIND_TIMEOUT;

impl Server {
    pub(super) fn handle_connect(
        &mut self,
        cx: &Cx<'_>,
        req: Parsed<request::Connect>,
    ) -> Result<Reply, TurnError> {
        // 1. An allocation on this 5-tuple, made by this user, with a TCP relay.
        let id = self.owned_allocation(&cx.ft, cx.auth)?;
        if self.allocations[id].transport != RelayTransport::Tcp {
            return Err(TurnError::BadRequest("Connect needs a TCP allocation"));
        }
        // 2. XOR-PEER-ADDRESS: present, right family, allowed by policy, not the server itself.
        let peer = req?.peer;
        self.check_peer_endpoint(id, peer)?;
        // 3. At most one connection per peer address (446).
        let rt = self.rt.clone();
        let registry = &rt.tcp_connections;
        let a = &mut self.allocations[id];
        if let Some(&cid) = a.tcp_connections.get(&peer) {
            if registry.contains(cid) {
                return Err(TurnError::ConnectionAlreadyExists);
            }
            a.tcp_connections.remove(&peer);
        }
        // 4. Ask the driver to connect from the relayed address; answer when it reports back.
        let relay = a
            .relay_for_peer(&peer)
            .ok_or(TurnError::PeerAddressFamilyMismatch)?;
        let cid = registry.issue(
            &a.username,
            crate::accounting::allocation_serial(self.instance, a.generation),
        );
        a.tcp_connections.insert(peer, cid);
        let generation = a.generation;
        self.pending_connects.insert(
            cid,
            PendingConnect {
                allocation: id,
                generation,
                peer,
                ctx: cx.resp,
            },
        );
        self.outputs.push_back(Output::ConnectPeer {
            connection: cid,
            relay,
            peer,
        });
        Ok(Reply::Pending)
    }

    /// The driver's answer to [`Output::ConnectPeer`].
    pub fn handle_peer_connect_result(&mut self, now: Instant, cid: ConnectionId, connected: bool) {
        let Some(p) = self.pending_connects.remove(&cid) else {
            self.outputs.push_back(Output::ClosePeerConnection(cid));
            return;
        };
        let Some(a) = self
            .allocations
            .get_mut(p.allocation)
            .filter(|a| a.generation == p.generation)
        else {
            self.rt.tcp_connections.remove(cid);
            self.outputs.push_back(Output::ClosePeerConnection(cid));
            return;
        };
        let ft = a.five_tuple;
        let software = self.cfg.software.clone();
        let written = if connected {
            self.timers
                .push(now + CONNECTION_BIND_TIMEOUT, Timer::TcpConnection(cid));
            write_response(&mut self.scratch, &p.ctx, Class::Success, &software, |w| {
                w.attr_u32(ATTR_CONNECTION_ID, cid)?;
                Ok(())
            })
        } else {
            a.tcp_connections.remove(&p.peer);
            self.rt.tcp_connections.remove(cid);
            write_response(&mut self.scratch, &p.ctx, Class::Error, &software, |w| {
                w.error_code(ErrorCode::ConnectionTimeoutOrFailure)?;
                Ok(())
            })
        };
        if let Ok(n) = written {
            let data = self.scratch[..n].to_vec();
            if let Some(a) = self.allocations.get_mut(p.allocation) {
                a.last_response = Some((p.ctx.tid, data.clone()));
            }
            self.outputs.push_back(Output::Transmit { to: ft, data });
        }
    }

    /// A peer connected to the relayed TCP address `relay` (RFC 6062 §5.3). Returns the
    /// connection id when the connection is accepted (a permission exists); `None` means the
    /// driver must close it.
    pub fn handle_incoming_peer_connection(
        &mut self,
        now: Instant,
        relay: SocketAddr,
        peer: SocketAddr,
    ) -> Option<ConnectionId> {
        let id = self.allocations.by_relay(RelayTransport::Tcp, relay)?;
        let rt = self.rt.clone();
        let registry = &rt.tcp_connections;
        let a = &mut self.allocations[id];
        if a.transport != RelayTransport::Tcp || !a.has_permission(now, peer.ip()) {
            self.stats.drop(DropReason::NoPermission);
            return None;
        }
        if a.tcp_connections
            .get(&peer)
            .is_some_and(|&c| registry.contains(c))
        {
            return None;
        }
        let cid = registry.issue(
            &a.username,
            crate::accounting::allocation_serial(self.instance, a.generation),
        );
        a.tcp_connections.insert(peer, cid);
        let ft = a.five_tuple;
        self.timers
            .push(now + CONNECTION_BIND_TIMEOUT, Timer::TcpConnection(cid));
        // ConnectionAttempt indication on the control connection.
        let tid = self.indication_tid();
        let mut w = MessageWriter::new(
            &mut self.scratch,
            MessageType::new(METHOD_CONNECTION_ATTEMPT, Class::Indication),
            tid,
        )
        .ok()?;
        w.xor_address(ATTR_XOR_PEER_ADDRESS, peer).ok()?;
        w.attr_u32(ATTR_CONNECTION_ID, cid).ok()?;
        let n = w.finish();
        let data = self.scratch[..n].to_vec();
        self.outputs.push_back(Output::Transmit { to: ft, data });
        Some(cid)
    }

    /// ConnectionBind on a new client connection (RFC 6062 §5.4).
    pub(super) fn handle_connection_bind(
        &mut self,
        cx: &Cx<'_>,
        req: Parsed<request::ConnectionBind>,
    ) -> Result<Reply, TurnError> {
        // 1. Only on a TCP/TLS connection that is not a control connection.
        let ft = cx.ft;
        if !ft.transport.is_stream() || self.allocations.by_five_tuple(&ft).is_some() {
            return Err(TurnError::BadRequest(
                "ConnectionBind belongs on a new data connection",
            ));
        }
        // 2. CONNECTION-ID: issued, unbound, and this user's.
        let cid = req?.connection_id;
        let owner = match self.rt.tcp_connections.claim(cid, &cx.auth.username) {
            Ok(owner) => owner,
            Err(ClaimError::WrongUser) => return Err(TurnError::WrongCredentials),
            Err(_) => {
                return Err(TurnError::BadRequest(
                    "unknown or already bound CONNECTION-ID",
                ))
            }
        };
        // 3. Success, then the driver joins this connection with the peer connection.
        let n = self.write_success(&cx.resp, |_| Ok(()))?;
        self.outputs.push_back(Output::SpliceData {
            connection: cid,
            data: ft,
            account: cx.auth.account.clone(),
            allocation: owner,
        });
        Ok(Reply::Written(n))
    }

    /// A peer connection (spliced or not) ended.
    pub fn handle_peer_connection_closed(&mut self, _now: Instant, cid: ConnectionId) {
        self.rt.tcp_connections.remove(cid);
        self.pending_connects.remove(&cid);
    }

    /// The ConnectionBind deadline of `cid` passed.
    pub(super) fn expire_tcp_connection(&mut self, cid: ConnectionId) {
        if self.rt.tcp_connections.is_bound(cid) {
            return;
        }
        if self.rt.tcp_connections.contains(cid) {
            self.rt.tcp_connections.remove(cid);
            self.outputs.push_back(Output::ClosePeerConnection(cid));
        }
    }

    /// Closes every peer connection of a deleted allocation.
    pub(super) fn close_tcp_connections(&mut self, conns: impl Iterator<Item = ConnectionId>) {
        for cid in conns {
            self.rt.tcp_connections.remove(cid);
            self.pending_connects.remove(&cid);
            self.outputs.push_back(Output::ClosePeerConnection(cid));
        }
    }
}
