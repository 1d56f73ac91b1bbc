//! What the meter writes, shared by both backends: usage counters and their rollups (the
//! upserts of hourly rows, the tenant's hours, the months by credential and user; the ten
//! counters bound in one place; how a batch of deltas folds into rollup rows) and the rows of
//! the allocation log.
//!
//! Rollups are written in the same transaction as the hourly rows (never rebuilt), so they are
//! as exact as the rows: reports over a billing period read them instead of every hourly row.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use sqlx::query::Query;
use sqlx::{Database, Encode, Executor, IntoArguments, Pool, Type};

use crate::calendar::month_start;
use crate::{AllocationRecord, Counters, TenantId, UsageDelta, UsageRow};

/// The counter columns, in the order of [`Counters`] (and of [`bind_counters`]).
pub(super) const COUNTER_COLUMNS: [&str; 10] = [
    "c2s_bytes",
    "c2s_packets",
    "s2p_bytes",
    "s2p_packets",
    "p2s_bytes",
    "p2s_packets",
    "s2c_bytes",
    "s2c_packets",
    "allocations",
    "allocation_seconds",
];

/// Rows per multi-row statement: at 15 parameters a row, far below SQLite's 32,766 and
/// PostgreSQL's 65,535. One statement per row cost a round trip each (a flush of 20,000
/// allocations took 2.7 s on SQLite and 4.4 s on PostgreSQL, more than the 2 s interval).
const ROWS_PER_STATEMENT: usize = 1000;

/// How a backend takes the parameters of the long multi-row statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placeholder {
    /// `$1, $2, ..` (PostgreSQL).
    Numbered,
    /// `?, ?, ..` in order (SQLite): the driver asks SQLite each parameter's name, which SQLite
    /// finds by a linear scan, so numbered parameters cost the square of their number: a
    /// flush of 20,000 rows took 9.9 s with `$N` in statements of 1,000 rows, 0.15 s with `?`.
    Anonymous,
}

/// Placeholders of `rows` rows of `width` values: `($1, $2), ($3, $4)` or `(?, ?), (?, ?)`.
fn placeholders(rows: usize, width: usize, style: Placeholder) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=width)
                .map(|i| match style {
                    Placeholder::Numbered => format!("${}", r * width + i),
                    Placeholder::Anonymous => "?".to_string(),
                })
                .collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `INSERT INTO table (keys.., counters..) VALUES (..), .. ON CONFLICT (keys) DO UPDATE`
/// adding the counters (never overwriting), for `rows` rows: each row binds its keys, then
/// [`bind_counters`]. A key may appear once per statement (callers fold first).
fn add_counters(table: &str, keys: &[&str], rows: usize, style: Placeholder) -> String {
    let columns: Vec<&str> = keys.iter().chain(COUNTER_COLUMNS.iter()).copied().collect();
    let sums: Vec<String> = COUNTER_COLUMNS
        .iter()
        .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO {table} ({}) VALUES {} ON CONFLICT ({}) DO UPDATE SET {}",
        columns.join(", "),
        placeholders(rows, columns.len(), style),
        keys.join(", "),
        sums.join(", ")
    )
}

/// One key value of a row.
#[derive(Debug, Clone, Copy)]
enum Key<'a> {
    Text(&'a str),
    Int(i64),
}

