//! cgroups v1 and v2: path resolution, resource translation and the cgroup lifecycle.
//!
//! cgroups-rs provides hierarchy discovery (mountinfo) and /proc/<pid>/cgroup parsing. The
//! resource values are translated here into explicit file writes, because cgroups-rs hard-codes
//! the v2 root to /sys/fs/cgroup (so its v2 paths cannot be tested on a fake cgroupfs), writes
//! `cpu.weight` verbatim from shares, and has no v2 swap, `unified` or device support. The
//! translation is pure and unit-tested for both versions; applying it is a loop of writes.

use crate::error::{Error, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

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

fn is_cgroup2(p: &Path) -> bool {
    nix::sys::statfs::statfs(p)
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

/// Is this the systemd driver's `slice:prefix:name` form?
pub fn is_systemd_path(p: &str) -> bool {
    !p.starts_with('/') && p.split(':').count() == 3
}

/// Resolves the spec's `cgroupsPath` to directories. Absolute paths hang off each hierarchy's
/// root; relative ones off the cgroup husk itself runs in (as runc does). No path: `/husk/<id>`.
pub fn resolve(
    layout: &Layout,
    cgroups_path: Option<&Path>,
    id: &str,
    own: &BTreeMap<String, String>,
) -> Result<CgroupPaths> {
    let raw = cgroups_path
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if is_systemd_path(&raw) {
        return Err(Error::Unsupported {
            feature: format!("cgroupsPath {raw:?}"),
            reason: "systemd cgroup driver not supported yet; use the cgroupfs driver".into(),
        });
    }
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
                own.get("").map(|s| s.trim_start_matches('/')).unwrap_or("")
            } else {
                ""
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

/// The device rules a container gets: the spec's, then the devices every container needs
/// (runc appends the same list): mknod of anything, the default nodes, ptys and tun.
pub fn with_default_devices(res: Option<&LinuxResources>) -> LinuxResources {
    let mut res = res.cloned().unwrap_or_default();
    let mut rules = res.devices().clone().unwrap_or_default();
    let rule = |t: &str,
                major: Option<i64>,
                minor: Option<i64>,
                access: &str|
     -> LinuxDeviceCgroup {
        serde_json::from_value(serde_json::json!({"allow": true, "type": t, "major": major, "minor": minor, "access": access})).expect("static rule")
    };
    rules.extend([
        rule("c", None, None, "m"),
        rule("b", None, None, "m"),
        rule("c", Some(1), Some(3), "rwm"),
        rule("c", Some(1), Some(8), "rwm"),
        rule("c", Some(1), Some(7), "rwm"),
        rule("c", Some(5), Some(0), "rwm"),
        rule("c", Some(1), Some(5), "rwm"),
        rule("c", Some(1), Some(9), "rwm"),
        rule("c", Some(5), Some(1), "rwm"),
        rule("c", Some(136), None, "rwm"),
        rule("c", Some(5), Some(2), "rwm"),
        rule("c", Some(10), Some(200), "rwm"),
    ]);
    res.set_devices(Some(rules));
    res
}

/// One file write: (v1 controller or "" on v2, file name, value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub controller: &'static str,
    pub file: String,
    pub value: String,
}

fn w(controller: &'static str, file: impl Into<String>, value: impl ToString) -> Write {
    Write {
        controller,
        file: file.into(),
        value: value.to_string(),
    }
}

fn limit_str(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// runc's conversion of cgroup v1 cpu shares (2..262144) to v2 cpu.weight (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// runc's conversion of blkio weight (10..1000) to v2 io.weight (1..10000).
pub fn blkio_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    1 + (u64::from(weight.clamp(10, 1000)) - 10) * 9999 / 990
}

fn device_rule(d: &LinuxDeviceCgroup) -> String {
    let typ = match d.typ() {
        Some(LinuxDeviceType::B) => 'b',
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
        Some(LinuxDeviceType::P) => 'p',
        Some(LinuxDeviceType::A) | None => 'a',
    };
    let num = |n: Option<i64>| {
        n.filter(|v| *v >= 0)
            .map(|v| v.to_string())
            .unwrap_or_else(|| "*".into())
    };
    let access = d.access().clone().unwrap_or_else(|| "rwm".into());
    format!("{typ} {}:{} {access}", num(d.major()), num(d.minor()))
}

/// A hugepage size as the hugetlb controller names its files (`2MB`, `1GB`, `64KB`): it
/// becomes part of a file name, so nothing else gets through (found by the `task_payloads`
/// fuzz target: `2/B` made a path).
fn page_size(ps: &str, i: usize) -> Result<&str> {
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

/// The v1 writes for `res`, in an order the kernel accepts.
pub fn v1_writes(res: &LinuxResources) -> Result<Vec<Write>> {
    let mut out = Vec::new();
    if let Some(devs) = res.devices() {
        for d in devs {
            let file = if d.allow() {
                "devices.allow"
            } else {
                "devices.deny"
            };
            out.push(w("devices", file, device_rule(d)));
        }
    }
    if let Some(m) = res.memory() {
        if let Some(l) = m.limit() {
            out.push(w(
                "memory",
                "memory.limit_in_bytes",
                if l < 0 { "-1".into() } else { l.to_string() },
            ));
        }
        if let Some(r) = m.reservation() {
            out.push(w(
                "memory",
                "memory.soft_limit_in_bytes",
                if r < 0 { "-1".into() } else { r.to_string() },
            ));
        }
        if let Some(s) = m.swap() {
            if let (Some(l), true) = (m.limit(), s >= 0) {
                if l >= 0 && s < l {
                    return Err(Error::spec(
                        "linux.resources.memory.swap",
                        format!("{s} is below the memory limit {l} (swap counts memory+swap)"),
                    ));
                }
            }
            out.push(w(
                "memory",
                "memory.memsw.limit_in_bytes",
                if s < 0 { "-1".into() } else { s.to_string() },
            ));
        }
        if let Some(sw) = m.swappiness() {
            if sw > 100 {
                return Err(Error::spec(
                    "linux.resources.memory.swappiness",
                    format!("{sw} is above 100"),
                ));
            }
            out.push(w("memory", "memory.swappiness", sw));
        }
        if m.disable_oom_killer() == Some(true) {
            out.push(w("memory", "memory.oom_control", 1));
        }
    }
    if let Some(c) = res.cpu() {
        if let Some(s) = c.shares() {
            out.push(w("cpu", "cpu.shares", s));
        }
        if let Some(p) = c.period() {
            out.push(w("cpu", "cpu.cfs_period_us", p));
        }
        if let Some(q) = c.quota() {
            out.push(w("cpu", "cpu.cfs_quota_us", if q <= 0 { -1 } else { q }));
        }
        if let Some(p) = c.realtime_period() {
            out.push(w("cpu", "cpu.rt_period_us", p));
        }
        if let Some(r) = c.realtime_runtime() {
            out.push(w("cpu", "cpu.rt_runtime_us", r));
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            out.push(w("cpuset", "cpuset.cpus", cpus));
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            out.push(w("cpuset", "cpuset.mems", mems));
        }
    }
    if let Some(p) = res.pids() {
        let l = p.limit();
        out.push(w(
            "pids",
            "pids.max",
            if l <= 0 { "max".into() } else { l.to_string() },
        ));
    }
    if let Some(b) = res.block_io() {
        if let Some(wt) = b.weight() {
            out.push(w("blkio", "blkio.weight", wt));
        }
        if let Some(wt) = b.leaf_weight() {
            out.push(w("blkio", "blkio.leaf_weight", wt));
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(wt) = d.weight() {
                out.push(w(
                    "blkio",
                    "blkio.weight_device",
                    format!("{}:{} {wt}", d.major(), d.minor()),
                ));
            }
        }
        let throttles = [
            (
                "blkio.throttle.read_bps_device",
                b.throttle_read_bps_device(),
            ),
            (
                "blkio.throttle.write_bps_device",
                b.throttle_write_bps_device(),
            ),
            (
                "blkio.throttle.read_iops_device",
                b.throttle_read_iops_device(),
            ),
            (
                "blkio.throttle.write_iops_device",
                b.throttle_write_iops_device(),
            ),
        ];
        for (file, devs) in throttles {
            for d in devs.iter().flatten() {
                out.push(w(
                    "blkio",
                    file,
                    format!("{}:{} {}", d.major(), d.minor(), d.rate()),
                ));
            }
        }
    }
    for (i, h) in res.hugepage_limits().iter().flatten().enumerate() {
        out.push(w(
            "hugetlb",
            format!("hugetlb.{}.limit_in_bytes", page_size(h.page_size(), i)?),
            h.limit(),
        ));
    }
    if let Some(n) = res.network() {
        if let Some(id) = n.class_id() {
            out.push(w("net_cls", "net_cls.classid", id));
        }
        for p in n.priorities().iter().flatten() {
            out.push(w(
                "net_prio",
                "net_prio.ifpriomap",
                format!("{} {}", p.name(), p.priority()),
            ));
        }
    }
    if res.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(Error::spec(
            "linux.resources.unified",
            "requires cgroup v2, but this host uses cgroup v1",
        ));
    }
    Ok(out)
}

/// The v2 writes for `res`. Device rules are not files on v2 (see `devices_v2`).
pub fn v2_writes(res: &LinuxResources) -> Result<Vec<Write>> {
    let mut out = Vec::new();
    if let Some(m) = res.memory() {
        if let Some(l) = m.limit() {
            out.push(w("", "memory.max", limit_str(l)));
        }
        if let Some(r) = m.reservation() {
            out.push(w("", "memory.low", limit_str(r)));
        }
        if let Some(s) = m.swap() {
            // OCI swap is memory+swap; v2 memory.swap.max is swap alone.
            let v = match (s, m.limit()) {
                (s, _) if s < 0 => "max".to_string(),
                (s, Some(l)) if l >= 0 => {
                    if s < l {
                        return Err(Error::spec(
                            "linux.resources.memory.swap",
                            format!("{s} is below the memory limit {l} (swap counts memory+swap)"),
                        ));
                    }
                    (s - l).to_string()
                }
                (s, _) => {
                    if s == 0 {
                        "0".to_string()
                    } else {
                        return Err(Error::spec(
                            "linux.resources.memory.swap",
                            "needs memory.limit on cgroup v2",
                        ));
                    }
                }
            };
            out.push(w("", "memory.swap.max", v));
        }
        if m.disable_oom_killer() == Some(true) {
            return Err(Error::spec(
                "linux.resources.memory.disableOOMKiller",
                "is not available on cgroup v2",
            ));
        }
    }
    if let Some(c) = res.cpu() {
        if let Some(s) = c.shares() {
            out.push(w("", "cpu.weight", shares_to_weight(s)));
        }
        if c.quota().is_some() || c.period().is_some() {
            let quota = match c.quota() {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".to_string(),
            };
            let period = c.period().unwrap_or(100_000);
            out.push(w("", "cpu.max", format!("{quota} {period}")));
        }
        if c.realtime_period().is_some() || c.realtime_runtime().is_some() {
            return Err(Error::spec(
                "linux.resources.cpu.realtimeRuntime",
                "realtime scheduling limits are not available on cgroup v2",
            ));
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            out.push(w("", "cpuset.cpus", cpus));
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            out.push(w("", "cpuset.mems", mems));
        }
    }
    if let Some(p) = res.pids() {
        let l = p.limit();
        out.push(w(
            "",
            "pids.max",
            if l <= 0 { "max".into() } else { l.to_string() },
        ));
    }
    if let Some(b) = res.block_io() {
        if let Some(wt) = b.weight() {
            out.push(w(
                "",
                "io.weight",
                format!("default {}", blkio_to_io_weight(wt)),
            ));
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(wt) = d.weight() {
                out.push(w(
                    "",
                    "io.weight",
                    format!("{}:{} {}", d.major(), d.minor(), blkio_to_io_weight(wt)),
                ));
            }
        }
        let throttles = [
            ("rbps", b.throttle_read_bps_device()),
            ("wbps", b.throttle_write_bps_device()),
            ("riops", b.throttle_read_iops_device()),
            ("wiops", b.throttle_write_iops_device()),
        ];
        for (key, devs) in throttles {
            for d in devs.iter().flatten() {
                out.push(w(
                    "",
                    "io.max",
                    format!("{}:{} {key}={}", d.major(), d.minor(), d.rate()),
                ));
            }
        }
    }
    for (i, h) in res.hugepage_limits().iter().flatten().enumerate() {
        out.push(w(
            "",
            format!("hugetlb.{}.max", page_size(h.page_size(), i)?),
            h.limit(),
        ));
    }
    if let Some(u) = res.unified() {
        let mut keys: Vec<_> = u.keys().collect();
        keys.sort();
        for k in keys {
            if k.contains('/') || k.starts_with('.') || !k.contains('.') {
                return Err(Error::spec(
                    format!("linux.resources.unified.{k}"),
                    "is not a cgroup interface file name",
                ));
            }
            out.push(w("", k.clone(), &u[k]));
        }
    }
    Ok(out)
}

fn write_file(dir: &Path, file: &str, value: &str) -> Result<()> {
    let p = dir.join(file);
    std::fs::write(&p, value).map_err(|e| Error::Cgroup {
        path: dir.display().to_string(),
        message: format!("write {value:?} to {file}: {e}"),
    })
}

fn read_file(dir: &Path, file: &str) -> Result<String> {
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
            create_v2(dir)?;
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
                    inherit_cpuset(dir)?;
                }
                done.push(dir);
            }
        }
        Ok(())
    }

    pub fn apply(&self, res: &LinuxResources) -> Result<()> {
        if self.paths.v2 {
            let dir = &self.paths.dirs[""];
            for wr in v2_writes(res)? {
                write_file(dir, &wr.file, &wr.value)?;
            }
            if let Some(devs) = res.devices() {
                crate::devices_bpf::apply(dir, devs)?;
            }
            return Ok(());
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

    pub fn freeze(&self, frozen: bool) -> Result<()> {
        if self.paths.v2 {
            let dir = self.dir("").expect("v2 dir");
            write_file(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
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

    /// Removes the cgroup directories (the processes must be gone).
    pub fn destroy(&self) -> Result<()> {
        let mut last_err = None;
        for dir in self.paths.dirs.values() {
            for attempt in 0..50 {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if attempt == 49 => {
                        last_err = Some(Error::Cgroup {
                            path: dir.display().to_string(),
                            message: format!("remove: {e}"),
                        })
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(2)),
                }
            }
        }
        last_err.map_or(Ok(()), Err)
    }
}

fn inherit_cpuset(dir: &Path) -> Result<()> {
    // A fresh v1 cpuset cgroup has empty cpus/mems and refuses tasks: copy from the nearest
    // ancestor down to the leaf.
    let mut chain = vec![dir.to_path_buf()];
    let mut cur = dir.parent();
    while let Some(p) = cur {
        if !p.join("cpuset.cpus").exists() {
            break;
        }
        chain.push(p.to_path_buf());
        cur = p.parent();
    }
    chain.reverse();
    for pair in chain.windows(2) {
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if read_file(&pair[1], f)?.is_empty() {
                let v = read_file(&pair[0], f)?;
                write_file(&pair[1], f, &v)?;
            }
        }
    }
    Ok(())
}

fn create_v2(dir: &Path) -> Result<()> {
    // From the topmost cgroup ancestor down: enable every available controller for the
    // children, then create the next level.
    let mut chain: Vec<&Path> = dir.ancestors().collect();
    chain.reverse();
    let Some(top) = chain
        .iter()
        .position(|p| p.join("cgroup.controllers").exists())
    else {
        return Err(Error::Cgroup {
            path: dir.display().to_string(),
            message: "not below a cgroup2 mount".into(),
        });
    };
    for pair in chain[top..].windows(2) {
        let (parent, child) = (pair[0], pair[1]);
        let avail = read_file(parent, "cgroup.controllers").unwrap_or_default();
        let enabled = read_file(parent, "cgroup.subtree_control").unwrap_or_default();
        for c in avail
            .split_whitespace()
            .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        {
            // Per controller: one that cannot be enabled (threaded subtree) must not block the
            // others.
            let _ = std::fs::write(parent.join("cgroup.subtree_control"), format!("+{c}"));
        }
        if !child.exists() {
            std::fs::create_dir(child).map_err(|e| Error::Cgroup {
                path: child.display().to_string(),
                message: format!("create: {e}"),
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxResources;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn shares_weight_conversion_matches_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
        assert_eq!(blkio_to_io_weight(500), 4950);
    }

    #[test]
    fn v1_memory_cpu_pids_devices() {
        let r = res(
            r#"{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}],
            "memory":{"limit":67108864,"reservation":33554432,"swap":134217728},
            "cpu":{"shares":512,"quota":50000,"period":100000,"cpus":"0","mems":"0"},
            "pids":{"limit":32}}"#,
        );
        let ws = v1_writes(&r).unwrap();
        let find = |f: &str| {
            ws.iter()
                .filter(|w| w.file == f)
                .map(|w| w.value.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(find("devices.deny"), vec!["a *:* rwm"]);
        assert_eq!(find("devices.allow"), vec!["c 1:3 rwm"]);
        assert_eq!(find("memory.limit_in_bytes"), vec!["67108864"]);
        assert_eq!(find("memory.soft_limit_in_bytes"), vec!["33554432"]);
        assert_eq!(find("memory.memsw.limit_in_bytes"), vec!["134217728"]);
        assert_eq!(find("cpu.shares"), vec!["512"]);
        assert_eq!(find("cpu.cfs_quota_us"), vec!["50000"]);
        assert_eq!(find("pids.max"), vec!["32"]);
        // period before quota, so a quota larger than the old period is accepted
        let pos = |f: &str| ws.iter().position(|w| w.file == f).unwrap();
        assert!(pos("cpu.cfs_period_us") < pos("cpu.cfs_quota_us"));
        assert!(pos("devices.deny") < pos("devices.allow"));
    }

    #[test]
    fn v2_translation() {
        let r = res(
            r#"{"memory":{"limit":67108864,"swap":134217728,"reservation":1024},
            "cpu":{"shares":1024,"quota":-1,"period":50000,"cpus":"0-1"},
            "pids":{"limit":-1},
            "blockIO":{"weight":500,"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}]},
            "hugepageLimits":[{"pageSize":"2MB","limit":4194304}],
            "unified":{"memory.high":"50000000"}}"#,
        );
        let ws = v2_writes(&r).unwrap();
        let get = |f: &str| {
            ws.iter()
                .find(|w| w.file == f)
                .map(|w| w.value.clone())
                .unwrap()
        };
        assert_eq!(get("memory.max"), "67108864");
        assert_eq!(get("memory.swap.max"), "67108864");
        assert_eq!(get("memory.low"), "1024");
        assert_eq!(get("cpu.weight"), "39");
        assert_eq!(get("cpu.max"), "max 50000");
        assert_eq!(get("cpuset.cpus"), "0-1");
        assert_eq!(get("pids.max"), "max");
        assert_eq!(get("io.weight"), "default 4950");
        assert_eq!(get("io.max"), "8:0 rbps=1048576");
        assert_eq!(get("hugetlb.2MB.max"), "4194304");
        assert_eq!(get("memory.high"), "50000000");
    }

    #[test]
    fn bad_values_name_the_field() {
        let e = v2_writes(&res(r#"{"memory":{"limit":100,"swap":50}}"#)).unwrap_err();
        assert!(e.to_string().contains("memory.swap"), "{e}");
        let e = v2_writes(&res(r#"{"unified":{"../escape":"1"}}"#)).unwrap_err();
        assert!(e.to_string().contains("unified"), "{e}");
        let e = v1_writes(&res(r#"{"unified":{"memory.high":"1"}}"#)).unwrap_err();
        assert!(e.to_string().contains("cgroup v2"), "{e}");
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
    }

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
        let e = resolve(&v1, Some(Path::new("system.slice:husk:c3")), "c3", &own).unwrap_err();
        assert!(
            e.to_string()
                .contains("systemd cgroup driver not supported yet"),
            "{e}"
        );
        let v2 = Layout::V2(PathBuf::from("/fake"));
        let p = resolve(&v2, Some(Path::new("/a/b")), "b", &own).unwrap();
        assert_eq!(p.dirs[""], PathBuf::from("/fake/a/b"));
        assert!(resolve(&v2, Some(Path::new("/a/../../etc")), "b", &own).is_err());
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
            "79"
        );
        assert_eq!(std::fs::read_to_string(dir.join("pids.max")).unwrap(), "10");
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
}
