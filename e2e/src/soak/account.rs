//! Leak accounting for the soak: what a pod leaves on the host and in containerd, counted
//! before and after a run. The machine is shared (other test beds run beside this one, all in
//! CRI's `k8s.io` namespace), so every counter is scoped to this test bed: its containerd, its
//! shims (their command line holds the bed's socket), and the sandbox and container ids the
//! soak created. Host-wide totals are kept too, for information only.

use crate::bed::{TestBed, CRI_NS};
use crate::cri::{v1 as cri, Cri};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where husk's shim keeps its runtime state, per containerd namespace (`shim/src/manager.rs`).
pub const HUSK_STATE: &str = "/run/containerd/husk";
/// Where containerd's runc shim keeps runc's state, per namespace.
pub const RUNC_STATE: &str = "/run/containerd/runc";
/// containerd's shim sockets (`<dir>/<sha256 of "<address>/<namespace>/<id>">`).
pub const SHIM_SOCKETS: &str = "/run/containerd/s";

/// What the soak created, so what it left can be told from what other test beds hold.
#[derive(Default, Clone)]
pub struct Scope {
    /// Sandbox and container ids.
    pub ids: HashSet<String>,
    /// Sandbox ids (their shim sockets are named after them).
    pub sandboxes: HashSet<String>,
    /// Names of the pods' network namespaces (`cni-<uuid>` under /run/netns).
    pub netns: HashSet<String>,
    /// Shim processes whose fds are compared (the long-lived ones live at the baseline).
    pub shim_names: Vec<String>,
}

/// One reading of every counter (name → value). Leak counters first, `host:` ones are
/// host-wide and only informative.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub counters: BTreeMap<String, i64>,
    /// fds of each live shim of the scope, by pid.
    pub shim_fds: BTreeMap<i32, i64>,
}

/// Counters that are information, not leaks: host-wide, shared with everyone on the machine.
pub fn informative(name: &str) -> bool {
    name.starts_with("host:")
}

fn count_dir(p: &Path) -> i64 {
    std::fs::read_dir(p).map(|d| d.count() as i64).unwrap_or(0)
}

/// Files and directories under `p`, `p` included (0 when it does not exist).
fn count_tree(p: &Path) -> i64 {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    let mut n = 1;
    if meta.is_dir() {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            n += count_tree(&e.path());
        }
    }
    n
}

/// (pid, state, ppid) of every process, from /proc/<pid>/stat.
fn processes() -> Vec<(i32, char, i32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces: parse after the last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        out.push((pid, state, ppid));
    }
    out
}

fn fd_count(pid: i32) -> i64 {
    count_dir(&PathBuf::from(format!("/proc/{pid}/fd")))
}

/// Zombies among the descendants of `roots` (the bed's containerd and its shims), and on the
/// whole host.
fn zombies(roots: &HashSet<i32>) -> (i64, i64) {
    let procs = processes();
    let parent: HashMap<i32, i32> = procs.iter().map(|(p, _, pp)| (*p, *pp)).collect();
    let mut ours = 0;
    let mut host = 0;
    for (pid, state, _) in &procs {
        if *state != 'Z' {
            continue;
        }
        host += 1;
        let mut p = parent.get(pid).copied().unwrap_or(0);
        for _ in 0..64 {
            if roots.contains(&p) {
                ours += 1;
                break;
            }
            match parent.get(&p) {
                Some(&pp) if pp > 0 && pp != p => p = pp,
                _ => break,
            }
        }
    }
    (ours, host)
}

/// Directories of every cgroup hierarchy whose name holds one of `needles`.
fn cgroups(needles: &[&str]) -> i64 {
    fn walk(dir: &Path, needles: &[&str], depth: usize, n: &mut i64) {
        if depth > 12 {
            return;
        }
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if needles.iter().any(|x| name.contains(x)) {
                *n += 1;
            }
            walk(&e.path(), needles, depth + 1, n);
        }
    }
    let mut n = 0;
    let root = Path::new("/sys/fs/cgroup");
    if crate::env::cgroup_v2() {
        walk(root, needles, 0, &mut n);
    } else {
        // v1: every controller's hierarchy, the named systemd one and the unified one.
        for h in std::fs::read_dir(root).into_iter().flatten().flatten() {
            walk(&h.path(), needles, 0, &mut n);
        }
    }
    n
}

/// containerd's shim socket for sandbox `id` on `address` (containerd's `SocketAddress`).
pub fn shim_socket(address: &Path, id: &str) -> PathBuf {
    use sha2::{Digest, Sha256};
    let joined = address.join(CRI_NS).join(id);
    let digest = Sha256::digest(joined.to_string_lossy().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Path::new(SHIM_SOCKETS).join(hex)
}

/// Entries `ctr <args>` lists in CRI's namespace (`quiet`: one per line; else after a header
/// line); -1 when ctr fails.
fn ctr_lines(bed: &TestBed, args: &[&str], quiet: bool) -> i64 {
    let out = std::process::Command::new(bed.ctr_bin())
        .arg("--address")
        .arg(bed.socket())
        .args(["--namespace", CRI_NS])
        .args(args)
        .args(if quiet { &["-q"][..] } else { &[][..] })
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let n = String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .count() as i64;
            if quiet {
                n
            } else {
                (n - 1).max(0)
            }
        }
        _ => -1,
    }
}

