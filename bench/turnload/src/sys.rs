//! Thin wrappers over the Linux calls the hot loop needs: epoll, recvmmsg/sendmmsg, UDP GSO and
//! socket buffer sizes. Every buffer is made once; nothing here allocates per packet.

use std::io;
use std::mem;
use std::os::fd::RawFd;

/// Bytes reserved per datagram slot (a 1200 B payload plus STUN/ChannelData framing fits).
pub(crate) const SLOT: usize = 2048;

/// The most UDP payload bytes one send may carry over IPv4 (65535 - 20 IP - 8 UDP header): a
/// GSO send is one datagram to the kernel until it is segmented, so all its segments together
/// must fit, or the kernel refuses it with EMSGSIZE.
const UDP_MAX_PAYLOAD: usize = 65_507;
/// The most segments the kernel accepts in one UDP_SEGMENT send (UDP_MAX_SEGMENTS).
const GSO_MAX_SEGMENTS: usize = 64;

/// How many datagrams of `len` bytes one GSO send may carry: at most 64, and no more than fit in
/// 65507 bytes (54 of 1200 B); at least 1, so a run always makes progress.
pub(crate) fn gso_max_segments(len: usize) -> usize {
    (UDP_MAX_PAYLOAD / len.max(1)).clamp(1, GSO_MAX_SEGMENTS)
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Sets SO_RCVBUF/SO_SNDBUF, past `net.core.*mem_max` when running as root (the *FORCE options).
pub(crate) fn set_buffers(fd: RawFd, bytes: usize) {
    let v = bytes as libc::c_int;
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        for opt in [force, plain] {
            // SAFETY: setsockopt with a valid pointer to a c_int and its size.
            let r = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    (&v as *const libc::c_int).cast(),
                    mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r == 0 {
                break;
            }
        }
    }
}

/// A level-triggered epoll set; tokens are the caller's indices.
pub(crate) struct Epoll {
    fd: RawFd,
}

