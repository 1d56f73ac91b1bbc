//! Limits and timers of the signalling server (defaults here, values from `signal_*` keys).

use std::time::Duration;

/// Limits and timers of the signalling server.
#[derive(Debug, Clone)]
pub struct SignalConfig {
    /// Largest client text frame accepted after the join (`too_large` above).
    pub max_message_bytes: usize,
    /// Per connection: messages per second, refilled continuously, up to `msg_burst`.
    pub msgs_per_sec: u32,
    pub msg_burst: u32,
    /// Per connection: bytes per second, with a burst of twice that.
    pub bytes_per_sec: u32,
    /// Sessions per tenant on this node (detached sessions in their grace period count).
    pub max_conns_per_tenant: usize,
    /// Sockets per client address on this node, from the upgrade to the end.
    pub max_conns_per_ip: usize,
    /// Participants per room, all nodes together.
    pub max_room_size: usize,
    /// Frames handed to a socket's writer and not yet written: a consumer that falls this far
    /// behind is disconnected (its session may resume).
    pub queue: usize,
    /// Room messages kept per session for a resume.
    pub resume_buffer: usize,
    /// A joined socket that sends nothing (no message, no pong) for this long is closed.
    pub idle_timeout: Duration,
    /// The join must come this soon after the upgrade.
    pub handshake_timeout: Duration,
    /// How long a session outlives its socket, waiting for a resume.
    pub resume_grace: Duration,
    /// WebSocket pings (the driver sends them; pongs keep the idle timer quiet).
    pub ping_interval: Duration,
}

impl Default for SignalConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 * 1024,
            msgs_per_sec: 50,
            msg_burst: 100,
            bytes_per_sec: 256 * 1024,
            max_conns_per_tenant: 1000,
            max_conns_per_ip: 50,
            max_room_size: 16,
            queue: 256,
            resume_buffer: 256,
            idle_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            resume_grace: Duration::from_secs(20),
            ping_interval: Duration::from_secs(15),
        }
    }
}
