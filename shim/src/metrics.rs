//! Task Stats: cgroup v1 or v2 Metrics, each under the type containerd expects
//! (`io.containerd.cgroups.v1.Metrics` / `.v2.Metrics`), including the OOM-kill counters
//! containerd ≥ 2.3 reads to report OOMKilled.

use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::MessageField;
use husk_runtime::cgroups::CgroupPaths;
use std::collections::HashMap;
use std::path::Path;

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_default()
}

fn num(dir: &Path, file: &str) -> u64 {
    read(dir, file).trim().parse().unwrap_or(0)
}

/// "key value" lines.
pub fn keyed(s: &str) -> HashMap<String, u64> {
    s.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

pub fn collect(paths: &CgroupPaths) -> Any {
    if paths.v2 {
        crate::events::any_of("io.containerd.cgroups.v2.Metrics", &collect_v2(paths))
    } else {
        crate::events::any_of("io.containerd.cgroups.v1.Metrics", &collect_v1(paths))
    }
}

pub fn collect_v1(paths: &CgroupPaths) -> v1::Metrics {
    let mut m = v1::Metrics::new();
    if let Some(d) = paths.dirs.get("pids") {
        let mut p = v1::PidsStat::new();
        p.current = num(d, "pids.current");
        p.limit = read(d, "pids.max").trim().parse().unwrap_or(0);
        m.pids = MessageField::some(p);
    }
    if let Some(d) = paths.dirs.get("cpuacct") {
        let mut c = v1::CPUStat::new();
        let mut u = v1::CPUUsage::new();
        u.total = num(d, "cpuacct.usage");
        u.per_cpu = read(d, "cpuacct.usage_percpu")
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let st = keyed(&read(d, "cpuacct.stat"));
        // USER_HZ ticks → ns
        u.user = st.get("user").copied().unwrap_or(0) * 10_000_000;
        u.kernel = st.get("system").copied().unwrap_or(0) * 10_000_000;
        c.usage = MessageField::some(u);
        if let Some(cd) = paths.dirs.get("cpu") {
            let t = keyed(&read(cd, "cpu.stat"));
            let mut th = v1::Throttle::new();
            th.periods = t.get("nr_periods").copied().unwrap_or(0);
            th.throttled_periods = t.get("nr_throttled").copied().unwrap_or(0);
            th.throttled_time = t.get("throttled_time").copied().unwrap_or(0);
            c.throttling = MessageField::some(th);
        }
        m.cpu = MessageField::some(c);
    }
    if let Some(d) = paths.dirs.get("memory") {
        let s = keyed(&read(d, "memory.stat"));
        let g = |k: &str| s.get(k).copied().unwrap_or(0);
        let mut ms = v1::MemoryStat::new();
        ms.cache = g("cache");
        ms.rss = g("rss");
        ms.rss_huge = g("rss_huge");
        ms.mapped_file = g("mapped_file");
        ms.dirty = g("dirty");
        ms.writeback = g("writeback");
        ms.pg_pg_in = g("pgpgin");
        ms.pg_pg_out = g("pgpgout");
        ms.pg_fault = g("pgfault");
        ms.pg_maj_fault = g("pgmajfault");
        ms.inactive_anon = g("inactive_anon");
        ms.active_anon = g("active_anon");
        ms.inactive_file = g("inactive_file");
        ms.active_file = g("active_file");
        ms.unevictable = g("unevictable");
        ms.hierarchical_memory_limit = g("hierarchical_memory_limit");
        ms.hierarchical_swap_limit = g("hierarchical_memsw_limit");
        ms.total_cache = g("total_cache");
        ms.total_rss = g("total_rss");
        ms.total_rss_huge = g("total_rss_huge");
        ms.total_mapped_file = g("total_mapped_file");
        ms.total_dirty = g("total_dirty");
        ms.total_writeback = g("total_writeback");
        ms.total_pg_pg_in = g("total_pgpgin");
        ms.total_pg_pg_out = g("total_pgpgout");
        ms.total_pg_fault = g("total_pgfault");
        ms.total_pg_maj_fault = g("total_pgmajfault");
        ms.total_inactive_anon = g("total_inactive_anon");
        ms.total_active_anon = g("total_active_anon");
        ms.total_inactive_file = g("total_inactive_file");
        ms.total_active_file = g("total_active_file");
        ms.total_unevictable = g("total_unevictable");
        let entry = |prefix: &str| {
            let mut e = v1::MemoryEntry::new();
            e.usage = num(d, &format!("{prefix}usage_in_bytes"));
            e.limit = num(d, &format!("{prefix}limit_in_bytes"));
            e.max = num(d, &format!("{prefix}max_usage_in_bytes"));
            e.failcnt = num(d, &format!("{prefix}failcnt"));
            e
        };
        ms.usage = MessageField::some(entry("memory."));
        ms.swap = MessageField::some(entry("memory.memsw."));
        ms.kernel = MessageField::some(entry("memory.kmem."));
        ms.kernel_tcp = MessageField::some(entry("memory.kmem.tcp."));
        m.memory = MessageField::some(ms);
        let oc = keyed(&read(d, "memory.oom_control"));
        let mut o = v1::MemoryOomControl::new();
        o.oom_kill_disable = oc.get("oom_kill_disable").copied().unwrap_or(0);
        o.under_oom = oc.get("under_oom").copied().unwrap_or(0);
        o.oom_kill = oc.get("oom_kill").copied().unwrap_or(0);
        m.memory_oom_control = MessageField::some(o);
    }
    m
}

/// A single-value file: a number, `max` as u64::MAX (containerd/cgroups' reading), else 0.
fn num_or_max(dir: &Path, file: &str) -> u64 {
    match read(dir, file).trim() {
        "max" => u64::MAX,
        v => v.parse().unwrap_or(0),
    }
}

/// A pressure file (`cpu.pressure`, `memory.pressure`, `io.pressure`): `some` and `full` lines of
/// `avg10= avg60= avg300= total=` (kernel Documentation/accounting/psi.rst; total in µs, as
/// containerd passes it). `None` where the kernel has no PSI for the cgroup (ENOENT, or
/// EOPNOTSUPP with `cgroup.pressure` 0), as runc and containerd tolerate.
pub fn psi(dir: &Path, file: &str) -> Option<v2::PSIStats> {
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    let mut stats = v2::PSIStats::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let kind = it.next()?;
        let mut d = v2::PSIData::new();
        for kv in it {
            let (k, v) = kv.split_once('=')?;
            match k {
                "avg10" => d.avg10 = v.parse().unwrap_or(0.0),
                "avg60" => d.avg60 = v.parse().unwrap_or(0.0),
                "avg300" => d.avg300 = v.parse().unwrap_or(0.0),
                "total" => d.total = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        match kind {
            "some" => stats.some = MessageField::some(d),
            "full" => stats.full = MessageField::some(d),
            _ => {}
        }
    }
    Some(stats)
}

/// `io.stat`: one entry per device (`MAJ:MIN rbytes= wbytes= rios= wios= ...`).
fn io_usage(dir: &Path) -> Vec<v2::IOEntry> {
    read(dir, "io.stat")
        .lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let (maj, min) = it.next()?.split_once(':')?;
            let mut e = v2::IOEntry::new();
            e.major = maj.parse().ok()?;
            e.minor = min.parse().ok()?;
            for kv in it {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let v = v.parse().unwrap_or(0);
                match k {
                    "rbytes" => e.rbytes = v,
                    "wbytes" => e.wbytes = v,
                    "rios" => e.rios = v,
                    "wios" => e.wios = v,
                    _ => {}
                }
            }
            Some(e)
        })
        .collect()
}

