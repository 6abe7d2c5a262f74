//! Idmapped mounts (OCI runtime spec 1.2: a mount's `uidMappings`/`gidMappings`, options
//! `idmap`/`ridmap`; containerd's `uidmap=`/`gidmap=` rootfs options).
//!
//! An idmapped bind mount is made in three steps, all from the host's user namespace (the
//! kernel wants CAP_SYS_ADMIN over the filesystem's user namespace, which a container's root
//! lacks): a detached clone of the source (`open_tree(OPEN_TREE_CLONE[|AT_RECURSIVE])`),
//! `mount_setattr(MOUNT_ATTR_IDMAP)` with a user namespace carrying the mount's mappings, then
//! `move_mount` onto a target resolved inside the container root (see `rootfs`). Through the
//! mount, a file owned by `containerID + k` on disk is seen as owned by `hostID + k`
//! (Documentation/filesystems/idmappings.rst).
//!
//! The user namespace: the container's own when the mappings are the same as its maps (what
//! kubelet sends for `hostUsers: false` volumes), otherwise a throw-away one ([`userns_with`]).
//! No crate wraps these syscalls, hence this module.

use crate::error::{Context, Error, Result};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One line of a uid or gid map: (containerID, hostID, size), as `linux.uidMappings` and
/// `/proc/<pid>/uid_map` have them (user_namespaces(7)).
pub type IdMapping = (u32, u32, u32);

/// The uid and gid maps of one user namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Mappings {
    pub uid: Vec<IdMapping>,
    pub gid: Vec<IdMapping>,
}

impl Mappings {
    /// The maps as the kernel reports them, sorted so two equal namespaces compare equal.
    fn normalized(&self) -> Mappings {
        let mut m = self.clone();
        m.uid.sort_unstable();
        m.gid.sort_unstable();
        m
    }

    /// Whether `self` describes the same maps as `other`, order aside.
    pub fn same_as(&self, other: &Mappings) -> bool {
        self.normalized() == other.normalized()
    }

    /// The maps of the user namespace `pid` is in, read from `/proc/<pid>/{uid,gid}_map` (shown
    /// relative to the reader's namespace: from the host, hostIDs are host ids).
    pub fn of_pid(pid: i32) -> Result<Mappings> {
        let read = |which: &str| -> Result<Vec<IdMapping>> {
            let p = format!("/proc/{pid}/{which}");
            let text = std::fs::read_to_string(&p).ctx(|| format!("read {p}"))?;
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    let v: Vec<u32> = l
                        .split_whitespace()
                        .filter_map(|x| x.parse().ok())
                        .collect();
                    match v[..] {
                        [c, h, s] => Ok((c, h, s)),
                        _ => Err(Error::Init(format!("{p}: unexpected line {l:?}"))),
                    }
                })
                .collect()
        };
        Ok(Mappings {
            uid: read("uid_map")?,
            gid: read("gid_map")?,
        })
    }
}

/// The kernel's limit on lines in a uid_map or gid_map (user_namespaces(7), since Linux 4.15).
const MAX_LINES: usize = 340;

