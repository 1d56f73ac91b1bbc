//! CreatePermission (RFC 8656 §9.2): installs or refreshes permissions for peer IPs; and the
//! peer checks every method that names a peer shares.

use std::net::SocketAddr;
use std::time::Instant;

use super::response::Reply;
use super::{Cx, Server, Timer};
use crate::error::TurnError;
use crate::output::AllocationId;
use crate::request::{self, Parsed};

impl Server {
    /// Checks one peer against the allocation's families (443) and the peer policy (403).
    fn check_peer(&self, id: AllocationId, peer: SocketAddr) -> Result<(), TurnError> {
        if self.allocations[id].relay_for_peer(&peer).is_none() {
            return Err(TurnError::PeerAddressFamilyMismatch);
        }
        if !self.cfg.peer_policy.permits(peer.ip()) {
            return Err(TurnError::Forbidden("peer address refused by policy"));
        }
        Ok(())
    }

    /// [`Self::check_peer`] for a peer named with its port (ChannelBind, Connect): the server's
    /// own endpoints are refused too.
    pub(super) fn check_peer_endpoint(
        &self,
        id: AllocationId,
        peer: SocketAddr,
    ) -> Result<(), TurnError> {
        self.check_peer(id, peer)?;
        if self.cfg.peer_policy.own.contains(peer) {
            return Err(TurnError::Forbidden("peer is the server itself"));
        }
        Ok(())
    }

    /// Installs or refreshes the permission for `peer`'s IP.
    pub(super) fn install_permission(&mut self, now: Instant, id: AllocationId, peer: SocketAddr) {
        let ip = peer.ip().to_canonical();
        let expires = now + self.cfg.permission_lifetime;
        let a = &mut self.allocations[id];
        if a.permissions.insert(ip, expires).is_none() {
            self.stats.permissions += 1;
        }
        if a.peers.len() < crate::allocation::MAX_LOGGED_PEERS {
            a.peers.insert(ip);
        }
        let generation = a.generation;
        self.timers
            .push(expires, Timer::Permission(id, generation, ip));
    }

    pub(super) fn handle_create_permission(
        &mut self,
        cx: &Cx<'_>,
        req: Parsed<request::CreatePermission>,
    ) -> Result<Reply, TurnError> {
        // 1. An allocation on this 5-tuple, made by this user.
        let id = self.owned_allocation(&cx.ft, cx.auth)?;
        // 2. At least one XOR-PEER-ADDRESS; every one well-formed, of the allocation's family and
        //    allowed by policy. All or nothing: nothing is installed if one fails.
        let req = req?;
        for &peer in &req.peers {
            self.check_peer(id, peer)?;
        }
        let a = &self.allocations[id];
        let new = req
            .peers
            .iter()
            .filter(|p| !a.permissions.contains_key(&p.ip().to_canonical()))
            .count();
        if a.permissions.len() + new > self.cfg.max_permissions_per_allocation {
            return Err(TurnError::InsufficientCapacity("too many permissions"));
        }
        // 3. Install or refresh each (lifetime 300 s).
        for p in req.peers {
            self.install_permission(cx.now, id, p);
        }
        let n = self.write_success(&cx.resp, |_| Ok(()))?;
        Ok(Reply::Written(n))
    }
}
