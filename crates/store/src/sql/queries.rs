//! The SQL text, the same for SQLite and PostgreSQL (placeholders `$1..$n`, `ON CONFLICT`
//! upserts, `RETURNING`). Each backend module binds the parameters in the order given here;
//! the columns read back are the fields of the row types in [`super::rows`].

// Tenants.

pub(super) const INSERT_TENANT: &str = "
    INSERT INTO tenants (id, name, created_at, parent_id) VALUES ($1, $2, $3, $4)";

pub(super) const TENANT_BY_ID: &str = "
    SELECT id, name, created_at, parent_id, suspended_at, allowed_regions FROM tenants WHERE id = $1";

pub(super) const ALL_TENANTS: &str = "
    SELECT id, name, created_at, parent_id, suspended_at, allowed_regions FROM tenants ORDER BY id";

/// A parent's projects, oldest first.
pub(super) const CHILD_TENANTS: &str = "
    SELECT id, name, created_at, parent_id, suspended_at, allowed_regions FROM tenants WHERE parent_id = $1
    ORDER BY created_at, id";

/// `name, id`.
pub(super) const RENAME_TENANT: &str = "
    UPDATE tenants SET name = $1 WHERE id = $2";

/// `suspended_at` (NULL: resumed), `id`.
pub(super) const SUSPEND_TENANT: &str = "
    UPDATE tenants SET suspended_at = $1 WHERE id = $2";

/// `allowed_regions` (comma-separated; NULL: any), `id`.
pub(super) const SET_TENANT_REGIONS: &str = "
    UPDATE tenants SET allowed_regions = $1 WHERE id = $2";

/// Tenants suspended themselves or through their parent (a project of a suspended tenant).
pub(super) const SUSPENDED_TENANTS: &str = "
    SELECT t.id FROM tenants t LEFT JOIN tenants p ON p.id = t.parent_id
    WHERE t.suspended_at IS NOT NULL OR p.suspended_at IS NOT NULL ORDER BY t.id";

pub(super) const DELETE_TENANT: &str = "
    DELETE FROM tenants WHERE id = $1";

// API keys, by hash.

/// `id, tenant_id, kind, credential_id, allowed_origins, prefix, created_at, expires_at,
/// revoked, key_hash`.
pub(super) const INSERT_API_KEY: &str = "
    INSERT INTO api_keys
        (id, tenant_id, kind, credential_id, allowed_origins, prefix, created_at, expires_at,
         revoked, key_hash)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

pub(super) const API_KEY_BY_HASH: &str = "
    SELECT id, tenant_id, kind, credential_id, allowed_origins, prefix, created_at, expires_at,
           revoked
    FROM api_keys WHERE key_hash = $1";

pub(super) const API_KEYS_OF_TENANT: &str = "
    SELECT id, tenant_id, kind, credential_id, allowed_origins, prefix, created_at, expires_at,
           revoked
    FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id";

/// `revoked, id, tenant id or NULL (any tenant)`.
pub(super) const REVOKE_API_KEY: &str = "
    UPDATE api_keys SET revoked = $1 WHERE id = $2 AND ($3 IS NULL OR tenant_id = $3)";

pub(super) const ANY_KEY_OF_KIND: &str = "
    SELECT id FROM api_keys WHERE kind = $1 LIMIT 1";

/// `at, tenant id, kind, false`: live keys lapse at `at`.
pub(super) const EXPIRE_API_KEYS: &str = "
    UPDATE api_keys SET expires_at = $1
    WHERE tenant_id = $2 AND kind = $3 AND revoked = $4
      AND (expires_at IS NULL OR expires_at > $1)";

// Stored credentials.

/// `id, tenant_id, username, key_md5, key_sha256, label, tags, enabled, expires_at,
/// created_at`.
pub(super) const INSERT_CREDENTIAL: &str = "
    INSERT INTO credentials
        (id, tenant_id, username, key_md5, key_sha256, label, tags, enabled, expires_at,
         created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

pub(super) const CREDENTIAL_BY_ID: &str = "
    SELECT id, tenant_id, username, key_md5, key_sha256, label, tags, enabled, expires_at,
           created_at
    FROM credentials WHERE id = $1 AND tenant_id = $2";

pub(super) const CREDENTIAL_BY_USERNAME: &str = "
    SELECT id, tenant_id, username, key_md5, key_sha256, label, tags, enabled, expires_at,
           created_at
    FROM credentials WHERE tenant_id = $1 AND username = $2";

/// `tenant, label or NULL, include expired, now, cursor or NULL, limit`: by id, after the
/// cursor.
pub(super) static CREDENTIALS_PAGE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT id, tenant_id, username, key_md5, key_sha256, label, tags, enabled, expires_at,
                created_at
         FROM credentials
         WHERE tenant_id = $1
           AND ($2 IS NULL OR label = $2)
           AND ($3 OR expires_at IS NULL OR expires_at > $4)
           AND ($5 IS NULL OR id > $5)
           {}
         ORDER BY id LIMIT $6 OFFSET $7",
        credential_filters(8)
    )
});

