//! `turnpike nat-check`: an RFC 5780 NAT behaviour discovery client. Against a STUN server that
//! answers with OTHER-ADDRESS (Turnpike with `rfc5780_alternate_ip`, coturn, ...) it reports the
//! NAT's mapping behaviour (RFC 5780 §4.3), filtering behaviour (§4.4), hairpinning (§4.5),
//! optionally the binding lifetime (§4.6, `--lifetime`), and the common name of the NAT (full
//! cone, restricted cone, port restricted cone, symmetric; RFC 4787 §4.1, §5).
//!
//! Transactions follow RFC 8489 §6.2.1 (RTO 500 ms, doubled on each retransmission), bounded by
//! `--timeout` per transaction. UDP only: the behaviours are those of UDP mappings.

mod classify;
mod stun;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::net::UdpSocket;

pub(crate) use self::classify::{Filtering, Mapping};
use self::stun::{Answer, Change, Reply, Silence};

/// `turnpike nat-check`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct NatCheckArgs {
    /// The STUN server: `stun:HOST[:PORT]` or `HOST[:PORT]` (port 3478 by default). It must
    /// support RFC 5780 (answer with OTHER-ADDRESS).
    #[arg(value_name = "SERVER")]
    server: String,
    /// The local address to send from: `IP` or `IP:PORT` (default: any address, a new port
    /// per test).
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Also measure how long an idle UDP binding lives (RFC 5780 §4.6): probes idle times up
    /// to `--lifetime-max` seconds, so the check takes minutes.
    #[arg(long)]
    lifetime: bool,
    /// The longest idle time `--lifetime` tries, in seconds (at most 600).
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    lifetime_max: u64,
    /// Seconds one transaction may take, retransmissions included (RFC 8489 §6.2.1); a test
    /// that expects no answer waits this long.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    timeout: f64,
}

/// What the check found.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Report {
    pub server: SocketAddr,
    pub other_address: SocketAddr,
    pub local: SocketAddr,
    pub mapped: SocketAddr,
    pub nat: bool,
    pub mapping: Mapping,
    pub filtering: Filtering,
    pub hairpinning: bool,
    /// Seconds an idle binding was seen to live, and the first idle time at which it was gone
    /// (`None`: alive up to `--lifetime-max`). Only with `--lifetime`.
    pub lifetime: Option<Lifetime>,
    pub nat_type: &'static str,
}

/// RFC 5780 §4.6's answer: the binding survived `alive_after` seconds idle and was gone after
/// `gone_after` (when it went within the range tried).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct Lifetime {
    pub alive_after: u64,
    pub gone_after: Option<u64>,
}

/// Runs the check and prints the report.
pub(crate) fn run(args: &NatCheckArgs) -> Result<()> {
    if !(args.timeout > 0.0 && args.timeout <= 60.0) {
        bail!("--timeout must be a positive number of seconds, at most 60");
    }
    if args.lifetime && !(1..=600).contains(&args.lifetime_max) {
        bail!("--lifetime-max must be 1 to 600 seconds");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let report = rt.block_on(check(args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", text(&report));
    }
    Ok(())
}

/// `stun:HOST[:PORT]` or `HOST[:PORT]` as (host, port).
fn parse_server(arg: &str) -> Result<(String, u16)> {
    let rest = match arg.split_once(':') {
        Some((s, rest)) if s.eq_ignore_ascii_case("stun") => rest.trim_start_matches("//"),
        Some((s, _))
            if s.eq_ignore_ascii_case("stuns") || s.to_ascii_lowercase().starts_with("turn") =>
        {
            bail!("`{arg}`: nat-check takes a stun: URI (RFC 5780 tests run over UDP)")
        }
        _ => arg,
    };
    if let Some(v6) = rest.strip_prefix('[') {
        let (host, tail) = v6
            .split_once(']')
            .with_context(|| format!("`{arg}`: no closing `]`"))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().with_context(|| format!("`{arg}`: bad port"))?,
            None if tail.is_empty() => 3478,
            None => bail!("`{arg}`: junk after `]`"),
        };
        return Ok((host.to_string(), port));
    }
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Ok((
            host.to_string(),
            port.parse().with_context(|| format!("`{arg}`: bad port"))?,
        )),
        _ if rest.is_empty() => bail!("`{arg}`: no host"),
        _ => Ok((rest.to_string(), 3478)),
    }
}

/// `--bind`: an IP, or IP:PORT.
fn parse_bind(arg: &str) -> Result<SocketAddr> {
    if let Ok(a) = arg.parse::<SocketAddr>() {
        return Ok(a);
    }
    let ip: IpAddr = arg
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .with_context(|| format!("--bind `{arg}`: not an IP address or IP:PORT"))?;
    Ok(SocketAddr::new(ip, 0))
}

