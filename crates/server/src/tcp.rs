//! STUN/TURN over TCP and TLS (RFC 8656 §3.1) on one accepted connection: splitting the byte
//! stream into STUN messages and padded ChannelData frames, and writing the connection's
//! bounded outbound queue ([`crate::outbox::Outbox`]) so a slow reader loses frames instead of
//! stalling the relay. Accepting is in `accept.rs`.
//!
//! What an idle connection costs is kept small: its read buffer starts at [`READ_BASE`] bytes,
//! grows to the frame it must hold (or, under load, to larger reads) and shrinks back when the
//! traffic stops. Deadlines keep a connection from being held open without progress: the first
//! frame must arrive within `tcp_first_frame_timeout`, a frame once started must be complete
//! within `tcp_frame_timeout`, and between frames the connection may be idle for
//! `tcp_idle_timeout` (a slow-loris client sending one byte at a time is cut at the frame
//! deadline).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::time::Instant;

use socket2::{Protocol, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use turnpike_proto::{DropReason, FiveTuple, Transport};

use crate::conn_limit::ConnPermit;
use crate::worker::Worker;

/// Read buffer of an idle connection: room for any ordinary TURN request (it grows at once for a
/// larger frame, such as 1200-byte ChannelData).
pub(crate) const READ_BASE: usize = 1024;
/// Largest read buffer: the largest frame (a 65,535-byte body plus header) and a partial next.
const READ_MAX: usize = 2 * 65_600;
/// Reads in a row that use little of a grown buffer before it shrinks back to [`READ_BASE`].
const SHRINK_AFTER: u32 = 8;

pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = crate::sock::shared(addr, Type::STREAM, Protocol::TCP)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// A connection's read buffer: `buf[..filled]` holds bytes not yet framed.
struct ReadBuf {
    buf: Vec<u8>,
    filled: usize,
    /// Consecutive reads that used little of a grown buffer.
    small_reads: u32,
}

impl ReadBuf {
    fn new(initial: Vec<u8>) -> Self {
        let filled = initial.len().min(READ_MAX);
        let mut buf = initial;
        buf.truncate(filled);
        buf.resize(filled.max(READ_BASE), 0);
        Self {
            buf,
            filled,
            small_reads: 0,
        }
    }

    /// Makes room for at least `need` bytes in all (a frame the header announced).
    fn reserve_frame(&mut self, need: usize) {
        if need > self.buf.len() {
            self.buf.resize(need.min(READ_MAX), 0);
        }
    }

    /// The free space to read into.
    fn spare(&mut self) -> &mut [u8] {
        if self.filled == self.buf.len() && self.buf.len() < READ_MAX {
            let grown = (self.buf.len() * 2).min(READ_MAX);
            self.buf.resize(grown, 0);
        }
        &mut self.buf[self.filled..]
    }

    /// Records a read of `n` bytes: a read that filled the space asks for a larger buffer next
    /// time; a run of small reads into a grown, drained buffer shrinks it back.
    fn read(&mut self, n: usize) {
        let space = self.buf.len() - self.filled;
        self.filled += n;
        if n == space && self.buf.len() < READ_MAX {
            let grown = (self.buf.len() * 2).min(READ_MAX);
            self.buf.resize(grown, 0);
            self.small_reads = 0;
        } else if n < READ_BASE / 2 {
            self.small_reads += 1;
        } else {
            self.small_reads = 0;
        }
    }

    /// Drops the first `start` bytes (framed and handled).
    fn consume(&mut self, start: usize) {
        self.buf.copy_within(start..self.filled, 0);
        self.filled -= start;
        if self.buf.len() > READ_BASE
            && self.filled <= READ_BASE / 2
            && self.small_reads >= SHRINK_AFTER
        {
            self.buf.truncate(READ_BASE);
            self.buf.shrink_to_fit();
            self.small_reads = 0;
        }
    }
}

/// Serves STUN/TURN on one stream; `initial` holds bytes already read from it. `permit` is
/// the connection's slot under the caps, held until the connection ends. One task reads,
/// frames and writes (cancel-safe single writes, so a pending read never tears a frame).
pub(crate) async fn connection<S>(
    w: Rc<Worker>,
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    transport: Transport,
    initial: Vec<u8>,
    permit: ConnPermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let ft = FiveTuple {
        client: peer,
        server: local,
        transport,
    };
    let accepted = Instant::now();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let outbox = w.open_stream(ft);
    // One timer for the connection's deadlines, moved only when it fires early or the deadline
    // comes closer (re-arming a timer for every read would cost more than the read).
    let sleep = tokio::time::sleep_until((accepted + w.cfg.tcp_first_frame_timeout).into());
    tokio::pin!(sleep);
    // The frame being written and how much of it is out.
    let mut writing = crate::outbox::Writing::new(transport == Transport::Tls);

    let mut rb = ReadBuf::new(initial);
    let mut pending_initial = rb.filled > 0;
    // A TURN client's first frame is always a STUN request (a channel needs a ChannelBind
    // first); anything else (HTTP, TLS, noise) is not for us.
    let mut first = true;
    // When the incomplete frame at the start of the buffer began to arrive.
    let mut frame_started: Option<Instant> = None;
    'conn: loop {
        let pending = !writing.next(&outbox).is_empty();
        if !pending_initial {
            let deadline = if first {
                accepted + w.cfg.tcp_first_frame_timeout
            } else if let Some(t) = frame_started {
                t + w.cfg.tcp_frame_timeout
            } else {
                Instant::now() + w.cfg.tcp_idle_timeout
            };
            if deadline < sleep.deadline().into_std() || sleep.is_elapsed() {
                sleep.as_mut().reset(deadline.into());
            }
            let read = tokio::select! {
                biased;
                r = wr.write(writing.next(&outbox)), if pending => {
                    match r {
                        Ok(n) if n > 0 => {
                            writing.advance(n);
                            continue 'conn;
                        }
                        _ => break 'conn,
                    }
                }
                _ = outbox.ready.notified(), if !pending => continue 'conn,
                r = rd.read(rb.spare()) => r,
                () = &mut sleep => {
                    if Instant::now() < deadline {
                        // Armed for an earlier deadline that has since moved on.
                        continue 'conn;
                    }
                    if first || frame_started.is_some() {
                        tracing::debug!(%peer, first, "TCP frame deadline passed; closing");
                        w.count_drop(DropReason::Timeout);
                    }
                    break;
                }
            };
            let n = match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            rb.read(n);
        }
        pending_initial = false;
        let now = Instant::now();
        let mut start = 0;
        loop {
            let filled = rb.filled;
            if first && start < filled && rb.buf[start] >> 6 != 0 {
                w.count_drop(DropReason::Malformed);
                break 'conn;
            }
            match turnpike_stun::frame_size(&rb.buf[start..filled]) {
                Ok(Some(len)) if start + len <= filled => {
                    first = false;
                    w.on_client_packet(now, ft, &rb.buf[start..start + len]);
                    start += len;
                    if let Some(splice) = w.take_splice(&ft) {
                        // RFC 6062 data connection: the ConnectionBind response goes out, then
                        // raw bytes flow both ways.
                        let leftover = rb.buf[start..filled].to_vec();
                        drop(rb);
                        let pending = Some(writing.take_rest()).filter(|r| !r.is_empty());
                        splice_data_connection(
                            &w,
                            ft,
                            rd.unsplit(wr),
                            &outbox,
                            pending,
                            leftover,
                            splice,
                        )
                        .await;
                        drop(permit);
                        return;
                    }
                }
                Ok(Some(len)) => {
                    // Incomplete: make room for the whole frame, then read on.
                    rb.reserve_frame(start + len);
                    break;
                }
                Ok(None) => break,
                Err(_) => {
                    // Not STUN/ChannelData: this stream cannot be resynchronised. Count and close.
                    w.count_drop(DropReason::Malformed);
                    break 'conn;
                }
            }
        }
        rb.consume(start);
        frame_started = match (rb.filled, frame_started, start) {
            (0, _, _) => None,
            // Part of a new frame came in after a complete one: its clock starts now.
            (_, _, s) if s > 0 => Some(now),
            (_, Some(t), _) => Some(t),
            (_, None, _) => Some(now),
        };
    }
    w.forget_stream(&ft);
    w.connection_closed(Instant::now(), ft);
    drop(permit);
}

