//! Requests parsed once, after the integrity check, into typed values (parse, then decide).
//!
//! Each method's attributes are decoded here with the codec's typed decoders, and the checks
//! that need no state (presence, length, ranges, which attributes may go together) are made
//! here too. What a request needs of the server's state (an allocation on the 5-tuple, the
//! caller's quota, the peer policy) is decided by its handler. Because RFC 8656 orders those
//! steps (437 before a malformed attribute's 400, for instance), a parse error is kept in the
//! request (`Parsed<T>`) and raised by the handler at the RFC's step.

use std::net::SocketAddr;
use std::time::Duration;

use turnpike_stun::*;

use crate::error::TurnError;
use crate::five_tuple::Transport;
use crate::output::{Families, RelayTransport};

/// A request's typed value, or the error its attributes earn.
pub(crate) type Parsed<T> = Result<T, TurnError>;

/// An authenticated TURN request.
#[derive(Debug)]
pub(crate) enum Request {
    Allocate(Parsed<Allocate>),
    Refresh(Parsed<Refresh>),
    CreatePermission(Parsed<CreatePermission>),
    ChannelBind(Parsed<ChannelBind>),
    Connect(Parsed<Connect>),
    ConnectionBind(Parsed<ConnectionBind>),
}

impl Request {
    /// Parses `msg` (already authenticated) from a client on `transport`; `Err` for a method
    /// that is not a TURN request.
    pub(crate) fn parse(msg: &Message<'_>, transport: Transport) -> Result<Self, TurnError> {
        Ok(match Method::from_number(msg.method()) {
            Some(Method::Allocate) => Self::Allocate(Allocate::parse(msg, transport)),
            Some(Method::Refresh) => Self::Refresh(Refresh::parse(msg)),
            Some(Method::CreatePermission) => Self::CreatePermission(CreatePermission::parse(msg)),
            Some(Method::ChannelBind) => Self::ChannelBind(ChannelBind::parse(msg)),
            Some(Method::Connect) => Self::Connect(peer_address(msg).map(|peer| Connect { peer })),
            Some(Method::ConnectionBind) => Self::ConnectionBind(ConnectionBind::parse(msg)),
            _ => return Err(TurnError::BadRequest("unsupported method")),
        })
    }
}

/// Allocate (RFC 8656 §7.2 steps 3-7, RFC 6156 §4, RFC 6062 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Allocate {
    pub transport: RelayTransport,
    pub dont_fragment: bool,
    pub reservation_token: Option<u64>,
    /// EVEN-PORT: `Some(reserve_next)`.
    pub even_port: Option<bool>,
    pub families: Families,
    /// The additional family came under the draft attribute number (coturn 4.x).
    pub draft_dual: bool,
    pub lifetime: Option<Duration>,
}

