//! Terminals: the pty is made inside the container's devpts and its master is sent to the
//! caller's console socket over SCM_RIGHTS, as runc does.

use crate::error::{Context, Error, Result};
use crate::inroot::{fd_path, Root};
use nix::errno::Errno;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::stat::{fstat, makedev, FileStat};
use nix::sys::statfs::{FsType, DEVPTS_SUPER_MAGIC, PROC_SUPER_MAGIC, SYSFS_MAGIC};
use std::ffi::CString;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Unix98 pty slaves have majors 136..=143 (Documentation/admin-guide/devices.txt); the
/// multiplexer is char 5:2, in devtmpfs and in every devpts instance.
const PTY_SLAVE_MAJORS: std::ops::RangeInclusive<u32> = 136..=143;

fn fs_magic(fd: &OwnedFd) -> FsType {
    nix::sys::statfs::fstatfs(fd)
        .map(|s| s.filesystem_type())
        .unwrap_or(FsType(0))
}

fn is_char(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR
}

/// The container's /dev/ptmx must be a pty multiplexer (an image can make it anything).
fn verify_ptmx(fd: &OwnedFd) -> Result<()> {
    let st = fstat(fd).ctx(|| "stat the container's /dev/ptmx")?;
    if !is_char(&st) || st.st_rdev != makedev(5, 2) {
        return Err(Error::Init(format!(
            "the container's /dev/ptmx is not a pty multiplexer (char 5:2): mode {:o} rdev {}:{}",
            st.st_mode,
            libc::major(st.st_rdev),
            libc::minor(st.st_rdev)
        )));
    }
    Ok(())
}

/// What is bound onto /dev/console must be a pty slave on a devpts (CVE-2025-52565: a
/// swapped source would bind anything, e.g. a procfs file, writable).
fn verify_slave(fd: &OwnedFd) -> Result<()> {
    let st = fstat(fd).ctx(|| "stat the pty slave")?;
    if fs_magic(fd) != DEVPTS_SUPER_MAGIC
        || !is_char(&st)
        || !PTY_SLAVE_MAJORS.contains(&libc::major(st.st_rdev))
    {
        return Err(Error::Init(format!(
            "the pty slave is not a devpts pty (mode {:o} rdev {}:{})",
            st.st_mode,
            libc::major(st.st_rdev),
            libc::minor(st.st_rdev)
        )));
    }
    Ok(())
}

fn openat2_beneath(dir: &OwnedFd, name: &str, flags: i32, mode: u32) -> nix::Result<OwnedFd> {
    let c = CString::new(name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: an all-zero open_how is valid; the fields are set below.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64;
    how.mode = if flags & libc::O_CREAT != 0 {
        mode as u64
    } else {
        0
    };
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_XDEV;
    // SAFETY: valid C string and an open_how of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if r < 0 {
        return Err(Errno::last());
    }
    // SAFETY: openat2 returned a new fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// Binds the pty `slave` onto the container's /dev/console (before pivot_root, `root` is the
/// rootfs). Both ends are checked on the opened fds, and the mount goes through them
/// (CVE-2025-52565): the source must be a devpts pty; the target is the entry `console` in
/// the container's /dev itself — a symlink there (an image's `/dev/console -> /proc/...`, or
/// one a racing container swapped in) is replaced, never followed — and must be a regular
/// file or a char device, not on procfs or sysfs.
pub fn mount_console(root: &Root, slave: &OwnedFd) -> Result<()> {
    verify_slave(slave)?;
    let dev = root.mkdir_all(Path::new("/dev"), 0o755)?;
    let what = || "/dev/console".to_string();
    let existing = match openat2_beneath(&dev, "console", libc::O_PATH, 0) {
        // O_PATH|O_NOFOLLOW opens a symlink itself: that one is replaced below.
        Ok(fd) if fstat(&fd).is_ok_and(|st| st.st_mode & libc::S_IFMT != libc::S_IFLNK) => Some(fd),
        Ok(_) | Err(Errno::ENOENT) | Err(Errno::ELOOP) => None,
        Err(e) => return Err(e).ctx(what),
    };
    let target = match existing {
        Some(fd) => fd,
        None => {
            match nix::unistd::unlinkat(&dev, "console", nix::unistd::UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(e).ctx(|| "remove the symlink at /dev/console"),
            }
            drop(
                openat2_beneath(
                    &dev,
                    "console",
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                    0o600,
                )
                .ctx(|| "create /dev/console")?,
            );
            openat2_beneath(&dev, "console", libc::O_PATH, 0).ctx(what)?
        }
    };
    let st = fstat(&target).ctx(what)?;
    let kind = st.st_mode & libc::S_IFMT;
    let magic = fs_magic(&target);
    if !(kind == libc::S_IFREG || kind == libc::S_IFCHR)
        || magic == PROC_SUPER_MAGIC
        || magic == SYSFS_MAGIC
    {
        return Err(Error::Init(format!(
            "refusing to bind the console onto /dev/console: it is mode {:o} on filesystem {:#x}",
            st.st_mode, magic.0
        )));
    }
    nix::mount::mount(
        Some(&fd_path(slave)),
        &fd_path(&target),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .ctx(|| "bind the pty onto /dev/console")
}

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

/// Opens a new pty from `ptmx` (the container's multiplexer, checked to be one).
pub fn open_pty(ptmx: OwnedFd) -> Result<Pty> {
    verify_ptmx(&ptmx)?;
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
    let slave = unsafe { OwnedFd::from_raw_fd(fd) };
    verify_slave(&slave)?;
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
