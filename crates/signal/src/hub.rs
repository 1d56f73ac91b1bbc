//! The tokio driver of the rooms: it owns the clock, the sockets' writer queues, the bus and
//! the control plane, feeds [`Rooms`] and carries out what it asks.
//!
//! One [`Rooms`] behind a mutex, never held across an `await`. Each input (a client frame from
//! a connection's pump, a bus event, a timeout, a writer's progress) locks it, reads the clock,
//! calls one `handle_*` method and drains the outputs: frames, closes, aborts and metrics are
//! carried out under the lock (so every socket gets its frames in sequence order), and the
//! asynchronous work (the bus, token checks) is returned to the task that made the call, which
//! carries it out in order and feeds the answers back. A timer task sleeps until
//! [`Rooms::poll_timeout`]; a delivery task feeds bus events.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, Notify};
use turnpike_api::AppState;

use crate::bus::{Bus, RoomBus};
use crate::close_code::CloseCode;
use crate::grant;
use crate::message::Inbound;
use crate::rooms::{
    BusUnavailable, ConnId, ConnectRefused, Membership, Metric, Output, RoomInfo, Rooms,
    SignalConfig,
};

/// What a socket's write loop is asked to do.
#[derive(Debug)]
pub(crate) enum WriterCmd {
    Text(Arc<str>),
    Close(CloseCode),
}

/// The driver's end of a socket's write loop.
struct Writer {
    tx: mpsc::UnboundedSender<WriterCmd>,
    /// Ends the write loop at once (a slow consumer cannot be sent a close frame).
    kill: Arc<Notify>,
}

struct Inner {
    rooms: Rooms,
    writers: HashMap<ConnId, Writer>,
    /// The deadline the timer task sleeps until.
    armed: Option<Instant>,
}

/// The signalling server of one node.
pub struct Hub {
    pub cfg: SignalConfig,
    pub bus: Bus,
    api: Arc<AppState>,
    inner: Mutex<Inner>,
    /// Wakes the timer task when an earlier deadline appears.
    timer: Notify,
}

/// A registered connection. Dropping it tells the rooms the socket ended (also when the upgrade
/// never completes) and closes its writer queue.
pub(crate) struct Connection {
    pub(crate) id: ConnId,
    hub: Arc<Hub>,
}

/// The write loop's end of a connection.
pub(crate) struct WriterEnd {
    pub(crate) rx: mpsc::UnboundedReceiver<WriterCmd>,
    /// Notified to end the write loop at once.
    pub(crate) kill: Arc<Notify>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        let id = self.id;
        let mut guard = self.hub.lock();
        guard.writers.remove(&id);
        guard.rooms.handle_disconnect(now(), id);
        let work = self.hub.dispatch(&mut guard);
        drop(guard);
        self.hub.spawn_work(work);
    }
}

/// The one clock of the signalling server.
#[allow(clippy::disallowed_methods)] // the driver owns the clock; the rooms take `now` from here
fn now() -> Instant {
    Instant::now()
}

