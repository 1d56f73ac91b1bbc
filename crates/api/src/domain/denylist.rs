//! The client deny list (the operator's): networks whose requests are refused on every
//! listener, applied without a restart. Stored in the database; the directory snapshot carries
//! it (`Snapshot::denied_clients`), so this node applies a change at once and every node
//! sharing PostgreSQL at its next reload.
//!
//! An entry that contains the caller's own address is refused unless forced, so an operator
//! does not lock themselves out by mistake.

use std::net::IpAddr;

use ipnet::IpNet;
use turnpike_store::{DeniedClient, Store};

use super::error::{DomainError, DomainResult};
use super::{sync, validate};
use crate::state::AppState;

/// An entry to add, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub net: IpNet,
    pub note: Option<String>,
}

impl Denial {
    /// `cidr` (a network or an address) and `note`, for a caller at `caller` (an entry
    /// containing it is refused unless `force`).
    pub fn parse(
        cidr: &str,
        note: Option<&str>,
        caller: Option<IpAddr>,
        force: bool,
    ) -> DomainResult<Self> {
        let net = parse_cidr(cidr).ok_or_else(|| {
            DomainError::invalid(
                "`cidr` must be an IP address or network, e.g. 203.0.113.0/24 or 2001:db8::/32",
            )
        })?;
        if let Some(n) = note {
            validate::text("note", n, 200)?;
        }
        if let Some(me) = caller.filter(|ip| net.contains(ip)) {
            if !force {
                return Err(DomainError::invalid(format!(
                    "`cidr` {net} contains your own address {me}: you would lock yourself out; add \
                     `?force=true` to deny it anyway"
                )));
            }
        }
        Ok(Self {
            net,
            note: note.map(str::to_string),
        })
    }
}

/// A network or a bare address (`/32` or `/128`), normalised to its network address;
/// IPv4-mapped IPv6 networks become IPv4 (clients are judged by their IPv4 address).
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    let net = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => IpNet::from(s.parse::<IpAddr>().ok()?),
    };
    let net = match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(v4.into(), n.prefix_len() - 96).ok()?,
            None => net,
        },
        _ => net,
    };
    Some(net.trunc())
}

/// Adds an entry (409 if the network is listed already); it applies at once.
pub async fn add(state: &AppState, d: &Denial) -> DomainResult<DeniedClient> {
    let entry = DeniedClient {
        id: turnpike_store::new_id("deny"),
        cidr: d.net.to_string(),
        note: d.note.clone(),
        created_at: state.now(),
    };
    state.store.add_denied_client(&entry).await?;
    sync::after_change(state).await;
    Ok(entry)
}

pub async fn list(state: &AppState) -> DomainResult<Vec<DeniedClient>> {
    Ok(state.store.list_denied_clients().await?)
}

/// Removes an entry; returns the network it listed (if it could still be read).
pub async fn delete(state: &AppState, id: &str) -> DomainResult<Option<String>> {
    let cidr = list(state)
        .await?
        .into_iter()
        .find(|d| d.id == id)
        .map(|d| d.cidr);
    state.store.delete_denied_client(id).await?;
    sync::after_change(state).await;
    Ok(cidr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_bare_addresses() {
        let p = |s: &str| parse_cidr(s).map(|n| n.to_string());
        assert_eq!(p("203.0.113.7/24").as_deref(), Some("203.0.113.0/24"));
        assert_eq!(p("127.0.0.2").as_deref(), Some("127.0.0.2/32"));
        assert_eq!(p("2001:db8::1").as_deref(), Some("2001:db8::1/128"));
        assert_eq!(p("2001:db8::1/32").as_deref(), Some("2001:db8::/32"));
        assert_eq!(p("::ffff:192.0.2.1").as_deref(), Some("192.0.2.1/32"));
        assert_eq!(p("::ffff:192.0.2.0/120").as_deref(), Some("192.0.2.0/24"));
        for bad in [
            "",
            "x",
            "10.0.0.0/33",
            "1.2.3.4/8/8",
            " 10.0.0.1",
            "10.0.0.1 ",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_callers_own_address_needs_force() {
        let me = Some("203.0.113.9".parse().expect("a test address"));
        assert!(Denial::parse("203.0.113.0/24", None, me, false).is_err());
        assert!(Denial::parse("203.0.113.0/24", None, me, true).is_ok());
        assert!(Denial::parse("198.51.100.0/24", Some("scanner"), me, false).is_ok());
        assert!(Denial::parse("198.51.100.0/24", Some(""), me, false).is_err());
    }
}