/// `rdma.current` / `rdma.max`: `DEVICE hca_handle=N hca_object=M` (`max` as u32::MAX).
fn rdma_entries(dir: &Path, file: &str) -> Vec<v2::RdmaEntry> {
    read(dir, file)
        .lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let mut e = v2::RdmaEntry::new();
            e.device = it.next()?.to_string();
            for kv in it {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let v = if v == "max" {
                    u32::MAX
                } else {
                    v.parse().unwrap_or(0)
                };
                match k {
                    "hca_handle" => e.hca_handles = v,
                    "hca_object" => e.hca_objects = v,
                    _ => {}
                }
            }
            Some(e)
        })
        .collect()
}

/// The huge page sizes of this kernel as cgroup files name them (`2MB`, `1GB`), from
/// /sys/kernel/mm/hugepages (`hugepages-2048kB`).
fn hugepage_sizes() -> Vec<String> {
    let mut sizes: Vec<(u64, String)> = std::fs::read_dir("/sys/kernel/mm/hugepages")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let kb: u64 = n
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            let name = if kb >= 1 << 20 {
                format!("{}GB", kb >> 20)
            } else if kb >= 1 << 10 {
                format!("{}MB", kb >> 10)
            } else {
                format!("{kb}KB")
            };
            Some((kb, name))
        })
        .collect();
    sizes.sort();
    sizes.into_iter().map(|(_, n)| n).collect()
}

