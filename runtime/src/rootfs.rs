//! The container's root filesystem: every spec mount in order, default devices and /dev
//! links, masked and read-only paths, then pivot_root. Runs in the init, inside the new mount
//! namespace. Every target is resolved inside the rootfs (see `inroot`) and mounted through
//! `/proc/self/fd/N`, so an image's symlinks cannot redirect a mount to the host.

use crate::cgroups::{CgroupPaths, Layout};
use crate::error::{Context, Error, Result};
use crate::inroot::{fd_path, Root};
use crate::mountopts::{self, MountOptions};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

const NONE: Option<&str> = None;

/// What the init knows about the host when it builds the rootfs.
pub struct Context2<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    /// The container runs in a user namespace (new or joined) and cannot mknod.
    pub userns: bool,
    pub new_cgroupns: bool,
    pub new_netns: bool,
    pub cgroup_layout: &'a CgroupLayoutInfo,
    /// Detached clones of bind mount sources by mount index, made by the parent: idmapped
    /// ones (`idmap::mount_sources`) and those asked for (see `source_from_parent`). Attached
    /// with move_mount instead of a bind.
    pub sources: std::cell::RefCell<std::collections::HashMap<usize, OwnedFd>>,
    /// The channel to the parent, to ask for a source the container cannot reach.
    pub chan: Option<&'a crate::channel::Channel>,
}

impl Context2<'_> {
    /// A clone of `mounts[index]`'s source from the parent, the host's root: for a container
    /// in a user namespace whose root cannot search the path to it (runc asks its parent the
    /// same way).
    fn source_from_parent(&self, index: usize) -> Result<OwnedFd> {
        let chan = self
            .chan
            .ok_or_else(|| Error::Init("no parent to ask for a mount source".into()))?;
        chan.send(&crate::process::FromInit::MountSourceRequest { index })?;
        match chan.recv_with_fd::<crate::process::ToInit>()? {
            Some((crate::process::ToInit::MountSource { index: i }, Some(fd))) if i == index => {
                Ok(fd)
            }
            _ => Err(Error::Init(format!(
                "the parent sent no source for mounts[{index}]"
            ))),
        }
    }
}

/// The cgroup facts a cgroup mount needs, sent from the parent.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct CgroupLayoutInfo {
    pub v2: bool,
    /// v1: (mount point basename, superblock options as the `cgroup` mount data, container dir)
    pub v1: Vec<(String, String, PathBuf)>,
    pub v2_dir: Option<PathBuf>,
    /// v2: the host's cgroup2 superblock options (`nsdelegate`, `memory_recursiveprot`, ...).
    #[serde(default)]
    pub v2_super_options: Vec<String>,
}

impl CgroupLayoutInfo {
    pub fn new(layout: &Layout, paths: &CgroupPaths) -> Self {
        match layout {
            Layout::V2(root) => CgroupLayoutInfo {
                v2: true,
                v1: vec![],
                v2_dir: paths.dirs.get("").cloned(),
                v2_super_options: crate::cgroups::v2_superblock_options(root),
            },
            Layout::V1(mounts) => {
                let mut v1: Vec<(String, String, PathBuf)> = Vec::new();
                for (ctrl, (mp, _)) in mounts {
                    let name = mp
                        .file_name()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    if v1.iter().any(|(n, _, _)| *n == name) {
                        continue;
                    }
                    if let Some(dir) = paths.dirs.get(ctrl) {
                        v1.push((name, ctrl.clone(), dir.clone()));
                    }
                }
                CgroupLayoutInfo {
                    v2: false,
                    v1,
                    v2_dir: None,
                    v2_super_options: vec![],
                }
            }
        }
    }
}

fn mnt(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
    what: impl Fn() -> String,
) -> Result<()> {
    mount(src, target, fstype, flags, data).ctx(what)
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
pub(crate) struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

pub(crate) fn mount_setattr(fd: &OwnedFd, set: u64, clr: u64, recursive: bool) -> nix::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    mount_setattr_raw(fd, &attr, recursive)
}