/// `tenant, label, include expired, now, tag pattern, newline, state, search pattern`: how
/// many credentials a listing would show.
pub(super) static CREDENTIALS_COUNT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT COUNT(*) FROM credentials
             WHERE tenant_id = $1
               AND ($2 IS NULL OR label = $2)
               AND ($3 OR expires_at IS NULL OR expires_at > $4)
               {}",
        credential_filters(5)
    )
});

/// The tag, state and search filters of a credential listing, their parameters numbered from
/// `n`: a tag pattern (`%\n<tag>\n%`, lower case, `LIKE`-escaped) and the newline the stored
/// tags are joined with; `enabled`, `disabled` or `expired` (`$4` is now); a search pattern
/// (`%<text>%`, lower case, escaped) over username and label. Each is off when NULL.
fn credential_filters(n: usize) -> String {
    let (tag, nl, state, search) = (n, n + 1, n + 2, n + 3);
    format!(
        "AND (${tag} IS NULL OR LOWER(${nl} || tags || ${nl}) LIKE ${tag} ESCAPE '\\')
         AND (${state} IS NULL
              OR (${state} = 'enabled' AND enabled AND (expires_at IS NULL OR expires_at > $4))
              OR (${state} = 'disabled' AND NOT enabled)
              OR (${state} = 'expired' AND expires_at IS NOT NULL AND expires_at <= $4))
         AND (${search} IS NULL OR LOWER(username) LIKE ${search} ESCAPE '\\'
              OR LOWER(COALESCE(label, '')) LIKE ${search} ESCAPE '\\')"
    )
}

/// `after id, limit`: every tenant's credentials in id order, one page (keyset pagination, so
/// a million rows load in constant memory per page).
pub(super) const CREDENTIALS_AFTER: &str = "
    SELECT id, tenant_id, username, key_md5, key_sha256, label, tags, enabled, expires_at,
           created_at
    FROM credentials WHERE id > $1 ORDER BY id LIMIT $2";

/// `enabled, id, tenant`.
pub(super) const SET_CREDENTIAL_ENABLED: &str = "
    UPDATE credentials SET enabled = $1 WHERE id = $2 AND tenant_id = $3";

/// `id, tenant`.
pub(super) const DELETE_CREDENTIAL: &str = "
    DELETE FROM credentials WHERE id = $1 AND tenant_id = $2";

pub(super) const DELETE_CREDENTIALS_BY_LABEL: &str = "
    DELETE FROM credentials WHERE tenant_id = $1 AND label = $2
    RETURNING id, tenant_id, username, key_md5, key_sha256, label, tags, enabled, expires_at,
              created_at";

// Shared secrets.

pub(super) const INSERT_TENANT_SECRET: &str = "
    INSERT INTO tenant_secrets (id, tenant_id, secret, created_at, expires_at)
    VALUES ($1, $2, $3, $4, $5)";

/// `at, tenant`: live secrets lapse at `at`.
pub(super) const EXPIRE_TENANT_SECRETS: &str = "
    UPDATE tenant_secrets SET expires_at = $1
    WHERE tenant_id = $2 AND (expires_at IS NULL OR expires_at > $1)";

pub(super) const LIVE_TENANT_SECRETS: &str = "
    SELECT id, tenant_id, secret, created_at, expires_at FROM tenant_secrets
    WHERE expires_at IS NULL OR expires_at > $1
    ORDER BY created_at DESC, id";

// Revocations and user tags.

pub(super) const UPSERT_REVOCATION: &str = "
    INSERT INTO revocations (tenant_id, kind, value, created_at, expires_at)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (tenant_id, kind, value) DO UPDATE SET expires_at = excluded.expires_at";

