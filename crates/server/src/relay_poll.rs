//! One readiness set for all of a worker's UDP relay sockets: an epoll instance of its own
//! (level-triggered, each socket under a token), itself registered with the worker's tokio
//! reactor. One wake-up of the worker then reads every relay socket that has datagrams queued,
//! instead of one task wake-up per socket, and a relay costs no tokio task or registration.
//!
//! A socket leaves the set when it is closed (the kernel drops closed descriptors from an
//! epoll set; relay sockets are never duplicated).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;

/// The worker's relay readiness set.
pub(crate) struct RelayPoll {
    fd: AsyncFd<OwnedFd>,
}

/// Ready sockets reported per `epoll_wait`.
pub(crate) const MAX_READY: usize = 64;

impl RelayPoll {
    /// A new, empty set registered with the current tokio runtime.
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: plain system call; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the `OwnedFd` keeps the descriptor open, and always the same, for as long as
        // the `AsyncFd` owns it.
        let fd = unsafe { AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Self { fd })
    }

    /// Watches `sock` for datagrams under `token`.
    pub(crate) fn add(&self, sock: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: both descriptors are open; `ev` lives for the call.
        let r = unsafe { libc::epoll_ctl(self.raw(), libc::EPOLL_CTL_ADD, sock, &mut ev) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The tokens of sockets with datagrams queued now (without waiting), into `tokens`.
    pub(crate) fn ready(&self, tokens: &mut Vec<u64>) -> io::Result<()> {
        tokens.clear();
        // SAFETY: all-zero is a valid epoll_event.
        let mut evs: [libc::epoll_event; MAX_READY] = unsafe { std::mem::zeroed() };
        // SAFETY: `evs` has room for MAX_READY events.
        let n = unsafe { libc::epoll_wait(self.raw(), evs.as_mut_ptr(), MAX_READY as i32, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        tokens.extend(evs[..n as usize].iter().map(|e| e.u64));
        Ok(())
    }

    /// Waits until some socket of the set may be ready.
    pub(crate) async fn readable(
        &self,
    ) -> io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, OwnedFd>> {
        self.fd.readable().await
    }

    fn raw(&self) -> RawFd {
        self.fd.get_ref().as_raw_fd()
    }
}