impl Epoll {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: plain syscall.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Self { fd })
    }

    pub(crate) fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        cvt(unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
        Ok(())
    }

    /// Waits up to `timeout_ms` and returns how many of `events` were filled.
    pub(crate) fn wait(
        &self,
        events: &mut [libc::epoll_event],
        timeout_ms: i32,
    ) -> io::Result<usize> {
        // SAFETY: the kernel writes at most `events.len()` entries into `events`.
        let n = unsafe {
            libc::epoll_wait(
                self.fd,
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(n as usize)
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe { libc::close(self.fd) };
    }
}

/// A batch of datagram slots with their iovecs, source addresses and mmsghdrs, for recvmmsg and
/// sendmmsg. The heap buffers are never resized, so the raw pointers stay valid.
pub(crate) struct Batch {
    bufs: Vec<u8>,
    iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    hdrs: Vec<libc::mmsghdr>,
    /// Second header set for echoing received datagrams back to their sources.
    echo_hdrs: Vec<libc::mmsghdr>,
    echo_iovs: Vec<libc::iovec>,
    /// GSO echo: one header per run of same-source, same-length datagrams, its control message
    /// and how many datagrams it carries.
    gso_hdrs: Vec<libc::mmsghdr>,
    gso_ctl: Vec<[u64; 4]>,
    gso_count: Vec<usize>,
}

impl Batch {
    pub(crate) fn new(n: usize) -> Self {
        let mut b = Self {
            bufs: vec![0u8; n * SLOT],
            // SAFETY (the three zeroed vectors): iovec, sockaddr_storage and mmsghdr are plain C
            // structs for which all-zero is a valid value.
            iovs: vec![unsafe { mem::zeroed() }; n],
            names: vec![unsafe { mem::zeroed() }; n],
            hdrs: vec![unsafe { mem::zeroed() }; n],
            echo_hdrs: vec![unsafe { mem::zeroed() }; n],
            echo_iovs: vec![unsafe { mem::zeroed() }; n],
            gso_hdrs: vec![unsafe { mem::zeroed() }; n],
            gso_ctl: vec![[0u64; 4]; n],
            gso_count: vec![0; n],
        };
        let base = b.bufs.as_mut_ptr();
        for i in 0..n {
            // SAFETY: i * SLOT is within `bufs`.
            b.iovs[i].iov_base = unsafe { base.add(i * SLOT) }.cast();
            b.iovs[i].iov_len = SLOT;
            b.hdrs[i].msg_hdr.msg_iov = &mut b.iovs[i];
            b.hdrs[i].msg_hdr.msg_iovlen = 1;
            b.echo_iovs[i].iov_base = b.iovs[i].iov_base;
            b.echo_hdrs[i].msg_hdr.msg_iov = &mut b.echo_iovs[i];
            b.echo_hdrs[i].msg_hdr.msg_iovlen = 1;
            b.echo_hdrs[i].msg_hdr.msg_name =
                (&mut b.names[i] as *mut libc::sockaddr_storage).cast();
        }
        b
    }

    pub(crate) fn len(&self) -> usize {
        self.hdrs.len()
    }

    /// Slot `i` for writing a datagram to send.
    pub(crate) fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i * SLOT..(i + 1) * SLOT]
    }

    /// The first `len` bytes of slot `i` (after a receive).
    pub(crate) fn received(&self, i: usize) -> &[u8] {
        let len = (self.hdrs[i].msg_len as usize).min(SLOT);
        &self.bufs[i * SLOT..i * SLOT + len]
    }

    /// Receives up to `n` datagrams without blocking; Ok(0) when none are waiting.
    pub(crate) fn recv(&mut self, fd: RawFd, n: usize, with_names: bool) -> io::Result<usize> {
        let n = n.min(self.len());
        for i in 0..n {
            let h = &mut self.hdrs[i].msg_hdr;
            self.iovs[i].iov_len = SLOT;
            if with_names {
                h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            } else {
                h.msg_name = std::ptr::null_mut();
                h.msg_namelen = 0;
            }
        }
        // SAFETY: every header points at live iovecs/buffers/names owned by `self`.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(r as usize)
    }

    /// Sends back the first `n` received datagrams to their sources (one sendmmsg); returns how
    /// many the kernel took.
    pub(crate) fn echo(&mut self, fd: RawFd, n: usize) -> usize {
        for i in 0..n {
            self.echo_iovs[i].iov_len = self.hdrs[i].msg_len as usize;
            self.echo_hdrs[i].msg_hdr.msg_namelen = self.hdrs[i].msg_hdr.msg_namelen;
        }
        // SAFETY: as in `recv`.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                self.echo_hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        r.max(0) as usize
    }

    /// Like `echo`, but each run of consecutive datagrams from one source with one length goes
    /// back as one UDP_SEGMENT (GSO) message (at most `gso_max_segments(len)` datagrams, so the
    /// message stays within the UDP size limit), all runs in one sendmmsg. Returns how many
    /// datagrams the kernel took.
    pub(crate) fn echo_gso(&mut self, fd: RawFd, n: usize) -> usize {
        let same = |a: &libc::sockaddr_storage, b: &libc::sockaddr_storage| {
            // SAFETY: both hold what recvmmsg wrote: sockaddr_in for our IPv4 peers (family
            // checked), and sockaddr_storage is large and aligned enough for it.
            let (a, b) = unsafe {
                (
                    &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>(),
                    &*(b as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>(),
                )
            };
            a.sin_family == libc::AF_INET as libc::sa_family_t
                && a.sin_family == b.sin_family
                && a.sin_port == b.sin_port
                && a.sin_addr.s_addr == b.sin_addr.s_addr
        };
        let mut groups = 0;
        let mut i = 0;
        while i < n {
            let len = self.hdrs[i].msg_len as usize;
            let cap = gso_max_segments(len);
            let mut j = i + 1;
            while j < n
                && j - i < cap
                && self.hdrs[j].msg_len as usize == len
                && same(&self.names[i], &self.names[j])
            {
                j += 1;
            }
            for k in i..j {
                self.echo_iovs[k].iov_len = self.hdrs[k].msg_len as usize;
            }
            let h = &mut self.gso_hdrs[groups].msg_hdr;
            h.msg_iov = &mut self.echo_iovs[i];
            h.msg_iovlen = j - i;
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.hdrs[i].msg_hdr.msg_namelen;
            if j - i > 1 {
                h.msg_control = self.gso_ctl[groups].as_mut_ptr().cast();
                // SAFETY: CMSG_SPACE is a size computation; the control buffer (32 bytes) holds
                // one cmsghdr with a u16, and CMSG_FIRSTHDR points into it.
                unsafe {
                    h.msg_controllen = libc::CMSG_SPACE(mem::size_of::<u16>() as u32) as usize;
                    let cmsg = libc::CMSG_FIRSTHDR(h);
                    (*cmsg).cmsg_level = libc::SOL_UDP;
                    (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as usize;
                    std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), len as u16);
                }
            } else {
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            }
            self.gso_count[groups] = j - i;
            groups += 1;
            i = j;
        }
        // SAFETY: every header points at live iovecs, names and control buffers of `self`.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                self.gso_hdrs.as_mut_ptr(),
                groups as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        self.gso_count[..(r.max(0) as usize)].iter().sum()
    }

    /// Sends slots 0..n, each `len` bytes, on a connected socket (one sendmmsg).
    pub(crate) fn send(&mut self, fd: RawFd, n: usize, len: usize) -> usize {
        for i in 0..n {
            self.iovs[i].iov_len = len;
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = std::ptr::null_mut();
            h.msg_namelen = 0;
        }
        // SAFETY: as in `recv`.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        r.max(0) as usize
    }
}

