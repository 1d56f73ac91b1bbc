//! The `turnpike` binary: configuration, wiring, signals and graceful shutdown.

mod acme;
mod advertise;
mod config;
mod control;
mod credential;
mod duration;
mod health;
mod http;
mod instance;
mod ip_list;
mod limits;
mod nat_check;
mod probe;
mod secret;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use turnpike_proto::{AllocationQuota, Credentials, PeerPolicy, Runtime, ServerConfig, UserSecret};
use turnpike_server::dtls::DtlsContext;
use turnpike_server::tls::{CertSource, CertStore};
use turnpike_server::DriverConfig;

use crate::config::{Command, Config};

fn main() {
    if let Err(e) = run() {
        eprintln!("turnpike: {e:#}");
        std::process::exit(2);
    }
}

fn run() -> Result<()> {
    let inv = crate::config::Invocation::from_env();
    if let Some(Command::Probe(args)) = &inv.cli.command {
        // A client: reads no configuration. Exit status 1 when a probe failed.
        if !probe::run(args)? {
            std::process::exit(1);
        }
        return Ok(());
    }
    if let Some(Command::NatCheck(args)) = &inv.cli.command {
        // A client too: reads no configuration.
        return nat_check::run(args);
    }
    let cfg = inv.load()?;
    match inv.cli.command {
        Some(Command::Credential { user, ttl }) => {
            let secret = minting_secret(&cfg)?;
            let m = credential::mint(&secret, &user, ttl);
            let out = serde_json::json!({
                "username": m.username,
                "password": m.password,
                "ttl": ttl,
                "expiresAt": m.expires,
                "realm": cfg.realm,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(());
        }
        Some(Command::IceServers { user, ttl }) => {
            let secret = minting_secret(&cfg)?;
            let m = credential::mint(&secret, &user, ttl);
            let listeners = control::ice_listeners(&cfg);
            let advertised = advertise::detect(&cfg);
            let servers = turnpike_api::ice::ice_servers(
                advertised.host.as_deref(),
                &listeners,
                &m.username,
                &m.password,
                false,
            );
            let list: Vec<_> = servers
                .iter()
                .map(|s| match (&s.username, &s.credential) {
                    (Some(u), Some(c)) => {
                        serde_json::json!({"urls": s.urls, "username": u, "credential": c})
                    }
                    _ => serde_json::json!({"urls": s.urls}),
                })
                .collect();
            let out = serde_json::json!({"iceServers": list, "ttl": ttl, "expiresAt": m.expires});
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(());
        }
        Some(Command::Probe(_)) => unreachable!("dispatched before the configuration is read"),
        Some(Command::NatCheck(_)) => unreachable!("dispatched before the configuration is read"),
        Some(Command::Nodes { json }) => return control::print_nodes(&cfg, json),
        Some(Command::ConfigReference { update }) => {
            match update {
                Some(path) => crate::config::update_reference(&path)?,
                None => print!("{}", crate::config::reference_table()),
            }
            return Ok(());
        }
        Some(Command::CheckConfig) => {
            for w in cfg.deprecations() {
                eprintln!("warning: {w}");
            }
            let mut shown = cfg;
            shown.shared_secrets = shown
                .shared_secrets
                .iter()
                .map(|_| "<redacted>".into())
                .collect();
            for secret in [
                &mut shown.database_url,
                &mut shown.admin_key,
                &mut shown.smtp_password,
                &mut shown.metrics_token,
            ] {
                if secret.is_some() {
                    *secret = Some("<redacted>".into());
                }
            }
            shown.users = shown
                .users
                .iter()
                .map(|u| format!("{}:<redacted>", u.split(':').next().unwrap_or("")))
                .collect();
            println!("{}", toml_like(&shown)?);
            return Ok(());
        }
        None => {}
    }
    init_logging(&cfg)?;
    for w in cfg.deprecations() {
        tracing::warn!("{w}");
    }
    let reload = move || inv.load();
    serve(cfg, Box::new(reload))
}

/// Reads the configuration again (SIGHUP).
type Reload = Box<dyn Fn() -> Result<Config>>;

/// The secret that mints time-limited credentials: the first configured one, else the generated one.
fn minting_secret(cfg: &Config) -> Result<String> {
    match cfg.shared_secrets.first() {
        Some(s) => Ok(s.clone()),
        None => Ok(secret::load_or_create(&cfg.data_dir)?.0),
    }
}

fn toml_like(cfg: &Config) -> Result<String> {
    Ok(serde_json::to_string_pretty(cfg)?)
}

fn init_logging(cfg: &Config) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log_level).with_context(|| {
        format!(
            "key `log_level` (`{}`) is not a valid filter such as `info`",
            cfg.log_level
        )
    })?;
    // Colours only on a terminal: a log file or the journal gets plain text (and fail2ban's
    // filter in deploy/fail2ban matches it).
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if cfg.log_format == crate::config::LogFormat::Json {
        b.json().init();
    } else {
        b.init();
    }
    Ok(())
}

