//! Writing responses: who signs them, and the one function that lays out header, body,
//! SOFTWARE, integrity and FINGERPRINT.

use turnpike_stun::*;

use crate::auth::AuthInfo;

/// How a response to one request is written and signed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResponseCtx {
    pub method: u16,
    pub tid: TransactionId,
    pub fingerprint: bool,
    /// The key (and whether MESSAGE-INTEGRITY-SHA256) that signs it; `None`: unsigned.
    pub key: Option<(Key, bool)>,
    /// Size of the request, for the unauthenticated-answer budget.
    pub request_len: usize,
}

impl ResponseCtx {
    pub(crate) fn new(msg: &Message<'_>, auth: Option<&AuthInfo>) -> Self {
        Self {
            method: msg.method(),
            tid: msg.transaction_id(),
            fingerprint: msg.has_fingerprint(),
            key: auth.map(|a| (a.key, a.sha256)),
            request_len: msg.as_bytes().len(),
        }
    }
}

/// The outcome of a request handler.
pub(crate) enum Reply {
    /// A response of this length was written to the scratch buffer.
    Written(usize),
    /// The response will be produced later (Allocate waiting for its relay, Connect for its
    /// connection).
    Pending,
}

/// Writes a response: header, `body`, SOFTWARE (when not empty), integrity (if keyed) and
/// FINGERPRINT (if the request had one).
pub(crate) fn write_response(
    buf: &mut [u8],
    ctx: &ResponseCtx,
    class: Class,
    software: &str,
    body: impl FnOnce(&mut MessageWriter<'_>) -> Result<(), StunError>,
) -> Result<usize, StunError> {
    let mut w = MessageWriter::new(buf, MessageType::new(ctx.method, class), ctx.tid)?;
    body(&mut w)?;
    if !software.is_empty() {
        w.attr(ATTR_SOFTWARE, software.as_bytes())?;
    }
    if let Some((key, sha256)) = &ctx.key {
        if *sha256 {
            w.integrity_sha256(key)?;
        } else {
            w.integrity(key)?;
        }
    }
    if ctx.fingerprint {
        w.fingerprint()?;
    }
    Ok(w.finish())
}