/// Whether the kernel has mount_setattr(2) (Linux 5.12): asked with a bad fd, it answers EBADF
/// where it exists and ENOSYS where it does not.
pub fn mount_setattr_available() -> bool {
    let attr = MountAttr {
        attr_set: 0,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: an invalid fd and a valid struct: the kernel only validates and fails.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    r == 0 || nix::Error::last() != nix::errno::Errno::ENOSYS
}

/// mount_setattr(2) on the mount `fd` refers to (and its submounts when `recursive`).
pub(crate) fn mount_setattr_raw(
    fd: &OwnedFd,
    attr: &MountAttr,
    recursive: bool,
) -> nix::Result<()> {
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: valid fd, empty path, struct of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        Err(nix::Error::last())
    } else {
        Ok(())
    }
}

/// Flags of an existing mount that an unprivileged remount may not clear.
fn locked_flags(target: &Path) -> MsFlags {
    let Ok(st) = nix::sys::statvfs::statvfs(target) else {
        return MsFlags::empty();
    };
    use nix::sys::statvfs::FsFlags;
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (s, m) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
    ] {
        if f.contains(s) {
            out |= m;
        }
    }
    out
}

/// Bind-remount with `flags`; where the kernel refuses to clear flags locked on the source
/// mount, keep those (runc does the same).
fn remount_bind(target: &Path, flags: MsFlags, what: &dyn Fn() -> String) -> Result<()> {
    let base = MsFlags::MS_REMOUNT | MsFlags::MS_BIND;
    match mount(NONE, target, NONE, base | flags, NONE) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EPERM) => {
            let keep = locked_flags(target) - MsFlags::MS_RDONLY;
            mount(NONE, target, NONE, base | flags | keep, NONE)
                .ctx(|| format!("remount {}", what()))
        }
        Err(e) => Err(e).ctx(|| format!("remount {}", what())),
    }
}

fn is_bind(m: &Mount, o: &MountOptions) -> bool {
    o.is_bind() || m.typ().as_deref() == Some("bind")
}

/// A bind mount's source on the host: absolute, or relative to the bundle.
pub(crate) fn source_path(m: &Mount, bundle: &Path) -> Option<PathBuf> {
    m.source().as_ref().map(|s| {
        if s.is_absolute() {
            s.clone()
        } else {
            bundle.join(s)
        }
    })
}

pub fn needs_dev_setup(spec: &Spec) -> bool {
    // A bind-mounted /dev comes complete from the host.
    !spec.mounts().iter().flatten().any(|m| {
        m.destination() == Path::new("/dev")
            && (m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind"))
    })
}

/// Mounts everything into the rootfs (before pivot_root).
pub fn prepare(cx: &Context2) -> Result<()> {
    let spec = cx.spec;
    let linux = spec.linux().as_ref();
    // Propagation of "/" inside the new mount namespace: nothing leaks back to the host.
    let prop = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        None | Some("") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some(p) => {
            let o = mountopts::parse(&[p.to_string()])
                .map_err(|e| Error::spec("linux.rootfsPropagation", e.0))?;
            *o.propagation.first().ok_or_else(|| {
                Error::spec(
                    "linux.rootfsPropagation",
                    format!("{p:?} is not a propagation mode"),
                )
            })?
        }
    };
    mnt(None, Path::new("/"), None, prop, None, || {
        "set propagation of / (linux.rootfsPropagation)".into()
    })?;
    make_parent_private(cx.rootfs)?;
    mnt(
        Some(cx.rootfs),
        cx.rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
        || format!("bind rootfs {} onto itself", cx.rootfs.display()),
    )?;
    let root = Root::open(cx.rootfs)?;
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        mount_one(&root, cx, i, m).map_err(|e| Error::Config {
            path: PathBuf::from(format!("mounts[{i}] {}", m.destination().display())),
            message: e.to_string(),
        })?;
    }
    if needs_dev_setup(spec) {
        default_devices(&root, cx.userns)?;
    }
    for (i, d) in linux
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        create_device(&root, d, cx.userns)
            .map_err(|e| Error::spec(format!("linux.devices[{i}]"), e.to_string()))?;
    }
    // A process.cwd the image lacks is created, as runc does once the mounts are in place and
    // before the root turns read-only: directories owned by root, 0755 less the umask.
    if let Some(cwd) = spec.process().as_ref().map(|p| p.cwd()) {
        root.mkdir_all(cwd, 0o755)
            .map_err(|e| Error::spec("process.cwd", e.to_string()))?;
    }
    Ok(())
}

