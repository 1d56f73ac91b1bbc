//! STUN/TURN over TCP and TLS (RFC 8656 §3.1): accepting connections (with a bounded TLS
//! handshake), splitting the byte stream into STUN messages and padded ChannelData frames, and a
//! bounded writer queue per connection so a slow reader loses frames instead of stalling the
//! relay.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::rc::Rc;
use std::time::Instant;

use socket2::{Protocol, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use turnpike_proto::{FiveTuple, Transport};

use crate::worker::Worker;

/// Room for the largest frame (a 65,532-byte STUN body plus header) and a partial next one.
const READ_BUF: usize = 2 * 65_600;

pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = crate::sock::shared(addr, Type::STREAM, Protocol::TCP)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// Accepts connections on one listener until the runtime stops; with `tls`, each connection
/// is a TLS (TURNS) connection.
pub(crate) async fn accept_task(
    w: Rc<Worker>,
    listener: tokio::net::TcpListener,
    tls: Option<TlsAcceptor>,
    mux: bool,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "tcp accept error");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let ip = peer.ip().to_canonical();
        {
            let mut per = w.tcp_per_source.borrow_mut();
            let n = per.entry(ip).or_insert(0);
            if *n >= w.cfg.tcp_max_per_source {
                tracing::debug!(%peer, "too many TCP connections from this source");
                continue;
            }
            *n += 1;
        }
        let w = w.clone();
        let tls = tls.clone();
        tokio::task::spawn_local(async move {
            let Ok(local) = stream.local_addr() else {
                return release_source(&w, ip);
            };
            let _ = stream.set_nodelay(true);
            if mux {
                return crate::mux::serve(w, stream, peer, local, ip, tls).await;
            }
            match tls {
                None => connection(w, stream, peer, local, Transport::Tcp, ip, Vec::new()).await,
                Some(acceptor) => {
                    match tokio::time::timeout(w.cfg.tls_handshake_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(s)) => {
                            connection(w, s, peer, local, Transport::Tls, ip, Vec::new()).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            w.server
                                .borrow_mut()
                                .stats
                                .drop(turnpike_proto::DropReason::Malformed);
                            release_source(&w, ip);
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            release_source(&w, ip);
                        }
                    }
                }
            }
        });
    }
}

/// Serves STUN/TURN on one stream; `initial` holds bytes already read from it.
pub(crate) async fn connection<S>(
    w: Rc<Worker>,
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    transport: Transport,
    ip: IpAddr,
    initial: Vec<u8>,
) where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let ft = FiveTuple {
        client: peer,
        server: local,
        transport,
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(w.cfg.tcp_queue_frames);
    w.tcp_conns.borrow_mut().insert(ft, tx);
    // The writer hands the write half back when its queue closes, so an RFC 6062 data
    // connection can be spliced after its ConnectionBind response went out.
    let writer = tokio::task::spawn_local(async move {
        let mut ok = true;
        while let Some(frame) = rx.recv().await {
            if wr.write_all(&frame).await.is_err() {
                ok = false;
                break;
            }
        }
        ok.then_some(wr)
    });

    let mut buf = vec![0u8; READ_BUF];
    let mut filled = initial.len().min(READ_BUF);
    buf[..filled].copy_from_slice(&initial[..filled]);
    let mut pending_initial = filled > 0;
    // A TURN client's first frame is always a STUN request (a channel needs a ChannelBind
    // first); anything else (HTTP, TLS, noise) is not for us.
    let mut first = true;
    'conn: loop {
        if !pending_initial {
            let read =
                tokio::time::timeout(w.cfg.tcp_idle_timeout, rd.read(&mut buf[filled..])).await;
            let n = match read {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => n,
            };
            filled += n;
        }
        pending_initial = false;
        let now = Instant::now();
        let mut start = 0;
        loop {
            if first && start < filled && buf[start] >> 6 != 0 {
                w.server
                    .borrow_mut()
                    .stats
                    .drop(turnpike_proto::DropReason::Malformed);
                break 'conn;
            }
            match turnpike_stun::frame_len(&buf[start..filled]) {
                Ok(Some(len)) => {
                    first = false;
                    w.on_client_packet(now, ft, &buf[start..start + len]);
                    start += len;
                    let splice = w.splices.borrow_mut().remove(&ft);
                    if let Some(crate::worker::Splice {
                        connection: cid,
                        peer: peer_stream,
                        account,
                        allocation,
                    }) = splice
                    {
                        // RFC 6062 data connection: from here on, raw bytes both ways.
                        let leftover = buf[start..filled].to_vec();
                        w.tcp_conns.borrow_mut().remove(&ft);
                        let Ok(Some(wr)) = writer.await else {
                            w.peer_connection_closed(Instant::now(), cid);
                            release_source(&w, ip);
                            return;
                        };
                        let client = rd.unsplit(wr);
                        let task = tokio::task::spawn_local(crate::tcp_relay::splice(
                            w.clone(),
                            ft,
                            account.map(|a| (a, allocation)),
                            client,
                            peer_stream,
                            leftover,
                        ));
                        w.peer_streams.set_spliced(cid, task.abort_handle());
                        let _ = task.await;
                        w.peer_connection_closed(Instant::now(), cid);
                        release_source(&w, ip);
                        return;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    // Not STUN/ChannelData: this stream cannot be resynchronised. Count and close.
                    w.server
                        .borrow_mut()
                        .stats
                        .drop(turnpike_proto::DropReason::Malformed);
                    break 'conn;
                }
            }
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
    }
    w.tcp_conns.borrow_mut().remove(&ft);
    w.connection_closed(Instant::now(), ft);
    writer.abort();
    release_source(&w, ip);
}

pub(crate) fn release_source(w: &Worker, ip: IpAddr) {
    let mut per = w.tcp_per_source.borrow_mut();
    if let Some(n) = per.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            per.remove(&ip);
        }
    }
}
