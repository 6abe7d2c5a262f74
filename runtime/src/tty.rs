//! Terminals: the pty is made inside the container's devpts and its master is sent to the
//! caller's console socket over SCM_RIGHTS, as runc does.

use crate::error::{Context, Result};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Connects to the `--console-socket` the caller listens on.
pub fn connect_console_socket(path: &Path) -> Result<OwnedFd> {
    let s = UnixStream::connect(path)
        .ctx(|| format!("connect to console socket {}", path.display()))?;
    Ok(OwnedFd::from(s))
}

pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    pub slave_name: String,
}

/// Opens a new pty from `ptmx` (the container's multiplexer).
pub fn open_pty(ptmx: OwnedFd) -> Result<Pty> {
    let master = ptmx;
    let fd = master.as_raw_fd();
    // SAFETY: libc pty calls on a valid ptmx fd and a local buffer.
    let mut buf = [0 as libc::c_char; 64];
    unsafe {
        if libc::grantpt(fd) != 0 || libc::unlockpt(fd) != 0 {
            return Err(nix::Error::last()).ctx(|| "unlock pty");
        }
        if libc::ptsname_r(fd, buf.as_mut_ptr(), buf.len()) != 0 {
            return Err(nix::Error::last()).ctx(|| "ptsname");
        }
    }
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    // TIOCGPTPEER opens the slave through the master, never by a path the container controls.
    // SAFETY: ioctl on a valid pty master.
    let fd = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(nix::Error::last()).ctx(|| "open pty slave (TIOCGPTPEER)");
    }
    let slave = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    Ok(Pty {
        master,
        slave,
        slave_name: name,
    })
}

pub fn set_size(fd: &impl AsRawFd, rows: u16, cols: u16) -> Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ with a valid winsize.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(nix::Error::last()).ctx(|| "set terminal size");
    }
    Ok(())
}

/// Sends `master` over the console socket; the payload is the pty name, like runc.
pub fn send_master(socket: &OwnedFd, master: &OwnedFd, name: &str) -> Result<()> {
    let fds = [master.as_raw_fd()];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .ctx(|| "send pty master to the console socket")?;
    Ok(())
}

/// Makes `slave` the controlling terminal and stdio of this process.
pub fn become_controlled(slave: &OwnedFd) -> Result<()> {
    for fd in 0..3 {
        // SAFETY: dup2 onto the stdio slots of this process.
        if unsafe { libc::dup2(slave.as_raw_fd(), fd) } < 0 {
            return Err(nix::Error::last()).ctx(|| format!("dup pty onto fd {fd}"));
        }
    }
    // SAFETY: TIOCSCTTY on our own session's terminal.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
        return Err(nix::Error::last()).ctx(|| "make the pty the controlling terminal");
    }
    Ok(())
}

/// Receives one fd sent with SCM_RIGHTS (used by callers of --console-socket and by tests).
pub fn recv_fd(sock: &impl AsRawFd) -> Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned};
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ctx(|| "receive pty master")?;
    for c in msg.cmsgs().ctx(|| "read control message")? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                return Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(*fd) });
            }
        }
    }
    Err(crate::error::Error::Init(
        "console socket message carried no fd".into(),
    ))
}