fn mount_one(root: &Root, cx: &Context2, index: usize, m: &Mount) -> Result<()> {
    let dest = m.destination();
    if !dest.is_absolute() {
        return Err(Error::spec("destination", "must be an absolute path"));
    }
    let o = mountopts::parse(m.options().as_deref().unwrap_or(&[])).map_err(|e| {
        Error::Unsupported {
            feature: format!("mount option {}", e.0),
            reason: "not supported by husk yet".into(),
        }
    })?;
    if o.tmpcopyup {
        return Err(Error::Unsupported {
            feature: "mount option tmpcopyup".into(),
            reason: "not supported by husk yet".into(),
        });
    }
    let typ = m.typ().as_deref().unwrap_or("");
    let flags_no_ro = o.flags - MsFlags::MS_RDONLY;
    let mut from_parent = cx.sources.borrow_mut().remove(&index);
    if from_parent.is_none() && cx.userns && is_bind(m, &o) {
        if let Some(src) = source_path(m, cx.bundle) {
            if let Err(e) = std::fs::metadata(&src) {
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    from_parent = Some(cx.source_from_parent(index)?);
                }
            }
        }
    }
    let target = if let Some(tree) = &from_parent {
        // The parent's detached clone goes onto the target resolved in the root.
        let is_dir = nix::sys::stat::fstat(tree)
            .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
            .ctx(|| format!("stat the source of {}", dest.display()))?;
        let t = if is_dir {
            root.mkdir_all(dest, 0o755)?
        } else {
            root.mkfile(dest, 0o644)?
        };
        crate::idmap::attach(tree, &t, dest)?;
        let t = root
            .resolve(dest)
            .ctx(|| format!("resolve {}", dest.display()))?;
        // A clone of a shared host mount would be its peer: receive only, like every mount
        // copied into the container's namespace (the spec's propagation comes after).
        mnt(
            None,
            &fd_path(&t),
            None,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None,
            || format!("make {} a slave", dest.display()),
        )?;
        let extra = o.flags - MsFlags::MS_BIND - MsFlags::MS_REC - MsFlags::MS_REMOUNT;
        if !extra.is_empty() {
            remount_bind(&fd_path(&t), extra, &|| dest.display().to_string())?;
        }
        t
    } else if is_bind(m, &o) {
        let src = source_path(m, cx.bundle)
            .ok_or_else(|| Error::spec("source", "a bind mount needs a source"))?;
        let meta = std::fs::metadata(&src).ctx(|| format!("bind source {}", src.display()))?;
        let t = if meta.is_dir() {
            root.mkdir_all(dest, 0o755)?
        } else {
            root.mkfile(dest, 0o644)?
        };
        let rec = if o.is_recursive_bind() {
            MsFlags::MS_REC
        } else {
            MsFlags::empty()
        };
        mnt(
            Some(&src),
            &fd_path(&t),
            None,
            MsFlags::MS_BIND | rec,
            None,
            || format!("bind {} to {}", src.display(), dest.display()),
        )?;
        let t = root
            .resolve(dest)
            .ctx(|| format!("resolve {}", dest.display()))?;
        // Flags on a bind only take effect through a remount.
        let extra = o.flags - MsFlags::MS_BIND - MsFlags::MS_REC - MsFlags::MS_REMOUNT;
        if !extra.is_empty() {
            remount_bind(&fd_path(&t), extra, &|| dest.display().to_string())?;
        }
        t
    } else {
        match typ {
            "cgroup" | "cgroup2" => return mount_cgroup(root, cx, m, &o),
            "" => return Err(Error::spec("type", "is required for a non-bind mount")),
            _ => {}
        }
        // runc: a tmpfs over an existing directory takes that directory's mode (even over an
        // explicit mode=), so it is mounted writable, chmod-ed, then made read-only if asked.
        let covered_mode = if typ == "tmpfs" {
            root.resolve(dest)
                .ok()
                .and_then(|fd| nix::sys::stat::fstat(&fd).ok())
                .map(|st| st.st_mode & 0o7777)
        } else {
            None
        };
        let t = root.mkdir_all(dest, 0o755)?;
        let src = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
        let data = (!o.data.is_empty()).then_some(o.data.as_str());
        let first_flags = if covered_mode.is_some() {
            o.flags - MsFlags::MS_REMOUNT - MsFlags::MS_RDONLY
        } else {
            o.flags - MsFlags::MS_REMOUNT
        };
        let r = mount(Some(&src), &fd_path(&t), Some(typ), first_flags, data);
        if let (Ok(()), Some(mode)) = (&r, covered_mode) {
            chmod_tmpfs(root, dest, mode, o.flags)?;
        }
        match (r, typ) {
            (Ok(()), _) => {}
            // sysfs cannot be mounted without owning the network namespace: bind the host's
            // read-only instead (runc does the same).
            (Err(nix::errno::Errno::EPERM), "sysfs") if !cx.new_netns || cx.userns => {
                mnt(
                    Some(Path::new("/sys")),
                    &fd_path(&t),
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None,
                    || "bind /sys".into(),
                )?;
                let t2 = root
                    .resolve(dest)
                    .ctx(|| format!("resolve {}", dest.display()))?;
                remount_bind(&fd_path(&t2), flags_no_ro | MsFlags::MS_RDONLY, &|| {
                    dest.display().to_string()
                })?;
            }
            (Err(e), _) => {
                return Err(e).ctx(|| {
                    format!(
                        "mount {typ} on {}{}",
                        dest.display(),
                        data.map(|d| format!(" ({d})")).unwrap_or_default()
                    )
                })
            }
        }
        root.resolve(dest)
            .ctx(|| format!("resolve {}", dest.display()))?
    };
    for p in &o.propagation {
        mnt(None, &fd_path(&target), None, *p, None, || {
            format!("set propagation of {}", dest.display())
        })?;
    }
    if o.rec_attr.set != 0 || o.rec_attr.clear != 0 {
        mount_setattr(&target, o.rec_attr.set, o.rec_attr.clear, true)
            .ctx(|| format!("mount_setattr (rro/rnosuid/…) on {}", dest.display()))?;
    }
    Ok(())
}

