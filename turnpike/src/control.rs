//! Wiring of the control plane: the store chosen by `database_url`, the API settings, and the
//! admin key printed once when it was generated.

use std::sync::Arc;

use anyhow::{Context, Result};
use turnpike_api::{ApiConfig, ControlPlane, SmtpConfig};
use turnpike_proto::Directory;
use turnpike_store::AnyStore;

use crate::config::Config;

/// The database URL: configured, or a SQLite file in the data directory.
pub(crate) fn database_url(cfg: &Config) -> Result<String> {
    if let Some(u) = &cfg.database_url {
        return Ok(u.clone());
    }
    crate::instance::ensure_data_dir(&cfg.data_dir)?;
    Ok(format!(
        "sqlite://{}",
        cfg.data_dir.join("turnpike.db").display()
    ))
}

/// Every listener a client can use, as ICE server lists name them: the shared port carries
/// TURN over TCP and TURNS too, and DTLS listeners carry plain UDP TURN as well.
pub(crate) fn ice_listeners(cfg: &Config) -> turnpike_api::ice::Listeners {
    turnpike_api::ice::Listeners {
        udp: cfg
            .listen_udp
            .iter()
            .chain(&cfg.listen_dtls)
            .copied()
            .collect(),
        tcp: cfg
            .listen_tcp
            .iter()
            .chain(&cfg.listen_mux)
            .chain(&cfg.listen_mux_plain)
            .copied()
            .collect(),
        tls: cfg
            .listen_tls
            .iter()
            .chain(&cfg.listen_mux)
            .copied()
            .collect(),
        dtls: cfg.listen_dtls.clone(),
    }
}

pub(crate) fn api_config(cfg: &Config) -> ApiConfig {
    ApiConfig {
        realm: cfg.realm.clone(),
        admin_key_hash: cfg.admin_key.as_deref().map(turnpike_api::keys::hash_key),
        public_host: cfg.public_host.clone(),
        host_header_ips: Vec::new(),
        listeners: ice_listeners(cfg),
        default_ttl: cfg.ephemeral_default_ttl.as_secs(),
        max_ttl: cfg.ephemeral_max_ttl.as_secs(),
        rate_burst: cfg.api_rate_burst,
        rate_per_sec: cfg.api_rate_per_sec,
        max_body: cfg.api_max_body,
        sync_interval: cfg.directory_sync_interval.get(),
        credential_grace: cfg.credential_grace.get(),
        flush_interval: cfg.usage_flush_interval.get(),
        smtp: cfg.smtp_host.as_ref().map(|h| SmtpConfig {
            host: h.clone(),
            port: cfg.smtp_port,
            security: cfg.smtp_security.as_str().to_string(),
            username: cfg.smtp_username.clone(),
            password: cfg.smtp_password.clone(),
            from: cfg.smtp_from.clone(),
        }),
        webhook_attempts: cfg.webhook_attempts,
        webhook_first_retry: cfg.webhook_first_retry.get(),
        danger_allow_webhook_ranges: cfg.danger_allow_webhook_ranges.clone(),
        auth_failures_per_minute: cfg.api_auth_failures_per_minute,
        fleet: turnpike_api::fleet::FleetConfig {
            node_name: cfg.node_name.clone().unwrap_or_else(host_name),
            region: cfg.region.clone(),
            location: cfg
                .region_location
                .as_deref()
                .and_then(|l| turnpike_api::fleet::geo::Place::parse(l).ok()),
            fallback_regions: cfg.fallback_regions,
            heartbeat: cfg.heartbeat_interval.get(),
            trusted_proxies: cfg.trusted_proxies.clone(),
            geoip: None,
            tls_domain: cfg.acme_domains.first().cloned().or_else(|| {
                cfg.public_host
                    .clone()
                    .filter(|h| h.parse::<std::net::IpAddr>().is_err())
            }),
            signal_url: signal_url(cfg),
            version: env!("CARGO_PKG_VERSION").into(),
        },
    }
}

/// This node's public signalling endpoint: the shared TLS port (which serves the API and
/// `/v1/signal` to clients) under the public host name, when both are configured.
fn signal_url(cfg: &Config) -> Option<String> {
    let host = cfg.public_host.as_deref()?;
    let port = cfg.listen_mux.first()?.port();
    let host = if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Some(if port == 443 {
        format!("wss://{host}/v1/signal")
    } else {
        format!("wss://{host}:{port}/v1/signal")
    })
}

