//! Batched datagram system calls: `recvmmsg` on relay sockets (many peer datagrams per call)
//! and `sendmmsg` on listeners (many client datagrams, to different clients, per call).
//!
//! Why here and not `quinn-udp`: its 0.5 series sends one message per call (several only as
//! one GSO train to a single destination), and its receive needs per-socket state set up with
//! extra socket options, too dear for a relay socket made per allocation. These wrappers do
//! only the calls, non-blocking, with `IP_PKTINFO`/`IPV6_PKTINFO` for sends from a wildcard
//! listener. No datagram is split or joined.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ops::Range;
use std::os::fd::RawFd;

/// Messages per `sendmmsg` call (well under the kernel's `UIO_MAXIOV`).
const SEND_CHUNK: usize = 64;

/// Room for one `IP_PKTINFO` or `IPV6_PKTINFO` control message, 8-byte aligned.
type CmsgBuf = [u64; 8];

/// Reads up to `out.len()` datagrams from `fd` with one non-blocking `recvmmsg`, datagram `i`
/// into `storage[slot(i)]` where `slot(i) = i * stride + offset .. + cap`. Fills `out[i]` with
/// each datagram's length and source and returns how many were read (`WouldBlock` when none
/// was queued). A datagram longer than `cap` is dropped (its length is reported as `usize::MAX`).
pub(crate) fn recv_batch(
    fd: RawFd,
    storage: &mut [u8],
    stride: usize,
    offset: usize,
    cap: usize,
    out: &mut [(usize, SocketAddr)],
) -> io::Result<usize> {
    const MAX: usize = 32;
    let n = out.len().min(MAX).min(storage.len() / stride.max(1));
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut names: [libc::sockaddr_storage; MAX] = unsafe { zeroed() };
    // SAFETY: as above.
    let mut iovs: [libc::iovec; MAX] = unsafe { zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; MAX] = unsafe { zeroed() };
    let base = storage.as_mut_ptr();
    for i in 0..n {
        assert!(
            i * stride + offset + cap <= storage.len(),
            "slot inside storage"
        );
        // SAFETY: the slot lies inside `storage` (asserted above).
        iovs[i].iov_base = unsafe { base.add(i * stride + offset) }.cast();
        iovs[i].iov_len = cap;
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        h.msg_iov = &mut iovs[i];
        h.msg_iovlen = 1;
    }
    // SAFETY: `hdrs[..n]` point at live buffers of the stated lengths for the whole call.
    let r = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let r = r as usize;
    for i in 0..r {
        let len = if hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            usize::MAX
        } else {
            hdrs[i].msg_len as usize
        };
        let from = sockaddr_to_std(&names[i]).unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        out[i] = (len, from);
    }
    Ok(r)
}

/// One datagram of a send batch: its bytes in the batch's arena and where it goes.
#[derive(Clone, Debug)]
pub(crate) struct Outgoing {
    pub to: SocketAddr,
    /// The source address to send from (a listener bound to a wildcard address).
    pub src_ip: Option<IpAddr>,
    pub bytes: Range<usize>,
}

/// Sends `items` (their bytes in `arena`) from `fd` with as few `sendmmsg` calls as the batch
/// allows, and calls `failed(i)` for each item the socket refused (a full buffer refuses the
/// rest of the batch; any other error refuses only the datagram it names).
pub(crate) fn send_batch(
    fd: RawFd,
    arena: &[u8],
    items: &[Outgoing],
    mut failed: impl FnMut(usize),
) {
    let mut start = 0;
    while start < items.len() {
        let chunk = &items[start..items.len().min(start + SEND_CHUNK)];
        match send_chunk(fd, arena, chunk) {
            Ok(0) => {
                failed(start);
                start += 1;
            }
            Ok(n) => start += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                (start..items.len()).for_each(&mut failed);
                return;
            }
            Err(e) => {
                tracing::trace!(error = %e, to = %items[start].to, "udp send error");
                failed(start);
                start += 1;
            }
        }
    }
}

