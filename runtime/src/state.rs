//! Container state under `--root` (default `/run/husk`): one directory per container holding
//! `state.json` (written atomically: temp file + rename) and, until `start`, the `exec.fifo`
//! the init blocks on. Status is derived from the live system, so `state` and `list` work after
//! the creating process is gone.

use crate::error::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";
pub const DEFAULT_ROOT: &str = "/run/husk";

/// The OCI runtime status, as runc reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What husk persists about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Persisted {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub pid: i32,
    /// Start time of `pid` (field 22 of /proc/pid/stat): guards against pid reuse.
    pub pid_start_time: u64,
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// Per-controller cgroup directories (v1) or the single directory (v2, key "").
    pub cgroup: crate::cgroups::CgroupPaths,
    /// Namespaces the container created (so exec knows what to join).
    pub new_pid_ns: bool,
    /// Placed by the systemd cgroup driver (`systemd_unit` names its unit).
    #[serde(default)]
    pub use_systemd: bool,
    /// The container's transient unit (`cri-containerd-<id>.scope`) with the systemd driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
}

/// runc's `state` JSON (also the element type of `list --format json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OciState {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.+".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

pub fn container_dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

/// Writes `state.json` so a reader never sees a half-written file (a rename over it). Not
/// synced to disk, as runc's is not: the state describes processes that do not outlive the
/// machine, and where the state root is not a tmpfs (`/run` on a host without systemd) a sync
/// cost milliseconds per create.
pub fn save(dir: &Path, st: &Persisted) -> Result<()> {
    let tmp = dir.join(".state.json.tmp");
    let data = serde_json::to_vec(st).expect("state serialises");
    let mut f = std::fs::File::create(&tmp).ctx(|| format!("create {}", tmp.display()))?;
    f.write_all(&data)
        .ctx(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(STATE_FILE)).ctx(|| format!("rename {}", tmp.display()))
}

pub fn load(root: &Path, id: &str) -> Result<Persisted> {
    validate_id(id)?;
    let path = container_dir(root, id).join(STATE_FILE);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFound(id.into()))
        }
        Err(e) => return Err(e).ctx(|| format!("read {}", path.display())),
    };
    serde_json::from_slice(&data).map_err(|e| Error::Config {
        path,
        message: e.to_string(),
    })
}

/// Ids of every container under `root` that has a state file.
pub fn list_ids(root: &Path) -> Result<Vec<String>> {
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).ctx(|| format!("read {}", root.display())),
    };
    let mut ids: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(STATE_FILE).exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    Ok(ids)
}

/// Field 22 of /proc/<pid>/stat (start time in clock ticks), or None if the process is gone.
pub fn pid_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and ')' — split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "web-1", "x_y.z+1", "0123456789abcdef"] {
            validate_id(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "é"] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn own_start_time_is_readable() {
        assert!(pid_start_time(std::process::id() as i32).is_some());
        assert!(pid_start_time(i32::MAX).is_none());
    }

    #[test]
    fn status_serialises_like_runc() {
        assert_eq!(
            serde_json::to_string(&Status::Created).unwrap(),
            "\"created\""
        );
        assert_eq!(Status::Paused.to_string(), "paused");
    }
}
