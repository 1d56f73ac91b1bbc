//! `turnpike probe`: tests any STUN/TURN server end to end (ours or not) and prints one row per
//! URL: Binding (mapped address, RTT); for TURN, Allocate with long-term credentials, two
//! allocations relaying to each other through permissions and channels (relay round trip),
//! and a clean-up Refresh. Credentials come from the command line or from an ICE-servers API.
//!
//! What it does not do: TCP relays (RFC 6062), load testing.

mod check;
mod client;
mod conn;
mod dtls;
mod error;
mod ice_api;
mod report;
mod tls;
mod uri;

use std::path::PathBuf;
use std::time::Duration;

use self::check::Settings;
use self::client::Credentials;
use self::error::ProbeError;
use self::report::Row;
use self::uri::Target;

/// `turnpike probe`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct ProbeArgs {
    /// Server URLs: `stun:HOST:PORT`, `turn:HOST:PORT?transport=udp|tcp`,
    /// `turns:HOST:PORT?transport=tcp` (TLS), `turns:HOST:PORT?transport=udp` (DTLS) (RFC
    /// 7064/7065), or a bare `HOST:PORT` for UDP and TCP.
    #[arg(value_name = "URL", required_unless_present = "api")]
    urls: Vec<String>,
    /// Username of the long-term credential (TURN).
    #[arg(long, requires = "password")]
    username: Option<String>,
    /// Password of the long-term credential.
    #[arg(
        long,
        env = "TURNPIKE_PROBE_PASSWORD",
        hide_env_values = true,
        requires = "username"
    )]
    password: Option<String>,
    /// Fetch ICE servers and credentials first: `GET {API}/v1/ice-servers?apiKey=K`, or the
    /// Metered-compatible `{API}/api/v1/turn/credentials?apiKey=K`; probe every URL returned.
    #[arg(long, value_name = "URL", requires = "api_key")]
    api: Option<String>,
    /// The API key for `--api` (a publishable key or a tenant's secret key).
    #[arg(
        long,
        value_name = "KEY",
        env = "TURNPIKE_PROBE_API_KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// DANGER: accept any TLS certificate (for a development or self-signed certificate).
    #[arg(long)]
    insecure: bool,
    /// Also trust the CA certificates of this PEM file (besides the webpki roots).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Seconds each step may take (connect, each request, the relay round trip).
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    timeout: f64,
}

/// Why the probe could not run at all (a failed probe is a row of the report instead).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    /// `--timeout` must be a positive number of seconds.
    #[error("--timeout must be a positive number of seconds, at most 600")]
    Timeout,
    /// The async runtime could not start (out of file descriptors or threads).
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// A URL could not be parsed, or the TLS settings are unusable.
    #[error(transparent)]
    Probe(#[from] ProbeError),
}

/// Runs the probe and prints the report; `Ok(false)` when any probe failed.
pub(crate) fn run(args: &ProbeArgs) -> Result<bool, RunError> {
    if !(args.timeout > 0.0 && args.timeout <= 600.0) {
        return Err(RunError::Timeout);
    }
    let step_timeout = Duration::from_secs_f64(args.timeout);
    let cli_credentials = match (&args.username, &args.password) {
        (Some(username), Some(password)) => Some(Credentials {
            username: username.clone(),
            password: password.clone(),
        }),
        _ => None,
    };
    let mut targets: Vec<(Target, Option<Credentials>)> = Vec::new();
    for u in &args.urls {
        for t in uri::parse(u, cli_credentials.is_some())? {
            targets.push((t, cli_credentials.clone()));
        }
    }
    if args.insecure {
        eprintln!("turnpike probe: --insecure: TLS certificates are not checked");
    }
    let settings = Settings {
        trust: tls::Trust::new(args.ca.as_deref(), args.insecure)?,
        step_timeout,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    let rows = rt.block_on(async {
        let mut rows = Vec::new();
        if let (Some(api), Some(key)) = (&args.api, &args.api_key) {
            // The whole HTTP exchange may take a few steps' time (DNS, TCP, TLS, the answer).
            match ice_api::fetch(api, key, &settings.trust, 3 * step_timeout).await {
                Ok(servers) => {
                    for s in servers {
                        for u in &s.urls {
                            match uri::parse(u, s.credentials.is_some()) {
                                Ok(ts) => targets
                                    .extend(ts.into_iter().map(|t| (t, s.credentials.clone()))),
                                Err(e) => rows.push(Row::new(u, "-").failed(e)),
                            }
                        }
                    }
                }
                Err(e) => rows.push(Row::new(api, "http").failed(e)),
            }
        }
        for (target, credentials) in &targets {
            rows.push(check::check(target, credentials.as_ref(), &settings).await);
        }
        rows
    });
    if args.json {
        println!("{}", report::json(&rows));
    } else {
        print!("{}", report::table(&rows));
    }
    // The caller may exit at once.
    std::io::Write::flush(&mut std::io::stdout()).ok();
    Ok(report::all_ok(&rows))
}
