//! The SQL shared by both backends, instantiated once per database by `store_impl!`.

use sqlx::Row;

use crate::*;

const CREDENTIAL_COLUMNS: &str =
    "id, tenant_id, username, key_md5, key_sha256, label, tags, enabled, expires_at, created_at";
const KEY_COLUMNS: &str =
    "id, tenant_id, kind, credential_id, allowed_origins, prefix, created_at, expires_at, revoked";
const USAGE_COLUMNS: &str = "tenant_id, credential_id, user_id, hour, c2s_bytes, c2s_packets, \
     s2p_bytes, s2p_packets, p2s_bytes, p2s_packets, s2c_bytes, s2c_packets, allocations, \
     allocation_seconds";
const ALLOCATION_COLUMNS: &str = "id, tenant_id, credential_id, user_id, username, client, \
     transport, relay, started_at, ended_at, c2s_bytes, s2p_bytes, p2s_bytes, s2c_bytes, peers";
const QUOTA_COLUMNS: &str = "tenant_id, scope, period, bytes_per_period, max_allocations, \
     max_bitrate_bps, throttle_bitrate_bps, thresholds";
const ALERT_COLUMNS: &str =
    "id, tenant_id, scope, period_start, percent, action, bytes_used, bytes_quota, at";

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Whether a unique violation is the one on (username, long-term key) of credentials.
fn on_long_term_key(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d)
        if d.constraint().is_some_and(|c| c.contains("long_term_key"))
            || d.message().contains("key_sha256"))
}

fn conflict(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(what)
        } else {
            e.into()
        }
    }
}

/// Lists are stored one item per line (items are validated to hold no newline).
fn join_lines(v: &[String]) -> String {
    v.join("\n")
}

