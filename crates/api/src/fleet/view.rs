//! The last read of the node registry, shared by the heartbeat (writer) and routing (readers).

use std::sync::{Arc, RwLock};

use turnpike_store::NodeRecord;

/// What the fleet code keeps while running: the last read of the registry.
#[derive(Debug, Default)]
pub struct Fleet {
    view: RwLock<Arc<Vec<NodeRecord>>>,
    /// The node this one sends clients to while it drains or is full.
    alternate: RwLock<Option<NodeRecord>>,
}

impl Fleet {
    /// Every node's row as last read (empty before the first heartbeat).
    pub fn nodes(&self) -> Arc<Vec<NodeRecord>> {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set(&self, nodes: Vec<NodeRecord>, alternate: Option<NodeRecord>) {
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(nodes);
        *self.alternate.write().unwrap_or_else(|e| e.into_inner()) = alternate;
    }

    /// The best other healthy node for this node's clients, as of the last heartbeat.
    pub fn alternate(&self) -> Option<NodeRecord> {
        self.alternate
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