/// `now, tenant or NULL (all)`.
pub(super) const LIVE_REVOCATIONS: &str = "
    SELECT tenant_id, kind, value, created_at, expires_at FROM revocations
    WHERE expires_at > $1 AND ($2 IS NULL OR tenant_id = $2)
    ORDER BY created_at, value";

pub(super) const UPSERT_USER_TAGS: &str = "
    INSERT INTO user_tags (tenant_id, user_id, tags) VALUES ($1, $2, $3)
    ON CONFLICT (tenant_id, user_id) DO UPDATE SET tags = excluded.tags";

pub(super) const USER_TAGS: &str = "
    SELECT user_id, tags FROM user_tags WHERE tenant_id = $1";

// Disconnect requests.

pub(super) const INSERT_DISCONNECT: &str = "
    INSERT INTO disconnect_requests (node, kind, tenant_id, value, at)
    VALUES ($1, $2, $3, $4, $5)
    RETURNING id";

pub(super) const RECENT_DISCONNECTS: &str = "
    SELECT id, node, kind, tenant_id, value, at FROM disconnect_requests
    WHERE at >= $1 ORDER BY id LIMIT 10000";

pub(super) const PRUNE_DISCONNECTS: &str = "
    DELETE FROM disconnect_requests WHERE at < $1";

// Usage and the allocation log.

/// `tenant, from hour, to hour (exclusive)`.
pub(super) const USAGE: &str = "
    SELECT tenant_id, credential_id, user_id, hour, c2s_bytes, c2s_packets, s2p_bytes,
           s2p_packets, p2s_bytes, p2s_packets, s2c_bytes, s2c_packets, allocations,
           allocation_seconds
    FROM usage_hourly WHERE tenant_id = $1 AND hour >= $2 AND hour < $3
    ORDER BY hour, credential_id, user_id";

/// `tenant, [after,] from hour, to hour (exclusive), limit`: the next keys of a paged usage
/// report (`column` is `user_id` or `credential_id`). A loose index scan: the recursive query
/// steps from one key to the next through the index ((tenant_id, user_id, hour), or the
/// primary key for credentials), each kept if it has a row in the range, and stops at `limit`;
/// so a page costs about its own keys wherever it is. Both `SELECT DISTINCT .. WHERE hour ..`
/// and a DISTINCT subquery made SQLite sort every key of the tenant first (0.2-0.5 s a page at
/// 100,000 users, against 2 ms).
pub(super) fn usage_keys(column: &str, after: bool) -> String {
    let (cond, from, to, limit) = if after {
        (format!("AND {column} > $2"), "$3", "$4", "$5")
    } else {
        (String::new(), "$2", "$3", "$4")
    };
    format!(
        "WITH RECURSIVE k(key) AS (
             SELECT (SELECT MIN({column}) FROM usage_hourly WHERE tenant_id = $1 {cond})
             UNION ALL
             SELECT (SELECT MIN({column}) FROM usage_hourly
                     WHERE tenant_id = $1 AND {column} > k.key)
             FROM k WHERE k.key IS NOT NULL
         )
         SELECT key FROM k
         WHERE key IS NOT NULL AND EXISTS (
             SELECT 1 FROM usage_hourly h
             WHERE h.tenant_id = $1 AND h.{column} = k.key AND h.hour >= {from}
               AND h.hour < {to}
         )
         LIMIT {limit}"
    )
}

/// `tenant, from hour, to hour (exclusive), keys`: the rows of one page of keys; `keys_in`
/// is how the backend takes a list parameter (`$4`).
pub(super) fn usage_of(column: &str, keys_in: &str) -> String {
    format!(
        "SELECT tenant_id, credential_id, user_id, hour, c2s_bytes, c2s_packets, s2p_bytes,
                s2p_packets, p2s_bytes, p2s_packets, s2c_bytes, s2c_packets, allocations,
                allocation_seconds
         FROM usage_hourly
         WHERE tenant_id = $1 AND hour >= $2 AND hour < $3 AND {column} {keys_in}
         ORDER BY hour, credential_id, user_id"
    )
}

/// `tenant, from, to, limit`.
pub(super) const ALLOCATIONS: &str = "
    SELECT id, tenant_id, credential_id, user_id, username, client, transport, relay,
           started_at, ended_at, c2s_bytes, s2p_bytes, p2s_bytes, s2c_bytes, peers, node_id
    FROM allocation_log
    WHERE tenant_id = $1 AND started_at >= $2 AND started_at < $3
    ORDER BY started_at, id LIMIT $4";

