//! The node registry's SQL, written once for both backends (generic over [`sqlx::Database`]).

use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, Type};

use crate::nodes::{NodeRecord, NodeRow};

const COLUMNS: &str = "id, name, region, latitude, longitude, version, urls, addresses, \
     tls_addresses, tls_domain, started_at, heartbeat_ms, interval_ms, draining, allocations, \
     capacity, relayed_bps, cpu_percent, signal_url";

/// Inserts or replaces the node's row.
pub(super) async fn put_node<DB>(pool: &Pool<DB>, n: &NodeRecord) -> Result<(), sqlx::Error>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> Option<f64>: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
{
    let json = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    let sql = format!(
        "INSERT INTO nodes ({COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
         ON CONFLICT (id) DO UPDATE SET
            name = excluded.name, region = excluded.region, latitude = excluded.latitude,
            longitude = excluded.longitude, version = excluded.version, urls = excluded.urls,
            addresses = excluded.addresses, tls_addresses = excluded.tls_addresses,
            tls_domain = excluded.tls_domain, heartbeat_ms = excluded.heartbeat_ms,
            interval_ms = excluded.interval_ms, draining = excluded.draining,
            allocations = excluded.allocations, capacity = excluded.capacity,
            relayed_bps = excluded.relayed_bps, cpu_percent = excluded.cpu_percent,
            signal_url = excluded.signal_url"
    );
    sqlx::query::<DB>(&sql)
        .bind(n.id.as_str())
        .bind(n.name.as_str())
        .bind(n.region.as_str())
        .bind(n.latitude)
        .bind(n.longitude)
        .bind(n.version.as_str())
        .bind(json(&n.urls))
        .bind(json(&n.addresses))
        .bind(json(&n.tls_addresses))
        .bind(n.tls_domain.as_deref())
        .bind(n.started_at)
        .bind(n.heartbeat_ms)
        .bind(n.interval_ms)
        .bind(n.draining)
        .bind(n.allocations)
        .bind(n.capacity)
        .bind(n.relayed_bps)
        .bind(n.cpu_percent)
        .bind(n.signal_url.as_deref())
        .execute(pool)
        .await?;
    Ok(())
}

/// Every node, by region then id.
pub(super) async fn list_nodes<DB>(pool: &Pool<DB>) -> Result<Vec<NodeRecord>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> NodeRow: FromRow<'r, DB::Row>,
{
    let sql = format!("SELECT {COLUMNS} FROM nodes ORDER BY region, id");
    let rows = sqlx::query_as::<DB, NodeRow>(&sql).fetch_all(pool).await?;
    Ok(rows.into_iter().map(NodeRecord::from).collect())
}

/// Removes one node (a clean shutdown) or, without `id`, every node silent since `before_ms`;
/// returns how many.
pub(super) async fn delete_nodes<DB>(
    pool: &Pool<DB>,
    id: Option<&str>,
    before_ms: i64,
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
    let gone: Vec<String> = match id {
        Some(id) => {
            sqlx::query_scalar::<DB, String>("DELETE FROM nodes WHERE id = $1 RETURNING id")
                .bind(id)
                .fetch_all(pool)
                .await?
        }
        None => {
            // A node pruned silent never reported the end of its allocations (it crashed):
            // they ended by its last heartbeat at the latest. Ended first, then the rows
            // removed: interrupted between the two, the next prune ends nothing twice and
            // still removes them.
            sqlx::query::<DB>(
                "UPDATE allocation_log
                 SET ended_at = (SELECT CASE WHEN allocation_log.started_at > n.heartbeat_ms / 1000
                                        THEN allocation_log.started_at
                                        ELSE n.heartbeat_ms / 1000 END
                                 FROM nodes n WHERE n.id = allocation_log.node_id)
                 WHERE ended_at IS NULL
                   AND node_id IN (SELECT id FROM nodes WHERE heartbeat_ms < $1)",
            )
            .bind(before_ms)
            .execute(pool)
            .await?;
            sqlx::query_scalar::<DB, String>(
                "DELETE FROM nodes WHERE heartbeat_ms < $1 RETURNING id",
            )
            .bind(before_ms)
            .fetch_all(pool)
            .await?
        }
    };
    Ok(gone.len() as u64)
}

/// The fleet's shared key `name`: the stored one, or `fresh`, stored now, when there is none
/// (the first node to ask creates it; every later one reads the same bytes).
pub(super) async fn fleet_key<DB>(
    pool: &Pool<DB>,
    name: &str,
    fresh: &[u8],
    now: i64,
) -> Result<Vec<u8>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'r> Vec<u8>: sqlx::Decode<'r, DB> + Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    sqlx::query::<DB>(
        "INSERT INTO fleet_keys (name, key, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(fresh)
    .bind(now)
    .execute(pool)
    .await?;
    sqlx::query_scalar::<DB, Vec<u8>>("SELECT key FROM fleet_keys WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
}
