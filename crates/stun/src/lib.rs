//! STUN/TURN message codec (RFC 8489, RFC 5389, RFC 8656, RFC 5766, RFC 6156, RFC 6062).
//!
//! What this crate does:
//! - parses STUN messages zero-copy ([`Message::parse`]): attribute values are borrowed slices of the
//!   input; integrity and fingerprint positions are located during the one validating pass;
//! - writes STUN messages into a caller-provided buffer without allocating ([`MessageWriter`]);
//! - computes and checks MESSAGE-INTEGRITY (HMAC-SHA1), MESSAGE-INTEGRITY-SHA256 and FINGERPRINT;
//! - derives long-term credential keys (MD5 and SHA-256 password algorithms) and USERHASH;
//! - frames ChannelData messages and splits STUN/ChannelData frames out of a byte stream (TCP/TLS).
//!
//! What it does not do: any I/O, any clock, any policy. Deciding what a request means is
//! `turnpike-proto`'s job.

#![forbid(unsafe_code)]

mod attr;
mod channel_data;
mod consts;
mod error;
mod error_code;
mod framing;
mod integrity;
mod message;
mod method;
mod writer;

pub use attr::{
    decode_address, decode_address_family, decode_change_request, decode_channel_number,
    decode_connection_id, decode_error_code, decode_even_port, decode_lifetime,
    decode_password_algorithm, decode_requested_transport, decode_reservation_token,
    decode_response_port, decode_userhash, decode_username, decode_xor_address, encode_xor_address,
    AddressFamily, ChangeRequest, ErrorCodeValue, ADDRESS_FAMILY_IPV4, ADDRESS_FAMILY_IPV6,
};
pub use channel_data::{ChannelData, CHANNEL_DATA_HEADER_LEN};
pub use consts::*;
pub use error::StunError;
pub use error_code::{reason_phrase, ErrorCode};
pub use framing::{classify, frame_len, frame_size, FirstByte};
pub use integrity::{long_term_key, long_term_key_sha256, userhash, Key, PasswordAlgorithm};
pub use message::{Attribute, Attributes, Class, Message, MessageType};
pub use method::Method;
pub use writer::MessageWriter;

/// Length of the fixed STUN header.
pub const HEADER_LEN: usize = 20;
/// The magic cookie of RFC 5389/8489.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// A transaction id.
pub type TransactionId = [u8; 12];

/// Rounds `n` up to a multiple of 4 (STUN attribute and TCP ChannelData padding).
#[inline]
pub const fn pad4(n: usize) -> usize {
    (n + 3) & !3
}
