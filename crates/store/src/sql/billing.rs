//! Billing's SQL, written once for both backends (generic over [`sqlx::Database`]): price
//! plans, closed statements (insert-only: a statement never changes), and the two usage
//! queries a statement is computed from.

use sqlx::{Database, Decode, Encode, Executor, FromRow, IntoArguments, Pool, Type};

use super::usage::key_totals_query;
use crate::{
    BillingUsage, PlanWithLastStatement, PricePlan, StatementSummary, StoredStatement, TenantId,
    UserUsage,
};

const PLAN_COLUMNS: &str = "tenant_id, currency, per_gb_micros, per_allocation_hour_micros, \
     included_bytes, billing_day, first_month, updated_at";

const SUMMARY_COLUMNS: &str =
    "tenant_id, month, period_start, period_end, currency, total_minor, closed_at";

pub(super) async fn put_plan<DB>(pool: &Pool<DB>, p: &PricePlan) -> Result<(), sqlx::Error>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
{
    let sql = format!(
        "INSERT INTO price_plans ({PLAN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (tenant_id) DO UPDATE SET currency = excluded.currency,
            per_gb_micros = excluded.per_gb_micros,
            per_allocation_hour_micros = excluded.per_allocation_hour_micros,
            included_bytes = excluded.included_bytes, billing_day = excluded.billing_day,
            first_month = excluded.first_month, updated_at = excluded.updated_at"
    );
    sqlx::query::<DB>(&sql)
        .bind(p.tenant_id.as_str())
        .bind(p.currency.as_str())
        .bind(p.per_gb_micros)
        .bind(p.per_allocation_hour_micros)
        .bind(p.included_bytes)
        .bind(p.billing_day)
        .bind(p.first_month.as_str())
        .bind(p.updated_at)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn get_plan<DB>(
    pool: &Pool<DB>,
    tenant_id: &TenantId,
) -> Result<Option<PricePlan>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> PricePlan: FromRow<'r, DB::Row>,
{
    let sql = format!("SELECT {PLAN_COLUMNS} FROM price_plans WHERE tenant_id = $1");
    sqlx::query_as::<DB, PricePlan>(&sql)
        .bind(tenant_id.as_str())
        .fetch_optional(pool)
        .await
}

/// `true` when a plan was deleted.
pub(super) async fn delete_plan<DB>(
    pool: &Pool<DB>,
    tenant_id: &TenantId,
) -> Result<bool, sqlx::Error>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let gone: Option<String> = sqlx::query_scalar::<DB, String>(
        "DELETE FROM price_plans WHERE tenant_id = $1 RETURNING tenant_id",
    )
    .bind(tenant_id.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(gone.is_some())
}

pub(super) async fn plans<DB>(pool: &Pool<DB>) -> Result<Vec<PlanWithLastStatement>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> PlanWithLastStatement: FromRow<'r, DB::Row>,
{
    let cols = PLAN_COLUMNS
        .split(", ")
        .map(|c| format!("p.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {cols}, (SELECT MAX(s.month) FROM billing_statements s
                         WHERE s.tenant_id = p.tenant_id) AS last_month
         FROM price_plans p ORDER BY p.tenant_id"
    );
    sqlx::query_as::<DB, PlanWithLastStatement>(&sql)
        .fetch_all(pool)
        .await
}

/// `tenant, split hour, end hour`.
const BILLING_USAGE: &str = "
    SELECT
      CAST(COALESCE(SUM(CASE WHEN hour < $2
           THEN c2s_bytes + s2p_bytes + p2s_bytes + s2c_bytes ELSE 0 END), 0) AS BIGINT)
        AS bytes_before,
      CAST(COALESCE(SUM(CASE WHEN hour < $2 THEN allocation_seconds ELSE 0 END), 0) AS BIGINT)
        AS allocation_seconds_before,
      CAST(COALESCE(SUM(CASE WHEN hour >= $2
           THEN c2s_bytes + s2p_bytes + p2s_bytes + s2c_bytes ELSE 0 END), 0) AS BIGINT)
        AS bytes_within,
      CAST(COALESCE(SUM(CASE WHEN hour >= $2 THEN allocation_seconds ELSE 0 END), 0) AS BIGINT)
        AS allocation_seconds_within,
      CAST(COALESCE(SUM(CASE WHEN hour >= $2 THEN allocations ELSE 0 END), 0) AS BIGINT)
        AS allocations_within
    FROM usage_tenant_hourly WHERE tenant_id = $1 AND hour < $3";

pub(super) async fn billing_usage<DB>(
    pool: &Pool<DB>,
    tenant_id: &TenantId,
    split_hour: i64,
    end_hour: i64,
) -> Result<BillingUsage, sqlx::Error>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> BillingUsage: FromRow<'r, DB::Row>,
{
    sqlx::query_as::<DB, BillingUsage>(BILLING_USAGE)
        .bind(tenant_id.as_str())
        .bind(split_hour)
        .bind(end_hour)
        .fetch_one(pool)
        .await
}

/// Per user (or, without a user id, per stored credential) over `[from_hour, to_hour)`: the monthly rollup for whole UTC months (a billing
/// day of 1), else the hourly rows.
pub(super) async fn usage_by_user<DB>(
    pool: &Pool<DB>,
    tenant_id: &TenantId,
    from_hour: i64,
    to_hour: i64,
) -> Result<Vec<UserUsage>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> UserUsage: FromRow<'r, DB::Row>,
{
    let (table, time, upper, from, to) = match key_totals_query(from_hour, to_hour) {
        (_, from, to) if to != to_hour => ("usage_monthly", "month", "<=", from, to),
        _ => ("usage_hourly", "hour", "<", from_hour, to_hour),
    };
    let sql = format!(
        "SELECT t.user_id, t.credential_id, c.username, t.bytes, t.allocation_seconds
         FROM (SELECT user_id, CASE WHEN user_id = '' THEN credential_id ELSE '' END
                        AS credential_id,
                      CAST(SUM(c2s_bytes + s2p_bytes + p2s_bytes + s2c_bytes) AS BIGINT) AS bytes,
                      CAST(SUM(allocation_seconds) AS BIGINT) AS allocation_seconds
               FROM {table} WHERE tenant_id = $1 AND {time} >= $2 AND {time} {upper} $3
               GROUP BY user_id, CASE WHEN user_id = '' THEN credential_id ELSE '' END) t
         LEFT JOIN credentials c ON c.id = t.credential_id
         ORDER BY t.user_id, t.credential_id"
    );
    sqlx::query_as::<DB, UserUsage>(&sql)
        .bind(tenant_id.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await
}

pub(super) async fn insert_statement<DB>(
    pool: &Pool<DB>,
    s: &StoredStatement,
) -> Result<bool, sqlx::Error>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let m = &s.summary;
    let sql = format!(
        "INSERT INTO billing_statements ({SUMMARY_COLUMNS}, cumulative_bytes,
            cumulative_allocation_seconds, body)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (tenant_id, month) DO NOTHING RETURNING month"
    );
    let added: Option<String> = sqlx::query_scalar::<DB, String>(&sql)
        .bind(m.tenant_id.as_str())
        .bind(m.month.as_str())
        .bind(m.period_start)
        .bind(m.period_end)
        .bind(m.currency.as_str())
        .bind(m.total_minor)
        .bind(m.closed_at)
        .bind(s.cumulative_bytes)
        .bind(s.cumulative_allocation_seconds)
        .bind(s.body.as_str())
        .fetch_optional(pool)
        .await?;
    Ok(added.is_some())
}

/// The statement of `month`, or (with `before`) the newest one before it.
pub(super) async fn get_statement<DB>(
    pool: &Pool<DB>,
    tenant_id: &TenantId,
    month: &str,
    before: bool,
) -> Result<Option<StoredStatement>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> StoredStatement: FromRow<'r, DB::Row>,
{
    let cond = if before {
        "month < $2 ORDER BY month DESC LIMIT 1"
    } else {
        "month = $2"
    };
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS}, cumulative_bytes, cumulative_allocation_seconds, body
         FROM billing_statements WHERE tenant_id = $1 AND {cond}"
    );
    sqlx::query_as::<DB, StoredStatement>(&sql)
        .bind(tenant_id.as_str())
        .bind(month)
        .fetch_optional(pool)
        .await
}

pub(super) async fn list_statements<DB>(
    pool: &Pool<DB>,
    tenant_id: &TenantId,
) -> Result<Vec<StatementSummary>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> StatementSummary: FromRow<'r, DB::Row>,
{
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM billing_statements WHERE tenant_id = $1
         ORDER BY month DESC"
    );
    sqlx::query_as::<DB, StatementSummary>(&sql)
        .bind(tenant_id.as_str())
        .fetch_all(pool)
        .await
}
