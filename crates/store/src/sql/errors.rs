//! What the database's answers mean for the store's callers.

use crate::StoreError;

pub(super) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Whether a unique violation is the one on (username, long-term key) of credentials.
pub(super) fn on_long_term_key(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d)
        if d.constraint().is_some_and(|c| c.contains("long_term_key"))
            || d.message().contains("key_sha256"))
}

/// A unique violation as a conflict on `what`; anything else as it is.
pub(super) fn conflict(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(what)
        } else {
            e.into()
        }
    }
}

/// `NotFound` when a change touched no row.
pub(super) fn found(rows_affected: u64) -> Result<(), StoreError> {
    if rows_affected == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

/// A unique violation when creating a credential: the name within the tenant (`name_taken`),
/// or the same name and key as a credential elsewhere (whose tenant must not be revealed).
pub(super) fn credential_conflict(e: sqlx::Error, name_taken: bool) -> StoreError {
    if name_taken {
        StoreError::Conflict("credential username")
    } else if on_long_term_key(&e) {
        StoreError::KeyCollision
    } else {
        StoreError::Conflict("credential")
    }
}