/// Sends `buf` as datagrams of `seg` bytes each with one sendmsg and UDP_SEGMENT (GSO) on a
/// connected socket. Returns false when the kernel refused it. `buf` must hold at most
/// `gso_max_segments(seg)` segments (callers split longer batches).
pub(crate) fn send_gso(fd: RawFd, buf: &[u8], seg: u16) -> bool {
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // Room for one cmsg carrying a u16, aligned as cmsghdr requires.
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure size computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(mem::size_of::<u16>() as u32) } as usize;
    // SAFETY: msg_control points at `control`, large enough for one cmsg of a u16.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), seg);
    }
    // SAFETY: `msg` and what it points at are valid for the call.
    let r = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT) };
    r >= 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    #[test]
    fn gso_runs_fit_in_one_udp_datagram() {
        assert_eq!(gso_max_segments(100), 64);
        assert_eq!(gso_max_segments(1023), 64); // 64 × 1023 = 65472 still fits
        assert_eq!(gso_max_segments(1024), 63); // 64 × 1024 = 65536 would not
        assert_eq!(gso_max_segments(1200), 54);
        assert_eq!(gso_max_segments(1204), 54);
        assert_eq!(gso_max_segments(65_507), 1);
        assert_eq!(gso_max_segments(0), 64);
        assert_eq!(gso_max_segments(70_000), 1);
        for len in 1..=SLOT {
            let n = gso_max_segments(len);
            assert!(
                (1..=64).contains(&n) && n * len <= 65_507,
                "{len} B: {n} segments"
            );
        }
    }

    /// 64 datagrams of 1200 B from one source, echoed with GSO: before the cap they went back as
    /// one 76.8 kB message, which the kernel refused (all 64 counted as refused echoes).
    #[test]
    fn echo_gso_of_64_large_datagrams_is_taken_whole() {
        let src = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        set_buffers(src.as_raw_fd(), 1 << 20);
        set_buffers(peer.as_raw_fd(), 1 << 20);
        let payload = [0x5au8; 1200];
        for _ in 0..64 {
            src.send_to(&payload, peer.local_addr().unwrap()).unwrap();
        }
        // Loopback delivers in the sender's softirq, normally before send_to returns; the pause
        // covers a deferral to ksoftirqd. One recvmmsg then takes all 64.
        std::thread::sleep(Duration::from_millis(200));
        let mut px = Batch::new(64);
        let got = px.recv(peer.as_raw_fd(), 64, true).unwrap();
        assert_eq!(got, 64, "all 64 datagrams reach the peer socket");
        assert_eq!(px.echo_gso(peer.as_raw_fd(), got), 64);
        src.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 2048];
        for i in 0..64 {
            let n = src
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("echo {i}: {e}"));
            assert_eq!(&buf[..n], &payload[..]);
        }
    }
}