/// Builds the credential set; with none configured, the generated shared secret.
fn credentials(cfg: &Config) -> Result<Credentials> {
    let mut creds = Credentials::new();
    for u in &cfg.users {
        // Validated by Config::validate: `name:secret` with a non-empty name and secret.
        let (name, secret) = u
            .split_once(':')
            .context("key `users`: entry without `:`")?;
        let secret = match secret.strip_prefix("0x") {
            Some(hex) => {
                let bytes: Vec<u8> = (0..16)
                    .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("key `users`: key for `{name}` is not hex"))?;
                UserSecret::Md5Key(
                    turnpike_stun::Key::from_slice(&bytes).context("MD5 keys are 16 bytes")?,
                )
            }
            None => UserSecret::Password(secret.to_string()),
        };
        creds.add_user(name, secret);
    }
    for s in &cfg.shared_secrets {
        creds.add_shared_secret(s.as_bytes().to_vec());
    }
    if creds.is_empty() {
        let (secret, fresh) = secret::load_or_create(&cfg.data_dir)?;
        let path = cfg.data_dir.join("shared-secret");
        if fresh {
            let m = credential::mint(&secret, "test", 86_400);
            // Printed once, on the start that generated the secret.
            println!(
                "\nTurnpike generated a shared secret in {} (no users or shared_secrets configured).\n\
                 A test credential valid for 24 hours:\n  username: {}\n  password: {}\n  realm:    {}\n\
                 Mint more with:\n  cargo run --release -- credential --user alice --ttl 3600\n",
                path.display(),
                m.username,
                m.password,
                cfg.realm
            );
        } else {
            tracing::info!(path = %path.display(), "using the generated shared secret (mint credentials with `turnpike credential`)");
        }
        creds.add_shared_secret(secret.into_bytes());
    }
    Ok(creds.for_realm(&cfg.realm))
}

fn proto_config(cfg: &Config, caps: &limits::Caps) -> Result<ServerConfig> {
    let mut p = ServerConfig::new(cfg.realm.clone(), credentials(cfg)?, secret::random_key());
    p.software = cfg.software.clone();
    p.default_lifetime = cfg.default_lifetime.get();
    p.max_lifetime = cfg.max_lifetime.get();
    p.nonce_lifetime = cfg.nonce_lifetime.get();
    p.credential_grace = cfg.credential_grace.get();
    p.peer_policy = PeerPolicy::new(
        cfg.allowed_peer_ranges.clone(),
        cfg.denied_peer_ranges.clone(),
        cfg.danger_allow_peer_ranges.clone(),
    );
    p.peer_policy.own = own_endpoints(cfg)?;
    p.default_tenant_max_allocations = (caps.tenant_allocations != 0)
        .then(|| u32::try_from(caps.tenant_allocations).unwrap_or(u32::MAX));
    p.external_ipv4 = cfg.external_ipv4;
    p.external_ipv6 = cfg.external_ipv6;
    p.rfc5780 = cfg.rfc5780()?;
    p.unauth_bytes_burst = cfg.unauth_bytes_burst;
    p.unauth_bytes_per_sec = cfg.unauth_bytes_per_sec;
    p.directory_credentials = cfg.control_plane;
    Ok(p)
}

