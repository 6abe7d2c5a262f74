//! Path resolution confined to a container root. A malicious image may hold symlinks such as
//! `/etc -> ../../../../etc`; every mount target, mask and device node is resolved with
//! openat2(RESOLVE_IN_ROOT) so `..` and absolute links stop at the container root, and the
//! kernel object is then addressed through `/proc/self/fd/N`, never by re-walking a path.
//! (Written by hand: the pathrs crate needs libpathrs; openat2 is a single syscall.)

use crate::error::{Context, Result};
use nix::errno::Errno;
use nix::sys::stat::Mode;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

fn openat2(dirfd: i32, path: &Path, flags: i32, mode: u32, resolve: u64) -> nix::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = mode as u64;
    how.resolve = resolve;
    loop {
        // SAFETY: valid C string and open_how of the size we pass.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if r >= 0 {
            return Ok(unsafe { OwnedFd::from_raw_fd(r as i32) });
        }
        match Errno::last() {
            Errno::EAGAIN | Errno::EINTR => continue,
            e => return Err(e),
        }
    }
}

const IN_ROOT: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

/// `/proc/self/fd/N`: the path through which a resolved fd is mounted on or reopened.
pub fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// A directory handle that all in-container paths are resolved against.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    pub fn open(path: &Path) -> Result<Self> {
        let fd = nix::fcntl::open(
            path,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("open root {}", path.display()))?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn rel(p: &Path) -> PathBuf {
        let r: PathBuf = p
            .components()
            .filter(|c| !matches!(c, Component::RootDir))
            .collect();
        if r.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            r
        }
    }

    /// Opens `path` (relative to the root, symlinks confined) with O_PATH.
    pub fn resolve(&self, path: &Path) -> nix::Result<OwnedFd> {
        openat2(
            self.fd.as_raw_fd(),
            &Self::rel(path),
            libc::O_PATH,
            0,
            IN_ROOT,
        )
    }

    /// Opens `path` with real flags (O_RDONLY, O_WRONLY, …), confined.
    pub fn open_file(&self, path: &Path, flags: i32) -> nix::Result<OwnedFd> {
        openat2(self.fd.as_raw_fd(), &Self::rel(path), flags, 0, IN_ROOT)
    }

    /// The host path a resolved handle really points at (for messages and checks).
    pub fn real_path(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(fd_path(fd)).unwrap_or_default()
    }

    /// The path of a resolved handle relative to the root (symlinks resolved).
    fn rel_of(&self, fd: &OwnedFd) -> PathBuf {
        let root_real = Self::real_path(&self.fd);
        Self::real_path(fd)
            .strip_prefix(&root_real)
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// Creates every missing directory of `path` inside the root and returns an O_PATH handle.
    /// A dangling symlink on the way (an image's `/var/run -> /run` with no /run) is followed
    /// and its target created inside the root, as runc does.
    pub fn mkdir_all(&self, path: &Path, mode: u32) -> Result<OwnedFd> {
        use std::collections::VecDeque;
        use std::ffi::OsString;
        let fail = |cur: &Path, what: &str, e: Errno| {
            Err(e).ctx(|| format!("{what} {} in {}", cur.display(), self.path.display()))
        };
        let mut todo: VecDeque<OsString> = Self::rel(path)
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .map(|c| c.as_os_str().to_owned())
            .collect();
        let mut cur = PathBuf::new();
        let mut fd = openat2(
            self.fd.as_raw_fd(),
            Path::new("."),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            IN_ROOT,
        )
        .ctx(|| format!("open {}", self.path.display()))?;
        let mut links = 0;
        while let Some(name) = todo.pop_front() {
            let next = cur.join(&name);
            match openat2(
                self.fd.as_raw_fd(),
                &next,
                libc::O_PATH | libc::O_DIRECTORY,
                0,
                IN_ROOT,
            ) {
                Ok(n) => {
                    cur = self.rel_of(&n);
                    fd = n;
                }
                Err(Errno::ENOENT) => match nix::sys::stat::mkdirat(
                    &fd,
                    name.as_os_str(),
                    Mode::from_bits_truncate(mode),
                ) {
                    Ok(()) => {
                        fd = openat2(
                            self.fd.as_raw_fd(),
                            &next,
                            libc::O_PATH | libc::O_DIRECTORY,
                            0,
                            IN_ROOT,
                        )
                        .ctx(|| format!("open {} in {}", next.display(), self.path.display()))?;
                        cur = self.rel_of(&fd);
                    }
                    Err(Errno::EEXIST) => {
                        // A dangling symlink: continue along its target.
                        let target = match nix::fcntl::readlinkat(&fd, name.as_os_str()) {
                            Ok(t) => PathBuf::from(t),
                            Err(e) => return fail(&next, "mkdir", e),
                        };
                        links += 1;
                        if links > 40 {
                            return fail(&next, "resolve", Errno::ELOOP);
                        }
                        if target.is_absolute() {
                            cur = PathBuf::new();
                            fd = openat2(
                                self.fd.as_raw_fd(),
                                Path::new("."),
                                libc::O_PATH | libc::O_DIRECTORY,
                                0,
                                IN_ROOT,
                            )
                            .ctx(|| format!("open {}", self.path.display()))?;
                        }
                        for c in target.components().rev() {
                            match c {
                                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                                other => todo.push_front(other.as_os_str().to_owned()),
                            }
                        }
                    }
                    Err(e) => return fail(&next, "mkdir", e),
                },
                Err(e) => return fail(&next, "resolve", e),
            }
        }
        Ok(fd)
    }

    /// Ensures `path` exists as a regular file (a bind-mount target for a file) and returns an
    /// O_PATH handle; an existing entry of any type is used as it is.
    pub fn mkfile(&self, path: &Path, mode: u32) -> Result<OwnedFd> {
        match self.resolve(path) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) => {}
            Err(e) => {
                return Err(e)
                    .ctx(|| format!("resolve {} in {}", path.display(), self.path.display()))
            }
        }
        let rel = Self::rel(path);
        let parent = rel.parent().unwrap_or(Path::new("."));
        let name = rel.file_name().unwrap_or_default();
        let dir = self.mkdir_all(parent, 0o755)?;
        // O_EXCL|O_NOFOLLOW: never create through a symlink planted at the last component.
        match openat2(
            dir.as_raw_fd(),
            Path::new(name),
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW,
            mode,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
        ) {
            Ok(_) | Err(Errno::EEXIST) => {}
            Err(e) => {
                return Err(e)
                    .ctx(|| format!("create {} in {}", path.display(), self.path.display()))
            }
        }
        self.resolve(path)
            .ctx(|| format!("resolve {} in {}", path.display(), self.path.display()))
    }
}

