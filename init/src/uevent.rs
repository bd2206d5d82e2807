//! The kernel's uevent multicast (`NETLINK_KOBJECT_UEVENT`, group 1): the
//! loader's coldplug reads device additions from it, PID 1 is woken by it
//! while it waits for the root disk.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    bind, recvfrom, setsockopt, socket, sockopt, AddressFamily, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};

/// Receive buffer asked for: a burst of a few thousand uevents (a
/// datagram is a few hundred bytes) waits here while the loop runs a
/// session; beyond it the kernel drops, and the loop reads a bounded
/// batch at a time.
const RCVBUF_BYTES: usize = 1 << 20;

#[derive(Debug)]
pub struct Socket(OwnedFd);

impl AsFd for Socket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Socket {
    pub fn open() -> nix::Result<Socket> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            SockProtocol::NetlinkKObjectUEvent,
        )?;
        // Best effort: the default buffer works, only smaller.
        let _ = setsockopt(&fd, sockopt::RcvBuf, &RCVBUF_BYTES);
        // Group 1: the kernel's own uevents (udev's are group 2).
        bind(fd.as_raw_fd_compat(), &NetlinkAddr::new(0, 1))?;
        Ok(Socket(fd))
    }

    /// Reads and drops the datagrams waiting (at most 256: PID 1 only
    /// needs to be woken by them, and polls again).
    pub fn drain(&self) {
        let mut buf = [0u8; 4096];
        for _ in 0..256 {
            if self.recv(&mut buf, Duration::ZERO).is_none() {
                return;
            }
        }
    }

    /// One datagram into `buf` (its length; 0 for one not from the
    /// kernel), waiting up to `wait`; `None` when none came.
    pub fn recv(&self, buf: &mut [u8], wait: Duration) -> Option<usize> {
        let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) if n > 0 => {}
            _ => return None,
        }
        // Non-blocking socket: a datagram another reader took is None.
        let (n, from) = recvfrom::<NetlinkAddr>(self.0.as_fd().as_raw_fd_compat(), buf).ok()?;
        // Only the kernel (port 0) speaks for devices; anything else on
        // the group is dropped (an empty datagram parses to nothing).
        Some(if from.is_some_and(|a| a.pid() == 0) {
            n
        } else {
            0
        })
    }
}

/// `as_raw_fd` for the nix calls that still take a raw descriptor.
trait RawCompat {
    fn as_raw_fd_compat(&self) -> std::os::fd::RawFd;
}

impl<T: std::os::fd::AsRawFd> RawCompat for T {
    fn as_raw_fd_compat(&self) -> std::os::fd::RawFd {
        self.as_raw_fd()
    }
}
