//! Why one probe (or the whole run) failed: one variant per cause, each message short enough for
//! a table row and saying what to check.

use std::time::Duration;

/// The step of a probe that failed, named after the STUN/TURN method (RFC 8489, RFC 8656).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Connect,
    Binding,
    Allocate,
    CreatePermission,
    ChannelBind,
    Relay,
    Refresh,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Connect => "connect",
            Self::Binding => "Binding",
            Self::Allocate => "Allocate",
            Self::CreatePermission => "CreatePermission",
            Self::ChannelBind => "ChannelBind",
            Self::Relay => "relay round trip",
            Self::Refresh => "Refresh",
        })
    }
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeError {
    /// The argument is not a `stun:`/`turn:`/`turns:` URI or `host:port`: fix its spelling.
    #[error("bad URI `{uri}`: {why}")]
    BadUri { uri: String, why: &'static str },
    /// The host name has no address: check the name and the resolver.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    /// The TCP connection was refused or could not be made: is the server listening there?
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    /// The TLS handshake failed (often an untrusted certificate: `--ca FILE` or `--insecure`).
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    /// The DTLS handshake failed (an untrusted certificate: `--ca FILE` or `--insecure`).
    #[error("DTLS handshake failed: {0}")]
    Dtls(String),
    /// The TLS client could not be set up (`--ca` file unreadable or without certificates).
    #[error("TLS setup: {0}")]
    TlsSetup(String),
    /// No answer in time: the server is down, filtered, or not a STUN/TURN server.
    #[error("{step}: timeout (no answer within {limit:?})")]
    Timeout { step: Step, limit: Duration },
    /// The server closed the connection.
    #[error("{step}: connection closed by the server")]
    Closed { step: Step },
    /// A socket error while sending or receiving.
    #[error("{step}: {source}")]
    Io { step: Step, source: std::io::Error },
    /// The server answered with an unparsable or incomplete message.
    #[error("{step}: malformed answer: {why}")]
    Malformed { step: Step, why: String },
    /// The server refused the request with an error code (RFC 8489 §14.8).
    #[error("{step}: {code} {reason}")]
    Refused {
        step: Step,
        code: u16,
        reason: String,
    },
    /// An authenticated request was answered 401: username, password or realm are wrong.
    #[error("{step}: 401 wrong credentials (the server refused the username/password)")]
    WrongCredentials { step: Step },
    /// The server's 401/438 challenge breaks RFC 8489 §9.2.5, so a client must stop.
    #[error("{step}: unusable challenge: {why}")]
    Challenge { step: Step, why: &'static str },
    /// The answer's MESSAGE-INTEGRITY does not match our key (a different password or realm).
    #[error("{step}: the answer fails its MESSAGE-INTEGRITY check (password or realm differ)")]
    Integrity { step: Step },
    /// A TURN URI was given without credentials.
    #[error("needs --username and --password (or --api with --api-key)")]
    NoCredentials,
    /// The data sent through the relay never came back (permissions, NAT hairpinning, loss).
    #[error("relay round trip: no data came back through the relay within {0:?}")]
    NoRelayData(Duration),
    /// The API could not be reached or refused the key.
    #[error("API: {0}")]
    Api(String),
}

impl ProbeError {
    /// A malformed answer at `step`.
    pub(crate) fn malformed(step: Step, why: impl std::fmt::Display) -> Self {
        Self::Malformed {
            step,
            why: why.to_string(),
        }
    }

    /// An I/O error at `step`, a closed connection told apart.
    pub(crate) fn io(step: Step, source: std::io::Error) -> Self {
        match source.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => Self::Closed { step },
            _ => Self::Io { step, source },
        }
    }
}
