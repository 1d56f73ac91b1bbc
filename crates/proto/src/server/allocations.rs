//! The allocation table and its indexes: by 5-tuple (requests and client data) and by relayed
//! transport address (peer data). The one place that keeps them in step: an allocation enters
//! and leaves both indexes through these methods only.

use std::net::SocketAddr;

use slab::Slab;

use crate::allocation::Allocation;
use crate::fast_map::FastMap;
use crate::five_tuple::FiveTuple;
use crate::output::{AllocationId, RelayTransport};

/// Allocations of one server.
#[derive(Debug, Default)]
pub(crate) struct Allocations {
    slab: Slab<Allocation>,
    by_five_tuple: FastMap<FiveTuple, AllocationId>,
    /// Keyed by transport too: a UDP and a TCP relay are different endpoints even on one IP
    /// and port (the driver never hands one out twice, but the table must not confuse them).
    by_relay: FastMap<(RelayTransport, SocketAddr), AllocationId>,
}

impl Allocations {
    /// Adds an allocation (its relays not yet bound) under its 5-tuple.
    pub(crate) fn insert(&mut self, a: Allocation) -> AllocationId {
        let ft = a.five_tuple;
        let id = self.slab.insert(a);
        self.by_five_tuple.insert(ft, id);
        id
    }

    /// Records the relayed addresses the driver bound for `id`.
    pub(crate) fn set_relays(&mut self, id: AllocationId, relays: [Option<SocketAddr>; 2]) {
        let a = &mut self.slab[id];
        a.relays = relays;
        for r in relays.iter().flatten() {
            self.by_relay.insert((a.transport, *r), id);
        }
    }

    /// Removes an allocation from the table and both indexes.
    pub(crate) fn remove(&mut self, id: AllocationId) -> Allocation {
        let a = self.slab.remove(id);
        self.by_five_tuple.remove(&a.five_tuple);
        for r in a.relays.iter().flatten() {
            self.by_relay.remove(&(a.transport, *r));
        }
        a
    }

    pub(crate) fn get(&self, id: AllocationId) -> Option<&Allocation> {
        self.slab.get(id)
    }

    pub(crate) fn get_mut(&mut self, id: AllocationId) -> Option<&mut Allocation> {
        self.slab.get_mut(id)
    }

    pub(crate) fn by_five_tuple(&self, ft: &FiveTuple) -> Option<AllocationId> {
        self.by_five_tuple.get(ft).copied()
    }

    pub(crate) fn by_relay(
        &self,
        transport: RelayTransport,
        relay: SocketAddr,
    ) -> Option<AllocationId> {
        self.by_relay.get(&(transport, relay)).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    pub(crate) fn ids(&self) -> Vec<AllocationId> {
        self.slab.iter().map(|(id, _)| id).collect()
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (AllocationId, &mut Allocation)> {
        self.slab.iter_mut()
    }
}

impl std::ops::Index<AllocationId> for Allocations {
    type Output = Allocation;

    fn index(&self, id: AllocationId) -> &Allocation {
        &self.slab[id]
    }
}

impl std::ops::IndexMut<AllocationId> for Allocations {
    fn index_mut(&mut self, id: AllocationId) -> &mut Allocation {
        &mut self.slab[id]
    }
}