fn send_chunk(fd: RawFd, arena: &[u8], chunk: &[Outgoing]) -> io::Result<usize> {
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut names: [libc::sockaddr_storage; SEND_CHUNK] = unsafe { zeroed() };
    // SAFETY: as above.
    let mut iovs: [libc::iovec; SEND_CHUNK] = unsafe { zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; SEND_CHUNK] = unsafe { zeroed() };
    let mut cmsgs: [CmsgBuf; SEND_CHUNK] = [[0; 8]; SEND_CHUNK];
    for (i, o) in chunk.iter().enumerate() {
        let data = &arena[o.bytes.clone()];
        iovs[i].iov_base = data.as_ptr() as *mut libc::c_void;
        iovs[i].iov_len = data.len();
        let namelen = std_to_sockaddr(o.to, &mut names[i]);
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = namelen;
        h.msg_iov = &mut iovs[i];
        h.msg_iovlen = 1;
        if let Some(src) = o.src_ip {
            set_pktinfo(h, &mut cmsgs[i], src);
        }
    }
    // SAFETY: `hdrs[..chunk.len()]` point at live names, iovecs and control buffers, and the
    // iovecs at `arena`, all outliving the call; the kernel only reads them.
    let r = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), chunk.len() as libc::c_uint, 0) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Asks for `src` as the datagram's source address (the listener is bound to a wildcard).
fn set_pktinfo(h: &mut libc::msghdr, buf: &mut CmsgBuf, src: IpAddr) {
    h.msg_control = buf.as_mut_ptr().cast();
    h.msg_controllen = size_of::<CmsgBuf>() as _;
    // SAFETY: `msg_control` points at `buf`, large and aligned enough for one header and an
    // `in6_pktinfo` (the larger payload); CMSG_* only compute addresses inside it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(h);
        match src {
            IpAddr::V4(ip) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from_ne_bytes(ip.octets()),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                (*c).cmsg_level = libc::IPPROTO_IP;
                (*c).cmsg_type = libc::IP_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), info);
                h.msg_controllen = libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as _;
            }
            IpAddr::V6(ip) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: ip.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                (*c).cmsg_level = libc::IPPROTO_IPV6;
                (*c).cmsg_type = libc::IPV6_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), info);
                h.msg_controllen = libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as u32) as _;
            }
        }
    }
}

fn std_to_sockaddr(a: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match a {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

fn sockaddr_to_std(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((s as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((s as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_goes_out_and_comes_back_in_one_call_each() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
        let rx6 = std::net::UdpSocket::bind("[::1]:0").ok();
        let tx = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind wildcard");
        let to = rx.local_addr().expect("bound");
        let mut arena = Vec::new();
        let mut items = Vec::new();
        for i in 0..5u8 {
            let start = arena.len();
            arena.extend(std::iter::repeat_n(i, 10 + usize::from(i)));
            items.push(Outgoing {
                to,
                // From the wildcard socket, with a chosen source address.
                src_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                bytes: start..arena.len(),
            });
        }
        let mut refused = Vec::new();
        send_batch(tx.as_raw_fd(), &arena, &items, |i| refused.push(i));
        assert!(refused.is_empty());
        let stride = 100;
        let mut storage = vec![0u8; 8 * stride];
        let mut out = [(0usize, SocketAddr::from(([0, 0, 0, 0], 0))); 8];
        rx.set_nonblocking(true).expect("nonblocking");
        let n = recv_batch(rx.as_raw_fd(), &mut storage, stride, 4, 60, &mut out).expect("recv");
        assert_eq!(n, 5);
        let from = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            tx.local_addr().expect("bound").port(),
        );
        for (i, (len, src)) in out[..n].iter().enumerate() {
            assert_eq!(*len, 10 + i);
            assert_eq!(*src, from);
            let slot = &storage[i * stride + 4..][..*len];
            assert!(slot.iter().all(|b| usize::from(*b) == i));
        }
        let again = recv_batch(rx.as_raw_fd(), &mut storage, stride, 4, 60, &mut out);
        assert_eq!(
            again.expect_err("queue drained").kind(),
            io::ErrorKind::WouldBlock
        );
        // Too long for the slot: reported, not cut.
        let big = vec![7u8; 80];
        tx.send_to(&big, to).expect("send");
        let n = recv_batch(rx.as_raw_fd(), &mut storage, stride, 4, 60, &mut out).expect("recv");
        assert_eq!((n, out[0].0), (1, usize::MAX));
        if let Some(rx6) = rx6 {
            let tx6 = std::net::UdpSocket::bind("[::]:0").expect("bind v6 wildcard");
            let item = Outgoing {
                to: rx6.local_addr().expect("bound"),
                src_ip: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                bytes: 0..10,
            };
            send_batch(tx6.as_raw_fd(), &arena, &[item], |_| panic!("refused"));
            rx6.set_nonblocking(true).expect("nonblocking");
            let n =
                recv_batch(rx6.as_raw_fd(), &mut storage, stride, 0, 60, &mut out).expect("recv");
            assert_eq!(n, 1);
            assert_eq!(out[0].1.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
        }
    }
}