/// Adds `rows` (keys, counters) to `table`, [`ROWS_PER_STATEMENT`] at a time.
async fn add_rows<DB>(
    conn: &mut DB::Connection,
    table: &str,
    keys: &[&str],
    rows: &[(Vec<Key<'_>>, Counters)],
    style: Placeholder,
) -> Result<(), sqlx::Error>
where
    DB: Database,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
{
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = add_counters(table, keys, chunk.len(), style);
        let mut q = sqlx::query::<DB>(&sql);
        for (row_keys, c) in chunk {
            for k in row_keys {
                q = match *k {
                    Key::Text(s) => q.bind(s),
                    Key::Int(i) => q.bind(i),
                };
            }
            q = bind_counters(q, c);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Writes a batch of usage deltas: the hourly rows and both rollups, and with `at` (node id,
/// region) the per-node rows of the fleet's reports; folded by key first (deltas of one key add
/// up), in key order (concurrent writers lock rows in one order). Run inside the caller's
/// transaction.
async fn write_usage<DB>(
    conn: &mut DB::Connection,
    deltas: &[UsageDelta],
    at: Option<(&str, &str)>,
    style: Placeholder,
) -> Result<(), sqlx::Error>
where
    DB: Database,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
{
    let f = Folded::of(deltas);
    let hours: Vec<_> = f
        .hours
        .iter()
        .map(|((t, c, u, h), n)| {
            let k = vec![Key::Text(t), Key::Text(c), Key::Text(u), Key::Int(*h)];
            (k, *n)
        })
        .collect();
    let keys = ["tenant_id", "credential_id", "user_id", "hour"];
    add_rows(conn, "usage_hourly", &keys, &hours, style).await?;
    let rows: Vec<_> = f
        .tenant_hours
        .iter()
        .map(|((t, h), n)| (vec![Key::Text(t), Key::Int(*h)], *n))
        .collect();
    add_rows(
        conn,
        "usage_tenant_hourly",
        &["tenant_id", "hour"],
        &rows,
        style,
    )
    .await?;
    let months: Vec<_> = f
        .months
        .iter()
        .map(|((t, m, c, u), n)| {
            let k = vec![Key::Text(t), Key::Int(*m), Key::Text(c), Key::Text(u)];
            (k, *n)
        })
        .collect();
    let keys = ["tenant_id", "month", "credential_id", "user_id"];
    add_rows(conn, "usage_monthly", &keys, &months, style).await?;
    if let Some((node, region)) = at {
        let rows: Vec<_> = f
            .tenant_hours
            .iter()
            .map(|((t, h), n)| {
                (
                    vec![
                        Key::Text(t),
                        Key::Int(*h),
                        Key::Text(node),
                        Key::Text(region),
                    ],
                    *n,
                )
            })
            .collect();
        let keys = ["tenant_id", "hour", "node_id", "region"];
        add_rows(conn, "usage_node_hourly", &keys, &rows, style).await?;
    }
    Ok(())
}

/// Writes usage deltas in one transaction: the hourly rows and rollups, and, with `at` (node
/// id, region), the per-node rows.
pub(super) async fn add_usage_tx<DB>(
    pool: &Pool<DB>,
    deltas: &[UsageDelta],
    at: Option<(&str, &str)>,
    style: Placeholder,
) -> Result<(), sqlx::Error>
where
    DB: Database,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
{
    let mut tx = pool.begin().await?;
    write_usage::<DB>(&mut *tx, deltas, at, style).await?;
    tx.commit().await
}

/// The tenant's usage per hour and node in `[from_hour, to_hour)` (see [`NODE_HOURS`]).
pub(super) async fn node_usage<DB>(
    pool: &Pool<DB>,
    tenant_id: &TenantId,
    from_hour: i64,
    to_hour: i64,
) -> Result<Vec<UsageRow>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> UsageRow: sqlx::FromRow<'r, DB::Row>,
{
    sqlx::query_as::<DB, UsageRow>(&NODE_HOURS)
        .bind(tenant_id.as_str())
        .bind(from_hour)
        .bind(to_hour)
        .fetch_all(pool)
        .await
}

/// `tenant, from hour, to hour (exclusive)`: usage per hour and node, as usage rows whose
/// credential is the node id and whose user is its region.
pub(super) static NODE_HOURS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT tenant_id, node_id AS credential_id, region AS user_id, hour, {}
         FROM usage_node_hourly WHERE tenant_id = $1 AND hour >= $2 AND hour < $3
         ORDER BY hour, node_id",
        COUNTER_COLUMNS.join(", ")
    )
});

/// The allocation log's columns, in [`bind_allocation`] order.
const ALLOCATION_COLUMNS: [&str; 16] = [
    "id",
    "tenant_id",
    "credential_id",
    "user_id",
    "username",
    "client",
    "transport",
    "relay",
    "started_at",
    "ended_at",
    "c2s_bytes",
    "s2p_bytes",
    "p2s_bytes",
    "s2c_bytes",
    "peers",
    "node_id",
];

/// Inserts allocation records or completes them (end, bytes, peers), [`ROWS_PER_STATEMENT`]
/// at a time; of records with one id, the last counts. Run inside the caller's transaction.
pub(super) async fn write_allocations<DB>(
    conn: &mut DB::Connection,
    records: &[AllocationRecord],
    style: Placeholder,
) -> Result<(), sqlx::Error>
where
    DB: Database,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
{
    let by_id: BTreeMap<&str, &AllocationRecord> =
        records.iter().map(|r| (r.id.as_str(), r)).collect();
    let records: Vec<&AllocationRecord> = by_id.into_values().collect();
    for chunk in records.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO allocation_log ({}) VALUES {} ON CONFLICT (id) DO UPDATE SET
                 ended_at = excluded.ended_at,
                 c2s_bytes = excluded.c2s_bytes, s2p_bytes = excluded.s2p_bytes,
                 p2s_bytes = excluded.p2s_bytes, s2c_bytes = excluded.s2c_bytes,
                 peers = excluded.peers",
            ALLOCATION_COLUMNS.join(", "),
            placeholders(chunk.len(), ALLOCATION_COLUMNS.len(), style)
        );
        let mut q = sqlx::query::<DB>(&sql);
        for r in chunk {
            q = bind_allocation(q, r);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// `tenant, from hour, to hour (exclusive)`: the tenant's totals per hour, as usage rows with
/// empty credential and user.
pub(super) static TENANT_HOURS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT tenant_id, '' AS credential_id, '' AS user_id, hour, {}
         FROM usage_tenant_hourly WHERE tenant_id = $1 AND hour >= $2 AND hour < $3
         ORDER BY hour",
        COUNTER_COLUMNS.join(", ")
    )
});