fn split_lines(s: Option<String>) -> Vec<String> {
    s.map(|s| {
        s.split('\n')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

fn found(n: u64) -> Result<()> {
    if n == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
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
                let kind: String = r.try_get("kind")?;
                Ok(ApiKey {
                    id: r.try_get("id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    kind: KeyKind::parse(&kind).ok_or(StoreError::Corrupt("api_keys.kind"))?,
                    credential_id: r.try_get("credential_id")?,
                    allowed_origins: split_lines(r.try_get("allowed_origins")?),
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
                    tags: split_lines(r.try_get("tags")?),
                    enabled: r.try_get("enabled")?,
                    expires_at: r.try_get("expires_at")?,
                    created_at: r.try_get("created_at")?,
                })
            }

            fn usage_row(r: &<$db as sqlx::Database>::Row) -> Result<UsageRow> {
                Ok(UsageRow {
                    tenant_id: r.try_get("tenant_id")?,
                    credential_id: r.try_get("credential_id")?,
                    user_id: r.try_get("user_id")?,
                    hour: r.try_get("hour")?,
                    counters: Counters {
                        c2s_bytes: r.try_get("c2s_bytes")?,
                        c2s_packets: r.try_get("c2s_packets")?,
                        s2p_bytes: r.try_get("s2p_bytes")?,
                        s2p_packets: r.try_get("s2p_packets")?,
                        p2s_bytes: r.try_get("p2s_bytes")?,
                        p2s_packets: r.try_get("p2s_packets")?,
                        s2c_bytes: r.try_get("s2c_bytes")?,
                        s2c_packets: r.try_get("s2c_packets")?,
                        allocations: r.try_get("allocations")?,
                        allocation_seconds: r.try_get("allocation_seconds")?,
                    },
                })
            }

            fn allocation(r: &<$db as sqlx::Database>::Row) -> Result<AllocationRecord> {
                Ok(AllocationRecord {
                    id: r.try_get("id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    credential_id: r.try_get("credential_id")?,
                    user_id: r.try_get("user_id")?,
                    username: r.try_get("username")?,
                    client: r.try_get("client")?,
                    transport: r.try_get("transport")?,
                    relay: r.try_get("relay")?,
                    started_at: r.try_get("started_at")?,
                    ended_at: r.try_get("ended_at")?,
                    c2s_bytes: r.try_get("c2s_bytes")?,
                    s2p_bytes: r.try_get("s2p_bytes")?,
                    p2s_bytes: r.try_get("p2s_bytes")?,
                    s2c_bytes: r.try_get("s2c_bytes")?,
                    peers: r.try_get("peers")?,
                })
            }

            fn quota(r: &<$db as sqlx::Database>::Row) -> Result<Quota> {
                Ok(Quota {
                    tenant_id: r.try_get("tenant_id")?,
                    scope: r.try_get("scope")?,
                    period: r.try_get("period")?,
                    bytes_per_period: r.try_get("bytes_per_period")?,
                    max_allocations: r.try_get("max_allocations")?,
                    max_bitrate_bps: r.try_get("max_bitrate_bps")?,
                    throttle_bitrate_bps: r.try_get("throttle_bitrate_bps")?,
                    thresholds: r.try_get("thresholds")?,
                })
            }

            fn alert(r: &<$db as sqlx::Database>::Row) -> Result<AlertEvent> {
                Ok(AlertEvent {
                    id: r.try_get("id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    scope: r.try_get("scope")?,
                    period_start: r.try_get("period_start")?,
                    percent: r.try_get("percent")?,
                    action: r.try_get("action")?,
                    bytes_used: r.try_get("bytes_used")?,
                    bytes_quota: r.try_get("bytes_quota")?,
                    at: r.try_get("at")?,
                })
            }
        }

        impl Store for $store {
            async fn create_tenant(&self, name: &str, now: i64) -> Result<Tenant> {
                self.writable()?;
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

            async fn delete_tenant(&self, id: &str) -> Result<()> {
                self.writable()?;
                let n = sqlx::query("DELETE FROM tenants WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                found(n)
            }

            async fn create_api_key(&self, k: &NewApiKey<'_>, now: i64) -> Result<ApiKey> {
                self.writable()?;
                let key = ApiKey {
                    id: crate::new_id("key"),
                    tenant_id: k.tenant_id.map(str::to_string),
                    kind: k.kind,
                    credential_id: k.credential_id.map(str::to_string),
                    allowed_origins: k.allowed_origins.to_vec(),
                    prefix: k.prefix.to_string(),
                    created_at: now,
                    expires_at: k.expires_at,
                    revoked: false,
                };
                sqlx::query(&format!("INSERT INTO api_keys ({KEY_COLUMNS}, key_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"))
                    .bind(&key.id)
                    .bind(&key.tenant_id)
                    .bind(key.kind.as_str())
                    .bind(&key.credential_id)
                    .bind(join_lines(&key.allowed_origins))
                    .bind(&key.prefix)
                    .bind(key.created_at)
                    .bind(key.expires_at)
                    .bind(false)
                    .bind(k.key_hash)
                    .execute(&self.pool)
                    .await
                    .map_err(conflict("api key"))?;
                Ok(key)
            }

            async fn api_key_by_hash(&self, key_hash: &[u8]) -> Result<Option<ApiKey>> {
                let r = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"))
                    .bind(key_hash)
                    .fetch_optional(&self.pool)
                    .await?;
                r.as_ref().map(Self::api_key).transpose()
            }

            async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKey>> {
                let rows = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id"))
                    .bind(tenant_id)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(Self::api_key).collect()
            }

            async fn revoke_api_key(&self, tenant_id: Option<&str>, id: &str) -> Result<()> {
                self.writable()?;
                let n = sqlx::query("UPDATE api_keys SET revoked = $1 WHERE id = $2 AND ($3 IS NULL OR tenant_id = $3)")
                    .bind(true)
                    .bind(id)
                    .bind(tenant_id)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                found(n)
            }

            async fn has_admin_key(&self) -> Result<bool> {
                let r = sqlx::query("SELECT id FROM api_keys WHERE kind = $1 LIMIT 1")
                    .bind(KeyKind::Admin.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(r.is_some())
            }

            async fn expire_api_keys(&self, tenant_id: &str, kind: KeyKind, at: i64) -> Result<u64> {
                self.writable()?;
                Ok(sqlx::query(
                    "UPDATE api_keys SET expires_at = $1 WHERE tenant_id = $2 AND kind = $3 \
                     AND revoked = $4 AND (expires_at IS NULL OR expires_at > $1)",
                )
                .bind(at)
                .bind(tenant_id)
                .bind(kind.as_str())
                .bind(false)
                .execute(&self.pool)
                .await?
                .rows_affected())
            }

            async fn create_credential(&self, c: &NewCredential<'_>, now: i64) -> Result<Credential> {
                self.writable()?;
                let cred = Credential {
                    id: crate::new_id("cred"),
                    tenant_id: c.tenant_id.to_string(),
                    username: c.username.to_string(),
                    key_md5: c.key_md5.to_vec(),
                    key_sha256: c.key_sha256.to_vec(),
                    label: c.label.map(str::to_string),
                    tags: c.tags.to_vec(),
                    enabled: true,
                    expires_at: c.expires_at,
                    created_at: now,
                };
                let r = sqlx::query(&format!(
                    "INSERT INTO credentials ({CREDENTIAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                ))
                .bind(&cred.id)
                .bind(&cred.tenant_id)
                .bind(&cred.username)
                .bind(&cred.key_md5)
                .bind(&cred.key_sha256)
                .bind(&cred.label)
                .bind(join_lines(&cred.tags))
                .bind(true)
                .bind(cred.expires_at)
                .bind(cred.created_at)
                .execute(&self.pool)
                .await;
                match r {
                    Ok(_) => Ok(cred),
                    Err(e) if is_unique_violation(&e) => {
                        // Which rule: the name within this tenant, or the same name and key as
                        // a credential elsewhere (whose tenant must not be revealed)?
                        if self.credential_by_username(c.tenant_id, c.username).await?.is_some() {
                            Err(StoreError::Conflict("credential username"))
                        } else if on_long_term_key(&e) {
                            Err(StoreError::KeyCollision)
                        } else {
                            Err(StoreError::Conflict("credential"))
                        }
                    }
                    Err(e) => Err(e.into()),
                }
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

            async fn credential_by_username(&self, tenant_id: &str, username: &str) -> Result<Option<Credential>> {
                let sql = format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE tenant_id = $1 AND username = $2");
                let r = sqlx::query(&sql)
                    .bind(tenant_id)
                    .bind(username)
                    .fetch_optional(&self.pool)
                    .await?;
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

            async fn all_credentials(&self) -> Result<Vec<Credential>> {
                let rows = sqlx::query(&format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials"))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(Self::credential).collect()
            }

            async fn set_credential_enabled(&self, tenant_id: &str, id: &str, enabled: bool) -> Result<()> {
                self.writable()?;
                let n = sqlx::query("UPDATE credentials SET enabled = $1 WHERE id = $2 AND tenant_id = $3")
                    .bind(enabled)
                    .bind(id)
                    .bind(tenant_id)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                found(n)
            }

            async fn delete_credential(&self, tenant_id: &str, id: &str) -> Result<()> {
                self.writable()?;
                let n = sqlx::query("DELETE FROM credentials WHERE id = $1 AND tenant_id = $2")
                    .bind(id)
                    .bind(tenant_id)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                found(n)
            }

            async fn delete_credentials_by_label(&self, tenant_id: &str, label: &str) -> Result<Vec<Credential>> {
                self.writable()?;
                let rows = sqlx::query(&format!(
                    "DELETE FROM credentials WHERE tenant_id = $1 AND label = $2 RETURNING {CREDENTIAL_COLUMNS}"
                ))
                .bind(tenant_id)
                .bind(label)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::credential).collect()
            }

            async fn add_tenant_secret(&self, tenant_id: &str, secret: &[u8], now: i64) -> Result<TenantSecret> {
                self.writable()?;
                let s = TenantSecret {
                    id: crate::new_id("sec"),
                    tenant_id: tenant_id.to_string(),
                    secret: secret.to_vec(),
                    created_at: now,
                    expires_at: None,
                };
                sqlx::query("INSERT INTO tenant_secrets (id, tenant_id, secret, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(&s.id)
                    .bind(&s.tenant_id)
                    .bind(&s.secret)
                    .bind(s.created_at)
                    .bind(s.expires_at)
                    .execute(&self.pool)
                    .await?;
                Ok(s)
            }

            async fn expire_tenant_secrets(&self, tenant_id: &str, at: i64) -> Result<u64> {
                self.writable()?;
                Ok(sqlx::query(
                    "UPDATE tenant_secrets SET expires_at = $1 WHERE tenant_id = $2 AND (expires_at IS NULL OR expires_at > $1)",
                )
                .bind(at)
                .bind(tenant_id)
                .execute(&self.pool)
                .await?
                .rows_affected())
            }

            async fn live_tenant_secrets(&self, now: i64) -> Result<Vec<TenantSecret>> {
                let rows = sqlx::query(
                    "SELECT id, tenant_id, secret, created_at, expires_at FROM tenant_secrets \
                     WHERE expires_at IS NULL OR expires_at > $1 ORDER BY created_at DESC, id",
                )
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(TenantSecret {
                            id: r.try_get("id")?,
                            tenant_id: r.try_get("tenant_id")?,
                            secret: r.try_get("secret")?,
                            created_at: r.try_get("created_at")?,
                            expires_at: r.try_get("expires_at")?,
                        })
                    })
                    .collect()
            }

            async fn add_revocation(&self, r: &Revocation) -> Result<()> {
                self.writable()?;
                sqlx::query(
                    "INSERT INTO revocations (tenant_id, kind, value, created_at, expires_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (tenant_id, kind, value) DO UPDATE SET expires_at = excluded.expires_at",
                )
                .bind(&r.tenant_id)
                .bind(&r.kind)
                .bind(&r.value)
                .bind(r.created_at)
                .bind(r.expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn live_revocations(&self, tenant_id: Option<&str>, now: i64) -> Result<Vec<Revocation>> {
                let rows = sqlx::query(
                    "SELECT tenant_id, kind, value, created_at, expires_at FROM revocations \
                     WHERE expires_at > $1 AND ($2 IS NULL OR tenant_id = $2) ORDER BY created_at, value",
                )
                .bind(now)
                .bind(tenant_id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(Revocation {
                            tenant_id: r.try_get("tenant_id")?,
                            kind: r.try_get("kind")?,
                            value: r.try_get("value")?,
                            created_at: r.try_get("created_at")?,
                            expires_at: r.try_get("expires_at")?,
                        })
                    })
                    .collect()
            }

            async fn set_user_tags(&self, tenant_id: &str, user_id: &str, tags: &[String]) -> Result<()> {
                self.writable()?;
                sqlx::query(
                    "INSERT INTO user_tags (tenant_id, user_id, tags) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant_id, user_id) DO UPDATE SET tags = excluded.tags",
                )
                .bind(tenant_id)
                .bind(user_id)
                .bind(join_lines(tags))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn add_disconnect(&self, d: &DisconnectRequest) -> Result<i64> {
                self.writable()?;
                let r = sqlx::query(
                    "INSERT INTO disconnect_requests (node, kind, tenant_id, value, at) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                )
                .bind(&d.node)
                .bind(&d.kind)
                .bind(&d.tenant_id)
                .bind(&d.value)
                .bind(d.at)
                .fetch_one(&self.pool)
                .await?;
                Ok(r.try_get("id")?)
            }

            async fn recent_disconnects(&self, since: i64) -> Result<Vec<DisconnectRequest>> {
                let rows = sqlx::query(
                    "SELECT id, node, kind, tenant_id, value, at FROM disconnect_requests \
                     WHERE at >= $1 ORDER BY id LIMIT 10000",
                )
                .bind(since)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(DisconnectRequest {
                            id: r.try_get("id")?,
                            node: r.try_get("node")?,
                            kind: r.try_get("kind")?,
                            tenant_id: r.try_get("tenant_id")?,
                            value: r.try_get("value")?,
                            at: r.try_get("at")?,
                        })
                    })
                    .collect()
            }

            async fn prune_disconnects(&self, before: i64) -> Result<u64> {
                self.writable()?;
                Ok(sqlx::query("DELETE FROM disconnect_requests WHERE at < $1")
                    .bind(before)
                    .execute(&self.pool)
                    .await?
                    .rows_affected())
            }

            async fn user_tags(&self, tenant_id: &str) -> Result<Vec<(String, Vec<String>)>> {
                let rows = sqlx::query("SELECT user_id, tags FROM user_tags WHERE tenant_id = $1")
                    .bind(tenant_id)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get("user_id")?, split_lines(r.try_get("tags")?))))
                    .collect()
            }

            async fn add_usage(&self, deltas: &[UsageDelta]) -> Result<()> {
                self.writable()?;
                let mut tx = self.pool.begin().await?;
                for d in deltas {
                    let c = &d.counters;
                    sqlx::query(&format!(
                        "INSERT INTO usage_hourly ({USAGE_COLUMNS}) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                         ON CONFLICT (tenant_id, credential_id, user_id, hour) DO UPDATE SET \
                         c2s_bytes = usage_hourly.c2s_bytes + excluded.c2s_bytes, \
                         c2s_packets = usage_hourly.c2s_packets + excluded.c2s_packets, \
                         s2p_bytes = usage_hourly.s2p_bytes + excluded.s2p_bytes, \
                         s2p_packets = usage_hourly.s2p_packets + excluded.s2p_packets, \
                         p2s_bytes = usage_hourly.p2s_bytes + excluded.p2s_bytes, \
                         p2s_packets = usage_hourly.p2s_packets + excluded.p2s_packets, \
                         s2c_bytes = usage_hourly.s2c_bytes + excluded.s2c_bytes, \
                         s2c_packets = usage_hourly.s2c_packets + excluded.s2c_packets, \
                         allocations = usage_hourly.allocations + excluded.allocations, \
                         allocation_seconds = usage_hourly.allocation_seconds + excluded.allocation_seconds"
                    ))
                    .bind(&d.tenant_id)
                    .bind(&d.credential_id)
                    .bind(&d.user_id)
                    .bind(d.hour)
                    .bind(c.c2s_bytes)
                    .bind(c.c2s_packets)
                    .bind(c.s2p_bytes)
                    .bind(c.s2p_packets)
                    .bind(c.p2s_bytes)
                    .bind(c.p2s_packets)
                    .bind(c.s2c_bytes)
                    .bind(c.s2c_packets)
                    .bind(c.allocations)
                    .bind(c.allocation_seconds)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn usage(&self, tenant_id: &str, from_hour: i64, to_hour: i64) -> Result<Vec<UsageRow>> {
                let rows = sqlx::query(&format!(
                    "SELECT {USAGE_COLUMNS} FROM usage_hourly WHERE tenant_id = $1 AND hour >= $2 AND hour < $3 \
                     ORDER BY hour, credential_id, user_id"
                ))
                .bind(tenant_id)
                .bind(from_hour)
                .bind(to_hour)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::usage_row).collect()
            }

            async fn upsert_allocation(&self, r: &AllocationRecord) -> Result<()> {
                self.writable()?;
                sqlx::query(&format!(
                    "INSERT INTO allocation_log ({ALLOCATION_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                     ON CONFLICT (id) DO UPDATE SET ended_at = excluded.ended_at, \
                     c2s_bytes = excluded.c2s_bytes, s2p_bytes = excluded.s2p_bytes, \
                     p2s_bytes = excluded.p2s_bytes, s2c_bytes = excluded.s2c_bytes, peers = excluded.peers"
                ))
                .bind(&r.id)
                .bind(&r.tenant_id)
                .bind(&r.credential_id)
                .bind(&r.user_id)
                .bind(&r.username)
                .bind(&r.client)
                .bind(&r.transport)
                .bind(&r.relay)
                .bind(r.started_at)
                .bind(r.ended_at)
                .bind(r.c2s_bytes)
                .bind(r.s2p_bytes)
                .bind(r.p2s_bytes)
                .bind(r.s2c_bytes)
                .bind(r.peers)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn list_allocations(&self, tenant_id: &str, from: i64, to: i64, limit: u32) -> Result<Vec<AllocationRecord>> {
                let rows = sqlx::query(&format!(
                    "SELECT {ALLOCATION_COLUMNS} FROM allocation_log WHERE tenant_id = $1 AND started_at >= $2 \
                     AND started_at < $3 ORDER BY started_at, id LIMIT $4"
                ))
                .bind(tenant_id)
                .bind(from)
                .bind(to)
                .bind(limit.clamp(1, 100_000) as i64)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::allocation).collect()
            }

            async fn add_audit(&self, e: &AuditEntry) -> Result<()> {
                self.writable()?;
                sqlx::query("INSERT INTO audit_log (id, tenant_id, at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                    .bind(&e.id)
                    .bind(&e.tenant_id)
                    .bind(e.at)
                    .bind(&e.actor)
                    .bind(&e.action)
                    .bind(&e.target)
                    .bind(&e.detail)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn list_audit(&self, tenant_id: Option<&str>, from: i64, to: i64, limit: u32) -> Result<Vec<AuditEntry>> {
                let rows = sqlx::query(
                    "SELECT id, tenant_id, at, actor, action, target, detail FROM audit_log \
                     WHERE (($1 IS NULL AND tenant_id IS NULL) OR tenant_id = $1) AND at >= $2 AND at < $3 \
                     ORDER BY at, id LIMIT $4",
                )
                .bind(tenant_id)
                .bind(from)
                .bind(to)
                .bind(limit.clamp(1, 100_000) as i64)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(AuditEntry {
                            id: r.try_get("id")?,
                            tenant_id: r.try_get("tenant_id")?,
                            at: r.try_get("at")?,
                            actor: r.try_get("actor")?,
                            action: r.try_get("action")?,
                            target: r.try_get("target")?,
                            detail: r.try_get("detail")?,
                        })
                    })
                    .collect()
            }

            async fn put_quota(&self, q: &Quota) -> Result<()> {
                self.writable()?;
                sqlx::query(&format!(
                    "INSERT INTO quotas ({QUOTA_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (tenant_id, scope) DO UPDATE SET period = excluded.period, \
                     bytes_per_period = excluded.bytes_per_period, max_allocations = excluded.max_allocations, \
                     max_bitrate_bps = excluded.max_bitrate_bps, throttle_bitrate_bps = excluded.throttle_bitrate_bps, \
                     thresholds = excluded.thresholds"
                ))
                .bind(&q.tenant_id)
                .bind(&q.scope)
                .bind(&q.period)
                .bind(q.bytes_per_period)
                .bind(q.max_allocations)
                .bind(q.max_bitrate_bps)
                .bind(q.throttle_bitrate_bps)
                .bind(&q.thresholds)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn delete_quota(&self, tenant_id: &str, scope: &str) -> Result<()> {
                self.writable()?;
                let n = sqlx::query("DELETE FROM quotas WHERE tenant_id = $1 AND scope = $2")
                    .bind(tenant_id)
                    .bind(scope)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                found(n)
            }

            async fn list_quotas(&self, tenant_id: Option<&str>) -> Result<Vec<Quota>> {
                let rows = sqlx::query(&format!(
                    "SELECT {QUOTA_COLUMNS} FROM quotas WHERE ($1 IS NULL OR tenant_id = $1) ORDER BY tenant_id, scope"
                ))
                .bind(tenant_id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::quota).collect()
            }

            async fn put_notifications(&self, n: &NotificationSettings) -> Result<()> {
                self.writable()?;
                sqlx::query(
                    "INSERT INTO notification_settings (tenant_id, webhook_url, webhook_secret, email_to) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (tenant_id) DO UPDATE SET webhook_url = excluded.webhook_url, \
                     webhook_secret = excluded.webhook_secret, email_to = excluded.email_to",
                )
                .bind(&n.tenant_id)
                .bind(&n.webhook_url)
                .bind(&n.webhook_secret)
                .bind(&n.email_to)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn get_notifications(&self, tenant_id: &str) -> Result<Option<NotificationSettings>> {
                let r = sqlx::query("SELECT tenant_id, webhook_url, webhook_secret, email_to FROM notification_settings WHERE tenant_id = $1")
                    .bind(tenant_id)
                    .fetch_optional(&self.pool)
                    .await?;
                r.map(|r| {
                    Ok(NotificationSettings {
                        tenant_id: r.try_get("tenant_id")?,
                        webhook_url: r.try_get("webhook_url")?,
                        webhook_secret: r.try_get("webhook_secret")?,
                        email_to: r.try_get("email_to")?,
                    })
                })
                .transpose()
            }

            async fn record_alert(&self, e: &AlertEvent) -> Result<bool> {
                self.writable()?;
                let n = sqlx::query(&format!(
                    "INSERT INTO alert_events ({ALERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (tenant_id, scope, period_start, percent) DO NOTHING"
                ))
                .bind(&e.id)
                .bind(&e.tenant_id)
                .bind(&e.scope)
                .bind(e.period_start)
                .bind(e.percent)
                .bind(&e.action)
                .bind(e.bytes_used)
                .bind(e.bytes_quota)
                .bind(e.at)
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(n == 1)
            }

            async fn put_setting(&self, tenant_id: &str, key: &str, value: &str) -> Result<()> {
                self.writable()?;
                sqlx::query(
                    "INSERT INTO tenant_settings (tenant_id, key, value) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value",
                )
                .bind(tenant_id)
                .bind(key)
                .bind(value)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn get_setting(&self, tenant_id: &str, key: &str) -> Result<Option<String>> {
                Ok(sqlx::query_scalar("SELECT value FROM tenant_settings WHERE tenant_id = $1 AND key = $2")
                    .bind(tenant_id)
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_alerts(&self, tenant_id: &str) -> Result<Vec<AlertEvent>> {
                let rows = sqlx::query(&format!("SELECT {ALERT_COLUMNS} FROM alert_events WHERE tenant_id = $1 ORDER BY at, id"))
                    .bind(tenant_id)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(Self::alert).collect()
            }

            async fn add_denied_client(&self, d: &DeniedClient) -> Result<()> {
                self.writable()?;
                sqlx::query("INSERT INTO client_deny_list (id, cidr, note, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(&d.id)
                    .bind(&d.cidr)
                    .bind(&d.note)
                    .bind(d.created_at)
                    .execute(&self.pool)
                    .await
                    .map_err(conflict("deny list entry for this network"))?;
                Ok(())
            }

            async fn list_denied_clients(&self) -> Result<Vec<DeniedClient>> {
                let rows = sqlx::query("SELECT id, cidr, note, created_at FROM client_deny_list ORDER BY created_at, id")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(DeniedClient {
                            id: r.try_get("id")?,
                            cidr: r.try_get("cidr")?,
                            note: r.try_get("note")?,
                            created_at: r.try_get("created_at")?,
                        })
                    })
                    .collect()
            }

            async fn delete_denied_client(&self, id: &str) -> Result<()> {
                self.writable()?;
                let n = sqlx::query("DELETE FROM client_deny_list WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                found(n)
            }
        }
    };
}
/// The embedded default: one SQLite file (WAL mode, foreign keys on), private to its owner.
pub struct SqliteStore {
    pool: sqlx::SqlitePool,
    /// The file as opened (none for an in-memory database).
    file: Option<DbFile>,
}

impl SqliteStore {
    /// Opens (creating if needed, mode 0600) the database at `url` (`sqlite://PATH`) and
    /// migrates it. An existing file (and its `-wal` and `-shm`) readable by others is made
    /// private first.
    pub async fn connect(url: &str) -> Result<Self> {
        use std::str::FromStr;
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .foreign_keys(true);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let file = if in_memory {
            None
        } else {
            Some(DbFile::prepare(opts.get_filename()).map_err(StoreError::File)?)
        };
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(Self { pool, file })
    }

    /// False once the file was removed or replaced since it was opened.
    pub fn database_ok(&self) -> bool {
        self.file.as_ref().is_none_or(DbFile::still_there)
    }

    fn writable(&self) -> Result<()> {
        if self.database_ok() {
            Ok(())
        } else {
            Err(StoreError::DatabaseLost)
        }
    }
}

/// The SQLite file as opened: its path and identity (device and inode). A write through a pool
/// whose file was deleted (or renamed over) goes to an unlinked inode and is lost at the next
/// start, so writes are refused once the path no longer names the same file.
struct DbFile {
    path: std::path::PathBuf,
    id: (u64, u64),
    /// Set (and logged) once the file is gone; never cleared: restart after restoring it.
    lost: std::sync::atomic::AtomicBool,
}

impl DbFile {
    /// Creates the file with mode 0600 if missing (before SQLite does, with 0644 less the
    /// umask), makes an existing one and its `-wal` and `-shm` private, and records its
    /// identity. SQLite gives new `-wal` and `-shm` files the database file's mode.
    fn prepare(path: &std::path::Path) -> std::io::Result<Self> {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        match o.open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let path = std::fs::canonicalize(path)?;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            make_private(std::path::Path::new(&p))?;
        }
        let id = file_id(&std::fs::metadata(&path)?);
        Ok(Self {
            path,
            id,
            lost: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// One `stat`: does the path still name the file opened?
    fn still_there(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.lost.load(Ordering::Relaxed) {
            return false;
        }
        if std::fs::metadata(&self.path).is_ok_and(|m| file_id(&m) == self.id) {
            return true;
        }
        if !self.lost.swap(true, Ordering::Relaxed) {
            tracing::error!(
                path = %self.path.display(),
                "the SQLite database file was removed or replaced while running: writes are \
                 refused until the server is restarted after restoring it (changes accepted \
                 until now are in the old file, if it is still open elsewhere, or lost)"
            );
        }
        false
    }
}

#[cfg(unix)]
fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

#[cfg(not(unix))]
fn file_id(_: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

/// Removes group and other permissions from `path`, if it exists.
#[cfg(unix)]
fn make_private(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn make_private(_: &std::path::Path) -> std::io::Result<()> {
    Ok(())
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
        Ok(Self { pool })
    }

    /// Writes are always attempted (the server keeps the data).
    fn writable(&self) -> Result<()> {
        Ok(())
    }
}

store_impl!(SqliteStore, sqlx::Sqlite);
store_impl!(PgStore, sqlx::Postgres);
