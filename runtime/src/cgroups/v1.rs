//! cgroup v1: OCI resources as writes to the per-controller hierarchies.

use super::{devices, page_size, read_file, w, write_file, Write};
use crate::error::{Error, Result};
use oci_spec::runtime::LinuxResources;
use std::path::Path;

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
            out.push(w("devices", file, devices::v1_rule(d)));
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

pub(super) fn inherit_cpuset(dir: &Path) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
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
}
