//! Linux namespaces: which to create, which to join, and in what order.

use crate::error::{Context, Error, Result};
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
pub enum Kind {
    User,
    Mount,
    Pid,
    Network,
    Ipc,
    Uts,
    Cgroup,
    Time,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::User,
        Kind::Mount,
        Kind::Pid,
        Kind::Network,
        Kind::Ipc,
        Kind::Uts,
        Kind::Cgroup,
        Kind::Time,
    ];

    pub fn from_oci(t: LinuxNamespaceType) -> Kind {
        match t {
            LinuxNamespaceType::User => Kind::User,
            LinuxNamespaceType::Mount => Kind::Mount,
            LinuxNamespaceType::Pid => Kind::Pid,
            LinuxNamespaceType::Network => Kind::Network,
            LinuxNamespaceType::Ipc => Kind::Ipc,
            LinuxNamespaceType::Uts => Kind::Uts,
            LinuxNamespaceType::Cgroup => Kind::Cgroup,
            LinuxNamespaceType::Time => Kind::Time,
        }
    }

    pub fn flag(self) -> CloneFlags {
        match self {
            Kind::User => CloneFlags::CLONE_NEWUSER,
            Kind::Mount => CloneFlags::CLONE_NEWNS,
            Kind::Pid => CloneFlags::CLONE_NEWPID,
            Kind::Network => CloneFlags::CLONE_NEWNET,
            Kind::Ipc => CloneFlags::CLONE_NEWIPC,
            Kind::Uts => CloneFlags::CLONE_NEWUTS,
            Kind::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            Kind::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
        }
    }

    /// The name under /proc/<pid>/ns/.
    pub fn proc_name(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Mount => "mnt",
            Kind::Pid => "pid",
            Kind::Network => "net",
            Kind::Ipc => "ipc",
            Kind::Uts => "uts",
            Kind::Cgroup => "cgroup",
            Kind::Time => "time",
        }
    }

    pub fn oci_name(self) -> &'static str {
        match self {
            Kind::Mount => "mount",
            Kind::Network => "network",
            k => k.proc_name(),
        }
    }
}

/// What the init does for one namespace type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Create(Kind),
    Join(Kind, PathBuf),
}

/// Validates `linux.namespaces` and turns it into actions (duplicates and kernel support
/// checked, paths checked to exist).
pub fn plan(list: &[LinuxNamespace]) -> Result<Vec<Action>> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for (i, ns) in list.iter().enumerate() {
        let kind = Kind::from_oci(ns.typ());
        if seen.contains(&kind) {
            return Err(Error::spec(
                format!("linux.namespaces[{i}]"),
                format!("namespace {} is listed twice", kind.oci_name()),
            ));
        }
        seen.push(kind);
        if !std::path::Path::new("/proc/self/ns")
            .join(kind.proc_name())
            .exists()
        {
            return Err(Error::Unsupported {
                feature: format!("{} namespace", kind.oci_name()),
                reason: format!("/proc/self/ns/{} does not exist", kind.proc_name()),
            });
        }
        match ns.path() {
            Some(p) if !p.as_os_str().is_empty() => {
                if !p.exists() {
                    return Err(Error::spec(
                        format!("linux.namespaces[{i}].path"),
                        format!("{}: no such file", p.display()),
                    ));
                }
                out.push(Action::Join(kind, p.clone()));
            }
            _ => out.push(Action::Create(kind)),
        }
    }
    Ok(out)
}

pub fn creates(plan: &[Action], kind: Kind) -> bool {
    plan.contains(&Action::Create(kind))
}

/// Whether the container gets a namespace of `kind` that is not the host's: a new one, or one
/// joined by path that differs from this process's (CRI pods join the sandbox's netns, ipc and
/// uts by path; namespaced sysctls are fine there, as in runc).
pub fn isolated(plan: &[Action], kind: Kind) -> bool {
    use std::os::unix::fs::MetadataExt;
    plan.iter().any(|a| match a {
        Action::Create(k) => *k == kind,
        Action::Join(k, path) => {
            *k == kind && {
                let id = |p: &std::path::Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
                let own = format!("/proc/self/ns/{}", kind.proc_name());
                match (id(path), id(std::path::Path::new(&own))) {
                    (Ok(theirs), Ok(ours)) => theirs != ours,
                    _ => false,
                }
            }
        }
    })
}

pub fn has(plan: &[Action], kind: Kind) -> bool {
    plan.iter().any(|a| match a {
        Action::Create(k) | Action::Join(k, _) => *k == kind,
    })
}

/// An opened namespace file, ready to setns() into.
pub struct Opened {
    pub kind: Kind,
    pub fd: OwnedFd,
    pub path: PathBuf,
}

pub fn open(kind: Kind, path: &std::path::Path) -> Result<Opened> {
    let fd = nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("open {} namespace {}", kind.oci_name(), path.display()))?;
    Ok(Opened {
        kind,
        fd,
        path: path.to_path_buf(),
    })
}

pub fn join(ns: &Opened) -> Result<()> {
    nix::sched::setns(ns.fd.as_fd(), ns.kind.flag()).ctx(|| {
        format!(
            "join {} namespace {}",
            ns.kind.oci_name(),
            ns.path.display()
        )
    })
}

/// Is `path` the namespace this process is already in? (setns into one's own user namespace
/// fails, and joining the others is wasted work.)
pub fn is_current(kind: Kind, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(path),
        std::fs::metadata(format!("/proc/self/ns/{}", kind.proc_name())),
    ) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_rejects_duplicates_and_missing_paths() {
        let l: Vec<LinuxNamespace> =
            serde_json::from_str(r#"[{"type":"pid"},{"type":"pid"}]"#).unwrap();
        assert!(plan(&l).unwrap_err().to_string().contains("listed twice"));
        let l: Vec<LinuxNamespace> =
            serde_json::from_str(r#"[{"type":"network","path":"/proc/1/ns/nope"}]"#).unwrap();
        let e = plan(&l).unwrap_err().to_string();
        assert!(e.contains("linux.namespaces[0].path"), "{e}");
        let l: Vec<LinuxNamespace> = serde_json::from_str(
            r#"[{"type":"mount"},{"type":"network","path":"/proc/self/ns/net"}]"#,
        )
        .unwrap();
        let p = plan(&l).unwrap();
        assert!(creates(&p, Kind::Mount) && has(&p, Kind::Network) && !creates(&p, Kind::Network));
    }

    #[test]
    fn unknown_namespace_type_is_a_parse_error() {
        assert!(serde_json::from_str::<LinuxNamespace>(r#"{"type":"bogus"}"#).is_err());
    }

    #[test]
    fn own_namespace_is_detected() {
        assert!(is_current(
            Kind::Network,
            std::path::Path::new("/proc/self/ns/net")
        ));
    }
}