impl Allocate {
    fn parse(msg: &Message<'_>, client: Transport) -> Parsed<Self> {
        // 3. REQUESTED-TRANSPORT: present, and UDP, or TCP (RFC 6062) for stream clients
        //    without DONT-FRAGMENT, EVEN-PORT or RESERVATION-TOKEN.
        let rt = msg
            .get(ATTR_REQUESTED_TRANSPORT)
            .ok_or(TurnError::BadRequest("REQUESTED-TRANSPORT missing"))?;
        let transport = match decode_requested_transport(rt)
            .map_err(|_| TurnError::BadRequest("REQUESTED-TRANSPORT malformed"))?
        {
            PROTO_UDP => RelayTransport::Udp,
            PROTO_TCP => {
                if !client.is_stream() {
                    return Err(TurnError::BadRequest(
                        "TCP relay needs a TCP or TLS client connection",
                    ));
                }
                if [ATTR_DONT_FRAGMENT, ATTR_EVEN_PORT, ATTR_RESERVATION_TOKEN]
                    .iter()
                    .any(|&a| msg.get(a).is_some())
                {
                    return Err(TurnError::BadRequest(
                        "attribute not allowed with a TCP relay",
                    ));
                }
                RelayTransport::Tcp
            }
            _ => return Err(TurnError::UnsupportedTransport),
        };
        // 4. DONT-FRAGMENT: supported (the driver sets DF on the relay socket).
        let dont_fragment = msg.get(ATTR_DONT_FRAGMENT).is_some();
        // 5. RESERVATION-TOKEN excludes EVEN-PORT and REQUESTED-ADDRESS-FAMILY (RFC 6156 §4.2).
        let reservation_token = msg
            .get(ATTR_RESERVATION_TOKEN)
            .map(|v| {
                decode_reservation_token(v)
                    .map_err(|_| TurnError::BadRequest("RESERVATION-TOKEN malformed"))
            })
            .transpose()?;
        let even = msg.get(ATTR_EVEN_PORT);
        let requested = msg.get(ATTR_REQUESTED_ADDRESS_FAMILY);
        let draft_dual = msg.get(ATTR_ADDITIONAL_ADDRESS_FAMILY_DRAFT).is_some();
        let additional = msg
            .get(ATTR_ADDITIONAL_ADDRESS_FAMILY)
            .or_else(|| msg.get(ATTR_ADDITIONAL_ADDRESS_FAMILY_DRAFT));
        if reservation_token.is_some() && (even.is_some() || requested.is_some()) {
            return Err(TurnError::BadRequest(
                "RESERVATION-TOKEN with EVEN-PORT or REQUESTED-ADDRESS-FAMILY",
            ));
        }
        // 6. EVEN-PORT: the R bit asks to reserve the next port.
        let even_port = even
            .map(|v| decode_even_port(v).map_err(|_| TurnError::BadRequest("EVEN-PORT malformed")))
            .transpose()?;
        // 7. Address families.
        let families = match (requested, additional) {
            (Some(_), Some(_)) => {
                return Err(TurnError::BadRequest(
                    "both REQUESTED- and ADDITIONAL-ADDRESS-FAMILY",
                ))
            }
            (Some(v), None) => match decode_address_family(v) {
                Ok(Some(AddressFamily::Ipv4)) => Families::IPV4,
                Ok(Some(AddressFamily::Ipv6)) => Families::IPV6,
                Ok(None) => return Err(TurnError::AddressFamilyNotSupported),
                Err(_) => return Err(TurnError::BadRequest("REQUESTED-ADDRESS-FAMILY malformed")),
            },
            (None, Some(v)) => match decode_address_family(v) {
                Ok(Some(AddressFamily::Ipv6)) => Families::DUAL,
                _ => {
                    return Err(TurnError::BadRequest(
                        "ADDITIONAL-ADDRESS-FAMILY must be IPv6",
                    ))
                }
            },
            (None, None) => Families::IPV4,
        };
        Ok(Self {
            transport,
            dont_fragment,
            reservation_token,
            even_port,
            families,
            draft_dual,
            lifetime: lifetime(msg),
        })
    }
}

/// Refresh (RFC 8656 §7.3, RFC 6156 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refresh {
    /// REQUESTED-ADDRESS-FAMILY: the family the refresh is about, if named.
    pub family: Option<AddressFamily>,
    pub lifetime: Option<Duration>,
}

impl Refresh {
    fn parse(msg: &Message<'_>) -> Parsed<Self> {
        let family = match msg.get(ATTR_REQUESTED_ADDRESS_FAMILY) {
            None => None,
            Some(v) => Some(
                decode_address_family(v)
                    .ok()
                    .flatten()
                    .ok_or(TurnError::BadRequest("REQUESTED-ADDRESS-FAMILY malformed"))?,
            ),
        };
        Ok(Self {
            family,
            lifetime: lifetime(msg),
        })
    }
}

