//! Accepting TCP connections on the TURN, TURNS and shared listeners: the deny list, the
//! connection caps, the TLS handshake (bounded), then the connection is served as STUN/TURN
//! (`tcp.rs`) or demultiplexed (`mux.rs`).

use std::rc::Rc;

use tokio_rustls::TlsAcceptor;
use turnpike_proto::{DropReason, Transport};

use crate::tcp::connection;
use crate::worker::Worker;

/// Accepts connections on one listener until the runtime stops; with `tls`, each connection
/// is a TLS (TURNS) connection. Connections beyond the caps are closed at once.
pub(crate) async fn accept_task(
    w: Rc<Worker>,
    listener: tokio::net::TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Option<crate::listeners::Shared>,
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
        if w.client_denied(peer.ip()) {
            continue;
        }
        let Ok(permit) = w.cfg.connections.try_acquire(peer.ip()) else {
            continue;
        };
        // One task per connection, whose future is only as large as its own path needs (an
        // idle connection's memory is mostly this future): plain TCP, TLS, or shared.
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let w = w.clone();
        if let Some(shared) = &shared {
            let (tls, http) = (tls.clone(), shared.http.clone());
            tokio::task::spawn_local(crate::mux::serve(w, stream, peer, local, tls, http, permit));
            continue;
        }
        let Some(acceptor) = tls.clone() else {
            let f = connection(w, stream, peer, local, Transport::Tcp, Vec::new(), permit);
            tokio::task::spawn_local(f);
            continue;
        };
        tokio::task::spawn_local(async move {
            match tokio::time::timeout(w.cfg.tls_handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(s)) => {
                    // An ACME TLS-ALPN-01 validator: the handshake was all it needed.
                    if s.get_ref().1.alpn_protocol() == Some(crate::tls::ALPN_ACME_TLS) {
                        return;
                    }
                    // A task of its own: the handshake's state is freed, not kept for the
                    // connection's life.
                    tokio::task::spawn_local(connection(
                        w,
                        s,
                        peer,
                        local,
                        Transport::Tls,
                        Vec::new(),
                        permit,
                    ));
                }
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    w.count_drop(DropReason::Malformed);
                }
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}
