//! cgroups v1 and v2: the host's layout, a container's cgroup and its lifecycle.
//!
//! - `path`: where a `cgroupsPath` lives on the cgroupfs driver (absolute, relative, and the
//!   systemd `slice:prefix:name` form taken literally, as runc does without `--systemd-cgroup`).
//! - `v1`, `v2`: OCI resources translated into explicit file writes (pure, unit-tested).
//! - `devices`: the default device rules; `devices::bpf` the v2 device program.
//! - `systemd`: the systemd driver — a transient unit per container over D-Bus, then the
//!   cgroupfs writes systemd has no property for.
//!
//! cgroups-rs provides hierarchy discovery (mountinfo). The resource values are translated here
//! into explicit file writes, because cgroups-rs hard-codes the v2 root to /sys/fs/cgroup (so
//! its v2 paths cannot be tested on a fake cgroupfs), writes `cpu.weight` verbatim from shares,
//! and has no v2 swap, `unified` or device support.

pub mod devices;
mod path;
pub mod systemd;
mod v1;
mod v2;

pub use devices::with_default_devices;
pub use path::{is_systemd_path, own_cgroups, resolve};
pub use v1::v1_writes;
pub use v2::{blkio_to_io_weight, shares_to_weight, swap_to_v2, v2_writes};

use crate::error::{Error, Result};
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// How long a v2 freeze may take before it is undone and reported (runc waits as long).
pub const FREEZE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Which cgroup manager places a container: runc's `--systemd-cgroup` flag, containerd's
/// `SystemdCgroup` runtime option, kubelet's `cgroupDriver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Driver {
    /// Directories made and written directly under the cgroup mounts.
    Cgroupfs,
    /// A transient systemd unit (`prefix-name.scope` in `slice`) created over D-Bus.
    Systemd,
}

impl Driver {
    /// The driver for `cgroups_path` when the caller said nothing: systemd when the path has
    /// the systemd form and systemd runs this host (`/run/systemd/system`, sd_booted(3)),
    /// cgroupfs otherwise — on a host without systemd a `slice:prefix:name` path can only be a
    /// literal cgroupfs directory, which is what runc makes of it there.
    pub fn select(explicit: Option<Driver>, cgroups_path: &str) -> Driver {
        match explicit {
            Some(d) => d,
            None if is_systemd_path(cgroups_path) && systemd_running() => Driver::Systemd,
            None => Driver::Cgroupfs,
        }
    }
}

/// Is systemd this host's init (sd_booted(3): `/run/systemd/system` is a directory)?
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// v1 controllers husk places a container in (those mounted on the host).
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "rdma",
    "misc",
    "name=systemd",
];

/// Where a container's cgroup lives: one directory per v1 controller, or one v2 directory.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CgroupPaths {
    pub v2: bool,
    /// v1: controller name → directory; v2: "" → directory.
    pub dirs: BTreeMap<String, PathBuf>,
}

/// The host's cgroup layout.
#[derive(Debug, Clone)]
pub enum Layout {
    /// controller → (mount point, mount root)
    V1(BTreeMap<String, (PathBuf, PathBuf)>),
    V2(PathBuf),
}

impl Layout {
    pub fn detect() -> Layout {
        if is_cgroup2(Path::new(CGROUP_ROOT)) {
            return Layout::V2(PathBuf::from(CGROUP_ROOT));
        }
        let mut map = BTreeMap::new();
        for m in cgroups_rs::fs::hierarchies::mountinfo_self() {
            if m.fs_type.0 != "cgroup" {
                continue;
            }
            for opt in &m.super_opts {
                if V1_CONTROLLERS.contains(&opt.as_str()) {
                    map.entry(opt.clone())
                        .or_insert((m.mount_point.clone(), m.mount_root.clone()));
                }
            }
        }
        Layout::V1(map)
    }

    pub fn is_v2(&self) -> bool {
        matches!(self, Layout::V2(_))
    }
}

