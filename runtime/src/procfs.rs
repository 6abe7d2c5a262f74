//! Verified procfs access. husk writes to /proc for sysctls, `oom_score_adj`, time namespace
//! offsets and LSM labels, and reads it for `setgroups`. A container that controls the /proc a
//! path walks through — its own mount, a procfs remounted or shared with a racing container, a
//! symlink planted on a tmpfs, a bind mount over one file — could redirect such a write to
//! another procfs file, e.g. `/proc/sys/kernel/core_pattern` or `/proc/sysrq-trigger`
//! (CVE-2025-52881, a sharper CVE-2019-19921). So no procfs access goes through a path:
//!
//! - [`Proc::open`] opens the /proc of the host's view — the helper does so before it joins
//!   or creates any namespace, so no container's mounts are in that view — and verifies it
//!   is a procfs root (`fstatfs` == `PROC_SUPER_MAGIC`, inode `PROC_ROOT_INO`); if it is not,
//!   a private procfs instance (fsopen/fsmount, detached: nothing can be mounted over or
//!   swapped inside it). The private instance first would be safer still, but costs ~0.2–0.4
//!   ms per create and exec (a superblock each time) where the checks cost microseconds;
//! - files are opened beneath it with `openat2(RESOLVE_BENEATH | RESOLVE_NO_XDEV |
//!   RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`: no symlink, no mount crossing (a bind over
//!   one file — propagated into the host's view, say — is refused, never followed), and each
//!   opened file is checked to be on procfs;
//! - `/proc/self` is the one link resolved, by reading it (the kernel computes it) and
//!   requiring a plain pid.
//!
//! The helper opens its handle before it joins or creates any namespace, in the host's view,
//! and the container process drops it before it changes to its working directory and execs
//! (a procfs root is a way to the host: CVE-2024-21626). Written by hand: the `pathrs` crate
//! needs the C libpathrs, and this is a few syscalls.

use crate::error::{Context, Error, Result};
use nix::errno::Errno;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

/// The inode number of every procfs root (fs/proc/internal.h).
const PROC_ROOT_INO: u64 = 1;

const BENEATH: u64 = libc::RESOLVE_BENEATH
    | libc::RESOLVE_NO_XDEV
    | libc::RESOLVE_NO_SYMLINKS
    | libc::RESOLVE_NO_MAGICLINKS;

/// A verified procfs root. Every path given to its methods is relative to /proc.
pub struct Proc {
    root: OwnedFd,
}

use crate::fsmount::owned;

/// A fresh procfs instance, mounted nowhere, nosuid/nodev/noexec (needs CAP_SYS_ADMIN over the
/// pid namespace).
fn private_instance() -> nix::Result<OwnedFd> {
    crate::fsmount::detached(c"proc", crate::fsmount::NOSUID_NODEV_NOEXEC)
}

fn host_proc() -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        "/proc",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
}

fn on_procfs(fd: &OwnedFd) -> bool {
    nix::sys::statfs::fstatfs(fd)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
}

fn is_proc_root(fd: &OwnedFd) -> bool {
    on_procfs(fd) && nix::sys::stat::fstat(fd).is_ok_and(|s| s.st_ino == PROC_ROOT_INO)
}

fn openat2(dirfd: &OwnedFd, path: &str, flags: i32, resolve: u64) -> nix::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| Errno::EINVAL)?;
    // SAFETY: an all-zero open_how is valid; the fields are set below.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    loop {
        // SAFETY: valid C string and an open_how of the size passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        match owned(r) {
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            other => return other,
        }
    }
}

impl Proc {
    /// Opens a verified procfs root: the host view's /proc, else a private instance (see the
    /// module's comment).
    pub fn open() -> Result<Proc> {
        for make in [host_proc, private_instance] {
            if let Ok(root) = make() {
                if is_proc_root(&root) {
                    return Ok(Proc { root });
                }
            }
        }
        Err(Error::Init(
            "no usable procfs: /proc is not a procfs root (statfs magic or root inode differs)"
                .into(),
        ))
    }

    /// Opens `path` (relative to /proc, e.g. `sys/net/ipv4/ip_forward`) with `flags`: no
    /// symlink, magic link or mount crossing on the way, and the file found must be on procfs.
    pub fn open_file(&self, path: &str, flags: i32) -> Result<OwnedFd> {
        let fd = openat2(&self.root, path, flags, BENEATH)
            .ctx(|| format!("open /proc/{path} beneath a verified procfs"))?;
        if !on_procfs(&fd) {
            return Err(Error::Init(format!("/proc/{path} is not on procfs")));
        }
        Ok(fd)
    }

