//! Refresh (RFC 8656 §7.3, RFC 6156 §5.2): extends or (with LIFETIME 0) deletes an allocation.

use std::time::{Duration, Instant};

use turnpike_stun::*;

use crate::allocation::AllocationId;
use crate::auth::AuthInfo;
use crate::error::TurnError;
use crate::five_tuple::FiveTuple;
use crate::server::{Reply, ResponseCtx, Server, Timer};

impl Server {
    /// The allocation on `ft` for a request by `auth`: 437 without one, 441 for another user
    /// (RFC 8656 §5: later requests must use the credentials of the Allocate).
    pub(crate) fn owned_allocation(
        &self,
        ft: &FiveTuple,
        auth: &AuthInfo,
    ) -> Result<AllocationId, TurnError> {
        let id = *self
            .by_five_tuple
            .get(ft)
            .ok_or(TurnError::AllocationMismatch)?;
        let a = &self.allocations[id];
        if matches!(a.state, crate::allocation::AllocationState::Pending { .. }) {
            return Err(TurnError::AllocationMismatch);
        }
        if a.username != auth.username {
            return Err(TurnError::WrongCredentials);
        }
        Ok(id)
    }

    pub(crate) fn handle_refresh(
        &mut self,
        now: Instant,
        ft: FiveTuple,
        msg: &Message<'_>,
        auth: &AuthInfo,
        ctx: &ResponseCtx,
    ) -> Result<Reply, TurnError> {
        // 1. An allocation on this 5-tuple, made by this user.
        let id = self.owned_allocation(&ft, auth)?;
        // 2. REQUESTED-ADDRESS-FAMILY, if present, must name a family the allocation has.
        if let Some(v) = msg.get(ATTR_REQUESTED_ADDRESS_FAMILY) {
            let ipv6 = match v.first() {
                Some(&ADDRESS_FAMILY_IPV4) => false,
                Some(&ADDRESS_FAMILY_IPV6) => true,
                _ => return Err(TurnError::BadRequest("REQUESTED-ADDRESS-FAMILY malformed")),
            };
            if self.allocations[id].relay_for_family(ipv6).is_none() {
                return Err(TurnError::PeerAddressFamilyMismatch);
            }
        }
        // 3. Desired lifetime: 0 deletes, otherwise up to the maximum.
        let lifetime = self.granted_lifetime(msg, false);
        if lifetime == Duration::ZERO {
            let n = self.write_success(ctx, |w| {
                w.attr_u32(ATTR_LIFETIME, 0)?;
                Ok(())
            })?;
            self.remove_allocation(id);
            self.stats.allocations_deleted += 1;
            let response = self.scratch[..n].to_vec();
            self.remember_deleted(now, ft, ctx.tid, response);
            return Ok(Reply::Written(n));
        }
        let a = &mut self.allocations[id];
        a.expires = now + lifetime;
        let (at, generation) = (a.expires, a.generation);
        self.timers.push(at, Timer::Allocation(id, generation));
        let n = self.write_success(ctx, |w| {
            w.attr_u32(ATTR_LIFETIME, lifetime.as_secs() as u32)?;
            Ok(())
        })?;
        Ok(Reply::Written(n))
    }
}
