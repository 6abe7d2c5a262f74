//! Mounting the rootfs containerd hands to Create (overlay, bind, …) onto bundle/rootfs.
//!
//! For a user-namespaced pod (CRI `hostUsers: false`), containerd's overlay snapshotter adds
//! `uidmap=<containerID>:<hostID>:<size>[,…]` and `gidmap=…` to the mount's options where the
//! kernel can idmap overlay layers (containerd plugins/snapshots/overlay `mounts`), and expects
//! the shim to mount it: each lowerdir is idmapped with those maps (so the image's root-owned
//! files belong to the pod's root) and the overlay is mounted over them; the upperdir was
//! chowned to the mapped root by the snapshotter. The idmapped lowers (`husk_runtime::idmap`)
//! are attached only while the overlay is being mounted (see [`Layers`]): overlayfs keeps
//! clones of its layers, so nothing is left once it is mounted. Other mount types with those
//! options (a bind of a snapshot) are attached idmapped. A snapshotter that chowns instead
//! sends no such option: its rootfs mounts as any other.

use containerd_shim_protos::api::Mount;
use husk_runtime::idmap::{self, Mappings};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

pub fn mount_rootfs(mounts: &[Mount], target: &Path) -> Result<(), String> {
    if mounts.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(target).map_err(|e| format!("create {}: {e}", target.display()))?;
    for (i, m) in mounts.iter().enumerate() {
        mount_one(i, m, target).inspect_err(|_| unmount_rootfs(target))?;
    }
    Ok(())
}

/// containerd's `uidmap=`/`gidmap=` taken out of `options`: the maps (both or neither) and the
/// options left for mount(2).
fn take_idmap(i: usize, options: &[String]) -> Result<(Option<Mappings>, Vec<String>), String> {
    let (mut uid, mut gid, mut rest) = (None, None, Vec::new());
    for o in options {
        if let Some(v) = o.strip_prefix("uidmap=") {
            uid = Some(idmap::parse_list(v).map_err(|e| format!("rootfs[{i}]: uidmap: {e}"))?);
        } else if let Some(v) = o.strip_prefix("gidmap=") {
            gid = Some(idmap::parse_list(v).map_err(|e| format!("rootfs[{i}]: gidmap: {e}"))?);
        } else {
            rest.push(o.clone());
        }
    }
    let maps = match (uid, gid) {
        (Some(uid), Some(gid)) => Some(Mappings { uid, gid }),
        (None, None) => None,
        _ => {
            return Err(format!(
                "rootfs[{i}]: uidmap and gidmap must be given together (containerd idmaps only \
                 with both)"
            ))
        }
    };
    if let Some(m) = &maps {
        for (what, list) in [("uidmap", &m.uid), ("gidmap", &m.gid)] {
            idmap::validate(what, list).map_err(|e| format!("rootfs[{i}]: {e}"))?;
        }
    }
    Ok((maps, rest))
}

