//! What `/healthz` and `/readyz` answer.
//!
//! - `/healthz` (liveness, and what a load balancer should watch): 200 while the node serves;
//!   503 while it drains (SIGUSR1: existing allocations continue, new clients should go
//!   elsewhere) or when its SQLite database file was removed or replaced.
//! - `/readyz` (readiness): 200 once every listener is bound and the database answers a query;
//!   503 with the reasons otherwise.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use turnpike_proto::Runtime;

/// The node's health, shared by both HTTP listeners.
pub(crate) struct Health {
    relay: Arc<Runtime>,
    control: Option<Arc<turnpike_api::AppState>>,
    listening: AtomicBool,
}

impl Health {
    pub(crate) fn new(
        relay: Arc<Runtime>,
        control: Option<Arc<turnpike_api::AppState>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            relay,
            control,
            listening: AtomicBool::new(false),
        })
    }

    /// Every listener is bound.
    pub(crate) fn set_listening(&self) {
        self.listening.store(true, Ordering::SeqCst);
    }

    /// `None` when healthy, else why not.
    pub(crate) fn liveness(&self) -> Option<&'static str> {
        if self.relay.is_draining() {
            return Some("draining: new allocations are refused; send new clients elsewhere");
        }
        if self.control.as_ref().is_some_and(|c| !c.database_ok()) {
            return Some("the database file was removed or replaced: restore it and restart");
        }
        None
    }

    /// Empty when ready, else the reasons.
    pub(crate) async fn readiness(&self) -> Vec<&'static str> {
        let mut why = Vec::new();
        if !self.listening.load(Ordering::SeqCst) {
            why.push("listeners not bound yet");
        }
        if let Some(c) = &self.control {
            use turnpike_store::Store;
            let query = tokio::time::timeout(Duration::from_secs(2), c.store.has_admin_key()).await;
            if !matches!(query, Ok(Ok(_))) {
                why.push("database unreachable");
            }
        }
        why
    }
}