/// Raises the descriptor limit and settles the caps derived from it (logged once).
fn descriptor_caps(cfg: &Config, workers: usize) -> limits::Caps {
    let (before, limit) = match limits::raise_nofile() {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the file descriptor limit; assuming 1024");
            (1024, 1024)
        }
    };
    let listeners = cfg.listen_udp.len()
        + cfg.listen_tcp.len()
        + cfg.listen_tls.len()
        + cfg.listen_dtls.len()
        + cfg.listen_mux.len()
        + cfg.listen_mux_plain.len();
    let budget = limits::Budget::derive(before, limit, workers, listeners);
    let caps = limits::Caps::resolve(cfg, &budget);
    tracing::info!(
        limit,
        raised_from = before,
        allocations = caps.allocations,
        allocations_per_user = caps.allocations_per_user,
        tenant_allocations = caps.tenant_allocations,
        turn_connections = caps.turn_connections,
        turn_per_source = caps.turn_per_source,
        http_connections = caps.http_connections,
        "file descriptor budget (0 = unlimited)"
    );
    if limit < 4096 {
        tracing::warn!(limit, "the file descriptor limit is low for a TURN server; raise it (LimitNOFILE= in systemd, ulimit -n) to serve more clients");
    }
    caps
}

/// The server's own endpoints, which no client may use as a relay peer: every listener
/// (STUN/TURN, TLS, DTLS, shared port, RFC 5780's extra addresses, HTTP) with the host's
/// interface addresses standing in for wildcard listeners.
fn own_endpoints(cfg: &Config) -> Result<turnpike_proto::OwnEndpoints> {
    let mut listeners: Vec<std::net::SocketAddr> = cfg
        .listen_udp
        .iter()
        .chain(&cfg.listen_tcp)
        .chain(&cfg.listen_tls)
        .chain(&cfg.listen_dtls)
        .chain(&cfg.listen_mux)
        .chain(&cfg.listen_mux_plain)
        .copied()
        .collect();
    if !cfg.metrics_listen.is_empty() {
        listeners.push(cfg.metrics_listen.parse().context("key `metrics_listen`")?);
    }
    let mut local_ips: Vec<std::net::IpAddr> = if_addrs::get_if_addrs()
        .map(|l| l.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot list interface addresses; wildcard listeners are matched on loopback and configured addresses only");
            Vec::new()
        });
    local_ips.extend(cfg.external_ipv4);
    local_ips.extend(cfg.external_ipv6);
    if let Some(r) = cfg.rfc5780()? {
        local_ips.extend([r.primary_ip, r.alternate_ip]);
        for ip in [r.primary_ip, r.alternate_ip] {
            for port in [r.primary_port, r.alternate_port] {
                listeners.push(std::net::SocketAddr::new(ip, port));
            }
        }
    }
    Ok(turnpike_proto::OwnEndpoints {
        listeners,
        local_ips,
    })
}