/// `tenant, first month, last month (inclusive)`: totals per credential and user over whole
/// months, with the stored credential's username and label when there is one.
pub(super) static KEY_TOTALS_MONTHS: LazyLock<String> =
    LazyLock::new(|| key_totals("usage_monthly", "month"));

/// `tenant, from hour, to hour (exclusive)`: the same from the hourly rows (part months).
pub(super) static KEY_TOTALS_HOURS: LazyLock<String> =
    LazyLock::new(|| key_totals("usage_hourly", "hour"));

/// The query for totals by key over `[from_hour, to_hour)` and its two bounds: whole UTC
/// months read the monthly rollup (bounds: the first and the last month), anything else the
/// hourly rows.
pub(super) fn key_totals_query(from_hour: i64, to_hour: i64) -> (&'static str, i64, i64) {
    let whole_months = from_hour < to_hour
        && month_start(from_hour) == from_hour
        && month_start(to_hour) == to_hour;
    if whole_months {
        (&KEY_TOTALS_MONTHS, from_hour, month_start(to_hour - 1))
    } else {
        (&KEY_TOTALS_HOURS, from_hour, to_hour)
    }
}

fn key_totals(table: &str, time: &str) -> String {
    let upper = if time == "month" { "<=" } else { "<" };
    // Summed first (in the order of the table's key), named after: the join does not widen
    // the grouping. Only the billed total comes back: decoding is most of the cost here
    // (100,000 rows of ten counters took 0.83 s through the driver, their SQL 0.13 s).
    format!(
        "SELECT t.credential_id, t.user_id, c.username, c.label, t.bytes
         FROM (SELECT credential_id, user_id,
                      CAST(SUM(c2s_bytes + s2p_bytes + p2s_bytes + s2c_bytes) AS BIGINT) AS bytes
               FROM {table}
               WHERE tenant_id = $1 AND {time} >= $2 AND {time} {upper} $3
               GROUP BY credential_id, user_id) t
         LEFT JOIN credentials c ON c.id = t.credential_id
         ORDER BY t.credential_id, t.user_id"
    )
}

/// Binds the ten counters in [`COUNTER_COLUMNS`] order.
pub(super) fn bind_counters<'q, DB>(
    q: Query<'q, DB, <DB as Database>::Arguments<'q>>,
    c: &Counters,
) -> Query<'q, DB, <DB as Database>::Arguments<'q>>
where
    DB: Database,
    i64: Encode<'q, DB> + Type<DB>,
{
    q.bind(c.c2s_bytes)
        .bind(c.c2s_packets)
        .bind(c.s2p_bytes)
        .bind(c.s2p_packets)
        .bind(c.p2s_bytes)
        .bind(c.p2s_packets)
        .bind(c.s2c_bytes)
        .bind(c.s2c_packets)
        .bind(c.allocations)
        .bind(c.allocation_seconds)
}

/// Binds an allocation record in the order of `queries::UPSERT_ALLOCATION`.
pub(super) fn bind_allocation<'q, DB>(
    q: Query<'q, DB, <DB as Database>::Arguments<'q>>,
    r: &'q AllocationRecord,
) -> Query<'q, DB, <DB as Database>::Arguments<'q>>
where
    DB: Database,
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    &'q str: Encode<'q, DB> + Type<DB>,
{
    q.bind(r.id.as_str())
        .bind(r.tenant_id.as_str())
        .bind(r.credential_id.as_str())
        .bind(r.user_id.as_str())
        .bind(r.username.as_str())
        .bind(r.client.as_str())
        .bind(r.transport.as_str())
        .bind(r.relay.as_str())
        .bind(r.started_at)
        .bind(r.ended_at)
        .bind(r.c2s_bytes)
        .bind(r.s2p_bytes)
        .bind(r.p2s_bytes)
        .bind(r.s2c_bytes)
        .bind(r.peers)
        .bind(r.node_id.as_str())
}

