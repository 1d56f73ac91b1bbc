//! Wake-ups when another node changed something: PostgreSQL `LISTEN turnpike_changes` (the
//! change feed's trigger notifies at commit). A notification carries nothing; the listener reads
//! the feed itself, from where it was, so a lost notification (a dropped connection) costs at
//! most one `directory_sync_interval`, never a change.

use sqlx::postgres::PgListener;

use crate::Result;

/// The channel the change feed's trigger notifies.
const CHANGES_CHANNEL: &str = "turnpike_changes";

/// Waits for notifications of new changes (see the module doc).
pub struct ChangeListener {
    listener: PgListener,
}

impl ChangeListener {
    pub(crate) async fn connect(pool: &sqlx::PgPool) -> Result<Self> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(CHANGES_CHANNEL).await?;
        Ok(Self { listener })
    }

    /// Returns once at least one change was committed since the last call, taking every
    /// notification already received with it (a burst of writes is one wake-up). A lost
    /// connection is re-established here (sqlx re-subscribes); the error says it was lost.
    pub async fn changed(&mut self) -> Result<()> {
        self.listener.recv().await?;
        while self.listener.next_buffered().is_some() {}
        Ok(())
    }
}