/// CreatePermission (RFC 8656 §9.2): one or more peers (only their IPs matter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CreatePermission {
    pub peers: Vec<SocketAddr>,
}

impl CreatePermission {
    fn parse(msg: &Message<'_>) -> Parsed<Self> {
        let tid = msg.transaction_id();
        let peers = msg
            .get_all(ATTR_XOR_PEER_ADDRESS)
            .map(|v| {
                decode_xor_address(v, &tid)
                    .map_err(|_| TurnError::BadRequest("XOR-PEER-ADDRESS malformed"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if peers.is_empty() {
            return Err(TurnError::BadRequest("XOR-PEER-ADDRESS missing"));
        }
        Ok(Self { peers })
    }
}

/// ChannelBind (RFC 8656 §11.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChannelBind {
    pub number: u16,
    pub peer: SocketAddr,
}

impl ChannelBind {
    fn parse(msg: &Message<'_>) -> Parsed<Self> {
        // RFC 8656 narrows the range to 0x4000-0x4FFF; RFC 5766 clients (coturn's among them)
        // use up to 0x7FFF, which we accept.
        let number = msg
            .get(ATTR_CHANNEL_NUMBER)
            .and_then(|v| decode_channel_number(v).ok())
            .ok_or(TurnError::BadRequest("CHANNEL-NUMBER missing"))?;
        if !ChannelData::is_valid_channel(number) {
            return Err(TurnError::BadRequest("channel number out of range"));
        }
        Ok(Self {
            number,
            peer: peer_address(msg)?,
        })
    }
}

/// Connect (RFC 6062 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Connect {
    pub peer: SocketAddr,
}

/// ConnectionBind (RFC 6062 §5.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectionBind {
    pub connection_id: u32,
}

impl ConnectionBind {
    fn parse(msg: &Message<'_>) -> Parsed<Self> {
        let connection_id = msg
            .get(ATTR_CONNECTION_ID)
            .and_then(|v| decode_connection_id(v).ok())
            .ok_or(TurnError::BadRequest("CONNECTION-ID missing"))?;
        Ok(Self { connection_id })
    }
}

/// Binding (RFC 8489 §6.3, RFC 5780 §7.2): unauthenticated, parsed on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Binding {
    pub change: ChangeRequest,
    pub response_port: Option<u16>,
}

impl Binding {
    /// The RFC 5780 attributes (only meaningful when the server serves RFC 5780).
    pub(crate) fn parse(msg: &Message<'_>) -> Parsed<Self> {
        let change = msg
            .get(ATTR_CHANGE_REQUEST)
            .map(|v| {
                decode_change_request(v)
                    .map_err(|_| TurnError::BadRequest("CHANGE-REQUEST malformed"))
            })
            .transpose()?
            .unwrap_or_default();
        let response_port = msg
            .get(ATTR_RESPONSE_PORT)
            .map(|v| {
                decode_response_port(v)
                    .map_err(|_| TurnError::BadRequest("RESPONSE-PORT malformed"))
            })
            .transpose()?;
        Ok(Self {
            change,
            response_port,
        })
    }
}

/// The one XOR-PEER-ADDRESS of a ChannelBind or Connect: present and well-formed (400).
fn peer_address(msg: &Message<'_>) -> Parsed<SocketAddr> {
    let v = msg
        .get(ATTR_XOR_PEER_ADDRESS)
        .ok_or(TurnError::BadRequest("XOR-PEER-ADDRESS missing"))?;
    decode_xor_address(v, &msg.transaction_id())
        .map_err(|_| TurnError::BadRequest("XOR-PEER-ADDRESS malformed"))
}

/// LIFETIME, if present and well-formed (a malformed one is ignored, as if absent).
fn lifetime(msg: &Message<'_>) -> Option<Duration> {
    msg.get(ATTR_LIFETIME)
        .and_then(|v| decode_lifetime(v).ok())
        .map(|s| Duration::from_secs(u64::from(s)))
}