/// Checks one uid or gid map as the kernel will (user_namespaces(7) "Defining user and group ID
/// mappings"): 1 to 340 lines, no zero size, no range past 2^32-1, and neither the containerID
/// nor the hostID ranges overlapping. `field` names the map in the error (e.g.
/// `mounts[2].uidMappings`).
pub fn validate(field: &str, maps: &[IdMapping]) -> Result<()> {
    if maps.is_empty() {
        return Err(Error::spec(field, "must not be empty"));
    }
    if maps.len() > MAX_LINES {
        return Err(Error::spec(
            field,
            format!(
                "{} entries: the kernel takes at most {MAX_LINES}",
                maps.len()
            ),
        ));
    }
    for (i, &(c, h, s)) in maps.iter().enumerate() {
        if s == 0 {
            return Err(Error::spec(format!("{field}[{i}]"), "size must not be 0"));
        }
        for (what, start) in [("containerID", c), ("hostID", h)] {
            if start as u64 + s as u64 > u32::MAX as u64 {
                return Err(Error::spec(
                    format!("{field}[{i}]"),
                    format!("{what} {start} + size {s} goes past 4294967295"),
                ));
            }
        }
    }
    for (i, a) in maps.iter().enumerate() {
        for (j, b) in maps.iter().enumerate().skip(i + 1) {
            for (what, x, y) in [("containerID", a.0, b.0), ("hostID", a.1, b.1)] {
                if x < y + b.2 && y < x + a.2 {
                    return Err(Error::spec(
                        field,
                        format!(
                            "entries {i} and {j} overlap: {what} ranges {x}-{} and {y}-{}",
                            x as u64 + a.2 as u64 - 1,
                            y as u64 + b.2 as u64 - 1
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The first hostID range of `inner` that `outer` (a user namespace's map) does not cover, as
/// (first, last): ids a container in `outer` would only see as the overflow id 65534.
pub fn uncovered(inner: &[IdMapping], outer: &[IdMapping]) -> Option<(u32, u32)> {
    for &(_, h, s) in inner {
        let (mut at, end) = (h as u64, h as u64 + s as u64);
        // Walk the covering ranges in order until the whole range is covered or a gap shows.
        while at < end {
            match outer
                .iter()
                .find(|&&(_, oh, os)| (oh as u64) <= at && at < oh as u64 + os as u64)
            {
                Some(&(_, oh, os)) => at = oh as u64 + os as u64,
                None => {
                    let gap_end = outer
                        .iter()
                        .map(|&(_, oh, _)| oh as u64)
                        .filter(|&oh| oh > at && oh < end)
                        .min()
                        .unwrap_or(end);
                    return Some((at as u32, (gap_end - 1) as u32));
                }
            }
        }
    }
    None
}

/// Parses containerd's `uidmap=`/`gidmap=` value: `containerID:hostID:size[,…]`
/// (containerd core/mount `parseIDMappingList`).
pub fn parse_list(s: &str) -> std::result::Result<Vec<IdMapping>, String> {
    s.split(',')
        .map(|one| {
            let v: Vec<&str> = one.split(':').collect();
            let num = |x: &str| {
                x.trim()
                    .parse::<u32>()
                    .map_err(|e| format!("{one:?}: {x:?}: {e}"))
            };
            match v[..] {
                [c, h, n] => Ok((num(c)?, num(h)?, num(n)?)),
                _ => Err(format!("{one:?}: expected containerID:hostID:size")),
            }
        })
        .collect()
}

/// The name (comm) of a user namespace holder process, for `ps` and tests.
pub const HOLDER_NAME: &str = "husk-userns";

/// A child sitting in a new user namespace; killed and reaped on drop.
struct Holder(i32);

impl Drop for Holder {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    }
}

/// A user namespace with exactly `maps`, as an fd usable as `mount_attr.userns_fd`; it lives as
/// long as the fd.
///
/// A user namespace needs a process to be made in: a child cloned with CLONE_NEWUSER that only
/// names itself and pauses, while this process writes its maps and opens
/// `/proc/<pid>/ns/user`; then it is killed and reaped. The child makes nothing but raw,
/// async-signal-safe syscalls, as a `pre_exec` closure would, so this is safe from a
/// multi-threaded caller (a shim) and builds no container; a re-exec would cost an exec of a
/// large binary for a process that lives a few hundred microseconds.
pub fn userns_with(maps: &Mappings) -> Result<OwnedFd> {
    validate("uidMappings", &maps.uid)?;
    validate("gidMappings", &maps.gid)?;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: fork-like clone (no CLONE_VM); the child runs only the raw syscalls below and
    // never returns from this block.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid == 0 {
        // SAFETY: the child: async-signal-safe syscalls only, then _exit.
        unsafe {
            libc::prctl(libc::PR_SET_NAME, c"husk-userns".as_ptr());
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(0);
            }
            loop {
                libc::pause();
            }
        }
    }
    if pid < 0 {
        return Err(nix::Error::last())
            .ctx(|| "clone(CLONE_NEWUSER) for an idmapped mount's user namespace");
    }
    let holder = Holder(pid as i32);
    crate::process::write_id_maps(holder.0, &maps.uid, &maps.gid)?;
    open_userns(&format!("/proc/{}/ns/user", holder.0))
}

/// Opens a user namespace file (`/proc/<pid>/ns/user` or a bind mount of one).
pub fn open_userns(path: &str) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("open user namespace {path}"))
}

/// User namespaces by mappings, each made once per container (as runc keeps its handles).
#[derive(Default)]
pub struct UsernsCache {
    made: Vec<(Mappings, OwnedFd)>,
}

impl UsernsCache {
    /// The fd of a user namespace with `maps`: `reuse` (e.g. the container's own, with its
    /// maps) when they are the same, else one made with [`userns_with`] and kept.
    pub fn get<'a>(
        &'a mut self,
        maps: &Mappings,
        reuse: Option<(&Mappings, BorrowedFd<'a>)>,
    ) -> Result<BorrowedFd<'a>> {
        if let Some((theirs, fd)) = reuse {
            if theirs.same_as(maps) {
                return Ok(fd);
            }
        }
        let i = match self.made.iter().position(|(m, _)| m.same_as(maps)) {
            Some(i) => i,
            None => {
                let fd = userns_with(maps)?;
                self.made.push((maps.clone(), fd));
                self.made.len() - 1
            }
        };
        Ok(self.made[i].1.as_fd())
    }
}

/// Detached, idmapped clones of the sources of `spec`'s idmapped mounts, by mount index. Made
/// from the host (see the module's comment) once the container process `pid` exists, when its
/// user namespace (`userns`: it has one, new or joined) is final: mounts whose mappings are
/// that namespace's maps use it; others get a throw-away one. Every error names the mount.
pub(crate) fn mount_sources(
    spec: &oci_spec::runtime::Spec,
    bundle: &Path,
    pid: i32,
    userns: bool,
) -> Result<Vec<(usize, OwnedFd)>> {
    let mut out = Vec::new();
    let mut cache = UsernsCache::default();
    let mut ctr: Option<(Mappings, OwnedFd)> = None;
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let o = crate::mountopts::parse(m.options().as_deref().unwrap_or(&[]))
            .map_err(|e| Error::spec(format!("mounts[{i}].options"), e.0))?;
        if !crate::spec::is_idmapped(m, &o) {
            continue;
        }
        let named = |e: Error| Error::Config {
            path: format!("mounts[{i}] {}", m.destination().display()).into(),
            message: e.to_string(),
        };
        if userns && ctr.is_none() {
            ctr = Some((
                Mappings::of_pid(pid)?,
                open_userns(&format!("/proc/{pid}/ns/user"))?,
            ));
        }
        let maps = match (crate::spec::mount_mappings(m), &ctr) {
            (Some(maps), _) => maps,
            (None, Some((theirs, _))) => theirs.clone(),
            (None, None) => {
                return Err(Error::spec(
                    format!("mounts[{i}].options"),
                    "idmap/ridmap without uidMappings and gidMappings needs a user namespace",
                ))
            }
        };
        if let Some((theirs, _)) = &ctr {
            crate::spec::check_within(i, &maps, theirs, "its uid_map", "its gid_map")?;
        }
        let src = crate::rootfs::source_path(m, bundle).ok_or_else(|| {
            Error::spec(format!("mounts[{i}].source"), "a bind mount needs a source")
        })?;
        let tree = detached_clone(&src, o.is_recursive_bind()).map_err(named)?;
        let fd = cache
            .get(&maps, ctr.as_ref().map(|(m, fd)| (m, fd.as_fd())))
            .map_err(named)?;
        let recursive = o.idmap == Some(crate::mountopts::Idmap::Recursive);
        set_idmap(&tree, fd, recursive, &src).map_err(named)?;
        out.push((i, tree));
    }
    Ok(out)
}

/// A detached clone of the source of bind mount `mounts[index]` (recursive for `rbind`), made
/// by the parent for a container whose root cannot reach it.
pub(crate) fn bind_source(
    spec: &oci_spec::runtime::Spec,
    bundle: &Path,
    index: usize,
) -> Result<OwnedFd> {
    let m = spec
        .mounts()
        .as_ref()
        .and_then(|v| v.get(index))
        .ok_or_else(|| Error::Init(format!("no mounts[{index}] to make a source for")))?;
    let o = crate::mountopts::parse(m.options().as_deref().unwrap_or(&[]))
        .map_err(|e| Error::spec(format!("mounts[{index}].options"), e.0))?;
    let src = crate::rootfs::source_path(m, bundle).ok_or_else(|| {
        Error::spec(
            format!("mounts[{index}].source"),
            "a bind mount needs a source",
        )
    })?;
    detached_clone(&src, o.is_recursive_bind())
}

// linux/mount.h
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

/// A detached copy of the mount at `source` (with its submounts when `recursive`), not yet
/// attached anywhere: closing the fd unmounts it (open_tree(2)).
pub fn detached_clone(source: &Path, recursive: bool) -> Result<OwnedFd> {
    let c = std::ffi::CString::new(source.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::spec("source", "contains a NUL byte"))?;
    let flags = OPEN_TREE_CLONE
        | libc::O_CLOEXEC as libc::c_uint
        | if recursive {
            libc::AT_RECURSIVE as libc::c_uint
        } else {
            0
        };
    // SAFETY: valid C string and flags; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(nix::Error::last())
            .ctx(|| format!("open_tree(OPEN_TREE_CLONE) {}", source.display()));
    }
    // SAFETY: open_tree returned a new fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Applies `userns`'s mappings to the detached mount `tree` (to its submounts too when
/// `recursive`). `source` names it in errors: a filesystem or kernel that cannot idmap is one
/// `Unsupported` error naming the filesystem type and the kernel release.
pub fn set_idmap(tree: &OwnedFd, userns: BorrowedFd, recursive: bool, source: &Path) -> Result<()> {
    let attr = crate::rootfs::MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    match crate::rootfs::mount_setattr_raw(tree, &attr, recursive) {
        Ok(()) => Ok(()),
        Err(e) => {
            let fs = fs_type(tree);
            let kernel = kernel_release();
            let reason = match e {
                nix::errno::Errno::ENOSYS => {
                    format!("kernel {kernel} has no mount_setattr(2) (Linux 5.12 or later needed)")
                }
                nix::errno::Errno::EINVAL => format!(
                    "kernel {kernel} cannot idmap {fs} mounts (ext4, xfs and vfat can be \
                     idmapped since Linux 5.12, btrfs since 5.15, tmpfs since 6.3; an overlayfs \
                     mount cannot, only its layers; nor can ramfs, network or pseudo \
                     filesystems)"
                ),
                nix::errno::Errno::EPERM => format!(
                    "the kernel refused it (EPERM): the source is already an idmapped mount, or \
                     {fs} belongs to another user namespace"
                ),
                other => format!("mount_setattr(MOUNT_ATTR_IDMAP): {other}"),
            };
            Err(Error::Unsupported {
                feature: format!("an idmapped mount of {} ({fs})", source.display()),
                reason,
            })
        }
    }
}

/// Attaches the detached mount `tree` onto the (already resolved) `target` (move_mount(2)).
pub fn attach(tree: &OwnedFd, target: &impl AsRawFd, what: &Path) -> Result<()> {
    // SAFETY: two valid fds, empty C strings, flags; the result is checked.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(nix::Error::last()).ctx(|| format!("move_mount onto {}", what.display()));
    }
    Ok(())
}

/// The filesystem type of `fd` by its magic number, for messages.
fn fs_type(fd: &impl AsFd) -> String {
    use nix::sys::statfs::*;
    let Ok(st) = fstatfs(fd) else {
        return "this filesystem".into();
    };
    let t = st.filesystem_type();
    let known = [
        (EXT4_SUPER_MAGIC, "ext4"),
        (TMPFS_MAGIC, "tmpfs"),
        (OVERLAYFS_SUPER_MAGIC, "overlayfs"),
        (BTRFS_SUPER_MAGIC, "btrfs"),
        (XFS_SUPER_MAGIC, "xfs"),
        (NFS_SUPER_MAGIC, "nfs"),
        (FUSE_SUPER_MAGIC, "fuse"),
        (PROC_SUPER_MAGIC, "proc"),
        (SYSFS_MAGIC, "sysfs"),
        (FsType(0x8584_58f6), "ramfs"),
    ];
    known
        .iter()
        .find(|(m, _)| *m == t)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| format!("filesystem type {:#x}", t.0))
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "?".into())
}

