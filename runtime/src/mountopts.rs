//! Parsing of OCI mount options into mount(2) flags, propagation changes, recursive
//! (mount_setattr) attributes and filesystem data — the same vocabulary runc accepts.

use nix::mount::MsFlags;

/// Recursive attributes applied with mount_setattr(AT_RECURSIVE) after the mount exists
/// (`rro`, `rnosuid`, …): plain mount(2) flags only affect the top mount of a recursive bind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecAttr {
    pub set: u64,
    pub clear: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    /// Flags explicitly cleared (e.g. `rw`, `suid`), so a read-only remount knows what was asked.
    pub cleared: MsFlags,
    pub propagation: Vec<MsFlags>,
    pub rec_attr: RecAttr,
    /// Filesystem-specific options, comma-joined (`mode=755,size=65536k`).
    pub data: String,
    /// runc's `tmpcopyup`: copy the underlying directory into a fresh tmpfs.
    pub tmpcopyup: bool,
    /// `idmap` / `ridmap` (runtime spec 1.2): the bind mount gets an idmapping, on its top
    /// mount only or recursively. A mount with `uidMappings` and neither option is `idmap`.
    pub idmap: Option<Idmap>,
}

/// How far an idmapping reaches on a (possibly recursive) bind mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idmap {
    /// `idmap`: the top mount only (submounts of an `rbind` keep their ids).
    Top,
    /// `ridmap`: the mount and every submount.
    Recursive,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: vec![],
            rec_attr: RecAttr::default(),
            data: String::new(),
            tmpcopyup: false,
            idmap: None,
        }
    }
}

impl MountOptions {
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }
    pub fn is_recursive_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND | MsFlags::MS_REC)
    }
    pub fn is_readonly(&self) -> bool {
        self.flags.contains(MsFlags::MS_RDONLY)
    }
}

// mount_setattr attribute bits (linux/mount.h).
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const MOUNT_ATTR_RELATIME: u64 = 0x0;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR__ATIME: u64 = 0x70;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;

/// Error for options that runc would accept but need kernel features husk does not drive yet.
#[derive(Debug, PartialEq, Eq)]
pub struct UnsupportedOption(pub String);

pub fn parse(options: &[String]) -> Result<MountOptions, UnsupportedOption> {
    let mut out = MountOptions::default();
    let mut data: Vec<&str> = Vec::new();
    for opt in options {
        let opt = opt.as_str();
        if let Some((set, flag)) = flag_option(opt) {
            if set {
                out.flags |= flag;
                out.cleared &= !flag;
            } else {
                out.flags &= !flag;
                out.cleared |= flag;
            }
            continue;
        }
        if let Some(p) = propagation_option(opt) {
            out.propagation.push(p);
            continue;
        }
        if let Some((set, attr)) = recursive_option(opt) {
            if set {
                out.rec_attr.set |= attr;
                out.rec_attr.clear &= !attr;
            } else {
                out.rec_attr.clear |= attr;
                out.rec_attr.set &= !attr;
            }
            if attr & MOUNT_ATTR__ATIME != 0 || opt == "rrelatime" {
                // atime modes are one field: clearing it first is required by the kernel.
                out.rec_attr.clear |= MOUNT_ATTR__ATIME;
            }
            continue;
        }
        match opt {
            "tmpcopyup" => out.tmpcopyup = true,
            "idmap" => out.idmap = Some(Idmap::Top),
            "ridmap" => out.idmap = Some(Idmap::Recursive),
            // Options containerd/CRI may pass that only concern other layers.
            "" | "defaults" | "nofail" | "auto" | "noauto" | "user" | "nouser" => {}
            other => data.push(other),
        }
    }
    out.data = data.join(",");
    Ok(out)
}

fn flag_option(opt: &str) -> Option<(bool, MsFlags)> {
    Some(match opt {
        "ro" => (true, MsFlags::MS_RDONLY),
        "rw" => (false, MsFlags::MS_RDONLY),
        "nosuid" => (true, MsFlags::MS_NOSUID),
        "suid" => (false, MsFlags::MS_NOSUID),
        "nodev" => (true, MsFlags::MS_NODEV),
        "dev" => (false, MsFlags::MS_NODEV),
        "noexec" => (true, MsFlags::MS_NOEXEC),
        "exec" => (false, MsFlags::MS_NOEXEC),
        "sync" => (true, MsFlags::MS_SYNCHRONOUS),
        "async" => (false, MsFlags::MS_SYNCHRONOUS),
        "dirsync" => (true, MsFlags::MS_DIRSYNC),
        "remount" => (true, MsFlags::MS_REMOUNT),
        "mand" => (true, MsFlags::MS_MANDLOCK),
        "nomand" => (false, MsFlags::MS_MANDLOCK),
        "atime" => (false, MsFlags::MS_NOATIME),
        "noatime" => (true, MsFlags::MS_NOATIME),
        "diratime" => (false, MsFlags::MS_NODIRATIME),
        "nodiratime" => (true, MsFlags::MS_NODIRATIME),
        "relatime" => (true, MsFlags::MS_RELATIME),
        "norelatime" => (false, MsFlags::MS_RELATIME),
        "strictatime" => (true, MsFlags::MS_STRICTATIME),
        "nostrictatime" => (false, MsFlags::MS_STRICTATIME),
        "lazytime" => (true, MsFlags::MS_LAZYTIME),
        "nolazytime" => (false, MsFlags::MS_LAZYTIME),
        "silent" => (true, MsFlags::MS_SILENT),
        "loud" => (false, MsFlags::MS_SILENT),
        "bind" => (true, MsFlags::MS_BIND),
        "rbind" => (true, MsFlags::MS_BIND | MsFlags::MS_REC),
        _ => return None,
    })
}

