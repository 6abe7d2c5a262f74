//! What the environment selects for a test bed, so the same suites run on this host and inside
//! the node guest (`crate::node`) with another containerd, cgroup driver or reference runc.
//!
//! | variable | selects | default |
//! |---|---|---|
//! | `HUSK_CONTAINERD` | the containerd binary (its `ctr` and runc shim beside it are used) | `/usr/bin/containerd` |
//! | `HUSK_CGROUP_DRIVER` | `systemd` or `cgroupfs`: the handlers' `SystemdCgroup` option and kubelet's pod cgroup parents for that driver | unset: cgroupfs, pods without a parent |
//! | `HUSK_RUNC` | the runc binary of handler `runc` (`BinaryName`) | the shim's `runc` on PATH |
//! | `HUSK_CRUN` | the crun binary of handler `crun` (`BinaryName`; also `ctr run --runc-binary`) | `/usr/bin/crun` |
//! | `HUSK_E2E_HANDLERS` | CRI handlers a scenario runs on, the first is the reference | `runc,husk` |
//! | `HUSK_E2E_RUNTIME` | the runtime the ctr shim suite drives | `io.containerd.husk.v2` |
//! | `HUSK_IMAGE_DIR` | prebuilt OCI archives (`crate::images::prebuild`) used instead of building | unset: built per bed |
//! | `HUSK_E2E_FLOOD_LINES` | lines the log-flood scenario writes | 2000000 |

use std::path::PathBuf;

/// The cgroup driver, as kubelet and containerd name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupDriver {
    Cgroupfs,
    Systemd,
}

impl CgroupDriver {
    /// `HUSK_CGROUP_DRIVER`; `None` when unset. Panics on any other value than the two names.
    pub fn from_env() -> Option<CgroupDriver> {
        match std::env::var("HUSK_CGROUP_DRIVER").ok().as_deref() {
            None | Some("") => None,
            Some("systemd") => Some(CgroupDriver::Systemd),
            Some("cgroupfs") => Some(CgroupDriver::Cgroupfs),
            Some(v) => panic!("HUSK_CGROUP_DRIVER={v:?}: use systemd or cgroupfs"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CgroupDriver::Cgroupfs => "cgroupfs",
            CgroupDriver::Systemd => "systemd",
        }
    }

    /// The cgroup parent kubelet gives a BestEffort pod with this `uid`
    /// (kubelet's `CgroupName.ToSystemd`: `-` in a component becomes `_`, components joined
    /// with `-`, `.slice` appended and the result expanded into its parent slices).
    pub fn pod_parent(self, uid: &str) -> String {
        match self {
            CgroupDriver::Cgroupfs => format!("/kubepods/besteffort/pod{uid}"),
            CgroupDriver::Systemd => format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
                uid.replace('-', "_")
            ),
        }
    }
}

/// The CRI handlers a scenario runs on (`HUSK_E2E_HANDLERS`, comma-separated); the first is the
/// reference the others are compared with.
pub fn handlers() -> Vec<String> {
    let v = std::env::var("HUSK_E2E_HANDLERS").unwrap_or_default();
    let list: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if list.is_empty() {
        vec!["runc".into(), "husk".into()]
    } else {
        list
    }
}

/// The containerd runtime (shim) the ctr suite drives (`HUSK_E2E_RUNTIME`).
pub fn ctr_runtime() -> String {
    std::env::var("HUSK_E2E_RUNTIME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "io.containerd.husk.v2".into())
}

/// The shim binary containerd starts for `runtime` (`io.containerd.runc.v2` →
/// `containerd-shim-runc-v2`, containerd's runtime-name-to-binary rule).
pub fn shim_binary_name(runtime: &str) -> String {
    let mut parts = runtime.rsplitn(2, '.');
    let version = parts.next().unwrap_or("");
    let name = parts
        .next()
        .and_then(|p| p.rsplit('.').next())
        .unwrap_or("");
    format!("containerd-shim-{name}-{version}")
}

/// `HUSK_RUNC`: the runc binary for handler `runc`.
pub fn runc_binary() -> Option<PathBuf> {
    std::env::var_os("HUSK_RUNC")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

/// `HUSK_CRUN`: the crun binary for handler `crun` (the runc shim's `BinaryName`), Debian's
/// `/usr/bin/crun` unless set.
pub fn crun_binary() -> PathBuf {
    std::env::var_os("HUSK_CRUN")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/crun"))
}

/// `HUSK_IMAGE_DIR`: a directory of prebuilt image archives.
pub fn image_dir() -> Option<PathBuf> {
    std::env::var_os("HUSK_IMAGE_DIR")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

/// `HUSK_E2E_FLOOD_LINES`: how many lines the log-flood scenario writes (2,000,000 by default;
/// the node guest asks for fewer: under emulation 2 million take ~10 min per cell).
pub fn flood_lines() -> usize {
    std::env::var("HUSK_E2E_FLOOD_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000)
}

/// Whether this host runs the unified cgroup v2 hierarchy at /sys/fs/cgroup.
pub fn cgroup_v2() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_pod_parents() {
        assert_eq!(
            CgroupDriver::Systemd.pod_parent("a-b-1"),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-poda_b_1.slice"
        );
        assert_eq!(
            CgroupDriver::Cgroupfs.pod_parent("a-b"),
            "/kubepods/besteffort/poda-b"
        );
    }

    #[test]
    fn shim_names() {
        assert_eq!(
            shim_binary_name("io.containerd.runc.v2"),
            "containerd-shim-runc-v2"
        );
        assert_eq!(
            shim_binary_name("io.containerd.husk.v2"),
            "containerd-shim-husk-v2"
        );
    }
}
