//! What a control-plane operation can fail with. Nothing here knows about HTTP: the API maps
//! each variant to a status code and its one error shape in `http::error`.

use turnpike_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// A field is missing, malformed or out of range; the message names the field and what it
    /// may be. Correct the input and retry.
    #[error("{0}")]
    Invalid(String),
    /// The caller may not do this with the key it holds (a publishable key used from another
    /// origin, or whose credential is disabled). Use a key that may.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing by that id or name for this tenant (another tenant's objects are not found
    /// either). Check the id.
    #[error("{0}")]
    NotFound(String),
    /// The input contradicts the current state (already enabled, no live shared secret). Change
    /// the state first or leave it.
    #[error("{0}")]
    Conflict(String),
    /// The tenant is suspended by the operator: nothing may be changed or minted for it until
    /// it is resumed. Ask the operator.
    #[error("this tenant is suspended: it may read but not change anything or mint credentials until the operator resumes it")]
    Suspended,
    /// The store failed or refused (taken name, lost database file, ...): see [`StoreError`].
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type DomainResult<T> = Result<T, DomainError>;

impl DomainError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(message.into())
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(message.into())
    }
}