struct Ctx {
    server: SocketAddr,
    bind: SocketAddr,
    /// Whether `--bind` named a port: then every test reuses it, one after the other.
    fixed_port: bool,
    limit: Duration,
}

impl Ctx {
    async fn socket(&self) -> Result<UdpSocket> {
        UdpSocket::bind(self.bind)
            .await
            .with_context(|| format!("cannot bind {}", self.bind))
    }

    /// A Binding request to `to` with `change`; only an answer from where RFC 5780 says it
    /// must come from counts (`other`: the server's OTHER-ADDRESS, for a CHANGE-REQUEST).
    async fn reply(
        &self,
        s: &UdpSocket,
        to: SocketAddr,
        change: Change,
        other: Option<SocketAddr>,
    ) -> Result<Reply<Answer>> {
        let from = change.source(to, other)?;
        stun::binding(s, to, from, change, self.limit).await
    }

    async fn ask(
        &self,
        s: &UdpSocket,
        to: SocketAddr,
        change: Change,
        other: Option<SocketAddr>,
    ) -> Result<Option<Answer>> {
        Ok(self.reply(s, to, change, other).await?.ok())
    }

    /// A Binding request that must be answered: the error says why not.
    async fn must(&self, s: &UdpSocket, to: SocketAddr) -> Result<Answer> {
        self.reply(s, to, Change::None, None)
            .await?
            .map_err(|why| no_answer(to, &why))
    }
}

async fn check(args: &NatCheckArgs) -> Result<Report> {
    let (host, port) = parse_server(&args.server)?;
    let bind = args.bind.as_deref().map(parse_bind).transpose()?;
    let server = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("cannot resolve `{host}`"))?
        .find(|a| bind.is_none_or(|b| b.is_ipv4() == a.is_ipv4()))
        .with_context(|| format!("`{host}` has no address of --bind's family"))?;
    let any: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let ctx = Ctx {
        server,
        bind: bind.unwrap_or(any),
        fixed_port: bind.is_some_and(|b| b.port() != 0),
        limit: Duration::from_secs_f64(args.timeout),
    };

    // Test I (RFC 5780 §4.3 and §4.4): the mapped address and the server's other address.
    let s = ctx.socket().await?;
    let local = local_addr(&s, server).await?;
    let one = ctx.must(&s, server).await?;
    let other = one.other.with_context(|| {
        format!(
            "{server} answered without OTHER-ADDRESS: it does not support RFC 5780 NAT behaviour \
             discovery (on Turnpike, set `rfc5780_alternate_ip`)"
        )
    })?;
    if other.ip() == server.ip() || other.port() == server.port() {
        bail!("{server}'s OTHER-ADDRESS {other} does not differ in both address and port");
    }
    let nat = one.mapped != local;
    // §4.4 filtering first, on the binding test I made: it has sent to the primary address
    // only (the mapping tests below open it to the other address, which an address-dependent
    // filter would then let in). One socket for every test, so `--bind IP:PORT` works too.
    let ip_and_port = ctx.ask(&s, server, Change::IpAndPort, Some(other)).await?;
    let port_only = if ip_and_port.is_some() {
        None
    } else {
        ctx.ask(&s, server, Change::Port, Some(other)).await?
    };
    let filtering = classify::filtering(ip_and_port.is_some(), port_only.is_some());
    // §4.3 test II: the other address, the same port. Test III: the other address and port.
    let two = ctx
        .must(&s, SocketAddr::new(other.ip(), server.port()))
        .await?;
    let mapping = if two.mapped == one.mapped {
        Mapping::EndpointIndependent
    } else {
        let three = ctx.must(&s, other).await?;
        classify::mapping(one.mapped, two.mapped, three.mapped)
    };
    // §4.5 hairpinning: a request to our own mapped address comes back to us.
    let hairpinning = stun::hairpin(&s, one.mapped, ctx.limit).await?;
    drop(s);

    let lifetime = if args.lifetime {
        Some(lifetime(&ctx, args.lifetime_max).await?)
    } else {
        None
    };
    Ok(Report {
        server,
        other_address: other,
        local,
        mapped: one.mapped,
        nat,
        mapping,
        filtering,
        hairpinning,
        lifetime,
        nat_type: classify::common_name(nat, mapping, filtering),
    })
}

/// The error for a transaction that had to be answered and was not.
fn no_answer(to: SocketAddr, why: &Silence) -> anyhow::Error {
    match why {
        Silence::NoAnswer => {
            anyhow::anyhow!("no answer from {to} (UDP blocked, or no STUN server there)")
        }
        Silence::NoRoute(e) => anyhow::anyhow!(
            "no answer from {to}: no route to it ({e}): this network sends no UDP there \
             (only a proxy, or no way out)"
        ),
    }
}