/// A batch of deltas folded by key into hourly and rollup rows, in key order (so that
/// concurrent writers lock rows in the same order).
#[derive(Debug, Default, PartialEq, Eq)]
struct Folded<'a> {
    /// `(tenant, credential, user, hour)`.
    hours: BTreeMap<(&'a str, &'a str, &'a str, i64), Counters>,
    /// `(tenant, hour)`.
    tenant_hours: BTreeMap<(&'a str, i64), Counters>,
    /// `(tenant, month, credential, user)`.
    months: BTreeMap<(&'a str, i64, &'a str, &'a str), Counters>,
}

impl<'a> Folded<'a> {
    fn of(deltas: &'a [UsageDelta]) -> Self {
        let mut r = Self::default();
        for d in deltas {
            let t = d.tenant_id.as_str();
            r.hours
                .entry((t, &d.credential_id, &d.user_id, d.hour))
                .or_default()
                .add(&d.counters);
            r.tenant_hours
                .entry((t, d.hour))
                .or_default()
                .add(&d.counters);
            r.months
                .entry((t, month_start(d.hour), &d.credential_id, &d.user_id))
                .or_default()
                .add(&d.counters);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(t: &str, c: &str, u: &str, hour: i64, bytes: i64) -> UsageDelta {
        UsageDelta {
            tenant_id: t.into(),
            credential_id: c.into(),
            user_id: u.into(),
            hour,
            counters: Counters {
                c2s_bytes: bytes,
                ..Default::default()
            },
        }
    }

    #[test]
    fn deltas_fold_into_tenant_hours_and_months() {
        // 2026-01-31 23:00 and 2026-02-01 00:00 UTC: one hour apart, in two months.
        let jan_last = 1_769_900_400 / 3600;
        let deltas = [
            delta("t1", "c1", "", jan_last, 1),
            delta("t1", "c2", "u", jan_last, 2),
            delta("t1", "c1", "", jan_last + 1, 4),
            delta("t2", "c1", "", jan_last, 8),
            delta("t2", "c1", "", jan_last, 16),
        ];
        let r = Folded::of(&deltas);
        let bytes = |c: &Counters| c.c2s_bytes;
        let rows: Vec<_> = r.hours.iter().map(|(k, c)| (*k, bytes(c))).collect();
        assert_eq!(
            rows,
            vec![
                (("t1", "c1", "", jan_last), 1),
                (("t1", "c1", "", jan_last + 1), 4),
                (("t1", "c2", "u", jan_last), 2),
                (("t2", "c1", "", jan_last), 24)
            ],
            "one row per key: a statement may not touch a row twice"
        );
        let hours: Vec<_> = r.tenant_hours.iter().map(|(k, c)| (*k, bytes(c))).collect();
        assert_eq!(
            hours,
            vec![
                (("t1", jan_last), 3),
                (("t1", jan_last + 1), 4),
                (("t2", jan_last), 24)
            ]
        );
        let jan = month_start(jan_last);
        let feb = jan_last + 1;
        assert_eq!(month_start(feb), feb, "Feb 1st 00:00 starts a month");
        let months: Vec<_> = r.months.iter().map(|(k, c)| (*k, bytes(c))).collect();
        assert_eq!(
            months,
            vec![
                (("t1", jan, "c1", ""), 1),
                (("t1", jan, "c2", "u"), 2),
                (("t1", feb, "c1", ""), 4),
                (("t2", jan, "c1", ""), 24)
            ]
        );
    }

    #[test]
    fn upserts_add_and_never_overwrite() {
        let s = add_counters(
            "usage_tenant_hourly",
            &["tenant_id", "hour"],
            2,
            Placeholder::Numbered,
        );
        assert!(s.starts_with(
            "INSERT INTO usage_tenant_hourly (tenant_id, hour, c2s_bytes, c2s_packets, "
        ));
        assert!(s.contains("VALUES ($1, $2, $3,"));
        assert!(s.contains("$12), ($13, $14,"));
        assert!(s.contains("$24) ON CONFLICT (tenant_id, hour) DO UPDATE SET"));
        assert!(s.contains("allocations = usage_tenant_hourly.allocations + excluded.allocations"));
        let q = add_counters(
            "usage_tenant_hourly",
            &["tenant_id", "hour"],
            2,
            Placeholder::Anonymous,
        );
        assert!(q.contains("VALUES (?, ?, ?,"));
        assert_eq!(q.matches('?').count(), 24);
    }
}
