//! cgroup v2: OCI resources as writes to the unified hierarchy (kernel
//! Documentation/admin-guide/cgroup-v2.rst), and creating a cgroup with its controllers enabled.
//!
//! The translation follows runc (opencontainers/cgroups `fs2`), so a container gets the same
//! files on husk as on runc: the same order (pids, memory, io, cpu, cpuset, hugetlb, rdma, then
//! `unified`, which overrides anything before it), the same conversions (swap, shares → weight,
//! blkio weight → io.weight) and the same special cases, each noted where it is made.

use super::{page_size, read_file, w, Write};
use crate::error::{Error, Result};
use oci_spec::runtime::LinuxResources;
use std::path::Path;

/// cgroup v1 cpu shares (2..262144) as v2 cpu.weight (1..10000): the quadratic fit of
/// runc ≥ 1.3.2 and crun ≥ 1.23 (opencontainers/cgroups fd95216), which maps the v1 default
/// 1024 to the v2 default 100 (the older linear formula gave 39: runc#4772,
/// kubernetes#131216). With l = log2(shares): ⌈10^((l² + 125·l)/612 − 7/34)⌉. 0 means unset.
pub fn shares_to_weight(shares: u64) -> u64 {
    match shares {
        0 => 0,
        1..=2 => 1,
        262_144.. => 10_000,
        s => {
            let l = (s as f64).log2();
            let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            10f64.powf(exponent).ceil() as u64
        }
    }
}

/// runc's conversion of blkio weight (10..1000) to v2 io.weight (1..10000).
pub fn blkio_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    1 + (u64::from(weight.clamp(10, 1000)) - 10) * 9999 / 990
}

/// OCI `memory.swap` (memory+swap, as v1 counted it) as v2 `memory.swap.max` (swap alone), given
/// `memory.limit`; 0 means unset on both sides, -1 unlimited. runc's rules
/// (opencontainers/cgroups `ConvertMemorySwapToCgroupV2Value`): an unlimited memory with no
/// swap given means unlimited swap too; with unlimited memory the swap is taken as it is;
/// otherwise swap − memory, which needs a memory limit no greater than the swap.
///
/// Returns `None` when nothing is to be written.
pub fn swap_to_v2(swap: i64, memory: i64) -> Result<Option<String>> {
    let field = "linux.resources.memory.swap";
    let v = match (swap, memory) {
        (0, -1) => -1,
        (s, _) if s < 0 => -1,
        (0, _) => return Ok(None),
        (s, -1) => s,
        (_, 0) => {
            return Err(Error::spec(
                field,
                "cannot set a swap limit without a memory limit",
            ))
        }
        (_, m) if m < 0 => {
            return Err(Error::spec(
                "linux.resources.memory.limit",
                format!("invalid value {m}"),
            ))
        }
        (s, m) if s < m => {
            return Err(Error::spec(
                field,
                format!("{s} is below the memory limit {m} (swap counts memory+swap)"),
            ))
        }
        (s, m) => s - m,
    };
    Ok(Some(if v < 0 { "max".into() } else { v.to_string() }))
}

/// A limit for a `.max`/`.low`/`.high` file: -1 (any negative) is "max", 0 is unset (runc's
/// `numToStr`).
fn limit(v: i64) -> Option<String> {
    match v {
        0 => None,
        v if v < 0 => Some("max".into()),
        v => Some(v.to_string()),
    }
}