/// Gives the tmpfs just mounted at `dest` the `mode` of the directory it covers, then applies
/// a requested read-only flag (the mount was made writable for the chmod).
fn chmod_tmpfs(root: &Root, dest: &Path, mode: libc::mode_t, flags: MsFlags) -> Result<()> {
    let t = root
        .resolve(dest)
        .ctx(|| format!("resolve {}", dest.display()))?;
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        &fd_path(&t),
        Mode::from_bits_truncate(mode),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .ctx(|| format!("chmod tmpfs {} to {mode:o}", dest.display()))?;
    if flags.contains(MsFlags::MS_RDONLY) {
        mnt(
            None,
            &fd_path(&t),
            None,
            (flags - MsFlags::MS_BIND) | MsFlags::MS_REMOUNT,
            None,
            || format!("remount tmpfs {} read-only", dest.display()),
        )?;
    }
    Ok(())
}

fn mount_cgroup(root: &Root, cx: &Context2, m: &Mount, o: &MountOptions) -> Result<()> {
    let dest = m.destination();
    let flags = o.flags - MsFlags::MS_RDONLY - MsFlags::MS_REMOUNT;
    let info = cx.cgroup_layout;
    if info.v2 {
        let t = root.mkdir_all(dest, 0o755)?;
        if cx.new_cgroupns {
            mnt(
                Some(Path::new("cgroup2")),
                &fd_path(&t),
                Some("cgroup2"),
                o.flags - MsFlags::MS_REMOUNT,
                None,
                || format!("mount cgroup2 on {}", dest.display()),
            )?;
            return Ok(());
        }
        // No cgroup namespace (privileged containers): like runc, the cgroup2 filesystem
        // itself, the whole hierarchy. A cgroup2 mount made in the host's cgroup namespace
        // re-applies its options to the one superblock (kernel apply_cgroup_root_flags), so it
        // carries the host's: without them it would switch nsdelegate and
        // memory_recursiveprot off for the whole node (containerd#12952).
        let mut data: Vec<&str> = info.v2_super_options.iter().map(String::as_str).collect();
        for d in o.data.split(',').filter(|d| !d.is_empty()) {
            if !data.contains(&d) {
                data.push(d);
            }
        }
        let data = data.join(",");
        match mount(
            Some(Path::new("cgroup2")),
            &fd_path(&t),
            Some("cgroup2"),
            o.flags - MsFlags::MS_REMOUNT,
            Some(data.as_str()).filter(|d| !d.is_empty()),
        ) {
            Ok(()) => return Ok(()),
            // In a user namespace without its own cgroup namespace the kernel refuses: show the
            // container's own cgroup instead (runc's fallback).
            Err(nix::errno::Errno::EPERM) | Err(nix::errno::Errno::EBUSY) => {}
            Err(e) => {
                return Err(e).ctx(|| format!("mount cgroup2 ({data}) on {}", dest.display()))
            }
        }
        if let Some(dir) = &info.v2_dir {
            mnt(
                Some(dir),
                &fd_path(&t),
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
                || format!("bind {} to {}", dir.display(), dest.display()),
            )?;
            let t = root.resolve(dest).ctx(|| dest.display().to_string())?;
            remount_bind(&fd_path(&t), o.flags - MsFlags::MS_REMOUNT, &|| {
                dest.display().to_string()
            })?;
        }
        return Ok(());
    }
    // v1: a tmpfs holding one directory per hierarchy, each showing the container's cgroup.
    let t = root.mkdir_all(dest, 0o755)?;
    mnt(
        Some(Path::new("tmpfs")),
        &fd_path(&t),
        Some("tmpfs"),
        flags,
        Some("mode=755"),
        || format!("mount tmpfs on {}", dest.display()),
    )?;
    for (name, opts, dir) in &info.v1 {
        let sub = dest.join(name);
        let st = root.mkdir_all(&sub, 0o755)?;
        if cx.new_cgroupns {
            let (fstype, data) = if let Some(n) = opts.strip_prefix("name=") {
                ("cgroup", format!("none,name={n}"))
            } else {
                ("cgroup", opts.clone())
            };
            mnt(
                Some(Path::new("cgroup")),
                &fd_path(&st),
                Some(fstype),
                flags,
                Some(&data),
                || format!("mount cgroup {data} on {}", sub.display()),
            )?;
        } else {
            mnt(
                Some(dir),
                &fd_path(&st),
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
                || format!("bind {} to {}", dir.display(), sub.display()),
            )?;
        }
        if o.is_readonly() {
            let st = root.resolve(&sub).ctx(|| sub.display().to_string())?;
            remount_bind(&fd_path(&st), flags | MsFlags::MS_RDONLY, &|| {
                sub.display().to_string()
            })?;
        }
    }
    if o.is_readonly() {
        let t = root.resolve(dest).ctx(|| dest.display().to_string())?;
        mnt(
            None,
            &fd_path(&t),
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | flags,
            Some("mode=755"),
            || format!("remount {} read-only", dest.display()),
        )?;
    }
    Ok(())
}

