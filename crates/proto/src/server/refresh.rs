//! Refresh (RFC 8656 §7.3, RFC 6156 §5.2): extends or (with LIFETIME 0) deletes an allocation.

use std::time::Duration;

use turnpike_stun::*;

use super::response::Reply;
use super::{Cx, Server, Timer};
use crate::error::TurnError;
use crate::request::{self, Parsed};

impl Server {
    pub(super) fn handle_refresh(
        &mut self,
        cx: &Cx<'_>,
        req: Parsed<request::Refresh>,
    ) -> Result<Reply, TurnError> {
        // 1. An allocation on this 5-tuple, made by this user.
        let id = self.owned_allocation(&cx.ft, cx.auth)?;
        let req = req?;
        // 2. REQUESTED-ADDRESS-FAMILY, if present, must name a family the allocation has.
        if let Some(family) = req.family {
            let ipv6 = family == AddressFamily::Ipv6;
            if self.allocations[id].relay_for_family(ipv6).is_none() {
                return Err(TurnError::PeerAddressFamilyMismatch);
            }
        }
        // 3. Desired lifetime: 0 deletes, otherwise up to the maximum.
        let lifetime = self.granted_lifetime(req.lifetime, false);
        if lifetime == Duration::ZERO {
            let n = self.write_success(&cx.resp, |w| {
                w.attr_u32(ATTR_LIFETIME, 0)?;
                Ok(())
            })?;
            self.remove_allocation(id);
            self.stats.allocations_deleted += 1;
            let response = self.scratch[..n].to_vec();
            self.replay.remember(cx.now, cx.ft, cx.resp.tid, response);
            return Ok(Reply::Written(n));
        }
        let a = &mut self.allocations[id];
        a.expires = cx.now + lifetime;
        let (at, generation) = (a.expires, a.generation);
        self.timers.push(at, Timer::Allocation(id, generation));
        let n = self.write_success(&cx.resp, |w| {
            w.attr_u32(ATTR_LIFETIME, lifetime.as_secs() as u32)?;
            Ok(())
        })?;
        Ok(Reply::Written(n))
    }
}
