//! Where a container's cgroup lives with the cgroupfs driver: the spec's `cgroupsPath` resolved
//! against the host's hierarchies (runc's rules: runtime-spec config-linux.md "Cgroups path").

use super::{CgroupPaths, Layout};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Is this the systemd driver's `slice:prefix:name` form (runc's `--systemd-cgroup` syntax)?
pub fn is_systemd_path(p: &str) -> bool {
    !p.starts_with('/') && p.split(':').count() == 3
}

/// Resolves the spec's `cgroupsPath` to directories for the cgroupfs driver. Absolute paths hang
/// off each hierarchy's root; relative ones off the cgroup the caller runs in, as runc does
/// (v1: below the caller's own cgroup in each hierarchy; v2: below the *parent* of the caller's
/// cgroup, which holds no processes so controllers can be enabled for its children). A path in
/// the systemd form `slice:prefix:name` is relative too, so it becomes one literal directory
/// named `slice:prefix:name` there — exactly what runc does without `--systemd-cgroup`, and
/// what containerd's CRI sends for any `.slice` pod parent. No path: `/husk/<id>`.
///
/// Errors: a path with a `..` component.
pub fn resolve(
    layout: &Layout,
    cgroups_path: Option<&Path>,
    id: &str,
    own: &BTreeMap<String, String>,
) -> Result<CgroupPaths> {
    let raw = cgroups_path
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (inner, relative) = if raw.is_empty() {
        (format!("husk/{id}"), false)
    } else {
        (
            raw.trim_start_matches('/').to_string(),
            !raw.starts_with('/'),
        )
    };
    if inner.split('/').any(|c| c == "..") {
        return Err(Error::spec(
            "linux.cgroupsPath",
            format!("{raw:?} must not contain '..'"),
        ));
    }
    let mut dirs = BTreeMap::new();
    match layout {
        Layout::V2(root) => {
            let base = if relative {
                let own = Path::new(own.get("").map(String::as_str).unwrap_or("/"));
                own.parent()
                    .unwrap_or(Path::new("/"))
                    .strip_prefix("/")
                    .map(Path::to_path_buf)
                    .unwrap_or_default()
            } else {
                PathBuf::new()
            };
            dirs.insert(String::new(), root.join(base).join(&inner));
            Ok(CgroupPaths { v2: true, dirs })
        }
        Layout::V1(mounts) => {
            for (ctrl, (mount_point, mount_root)) in mounts {
                let base = if relative {
                    let own_path = own.get(ctrl.as_str()).map(String::as_str).unwrap_or("/");
                    // The part of our own cgroup path below this mount's root.
                    Path::new(own_path)
                        .strip_prefix(mount_root)
                        .map(Path::to_path_buf)
                        .unwrap_or_default()
                } else {
                    PathBuf::new()
                };
                dirs.insert(ctrl.clone(), mount_point.join(base).join(&inner));
            }
            Ok(CgroupPaths { v2: false, dirs })
        }
    }
}

/// This process's cgroup paths, from /proc/self/cgroup ("" is the v2 entry).
pub fn own_cgroups() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Ok(s) = std::fs::read_to_string("/proc/self/cgroup") {
        for line in s.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, ctrls, path) = (
                parts.next(),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            for c in ctrls.split(',') {
                out.insert(c.to_string(), path.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_absolute_relative_and_systemd() {
        let mut mounts = BTreeMap::new();
        mounts.insert(
            "memory".to_string(),
            (PathBuf::from("/sys/fs/cgroup/memory"), PathBuf::from("/")),
        );
        mounts.insert(
            "cpu".to_string(),
            (PathBuf::from("/sys/fs/cgroup/cpu"), PathBuf::from("/")),
        );
        let v1 = Layout::V1(mounts);
        let mut own = BTreeMap::new();
        own.insert("memory".to_string(), "/process_api/x".to_string());
        own.insert("cpu".to_string(), "/".to_string());
        let p = resolve(&v1, Some(Path::new("/k8s.io/abc")), "abc", &own).unwrap();
        assert_eq!(
            p.dirs["memory"],
            PathBuf::from("/sys/fs/cgroup/memory/k8s.io/abc")
        );
        let p = resolve(&v1, Some(Path::new("rel/c1")), "c1", &own).unwrap();
        assert_eq!(
            p.dirs["memory"],
            PathBuf::from("/sys/fs/cgroup/memory/process_api/x/rel/c1")
        );
        assert_eq!(p.dirs["cpu"], PathBuf::from("/sys/fs/cgroup/cpu/rel/c1"));
        let p = resolve(&v1, None, "c2", &own).unwrap();
        assert_eq!(p.dirs["cpu"], PathBuf::from("/sys/fs/cgroup/cpu/husk/c2"));
        // The systemd form with the cgroupfs driver: one literal directory, relative (runc).
        let p = resolve(
            &v1,
            Some(Path::new("test.slice:cri-containerd:c3")),
            "c3",
            &own,
        )
        .unwrap();
        assert_eq!(
            p.dirs["memory"],
            PathBuf::from("/sys/fs/cgroup/memory/process_api/x/test.slice:cri-containerd:c3")
        );
        assert_eq!(
            p.dirs["cpu"],
            PathBuf::from("/sys/fs/cgroup/cpu/test.slice:cri-containerd:c3")
        );
        let v2 = Layout::V2(PathBuf::from("/fake"));
        let p = resolve(&v2, Some(Path::new("/a/b")), "b", &own).unwrap();
        assert_eq!(p.dirs[""], PathBuf::from("/fake/a/b"));
        // v2 relative paths hang off the parent of the caller's cgroup.
        let mut own2 = BTreeMap::new();
        own2.insert(
            String::new(),
            "/system.slice/containerd.service".to_string(),
        );
        let p = resolve(
            &v2,
            Some(Path::new("k.slice:cri-containerd:c4")),
            "c4",
            &own2,
        )
        .unwrap();
        assert_eq!(
            p.dirs[""],
            PathBuf::from("/fake/system.slice/k.slice:cri-containerd:c4")
        );
        own2.insert(String::new(), "/".to_string());
        let p = resolve(&v2, Some(Path::new("c5")), "c5", &own2).unwrap();
        assert_eq!(p.dirs[""], PathBuf::from("/fake/c5"));
        assert!(resolve(&v2, Some(Path::new("/a/../../etc")), "b", &own).is_err());
    }
}
