//! The parent ↔ init channel: a SOCK_SEQPACKET socketpair carrying one JSON message per
//! packet, so messages never interleave or split.

use crate::error::{Context, Error, Result};
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{de::DeserializeOwned, Serialize};
use std::os::fd::{AsRawFd, OwnedFd};

pub struct Channel {
    fd: OwnedFd,
}

pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .ctx(|| "socketpair for the init channel")?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn from_fd(fd: OwnedFd) -> Self {
        Channel { fd }
    }

    pub fn raw(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    pub fn send<T: Serialize>(&self, msg: &T) -> Result<()> {
        let data = serde_json::to_vec(msg).expect("channel messages serialise");
        loop {
            match send(self.fd.as_raw_fd(), &data, MsgFlags::MSG_NOSIGNAL) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).ctx(|| "send on init channel"),
            }
        }
    }

    /// Receives one message; `Ok(None)` when the peer closed the channel.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        let size = loop {
            // MSG_TRUNC with a zero-sized peek returns the packet's real length.
            match recv(
                self.fd.as_raw_fd(),
                &mut [],
                MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
            ) {
                Ok(n) => break n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).ctx(|| "receive on init channel"),
            }
        };
        let mut buf = vec![0u8; size.max(1)];
        let n = loop {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => break n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).ctx(|| "receive on init channel"),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&buf[..n])
            .map(Some)
            .map_err(|e| Error::Init(format!("bad message on init channel: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_eof() {
        let (a, b) = pair().unwrap();
        let big = "x".repeat(100_000);
        a.send(&("hello", 1)).unwrap();
        a.send(&big).unwrap();
        assert_eq!(
            b.recv::<(String, i32)>().unwrap(),
            Some(("hello".into(), 1))
        );
        assert_eq!(b.recv::<String>().unwrap(), Some(big));
        drop(a);
        assert_eq!(b.recv::<String>().unwrap(), None);
    }
}
