//! RFC 6062 TCP relays in the driver: the relayed TCP listener of a TCP allocation, outbound
//! connections to peers from the relayed address, and splicing a client data connection with its
//! peer connection once ConnectionBind succeeded.
//!
//! Peer connections wait in [`crate::peer_streams::PeerStreams`], shared by all workers, because
//! the client's data connection (and so the splice) may land on another worker than the
//! allocation.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use turnpike_proto::throttle::TokenBucket;
use turnpike_proto::{Account, ConnectionId, FiveTuple};

use crate::worker::Worker;

/// How long an outbound Connect may take before 447.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts peer connections on a relayed TCP address until aborted.
pub(crate) async fn accept_peers(
    w: Rc<Worker>,
    listener: tokio::net::TcpListener,
    relay: SocketAddr,
) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        w.incoming_peer(Instant::now(), relay, peer, stream);
    }
}

/// Connects from `relay` to `peer` and reports to the state machine.
pub(crate) async fn connect_peer(
    w: Rc<Worker>,
    cid: ConnectionId,
    relay: SocketAddr,
    peer: SocketAddr,
) {
    let attempt = async {
        let s = crate::peer_streams::relay_socket(relay)?;
        s.bind(&relay.into())?;
        let s = tokio::net::TcpSocket::from_std_stream(s.into());
        s.connect(peer).await
    };
    let ok = match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            w.peer_streams.put_waiting(cid, stream);
            true
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TCP connect to peer failed");
            false
        }
        Err(_) => false,
    };
    w.peer_connect_result(Instant::now(), cid, ok);
}

/// Copies bytes both ways between a client data connection and its peer connection, counting
/// them (in the transport statistics and in `account`'s usage) and pacing them to the account's
/// bitrate limit, until either side closes.
pub(crate) async fn splice<C>(
    w: Rc<Worker>,
    ft: FiveTuple,
    account: Option<(Arc<Account>, u64)>,
    client: C,
    peer: tokio::net::TcpStream,
    leftover: Vec<u8>,
) where
    C: AsyncRead + AsyncWrite + 'static,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut pr, mut pw) = peer.into_split();
    let carried = Carried {
        w,
        ft,
        account,
        pacing: RefCell::new(Pacing::default()),
    };
    let up = async {
        if !leftover.is_empty() {
            carried.count(true, leftover.len()).await;
            pw.write_all(&leftover).await?;
        }
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                let _ = pw.shutdown().await;
                return Ok::<(), io::Error>(());
            }
            carried.count(true, n).await;
            pw.write_all(&buf[..n]).await?;
        }
    };
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = pr.read(&mut buf).await?;
            if n == 0 {
                let _ = cw.shutdown().await;
                return Ok::<(), io::Error>(());
            }
            carried.count(false, n).await;
            cw.write_all(&buf[..n]).await?;
        }
    };
    // Either direction ending (close or error) ends the splice.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// What one spliced connection has carried, and its pacing.
struct Carried {
    w: Rc<Worker>,
    ft: FiveTuple,
    account: Option<(Arc<Account>, u64)>,
    pacing: RefCell<Pacing>,
}

/// The account's bitrate limit as last read (re-read every second, so a quota throttle or a
/// changed `max_bitrate_bps` applies to a running connection), shared by both directions.
#[derive(Default)]
struct Pacing {
    bucket: Option<TokenBucket>,
    limit: Option<u64>,
    checked: Option<Instant>,
}

impl Carried {
    /// Counts `n` bytes carried one way, then waits as long as the bitrate limit asks.
    async fn count(&self, toward_peer: bool, n: usize) {
        let wait = {
            let metered = self.account.as_ref().map(|(a, serial)| (a, *serial));
            self.w.spliced(self.ft.transport, metered, toward_peer, n);
            let Some((account, _)) = &self.account else {
                return;
            };
            let now = Instant::now();
            let mut p = self.pacing.borrow_mut();
            if p.checked
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
            {
                p.checked = Some(now);
                let limit = self.w.limits_for(account).max_bitrate_bps;
                if limit != p.limit {
                    p.limit = limit;
                    p.bucket = limit.map(|bps| TokenBucket::new(now, bps));
                }
            }
            match p.bucket.as_mut() {
                Some(bucket) => bucket.pace(now, n),
                None => Duration::ZERO,
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}
