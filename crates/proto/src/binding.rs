//! Binding (RFC 8489 §6.3): tells the client its server-reflexive address. No authentication.
//! RFC 5780 CHANGE-REQUEST is not served by this instance and gets 420 (as RFC 5780 §7.2 says a
//! server without a second address must).

use turnpike_stun::*;

use crate::error::{TurnError, MAX_UNKNOWN};
use crate::five_tuple::FiveTuple;
use crate::server::{Reply, ResponseCtx, Server};

/// Attributes a Binding request may carry that we understand (ICE adds PRIORITY & co; they are
/// meaningful to ICE agents, not to a STUN server, but are not unknown).
const KNOWN_BINDING_ATTRS: &[u16] = &[
    ATTR_USERNAME,
    ATTR_MESSAGE_INTEGRITY,
    ATTR_MESSAGE_INTEGRITY_SHA256,
    ATTR_PRIORITY,
    ATTR_USE_CANDIDATE,
    ATTR_PADDING,
    ATTR_REALM,
    ATTR_NONCE,
    ATTR_USERHASH,
    ATTR_PASSWORD_ALGORITHM,
];

impl Server {
    pub(crate) fn handle_binding(
        &mut self,
        ft: FiveTuple,
        msg: &Message<'_>,
        ctx: &ResponseCtx,
    ) -> Result<Reply, TurnError> {
        // 1. Unknown comprehension-required attributes (CHANGE-REQUEST among them) -> 420.
        let mut unknown = [0u16; MAX_UNKNOWN];
        let n = msg.unknown_required(KNOWN_BINDING_ATTRS, &mut unknown);
        if n > 0 {
            return Err(TurnError::UnknownAttributes(unknown, n));
        }
        // 2. Success with XOR-MAPPED-ADDRESS (the client's source as seen here).
        let n = self.write_success(ctx, |w| {
            w.xor_address(ATTR_XOR_MAPPED_ADDRESS, ft.client)?;
            Ok(())
        })?;
        Ok(Reply::Written(n))
    }
}
