//! The shim's own cgroup: containerd's `ShimCgroup` runtime option asks that the shim process
//! be placed in an existing cgroup (e.g. one that accounts for all of a node's shims). As
//! containerd's runc shim does: the path is taken from each hierarchy's root (a relative path
//! too); cgroup v2 joins `<root>/<path>`; v1 joins every controller hierarchy in which the
//! path exists and fails if it exists in none. Nothing is created: the option names a cgroup
//! that is already there.

use husk_runtime::cgroups::Layout;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ShimCgroupError {
    #[error("shim cgroup {path:?}: must not contain '..'")]
    Invalid { path: String },
    #[error("shim cgroup {path:?} does not exist in any cgroup hierarchy (looked in {looked})")]
    Missing { path: String, looked: String },
    #[error("shim cgroup: write pid {pid} to {file}: {source}")]
    Join {
        pid: u32,
        file: PathBuf,
        source: std::io::Error,
    },
}

/// Moves process `pid` (and its threads) into the cgroup `path` on this host. Returns the
/// directories joined.
pub fn join(pid: u32, path: &str) -> Result<Vec<PathBuf>, ShimCgroupError> {
    join_in(&Layout::detect(), pid, path)
}

/// `join` on a given layout (tests use fake hierarchies).
pub fn join_in(layout: &Layout, pid: u32, path: &str) -> Result<Vec<PathBuf>, ShimCgroupError> {
    let inner = path.trim_start_matches('/');
    if inner.split('/').any(|c| c == "..") {
        return Err(ShimCgroupError::Invalid { path: path.into() });
    }
    let write = |dir: &Path| {
        let file = dir.join("cgroup.procs");
        std::fs::write(&file, pid.to_string()).map_err(|source| ShimCgroupError::Join {
            pid,
            file,
            source,
        })
    };
    match layout {
        Layout::V2(root) => {
            let dir = root.join(inner);
            if !dir.is_dir() {
                return Err(ShimCgroupError::Missing {
                    path: path.into(),
                    looked: root.display().to_string(),
                });
            }
            write(&dir)?;
            Ok(vec![dir])
        }
        Layout::V1(controllers) => {
            // Controllers mounted together (cpu,cpuacct) share a hierarchy: join it once.
            let mut mounts: Vec<&PathBuf> = controllers.values().map(|(m, _)| m).collect();
            mounts.sort();
            mounts.dedup();
            let mut joined = Vec::new();
            for mount in &mounts {
                let dir = mount.join(inner);
                if dir.is_dir() {
                    write(&dir)?;
                    joined.push(dir);
                }
            }
            if joined.is_empty() {
                return Err(ShimCgroupError::Missing {
                    path: path.into(),
                    looked: mounts
                        .iter()
                        .map(|m| m.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            Ok(joined)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Fake v1 hierarchies under a temp dir: memory, pids, and cpu+cpuacct mounted together.
    fn v1(root: &Path) -> Layout {
        let mut m = BTreeMap::new();
        for (ctrl, dir) in [
            ("memory", "memory"),
            ("pids", "pids"),
            ("cpu", "cpu,cpuacct"),
            ("cpuacct", "cpu,cpuacct"),
        ] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
            m.insert(ctrl.to_string(), (root.join(dir), PathBuf::from("/")));
        }
        Layout::V1(m)
    }

    #[test]
    fn v1_joins_every_hierarchy_holding_the_path() {
        let d = tempfile::tempdir().unwrap();
        let layout = v1(d.path());
        for h in ["memory", "cpu,cpuacct"] {
            std::fs::create_dir_all(d.path().join(h).join("shims/pod")).unwrap();
        }
        let joined = join_in(&layout, 4242, "/shims/pod").unwrap();
        assert_eq!(
            joined,
            vec![
                d.path().join("cpu,cpuacct/shims/pod"),
                d.path().join("memory/shims/pod")
            ]
        );
        for dir in &joined {
            assert_eq!(
                std::fs::read_to_string(dir.join("cgroup.procs")).unwrap(),
                "4242"
            );
        }
        assert!(!d.path().join("pids/shims").exists(), "nothing is created");
        // A relative path is taken from the hierarchy root too.
        assert_eq!(join_in(&layout, 1, "shims/pod").unwrap().len(), 2);
    }

    #[test]
    fn a_path_in_no_hierarchy_is_an_error_naming_where_it_looked() {
        let d = tempfile::tempdir().unwrap();
        let e = join_in(&v1(d.path()), 1, "/nowhere").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("\"/nowhere\" does not exist"), "{msg}");
        assert!(msg.contains("memory"), "{msg}");
        assert!(matches!(
            join_in(&v1(d.path()), 1, "/a/../b"),
            Err(ShimCgroupError::Invalid { .. })
        ));
    }

    #[test]
    fn v2_joins_the_unified_path() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("system.slice/shims")).unwrap();
        let layout = Layout::V2(d.path().to_path_buf());
        let joined = join_in(&layout, 7, "/system.slice/shims").unwrap();
        assert_eq!(joined, vec![d.path().join("system.slice/shims")]);
        assert!(join_in(&layout, 7, "/missing").is_err());
    }
}