fn propagation_option(opt: &str) -> Option<MsFlags> {
    Some(match opt {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

fn recursive_option(opt: &str) -> Option<(bool, u64)> {
    Some(match opt {
        "rro" => (true, MOUNT_ATTR_RDONLY),
        "rrw" => (false, MOUNT_ATTR_RDONLY),
        "rnosuid" => (true, MOUNT_ATTR_NOSUID),
        "rsuid" => (false, MOUNT_ATTR_NOSUID),
        "rnodev" => (true, MOUNT_ATTR_NODEV),
        "rdev" => (false, MOUNT_ATTR_NODEV),
        "rnoexec" => (true, MOUNT_ATTR_NOEXEC),
        "rexec" => (false, MOUNT_ATTR_NOEXEC),
        "rnodiratime" => (true, MOUNT_ATTR_NODIRATIME),
        "rdiratime" => (false, MOUNT_ATTR_NODIRATIME),
        "rrelatime" => (true, MOUNT_ATTR_RELATIME),
        "rnorelatime" => (false, MOUNT_ATTR_RELATIME),
        "rnoatime" => (true, MOUNT_ATTR_NOATIME),
        "ratime" => (false, MOUNT_ATTR_NOATIME),
        "rstrictatime" => (true, MOUNT_ATTR_STRICTATIME),
        "rnostrictatime" => (false, MOUNT_ATTR_STRICTATIME),
        _ => return None,
    })
}

/// Whether `opt` is a recursive attribute (`rro`, `rnosuid`, …), applied with mount_setattr(2).
pub fn is_recursive_attr(opt: &str) -> bool {
    recursive_option(opt).is_some()
}

/// Every option name `parse` understands, for the `features` command.
pub fn known_options() -> Vec<&'static str> {
    vec![
        "async",
        "atime",
        "bind",
        "defaults",
        "dev",
        "diratime",
        "dirsync",
        "exec",
        "idmap",
        "lazytime",
        "loud",
        "mand",
        "noatime",
        "nodev",
        "nodiratime",
        "noexec",
        "nolazytime",
        "nomand",
        "norelatime",
        "nostrictatime",
        "nosuid",
        "private",
        "ratime",
        "rbind",
        "rdev",
        "rdiratime",
        "relatime",
        "remount",
        "rexec",
        "ridmap",
        "rnoatime",
        "rnodev",
        "rnodiratime",
        "rnoexec",
        "rnorelatime",
        "rnostrictatime",
        "rnosuid",
        "ro",
        "rprivate",
        "rrelatime",
        "rro",
        "rrw",
        "rshared",
        "rslave",
        "rstrictatime",
        "rsuid",
        "runbindable",
        "rw",
        "shared",
        "silent",
        "slave",
        "strictatime",
        "suid",
        "sync",
        "tmpcopyup",
        "unbindable",
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(opts: &[&str]) -> MountOptions {
        parse(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn flags_data_and_propagation_are_separated() {
        let o = p(&[
            "nosuid",
            "noexec",
            "nodev",
            "mode=755",
            "size=65536k",
            "rslave",
        ]);
        assert_eq!(
            o.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV
        );
        assert_eq!(o.data, "mode=755,size=65536k");
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
    }

    #[test]
    fn later_options_override_earlier_ones() {
        let o = p(&["ro", "rw"]);
        assert!(!o.is_readonly());
        assert!(o.cleared.contains(MsFlags::MS_RDONLY));
        let o = p(&["rw", "ro"]);
        assert!(o.is_readonly());
    }

    #[test]
    fn rbind_is_recursive_bind() {
        let o = p(&["rbind", "ro"]);
        assert!(o.is_bind() && o.is_recursive_bind() && o.is_readonly());
        assert!(!p(&["bind"]).is_recursive_bind());
    }

    #[test]
    fn recursive_attributes() {
        let o = p(&["rbind", "rro", "rnosuid"]);
        assert_eq!(o.rec_attr.set, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID);
        let o = p(&["rnoatime"]);
        assert_eq!(o.rec_attr.set, MOUNT_ATTR_NOATIME);
        assert_eq!(o.rec_attr.clear, MOUNT_ATTR__ATIME);
        assert!(o.data.is_empty());
    }

    #[test]
    fn idmap_and_ridmap() {
        assert_eq!(p(&["rbind", "idmap"]).idmap, Some(Idmap::Top));
        assert_eq!(p(&["bind", "ridmap"]).idmap, Some(Idmap::Recursive));
        assert_eq!(p(&["bind"]).idmap, None);
        assert!(p(&["ridmap"]).data.is_empty());
    }

    #[test]
    fn tmpcopyup_and_fs_specific_data() {
        let o = p(&["tmpcopyup", "newinstance", "ptmxmode=0666", "gid=5"]);
        assert!(o.tmpcopyup);
        assert_eq!(o.data, "newinstance,ptmxmode=0666,gid=5");
    }

    #[test]
    fn every_known_option_parses_without_data() {
        for opt in known_options() {
            let o = p(&[opt]);
            assert!(o.data.is_empty(), "{opt} fell through to data");
        }
    }
}
