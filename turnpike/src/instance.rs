//! One Turnpike per data directory and per listening address, and a data directory only its
//! owner can read.
//!
//! - The data directory (it holds the shared secret and the SQLite database with tenants'
//!   secrets) is created 0700, and tightened to 0700 if it exists looser; files in it are 0600.
//! - An exclusive lock on `turnpike.lock` in the data directory is held while serving: a second
//!   process on the same directory refuses to start.
//! - Before binding, every listening address is probed without `SO_REUSEPORT`: listeners bind
//!   with it (one socket per worker), which would let a second process on the same ports start
//!   and silently take half the traffic. A probe that finds the address in use stops start-up
//!   with a message naming the address and its key.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;

/// Creates the data directory 0700 (whatever the umask), or tightens an existing one.
pub(crate) fn ensure_data_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| {
                format!(
                    "cannot create the data directory {} (key `data_dir`)",
                    dir.display()
                )
            })?;
    }
    let meta = fs::metadata(dir).with_context(|| {
        format!(
            "cannot read the data directory {} (key `data_dir`)",
            dir.display()
        )
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).with_context(|| {
            format!(
                "the data directory {} is readable by others (mode {mode:o}) and cannot be tightened to 0700 (key `data_dir`)",
                dir.display()
            )
        })?;
        tracing::warn!(dir = %dir.display(), was = format!("{mode:o}"), "data directory tightened to 0700 (it holds secrets)");
    }
    Ok(())
}

/// The held instance lock; released when dropped (or when the process ends).
pub(crate) struct InstanceLock {
    _file: fs::File,
}

/// Takes the data directory's exclusive lock, or explains who holds it.
pub(crate) fn lock(dir: &Path) -> Result<InstanceLock> {
    ensure_data_dir(dir)?;
    let path = dir.join("turnpike.lock");
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {} (key `data_dir`)", path.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let holder = fs::read_to_string(&path).unwrap_or_default();
        bail!(
            "another Turnpike process (pid {}) is running with the data directory {}: stop it, or give this one its own `data_dir` and listeners",
            holder.trim(),
            dir.display()
        );
    }
    f.set_len(0)?;
    write!(f, "{}", std::process::id())?;
    Ok(InstanceLock { _file: f })
}

/// Fails when another process holds one of the configured listening addresses.
pub(crate) fn probe_listeners(cfg: &Config) -> Result<()> {
    let keyed: [(&str, &[SocketAddr], Type, Protocol); 6] = [
        ("listen_udp", &cfg.listen_udp, Type::DGRAM, Protocol::UDP),
        ("listen_dtls", &cfg.listen_dtls, Type::DGRAM, Protocol::UDP),
        ("listen_tcp", &cfg.listen_tcp, Type::STREAM, Protocol::TCP),
        ("listen_tls", &cfg.listen_tls, Type::STREAM, Protocol::TCP),
        ("listen_mux", &cfg.listen_mux, Type::STREAM, Protocol::TCP),
        (
            "listen_mux_plain",
            &cfg.listen_mux_plain,
            Type::STREAM,
            Protocol::TCP,
        ),
    ];
    for (key, addrs, ty, proto) in keyed {
        for addr in addrs.iter().filter(|a| a.port() != 0) {
            let s = Socket::new(Domain::for_address(*addr), ty, Some(proto))?;
            if addr.is_ipv6() {
                s.set_only_v6(true)?;
            }
            if ty == Type::STREAM {
                // Connections of an earlier run in TIME_WAIT do not count; a listener does.
                s.set_reuse_address(true)?;
            }
            match s.bind(&(*addr).into()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
                    "address in use by another process: {addr} (key `{key}`); stop the other server or choose other ports"
                ),
                // Anything else (no IPv6 on the host, ...) is for the real bind to report.
                Err(_) => {}
            }
        }
    }
    Ok(())
}