fn serve(mut cfg: Config, reload: Reload) -> Result<()> {
    // One instance per data directory and per listening address.
    let _instance = instance::lock(&cfg.data_dir)?;
    instance::probe_listeners(&cfg)?;
    // An ACME name is the public name unless one is set.
    if cfg.public_host.is_none() {
        cfg.public_host = cfg.acme_domains.first().cloned();
    }
    let acme = acme::Acme::from_config(&cfg);
    // What ICE server lists name: settled once, logged with its reason.
    let advertised = advertise::detect(&cfg);
    advertise::log(&advertised);
    let host_header_ips = advertise::host_header_ips(cfg.public_host.is_some(), &advertised);
    if cfg.public_host.is_none() {
        cfg.public_host.clone_from(&advertised.host);
    }
    if cfg.external_ipv4.is_none() {
        cfg.external_ipv4 = advertised.discovered.filter(IpAddr::is_ipv4);
    }
    let workers = if cfg.workers == 0 {
        DriverConfig::default().workers
    } else {
        cfg.workers
    };
    let caps = descriptor_caps(&cfg, workers);
    let mut proto = proto_config(&cfg, &caps)?;
    // What the workers share while running: quotas, the drain switch, the directory.
    let relay = Arc::new(Runtime::new(
        AllocationQuota::new(caps.allocations, caps.allocations_per_user),
        Arc::default(),
    ));
    relay
        .directory
        .set_configured_denied_clients(cfg.denied_client_ranges.clone());
    if !cfg.danger_allow_peer_ranges.is_empty() {
        tracing::warn!(ranges = ?cfg.danger_allow_peer_ranges, "danger_allow_peer_ranges opens special address ranges to relaying");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the control runtime")?;
    rt.block_on(async move {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .context("cannot install the metrics recorder")?;
        turnpike_server::describe_metrics();
        let control = if cfg.control_plane {
            Some(control::start(&cfg, relay.directory.clone(), host_header_ips).await?)
        } else {
            None
        };
        // The fleet's shared nonce key: a nonce one node issued (a challenge, a signed 300
        // Try Alternate) is accepted by every other node of the same database.
        if let Some(c) = &control {
            proto.nonce_secret = c
                .fleet_nonce_key(proto.nonce_secret)
                .await
                .context("cannot read the fleet's nonce key from the database")?;
        }
        let proto = Arc::new(proto);
        let signal = match &control {
            Some(c) => Some(control::start_signal(&cfg, c).await?),
            None => None,
        };
        let health = health::Health::new(relay.clone(), control.as_ref().map(|c| c.state.clone()));
        let (private_router, public_router) =
            routers(&cfg, recorder, control.as_ref(), signal.as_ref(), &health);
        serve_private_http(&cfg, private_router, &caps, relay.directory.clone()).await?;
        let certs = tls_store(&cfg)?;
        if let (Some(a), Some(store)) = (&acme, &certs) {
            a.install_stored(store);
        }
        let dtls = dtls_context(&cfg, certs.as_ref())?;
        let driver = driver_config(
            &cfg,
            &proto,
            &caps,
            workers,
            certs.as_ref(),
            dtls.clone(),
            &health,
            public_router,
            acme.as_ref(),
            control.as_ref(),
        );
        let workers = driver.workers;
        let server = start_with_fallback(proto.clone(), relay.clone(), driver)?;
        health.set_listening();
        if let Some(c) = &control {
            let addrs = turnpike_api::fleet::NodeAddresses {
                udp: server.udp_addrs.clone(),
                tcp: server
                    .tcp_addrs
                    .iter()
                    .chain(&server.mux_plain_addrs)
                    .copied()
                    .collect(),
                tls: server
                    .tls_addrs
                    .iter()
                    .chain(&server.mux_addrs)
                    .copied()
                    .collect(),
                dtls: server.dtls_addrs.clone(),
                external: [cfg.external_ipv4, cfg.external_ipv6]
                    .into_iter()
                    .flatten()
                    .collect(),
            };
            c.start_fleet(relay.clone(), addrs);
        }
        tracing::info!(
            udp = ?server.udp_addrs,
            tcp = ?server.tcp_addrs,
            tls = ?server.tls_addrs,
            dtls = ?server.dtls_addrs,
            shared = ?server.mux_addrs,
            shared_plain = ?server.mux_plain_addrs,
            workers,
            realm = %cfg.realm,
            "turnpike serving STUN/TURN"
        );
        if let (Some(a), Some(store)) = (acme, certs.clone()) {
            tokio::spawn(a.run(store, dtls.clone()));
        }
        wait_for_stop(&relay, cfg.drain_exit, certs, dtls, reload).await?;
        tracing::info!("shutting down");
        // Draining from here on: an Allocate in the last moments gets 300 to another node,
        // and the heartbeat (every 250 ms it looks) tells the registry at once, before the
        // row is removed at the fleet's stop.
        relay.start_draining();
        if control.is_some() {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        if let Some(s) = &signal {
            // Tell signalling clients to reconnect elsewhere before the sockets go: to a node
            // in a region their tenant may use.
            match &control {
                Some(c) => {
                    let state = c.state.clone();
                    s.hub
                        .drain(&move |tenant| turnpike_api::fleet::signal_url_for(&state, tenant));
                }
                None => s.hub.drain(&|_| None),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::task::spawn_blocking(move || server.shutdown())
            .await
            .ok();
        // After the workers reported their last usage: flush it.
        if let Some(c) = control {
            c.shutdown().await;
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// The HTTP routers: the private one (`metrics_listen`) and the public one (the shared port).
fn routers(
    cfg: &Config,
    recorder: metrics_exporter_prometheus::PrometheusHandle,
    control: Option<&turnpike_api::ControlPlane>,
    signal: Option<&Arc<turnpike_signal::Signal>>,
    health: &Arc<health::Health>,
) -> (axum::Router, axum::Router) {
    let api = control.map(|c| {
        let r = c.router();
        match signal {
            // Signalling behind the same client guard as the API (deny list, key throttle).
            Some(s) => r.merge(turnpike_api::guard::guarded(
                c.state.clone(),
                turnpike_signal::rest::router(s.clone()),
            )),
            None => r,
        }
    });
    http::routers(http::Parts {
        metrics: recorder,
        metrics_token: cfg.metrics_token.clone(),
        api,
        demo: signal
            .zip(control)
            .filter(|_| cfg.demo_enabled)
            .map(|(s, c)| {
                turnpike_api::guard::guarded(
                    c.state.clone(),
                    turnpike_signal::rest::demo_router(s.clone()),
                )
            }),
        demo_public: cfg.demo_public,
        health: health.clone(),
    })
}

/// The driver's configuration: listeners, TLS/DTLS, the HTTP services of the shared ports,
/// relay ports, timeouts, connection caps and the usage sink.
#[allow(clippy::too_many_arguments)]
fn driver_config(
    cfg: &Config,
    proto: &ServerConfig,
    caps: &limits::Caps,
    workers: usize,
    certs: Option<&Arc<CertStore>>,
    dtls: Option<Arc<DtlsContext>>,
    health: &Arc<health::Health>,
    public_router: axum::Router,
    acme: Option<&acme::Acme>,
    control: Option<&turnpike_api::ControlPlane>,
) -> DriverConfig {
    let header_timeout = cfg.http_header_timeout.get();
    DriverConfig {
        udp_listen: udp_listeners(cfg, proto),
        tcp_listen: cfg.listen_tcp.clone(),
        tls_listen: cfg.listen_tls.clone(),
        tls: certs.map(|c| c.server_config()),
        tls_handshake_timeout: cfg.tls_handshake_timeout.get(),
        dtls_listen: cfg.listen_dtls.clone(),
        mux_listen: cfg.listen_mux.clone(),
        mux_plain_listen: cfg.listen_mux_plain.clone(),
        http_plain: Some(http::service(
            http::redirect_router(
                health.clone(),
                cfg.public_host.clone(),
                acme.map(|a| a.http01.clone()),
            ),
            header_timeout,
        )),
        mux_tls: certs.map(|c| c.server_config_with_alpn(&[turnpike_server::mux::ALPN_HTTP11])),
        http: Some(http::service(public_router, header_timeout)),
        dtls,
        relay_ipv4: cfg.relay_ipv4.0.clone(),
        relay_ipv6: cfg.relay_ipv6.0.clone(),
        relay_port_min: cfg.relay_port_min,
        relay_port_max: cfg.relay_port_max,
        workers,
        tcp_idle_timeout: cfg.tcp_idle_timeout.get(),
        tcp_first_frame_timeout: cfg.tcp_first_frame_timeout.get(),
        tcp_frame_timeout: cfg.tcp_frame_timeout.get(),
        connections: turnpike_server::conn_limit::ConnectionLimits::new(
            "turn",
            caps.turn_connections,
            caps.turn_per_source,
        ),
        accounting: control.map(|c| c.sink()),
        ..DriverConfig::default()
    }
}

/// The private HTTP listener (`metrics_listen`): metrics, the API, signalling, the demo.
async fn serve_private_http(
    cfg: &Config,
    router: axum::Router,
    caps: &limits::Caps,
    directory: Arc<turnpike_proto::Directory>,
) -> Result<()> {
    if cfg.metrics_listen.is_empty() {
        return Ok(());
    }
    let addr: std::net::SocketAddr = cfg.metrics_listen.parse().context("key `metrics_listen`")?;
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve metrics on {addr} (key `metrics_listen`)"))?;
    let limits = turnpike_server::conn_limit::ConnectionLimits::new(
        "http",
        caps.http_connections,
        caps.http_per_source,
    );
    tokio::spawn(http::serve_listener(
        l,
        router,
        limits,
        directory,
        cfg.http_header_timeout.get(),
    ));
    if !addr.ip().is_loopback() && cfg.metrics_token.is_none() {
        tracing::warn!(%addr, "metrics_listen is not a loopback address: /metrics, the demo pages and the API are reachable from the network; firewall it or set metrics_token and serve the public side on listen_mux");
    }
    tracing::info!(%addr, "metrics and API at http://{addr}/");
    Ok(())
}

/// The DTLS context, when DTLS listeners and a certificate store exist.
fn dtls_context(
    cfg: &Config,
    certs: Option<&Arc<CertStore>>,
) -> Result<Option<Arc<turnpike_server::dtls::DtlsContext>>> {
    let Some(store) = certs.filter(|_| !cfg.listen_dtls.is_empty()) else {
        return Ok(None);
    };
    let (c, k) = store.dtls_der();
    turnpike_server::dtls::DtlsContext::new(
        c,
        k,
        cfg.tls_handshake_timeout.get(),
        cfg.tcp_idle_timeout.get(),
    )
    .map(Some)
    .map_err(|e| anyhow::anyhow!("DTLS configuration: {e}"))
}

/// The UDP listeners, plus for RFC 5780 all four combinations of the two IPs and two ports.
fn udp_listeners(cfg: &Config, proto: &ServerConfig) -> Vec<std::net::SocketAddr> {
    let mut udp_listen = cfg.listen_udp.clone();
    if let Some(r) = proto.rfc5780 {
        for ip in [r.primary_ip, r.alternate_ip] {
            for port in [r.primary_port, r.alternate_port] {
                let covered = udp_listen.iter().any(|l| {
                    l.port() == port
                        && (l.ip() == ip
                            || (l.ip().is_unspecified() && l.is_ipv4() == ip.is_ipv4()))
                });
                if !covered {
                    udp_listen.push(std::net::SocketAddr::new(ip, port));
                }
            }
        }
        tracing::info!(primary = %r.primary_ip, alternate = %r.alternate_ip, ports = ?(r.primary_port, r.alternate_port), "RFC 5780 NAT behaviour discovery enabled");
    }
    udp_listen
}

/// The TLS certificate store, if any TLS listener is configured: PEM files, or a self-signed
/// development certificate (said loudly in the log).
fn tls_store(cfg: &Config) -> Result<Option<Arc<CertStore>>> {
    if cfg.listen_tls.is_empty() && cfg.listen_dtls.is_empty() && cfg.listen_mux.is_empty() {
        return Ok(None);
    }
    let source = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => CertSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        _ if !cfg.acme_domains.is_empty() => {
            tracing::info!(domains = ?cfg.acme_domains, "TLS certificate from ACME (a self-signed one stands in until the first is issued)");
            CertSource::SelfSigned {
                names: cfg.acme_domains.clone(),
            }
        }
        _ => {
            tracing::warn!(
                names = ?cfg.tls_self_signed_names,
                "no tls_cert/tls_key configured: serving TURNS with a generated SELF-SIGNED certificate (development only; clients will not trust it)"
            );
            CertSource::SelfSigned {
                names: cfg.tls_self_signed_names.clone(),
            }
        }
    };
    let store = CertStore::new(source).context("TLS certificate (keys `tls_cert`, `tls_key`)")?;
    Ok(Some(store))
}

/// Starts the driver; if the default dual-stack listeners fail only on IPv6 (no IPv6 on the
/// host), retries with IPv4 alone and says so.
fn start_with_fallback(
    proto: Arc<ServerConfig>,
    relay: Arc<Runtime>,
    driver: DriverConfig,
) -> Result<turnpike_server::RunningServer> {
    match turnpike_server::start(proto.clone(), relay.clone(), driver.clone()) {
        Ok(s) => Ok(s),
        Err(turnpike_server::StartError::Listen { addr, source, .. })
            if addr.is_ipv6()
                && addr.ip().is_unspecified()
                && source.kind() == std::io::ErrorKind::AddrNotAvailable =>
        {
            tracing::warn!(%addr, "IPv6 unavailable on this host; serving IPv4 only");
            let mut d = driver;
            d.udp_listen.retain(|a| a.is_ipv4());
            d.tcp_listen.retain(|a| a.is_ipv4());
            d.tls_listen.retain(|a| a.is_ipv4());
            d.dtls_listen.retain(|a| a.is_ipv4());
            d.mux_listen.retain(|a| a.is_ipv4());
            d.mux_plain_listen.retain(|a| a.is_ipv4());
            Ok(turnpike_server::start(proto, relay, d)?)
        }
        Err(e) => Err(e).context("start-up failed (check keys `listen_udp` and `listen_tcp`)"),
    }
}

/// Modification times of the certificate files, to notice a swap on disk.
fn cert_mtimes(store: &Option<Arc<CertStore>>) -> Vec<Option<std::time::SystemTime>> {
    store
        .iter()
        .flat_map(|s| s.watched_files())
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

fn reload_certs(store: &Option<Arc<CertStore>>, dtls: &Option<Arc<DtlsContext>>, why: &str) {
    if let Some(s) = store {
        match s.reload() {
            Ok(()) => {
                if let Some(d) = dtls {
                    let (c, k) = s.dtls_der();
                    d.set_certificate(c, k);
                }
                tracing::info!(why, "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::error!(why, error = %e, "TLS certificate reload failed; keeping the current one");
            }
        }
    }
}

/// Waits for SIGTERM/SIGINT; SIGUSR1 enters drain mode (and with `drain_exit`, stops once the
/// last allocation has gone); SIGHUP, or a change of the certificate files, reloads TLS
/// certificates without dropping connections.
async fn wait_for_stop(
    relay: &Runtime,
    drain_exit: bool,
    certs: Option<Arc<CertStore>>,
    dtls: Option<Arc<DtlsContext>>,
    reload: Reload,
) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("cannot watch SIGUSR1")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut mtimes = cert_mtimes(&certs);
    loop {
        tokio::select! {
            _ = hup.recv() => {
                reload_certs(&certs, &dtls, "SIGHUP");
                // Settings that apply without a restart: the client deny list.
                match reload() {
                    Ok(new) => {
                        relay.directory.set_configured_denied_clients(new.denied_client_ranges.clone());
                        tracing::info!(ranges = new.denied_client_ranges.len(), "configuration re-read: denied_client_ranges applied");
                    }
                    Err(e) => tracing::error!(error = %e, "configuration re-read failed; keeping the current deny list"),
                }
            }
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = usr1.recv() => {
                relay.start_draining();
                tracing::info!(live = relay.quota.total(), "drain mode: refusing new allocations, existing ones continue");
            }
            _ = tick.tick() => {
                let now = cert_mtimes(&certs);
                if now != mtimes {
                    mtimes = now;
                    reload_certs(&certs, &dtls, "certificate files changed");
                }
                if drain_exit && relay.is_draining() && relay.quota.total() == 0 {
                    tracing::info!("drained: no allocations left");
                    return Ok(());
                }
            }
        }
    }
}
