//! The parent ↔ init channel: a SOCK_SEQPACKET socketpair carrying one JSON message per
//! packet, so messages never interleave or split.

use crate::error::{Context, Error, Result};
use nix::sys::socket::{
    recv, recvmsg, send, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockType,
};
use serde::{de::DeserializeOwned, Serialize};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

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

    /// Sends `msg` with `fd` attached (SCM_RIGHTS): the peer gets its own copy of the fd.
    pub fn send_with_fd<T: Serialize>(&self, msg: &T, fd: BorrowedFd) -> Result<()> {
        let data = serde_json::to_vec(msg).expect("channel messages serialise");
        let fds = [fd.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        loop {
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &[IoSlice::new(&data)],
                &cmsg,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).ctx(|| "send an fd on init channel"),
            }
        }
    }

    /// Receives one message; `Ok(None)` when the peer closed the channel. An fd sent with it is
    /// closed.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        Ok(self.recv_with_fd()?.map(|(m, _)| m))
    }

    /// Receives one message and the fd sent with it, if any (close-on-exec).
    pub fn recv_with_fd<T: DeserializeOwned>(&self) -> Result<Option<(T, Option<OwnedFd>)>> {
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
        let (n, fd) = loop {
            let mut cmsg = nix::cmsg_space!([RawFd; 1]);
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => {
                    let mut fd = None;
                    for c in msg.cmsgs().ctx(|| "receive on init channel")? {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            for raw in fds {
                                // SAFETY: the kernel just installed this fd for us.
                                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                                fd.get_or_insert(owned);
                            }
                        }
                    }
                    break (msg.bytes, fd);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).ctx(|| "receive on init channel"),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&buf[..n])
            .map(|m| Some((m, fd)))
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

    #[test]
    fn an_fd_travels_with_its_message() {
        use std::io::{Read, Seek, Write};
        let (a, b) = pair().unwrap();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"through the socket").unwrap();
        a.send_with_fd(&7u32, std::os::fd::AsFd::as_fd(&f)).unwrap();
        a.send(&8u32).unwrap();
        let (n, fd) = b.recv_with_fd::<u32>().unwrap().unwrap();
        assert_eq!(n, 7);
        let mut got = std::fs::File::from(fd.unwrap());
        got.rewind().unwrap();
        let mut s = String::new();
        got.read_to_string(&mut s).unwrap();
        assert_eq!(s, "through the socket");
        assert!(matches!(b.recv_with_fd::<u32>().unwrap(), Some((8, None))));
    }
}
