//! Binding (RFC 8489 §6.3): tells the client its server-reflexive address. No authentication.
//! With RFC 5780 configured (two addresses), UDP Binding requests may carry CHANGE-REQUEST and
//! RESPONSE-PORT, and responses carry RESPONSE-ORIGIN and OTHER-ADDRESS (RFC 5780 §7.2-§7.3);
//! without it, CHANGE-REQUEST gets 420 as RFC 5780 §7.2 requires of a one-address server.

use std::net::SocketAddr;

use turnpike_stun::*;

use super::response::{Reply, ResponseCtx};
use super::Server;
use crate::error::{TurnError, MAX_UNKNOWN};
use crate::five_tuple::FiveTuple;
use crate::request;

/// Attributes a Binding request may carry that we understand (ICE adds PRIORITY & co; they are
/// meaningful to ICE agents, not to a STUN server, but are not unknown). The last two are RFC
/// 5780's and count as known only when discovery is served.
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
    ATTR_CHANGE_REQUEST,
    ATTR_RESPONSE_PORT,
];
const RFC5780_ATTRS: usize = 2;

impl Server {
    pub(super) fn handle_binding(
        &mut self,
        ft: FiveTuple,
        msg: &Message<'_>,
        ctx: &ResponseCtx,
    ) -> Result<Reply, TurnError> {
        // RFC 5780 applies to UDP on a node with two addresses of the request's family.
        let rfc5780 = self.cfg.rfc5780.filter(|r| {
            ft.transport == crate::five_tuple::Transport::Udp
                && r.primary_ip.is_ipv4() == ft.server.is_ipv4()
        });
        // 1. Unknown comprehension-required attributes (CHANGE-REQUEST among them unless RFC
        //    5780 is served) -> 420.
        let mut unknown = [0u16; MAX_UNKNOWN];
        let known = if rfc5780.is_some() {
            KNOWN_BINDING_ATTRS
        } else {
            &KNOWN_BINDING_ATTRS[..KNOWN_BINDING_ATTRS.len() - RFC5780_ATTRS]
        };
        let n = msg.unknown_required(known, &mut unknown);
        if n > 0 {
            return Err(TurnError::UnknownAttributes(unknown, n));
        }
        let Some(r) = rfc5780 else {
            // 2. Success with XOR-MAPPED-ADDRESS (the client's source as seen here).
            let n = self.write_success(ctx, |w| {
                w.xor_address(ATTR_XOR_MAPPED_ADDRESS, ft.client)?;
                Ok(())
            })?;
            return Ok(Reply::Written(n));
        };
        // 2'. RFC 5780 §7.2: CHANGE-REQUEST picks the source, RESPONSE-PORT the destination port.
        let req = request::Binding::parse(msg)?;
        let src_ip = if req.change.change_ip {
            r.other_ip(ft.server.ip())
        } else {
            ft.server.ip()
        };
        let src_port = if req.change.change_port {
            r.other_port(ft.server.port())
        } else {
            ft.server.port()
        };
        let origin = SocketAddr::new(src_ip, src_port);
        let dest_port = req.response_port.unwrap_or(ft.client.port());
        let other = SocketAddr::new(r.other_ip(ft.server.ip()), r.other_port(ft.server.port()));
        let n = self.write_success(ctx, |w| {
            w.xor_address(ATTR_XOR_MAPPED_ADDRESS, ft.client)?;
            // Older clients (RFC 3489 style) read MAPPED-ADDRESS too.
            w.address(ATTR_MAPPED_ADDRESS, ft.client)?;
            w.address(ATTR_RESPONSE_ORIGIN, origin)?;
            w.address(ATTR_OTHER_ADDRESS, other)?;
            Ok(())
        })?;
        self.reply_via = Some(FiveTuple {
            client: SocketAddr::new(ft.client.ip(), dest_port),
            server: origin,
            transport: ft.transport,
        });
        Ok(Reply::Written(n))
    }
}