fn mount_one(i: usize, m: &Mount, target: &Path) -> Result<(), String> {
    let (maps, options) = take_idmap(i, &m.options)?;
    let opts = husk_runtime::mountopts::parse(&options)
        .map_err(|e| format!("rootfs[{i}]: option {}", e.0))?;
    let typ = m.type_.as_str();
    let bind = typ == "bind" || opts.is_bind();
    let flags = opts.flags - MsFlags::MS_REMOUNT;
    let err = |e: nix::Error| {
        format!(
            "mount rootfs[{i}] {typ} {} on {}: {e}",
            m.source,
            target.display()
        )
    };
    let userns = maps
        .as_ref()
        .map(|maps| idmap::userns_with(maps).map_err(|e| format!("rootfs[{i}]: {e}")))
        .transpose()?;
    let idmapped = |src: &Path, recursive: bool| -> Result<OwnedFd, String> {
        let userns = userns.as_ref().expect("idmapped only with maps");
        let tree =
            idmap::detached_clone(src, recursive).map_err(|e| format!("rootfs[{i}]: {e}"))?;
        idmap::set_idmap(&tree, userns.as_fd(), recursive, src)
            .map_err(|e| format!("rootfs[{i}]: {e}"))?;
        Ok(tree)
    };
    if bind {
        match &maps {
            Some(_) => {
                let tree = idmapped(Path::new(&m.source), flags.contains(MsFlags::MS_REC))?;
                let t = open_path(target)?;
                idmap::attach(&tree, &t, target).map_err(|e| format!("rootfs[{i}]: {e}"))?;
            }
            None => mount(
                Some(m.source.as_str()),
                target,
                None::<&str>,
                MsFlags::MS_BIND | (flags & MsFlags::MS_REC),
                None::<&str>,
            )
            .map_err(err)?,
        }
        if flags.contains(MsFlags::MS_RDONLY) {
            mount(
                None::<&str>,
                target,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(err)?;
        }
        return Ok(());
    }
    match (&maps, typ) {
        (None, _) => {
            let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
            mount(Some(m.source.as_str()), target, Some(typ), flags, data).map_err(err)
        }
        (Some(_), "overlay") => {
            // Each lower layer idmapped on its own and attached on a numbered directory next
            // to the rootfs: overlayfs takes a private clone of each layer, which Linux 6.12
            // (the node guest's) allows only from a mount in the caller's namespace (a
            // detached one fails with EINVAL; 6.18 takes it). Once the overlay holds its
            // clones, those attachments go.
            let layers_dir = target.with_file_name(LAYERS_DIR);
            let mut layers = Layers::new(&layers_dir).map_err(|e| format!("rootfs[{i}]: {e}"))?;
            let mut data: Vec<String> = Vec::new();
            for o in opts.data.split(',').filter(|o| !o.is_empty()) {
                let Some(lowers) = o.strip_prefix("lowerdir=") else {
                    data.push(o.to_string());
                    continue;
                };
                let mut names = Vec::new();
                for l in lowers.split(':').filter(|l| !l.is_empty()) {
                    let tree = idmapped(Path::new(l), false)?;
                    names.push(
                        layers
                            .attach(&tree)
                            .map_err(|e| format!("rootfs[{i}]: {e}"))?,
                    );
                }
                data.push(format!("lowerdir={}", names.join(":")));
            }
            if layers.is_empty() {
                return Err(format!(
                    "rootfs[{i}]: overlay with uidmap/gidmap but no lowerdir"
                ));
            }
            let data = data.join(",");
            // Layer paths relative to the layers' directory keep the options under the
            // page mount(2) reads (an image may have a hundred layers).
            layers
                .mount_from_inside(&m.source, target, flags, &data)
                .map_err(err)
        }
        (Some(_), _) => {
            // Any other filesystem: mounted, then covered by an idmapped clone of itself.
            let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
            mount(Some(m.source.as_str()), target, Some(typ), flags, data).map_err(err)?;
            let tree = idmapped(target, false)?;
            let t = open_path(target)?;
            idmap::attach(&tree, &t, target).map_err(|e| format!("rootfs[{i}]: {e}"))
        }
    }
}

/// Where an idmapped overlay's layers are attached while it is mounted: beside the rootfs, in
/// the bundle.
const LAYERS_DIR: &str = "idmapped-layers";

/// The idmapped layers of one overlay, attached on `dir/0`, `dir/1`, …; detached and removed
/// (with `dir`) on drop, whether the overlay was mounted or not.
struct Layers {
    dir: std::path::PathBuf,
    attached: Vec<std::path::PathBuf>,
}

impl Layers {
    fn new(dir: &Path) -> Result<Layers, String> {
        if dir.exists() {
            // Left by a shim that died mid-mount.
            drop(Layers {
                dir: dir.to_path_buf(),
                attached: std::fs::read_dir(dir)
                    .map(|rd| rd.flatten().map(|e| e.path()).collect())
                    .unwrap_or_default(),
            });
        }
        std::fs::create_dir(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        Ok(Layers {
            dir: dir.to_path_buf(),
            attached: Vec::new(),
        })
    }

    fn is_empty(&self) -> bool {
        self.attached.is_empty()
    }

    /// Attaches `tree` on the next numbered directory; its name relative to the layers' dir.
    fn attach(&mut self, tree: &OwnedFd) -> Result<String, String> {
        let name = self.attached.len().to_string();
        let at = self.dir.join(&name);
        std::fs::create_dir(&at).map_err(|e| format!("create {}: {e}", at.display()))?;
        self.attached.push(at.clone());
        let t = open_path(&at)?;
        idmap::attach(tree, &t, &at).map_err(|e| e.to_string())?;
        Ok(name)
    }

    /// mount(2) of the overlay from a thread whose working directory (unshared from the rest
    /// of the shim, CLONE_FS) is the layers' directory, so `data` names them relatively.
    fn mount_from_inside(
        &self,
        source: &str,
        target: &Path,
        flags: MsFlags,
        data: &str,
    ) -> nix::Result<()> {
        let target = std::path::absolute(target).map_err(|_| nix::errno::Errno::EINVAL)?;
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)?;
                nix::unistd::chdir(&self.dir)?;
                mount(Some(source), &target, Some("overlay"), flags, Some(data))
            })
            .join()
            .unwrap_or(Err(nix::errno::Errno::EIO))
        })
    }
}

