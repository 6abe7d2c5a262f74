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

pub fn collect_v2(paths: &CgroupPaths) -> v2::Metrics {
    let mut m = v2::Metrics::new();
    let Some(d) = paths.dirs.get("") else {
        return m;
    };
    let mut p = v2::PidsStat::new();
    p.current = num(d, "pids.current");
    p.limit = read(d, "pids.max").trim().parse().unwrap_or(0);
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
    ms.usage = num(d, "memory.current");
    ms.usage_limit = read(d, "memory.max").trim().parse().unwrap_or(u64::MAX);
    ms.swap_usage = num(d, "memory.swap.current");
    ms.swap_limit = read(d, "memory.swap.max")
        .trim()
        .parse()
        .unwrap_or(u64::MAX);
    ms.max_usage = num(d, "memory.peak");
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
        let m = collect_v2(&paths);
        assert_eq!(m.memory_events.oom_kill, 4);
        assert_eq!(m.memory.usage, 4096);
        assert_eq!(m.memory.usage_limit, u64::MAX);
        assert_eq!(m.pids.current, 3);
        assert_eq!(m.cpu.usage_usec, 100);
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