/// The v2 writes for `res`, in runc's order. Device rules are not files on v2 (`devices::bpf`).
/// How `Cgroup::apply_v2` treats each: `Write::optional` files are skipped on a kernel without
/// them, `Write::prefer` names a file written instead when it exists (io.bfq.weight), and a
/// `cpu.max.burst` the kernel refuses with EINVAL is retried after `cpu.max`.
///
/// Errors: values runc refuses too (swap below memory, swap without memory, realtime limits,
/// a `unified` key that is not a file name).
pub fn v2_writes(res: &LinuxResources) -> Result<Vec<Write>> {
    let mut out = Vec::new();
    if let Some(p) = res.pids() {
        // -1 is unlimited; 0 is unset, as runc ≤ 1.3 reads it (runc 1.4 follows runtime-spec
        // 1.3, where an explicit 0 is a value; oci-spec cannot tell it from a missing limit).
        match p.limit() {
            0 => {}
            l if l < 0 => out.push(w("", "pids.max", "max")),
            l => out.push(w("", "pids.max", l)),
        }
    }
    if let Some(m) = res.memory() {
        let mem = m.limit().unwrap_or(0);
        if let Some(v) = swap_to_v2(m.swap().unwrap_or(0), mem)? {
            // Without swap accounting (no memory.swap.max) only "no swap" and "unlimited" can
            // be honoured, and runc skips them silently; any other value fails.
            let optional = v == "max" || v == "0";
            out.push(Write {
                optional,
                ..w("", "memory.swap.max", v)
            });
        }
        if let Some(v) = limit(mem) {
            out.push(w("", "memory.max", v));
        }
        if let Some(v) = m.reservation().and_then(limit) {
            out.push(w("", "memory.low", v));
        }
        if m.disable_oom_killer() == Some(true) {
            // v2 has no switch for it; runc ignores it there too.
            tracing::warn!("linux.resources.memory.disableOOMKiller is ignored on cgroup v2");
        }
    }
    if let Some(b) = res.block_io() {
        if let Some(wt) = b.weight().filter(|w| *w != 0) {
            // With the BFQ scheduler its own file takes the v1 weight unconverted (runc).
            out.push(Write {
                prefer: Some(("io.bfq.weight".into(), wt.to_string())),
                ..w(
                    "",
                    "io.weight",
                    format!("default {}", blkio_to_io_weight(wt)),
                )
            });
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(wt) = d.weight() {
                // Per-device weights exist only in BFQ's file (kernel 5.4); runc drops them
                // without BFQ, and so does husk (with a warning from apply_v2).
                out.push(Write {
                    optional: true,
                    ..w(
                        "",
                        "io.bfq.weight",
                        format!("{}:{} {wt}", d.major(), d.minor()),
                    )
                });
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
    if let Some(c) = res.cpu() {
        if let Some(idle) = c.idle() {
            out.push(w("", "cpu.idle", idle));
        }
        if let Some(s) = c.shares().filter(|s| *s != 0) {
            out.push(w("", "cpu.weight", shares_to_weight(s)));
        }
        // The burst goes before the quota; if the kernel refuses it for the old quota, apply_v2
        // writes it again after cpu.max (runc's order).
        if let Some(burst) = c.burst() {
            out.push(w("", "cpu.max.burst", burst));
        }
        let quota = c.quota().unwrap_or(0);
        let period = c.period().unwrap_or(0);
        if quota != 0 || period != 0 {
            let q = if quota > 0 {
                quota.to_string()
            } else {
                "max".into()
            };
            // The kernel's default period (cgroup-v2.rst), written as runc does.
            let period = if period == 0 { 100_000 } else { period };
            out.push(w("", "cpu.max", format!("{q} {period}")));
        }
        if c.realtime_period().is_some_and(|v| v != 0)
            || c.realtime_runtime().is_some_and(|v| v != 0)
        {
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
    for (i, h) in res.hugepage_limits().iter().flatten().enumerate() {
        let size = page_size(h.page_size(), i)?;
        out.push(w("", format!("hugetlb.{size}.max"), h.limit()));
        // Reservations are limited separately (kernel 5.7): without the same limit there, a
        // mapping reserved up front escapes the one above. runc writes it where it exists.
        out.push(Write {
            optional: true,
            ..w("", format!("hugetlb.{size}.rsvd.max"), h.limit())
        });
    }
    if let Some(rdma) = res.rdma() {
        let mut devs: Vec<_> = rdma.iter().collect();
        devs.sort_by(|a, b| a.0.cmp(b.0));
        for (dev, l) in devs {
            if dev.is_empty() || dev.contains(char::is_whitespace) {
                return Err(Error::spec(
                    format!("linux.resources.rdma.{dev:?}"),
                    "is not a device name",
                ));
            }
            let mut line = dev.clone();
            if let Some(n) = l.hca_handles() {
                line += &format!(" hca_handle={n}");
            }
            if let Some(n) = l.hca_objects() {
                line += &format!(" hca_object={n}");
            }
            out.push(w("", "rdma.max", line));
        }
    }
    if let Some(u) = res.unified() {
        let mut keys: Vec<_> = u.keys().collect();
        keys.sort();
        for k in keys {
            if k.contains('/') || k.starts_with('.') || !k.contains('.') {
                return Err(Error::spec(
                    format!("linux.resources.unified.{k}"),
                    "is not a cgroup interface file name (CONTROLLER.PARAMETER)",
                ));
            }
            // A value of several lines is several writes (runc's WriteFileByLine): the kernel
            // parses one entry per write(2) in files like io.max.
            for line in u[k].lines().filter(|l| !l.trim().is_empty()) {
                out.push(w("", k.clone(), line));
            }
            if u[k].trim().is_empty() {
                out.push(w("", k.clone(), &u[k]));
            }
        }
    }
    Ok(out)
}

/// A failed write, worded so a user can act on it: a file missing because its controller is
/// not enabled for the cgroup says so (as runc does for `unified` keys).
pub(super) fn write_error(dir: &Path, file: &str, value: &str, err: &std::io::Error) -> Error {
    let controller = file.split('.').next().unwrap_or(file);
    let available = read_file(dir, "cgroup.controllers").unwrap_or_default();
    let hint = if matches!(
        err.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
    ) && controller != "cgroup"
        && !available.split_whitespace().any(|c| c == controller)
    {
        format!(" (controller {controller:?} is not available in this cgroup)")
    } else {
        String::new()
    };
    Error::Cgroup {
        path: dir.display().to_string(),
        message: format!("write {value:?} to {file}: {err}{hint}"),
    }
}

/// Waits until `cgroup.events` of `dir` says `frozen 1`, for at most `timeout`. The file is
/// re-read whenever the kernel signals a change (POLLPRI, cgroup-v2.rst "cgroup.events") and at
/// least every 10 ms.
pub(super) fn wait_frozen(dir: &Path, timeout: std::time::Duration) -> Result<()> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileExt;
    let err = |message: String| Error::Cgroup {
        path: dir.display().to_string(),
        message,
    };
    let f = std::fs::File::open(dir.join("cgroup.events"))
        .map_err(|e| err(format!("open cgroup.events: {e}")))?;
    let deadline = std::time::Instant::now() + timeout;
    let mut buf = [0u8; 512];
    loop {
        let n = f
            .read_at(&mut buf, 0)
            .map_err(|e| err(format!("read cgroup.events: {e}")))?;
        let text = String::from_utf8_lossy(&buf[..n]);
        match text.lines().find_map(|l| l.strip_prefix("frozen ")) {
            Some(v) if v.trim() == "1" => return Ok(()),
            Some(_) => {}
            None => return Err(err("cgroup.events has no \"frozen\" entry".into())),
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(err(format!(
                "did not freeze within {timeout:?} (cgroup.events: {})",
                text.trim().replace('\n', ", ")
            )));
        }
        let wait = left.min(std::time::Duration::from_millis(10));
        let mut fds = [nix::poll::PollFd::new(
            f.as_fd(),
            nix::poll::PollFlags::POLLPRI,
        )];
        let _ = nix::poll::poll(
            &mut fds,
            nix::poll::PollTimeout::try_from(wait).unwrap_or(nix::poll::PollTimeout::MAX),
        );
    }
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
        // Containers created side by side share parents: one made by another is fine.
        match std::fs::create_dir(child) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(Error::Cgroup {
                    path: child.display().to_string(),
                    message: format!("create: {e}"),
                })
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

    fn files(ws: &[Write]) -> Vec<(&str, &str)> {
        ws.iter()
            .map(|w| (w.file.as_str(), w.value.as_str()))
            .collect()
    }

    #[test]
    fn shares_weight_conversion_matches_runc() {
        // Values runc 1.3.2+ and crun 1.23+ write for the same shares.
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(3), 2);
        assert_eq!(shares_to_weight(102), 17);
        assert_eq!(shares_to_weight(512), 59);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(2048), 174);
        assert_eq!(shares_to_weight(100_000), 4340);
        assert_eq!(shares_to_weight(262_143), 10_000);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1_000_000), 10_000);
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
        assert_eq!(blkio_to_io_weight(500), 4950);
    }

    #[test]
    fn swap_follows_runcs_special_cases() {
        let mib = 1 << 20;
        // memory+swap → swap alone
        assert_eq!(
            swap_to_v2(128 * mib, 64 * mib).unwrap(),
            Some((64 * mib).to_string())
        );
        // equal: no swap at all
        assert_eq!(swap_to_v2(64 * mib, 64 * mib).unwrap(), Some("0".into()));
        // unlimited memory and no swap given: unlimited swap
        assert_eq!(swap_to_v2(0, -1).unwrap(), Some("max".into()));
        // unlimited memory: swap taken as it is
        assert_eq!(swap_to_v2(mib, -1).unwrap(), Some(mib.to_string()));
        assert_eq!(swap_to_v2(-1, 64 * mib).unwrap(), Some("max".into()));
        // 0 is unset
        assert_eq!(swap_to_v2(0, 64 * mib).unwrap(), None);
        assert_eq!(swap_to_v2(0, 0).unwrap(), None);
        let e = swap_to_v2(mib, 0).unwrap_err().to_string();
        assert!(e.contains("without a memory limit"), "{e}");
        let e = swap_to_v2(mib, 2 * mib).unwrap_err().to_string();
        assert!(e.contains("memory.swap") && e.contains("below"), "{e}");
    }

    #[test]
    fn v2_translation_in_runcs_order() {
        let r = res(
            r#"{"memory":{"limit":67108864,"swap":134217728,"reservation":1024},
            "cpu":{"shares":1024,"quota":-1,"period":50000,"cpus":"0-1","burst":1000,"idle":0},
            "pids":{"limit":-1},
            "blockIO":{"weight":500,"weightDevice":[{"major":8,"minor":0,"weight":300}],
                       "throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}]},
            "hugepageLimits":[{"pageSize":"2MB","limit":4194304}],
            "rdma":{"mlx5_1":{"hcaHandles":3},"mlx4_0":{"hcaHandles":2,"hcaObjects":2000}},
            "unified":{"memory.high":"50000000","memory.oom.group":"1"}}"#,
        );
        let ws = v2_writes(&r).unwrap();
        assert_eq!(
            files(&ws),
            [
                ("pids.max", "max"),
                ("memory.swap.max", "67108864"),
                ("memory.max", "67108864"),
                ("memory.low", "1024"),
                ("io.weight", "default 4950"),
                ("io.bfq.weight", "8:0 300"),
                ("io.max", "8:0 rbps=1048576"),
                ("cpu.idle", "0"),
                ("cpu.weight", "100"),
                ("cpu.max.burst", "1000"),
                ("cpu.max", "max 50000"),
                ("cpuset.cpus", "0-1"),
                ("hugetlb.2MB.max", "4194304"),
                ("hugetlb.2MB.rsvd.max", "4194304"),
                ("rdma.max", "mlx4_0 hca_handle=2 hca_object=2000"),
                ("rdma.max", "mlx5_1 hca_handle=3"),
                ("memory.high", "50000000"),
                ("memory.oom.group", "1"),
            ]
        );
        let by = |f: &str| ws.iter().find(|w| w.file == f).unwrap();
        assert_eq!(
            by("io.weight").prefer,
            Some(("io.bfq.weight".into(), "500".into()))
        );
        assert!(by("io.bfq.weight").optional && by("hugetlb.2MB.rsvd.max").optional);
        assert!(!by("memory.swap.max").optional && !by("memory.max").optional);
    }

    #[test]
    fn unset_values_write_nothing() {
        // runc: 0 is "unset" for memory, shares, quota/period and the pids limit.
        let ws = v2_writes(&res(
            r#"{"memory":{"limit":0,"reservation":0},"cpu":{"shares":0,"quota":0,"period":0},"pids":{"limit":0}}"#,
        ))
        .unwrap();
        assert!(ws.is_empty(), "{ws:?}");
        // A quota alone gets the default period; a period alone lifts the quota (runc).
        let ws = v2_writes(&res(r#"{"cpu":{"quota":50000}}"#)).unwrap();
        assert_eq!(files(&ws), [("cpu.max", "50000 100000")]);
        let ws = v2_writes(&res(r#"{"cpu":{"period":20000}}"#)).unwrap();
        assert_eq!(files(&ws), [("cpu.max", "max 20000")]);
        // Unlimited memory with no swap given is unlimited swap; without accounting it is
        // skipped.
        let ws = v2_writes(&res(r#"{"memory":{"limit":-1}}"#)).unwrap();
        assert_eq!(
            files(&ws),
            [("memory.swap.max", "max"), ("memory.max", "max")]
        );
        assert!(ws[0].optional);
        let ws = v2_writes(&res(r#"{"pids":{"limit":32}}"#)).unwrap();
        assert_eq!(files(&ws), [("pids.max", "32")]);
    }

    #[test]
    fn multi_line_unified_values_are_one_write_per_line() {
        let ws = v2_writes(&res(
            r#"{"unified":{"io.max":"8:0 rbps=1\n8:16 wbps=2\n"}}"#,
        ))
        .unwrap();
        assert_eq!(
            files(&ws),
            [("io.max", "8:0 rbps=1"), ("io.max", "8:16 wbps=2")]
        );
    }

    #[test]
    fn bad_values_name_the_field() {
        let e = v2_writes(&res(r#"{"memory":{"limit":100,"swap":50}}"#)).unwrap_err();
        assert!(e.to_string().contains("memory.swap"), "{e}");
        let e = v2_writes(&res(r#"{"unified":{"../escape":"1"}}"#)).unwrap_err();
        assert!(e.to_string().contains("unified"), "{e}");
        let e = v2_writes(&res(r#"{"cpu":{"realtimeRuntime":950000}}"#)).unwrap_err();
        assert!(e.to_string().contains("realtime"), "{e}");
        let e = super::super::v1_writes(&res(r#"{"unified":{"memory.high":"1"}}"#)).unwrap_err();
        assert!(e.to_string().contains("cgroup v2"), "{e}");
    }
}