/// The superblock options of the cgroup2 mount at `root` (`nsdelegate`, `memory_recursiveprot`,
/// ...; `rw`/`ro` left out), from /proc/self/mountinfo.
pub fn v2_superblock_options(root: &Path) -> Vec<String> {
    let root = root.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(&*root))
        .filter_map(|l| {
            let mut after = l.split(" - ").nth(1)?.split(' ');
            (after.next()? == "cgroup2").then(|| after.nth(1).map(str::to_string))?
        })
        .next_back()
        .map(|opts| {
            opts.split(',')
                .filter(|o| *o != "rw" && *o != "ro" && !o.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn is_cgroup2(p: &Path) -> bool {
    nix::sys::statfs::statfs(p)
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

/// One file write: (v1 controller or "" on v2, file name, value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub controller: &'static str,
    pub file: String,
    pub value: String,
    /// Skipped when the file does not exist: an interface newer than its controller
    /// (hugetlb `.rsvd.max`), or one that only some set-ups have (swap accounting, BFQ).
    pub optional: bool,
    /// (file, value) written instead when that file exists (v2 `io.bfq.weight`, which takes
    /// the blkio weight unconverted).
    pub prefer: Option<(String, String)>,
}

pub(crate) fn w(controller: &'static str, file: impl Into<String>, value: impl ToString) -> Write {
    Write {
        controller,
        file: file.into(),
        value: value.to_string(),
        optional: false,
        prefer: None,
    }
}

/// A hugepage size as the hugetlb controller names its files (`2MB`, `1GB`, `64KB`): it
/// becomes part of a file name, so nothing else gets through (found by the `task_payloads`
/// fuzz target: `2/B` made a path). `i` is the entry's index in `hugepageLimits`.
pub(crate) fn page_size(ps: &str, i: usize) -> Result<&str> {
    let digits = ps.trim_end_matches(|c: char| c.is_ascii_uppercase());
    let unit = &ps[digits.len()..];
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || !["KB", "MB", "GB", "TB", "PB"].contains(&unit)
    {
        return Err(Error::spec(
            format!("linux.resources.hugepageLimits[{i}].pageSize"),
            format!("{ps:?} is not a hugepage size like 2MB or 1GB"),
        ));
    }
    Ok(ps)
}

pub(crate) fn write_file(dir: &Path, file: &str, value: &str) -> Result<()> {
    let p = dir.join(file);
    std::fs::write(&p, value).map_err(|e| Error::Cgroup {
        path: dir.display().to_string(),
        message: format!("write {value:?} to {file}: {e}"),
    })
}

pub(crate) fn read_file(dir: &Path, file: &str) -> Result<String> {
    std::fs::read_to_string(dir.join(file))
        .map(|s| s.trim().to_string())
        .map_err(|e| Error::Cgroup {
            path: dir.display().to_string(),
            message: format!("read {file}: {e}"),
        })
}

/// A container's cgroup.
#[derive(Debug, Clone)]
pub struct Cgroup {
    pub paths: CgroupPaths,
}

impl Cgroup {
    pub fn new(paths: CgroupPaths) -> Self {
        Cgroup { paths }
    }

    /// The directory holding cgroup.procs for the container (v2 dir, or v1 pids/memory/…).
    pub fn procs_dir(&self) -> Option<&Path> {
        if self.paths.v2 {
            return self.paths.dirs.get("").map(PathBuf::as_path);
        }
        ["pids", "memory", "cpu", "freezer", "devices"]
            .iter()
            .find_map(|c| self.paths.dirs.get(*c))
            .or_else(|| self.paths.dirs.values().next())
            .map(PathBuf::as_path)
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        if self.paths.v2 {
            self.paths.dirs.get("").map(PathBuf::as_path)
        } else {
            self.paths.dirs.get(controller).map(PathBuf::as_path)
        }
    }

    /// Creates the directories (v1: copying cpuset.cpus/mems down; v2: enabling controllers in
    /// every ancestor's subtree_control).
    pub fn create(&self) -> Result<()> {
        if self.paths.v2 {
            let dir = &self.paths.dirs[""];
            v2::create(dir)?;
        } else {
            let mut done: Vec<&PathBuf> = Vec::new();
            for (ctrl, dir) in &self.paths.dirs {
                if done.contains(&dir) {
                    continue;
                }
                std::fs::create_dir_all(dir).map_err(|e| Error::Cgroup {
                    path: dir.display().to_string(),
                    message: format!("create: {e}"),
                })?;
                if ctrl == "cpuset" {
                    v1::inherit_cpuset(dir)?;
                }
                done.push(dir);
            }
        }
        Ok(())
    }

    /// Applies `res`: v1 files per controller, or the v2 writes and the device program.
    pub fn apply(&self, res: &LinuxResources) -> Result<()> {
        if self.paths.v2 {
            if res.memory().as_ref().and_then(|m| m.check_before_update()) == Some(true) {
                self.check_memory_usage(res)?;
            }
            return self.apply_v2(&v2_writes(res)?, res.devices().as_deref());
        }
        let writes = v1_writes(res)?;
        let mut i = 0;
        while i < writes.len() {
            let wr = &writes[i];
            let Some(dir) = self.dir(wr.controller) else {
                if wr.controller == "hugetlb"
                    || wr.controller == "net_cls"
                    || wr.controller == "net_prio"
                {
                    return Err(Error::Cgroup {
                        path: wr.file.clone(),
                        message: format!("controller {} is not mounted", wr.controller),
                    });
                }
                i += 1;
                continue;
            };
            // memory.limit and memsw must keep limit <= memsw: if raising both, memsw first.
            if wr.file == "memory.limit_in_bytes" {
                if let Some(next) = writes
                    .get(i + 1)
                    .filter(|n| n.file == "memory.memsw.limit_in_bytes")
                {
                    if write_file(dir, &wr.file, &wr.value).is_err() {
                        write_file(dir, &next.file, &next.value)?;
                        write_file(dir, &wr.file, &wr.value)?;
                    } else {
                        write_file(dir, &next.file, &next.value)?;
                    }
                    i += 2;
                    continue;
                }
            }
            if wr.file == "memory.memsw.limit_in_bytes" && !dir.join(&wr.file).exists() {
                // No swap accounting on this kernel: only an unlimited or no-op swap is fine.
                let limit = res.memory().as_ref().and_then(|m| m.limit());
                if wr.value != "-1"
                    && Some(wr.value.as_str()) != limit.map(|l| l.to_string()).as_deref()
                {
                    return Err(Error::Unsupported {
                        feature: "linux.resources.memory.swap".into(),
                        reason: "swap accounting is disabled (no memory.memsw.limit_in_bytes)"
                            .into(),
                    });
                }
                i += 1;
                continue;
            }
            write_file(dir, &wr.file, &wr.value)?;
            i += 1;
        }
        Ok(())
    }

    /// Makes v2 `writes` in order (see `v2_writes` for what `optional` and `prefer` mean; a
    /// `cpu.max.burst` refused with EINVAL for the current quota is written again once
    /// `cpu.max` is, as runc does), then replaces husk's device program with one for
    /// `devices`.
    pub fn apply_v2(
        &self,
        writes: &[Write],
        devices: Option<&[oci_spec::runtime::LinuxDeviceCgroup]>,
    ) -> Result<()> {
        let dir = self.dir("").ok_or_else(|| Error::Cgroup {
            path: String::new(),
            message: "no cgroup v2 directory".into(),
        })?;
        let mut burst_later: Option<&Write> = None;
        for (i, wr) in writes.iter().enumerate() {
            if let Some((file, value)) = &wr.prefer {
                if dir.join(file).exists() {
                    write_file(dir, file, value)?;
                    continue;
                }
            }
            if wr.optional && !dir.join(&wr.file).exists() {
                if wr.file.starts_with("io.bfq.weight") {
                    tracing::warn!(value = %wr.value, "per-device io weight ignored: the BFQ scheduler (io.bfq.weight) is not in use");
                }
                continue;
            }
            // Never O_CREAT: a file the kernel does not provide must fail, not appear.
            let written = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join(&wr.file))
                .and_then(|mut f| std::io::Write::write_all(&mut f, wr.value.as_bytes()));
            match written {
                Ok(()) => {}
                Err(e)
                    if wr.file == "cpu.max.burst"
                        && e.raw_os_error() == Some(libc::EINVAL)
                        && writes[i..].iter().any(|n| n.file == "cpu.max") =>
                {
                    burst_later = Some(wr);
                }
                Err(e) => return Err(v2::write_error(dir, &wr.file, &wr.value, &e)),
            }
            if wr.file == "cpu.max" {
                if let Some(b) = burst_later.take() {
                    write_file(dir, &b.file, &b.value)?;
                }
            }
        }
        if let Some(devs) = devices {
            devices::bpf::apply(dir, devs)?;
        }
        Ok(())
    }

    /// runc's `memory.checkBeforeUpdate`: refuse a memory (or memory+swap) limit at or below
    /// what the cgroup uses now, instead of letting the kernel OOM-kill to get under it.
    fn check_memory_usage(&self, res: &LinuxResources) -> Result<()> {
        let Some(dir) = self.dir("") else {
            return Ok(());
        };
        let Ok(usage) = read_file(dir, "memory.current").map(|s| s.parse::<u64>().unwrap_or(0))
        else {
            return Ok(()); // best effort, as runc: nothing to compare with
        };
        let m = res.memory().as_ref();
        for (field, v) in [
            ("swap", m.and_then(|m| m.swap())),
            ("limit", m.and_then(|m| m.limit())),
        ] {
            if let Some(v) = v.filter(|v| *v > 0) {
                if v as u64 <= usage {
                    return Err(Error::spec(
                        format!("linux.resources.memory.{field}"),
                        format!("{v} is not above the current usage {usage} (checkBeforeUpdate)"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The directory a container process is to be born in (`fork::fork_parent`), opened
    /// `O_PATH`: on v2 unless the process runs in a user namespace (its credentials there may
    /// not write the host's cgroup files, so the caller moves the helper before it enters one).
    /// `None` means "move the helper with `add_pid`". Setting `HUSK_NO_CLONE_INTO_CGROUP=1`
    /// in the caller's environment forces that older path (for measuring the difference).
    pub fn birth_dir(&self, userns: bool) -> Result<Option<std::os::fd::OwnedFd>> {
        if !self.paths.v2 || userns || std::env::var_os("HUSK_NO_CLONE_INTO_CGROUP").is_some() {
            return Ok(None);
        }
        let Some(dir) = self.dir("") else {
            return Ok(None);
        };
        nix::fcntl::open(
            dir,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map(Some)
        .map_err(|e| Error::Cgroup {
            path: dir.display().to_string(),
            message: format!("open: {e}"),
        })
    }

    /// Enables the controllers in every ancestor of an existing v2 cgroup (a systemd unit's),
    /// as `create` does for one it makes.
    pub fn enable_controllers(&self) -> Result<()> {
        match self.dir("") {
            Some(dir) if self.paths.v2 => v2::create(dir),
            _ => Ok(()),
        }
    }

    pub fn add_pid(&self, pid: i32) -> Result<()> {
        let mut done: Vec<&PathBuf> = Vec::new();
        for dir in self.paths.dirs.values() {
            if done.contains(&dir) {
                continue;
            }
            write_file(dir, "cgroup.procs", &pid.to_string())?;
            done.push(dir);
        }
        Ok(())
    }

    pub fn pids(&self) -> Result<Vec<i32>> {
        let Some(dir) = self.procs_dir() else {
            return Ok(vec![]);
        };
        let s = match std::fs::read_to_string(dir.join("cgroup.procs")) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => {
                return Err(Error::Cgroup {
                    path: dir.display().to_string(),
                    message: format!("read cgroup.procs: {e}"),
                })
            }
        };
        Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Freezes or thaws every process of the cgroup. v2: `cgroup.freeze`, then (freezing)
    /// `cgroup.events` is watched until it says `frozen 1` — the kernel freezes asynchronously —
    /// for at most `FREEZE_TIMEOUT`, after which the cgroup is thawed again and the error
    /// returned, so a container is never left half frozen (runc's rules). v1: `freezer.state`.
    pub fn freeze(&self, frozen: bool) -> Result<()> {
        if self.paths.v2 {
            let dir = self.dir("").ok_or_else(|| Error::Cgroup {
                path: String::new(),
                message: "no cgroup v2 directory".into(),
            })?;
            write_file(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
            if frozen {
                if let Err(e) = v2::wait_frozen(dir, FREEZE_TIMEOUT) {
                    let _ = write_file(dir, "cgroup.freeze", "0");
                    return Err(e);
                }
            }
            return Ok(());
        }
        let dir = self.dir("freezer").ok_or_else(|| Error::Cgroup {
            path: "freezer".into(),
            message: "freezer controller is not mounted".into(),
        })?;
        let want = if frozen { "FROZEN" } else { "THAWED" };
        for _ in 0..1000 {
            write_file(dir, "freezer.state", want)?;
            if read_file(dir, "freezer.state")? == want {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Err(Error::Cgroup {
            path: dir.display().to_string(),
            message: format!("freezer did not reach {want}"),
        })
    }

    /// Sends `sig` to every process of the cgroup. SIGKILL on a v2 kernel with `cgroup.kill`
    /// (5.14) is one write that also catches processes forked meanwhile; otherwise the cgroup
    /// is frozen around the signalling (for SIGKILL), so nothing forks past it.
    pub fn signal_all(&self, sig: crate::signal::Signal) -> Result<()> {
        let is_kill = sig == crate::signal::Signal::KILL;
        if is_kill && self.paths.v2 {
            if let Some(dir) = self.dir("").filter(|d| d.join("cgroup.kill").exists()) {
                return write_file(dir, "cgroup.kill", "1");
            }
        }
        // Frozen meanwhile so no process forks past a SIGKILL; a frozen cgroup is thawed for
        // SIGKILL only (a paused container otherwise stays paused, signals pending).
        if is_kill && !self.is_frozen() {
            let _ = self.freeze(true);
        }
        for p in self.pids()? {
            let _ = sig.send(p);
        }
        if is_kill {
            let _ = self.freeze(false);
        }
        Ok(())
    }

    pub fn is_frozen(&self) -> bool {
        if self.paths.v2 {
            let Some(dir) = self.dir("") else {
                return false;
            };
            return read_file(dir, "cgroup.freeze")
                .map(|v| v == "1")
                .unwrap_or(false);
        }
        self.dir("freezer")
            .and_then(|d| read_file(d, "freezer.state").ok())
            .map(|s| s == "FROZEN" || s == "FREEZING")
            .unwrap_or(false)
    }

    /// Did the kernel OOM-kill a process of this cgroup?
    pub fn oom_kill_count(&self) -> u64 {
        let (dir, file) = if self.paths.v2 {
            (self.dir(""), "memory.events")
        } else {
            (self.dir("memory"), "memory.oom_control")
        };
        dir.and_then(|d| std::fs::read_to_string(d.join(file)).ok())
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|v| v.trim().parse().ok())
                })
            })
            .unwrap_or(0)
    }

    /// Removes the cgroup directories that hold no process, leaving in place any that another
    /// container sharing this cgroupsPath still uses (the runtime spec does not make
    /// cgroupsPath unique). Returns whether every directory is gone.
    pub fn destroy_if_empty(&self) -> Result<bool> {
        let mut all_gone = true;
        let mut last_err = None;
        for dir in self.paths.dirs.values() {
            let procs = match std::fs::read_to_string(dir.join("cgroup.procs")) {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(Error::Cgroup {
                        path: dir.display().to_string(),
                        message: format!("read cgroup.procs: {e}"),
                    })
                }
            };
            if !procs.trim().is_empty() {
                tracing::info!(cgroup = %dir.display(), "cgroup still holds other processes; left in place");
                all_gone = false;
                continue;
            }
            if let Err(e) = remove_tree(dir) {
                last_err = Some(e);
            }
        }
        last_err.map_or(Ok(all_gone), Err)
    }

    /// Removes the cgroup directories and any cgroups the container made below them, deepest
    /// first (the processes must be gone).
    pub fn destroy(&self) -> Result<()> {
        let mut last_err = None;
        for dir in self.paths.dirs.values() {
            if let Err(e) = remove_tree(dir) {
                last_err = Some(e);
            }
        }
        last_err.map_or(Ok(()), Err)
    }
}

/// rmdir of a cgroup and its sub-cgroups, deepest first; a cgroup that is already gone is fine.
/// An rmdir can fail briefly while the last exited processes are released: retried for 100 ms.
fn remove_tree(dir: &Path) -> Result<()> {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path())?;
            }
        }
    }
    for attempt in 0..50 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if attempt == 49 => {
                return Err(Error::Cgroup {
                    path: dir.display().to_string(),
                    message: format!("remove: {e}"),
                })
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(2)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn v2_lifecycle_on_a_fake_cgroupfs() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            root.path().join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids",
        )
        .unwrap();
        std::fs::write(root.path().join("cgroup.subtree_control"), "").unwrap();
        let layout = Layout::V2(root.path().to_path_buf());
        let paths = resolve(
            &layout,
            Some(Path::new("/pod/ctr")),
            "ctr",
            &BTreeMap::new(),
        )
        .unwrap();
        let cg = Cgroup::new(paths);
        cg.create().unwrap();
        let dir = root.path().join("pod/ctr");
        assert!(dir.is_dir());
        for f in ["memory.max", "cpu.weight", "pids.max"] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        // the root enabled controllers for its children (the fake file keeps the last write)
        let sc = std::fs::read_to_string(root.path().join("cgroup.subtree_control")).unwrap();
        assert!(sc.starts_with('+'), "{sc}");
        cg.apply(&res(
            r#"{"memory":{"limit":1048576},"cpu":{"shares":2048},"pids":{"limit":10}}"#,
        ))
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("memory.max")).unwrap(),
            "1048576"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("cpu.weight")).unwrap(),
            "174"
        );
        assert_eq!(std::fs::read_to_string(dir.join("pids.max")).unwrap(), "10");
        // A fake cgroup.events: the kernel would flip it to "frozen 1" on its own.
        std::fs::write(dir.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        cg.freeze(true).unwrap();
        assert!(cg.is_frozen());
        cg.freeze(false).unwrap();
        assert!(!cg.is_frozen());
        std::fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(cg.oom_kill_count(), 1);
        std::fs::write(dir.join("cgroup.procs"), "12\n34\n").unwrap();
        assert_eq!(cg.pids().unwrap(), vec![12, 34]);
    }

    #[test]
    fn hugepage_page_size_is_a_size_not_a_path() {
        // Regression (task_payloads fuzz target): a page size became part of a path.
        for ps in ["2/B", "../../x", "", "MB", "2mb", "2MB.rsvd"] {
            let r = res(&format!(
                r#"{{"hugepageLimits":[{{"pageSize":"{ps}","limit":0}}]}}"#
            ));
            for e in [v1_writes(&r).unwrap_err(), v2_writes(&r).unwrap_err()] {
                assert!(e.to_string().contains("hugepageLimits[0].pageSize"), "{e}");
            }
        }
        let r = res(r#"{"hugepageLimits":[{"pageSize":"1GB","limit":0}]}"#);
        assert_eq!(v1_writes(&r).unwrap()[0].file, "hugetlb.1GB.limit_in_bytes");
        assert_eq!(v2_writes(&r).unwrap()[0].file, "hugetlb.1GB.max");
    }

    fn fake_v2(files: &[&str]) -> (tempfile::TempDir, Cgroup) {
        let d = tempfile::tempdir().unwrap();
        for f in files {
            std::fs::write(d.path().join(f), "").unwrap();
        }
        let mut dirs = BTreeMap::new();
        dirs.insert(String::new(), d.path().to_path_buf());
        (d, Cgroup::new(CgroupPaths { v2: true, dirs }))
    }

    #[test]
    fn v2_apply_skips_missing_optional_files_and_prefers_bfq() {
        let r = res(
            r#"{"memory":{"limit":-1},"blockIO":{"weight":500,"weightDevice":[{"major":8,"minor":0,"weight":300}]},
                "hugepageLimits":[{"pageSize":"2MB","limit":4194304}]}"#,
        );
        // No swap accounting, no BFQ, no hugetlb reservations: those writes are skipped.
        let (d, cg) = fake_v2(&["memory.max", "io.weight", "hugetlb.2MB.max"]);
        cg.apply(&r).unwrap();
        let read = |f: &str| std::fs::read_to_string(d.path().join(f)).ok();
        assert_eq!(read("memory.max").as_deref(), Some("max"));
        assert_eq!(read("io.weight").as_deref(), Some("default 4950"));
        assert_eq!(read("hugetlb.2MB.max").as_deref(), Some("4194304"));
        for f in ["memory.swap.max", "io.bfq.weight", "hugetlb.2MB.rsvd.max"] {
            assert_eq!(read(f), None, "{f} was created");
        }
        // With BFQ the weight goes there unconverted and io.weight is left alone.
        let (d, cg) = fake_v2(&["io.weight", "io.bfq.weight"]);
        cg.apply(&res(r#"{"blockIO":{"weight":500}}"#)).unwrap();
        let read = |f: &str| std::fs::read_to_string(d.path().join(f)).unwrap();
        assert_eq!(read("io.bfq.weight"), "500");
        assert_eq!(read("io.weight"), "");
        // A swap limit without swap accounting is an error, not a silent skip.
        let (_d, cg) = fake_v2(&["memory.max"]);
        let e = cg
            .apply(&res(r#"{"memory":{"limit":1048576,"swap":2097152}}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("memory.swap.max"), "{e}");
    }

    #[test]
    fn v2_freeze_waits_for_cgroup_events_and_undoes_a_timeout() {
        let (d, cg) = fake_v2(&["cgroup.freeze"]);
        std::fs::write(d.path().join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        let flip = {
            let events = d.path().join("cgroup.events");
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(50));
                std::fs::write(events, "populated 1\nfrozen 1\n").unwrap();
            })
        };
        cg.freeze(true).unwrap();
        flip.join().unwrap();
        assert!(cg.is_frozen());
        std::fs::write(d.path().join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        let e = v2::wait_frozen(d.path(), std::time::Duration::from_millis(30))
            .unwrap_err()
            .to_string();
        assert!(e.contains("did not freeze"), "{e}");
    }

    #[test]
    fn v2_kill_all_uses_cgroup_kill() {
        let (d, cg) = fake_v2(&["cgroup.kill", "cgroup.procs"]);
        cg.signal_all(crate::signal::Signal::KILL).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("cgroup.kill")).unwrap(),
            "1"
        );
    }
}