// The audit log.

pub(super) const INSERT_AUDIT: &str = "
    INSERT INTO audit_log (id, tenant_id, at, actor, action, target, detail)
    VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// `tenant or NULL (the operator's), from, to, limit`.
pub(super) const AUDIT: &str = "
    SELECT id, tenant_id, at, actor, action, target, detail FROM audit_log
    WHERE (($1 IS NULL AND tenant_id IS NULL) OR tenant_id = $1) AND at >= $2 AND at < $3
    ORDER BY at, id LIMIT $4";

// Quotas, notifications and alerts.

pub(super) const UPSERT_QUOTA: &str = "
    INSERT INTO quotas
        (tenant_id, scope, period, bytes_per_period, max_allocations, max_bitrate_bps,
         throttle_bitrate_bps, thresholds)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (tenant_id, scope) DO UPDATE SET
        period = excluded.period,
        bytes_per_period = excluded.bytes_per_period,
        max_allocations = excluded.max_allocations,
        max_bitrate_bps = excluded.max_bitrate_bps,
        throttle_bitrate_bps = excluded.throttle_bitrate_bps,
        thresholds = excluded.thresholds";

pub(super) const DELETE_QUOTA: &str = "
    DELETE FROM quotas WHERE tenant_id = $1 AND scope = $2";

/// `tenant or NULL (all)`.
pub(super) const QUOTAS: &str = "
    SELECT tenant_id, scope, period, bytes_per_period, max_allocations, max_bitrate_bps,
           throttle_bitrate_bps, thresholds
    FROM quotas WHERE ($1 IS NULL OR tenant_id = $1) ORDER BY tenant_id, scope";

pub(super) const UPSERT_NOTIFICATIONS: &str = "
    INSERT INTO notification_settings
        (tenant_id, webhook_url, webhook_secret, email_to, webhook_format)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (tenant_id) DO UPDATE SET
        webhook_url = excluded.webhook_url,
        webhook_secret = excluded.webhook_secret,
        email_to = excluded.email_to,
        webhook_format = excluded.webhook_format";

pub(super) const NOTIFICATIONS: &str = "
    SELECT tenant_id, webhook_url, webhook_secret, email_to, webhook_format
    FROM notification_settings WHERE tenant_id = $1";

/// A threshold fires once per scope, period and percentage: nothing is inserted when it did.
pub(super) const INSERT_ALERT: &str = "
    INSERT INTO alert_events
        (id, tenant_id, scope, period_start, percent, action, bytes_used, bytes_quota, at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT (tenant_id, scope, period_start, percent) DO NOTHING";

pub(super) const ALERTS: &str = "
    SELECT id, tenant_id, scope, period_start, percent, action, bytes_used, bytes_quota, at
    FROM alert_events WHERE tenant_id = $1 ORDER BY at, id";

// Per-tenant settings.

pub(super) const UPSERT_SETTING: &str = "
    INSERT INTO tenant_settings (tenant_id, key, value) VALUES ($1, $2, $3)
    ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value";

pub(super) const SETTING: &str = "
    SELECT value FROM tenant_settings WHERE tenant_id = $1 AND key = $2";

// The client deny list.

pub(super) const INSERT_DENIED_CLIENT: &str = "
    INSERT INTO client_deny_list (id, cidr, note, created_at) VALUES ($1, $2, $3, $4)";

pub(super) const DENIED_CLIENTS: &str = "
    SELECT id, cidr, note, created_at FROM client_deny_list ORDER BY created_at, id";

pub(super) const DELETE_DENIED_CLIENT: &str = "
    DELETE FROM client_deny_list WHERE id = $1";

// The change feed (written by triggers, see the migrations).

/// `after, limit`.
pub(super) const CHANGES_SINCE: &str = "
    SELECT seq, entity, key FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2";

pub(super) const OLDEST_CHANGE: &str = "
    SELECT COALESCE(MIN(seq), 0) FROM changes";

/// `before` (unix seconds).
pub(super) const PRUNE_CHANGES: &str = "
    DELETE FROM changes WHERE at < $1";

/// `tenant id, now`.
pub(super) const LIVE_TENANT_SECRETS_OF: &str = "
    SELECT id, tenant_id, secret, created_at, expires_at FROM tenant_secrets
    WHERE tenant_id = $1 AND (expires_at IS NULL OR expires_at > $2)
    ORDER BY created_at DESC, id";
