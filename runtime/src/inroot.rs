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
        self.make(path, Leaf::Dir, mode)
    }

    /// Ensures `path` exists (a bind-mount target for a file) and returns an O_PATH handle: an
    /// existing entry of any type is used as it is; a missing one is created as a regular file
    /// with its missing parent directories. Symlinks on the way and at the end, dangling or
    /// not, are followed inside the root, so a file bound onto an image's dangling
    /// `/etc/localtime -> /usr/share/zoneinfo/X` lands on a new `/usr/share/zoneinfo/X`, as
    /// with runc.
    pub fn mkfile(&self, path: &Path, mode: u32) -> Result<OwnedFd> {
        self.make(path, Leaf::File, mode)
    }

    /// Walks `path` one component at a time, each resolved with RESOLVE_IN_ROOT from the root
    /// (so `..` and absolute links stop at it). A missing component is created (a directory,
    /// or a file of `mode` for the last one of `Leaf::File`); one that exists but does not
    /// resolve is a dangling symlink, whose target is walked instead.
    fn make(&self, path: &Path, leaf: Leaf, mode: u32) -> Result<OwnedFd> {
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
        let root_dir = || {
            openat2(
                self.fd.as_raw_fd(),
                Path::new("."),
                libc::O_PATH | libc::O_DIRECTORY,
                0,
                IN_ROOT,
            )
            .ctx(|| format!("open {}", self.path.display()))
        };
        let mut cur = PathBuf::new();
        let mut fd = root_dir()?;
        // Symlinks followed and entries that changed under us, bounded like the kernel's 40.
        let mut detours = 0;
        while let Some(name) = todo.pop_front() {
            let next = cur.join(&name);
            let file = todo.is_empty() && leaf == Leaf::File;
            let flags = if file {
                libc::O_PATH
            } else {
                libc::O_PATH | libc::O_DIRECTORY
            };
            match openat2(self.fd.as_raw_fd(), &next, flags, 0, IN_ROOT) {
                Ok(n) => {
                    cur = self.rel_of(&n);
                    fd = n;
                    continue;
                }
                Err(Errno::ENOENT) => {}
                Err(e) => return fail(&next, "resolve", e),
            }
            // Missing, or a symlink whose target is missing: create the entry without
            // following anything at the last component.
            let made = if file {
                openat2(
                    fd.as_raw_fd(),
                    Path::new(&name),
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW,
                    mode,
                    libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
                )
                .map(drop)
            } else {
                // Parent directories of a file get 0755, as runc's MkdirAll gives them.
                let dir_mode = if leaf == Leaf::File { 0o755 } else { mode };
                nix::sys::stat::mkdirat(&fd, name.as_os_str(), Mode::from_bits_truncate(dir_mode))
            };
            detours += match made {
                Ok(()) => 0,
                Err(Errno::EEXIST) => 1,
                Err(e) => return fail(&next, "create", e),
            };
            if detours > 40 {
                return fail(&next, "resolve", Errno::ELOOP);
            }
            match nix::fcntl::readlinkat(&fd, name.as_os_str()) {
                // A dangling symlink: walk its target instead (from the root if absolute).
                Ok(target) if made.is_err() => {
                    let target = PathBuf::from(target);
                    if target.is_absolute() {
                        cur = PathBuf::new();
                        fd = root_dir()?;
                    }
                    for c in target.components().rev() {
                        match c {
                            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                            other => todo.push_front(other.as_os_str().to_owned()),
                        }
                    }
                }
                // Made by us, or by someone else meanwhile: resolve it again.
                _ => todo.push_front(name),
            }
        }
        Ok(fd)
    }
}

/// What the last component of a path to make is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf {
    Dir,
    File,
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
    fn mkfile_follows_dangling_symlinks_inside_the_root() {
        let root_dir = tempfile::tempdir().unwrap();
        let root = root_dir.path();
        std::fs::create_dir(root.join("etc")).unwrap();
        symlink("/usr/share/zoneinfo/Some/Zone", root.join("etc/localtime")).unwrap();
        symlink("../var/x/f", root.join("etc/rel")).unwrap();
        symlink("/real", root.join("via")).unwrap();
        symlink("../../../../../outside", root.join("up")).unwrap();
        let r = Root::open(root).unwrap();
        let real = root.canonicalize().unwrap();
        for (path, lands) in [
            ("/etc/localtime", "usr/share/zoneinfo/Some/Zone"),
            ("/etc/rel", "var/x/f"),
            ("/via/sub/file", "real/sub/file"),
            ("/up", "outside"),
        ] {
            let fd = r.mkfile(Path::new(path), 0o644).unwrap();
            assert_eq!(Root::real_path(&fd), real.join(lands), "{path}");
            assert!(real.join(lands).is_file(), "{path}");
        }
        // Parent directories of a file are 0755 (less the umask), whatever the file's mode.
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(real.join("usr/share"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(m & 0o700, 0o700, "{m:o}");
        // An existing entry of any type is used as it is.
        let fd = r.mkfile(Path::new("/usr/share"), 0o644).unwrap();
        assert_eq!(Root::real_path(&fd), real.join("usr/share"));
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
