//! cgroup v2: OCI resources as writes to the unified hierarchy (kernel
//! Documentation/admin-guide/cgroup-v2.rst), and creating a cgroup with its controllers enabled.

use super::{limit_str, page_size, read_file, w, Write};
use crate::error::{Error, Result};
use oci_spec::runtime::LinuxResources;
use std::path::Path;

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

pub(super) fn create(dir: &Path) -> Result<()> {
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
        let e = super::super::v1_writes(&res(r#"{"unified":{"memory.high":"1"}}"#)).unwrap_err();
        assert!(e.to_string().contains("cgroup v2"), "{e}");
    }
}
