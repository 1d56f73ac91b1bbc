//! One WebSocket connection: handshake (the first message must be `join` within
//! `handshake_timeout`), then client messages in, room messages out. Reading and writing are
//! two tasks so a slow socket never blocks the room: the writer drains a bounded queue, the hub
//! cuts off a consumer whose queue is full.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;

use crate::hub::{Hub, JoinError, Out};
use crate::message::{error, ClientMessage, VERSION};
use crate::Signal;

/// Per-connection token buckets: messages and bytes.
struct Rate {
    msgs: f64,
    bytes: f64,
    last: Instant,
}

impl Rate {
    fn allow(&mut self, hub: &Hub, len: usize) -> bool {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        let c = &hub.cfg;
        self.msgs = (self.msgs + dt * c.msgs_per_sec as f64).min(c.msg_burst as f64);
        self.bytes = (self.bytes + dt * c.bytes_per_sec as f64).min(c.bytes_per_sec as f64 * 2.0);
        if self.msgs >= 1.0 && self.bytes >= len as f64 {
            self.msgs -= 1.0;
            self.bytes -= len as f64;
            true
        } else {
            false
        }
    }
}

async fn writer(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Out>,
    ping_every: std::time::Duration,
    kill: Arc<tokio::sync::Notify>,
) {
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;
    loop {
        tokio::select! {
            _ = kill.notified() => return,
            m = rx.recv() => match m {
                Some(Out::Text(t)) => {
                    if sink.send(Message::Text(t.as_ref().into())).await.is_err() {
                        return;
                    }
                }
                Some(Out::Close(code, why)) => {
                    let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: why.into() }))).await;
                    return;
                }
                None => return,
            },
            _ = ping.tick() => {
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs a connection from `ip` with `Origin` `origin` until it ends.
pub async fn run(sig: Arc<Signal>, socket: WebSocket, ip: IpAddr, origin: Option<String>) {
    let hub = sig.hub.clone();
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel::<Out>(hub.cfg.queue);
    let kill = Arc::new(tokio::sync::Notify::new());
    let mut writer_task = tokio::spawn(writer(sink, rx, hub.cfg.ping_interval, kill.clone()));
    let say = |tx: &mpsc::Sender<Out>, m: String| {
        let _ = tx.try_send(Out::Text(m.into()));
    };
    let close = |tx: &mpsc::Sender<Out>, code: u16, why: &'static str| {
        let _ = tx.try_send(Out::Close(code, why));
    };

    // Handshake: the first text message is a join.
    let first = tokio::time::timeout(hub.cfg.handshake_timeout, stream.next()).await;
    let text = match first {
        Ok(Some(Ok(Message::Text(t)))) => t,
        Err(_) => {
            say(
                &tx,
                error(
                    "handshake_timeout",
                    "send `join` first, within the handshake timeout",
                ),
            );
            close(&tx, 4008, "handshake timeout");
            let _ = writer_task.await;
            return;
        }
        _ => {
            close(&tx, 4002, "expected a join message");
            let _ = writer_task.await;
            return;
        }
    };
    let join = match serde_json::from_str::<ClientMessage>(&text) {
        Ok(ClientMessage::Join { v, token, resume }) if v == VERSION => (token, resume),
        Ok(ClientMessage::Join { .. }) => {
            say(
                &tx,
                error("unsupported_version", "this server speaks version 1"),
            );
            close(&tx, 4002, "unsupported version");
            let _ = writer_task.await;
            return;
        }
        _ => {
            say(
                &tx,
                error(
                    "bad_message",
                    "the first message must be {\"v\":1,\"type\":\"join\",...}",
                ),
            );
            close(&tx, 4002, "expected a join message");
            let _ = writer_task.await;
            return;
        }
    };
    let (session, attach) = match join {
        (_, Some(r)) => {
            match hub.resume(&r.session, &r.token, r.last_seq, tx.clone(), kill.clone()) {
                Ok(res) => {
                    // `resumed` is not numbered: it tells where the replay starts.
                    say(&tx, json!({"v": VERSION, "type": "resumed", "peer": res.peer, "room": res.room, "replayed": res.missed.len(), "gap": res.gap}).to_string());
                    for m in res.missed {
                        let _ = tx.try_send(Out::Text(m));
                    }
                    (r.session, res.attach)
                }
                Err(_) => {
                    say(
                        &tx,
                        error(
                            "bad_resume",
                            "unknown or expired session, or wrong resume token: join again",
                        ),
                    );
                    close(&tx, 4003, "cannot resume");
                    let _ = writer_task.await;
                    return;
                }
            }
        }
        (Some(token), None) => {
            let claims = match sig.verify_token(&token).await {
                Ok(c) => c,
                Err((code, msg)) => {
                    say(&tx, error(code, msg));
                    close(&tx, 4003, "bad token");
                    let _ = writer_task.await;
                    return;
                }
            };
            if !sig.origin_allowed(&claims.tid, origin.as_deref()).await {
                say(
                    &tx,
                    error(
                        "origin_not_allowed",
                        "this Origin is not on the tenant's allow-list",
                    ),
                );
                close(&tx, 4003, "origin not allowed");
                let _ = writer_task.await;
                return;
            }
            let ice = sig.ice_servers(&claims.tid, &claims.sub).await;
            match hub
                .join(
                    &claims.tid,
                    &claims.room,
                    &claims.sub,
                    claims.send,
                    claims.broadcast,
                    ip,
                    tx.clone(),
                    kill.clone(),
                )
                .await
            {
                Ok(j) => {
                    let others: Vec<_> = j
                        .others
                        .iter()
                        .map(|p| json!({"id": p.id, "identity": p.identity, "rank": p.rank, "polite": j.peer.rank > p.rank}))
                        .collect();
                    hub.push(
                        &j.session,
                        json!({
                            "type": "joined",
                            "session": j.session,
                            "resume_token": j.resume_token,
                            "peer": j.peer,
                            "room": claims.room,
                            "participants": others,
                            "ice_servers": ice,
                            "resume_grace_ms": hub.cfg.resume_grace.as_millis() as u64,
                            "max_message_bytes": hub.cfg.max_message_bytes,
                        }),
                    );
                    (j.session, j.attach)
                }
                Err(e) => {
                    let (code, msg) = match e {
                        JoinError::RoomFull => ("room_full", "the room is at its size limit"),
                        JoinError::TenantFull => {
                            ("tenant_limit", "the tenant is at its connection limit")
                        }
                        _ => ("unavailable", "the room service is unavailable; retry"),
                    };
                    say(&tx, error(code, msg));
                    close(&tx, 4009, "cannot join");
                    let _ = writer_task.await;
                    return;
                }
            }
        }
        (None, None) => {
            say(&tx, error("bad_message", "join needs `token` or `resume`"));
            close(&tx, 4002, "expected a join message");
            let _ = writer_task.await;
            return;
        }
    };

    // The session.
    let mut rate = Rate {
        msgs: hub.cfg.msg_burst as f64,
        bytes: hub.cfg.bytes_per_sec as f64 * 2.0,
        last: Instant::now(),
    };
    let mut left = false;
    let mut writer_done = false;
    loop {
        // The writer ends when its socket fails or the hub cuts a slow consumer off: then the
        // whole connection goes.
        let next = tokio::select! {
            r = tokio::time::timeout(hub.cfg.idle_timeout, stream.next()) => r,
            _ = &mut writer_task => {
                writer_done = true;
                break;
            }
        };
        let text = match next {
            Err(_) => {
                say(
                    &tx,
                    error("idle_timeout", "no message or pong within the idle timeout"),
                );
                close(&tx, 4008, "idle timeout");
                break;
            }
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => break,
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(Message::Binary(_)))) => {
                say(
                    &tx,
                    error(
                        "bad_message",
                        "binary frames are not accepted; send JSON text",
                    ),
                );
                continue;
            }
            Ok(Some(Ok(_))) => continue, // ping/pong: alive
        };
        if text.len() > hub.cfg.max_message_bytes {
            say(
                &tx,
                error("too_large", "message larger than max_message_bytes"),
            );
            continue;
        }
        if !rate.allow(&hub, text.len()) {
            hub.counters
                .drops_rate
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            metrics::counter!("turnpike_signal_drops_total", "reason" => "rate_limited")
                .increment(1);
            say(
                &tx,
                error(
                    "rate_limited",
                    "too many messages or bytes per second; message dropped",
                ),
            );
            continue;
        }
        let msg = match serde_json::from_str::<ClientMessage>(&text) {
            Ok(m) if m.version() == VERSION => m,
            Ok(_) => {
                say(
                    &tx,
                    error("unsupported_version", "this server speaks version 1"),
                );
                continue;
            }
            Err(e) => {
                let code = if serde_json::from_str::<serde_json::Value>(&text).is_err() {
                    "bad_json"
                } else {
                    "bad_message"
                };
                say(&tx, error(code, &format!("{e}")));
                continue;
            }
        };
        match msg {
            ClientMessage::Signal { to, data, .. } => {
                if let Err(e) = hub.send(&session, Some(to), data).await {
                    say(&tx, error("forbidden", e));
                }
            }
            ClientMessage::Broadcast { data, .. } => {
                if let Err(e) = hub.send(&session, None, data).await {
                    say(&tx, error("forbidden", e));
                }
            }
            ClientMessage::Ping { id, .. } => {
                say(
                    &tx,
                    json!({"v": VERSION, "type": "pong", "id": id}).to_string(),
                );
            }
            ClientMessage::Leave { .. } => {
                left = true;
                break;
            }
            ClientMessage::Join { .. } => {
                say(&tx, error("already_joined", "this socket has joined"));
            }
        }
    }
    if left {
        hub.leave(&session, "left").await;
        close(&tx, 1000, "bye");
    } else {
        hub.detach(&session, attach);
    }
    drop(tx);
    if !writer_done {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer_task).await;
    }
}