/// pivot_root refuses a shared new root or a shared parent of it. The mount holding the rootfs
/// (containerd's overlay mounted at rootfs itself, or the filesystem around a plain directory)
/// is made private; with rootfsPropagation "rshared" (a bidirectional CRI mount) it is shared.
fn make_parent_private(rootfs: &Path) -> Result<()> {
    let info =
        std::fs::read_to_string("/proc/self/mountinfo").ctx(|| "read /proc/self/mountinfo")?;
    let parent = rootfs;
    let mut best: Option<(PathBuf, bool)> = None;
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 7 {
            continue;
        }
        let mp = PathBuf::from(f[4].replace("\\040", " "));
        if parent.starts_with(&mp)
            && best
                .as_ref()
                .is_none_or(|(b, _)| mp.as_os_str().len() >= b.as_os_str().len())
        {
            let shared = f[6..]
                .iter()
                .take_while(|x| **x != "-")
                .any(|x| x.starts_with("shared:"));
            best = Some((mp, shared));
        }
    }
    if let Some((mp, true)) = best {
        mnt(None, &mp, None, MsFlags::MS_PRIVATE, None, || {
            format!("make {} private for pivot_root", mp.display())
        })?;
    }
    Ok(())
}

struct DefaultDev {
    path: &'static str,
    major: u64,
    minor: u64,
}

const DEFAULT_DEVICES: &[DefaultDev] = &[
    DefaultDev {
        path: "/dev/null",
        major: 1,
        minor: 3,
    },
    DefaultDev {
        path: "/dev/zero",
        major: 1,
        minor: 5,
    },
    DefaultDev {
        path: "/dev/full",
        major: 1,
        minor: 7,
    },
    DefaultDev {
        path: "/dev/random",
        major: 1,
        minor: 8,
    },
    DefaultDev {
        path: "/dev/urandom",
        major: 1,
        minor: 9,
    },
    DefaultDev {
        path: "/dev/tty",
        major: 5,
        minor: 0,
    },
];