impl Snapshot {
    /// Reads every counter now.
    pub fn take(bed: &TestBed, c: &mut Cri, scope: &Scope) -> Snapshot {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: i64| {
            m.insert(k.to_string(), v);
        };
        let containerd = bed.containerd.as_ref().map(|c| c.id() as i32).unwrap_or(0);
        let mut shims: Vec<i32> = Vec::new();
        for name in &scope.shim_names {
            shims.extend(bed.shim_pids_named(name));
        }
        put("shim processes", shims.len() as i64);
        let mut roots: HashSet<i32> = bed.shim_pids_named("containerd-shim").into_iter().collect();
        roots.insert(containerd);
        let (z, host_z) = zombies(&roots);
        put("zombies", z);
        put("host: zombies", host_z);
        // Mounts: the bed's directories (rootfs, shm, bundles) and anything named after a
        // pod, container or netns of the scope.
        let bed_dir = bed.dir.path().display().to_string();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let ours = mountinfo
            .lines()
            .filter(|l| {
                l.contains(&bed_dir)
                    || scope.ids.iter().any(|id| l.contains(id.as_str()))
                    || scope.netns.iter().any(|n| l.contains(n.as_str()))
            })
            .count();
        put("mounts", ours as i64);
        put("host: mountinfo lines", mountinfo.lines().count() as i64);
        let mut needles: Vec<&str> = scope.ids.iter().map(String::as_str).collect();
        needles.push(&bed.ns);
        // The systemd driver's pod slices spell the uid with '_' for '-'.
        let ns_systemd = bed.ns.replace('-', "_");
        needles.push(&ns_systemd);
        put("cgroups", cgroups(&needles));
        put(
            "netns",
            scope
                .netns
                .iter()
                .filter(|n| Path::new("/run/netns").join(n).exists())
                .count() as i64,
        );
        put("host: netns", count_dir(Path::new("/run/netns")));
        put("containerd fds", fd_count(containerd));
        let shim_fds: BTreeMap<i32, i64> = shims.iter().map(|p| (*p, fd_count(*p))).collect();
        let state: i64 = scope
            .ids
            .iter()
            .map(|id| {
                count_tree(&Path::new(HUSK_STATE).join(CRI_NS).join(id))
                    + count_tree(&Path::new(RUNC_STATE).join(CRI_NS).join(id))
            })
            .sum();
        put("runtime state files", state);
        put(
            "shim sockets",
            scope
                .sandboxes
                .iter()
                .filter(|s| shim_socket(&bed.socket(), s).exists())
                .count() as i64,
        );
        let d = bed.dir.path();
        put(
            "containerd bundles",
            count_dir(&d.join("state/io.containerd.runtime.v2.task").join(CRI_NS)),
        );
        put(
            "containerd CRI dirs",
            ["root", "state"]
                .iter()
                .flat_map(|r| ["sandboxes", "containers"].map(|k| (r, k)))
                .map(|(r, k)| count_dir(&d.join(r).join("io.containerd.grpc.v1.cri").join(k)))
                .sum(),
        );
        put(
            "containerd containers",
            ctr_lines(bed, &["containers", "ls"], true),
        );
        put("containerd tasks", ctr_lines(bed, &["tasks", "ls"], true));
        put(
            "containerd snapshots",
            ctr_lines(bed, &["snapshots", "ls"], false),
        );
        put(
            "CRI pods",
            c.call_within(Duration::from_secs(60), |mut r| async move {
                r.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
                    .await
            })
            .map(|r| r.items.len() as i64)
            .unwrap_or(-1),
        );
        put(
            "CRI containers",
            c.call_within(Duration::from_secs(60), |mut r| async move {
                r.list_containers(cri::ListContainersRequest { filter: None })
                    .await
            })
            .map(|r| r.containers.len() as i64)
            .unwrap_or(-1),
        );
        Snapshot {
            counters: m,
            shim_fds,
        }
    }

    /// What grew since `before`: (counter, before, after) for every leak counter above its
    /// baseline, fds of the shims live at both readings included ("fds of shim <pid>").
    pub fn leaks(&self, before: &Snapshot) -> Vec<(String, i64, i64)> {
        let mut out = Vec::new();
        for (k, v) in &self.counters {
            let b = before.counters.get(k).copied().unwrap_or(0);
            if !informative(k) && *v > b {
                out.push((k.clone(), b, *v));
            }
        }
        for (pid, v) in &self.shim_fds {
            if let Some(b) = before.shim_fds.get(pid) {
                if v > b {
                    out.push((format!("fds of long-lived shim {pid}"), *b, *v));
                }
            }
        }
        out
    }

    /// Sum of the fds of the shims live at both readings.
    pub fn long_lived_shim_fds(&self, before: &Snapshot) -> (i64, i64) {
        let mut b = 0;
        let mut a = 0;
        for (pid, v) in &self.shim_fds {
            if let Some(x) = before.shim_fds.get(pid) {
                b += x;
                a += v;
            }
        }
        (b, a)
    }
}

/// Reads the counters until every leak counter is back at `before` or `limit` has passed
/// (exits are reaped, shims exit and containerd closes its connections a moment after the
/// last CRI call returns); the last reading.
pub fn settle(
    bed: &TestBed,
    c: &mut Cri,
    scope: &Scope,
    before: &Snapshot,
    limit: Duration,
) -> Snapshot {
    let t = Instant::now();
    loop {
        let now = Snapshot::take(bed, c, scope);
        if now.leaks(before).is_empty() || t.elapsed() > limit {
            return now;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Resident set size of `pid`, in kB (`VmRSS` of /proc/<pid>/status).
pub fn rss_kb(pid: i32) -> Option<i64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
