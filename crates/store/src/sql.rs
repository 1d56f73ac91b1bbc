//! The SQL shared by both backends, instantiated once per database by `store_impl!`.

use sqlx::Row;

use crate::{
    ApiKey, Credential, ListQuery, NewCredential, Page, Result, Store, StoreError, Tenant,
    UsageDelta, UsageRow,
};

const CREDENTIAL_COLUMNS: &str =
    "id, tenant_id, username, key_md5, key_sha256, label, enabled, expires_at, created_at";

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

macro_rules! store_impl {
    ($store:ident, $db:ty) => {
        impl $store {
            fn tenant(r: &<$db as sqlx::Database>::Row) -> Result<Tenant> {
                Ok(Tenant {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                })
            }

            fn api_key(r: &<$db as sqlx::Database>::Row) -> Result<ApiKey> {
                Ok(ApiKey {
                    id: r.try_get("id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    prefix: r.try_get("prefix")?,
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                    revoked: r.try_get("revoked")?,
                })
            }

            fn credential(r: &<$db as sqlx::Database>::Row) -> Result<Credential> {
                Ok(Credential {
                    id: r.try_get("id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    username: r.try_get("username")?,
                    key_md5: r.try_get("key_md5")?,
                    key_sha256: r.try_get("key_sha256")?,
                    label: r.try_get("label")?,
                    enabled: r.try_get("enabled")?,
                    expires_at: r.try_get("expires_at")?,
                    created_at: r.try_get("created_at")?,
                })
            }
        }

        impl Store for $store {
            async fn create_tenant(&self, name: &str, now: i64) -> Result<Tenant> {
                let t = Tenant { id: crate::new_id("ten"), name: name.to_string(), created_at: now };
                sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
                    .bind(&t.id)
                    .bind(&t.name)
                    .bind(t.created_at)
                    .execute(&self.pool)
                    .await?;
                Ok(t)
            }

            async fn get_tenant(&self, id: &str) -> Result<Tenant> {
                let r = sqlx::query("SELECT id, name, created_at FROM tenants WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                Self::tenant(&r)
            }

            async fn list_tenants(&self) -> Result<Vec<Tenant>> {
                let rows = sqlx::query("SELECT id, name, created_at FROM tenants ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(Self::tenant).collect()
            }

            async fn create_api_key(&self, tenant_id: Option<&str>, key_hash: &[u8], prefix: &str, now: i64, expires_at: Option<i64>) -> Result<ApiKey> {
                let k = ApiKey {
                    id: crate::new_id("key"),
                    tenant_id: tenant_id.map(str::to_string),
                    prefix: prefix.to_string(),
                    created_at: now,
                    expires_at,
                    revoked: false,
                };
                sqlx::query("INSERT INTO api_keys (id, tenant_id, key_hash, prefix, created_at, expires_at, revoked) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                    .bind(&k.id)
                    .bind(&k.tenant_id)
                    .bind(key_hash)
                    .bind(&k.prefix)
                    .bind(k.created_at)
                    .bind(k.expires_at)
                    .bind(false)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| if is_unique_violation(&e) { StoreError::Conflict("api key") } else { e.into() })?;
                Ok(k)
            }

            async fn api_key_by_hash(&self, key_hash: &[u8]) -> Result<Option<ApiKey>> {
                let r = sqlx::query("SELECT id, tenant_id, prefix, created_at, expires_at, revoked FROM api_keys WHERE key_hash = $1")
                    .bind(key_hash)
                    .fetch_optional(&self.pool)
                    .await?;
                r.as_ref().map(Self::api_key).transpose()
            }

            async fn revoke_api_key(&self, id: &str) -> Result<()> {
                let n = sqlx::query("UPDATE api_keys SET revoked = $1 WHERE id = $2")
                    .bind(true)
                    .bind(id)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn create_credential(&self, c: &NewCredential<'_>, now: i64) -> Result<Credential> {
                let cred = Credential {
                    id: crate::new_id("cred"),
                    tenant_id: c.tenant_id.to_string(),
                    username: c.username.to_string(),
                    key_md5: c.key_md5.to_vec(),
                    key_sha256: c.key_sha256.to_vec(),
                    label: c.label.map(str::to_string),
                    enabled: true,
                    expires_at: c.expires_at,
                    created_at: now,
                };
                sqlx::query(
                    "INSERT INTO credentials (id, tenant_id, username, key_md5, key_sha256, label, enabled, expires_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&cred.id)
                .bind(&cred.tenant_id)
                .bind(&cred.username)
                .bind(&cred.key_md5)
                .bind(&cred.key_sha256)
                .bind(&cred.label)
                .bind(true)
                .bind(cred.expires_at)
                .bind(cred.created_at)
                .execute(&self.pool)
                .await
                .map_err(|e| if is_unique_violation(&e) { StoreError::Conflict("credential username") } else { e.into() })?;
                Ok(cred)
            }

            async fn get_credential(&self, tenant_id: &str, id: &str) -> Result<Credential> {
                let sql = format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE id = $1 AND tenant_id = $2");
                let r = sqlx::query(&sql)
                    .bind(id)
                    .bind(tenant_id)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                Self::credential(&r)
            }

            async fn credential_by_username(&self, username: &str) -> Result<Option<Credential>> {
                let sql = format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE username = $1");
                let r = sqlx::query(&sql).bind(username).fetch_optional(&self.pool).await?;
                r.as_ref().map(Self::credential).transpose()
            }

            async fn list_credentials(&self, tenant_id: &str, q: &ListQuery<'_>, now: i64) -> Result<Page<Credential>> {
                let limit = q.limit.clamp(1, 1000) as i64;
                let sql = format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE tenant_id = $1 \
                     AND ($2 IS NULL OR label = $2) \
                     AND ($3 OR expires_at IS NULL OR expires_at > $4) \
                     AND ($5 IS NULL OR id > $5) \
                     ORDER BY id LIMIT $6"
                );
                let rows = sqlx::query(&sql)
                    .bind(tenant_id)
                    .bind(q.label)
                    .bind(q.include_expired)
                    .bind(now)
                    .bind(q.cursor)
                    .bind(limit + 1)
                    .fetch_all(&self.pool)
                    .await?;
                let mut items = rows.iter().map(Self::credential).collect::<Result<Vec<_>>>()?;
                let next_cursor = if items.len() as i64 > limit {
                    items.truncate(limit as usize);
                    items.last().map(|c| c.id.clone())
                } else {
                    None
                };
                Ok(Page { items, next_cursor })
            }

            async fn set_credential_enabled(&self, tenant_id: &str, id: &str, enabled: bool) -> Result<()> {
                let n = sqlx::query("UPDATE credentials SET enabled = $1 WHERE id = $2 AND tenant_id = $3")
                    .bind(enabled)
                    .bind(id)
                    .bind(tenant_id)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn delete_credential(&self, tenant_id: &str, id: &str) -> Result<()> {
                let n = sqlx::query("DELETE FROM credentials WHERE id = $1 AND tenant_id = $2")
                    .bind(id)
                    .bind(tenant_id)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn delete_credentials_by_label(&self, tenant_id: &str, label: &str) -> Result<u64> {
                Ok(sqlx::query("DELETE FROM credentials WHERE tenant_id = $1 AND label = $2")
                    .bind(tenant_id)
                    .bind(label)
                    .execute(&self.pool)
                    .await?
                    .rows_affected())
            }

            async fn add_usage(&self, deltas: &[UsageDelta]) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                for d in deltas {
                    sqlx::query(
                        "INSERT INTO usage_hourly (tenant_id, credential_id, hour, bytes_in, bytes_out, packets_in, packets_out, allocations) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                         ON CONFLICT (tenant_id, credential_id, hour) DO UPDATE SET \
                         bytes_in = usage_hourly.bytes_in + excluded.bytes_in, \
                         bytes_out = usage_hourly.bytes_out + excluded.bytes_out, \
                         packets_in = usage_hourly.packets_in + excluded.packets_in, \
                         packets_out = usage_hourly.packets_out + excluded.packets_out, \
                         allocations = usage_hourly.allocations + excluded.allocations",
                    )
                    .bind(&d.tenant_id)
                    .bind(&d.credential_id)
                    .bind(d.hour)
                    .bind(d.bytes_in)
                    .bind(d.bytes_out)
                    .bind(d.packets_in)
                    .bind(d.packets_out)
                    .bind(d.allocations)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn usage(&self, tenant_id: &str, from_hour: i64, to_hour: i64) -> Result<Vec<UsageRow>> {
                let rows = sqlx::query(
                    "SELECT tenant_id, credential_id, hour, bytes_in, bytes_out, packets_in, packets_out, allocations \
                     FROM usage_hourly WHERE tenant_id = $1 AND hour >= $2 AND hour < $3 ORDER BY hour, credential_id",
                )
                .bind(tenant_id)
                .bind(from_hour)
                .bind(to_hour)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(UsageRow {
                            tenant_id: r.try_get("tenant_id")?,
                            credential_id: r.try_get("credential_id")?,
                            hour: r.try_get("hour")?,
                            bytes_in: r.try_get("bytes_in")?,
                            bytes_out: r.try_get("bytes_out")?,
                            packets_in: r.try_get("packets_in")?,
                            packets_out: r.try_get("packets_out")?,
                            allocations: r.try_get("allocations")?,
                        })
                    })
                    .collect()
            }
        }
    };
}

/// The embedded default: one SQLite file (WAL mode, foreign keys on).
pub struct SqliteStore {
    pool: sqlx::SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://PATH`) and migrates it.
    pub async fn connect(url: &str) -> Result<Self> {
        use std::str::FromStr;
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .foreign_keys(true);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore { pool })
    }
}

/// PostgreSQL, shared by many nodes.
pub struct PgStore {
    pool: sqlx::PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://...`) and migrates the database.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(10)
            .connect(url)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(PgStore { pool })
    }
}

store_impl!(SqliteStore, sqlx::Sqlite);
store_impl!(PgStore, sqlx::Postgres);
