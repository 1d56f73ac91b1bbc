//! Metering state of a server: accounting events not yet polled, and the bytes the driver
//! copied on RFC 6062 data connections since the last poll. The events themselves are defined
//! in [`crate::accounting`].

use std::collections::HashMap;
use std::sync::Arc;

use crate::accounting::{AccountingEvent, Usage};
use crate::directory::Account;
use crate::stats::Direction;

#[derive(Debug, Default)]
pub(crate) struct Metering {
    /// Events not yet polled.
    events: Vec<AccountingEvent>,
    /// Spliced bytes per allocation serial (a serial's connections all belong to one user),
    /// with whose usage they are.
    spliced: HashMap<u64, (Arc<Account>, Usage)>,
}

impl Metering {
    pub(crate) fn push(&mut self, e: AccountingEvent) {
        self.events.push(e);
    }

    /// Counts `n` spliced bytes on both legs `a` and `b` of allocation `serial`.
    pub(crate) fn spliced(
        &mut self,
        account: &Arc<Account>,
        serial: u64,
        a: Direction,
        b: Direction,
        n: usize,
    ) {
        let (_, u) = self
            .spliced
            .entry(serial)
            .or_insert_with(|| (account.clone(), Usage::default()));
        u.count(a, n);
        u.count(b, n);
    }

    /// The events so far, with the spliced usage as events stamped `at_unix`.
    pub(crate) fn take(&mut self, at_unix: u64) -> Vec<AccountingEvent> {
        for (serial, (account, delta)) in self.spliced.drain() {
            self.events.push(AccountingEvent::Usage {
                account,
                delta,
                at_unix,
                spliced: Some(serial),
            });
        }
        std::mem::take(&mut self.events)
    }
}
