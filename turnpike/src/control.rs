//! Wiring of the control plane: the store chosen by `database_url`, the API settings, and the
//! admin key printed once when it was generated.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use turnpike_api::{ApiConfig, ControlPlane, SmtpConfig};
use turnpike_proto::Directory;
use turnpike_store::AnyStore;

use crate::config::Config;

/// The database URL: configured, or a SQLite file in the data directory.
pub fn database_url(cfg: &Config) -> Result<String> {
    if let Some(u) = &cfg.database_url {
        return Ok(u.clone());
    }
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {} (key `data_dir`)",
            cfg.data_dir.display()
        )
    })?;
    Ok(format!(
        "sqlite://{}",
        cfg.data_dir.join("turnpike.db").display()
    ))
}

pub fn api_config(cfg: &Config) -> ApiConfig {
    ApiConfig {
        realm: cfg.realm.clone(),
        admin_key_hash: cfg.admin_key.as_deref().map(turnpike_api::keys::hash_key),
        public_host: cfg.public_host.clone(),
        listeners: turnpike_server::ice::Listeners {
            udp: cfg.listen_udp.clone(),
            tcp: cfg.listen_tcp.clone(),
            tls: cfg.listen_tls.clone(),
            dtls: cfg.listen_dtls.clone(),
        },
        default_ttl: cfg.ephemeral_default_ttl,
        max_ttl: cfg.ephemeral_max_ttl,
        rate_burst: cfg.api_rate_burst,
        rate_per_sec: cfg.api_rate_per_sec,
        max_body: cfg.api_max_body,
        sync_interval: Duration::from_millis(cfg.directory_sync_interval_ms),
        flush_interval: Duration::from_millis(cfg.usage_flush_interval_ms),
        smtp: cfg.smtp_host.as_ref().map(|h| SmtpConfig {
            host: h.clone(),
            port: cfg.smtp_port,
            security: cfg.smtp_security.clone(),
            username: cfg.smtp_username.clone(),
            password: cfg.smtp_password.clone(),
            from: cfg.smtp_from.clone(),
        }),
        webhook_attempts: cfg.webhook_attempts,
        webhook_first_retry: Duration::from_millis(cfg.webhook_first_retry_ms),
    }
}

/// Connects the store (migrating it) and starts the control plane.
pub async fn start(cfg: &Config, directory: Arc<Directory>) -> Result<ControlPlane> {
    let url = database_url(cfg)?;
    let store = AnyStore::connect(&url)
        .await
        .context("cannot open the database (key `database_url`)")?;
    if cfg.smtp_host.is_some() && cfg.smtp_security == "none" {
        tracing::warn!(
            "smtp_security = none: alert emails and SMTP credentials travel in plain text"
        );
    }
    let (cp, generated) = ControlPlane::start(store, directory, api_config(cfg))
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
