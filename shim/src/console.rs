//! Console sockets: where the runtime sends a terminal's pty master (SCM_RIGHTS over a unix
//! socket, as runc's `--console-socket`). Every wait on one is bounded: a socket nobody
//! connects to, or a connection that never carries the master, is an error after
//! `CONSOLE_WAIT`, never a request blocked forever.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the shim waits for the pty master once the runtime has returned. The runtime
/// connects and sends the master before it reports the process created, so the master is
/// normally queued already; the bound only turns a lost master into an error.
pub const CONSOLE_WAIT: Duration = Duration::from_secs(10);

/// A listening console socket under `dir`, removed when dropped.
#[derive(Debug)]
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("console socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no terminal arrived on console socket {path} within {waited:?}: {what}")]
    TimedOut {
        path: PathBuf,
        waited: Duration,
        what: &'static str,
    },
    #[error("console socket {path}: the connection carried no pty master")]
    NoMaster { path: PathBuf },
}

impl ConsoleSocket {
    /// Binds a fresh socket in `dir` (created if missing).
    pub fn bind(dir: &Path) -> Result<ConsoleSocket, ConsoleError> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = dir.join(format!(
            "husk-console-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let io = |source| ConsoleError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(io)?;
        listener.set_nonblocking(true).map_err(io)?;
        Ok(ConsoleSocket { listener, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts the runtime's connection and receives the pty master, within `within`.
    /// Blocking: run it off the async runtime.
    pub fn receive(&self, within: Duration) -> Result<OwnedFd, ConsoleError> {
        let deadline = Instant::now() + within;
        let io = |source| ConsoleError::Io {
            path: self.path.clone(),
            source,
        };
        let timed_out = |what| ConsoleError::TimedOut {
            path: self.path.clone(),
            waited: within,
            what,
        };
        if !poll_readable(&self.listener, deadline).map_err(io)? {
            return Err(timed_out("nobody connected"));
        }
        let (conn, _) = self.listener.accept().map_err(io)?;
        conn.set_nonblocking(false).map_err(io)?;
        if !poll_readable(&conn, deadline).map_err(io)? {
            return Err(timed_out("connected, but sent nothing"));
        }
        receive_fd(&conn).map_err(|e| match e {
            Some(source) => io(source),
            None => ConsoleError::NoMaster {
                path: self.path.clone(),
            },
        })
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Waits until `fd` is readable (or hung up) or `deadline` passes: false on timeout.
fn poll_readable(fd: &impl AsRawFd, deadline: Instant) -> std::io::Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // Rounded up: poll's millisecond timeout must not end before the deadline.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
        // SAFETY: poll on one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 && Instant::now() < deadline {
            continue;
        }
        return Ok(r > 0);
    }
}

/// One message's SCM_RIGHTS fd: `Err(None)` when the message carried none (or EOF).
fn receive_fd(conn: &UnixStream) -> Result<OwnedFd, Option<std::io::Error>> {
    match husk_runtime::tty::recv_fd(conn) {
        Ok(fd) => Ok(fd),
        Err(husk_runtime::Error::Init(_)) => Err(None),
        Err(e) => Err(Some(std::io::Error::other(e.to_string()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nobody_connecting_is_an_error_after_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let s = ConsoleSocket::bind(dir.path()).unwrap();
        let t = Instant::now();
        let e = s.receive(Duration::from_millis(200)).unwrap_err();
        assert!(t.elapsed() >= Duration::from_millis(200));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(e.to_string().contains("nobody connected"), "{e}");
        let path = s.path().to_path_buf();
        drop(s);
        assert!(!path.exists(), "the socket file is removed");
    }

    #[test]
    fn a_silent_connection_is_an_error_after_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let s = ConsoleSocket::bind(dir.path()).unwrap();
        let _peer = UnixStream::connect(s.path()).unwrap();
        let e = s.receive(Duration::from_millis(200)).unwrap_err();
        assert!(e.to_string().contains("sent nothing"), "{e}");
    }

    #[test]
    fn a_closed_connection_without_a_master_is_an_error_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = ConsoleSocket::bind(dir.path()).unwrap();
        drop(UnixStream::connect(s.path()).unwrap());
        let e = s.receive(Duration::from_secs(30)).unwrap_err();
        assert!(matches!(e, ConsoleError::NoMaster { .. }), "{e}");
    }

    #[test]
    fn the_master_sent_is_received() {
        let dir = tempfile::tempdir().unwrap();
        let s = ConsoleSocket::bind(dir.path()).unwrap();
        let peer = UnixStream::connect(s.path()).unwrap();
        let (r, _w) = nix::unistd::pipe().unwrap();
        nix::sys::socket::sendmsg::<()>(
            peer.as_raw_fd(),
            &[std::io::IoSlice::new(b"m")],
            &[nix::sys::socket::ControlMessage::ScmRights(
                &[r.as_raw_fd()],
            )],
            nix::sys::socket::MsgFlags::empty(),
            None,
        )
        .unwrap();
        let fd = s.receive(Duration::from_secs(5)).unwrap();
        assert!(fd.as_raw_fd() >= 0);
    }
}
