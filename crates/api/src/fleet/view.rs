//! The last read of the node registry, shared by the heartbeat (writer) and routing (readers).

use std::sync::{Arc, RwLock};

use turnpike_store::NodeRecord;

/// What the fleet code keeps while running: the last read of the registry.
#[derive(Debug, Default)]
pub struct Fleet {
    view: RwLock<Arc<Vec<NodeRecord>>>,
}

impl Fleet {
    /// Every node's row as last read (empty before the first heartbeat).
    pub fn nodes(&self) -> Arc<Vec<NodeRecord>> {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set(&self, nodes: Vec<NodeRecord>) {
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(nodes);
    }
}