fn default_devices(root: &Root, bind: bool) -> Result<()> {
    for d in DEFAULT_DEVICES {
        let dev: LinuxDevice = serde_json::from_value(serde_json::json!({
            "path": d.path, "type": "c", "major": d.major, "minor": d.minor, "fileMode": 0o666, "uid": 0, "gid": 0
        }))
        .expect("static device");
        create_device(root, &dev, bind)?;
    }
    let dev = root.mkdir_all(Path::new("/dev"), 0o755)?;
    let links: [(&str, &str); 4] = [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ];
    for (name, target) in links {
        match nix::unistd::symlinkat(target, &dev, name) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(e).ctx(|| format!("symlink /dev/{name}")),
        }
    }
    if Path::new("/proc/kcore").exists() {
        let _ = nix::unistd::symlinkat("/proc/kcore", &dev, "core");
    }
    // /dev/ptmx must be the container's devpts multiplexer.
    if root.resolve(Path::new("/dev/pts/ptmx")).is_ok() {
        let _ = nix::unistd::unlinkat(&dev, "ptmx", nix::unistd::UnlinkatFlags::NoRemoveDir);
        nix::unistd::symlinkat("pts/ptmx", &dev, "ptmx").ctx(|| "symlink /dev/ptmx")?;
    }
    Ok(())
}

fn create_device(root: &Root, d: &LinuxDevice, bind: bool) -> Result<()> {
    let path = d.path();
    if !path.is_absolute() || !path.starts_with("/dev") {
        return Err(Error::spec(
            "path",
            format!("{} must be under /dev", path.display()),
        ));
    }
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => return Err(Error::spec("type", "'a' is not a device node type")),
    };
    if bind {
        // In a user namespace mknod is refused: bind the host's node instead.
        let t = root.mkfile(path, 0o644)?;
        return mnt(
            Some(path),
            &fd_path(&t),
            None,
            MsFlags::MS_BIND,
            None,
            || format!("bind device {}", path.display()),
        );
    }
    let parent = root.mkdir_all(path.parent().unwrap_or(Path::new("/dev")), 0o755)?;
    let name = path
        .file_name()
        .ok_or_else(|| Error::spec("path", "has no file name"))?;
    let _ = nix::unistd::unlinkat(&parent, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
    let mode = Mode::from_bits_truncate(d.file_mode().unwrap_or(0o666) as libc::mode_t & 0o7777);
    nix::sys::stat::mknodat(
        &parent,
        name,
        kind,
        mode,
        makedev(d.major() as u64, d.minor() as u64),
    )
    .ctx(|| format!("mknod {}", path.display()))?;
    let node = root.resolve(path).ctx(|| path.display().to_string())?;
    // mknod honours the umask; set the exact mode and owner through the resolved handle.
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        &fd_path(&node),
        mode,
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .ctx(|| format!("chmod {}", path.display()))?;
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        &fd_path(&node),
        d.uid().map(nix::unistd::Uid::from_raw),
        d.gid().map(nix::unistd::Gid::from_raw),
        nix::fcntl::AtFlags::empty(),
    )
    .ctx(|| format!("chown {}", path.display()))?;
    Ok(())
}

/// The null device files are masked with, opened once and checked to really be one:
/// char 1:3 on the opened fd, so what is bound is never a symlink's target or a file mounted
/// over /dev/null, e.g. a procfs file such as /proc/sys/kernel/core_pattern (CVE-2025-31133).
/// Runs before pivot_root: this is the host's /dev/null, not the container's.
fn null_device() -> Result<OwnedFd> {
    let fd = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "open /dev/null to mask paths with")?;
    let st = nix::sys::stat::fstat(&fd).ctx(|| "stat /dev/null")?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != makedev(1, 3) {
        return Err(Error::Init(format!(
            "refusing to mask paths with /dev/null: it is not the null device (char 1:3) but \
             mode {:o} rdev {}:{}",
            st.st_mode,
            libc::major(st.st_rdev),
            libc::minor(st.st_rdev)
        )));
    }
    Ok(fd)
}

