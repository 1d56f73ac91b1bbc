//! One WebSocket connection, for the driver: the handshake (admission at the upgrade, frame
//! limits) and the pump (a read loop that parses each frame once and feeds the rooms, and a
//! write loop that drains the socket's queue, sends pings and reports progress). Every decision
//! is the rooms'; the handshake and idle timeouts, limits and closes come from them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use turnpike_api::error::ApiError;

use crate::hub::{Connection, Hub, WriterCmd, WriterEnd};
use crate::message::Inbound;
use crate::rooms::{ConnId, ConnectRefused};
use crate::Signal;

/// How long the write loop may take to flush after the read loop ended.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /v1/signal`: admits the socket (503 while draining, 429 over the per-address cap) and
/// upgrades it. Frames up to four times `max_message_bytes` reach the rooms, which refuse
/// those over the limit with an error instead of dropping the socket.
pub async fn handshake(
    State(sig): State<Arc<Signal>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // The client's address (through `trusted_proxies`' X-Forwarded-For): its per-address cap,
    // and where the ICE lists of its joins send it.
    let ip = turnpike_api::fleet::client_ip(&sig.api, Some(peer.ip()), &headers)
        .unwrap_or_else(|| peer.ip().to_canonical());
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (conn, writer) = match sig.hub.connect(ip, origin) {
        Ok(c) => c,
        Err(ConnectRefused::Draining) => {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "draining",
                "this node is draining: connect to another",
            )
            .into_response()
        }
        Err(ConnectRefused::TooManyFromIp) => {
            return ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_connections",
                "too many signalling connections from this address",
            )
            .into_response()
        }
    };
    let max = sig.hub.cfg.max_message_bytes;
    let hub = sig.hub.clone();
    ws.max_message_size(max * 4)
        .max_frame_size(max * 4)
        .on_upgrade(move |socket| pump(hub, conn, writer, socket))
}

/// Runs a connection until it ends: frames in until the client goes or the write loop ends
/// (the socket failed, or the rooms closed or cut it off).
async fn pump(hub: Arc<Hub>, conn: Connection, writer: WriterEnd, socket: WebSocket) {
    let (sink, mut stream) = socket.split();
    let mut write = tokio::spawn(write_loop(
        hub.clone(),
        conn.id,
        sink,
        writer,
        hub.cfg.ping_interval,
    ));
    let mut write_done = false;
    loop {
        // Only the read is raced against the write loop: the work a frame asks for (a join's
        // token check and bus calls) always runs to its end.
        let frame = tokio::select! {
            f = stream.next() => f,
            _ = &mut write => {
                write_done = true;
                break;
            }
        };
        let inbound = match frame {
            Some(Ok(Message::Text(t))) => Inbound::text(t.as_str()),
            Some(Ok(Message::Binary(_))) => Inbound::Binary,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Inbound::Alive,
            None | Some(Err(_) | Ok(Message::Close(_))) => break,
        };
        hub.message(conn.id, inbound).await;
    }
    // The rooms learn the socket is gone; its queue closes, so the write loop ends once it has
    // written what is left (a close frame, say).
    drop(conn);
    if !write_done {
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, write).await;
    }
}

/// Writes the connection's frames in order and a ping every `ping_every`; reports each frame
/// written, so the rooms know how far behind the client is. A kill ends it at once, even in
/// the middle of a write.
async fn write_loop(
    hub: Arc<Hub>,
    conn: ConnId,
    mut sink: SplitSink<WebSocket, Message>,
    writer: WriterEnd,
    ping_every: Duration,
) {
    let WriterEnd { mut rx, kill } = writer;
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;
    loop {
        let (message, text) = tokio::select! {
            () = kill.notified() => return,
            cmd = rx.recv() => match cmd {
                Some(WriterCmd::Text(t)) => (Message::Text(t.as_ref().into()), true),
                Some(WriterCmd::Close(code)) => {
                    let frame = CloseFrame { code: code.code(), reason: code.reason().into() };
                    tokio::select! {
                        () = kill.notified() => {}
                        _ = sink.send(Message::Close(Some(frame))) => {}
                    }
                    return;
                }
                None => return,
            },
            _ = ping.tick() => (Message::Ping(Vec::new().into()), false),
        };
        let sent = tokio::select! {
            () = kill.notified() => return,
            r = sink.send(message) => r,
        };
        if sent.is_err() {
            return;
        }
        if text {
            hub.written(conn, 1);
        }
    }
}