/// RFC 6062: a client connection that sent a successful ConnectionBind becomes a data
/// connection: what is still queued for it (`pending`, then the outbox) goes out, then bytes
/// are copied both ways with the peer's connection (`leftover`: bytes the client already sent).
async fn splice_data_connection<S>(
    w: &Rc<Worker>,
    ft: FiveTuple,
    mut client: S,
    outbox: &crate::outbox::Outbox,
    pending: Option<Vec<u8>>,
    leftover: Vec<u8>,
    splice: crate::worker::Splice,
) where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    w.forget_stream(&ft);
    // Nothing is queued after `forget_stream`: what is in the outbox now is the last of it.
    let mut queued = Vec::new();
    outbox.take(&mut queued);
    for f in pending.into_iter().chain(Some(queued)) {
        if client.write_all(&f).await.is_err() {
            w.peer_connection_closed(Instant::now(), splice.connection);
            return;
        }
    }
    let task = tokio::task::spawn_local(crate::tcp_relay::splice(
        w.clone(),
        ft,
        splice.account.map(|a| (a, splice.allocation)),
        client,
        splice.peer,
        leftover,
    ));
    w.peer_streams
        .set_spliced(splice.connection, task.abort_handle());
    let _ = task.await;
    w.peer_connection_closed(Instant::now(), splice.connection);
}
