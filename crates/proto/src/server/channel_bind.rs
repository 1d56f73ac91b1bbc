//! ChannelBind (RFC 8656 §11.2): binds a channel number to a peer address, or refreshes the
//! binding, and installs/refreshes the permission for the peer's IP.

use super::response::Reply;
use super::{Cx, Server, Timer};
use crate::allocation::ChannelBinding;
use crate::error::TurnError;
use crate::output::RelayTransport;
use crate::request::{self, Parsed};

impl Server {
    pub(super) fn handle_channel_bind(
        &mut self,
        cx: &Cx<'_>,
        req: Parsed<request::ChannelBind>,
    ) -> Result<Reply, TurnError> {
        // 1. An allocation on this 5-tuple, made by this user.
        let id = self.owned_allocation(&cx.ft, cx.auth)?;
        if self.allocations[id].transport != RelayTransport::Udp {
            return Err(TurnError::BadRequest("channels need a UDP allocation"));
        }
        // 2. CHANNEL-NUMBER present and in range; 3. XOR-PEER-ADDRESS present, of the
        //    allocation's family, allowed by policy and not the server itself.
        let request::ChannelBind { number: num, peer } = req?;
        self.check_peer_endpoint(id, peer)?;
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
        let expires = cx.now + self.cfg.channel_lifetime;
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
        self.install_permission(cx.now, id, peer);
        let n = self.write_success(&cx.resp, |_| Ok(()))?;
        Ok(Reply::Written(n))
    }
}
