//! Method and attribute numbers from the IANA STUN registry, named as in the RFCs.

// Methods.
pub const METHOD_BINDING: u16 = 0x001;
pub const METHOD_ALLOCATE: u16 = 0x003;
pub const METHOD_REFRESH: u16 = 0x004;
pub const METHOD_SEND: u16 = 0x006;
pub const METHOD_DATA: u16 = 0x007;
pub const METHOD_CREATE_PERMISSION: u16 = 0x008;
pub const METHOD_CHANNEL_BIND: u16 = 0x009;
pub const METHOD_CONNECT: u16 = 0x00A;
pub const METHOD_CONNECTION_BIND: u16 = 0x00B;
pub const METHOD_CONNECTION_ATTEMPT: u16 = 0x00C;

// Comprehension-required attributes (0x0000-0x7FFF).
pub const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
pub const ATTR_CHANGE_REQUEST: u16 = 0x0003;
pub const ATTR_USERNAME: u16 = 0x0006;
pub const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
pub const ATTR_ERROR_CODE: u16 = 0x0009;
pub const ATTR_UNKNOWN_ATTRIBUTES: u16 = 0x000A;
pub const ATTR_CHANNEL_NUMBER: u16 = 0x000C;
pub const ATTR_LIFETIME: u16 = 0x000D;
pub const ATTR_XOR_PEER_ADDRESS: u16 = 0x0012;
pub const ATTR_DATA: u16 = 0x0013;
pub const ATTR_REALM: u16 = 0x0014;
pub const ATTR_NONCE: u16 = 0x0015;
pub const ATTR_XOR_RELAYED_ADDRESS: u16 = 0x0016;
pub const ATTR_REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
pub const ATTR_EVEN_PORT: u16 = 0x0018;
pub const ATTR_REQUESTED_TRANSPORT: u16 = 0x0019;
pub const ATTR_DONT_FRAGMENT: u16 = 0x001A;
pub const ATTR_MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
pub const ATTR_PASSWORD_ALGORITHM: u16 = 0x001D;
pub const ATTR_USERHASH: u16 = 0x001E;
pub const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
pub const ATTR_RESERVATION_TOKEN: u16 = 0x0022;
pub const ATTR_PRIORITY: u16 = 0x0024;
pub const ATTR_USE_CANDIDATE: u16 = 0x0025;
pub const ATTR_PADDING: u16 = 0x0026;
pub const ATTR_RESPONSE_PORT: u16 = 0x0027;
pub const ATTR_CONNECTION_ID: u16 = 0x002A;

// Comprehension-optional attributes (0x8000-0xFFFF).
pub const ATTR_ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8000;
pub const ATTR_ADDRESS_ERROR_CODE: u16 = 0x8001;
pub const ATTR_PASSWORD_ALGORITHMS: u16 = 0x8002;
pub const ATTR_ALTERNATE_DOMAIN: u16 = 0x8003;
pub const ATTR_ICMP: u16 = 0x8004;
pub const ATTR_SOFTWARE: u16 = 0x8022;
pub const ATTR_ALTERNATE_SERVER: u16 = 0x8023;
pub const ATTR_TRANSACTION_TRANSMIT_COUNTER: u16 = 0x8025;
pub const ATTR_CACHE_TIMEOUT: u16 = 0x8027;
pub const ATTR_FINGERPRINT: u16 = 0x8028;
pub const ATTR_ICE_CONTROLLED: u16 = 0x8029;
pub const ATTR_ICE_CONTROLLING: u16 = 0x802A;
pub const ATTR_RESPONSE_ORIGIN: u16 = 0x802B;
pub const ATTR_OTHER_ADDRESS: u16 = 0x802C;
pub const ATTR_ORIGIN: u16 = 0x802F;
pub const ATTR_MOBILITY_TICKET: u16 = 0x8030;
/// ADDITIONAL-ADDRESS-FAMILY under its pre-RFC 8656 draft number, still sent by coturn 4.x.
pub const ATTR_ADDITIONAL_ADDRESS_FAMILY_DRAFT: u16 = 0x8032;
/// ADDRESS-ERROR-CODE under its pre-RFC 8656 draft number, answered to draft-number requests.
pub const ATTR_ADDRESS_ERROR_CODE_DRAFT: u16 = 0x8033;

/// True for attribute types a receiver must understand (RFC 8489 §14).
#[inline]
pub const fn is_comprehension_required(attr: u16) -> bool {
    attr < 0x8000
}

/// IANA protocol numbers carried in REQUESTED-TRANSPORT.
pub const PROTO_UDP: u8 = 17;
pub const PROTO_TCP: u8 = 6;