    /// This process's pid as this procfs numbers it: the kernel's own `self` link, which must
    /// be a plain number.
    fn self_pid(&self) -> Result<String> {
        let link = nix::fcntl::readlinkat(&self.root, "self").ctx(|| "readlink /proc/self")?;
        let pid = link.to_string_lossy().into_owned();
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::Init(format!("/proc/self points at {pid:?}")));
        }
        Ok(pid)
    }

    /// Opens `/proc/self/<path>` of the calling process.
    pub fn open_self(&self, path: &str, flags: i32) -> Result<OwnedFd> {
        self.open_file(&format!("{}/{path}", self.self_pid()?), flags)
    }

    /// Writes `data` to `/proc/self/<path>` in one write(2) (procfs files take one write).
    pub fn write_self(&self, path: &str, data: &[u8]) -> Result<()> {
        let fd = self.open_self(path, libc::O_WRONLY)?;
        write_once(&fd, data).ctx(|| format!("write /proc/self/{path}"))
    }

    /// Reads `/proc/self/<path>`.
    pub fn read_self(&self, path: &str) -> Result<String> {
        let fd = self.open_self(path, libc::O_RDONLY)?;
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut s)
            .ctx(|| format!("read /proc/self/{path}"))?;
        Ok(s)
    }

    /// Writes `data` to `/proc/<pid>/<path>` (the parent writing a child's id maps).
    pub fn write_pid(&self, pid: i32, path: &str, data: &[u8]) -> Result<()> {
        let fd = self.open_file(&format!("{pid}/{path}"), libc::O_WRONLY)?;
        write_once(&fd, data).ctx(|| format!("write /proc/{pid}/{path}"))
    }

    /// Sets sysctl `key` (sysctl(8) naming, see [`sysctl_path`]) to `value`. The file is
    /// looked up in the caller's namespaces (net.*, ipc, uts sysctls act on the caller's).
    pub fn write_sysctl(&self, key: &str, value: &str) -> Result<()> {
        let rel = sysctl_path(key)?;
        let fd = self.open_file(&format!("sys/{rel}"), libc::O_WRONLY)?;
        write_once(&fd, value.as_bytes()).ctx(|| format!("linux.sysctl {key}={value}"))
    }
}

fn write_once(fd: &OwnedFd, data: &[u8]) -> nix::Result<()> {
    let n = nix::unistd::write(fd, data)?;
    if n != data.len() {
        return Err(Errno::EIO);
    }
    Ok(())
}

/// The path below /proc/sys of sysctl `key`, by sysctl(8)'s rule: if the first separator is
/// a '/', the key is already a path; if it is a '.', dots and slashes are interchanged
/// (`net.ipv4.conf.eth0/100.forwarding` → `net/ipv4/conf/eth0.100/forwarding`). Every
/// component must be a plain name: no empty, `.` or `..` component, no NUL.
pub fn sysctl_path(key: &str) -> Result<String> {
    let path: String = match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'.' => key
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => key.to_string(),
    };
    let bad = path.is_empty()
        || path.contains('\0')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(Error::spec(
            format!("linux.sysctl.{key}"),
            "is not a sysctl name (components must be plain names)",
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_names_follow_sysctl8() {
        let p = |k: &str| sysctl_path(k).unwrap();
        assert_eq!(p("net.ipv4.ip_forward"), "net/ipv4/ip_forward");
        assert_eq!(
            p("net.ipv4.conf.eth0/100.forwarding"),
            "net/ipv4/conf/eth0.100/forwarding"
        );
        assert_eq!(
            p("net/ipv4/conf/eth0.100/forwarding"),
            "net/ipv4/conf/eth0.100/forwarding"
        );
        assert_eq!(p("kernel.shm_rmid_forced"), "kernel/shm_rmid_forced");
        for bad in [
            "",
            "net/../../sysrq-trigger",
            "net/ipv4/../../../kernel/core_pattern",
            "net..ipv4",
            "net.ipv4.",
            "/net/ipv4",
            "net/./ipv4",
            "net\0x",
        ] {
            assert!(sysctl_path(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_root_is_a_procfs_root_and_self_is_this_process() {
        let proc = Proc::open().unwrap();
        assert!(is_proc_root(&proc.root));
        let status = proc.read_self("status").unwrap();
        let pid = std::process::id().to_string();
        assert!(
            status
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Pid:", pid.as_str()]),
            "{status}"
        );
        // Symlinks and magic links are refused, not followed.
        assert!(proc.open_file("self/status", libc::O_RDONLY).is_err());
        assert!(proc
            .open_file(&format!("{pid}/cwd/etc/passwd"), libc::O_RDONLY)
            .is_err());
        assert!(proc.open_file("../etc/passwd", libc::O_RDONLY).is_err());
    }
}