impl Drop for Layers {
    fn drop(&mut self) {
        for at in self.attached.iter().rev() {
            let _ = umount2(at, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(at);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn open_path(p: &Path) -> Result<OwnedFd, String> {
    nix::fcntl::open(
        p,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("open {}: {e}", p.display()))
}

/// Unmounts everything stacked on `target` (best effort: it may not be mounted at all).
pub fn unmount_rootfs(target: &Path) {
    for _ in 0..32 {
        if umount2(target, MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn mnt(typ: &str, source: &str, options: &[String]) -> Mount {
        Mount {
            type_: typ.into(),
            source: source.into(),
            options: options.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn uidmap_and_gidmap_come_out_of_the_options() {
        let o = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (maps, rest) = take_idmap(
            0,
            &o(&[
                "index=off",
                "uidmap=0:100000:65536",
                "gidmap=0:100000:1,1:200000:65535",
                "lowerdir=/a:/b",
            ]),
        )
        .unwrap();
        assert_eq!(
            maps.unwrap(),
            Mappings {
                uid: vec![(0, 100000, 65536)],
                gid: vec![(0, 100000, 1), (1, 200000, 65535)],
            }
        );
        assert_eq!(rest, o(&["index=off", "lowerdir=/a:/b"]));
        assert_eq!(take_idmap(0, &o(&["ro"])).unwrap(), (None, o(&["ro"])));
        let e = take_idmap(3, &o(&["uidmap=0:1:1"])).unwrap_err();
        assert!(
            e.contains("rootfs[3]: uidmap and gidmap must be given together"),
            "{e}"
        );
        let e = take_idmap(0, &o(&["uidmap=0:1", "gidmap=0:1:1"])).unwrap_err();
        assert!(e.contains("containerID:hostID:size"), "{e}");
        let e = take_idmap(0, &o(&["uidmap=0:1:0", "gidmap=0:1:1"])).unwrap_err();
        assert!(e.contains("size must not be 0"), "{e}");
    }

    /// What containerd 2.x's overlay snapshotter sends for a hostUsers:false pod, mounted as
    /// root: the image's files (root-owned in the layers) belong to the pod's root through the
    /// rootfs, and a refusal leaves nothing mounted.
    #[test]
    fn idmapped_overlay_rootfs_as_containerd_sends_it() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test mounts: run it as root (the README's test command does)"
        );
        let d = tempfile::tempdir().unwrap();
        let p = |s: &str| d.path().join(s);
        for s in ["l1", "l2", "upper", "work", "rootfs"] {
            std::fs::create_dir(p(s)).unwrap();
        }
        std::fs::write(p("l1/etc-file"), "x").unwrap();
        std::fs::write(p("l2/other"), "y").unwrap();
        std::os::unix::fs::chown(p("l2/other"), Some(1000), Some(1000)).unwrap();
        // The snapshotter chowned the upper directory to the mapped root.
        std::os::unix::fs::chown(p("upper"), Some(100000), Some(100000)).unwrap();
        let options = vec![
            "index=off".to_string(),
            format!("lowerdir={}:{}", p("l1").display(), p("l2").display()),
            format!("upperdir={}", p("upper").display()),
            format!("workdir={}", p("work").display()),
            "uidmap=0:100000:65536".into(),
            "gidmap=0:100000:65536".into(),
        ];
        mount_rootfs(&[mnt("overlay", "overlay", &options)], &p("rootfs")).unwrap();
        let owner = |f: &str| {
            let m = std::fs::metadata(p("rootfs").join(f)).unwrap();
            (m.uid(), m.gid())
        };
        let seen = (owner("etc-file"), owner("other"), owner("."));
        // The layers' attachments are gone once the overlay holds them.
        let left = p(LAYERS_DIR).exists();
        let listed = std::fs::read_dir(p("rootfs")).unwrap().count();
        unmount_rootfs(&p("rootfs"));
        assert!(!left, "{LAYERS_DIR} left beside the rootfs");
        assert_eq!(listed, 2, "etc-file and other through the overlay");
        assert_eq!(seen, ((100000, 100000), (101000, 101000), (100000, 100000)));
        // The layers themselves are untouched.
        assert_eq!(std::fs::metadata(p("l1/etc-file")).unwrap().uid(), 0);

        // A layer on a filesystem the kernel cannot idmap: one message, nothing mounted.
        let ramfs = p("ramfs");
        std::fs::create_dir(&ramfs).unwrap();
        nix::mount::mount(
            Some("ramfs"),
            &ramfs,
            Some("ramfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        let mut bad = options.clone();
        bad[1] = format!("lowerdir={}:{}", p("l1").display(), ramfs.display());
        let e = mount_rootfs(&[mnt("overlay", "overlay", &bad)], &p("rootfs")).unwrap_err();
        let _ = umount2(&ramfs, MntFlags::MNT_DETACH);
        assert!(
            e.starts_with(&format!(
                "rootfs[0]: an idmapped mount of {} (ramfs) is not supported by this kernel",
                ramfs.display()
            )),
            "{e}"
        );
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mountinfo.contains(&d.path().display().to_string()),
            "{mountinfo}"
        );
        assert!(!p(LAYERS_DIR).exists());
    }

    #[test]
    fn idmapped_bind_rootfs() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test mounts: run it as root (the README's test command does)"
        );
        let d = tempfile::tempdir().unwrap();
        let (snap, rootfs) = (d.path().join("snap"), d.path().join("rootfs"));
        std::fs::create_dir(&snap).unwrap();
        std::fs::write(snap.join("f"), "x").unwrap();
        let options = vec![
            "rbind".to_string(),
            "ro".into(),
            "uidmap=0:200000:65536".into(),
            "gidmap=0:300000:65536".into(),
        ];
        mount_rootfs(&[mnt("bind", snap.to_str().unwrap(), &options)], &rootfs).unwrap();
        let m = std::fs::metadata(rootfs.join("f")).unwrap();
        let ro = std::fs::write(rootfs.join("g"), "y").is_err();
        unmount_rootfs(&rootfs);
        assert_eq!((m.uid(), m.gid(), ro), (200000, 300000, true));
    }
}
