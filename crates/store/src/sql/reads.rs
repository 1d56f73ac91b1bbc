//! Reads written once for both backends (generic over [`sqlx::Database`]).

use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, Type};

use crate::{AllocationRecord, AuthFailure, Delivery, TenantId};

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
                started_at, ended_at, c2s_bytes, s2p_bytes, p2s_bytes, s2c_bytes, peers, node_id
         FROM allocation_log WHERE tenant_id = $1 AND ended_at IS NULL
         ORDER BY started_at DESC, id LIMIT $2",
    )
    .bind(tenant_id.as_str())
    .bind(i64::from(limit.clamp(1, 100_000)))
    .fetch_all(pool)
    .await
}

const DELIVERY_COLUMNS: &str = "id, tenant_id, event_id, kind, channel, target, at, attempt, \
     outcome, status, error, body";

pub(super) async fn add_delivery<DB>(pool: &Pool<DB>, d: &Delivery) -> Result<(), sqlx::Error>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
{
    let sql = format!(
        "INSERT INTO notification_deliveries ({DELIVERY_COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    );
    sqlx::query::<DB>(&sql)
        .bind(d.id.as_str())
        .bind(d.tenant_id.as_str())
        .bind(d.event_id.as_str())
        .bind(d.kind.as_str())
        .bind(d.channel.as_str())
        .bind(d.target.as_str())
        .bind(d.at)
        .bind(d.attempt)
        .bind(d.outcome.as_str())
        .bind(d.status)
        .bind(d.error.as_deref())
        .bind(d.body.as_str())
        .execute(pool)
        .await?;
    Ok(())
}

/// The tenant's newest attempts (all, or of one event), newest first.
pub(super) async fn deliveries<DB>(
    pool: &Pool<DB>,
    tenant_id: &TenantId,
    event_id: Option<&str>,
    limit: u32,
) -> Result<Vec<Delivery>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> Delivery: FromRow<'r, DB::Row>,
{
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM notification_deliveries
         WHERE tenant_id = $1 AND ($2 IS NULL OR event_id = $2)
         ORDER BY at DESC, id DESC LIMIT $3"
    );
    sqlx::query_as::<DB, Delivery>(&sql)
        .bind(tenant_id.as_str())
        .bind(event_id)
        .bind(i64::from(limit.clamp(1, 10_000)))
        .fetch_all(pool)
        .await
}

/// Deletes rows of a per-tenant log (`notification_deliveries`, `auth_failures`: an `id` ordered
/// by time within `at`) before `before` and, per tenant, beyond the newest `keep`; returns how
/// many went.
pub(super) async fn prune_log<DB>(
    pool: &Pool<DB>,
    table: &str,
    before: i64,
    keep: u32,
) -> Result<u64, sqlx::Error>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> String: sqlx::Decode<'r, DB> + Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let old: Vec<String> = sqlx::query_scalar::<DB, String>(&format!(
        "DELETE FROM {table} WHERE at < $1 RETURNING id"
    ))
    .bind(before)
    .fetch_all(pool)
    .await?;
    let mut gone = old.len() as u64;
    let crowded: Vec<String> = sqlx::query_scalar::<DB, String>(&format!(
        "SELECT tenant_id FROM {table} GROUP BY tenant_id HAVING COUNT(*) > $1"
    ))
    .bind(i64::from(keep))
    .fetch_all(pool)
    .await?;
    for t in crowded {
        let removed: Vec<String> = sqlx::query_scalar::<DB, String>(&format!(
            "DELETE FROM {table} WHERE tenant_id = $1 AND id NOT IN
               (SELECT id FROM {table} WHERE tenant_id = $1
                ORDER BY at DESC, id DESC LIMIT $2)
             RETURNING id"
        ))
        .bind(t.as_str())
        .bind(i64::from(keep))
        .fetch_all(pool)
        .await?;
        gone += removed.len() as u64;
    }
    Ok(gone)
}

/// Inserts refused requests, one statement each (at most the relay's log rate), skipping rows
/// of tenants that do not exist (an ephemeral username may name any tenant).
pub(super) async fn add_auth_failures<DB>(
    pool: &Pool<DB>,
    rows: &[AuthFailure],
) -> Result<(), sqlx::Error>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
{
    for r in rows {
        sqlx::query::<DB>(
            "INSERT INTO auth_failures (id, tenant_id, at, username, client, transport, reason)
             SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $2)",
        )
        .bind(r.id.as_str())
        .bind(r.tenant_id.as_str())
        .bind(r.at)
        .bind(r.username.as_str())
        .bind(r.client.as_str())
        .bind(r.transport.as_str())
        .bind(r.reason.as_str())
        .execute(pool)
        .await?;
    }
    Ok(())
}

pub(super) async fn auth_failures<DB>(
    pool: &Pool<DB>,
    tenant_id: &TenantId,
    from: i64,
    to: i64,
    limit: u32,
) -> Result<Vec<AuthFailure>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> AuthFailure: FromRow<'r, DB::Row>,
{
    sqlx::query_as::<DB, AuthFailure>(
        "SELECT id, tenant_id, at, username, client, transport, reason FROM auth_failures
         WHERE tenant_id = $1 AND at >= $2 AND at < $3 ORDER BY at DESC, id DESC LIMIT $4",
    )
    .bind(tenant_id.as_str())
    .bind(from)
    .bind(to)
    .bind(i64::from(limit.clamp(1, 100_000)))
    .fetch_all(pool)
    .await
}

/// Tenants whose ICE lists and redirects are limited to some regions (data residency), with
/// those regions: a tenant's own list, narrowed by its parent's (a project of a restricted
/// tenant can never reach further than its tenant).
pub(super) async fn tenant_regions<DB>(
    pool: &Pool<DB>,
) -> Result<Vec<(TenantId, Vec<String>)>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> (String, Option<String>, Option<String>): FromRow<'r, DB::Row>,
{
    let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as::<DB, _>(
        "SELECT t.id, t.allowed_regions, p.allowed_regions
         FROM tenants t LEFT JOIN tenants p ON p.id = t.parent_id
         WHERE t.allowed_regions IS NOT NULL OR p.allowed_regions IS NOT NULL
         ORDER BY t.id",
    )
    .fetch_all(pool)
    .await?;
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    };
    Ok(rows
        .into_iter()
        .map(|(id, own, parent)| {
            let regions = match (own.as_deref().map(split), parent.as_deref().map(split)) {
                (Some(o), Some(p)) => o.into_iter().filter(|r| p.contains(r)).collect(),
                (Some(o), None) => o,
                (None, Some(p)) => p,
                (None, None) => Vec::new(),
            };
            (TenantId::from(id), regions)
        })
        .collect())
}