fn hugetlb(dir: &Path, sizes: &[String]) -> Vec<v2::HugeTlbStat> {
    sizes
        .iter()
        .filter(|size| dir.join(format!("hugetlb.{size}.current")).exists())
        .map(|size| {
            let mut h = v2::HugeTlbStat::new();
            h.current = num(dir, &format!("hugetlb.{size}.current"));
            h.max = num_or_max(dir, &format!("hugetlb.{size}.max"));
            h.failcnt = keyed(&read(dir, &format!("hugetlb.{size}.events")))
                .get("max")
                .copied()
                .unwrap_or(0);
            h.pagesize = size.clone();
            h
        })
        .collect()
}

/// cgroup v2 Metrics as containerd's runc shim reports them (containerd/cgroups `cgroup2`
/// `Manager.Stat`): pids, cpu, memory (memory.stat's keys, usage/limit/peak of memory and swap),
/// memory_events, io, hugetlb, rdma, and PSI for cpu, memory and io where the kernel has it.
pub fn collect_v2(paths: &CgroupPaths) -> v2::Metrics {
    collect_v2_with(paths, &hugepage_sizes())
}

fn collect_v2_with(paths: &CgroupPaths, hugepage_sizes: &[String]) -> v2::Metrics {
    let mut m = v2::Metrics::new();
    let Some(d) = paths.dirs.get("") else {
        return m;
    };
    let mut p = v2::PidsStat::new();
    p.current = num(d, "pids.current");
    p.limit = num_or_max(d, "pids.max");
    m.pids = MessageField::some(p);
    let c = keyed(&read(d, "cpu.stat"));
    let g = |k: &str| c.get(k).copied().unwrap_or(0);
    let mut cs = v2::CPUStat::new();
    cs.usage_usec = g("usage_usec");
    cs.user_usec = g("user_usec");
    cs.system_usec = g("system_usec");
    cs.nr_periods = g("nr_periods");
    cs.nr_throttled = g("nr_throttled");
    cs.throttled_usec = g("throttled_usec");
    cs.nr_bursts = g("nr_bursts");
    cs.burst_usec = g("burst_usec");
    cs.psi = psi(d, "cpu.pressure").into();
    m.cpu = MessageField::some(cs);
    let s = keyed(&read(d, "memory.stat"));
    let g = |k: &str| s.get(k).copied().unwrap_or(0);
    let mut ms = v2::MemoryStat::new();
    ms.anon = g("anon");
    ms.file = g("file");
    ms.kernel_stack = g("kernel_stack");
    ms.slab = g("slab");
    ms.sock = g("sock");
    ms.shmem = g("shmem");
    ms.file_mapped = g("file_mapped");
    ms.file_dirty = g("file_dirty");
    ms.file_writeback = g("file_writeback");
    ms.anon_thp = g("anon_thp");
    ms.inactive_anon = g("inactive_anon");
    ms.active_anon = g("active_anon");
    ms.inactive_file = g("inactive_file");
    ms.active_file = g("active_file");
    ms.unevictable = g("unevictable");
    ms.slab_reclaimable = g("slab_reclaimable");
    ms.slab_unreclaimable = g("slab_unreclaimable");
    ms.pgfault = g("pgfault");
    ms.pgmajfault = g("pgmajfault");
    ms.workingset_refault = g("workingset_refault");
    ms.workingset_activate = g("workingset_activate");
    ms.workingset_nodereclaim = g("workingset_nodereclaim");
    ms.pgrefill = g("pgrefill");
    ms.pgscan = g("pgscan");
    ms.pgsteal = g("pgsteal");
    ms.pgactivate = g("pgactivate");
    ms.pgdeactivate = g("pgdeactivate");
    ms.pglazyfree = g("pglazyfree");
    ms.pglazyfreed = g("pglazyfreed");
    ms.thp_fault_alloc = g("thp_fault_alloc");
    ms.thp_collapse_alloc = g("thp_collapse_alloc");
    ms.usage = num(d, "memory.current");
    ms.usage_limit = num_or_max(d, "memory.max");
    ms.swap_usage = num(d, "memory.swap.current");
    ms.swap_limit = num_or_max(d, "memory.swap.max");
    ms.max_usage = num(d, "memory.peak");
    ms.swap_max_usage = num(d, "memory.swap.peak");
    ms.psi = psi(d, "memory.pressure").into();
    m.memory = MessageField::some(ms);
    let e = keyed(&read(d, "memory.events"));
    let g = |k: &str| e.get(k).copied().unwrap_or(0);
    let mut me = v2::MemoryEvents::new();
    me.low = g("low");
    me.high = g("high");
    me.max = g("max");
    me.oom = g("oom");
    me.oom_kill = g("oom_kill");
    me.oom_group_kill = g("oom_group_kill");
    m.memory_events = MessageField::some(me);
    let mut io = v2::IOStat::new();
    io.usage = io_usage(d);
    io.psi = psi(d, "io.pressure").into();
    m.io = MessageField::some(io);
    let mut rdma = v2::RdmaStat::new();
    rdma.current = rdma_entries(d, "rdma.current");
    rdma.limit = rdma_entries(d, "rdma.max");
    m.rdma = MessageField::some(rdma);
    m.hugetlb = hugetlb(d, hugepage_sizes);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn v2_metrics_from_a_fake_cgroup() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("memory.events"),
            "low 0\nhigh 1\nmax 2\noom 3\noom_kill 4\n",
        )
        .unwrap();
        std::fs::write(d.path().join("memory.current"), "4096\n").unwrap();
        std::fs::write(d.path().join("memory.max"), "max\n").unwrap();
        std::fs::write(d.path().join("pids.current"), "3\n").unwrap();
        std::fs::write(
            d.path().join("cpu.stat"),
            "usage_usec 100\nuser_usec 60\nsystem_usec 40\n",
        )
        .unwrap();
        let mut dirs = BTreeMap::new();
        dirs.insert(String::new(), d.path().to_path_buf());
        let paths = CgroupPaths { v2: true, dirs };
        std::fs::write(d.path().join("pids.max"), "max\n").unwrap();
        std::fs::write(d.path().join("memory.peak"), "8192\n").unwrap();
        std::fs::write(d.path().join("memory.swap.peak"), "512\n").unwrap();
        std::fs::write(
            d.path().join("memory.stat"),
            "anon 10\nfile 20\nworkingset_refault 3\npgscan 7\nthp_fault_alloc 1\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("cpu.pressure"),
            "some avg10=1.50 avg60=0.25 avg300=0.00 total=12345\nfull avg10=0.10 avg60=0.00 avg300=0.00 total=678\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("memory.pressure"),
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=9\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=4\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("io.stat"),
            "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("rdma.max"),
            "mlx4_0 hca_handle=2 hca_object=max\n",
        )
        .unwrap();
        std::fs::write(d.path().join("hugetlb.2MB.current"), "2097152\n").unwrap();
        std::fs::write(d.path().join("hugetlb.2MB.max"), "4194304\n").unwrap();
        std::fs::write(d.path().join("hugetlb.2MB.events"), "max 5\n").unwrap();
        let m = collect_v2_with(&paths, &["2MB".to_string(), "1GB".to_string()]);
        assert_eq!(m.memory_events.oom_kill, 4);
        assert_eq!(m.memory.usage, 4096);
        assert_eq!(m.memory.usage_limit, u64::MAX);
        assert_eq!((m.memory.max_usage, m.memory.swap_max_usage), (8192, 512));
        assert_eq!(
            (m.memory.anon, m.memory.file, m.memory.workingset_refault),
            (10, 20, 3)
        );
        assert_eq!((m.memory.pgscan, m.memory.thp_fault_alloc), (7, 1));
        assert_eq!(m.pids.current, 3);
        assert_eq!(m.pids.limit, u64::MAX);
        assert_eq!(m.cpu.usage_usec, 100);
        // PSI: some/full of avg10/avg60/avg300/total; io has none here (no io.pressure).
        assert_eq!(m.cpu.psi.some.avg10, 1.5);
        assert_eq!(m.cpu.psi.some.avg60, 0.25);
        assert_eq!(m.cpu.psi.some.total, 12345);
        assert_eq!(m.cpu.psi.full.total, 678);
        assert_eq!(m.memory.psi.full.total, 4);
        assert!(m.io.psi.is_none());
        assert_eq!(m.io.usage.len(), 1);
        let io = &m.io.usage[0];
        assert_eq!(
            (io.major, io.minor, io.rbytes, io.wbytes, io.rios, io.wios),
            (254, 0, 4096, 8192, 1, 2)
        );
        assert_eq!(m.rdma.limit.len(), 1);
        assert_eq!(
            (
                m.rdma.limit[0].device.as_str(),
                m.rdma.limit[0].hca_handles,
                m.rdma.limit[0].hca_objects
            ),
            ("mlx4_0", 2, u32::MAX)
        );
        assert_eq!(m.hugetlb.len(), 1, "only sizes with files are reported");
        let h = &m.hugetlb[0];
        assert_eq!(
            (h.pagesize.as_str(), h.current, h.max, h.failcnt),
            ("2MB", 2097152, 4194304, 5)
        );
        assert_eq!(collect(&paths).type_url, "io.containerd.cgroups.v2.Metrics");
    }

    #[test]
    fn v1_metrics_from_a_fake_cgroup() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        std::fs::write(d.path().join("memory.usage_in_bytes"), "8192\n").unwrap();
        std::fs::write(
            d.path().join("memory.stat"),
            "cache 10\nrss 20\ntotal_rss 30\n",
        )
        .unwrap();
        let mut dirs = BTreeMap::new();
        dirs.insert("memory".to_string(), d.path().to_path_buf());
        let paths = CgroupPaths { v2: false, dirs };
        let m = collect_v1(&paths);
        assert_eq!(m.memory_oom_control.oom_kill, 2);
        assert_eq!(m.memory.usage.usage, 8192);
        assert_eq!(
            (m.memory.cache, m.memory.rss, m.memory.total_rss),
            (10, 20, 30)
        );
        assert_eq!(collect(&paths).type_url, "io.containerd.cgroups.v1.Metrics");
    }
}
