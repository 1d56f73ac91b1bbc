//! ChannelBind (RFC 8656 §11.2): binds a channel number to a peer address, or refreshes the
//! binding, and installs/refreshes the permission for the peer's IP.

use std::time::Instant;

use turnpike_stun::*;

use crate::allocation::ChannelBinding;
use crate::auth::AuthInfo;
use crate::error::TurnError;
use crate::five_tuple::FiveTuple;
use crate::server::{Reply, ResponseCtx, Server, Timer};

impl Server {
    pub(crate) fn handle_channel_bind(
        &mut self,
        now: Instant,
        ft: FiveTuple,
        msg: &Message<'_>,
        auth: &AuthInfo,
        ctx: &ResponseCtx,
    ) -> Result<Reply, TurnError> {
        // 1. An allocation on this 5-tuple, made by this user.
        let id = self.owned_allocation(&ft, auth)?;
        if self.allocations[id].transport != crate::output::RelayTransport::Udp {
            return Err(TurnError::BadRequest("channels need a UDP allocation"));
        }
        // 2. CHANNEL-NUMBER present and in range. RFC 8656 narrows the range to 0x4000-0x4FFF;
        //    RFC 5766 clients (coturn's among them) use up to 0x7FFF, which we accept.
        let num = msg
            .get(ATTR_CHANNEL_NUMBER)
            .filter(|v| v.len() == 4)
            .map(|v| u16::from_be_bytes([v[0], v[1]]))
            .ok_or(TurnError::BadRequest("CHANNEL-NUMBER missing"))?;
        if !ChannelData::is_valid_channel(num) {
            return Err(TurnError::BadRequest("channel number out of range"));
        }
        // 3. XOR-PEER-ADDRESS present, right family, allowed by policy.
        let peer = self.checked_peer(id, msg)?;
        // 4. The number must not be bound to another peer, nor the peer to another number
        //    (including bindings cooling down after expiry).
        let a = &self.allocations[id];
        if a.channels.get(&num).is_some_and(|c| c.peer != peer) {
            return Err(TurnError::BadRequest("channel bound to another peer"));
        }
        if a.peer_channels.get(&peer).is_some_and(|&n| n != num) {
            return Err(TurnError::BadRequest("peer bound to another channel"));
        }
        if !a.channels.contains_key(&num)
            && a.channels.len() >= self.cfg.max_channels_per_allocation
        {
            return Err(TurnError::InsufficientCapacity("too many channels"));
        }
        // 5. Bind or refresh (600 s), and install/refresh the permission (300 s).
        let expires = now + self.cfg.channel_lifetime;
        let a = &mut self.allocations[id];
        let entry = a.channels.entry(num).or_insert(ChannelBinding {
            peer,
            expires,
            counted: false,
        });
        entry.expires = expires;
        if !entry.counted {
            entry.counted = true;
            self.stats.channels += 1;
        }
        a.peer_channels.insert(peer, num);
        let generation = a.generation;
        self.timers
            .push(expires, Timer::Channel(id, generation, num));
        self.install_permission(now, id, peer);
        let n = self.write_success(ctx, |_| Ok(()))?;
        Ok(Reply::Written(n))
    }
}