/// The local address the kernel uses towards `server` (the socket's own when it is bound to one).
async fn local_addr(s: &UdpSocket, server: SocketAddr) -> Result<SocketAddr> {
    let mine = s.local_addr()?;
    if !mine.ip().is_unspecified() {
        return Ok(mine);
    }
    let probe = UdpSocket::bind(SocketAddr::new(mine.ip(), 0)).await?;
    if let Err(e) = probe.connect(server).await {
        // No route at all (a network with only a proxy): the same as test I's no answer.
        return Err(match e.kind() {
            std::io::ErrorKind::NetworkUnreachable | std::io::ErrorKind::HostUnreachable => {
                no_answer(server, &Silence::NoRoute(e))
            }
            _ => anyhow::Error::new(e).context(format!("no local address towards {server}")),
        });
    }
    Ok(SocketAddr::new(probe.local_addr()?.ip(), mine.port()))
}

/// RFC 5780 §4.6: socket X learns its mapping, stays idle `t` seconds, then socket Y asks the
/// server to answer to X's mapped port (RESPONSE-PORT); X hears it while the binding lives.
/// Idle times double from 1 s up to `max`, then two bisection steps narrow the range.
async fn lifetime(ctx: &Ctx, max: u64) -> Result<Lifetime> {
    if ctx.fixed_port {
        bail!("--lifetime needs two local ports: give --bind an address without a port");
    }
    let mut alive_after = 0;
    let mut gone_after = None;
    let mut t = 1;
    while t <= max {
        if alive(ctx, t).await? {
            alive_after = t;
            t = if t == max { max + 1 } else { (t * 2).min(max) };
        } else {
            gone_after = Some(t);
            break;
        }
    }
    if let Some(mut hi) = gone_after {
        for _ in 0..2 {
            let mid = alive_after + (hi - alive_after) / 2;
            if mid <= alive_after || mid >= hi {
                break;
            }
            if alive(ctx, mid).await? {
                alive_after = mid;
            } else {
                hi = mid;
            }
        }
        gone_after = Some(hi);
    }
    Ok(Lifetime {
        alive_after,
        gone_after,
    })
}

async fn alive(ctx: &Ctx, idle: u64) -> Result<bool> {
    let x = ctx.socket().await?;
    let first = ctx.must(&x, ctx.server).await?;
    tokio::time::sleep(Duration::from_secs(idle)).await;
    let y = ctx.socket().await?;
    stun::binding_elsewhere(&y, &x, ctx.server, first.mapped.port(), ctx.limit).await
}

fn text(r: &Report) -> String {
    let yes = |b| if b { "yes" } else { "no" };
    let mut out = format!(
        "server           {} (other address {})\n\
         local address    {}\n\
         mapped address   {}{}\n\
         mapping          {}\n\
         filtering        {}\n\
         hairpinning      {}\n",
        r.server,
        r.other_address,
        r.local,
        r.mapped,
        if r.nat { "" } else { " (no NAT)" },
        r.mapping.describe(),
        r.filtering.describe(),
        yes(r.hairpinning),
    );
    if let Some(l) = r.lifetime {
        out.push_str(&match l.gone_after {
            Some(g) => format!(
                "binding lifetime alive after {} s idle, gone after {g} s\n",
                l.alive_after
            ),
            None => format!(
                "binding lifetime alive after {} s idle (the longest tried)\n",
                l.alive_after
            ),
        });
    }
    out.push_str(&format!("NAT type         {}\n", r.nat_type));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_arguments() {
        assert_eq!(
            parse_server("stun:203.0.113.10").unwrap(),
            ("203.0.113.10".into(), 3478)
        );
        assert_eq!(
            parse_server("stun:example.com:3479").unwrap(),
            ("example.com".into(), 3479)
        );
        assert_eq!(
            parse_server("[2001:db8::1]:5000").unwrap(),
            ("2001:db8::1".into(), 5000)
        );
        assert_eq!(
            parse_server("stun:[2001:db8::1]").unwrap(),
            ("2001:db8::1".into(), 3478)
        );
        assert!(parse_server("turn:example.com").is_err());
        assert!(parse_server("stun:host:notaport").is_err());
    }

    #[test]
    fn bind_arguments() {
        assert_eq!(
            parse_bind("192.0.2.2").unwrap(),
            "192.0.2.2:0".parse().unwrap()
        );
        assert_eq!(
            parse_bind("192.0.2.2:4000").unwrap(),
            "192.0.2.2:4000".parse().unwrap()
        );
        assert_eq!(parse_bind("[::1]").unwrap(), "[::1]:0".parse().unwrap());
        assert!(parse_bind("nowhere").is_err());
    }
}