/// The machine's host name (`/etc/hostname`), else `turnpike`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "turnpike".into())
}

/// The file of a SQLite URL (`sqlite://PATH` or `sqlite:PATH`, options after `?` ignored).
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| path.into())
}

/// A SQLite database that existed once must not silently come back empty (with no tenants and a
/// new admin key) because its file was deleted: a marker beside it says it was created, and its
/// absence with the marker present stops start-up.
fn check_not_lost(url: &str) -> Result<()> {
    let Some(db) = sqlite_path(url) else {
        return Ok(());
    };
    let mut marker = db.clone().into_os_string();
    marker.push(".created");
    let marker = std::path::PathBuf::from(marker);
    if db.exists() {
        if !marker.exists() {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&marker)
                .and_then(|mut f| {
                    f.write_all(b"turnpike created this database; see docs/security.md\n")
                })
                .with_context(|| format!("cannot write {}", marker.display()))?;
        }
        return Ok(());
    }
    if marker.exists() {
        anyhow::bail!(
            "the database {} is missing, but Turnpike created it before ({} exists): restore the file from a backup, or delete the marker to start with an empty database (no tenants, a new admin key) (key `database_url`)",
            db.display(),
            marker.display()
        );
    }
    Ok(())
}

/// Connects the store (migrating it) and starts the control plane. `host_header_ips`: see
/// `ApiConfig::host_header_ips` (empty unless the public host was detected).
pub(crate) async fn start(
    cfg: &Config,
    directory: Arc<Directory>,
    host_header_ips: Vec<std::net::IpAddr>,
) -> Result<ControlPlane> {
    let url = database_url(cfg)?;
    check_not_lost(&url)?;
    let store = AnyStore::connect(&url)
        .await
        .context("cannot open the database (key `database_url`)")?;
    // Now that it exists: remember it did.
    check_not_lost(&url)?;
    if cfg.smtp_host.is_some() && cfg.smtp_security == crate::config::SmtpSecurity::None {
        tracing::warn!(
            "smtp_security = none: alert emails and SMTP credentials travel in plain text"
        );
    }
    let mut api = ApiConfig {
        host_header_ips,
        ..api_config(cfg)
    };
    if !cfg.geoip_database.is_empty() {
        let g = turnpike_api::fleet::geoip::GeoIp::open(&cfg.geoip_database)
            .map_err(|e| anyhow::anyhow!("key `geoip_database`: {e}"))?;
        api.fleet.geoip = Some(Arc::new(g));
    }
    let (cp, generated) = ControlPlane::start(store, directory, api)
        .await
        .context("cannot start the control plane (key `database_url`)")?;
    if let Some(key) = generated {
        // Printed once, on the start that generated it; only its hash is stored.
        println!(
            "\nTurnpike generated an admin API key (shown only now; only its hash is stored):\n  {key}\n\
             Create a tenant with:\n  curl -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n    -d '{{\"name\":\"my-app\"}}' http://{}/v1/tenants\n",
            cfg.metrics_listen
        );
    }
    tracing::info!(
        database = if url.starts_with("sqlite:") {
            "sqlite"
        } else {
            "postgresql"
        },
        "control plane ready"
    );
    Ok(cp)
}

/// Starts signalling on the bus `signal_bus` chooses, with the demo tenant when enabled.
pub(crate) async fn start_signal(
    cfg: &Config,
    cp: &ControlPlane,
) -> Result<Arc<turnpike_signal::Signal>> {
    use turnpike_signal::{Bus, PgBus, SignalConfig};
    let url = database_url(cfg)?;
    let use_pg = match cfg.signal_bus {
        crate::config::SignalBus::Postgres => true,
        crate::config::SignalBus::Memory => false,
        crate::config::SignalBus::Auto => url.starts_with("postgres"),
    };
    let bus = if use_pg {
        Bus::Postgres(
            PgBus::connect(&url, &cp.state.node_id)
                .await
                .context("cannot connect the signalling bus (keys `signal_bus`, `database_url`)")?,
        )
    } else {
        Bus::InProcess(Default::default())
    };
    let demo = if cfg.demo_enabled {
        Some(demo_tenant(&cp.state).await?)
    } else {
        None
    };
    if demo.is_some() && !cfg.listen_mux.is_empty() {
        tracing::warn!("demo_enabled: anyone reaching the shared port can mint demo-tenant TURN credentials (rate limited, 5 GB/day quota); set demo_enabled = false in production");
    }
    let sc = SignalConfig {
        max_message_bytes: cfg.signal_max_message_bytes,
        msgs_per_sec: cfg.signal_msgs_per_sec,
        msg_burst: cfg.signal_msgs_per_sec.saturating_mul(2),
        bytes_per_sec: cfg.signal_bytes_per_sec,
        max_conns_per_tenant: cfg.signal_max_conns_per_tenant,
        max_conns_per_ip: cfg.signal_max_conns_per_ip,
        max_room_size: cfg.signal_max_room_size,
        queue: cfg.signal_queue,
        resume_grace: cfg.signal_resume_grace.get(),
        idle_timeout: cfg.signal_idle_timeout.get(),
        handshake_timeout: cfg.signal_handshake_timeout.get(),
        ..SignalConfig::default()
    };
    tracing::info!(
        bus = if use_pg { "postgres" } else { "memory" },
        demo = demo.is_some(),
        "signalling ready at /v1/signal"
    );
    Ok(turnpike_signal::start(cp.state.clone(), sc, bus, demo))
}