/// Whether idmapped mounts work here for what every user-namespaced pod needs: a tmpfs (its
/// secrets and service-account token). Probed by idmapping a detached tmpfs (fsopen + fsmount,
/// nothing attached anywhere) with a throw-away user namespace; without the privilege to probe,
/// decided by the kernel release (tmpfs can be idmapped since Linux 6.3).
pub fn supported() -> bool {
    match probe_tmpfs() {
        Ok(()) => true,
        Err(nix::errno::Errno::EPERM) => kernel_at_least(6, 3),
        Err(_) => false,
    }
}

fn probe_tmpfs() -> nix::Result<()> {
    let tree = crate::fsmount::detached(c"tmpfs", 0)?;
    let maps = Mappings {
        uid: vec![(0, 1_000_000_000, 1)],
        gid: vec![(0, 1_000_000_000, 1)],
    };
    let userns = userns_with(&maps).map_err(|_| nix::errno::Errno::EPERM)?;
    let attr = crate::rootfs::MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    crate::rootfs::mount_setattr_raw(&tree, &attr, false)
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let r = kernel_release();
    let mut it = r.split(|c: char| !c.is_ascii_digit());
    let (Some(Ok(a)), Some(Ok(b))) = (
        it.next().map(str::parse::<u32>),
        it.next().map(str::parse::<u32>),
    ) else {
        return false;
    };
    (a, b) >= (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_like_the_kernel() {
        validate("m", &[(0, 100000, 65536)]).unwrap();
        validate("m", &[(0, 1000, 1), (1, 100000, 65535)]).unwrap();
        let e = |m: &[IdMapping]| {
            validate("mounts[1].uidMappings", m)
                .unwrap_err()
                .to_string()
        };
        assert!(e(&[]).contains("must not be empty"));
        assert!(e(&[(0, 1, 0)]).contains("mounts[1].uidMappings[0]: size must not be 0"));
        assert!(e(&[(0, u32::MAX - 5, 10)]).contains("hostID"));
        let o = e(&[(0, 100000, 10), (5, 200000, 10)]);
        assert!(
            o.contains("entries 0 and 1 overlap: containerID ranges 0-9 and 5-14"),
            "{o}"
        );
        let o = e(&[(0, 100000, 10), (10, 100005, 10)]);
        assert!(
            o.contains("hostID ranges 100000-100009 and 100005-100014"),
            "{o}"
        );
        assert!(e(&vec![(0, 0, 1); 341]).contains("at most 340"));
    }

    #[test]
    fn coverage_by_the_container_namespace() {
        let ctr = [(0, 100000, 65536)];
        assert_eq!(uncovered(&[(0, 100000, 65536)], &ctr), None);
        assert_eq!(uncovered(&[(0, 100010, 10)], &ctr), None);
        assert_eq!(uncovered(&[(0, 200000, 10)], &ctr), Some((200000, 200009)));
        assert_eq!(
            uncovered(&[(0, 160000, 10000)], &ctr),
            Some((165536, 169999))
        );
        // Two adjacent ranges cover a mapping that spans both; a hole between them does not.
        let two = [(0, 100000, 10), (10, 100010, 10)];
        assert_eq!(uncovered(&[(0, 100005, 10)], &two), None);
        let holed = [(0, 100000, 10), (10, 100020, 10)];
        assert_eq!(
            uncovered(&[(0, 100005, 20)], &holed),
            Some((100010, 100019))
        );
    }

    #[test]
    fn containerd_option_lists() {
        assert_eq!(
            parse_list("0:100000:65536").unwrap(),
            vec![(0, 100000, 65536)]
        );
        assert_eq!(
            parse_list("0:1000:1,1:100000:65535").unwrap(),
            vec![(0, 1000, 1), (1, 100000, 65535)]
        );
        assert!(parse_list("0:1")
            .unwrap_err()
            .contains("containerID:hostID:size"));
        assert!(parse_list("0:x:1").is_err());
        assert!(parse_list("0:-1:1").is_err());
    }

    #[test]
    fn mappings_compare_as_sets() {
        let a = Mappings {
            uid: vec![(0, 1, 1), (1, 5, 1)],
            gid: vec![(0, 1, 2)],
        };
        let b = Mappings {
            uid: vec![(1, 5, 1), (0, 1, 1)],
            gid: vec![(0, 1, 2)],
        };
        assert!(a.same_as(&b));
        assert!(!a.same_as(&Mappings::default()));
    }

    #[test]
    fn kernel_release_compares() {
        assert!(kernel_at_least(3, 0));
        assert!(!kernel_at_least(999, 0));
    }
}