/// maskedPaths: files get the null device bound over them, directories an empty read-only
/// tmpfs.
pub fn mask_paths(root: &Root, paths: &[String]) -> Result<()> {
    let mut null: Option<OwnedFd> = None;
    for p in paths {
        let t = match root.resolve(Path::new(p)) {
            Ok(t) => t,
            Err(nix::errno::Errno::ENOENT) => continue,
            Err(e) => return Err(e).ctx(|| format!("linux.maskedPaths {p}")),
        };
        let is_dir = nix::sys::stat::fstat(&t)
            .map(|s| (s.st_mode & libc::S_IFMT) == libc::S_IFDIR)
            .unwrap_or(false);
        if is_dir {
            mnt(
                Some(Path::new("tmpfs")),
                &fd_path(&t),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                Some("size=0,mode=755"),
                || format!("mask {p}"),
            )?;
        } else {
            if null.is_none() {
                null = Some(null_device()?);
            }
            let null = null.as_ref().expect("opened above");
            mnt(
                Some(&fd_path(null)),
                &fd_path(&t),
                None,
                MsFlags::MS_BIND,
                None,
                || format!("mask {p}"),
            )?;
        }
    }
    Ok(())
}

/// readonlyPaths: bound onto themselves and remounted read-only.
pub fn readonly_paths(root: &Root, paths: &[String]) -> Result<()> {
    for p in paths {
        let t = match root.resolve(Path::new(p)) {
            Ok(t) => t,
            Err(nix::errno::Errno::ENOENT) => continue,
            Err(e) => return Err(e).ctx(|| format!("linux.readonlyPaths {p}")),
        };
        mnt(
            Some(&fd_path(&t)),
            &fd_path(&t),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
            || format!("bind {p} read-only"),
        )?;
        let t = root.resolve(Path::new(p)).ctx(|| format!("resolve {p}"))?;
        remount_bind(
            &fd_path(&t),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            &|| p.clone(),
        )?;
        // Mounts below it (e.g. /proc/sys/fs/binfmt_misc) turn read-only too.
        let _ = mount_setattr(&t, crate::mountopts::MOUNT_ATTR_RDONLY, 0, true);
    }
    Ok(())
}

/// Switches the process root to the rootfs.
pub fn pivot(rootfs: &Path, no_pivot: bool) -> Result<()> {
    if no_pivot {
        nix::unistd::chdir(rootfs).ctx(|| format!("chdir {}", rootfs.display()))?;
        mnt(
            Some(rootfs),
            Path::new("/"),
            None,
            MsFlags::MS_MOVE,
            None,
            || "move rootfs to / (--no-pivot)".into(),
        )?;
        nix::unistd::chroot(".").ctx(|| "chroot (--no-pivot)")?;
        return nix::unistd::chdir("/").ctx(|| "chdir /");
    }
    let open_dir = |p: &Path| {
        nix::fcntl::open(
            p,
            nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("open {}", p.display()))
    };
    let old = open_dir(Path::new("/"))?;
    let new = open_dir(rootfs)?;
    nix::unistd::fchdir(&new).ctx(|| "fchdir rootfs")?;
    // pivot_root(".", ".") stacks the old root under the new one; it is then detached.
    nix::unistd::pivot_root(".", ".").ctx(|| format!("pivot_root {}", rootfs.display()))?;
    nix::unistd::fchdir(&old).ctx(|| "fchdir old root")?;
    mnt(
        None,
        Path::new("."),
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None,
        || "make old root a slave".into(),
    )?;
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "detach old root")?;
    nix::unistd::chdir("/").ctx(|| "chdir /")
}

/// After pivot: read-only root and the requested propagation of "/".
pub fn finish(spec: &Spec) -> Result<()> {
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        remount_bind(Path::new("/"), MsFlags::MS_RDONLY, &|| {
            "/ read-only (root.readonly)".into()
        })?;
    }
    if let Some(p) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .filter(|p| !p.is_empty())
    {
        let o = mountopts::parse(&[p.to_string()])
            .map_err(|e| Error::spec("linux.rootfsPropagation", e.0))?;
        for f in o.propagation {
            mnt(None, Path::new("/"), None, f, None, || {
                "set propagation of / (linux.rootfsPropagation)".into()
            })?;
        }
    }
    Ok(())
}

pub fn default_masked() -> Vec<String> {
    [
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/scsi",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub fn default_readonly() -> Vec<String> {
    [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
