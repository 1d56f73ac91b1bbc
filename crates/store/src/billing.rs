//! What billing stores: a tenant's price plan and its closed monthly statements, and the usage
//! figures a statement is computed from. The money arithmetic and the periods are the API's
//! (`turnpike_api::domain::billing`); this crate keeps finished values.

use crate::TenantId;

/// A tenant's prices, set by the operator. Prices are in millionths of the currency's major
/// unit ("micros": 0.40 EUR is 400,000), so sub-cent prices stay exact integers.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PricePlan {
    pub tenant_id: TenantId,
    /// ISO 4217 code, upper case (`EUR`).
    pub currency: String,
    /// Per 10^9 bytes relayed (all four legs, as metered).
    pub per_gb_micros: i64,
    /// Per hour of allocation time.
    pub per_allocation_hour_micros: i64,
    /// Bytes each period includes before the per-GB price applies.
    pub included_bytes: i64,
    /// Day of the month (1 to 28, UTC) a period starts on.
    pub billing_day: i64,
    /// `YYYY-MM`: the first month with a statement.
    pub first_month: String,
    pub updated_at: i64,
}

/// A plan with the month of the tenant's newest stored statement: what the closer reads.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PlanWithLastStatement {
    #[sqlx(flatten)]
    pub plan: PricePlan,
    pub last_month: Option<String>,
}

/// A closed statement's key figures (what a list shows).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StatementSummary {
    pub tenant_id: TenantId,
    /// `YYYY-MM` of the period's start.
    pub month: String,
    pub period_start: i64,
    pub period_end: i64,
    pub currency: String,
    /// In the currency's minor unit (cents).
    pub total_minor: i64,
    pub closed_at: i64,
}

/// A closed statement as stored: never changed after it is written.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredStatement {
    #[sqlx(flatten)]
    pub summary: StatementSummary,
    /// The tenant's bytes of all hours before `period_end`, as counted when it was made: the
    /// next statement bills what was counted since.
    pub cumulative_bytes: i64,
    pub cumulative_allocation_seconds: i64,
    /// The statement as the API serves it (JSON).
    pub body: String,
}

/// A tenant's usage split at a period's start: everything of hours before `split` and
/// everything from `split` to the period's end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct BillingUsage {
    pub bytes_before: i64,
    pub allocation_seconds_before: i64,
    pub bytes_within: i64,
    pub allocation_seconds_within: i64,
    pub allocations_within: i64,
}

/// One user's usage in a period: by user id, and for credentials without one, by stored
/// credential (`credential_id`, with its username while it exists; both empty for ephemeral
/// credentials without a user id).
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct UserUsage {
    pub user_id: String,
    pub credential_id: String,
    pub username: Option<String>,
    pub bytes: i64,
    pub allocation_seconds: i64,
}