impl Hub {
    /// Starts the rooms on `bus`, with their timer and bus delivery tasks.
    pub fn new(cfg: SignalConfig, bus: Bus, api: Arc<AppState>) -> Arc<Self> {
        let hub = Arc::new(Self {
            inner: Mutex::new(Inner {
                // Resume tokens are credentials: the generator is seeded from the OS.
                rooms: Rooms::new(cfg.clone(), rand::random()),
                writers: HashMap::new(),
                armed: None,
            }),
            cfg,
            bus,
            api,
            timer: Notify::new(),
        });
        // The gauges' first values.
        hub.apply_now(|_, _| ());
        tokio::spawn(timer_task(hub.clone()));
        tokio::spawn(deliver_task(hub.clone()));
        tokio::spawn(suspension_task(hub.clone()));
        hub
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One input: calls `f` with the rooms and the time, carries out the immediate outputs and
    /// returns the asynchronous work, in order.
    fn apply<R>(&self, f: impl FnOnce(&mut Rooms, Instant) -> R) -> (R, VecDeque<Output>) {
        let mut guard = self.lock();
        let r = f(&mut guard.rooms, now());
        let work = self.dispatch(&mut guard);
        (r, work)
    }

    /// An input that asks for no asynchronous work in practice (anything asked is spawned).
    fn apply_now<R>(self: &Arc<Self>, f: impl FnOnce(&mut Rooms, Instant) -> R) -> R {
        let (r, work) = self.apply(f);
        self.spawn_work(work);
        r
    }

    fn spawn_work(self: &Arc<Self>, work: VecDeque<Output>) {
        if !work.is_empty() {
            let hub = self.clone();
            tokio::spawn(async move { hub.carry_out(work).await });
        }
    }

    /// Drains the rooms' outputs: frames, closes, aborts and metrics now (under the lock, so
    /// each socket's frames stay in order), the rest returned. Wakes the timer task if the
    /// next deadline moved earlier.
    fn dispatch(&self, inner: &mut Inner) -> VecDeque<Output> {
        let mut work = VecDeque::new();
        while let Some(o) = inner.rooms.poll_output() {
            match o {
                Output::Send { conn, text } => {
                    if let Some(w) = inner.writers.get(&conn) {
                        let _ = w.tx.send(WriterCmd::Text(text));
                    }
                }
                Output::Close { conn, code } => {
                    if let Some(w) = inner.writers.get(&conn) {
                        let _ = w.tx.send(WriterCmd::Close(code));
                    }
                }
                Output::Abort { conn } => {
                    if let Some(w) = inner.writers.get(&conn) {
                        w.kill.notify_one();
                    }
                }
                Output::Metric(m) => record(m),
                other => work.push_back(other),
            }
        }
        let next = inner.rooms.poll_timeout();
        if next.is_some_and(|t| inner.armed.is_none_or(|armed| t < armed)) {
            inner.armed = next;
            self.timer.notify_one();
        }
        work
    }

    /// Carries out asynchronous work in order, feeding the answers back (which may ask for
    /// more).
    pub(crate) async fn carry_out(&self, mut work: VecDeque<Output>) {
        while let Some(o) = work.pop_front() {
            let more = match o {
                Output::Authorize { conn, token } => {
                    let grant = grant::authorize(&self.api, &token).await;
                    self.apply(|r, now| r.handle_join(now, conn, grant)).1
                }
                Output::FetchRoom {
                    conn,
                    room,
                    tenant,
                    identity,
                    client,
                } => {
                    let info = self.fetch_room(&room, &tenant, &identity, client).await;
                    self.apply(|r, now| r.handle_room(now, conn, info)).1
                }
                Output::JoinRoom {
                    conn,
                    room,
                    peer_id,
                    identity,
                } => {
                    let joined = self.join_room(&room, &peer_id, &identity).await;
                    self.apply(|r, now| r.handle_joined(now, conn, joined)).1
                }
                Output::LeaveRoom { room, peer_id } => {
                    if let Err(e) = self.bus.leave(&room, &peer_id).await {
                        tracing::warn!(error = %e, "signalling bus: cannot leave a room");
                    }
                    VecDeque::new()
                }
                Output::Publish { event, failure_to } => {
                    match (self.bus.publish(&event).await, failure_to) {
                        (Ok(()), _) => VecDeque::new(),
                        (Err(e), None) => {
                            tracing::warn!(error = %e, "signalling bus: cannot publish");
                            VecDeque::new()
                        }
                        (Err(_), Some(conn)) => {
                            self.apply(|r, now| r.handle_publish_failed(now, conn)).1
                        }
                    }
                }
                // `apply` carries these out itself; nothing else hands them here.
                Output::Send { .. } | Output::Close { .. } | Output::Abort { .. } => {
                    VecDeque::new()
                }
                Output::Metric(m) => {
                    record(m);
                    VecDeque::new()
                }
            };
            work.extend(more);
        }
    }

    /// The room's size on every node, and ICE servers for `identity`.
    async fn fetch_room(
        &self,
        room: &str,
        tenant: &str,
        identity: &str,
        client: IpAddr,
    ) -> Result<RoomInfo, BusUnavailable> {
        let (members, ice_servers) = tokio::join!(
            self.bus.members(room),
            grant::ice_servers(&self.api, tenant, identity, Some(client))
        );
        match members {
            Ok(m) => Ok(RoomInfo {
                members: m.len(),
                ice_servers,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "signalling bus: cannot read a room");
                Err(BusUnavailable)
            }
        }
    }

    async fn join_room(
        &self,
        room: &str,
        peer_id: &str,
        identity: &str,
    ) -> Result<Membership, BusUnavailable> {
        match self.bus.join(room, peer_id, identity).await {
            Ok((peer, members)) => Ok(Membership { peer, members }),
            Err(e) => {
                tracing::warn!(error = %e, "signalling bus: cannot join a room");
                Err(BusUnavailable)
            }
        }
    }

    /// Registers a socket about to be upgraded from `ip` with `origin`.
    pub(crate) fn connect(
        self: &Arc<Self>,
        ip: IpAddr,
        origin: Option<String>,
    ) -> Result<(Connection, WriterEnd), ConnectRefused> {
        let (tx, rx) = mpsc::unbounded_channel();
        let kill = Arc::new(Notify::new());
        let mut guard = self.lock();
        let id = guard.rooms.handle_connect(now(), ip, origin)?;
        guard.writers.insert(
            id,
            Writer {
                tx,
                kill: kill.clone(),
            },
        );
        let work = self.dispatch(&mut guard);
        drop(guard);
        self.spawn_work(work);
        Ok((
            Connection {
                id,
                hub: self.clone(),
            },
            WriterEnd { rx, kill },
        ))
    }

    /// A client frame, parsed at the edge; the work it asks for is carried out before the
    /// caller reads the next frame.
    pub(crate) async fn message(&self, conn: ConnId, inbound: Inbound) {
        let work = self.apply(|r, now| r.handle_message(now, conn, inbound)).1;
        self.carry_out(work).await;
    }

    /// The socket's write loop wrote `frames` frames.
    pub(crate) fn written(self: &Arc<Self>, conn: ConnId, frames: usize) {
        self.apply_now(|r, _| r.handle_written(conn, frames));
    }

    /// Tells every client to reconnect elsewhere and closes their sockets; refuses new ones
    /// (SIGTERM).
    /// Tells every participant to reconnect (to `url_for` its tenant: another node's
    /// signalling endpoint, when there is one the tenant may use) and closes their sockets.
    pub fn drain(self: &Arc<Self>, url_for: &dyn Fn(&str) -> Option<String>) {
        self.apply_now(|r, now| r.handle_drain(now, url_for));
    }

    pub fn is_draining(&self) -> bool {
        self.lock().rooms.is_draining()
    }

    /// Attached sessions and rooms with a participant on this node.
    pub fn local_counts(&self) -> (usize, usize) {
        self.lock().rooms.local_counts()
    }
}

fn record(m: Metric) {
    match m {
        Metric::MessageIn => {
            metrics::counter!("turnpike_signal_messages_total", "direction" => "in").increment(1);
        }
        Metric::MessageOut => {
            metrics::counter!("turnpike_signal_messages_total", "direction" => "out").increment(1);
        }
        Metric::Drop(reason) => {
            metrics::counter!("turnpike_signal_drops_total", "reason" => reason.label())
                .increment(1);
        }
        Metric::Resume => metrics::counter!("turnpike_signal_resumes_total").increment(1),
        Metric::Gauges { connections, rooms } => {
            metrics::gauge!("turnpike_signal_connections").set(connections as f64);
            metrics::gauge!("turnpike_signal_rooms").set(rooms as f64);
        }
    }
}

/// Sleeps until the rooms' next deadline (or an earlier one appears), then hands them the time.
async fn timer_task(hub: Arc<Hub>) {
    loop {
        let deadline = {
            let mut inner = hub.lock();
            let next = inner.rooms.poll_timeout();
            inner.armed = next;
            next
        };
        let Some(deadline) = deadline else {
            hub.timer.notified().await;
            continue;
        };
        tokio::select! {
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {}
            () = hub.timer.notified() => continue,
        }
        let work = hub.apply(|r, now| r.handle_timeout(now)).1;
        hub.carry_out(work).await;
    }
}

/// Reads the relay's directory (current on every node through the change feed) once a
/// second and ends the participants here of every suspended tenant: also one whose join was
/// authorized just before the suspension and completed after it.
async fn suspension_task(hub: Arc<Hub>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let suspended: HashSet<String> = hub.api.directory.load().suspended_tenants.clone();
        if !suspended.is_empty() {
            hub.apply_now(|r, now| r.handle_suspended(now, &suspended));
        }
    }
}

/// Bus events to this node's participants.
async fn deliver_task(hub: Arc<Hub>) {
    let mut rx = hub.bus.subscribe();
    loop {
        match rx.recv().await {
            Ok(e) => {
                let work = hub.apply(|r, now| r.handle_bus_event(now, e)).1;
                hub.carry_out(work).await;
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(lost = n, "signalling events lagged");
                metrics::counter!("turnpike_signal_drops_total", "reason" => "lagged").increment(n);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