const DEMO_TENANT: &str = "turnpike-demo";

/// The built-in demo tenant: created once, with a shared secret and a daily quota.
async fn demo_tenant(state: &turnpike_api::AppState) -> Result<String> {
    use turnpike_store::Store;
    let now = turnpike_api::state::unix_now();
    let existing = state
        .store
        .list_tenants()
        .await?
        .into_iter()
        .find(|t| t.name == DEMO_TENANT);
    let id = match existing {
        Some(t) => t.id,
        None => {
            let t = state.store.create_tenant(DEMO_TENANT, now).await?;
            state
                .store
                .add_tenant_secret(&t.id, turnpike_api::keys::random_token(32).as_bytes(), now)
                .await?;
            state
                .store
                .put_quota(&turnpike_store::Quota {
                    tenant_id: t.id.clone(),
                    scope: turnpike_store::QuotaScope::Tenant,
                    period: turnpike_store::QuotaPeriod::Day,
                    bytes_per_period: Some(5_000_000_000),
                    max_allocations: Some(200),
                    max_bitrate_bps: Some(5_000_000),
                    throttle_bitrate_bps: None,
                    thresholds: r#"[{"percent":100,"action":"refuse"}]"#.into(),
                })
                .await?;
            t.id
        }
    };
    turnpike_api::sync::reload(state).await?;
    Ok(id.into_string())
}

/// `turnpike nodes`: the fleet's registry, read from the database.
pub(crate) fn print_nodes(cfg: &Config, json: bool) -> Result<()> {
    use turnpike_store::Store;
    let url = database_url(cfg)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    let nodes = rt.block_on(async {
        let store = AnyStore::connect(&url)
            .await
            .context("cannot open the database (key `database_url`)")?;
        store
            .list_nodes()
            .await
            .context("cannot read the node registry")
    })?;
    let now = turnpike_api::fleet::now_ms();
    if json {
        let list: Vec<_> = nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "id": n.id, "name": n.name, "region": n.region, "version": n.version,
                    "state": turnpike_api::http::nodes::node_state(n, now),
                    "urls": n.urls, "allocations": n.allocations, "capacity": n.capacity,
                    "relayed_bps": n.relayed_bps, "cpu_percent": n.cpu_percent,
                    "heartbeat_age_ms": now - n.heartbeat_ms,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!(
        "{:<14} {:<20} {:<16} {:<9} {:>11} {:>12} {:>6} {:>9}",
        "ID", "NAME", "REGION", "STATE", "ALLOCATIONS", "RELAYED", "CPU %", "SEEN"
    );
    for n in &nodes {
        let cap = if n.capacity > 0 {
            format!("{}/{}", n.allocations, n.capacity)
        } else {
            n.allocations.to_string()
        };
        println!(
            "{:<14} {:<20} {:<16} {:<9} {:>11} {:>10.1}Mb {:>6.1} {:>8.1}s",
            n.id,
            n.name,
            n.region,
            turnpike_api::http::nodes::node_state(n, now),
            cap,
            n.relayed_bps as f64 / 1e6,
            n.cpu_percent,
            (now - n.heartbeat_ms) as f64 / 1000.0,
        );
    }
    if nodes.is_empty() {
        println!("(no node registered: nodes register while they run)");
    }
    Ok(())
}