/// Enters `cwd` (`process.cwd`), resolved inside this process's root — the container's,
/// after pivot_root or setns — with symlinks confined to it and no magic link on the way: a
/// `/proc/self/fd/N` or `/proc/<pid>/cwd` path (in the spec, in `exec --cwd`, or as a
/// symlink the image or a running container planted) could otherwise land the process in a
/// directory of the host (CVE-2024-21626). The result is checked as runc does: getcwd(2)
/// fails with ENOENT for a directory unreachable from the root.
pub fn chdir_in_root(cwd: &Path) -> Result<()> {
    let what = || format!("process.cwd {}", cwd.display());
    let root = openat2(
        libc::AT_FDCWD,
        Path::new("/"),
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        0,
    )
    .ctx(|| "open /")?;
    let dir = openat2(
        root.as_raw_fd(),
        &Root::rel(cwd),
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        IN_ROOT,
    )
    .map_err(|e| match e {
        // RESOLVE_NO_MAGICLINKS refuses /proc/*/fd/* and friends with ELOOP.
        Errno::ELOOP => crate::error::Error::spec(
            "process.cwd",
            format!(
                "{}: too many symbolic links, or a /proc magic link (/proc/<pid>/fd/N, \
                 /proc/<pid>/cwd, …) leading out of the container",
                cwd.display()
            ),
        ),
        e => crate::error::Error::Sys {
            context: what(),
            source: e,
        },
    })?;
    nix::unistd::fchdir(&dir).ctx(what)?;
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => Err(crate::error::Error::spec(
            "process.cwd",
            format!(
                "{} is outside the container's root (possible breakout refused)",
                cwd.display()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn absolute_and_dotdot_symlinks_stay_inside() {
        let outside = tempfile::tempdir().unwrap();
        let root_dir = tempfile::tempdir().unwrap();
        let root = root_dir.path();
        symlink(outside.path(), root.join("abs")).unwrap();
        symlink("../../../../../../../..", root.join("up")).unwrap();
        let r = Root::open(root).unwrap();
        let fd = r.mkdir_all(Path::new("/abs/sub"), 0o755).unwrap();
        let real = Root::real_path(&fd);
        assert!(
            real.starts_with(root),
            "{} escaped the root",
            real.display()
        );
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        let fd = r.mkdir_all(Path::new("/up/etc"), 0o755).unwrap();
        assert_eq!(
            Root::real_path(&fd),
            root.canonicalize().unwrap().join("etc")
        );
    }

    #[test]
    fn mkfile_does_not_follow_a_planted_symlink() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("victim");
        let root_dir = tempfile::tempdir().unwrap();
        symlink(&target, root_dir.path().join("f")).unwrap();
        let r = Root::open(root_dir.path()).unwrap();
        let fd = r.mkfile(Path::new("/f"), 0o644);
        // The link resolves inside the root (to <root>/<outside path>), and nothing is
        // created outside.
        assert!(!target.exists());
        if let Ok(fd) = fd {
            assert!(Root::real_path(&fd).starts_with(root_dir.path()));
        }
    }
}
