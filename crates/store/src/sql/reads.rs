//! Reads written once for both backends (generic over [`sqlx::Database`]).

use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, Type};

use crate::{AllocationRecord, TenantId};

/// The tenant's allocations with no end recorded, newest first, at most `limit`.
pub(super) async fn live_allocations<DB>(
    pool: &Pool<DB>,
    tenant_id: &TenantId,
    limit: u32,
) -> Result<Vec<AllocationRecord>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> AllocationRecord: FromRow<'r, DB::Row>,
{
    sqlx::query_as::<DB, AllocationRecord>(
        "SELECT id, tenant_id, credential_id, user_id, username, client, transport, relay,
                started_at, ended_at, c2s_bytes, s2p_bytes, p2s_bytes, s2c_bytes, peers
         FROM allocation_log WHERE tenant_id = $1 AND ended_at IS NULL
         ORDER BY started_at DESC, id LIMIT $2",
    )
    .bind(tenant_id.as_str())
    .bind(i64::from(limit.clamp(1, 100_000)))
    .fetch_all(pool)
    .await
}
