//! cgroup v2 on real controllers, husk against runc on the same bundle: every resource as a
//! user reads it inside the container (through its cgroup namespace) and outside, the cgroup
//! namespace itself, update, pause/resume through `cgroup.freeze`, kill --all, the device
//! program, OOM kills counted in `memory.events`, and the failures runc refuses too.
//!
//! This host (cgroup v1) cannot show any of it: these tests run in the node guest
//! (`scripts/v2-guest.sh`, see README) and fail loudly anywhere else. The reference is
//! sid's runc (1.3.x: the shares→weight formula husk uses arrived in runc 1.3.2), or `HUSK_RUNC`.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const HOW: &str = "run them in the node guest: scripts/v2-guest.sh";

/// Fails unless this is a pure cgroup v2 host, as root.
fn require_v2() {
    require_root();
    let st = nix::sys::statfs::statfs("/sys/fs/cgroup").unwrap();
    assert!(
        st.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC,
        "these tests need the unified cgroup v2 hierarchy at /sys/fs/cgroup: {HOW}"
    );
}

fn husk() -> Husk {
    require_v2();
    Husk::new()
}

/// The reference runc: `HUSK_RUNC`, else sid's in the node guest.
fn runc() -> Husk {
    require_v2();
    let bin = std::env::var("HUSK_RUNC").unwrap_or_else(|_| "/opt/runc-sid/usr/sbin/runc".into());
    assert!(
        Path::new(&bin).exists(),
        "no reference runc at {bin} (runc >= 1.3.2; set HUSK_RUNC): {HOW}"
    );
    Husk::with_bin(bin)
}

/// The container's cgroup directory as the host sees it.
fn cgroup_dir(b: &Bundle) -> PathBuf {
    let p = b.config["linux"]["cgroupsPath"].as_str().unwrap();
    Path::new("/sys/fs/cgroup").join(p.trim_start_matches('/'))
}

/// The same bundle for the second runtime: same config, its own id and cgroup.
fn twin(b: &Bundle) -> Bundle {
    let mut t = Bundle::busybox(&["true"]);
    t.config = b.config.clone();
    t.config["linux"]["cgroupsPath"] = json!(format!("/husk-test/{}", t.id));
    t
}

/// The first whole-disk block device (major:minor), for io.max.
fn disk() -> String {
    let mut devs: Vec<_> = std::fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            !n.starts_with("loop") && !n.starts_with("ram") && !n.starts_with("zram")
        })
        .map(|e| e.path())
        .collect();
    devs.sort();
    let d = devs.first().expect("no block device for io.max");
    std::fs::read_to_string(d.join("dev"))
        .unwrap()
        .trim()
        .to_string()
}

/// The cgroup files a user checks, one `file=value` line each (multi-line values joined by |).
const FILES: &[&str] = &[
    "memory.max",
    "memory.swap.max",
    "memory.low",
    "memory.high",
    "memory.min",
    "memory.oom.group",
    "cpu.weight",
    "cpu.max",
    "cpu.max.burst",
    "cpu.idle",
    "cpuset.cpus",
    "cpuset.cpus.effective",
    "cpuset.mems",
    "io.weight",
    "io.max",
    "pids.max",
    "hugetlb.2MB.max",
    "hugetlb.2MB.rsvd.max",
];

fn probe_script(dir: &str) -> String {
    let files = FILES.join(" ");
    format!("for f in {files}; do printf '%s=%s\\n' $f \"$(tr '\\n' '|' < {dir}/$f 2>&1)\"; done")
}

fn read_files(dir: &Path) -> String {
    FILES
        .iter()
        .map(|f| {
            let v = std::fs::read_to_string(dir.join(f))
                .map(|s| s.replace('\n', "|"))
                .unwrap_or_else(|e| format!("<{e}>"));
            format!("{f}={v}\n")
        })
        .collect()
}

/// Runs `b` detached on `x` with `sleep` as its last word, returns (inside, outside) views.
fn views(x: &Husk, b: &mut Bundle) -> (String, String) {
    let inside = probe_script("/sys/fs/cgroup");
    b.config["process"]["args"] = json!([
        "sh",
        "-c",
        format!("{inside} > /tmp/probe; echo done > /tmp/ready; exec sleep 600")
    ]);
    x.run_detached(b);
    let ready = b.rootfs().join("tmp/ready");
    let t = Instant::now();
    while !ready.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "container never got ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let inside = std::fs::read_to_string(b.rootfs().join("tmp/probe")).unwrap();
    let outside = read_files(&cgroup_dir(b));
    (inside, outside)
}

fn finish(x: &Husk, b: &Bundle) {
    x.ok(&["delete", "--force", &b.id]);
    assert!(
        !cgroup_dir(b).exists(),
        "{} left behind",
        cgroup_dir(b).display()
    );
}

/// Every resource kubelet/containerd or a user can set, as runc writes it and as the user reads
/// it back — inside through the cgroup namespace, and outside.
#[test]
fn resources_match_runc_inside_and_outside() {
    let (h, r) = (husk(), runc());
    let mib = 1i64 << 20;
    let dev = disk();
    let (maj, min) = dev.split_once(':').unwrap();
    let (maj, min): (i64, i64) = (maj.parse().unwrap(), min.parse().unwrap());
    let mut b = Bundle::busybox(&["true"]);
    b.config["linux"]["resources"] = json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "memory": {"limit": 64 * mib, "swap": 96 * mib, "reservation": 16 * mib},
        "cpu": {"shares": 2048, "quota": 50000, "period": 100000, "burst": 10000,
                "cpus": "0", "mems": "0"},
        "pids": {"limit": 42},
        "blockIO": {"weight": 300,
                    "throttleReadBpsDevice": [{"major": maj, "minor": min, "rate": 1048576}],
                    "throttleWriteIOPSDevice": [{"major": maj, "minor": min, "rate": 100}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4 * mib}],
        "unified": {"memory.high": (48 * mib).to_string(), "memory.min": (8 * mib).to_string(),
                    "memory.oom.group": "1"}
    });
    let mut b2 = twin(&b);
    let (hi, ho) = views(&h, &mut b);
    let (ri, ro) = views(&r, &mut b2);
    finish(&h, &b);
    finish(&r, &b2);
    // What husk must show (checked on its own too, so a runc change cannot hide a husk bug).
    for want in [
        format!("memory.max={}|", 64 * mib),
        format!("memory.swap.max={}|", 32 * mib),
        format!("memory.low={}|", 16 * mib),
        format!("memory.high={}|", 48 * mib),
        "memory.oom.group=1|".into(),
        "cpu.weight=174|".into(),
        "cpu.max=50000 100000|".into(),
        "cpu.max.burst=10000|".into(),
        "cpuset.cpus.effective=0|".into(),
        "io.weight=default 2930|".into(),
        format!("io.max={dev} rbps=1048576 wbps=max riops=max wiops=100|"),
        "pids.max=42|".into(),
        format!("hugetlb.2MB.max={}|", 4 * mib),
    ] {
        assert!(hi.contains(&want), "husk inside lacks {want:?}:\n{hi}");
    }
    assert_eq!(hi, ho, "husk: inside and outside differ");
    assert_eq!(ri, ro, "runc: inside and outside differ");
    assert_eq!(hi, ri, "husk (left) and runc (right) differ");
}

/// `/proc/self/cgroup` and `/sys/fs/cgroup` inside, for the init and an exec'd process, with a
/// cgroup namespace (containerd adds one to every non-privileged container on v2) and without;
/// `env` goes to every command (`HUSK_NO_CLONE_INTO_CGROUP`).
fn cgroupns_view(x: &Husk, cgroupns: bool, env: &[(&str, &str)]) -> String {
    let mut b = Bundle::sh("exec sleep 600");
    if !cgroupns {
        let ns: Vec<Value> = b.config["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["type"] != "cgroup")
            .cloned()
            .collect();
        b.config["linux"]["namespaces"] = json!(ns);
    }
    b.write();
    x.track(&b.id);
    let bundle = b.path().to_str().unwrap();
    let out = x
        .cmd(&["run", "--detach", "--bundle", bundle, &b.id])
        .envs(env.iter().copied())
        .stdout(std::fs::File::create(b.path().join("stdout")).unwrap())
        .stderr(std::fs::File::create(b.path().join("stderr")).unwrap())
        .status()
        .unwrap();
    assert!(
        out.success(),
        "run: {}",
        std::fs::read_to_string(b.path().join("stderr")).unwrap()
    );
    let look = "cat /proc/self/cgroup; cat /sys/fs/cgroup/cgroup.procs | wc -l; \
                ls /sys/fs/cgroup | grep -c '^cgroup\\.'; ls -d /sys/fs/cgroup/*/ 2>/dev/null | wc -l";
    let exec = x
        .cmd(&["exec", &b.id, "sh", "-c", look])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        exec.status.success(),
        "exec: {}",
        String::from_utf8_lossy(&exec.stderr)
    );
    let exec = String::from_utf8_lossy(&exec.stdout);
    let pid = x.state(&b.id)["pid"].as_i64().unwrap();
    let host = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    finish(x, &b);
    format!("exec:\n{exec}host view of init: {host}").replace(&b.id, "ID")
}

/// The host's cgroup2 superblock options, as /proc/mounts lists them.
fn host_cgroup2_options() -> String {
    std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(1) == Some("/sys/fs/cgroup"))
        .and_then(|l| l.split(' ').nth(3))
        .unwrap()
        .to_string()
}

#[test]
fn cgroup_namespace_is_rooted_at_the_container_cgroup() {
    let (h, r) = (husk(), runc());
    for cgroupns in [true, false] {
        let before = host_cgroup2_options();
        let hv = cgroupns_view(&h, cgroupns, &[]);
        // Without a cgroup namespace the container mounts the hierarchy itself: that must not
        // change the node's mount options (nsdelegate, memory_recursiveprot).
        assert_eq!(
            host_cgroup2_options(),
            before,
            "husk changed the host's cgroup2 options"
        );
        let rv = cgroupns_view(&r, cgroupns, &[]);
        let after = host_cgroup2_options();
        if after != before {
            eprintln!("runc changed the host's cgroup2 options: {before} -> {after}; restoring");
            let st = std::process::Command::new("mount")
                .args(["-o", &format!("remount,{before}"), "/sys/fs/cgroup"])
                .status()
                .unwrap();
            assert!(st.success());
        }
        if cgroupns {
            assert!(hv.starts_with("exec:\n0::/\n"), "{hv}");
        } else {
            assert!(hv.starts_with("exec:\n0::/husk-test/ID\n"), "{hv}");
        }
        assert!(hv.contains("host view of init: 0::/husk-test/ID\n"), "{hv}");
        assert_eq!(hv, rv, "cgroupns={cgroupns}: husk (left) and runc (right)");
    }
}

/// Whether husk's debug log says the init and the exec'd process were born in their cgroup.
fn born_in_cgroup(h: &Husk, env: &[(&str, &str)]) -> Vec<bool> {
    let b = Bundle::sh("exec sleep 600");
    b.write();
    h.track(&b.id);
    let log = b.path().join("husk.log");
    let global = [
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "--debug",
    ];
    let bundle = b.path().to_str().unwrap();
    for args in [
        &["run", "--detach", "--bundle", bundle, &b.id][..],
        &["exec", &b.id, "true"][..],
    ] {
        // stderr to a file, not a pipe: a detached container keeps the stdio it was given,
        // so reading a pipe to its end would wait for the container to exit.
        let err = b.path().join(format!("stderr-{}", args[0]));
        let mut cmd = h.cmd(&[&global[..], args].concat());
        let status = cmd
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "{args:?}: {}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
    }
    finish(h, &b);
    std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("process forked") || l.contains("init forked"))
        .map(|l| l.contains("\"born_in_cgroup\":true"))
        .collect()
}

/// The init and exec'd processes are born in their cgroup (clone3 CLONE_INTO_CGROUP), and the
/// older path (the helper moved into the cgroup before it forks) gives the same container.
#[test]
fn processes_are_born_in_their_cgroup_and_the_older_path_is_the_same() {
    let h = husk();
    assert_eq!(born_in_cgroup(&h, &[]), [true, true]);
    let off = [("HUSK_NO_CLONE_INTO_CGROUP", "1")];
    assert_eq!(born_in_cgroup(&h, &off), [false, false]);
    for cgroupns in [true, false] {
        let born = cgroupns_view(&h, cgroupns, &[]);
        let moved = cgroupns_view(&h, cgroupns, &off);
        assert_eq!(born, moved, "cgroupns={cgroupns}");
    }
}

fn write_resources(b: &Bundle, name: &str, v: &Value) -> String {
    let p = b.path().join(name);
    std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
    p.display().to_string()
}

/// `update --resources`: new memory, pids and CPU limits, with a burst larger than the old
/// quota (the kernel refuses it until cpu.max is raised: runc writes it again afterwards).
#[test]
fn update_matches_runc() {
    let (h, r) = (husk(), runc());
    let mib = 1i64 << 20;
    let mut b = Bundle::sh("exec sleep 600");
    b.config["linux"]["resources"] = json!({
        "memory": {"limit": 64 * mib}, "pids": {"limit": 20},
        "cpu": {"shares": 1024, "quota": 10000, "period": 100000, "burst": 5000}
    });
    let b2 = twin(&b);
    let upd = json!({
        "memory": {"limit": 128 * mib, "swap": 128 * mib}, "pids": {"limit": 50},
        "cpu": {"shares": 512, "quota": 200000, "period": 100000, "burst": 150000}
    });
    let mut seen = vec![];
    for (x, b) in [(&h, &b), (&r, &b2)] {
        x.run_detached(b);
        let f = write_resources(b, "update.json", &upd);
        x.ok(&["update", "--resources", &f, &b.id]);
        seen.push(read_files(&cgroup_dir(b)));
        finish(x, b);
    }
    for want in [
        format!("memory.max={}|", 128 * mib),
        "memory.swap.max=0|".into(),
        "pids.max=50|".into(),
        "cpu.weight=59|".into(),
        "cpu.max=200000 100000|".into(),
        "cpu.max.burst=150000|".into(),
    ] {
        assert!(seen[0].contains(&want), "husk lacks {want:?}:\n{}", seen[0]);
    }
    assert_eq!(seen[0], seen[1], "husk (left) and runc (right) differ");
}

fn events(b: &Bundle) -> String {
    std::fs::read_to_string(cgroup_dir(b).join("cgroup.events")).unwrap()
}

/// pause/resume through cgroup.freeze: the state and cgroup.events agree, as with runc.
#[test]
fn pause_and_resume_freeze_the_cgroup() {
    let (h, r) = (husk(), runc());
    let b = Bundle::sh("sleep 600 & exec sleep 600");
    let b2 = twin(&b);
    for (x, b) in [(&h, &b), (&r, &b2)] {
        x.run_detached(b);
        x.ok(&["pause", &b.id]);
        assert_eq!(x.state(&b.id)["status"], "paused");
        assert!(events(b).contains("frozen 1"), "{}", events(b));
        x.ok(&["resume", &b.id]);
        assert_eq!(x.state(&b.id)["status"], "running");
        assert!(events(b).contains("frozen 0"), "{}", events(b));
        finish(x, b);
    }
}

/// kill --all with SIGKILL reaches every process, also those the container keeps forking.
#[test]
fn kill_all_empties_the_cgroup() {
    let (h, r) = (husk(), runc());
    let b = Bundle::sh("while true; do sleep 600 & sleep 0.01; done");
    let b2 = twin(&b);
    for (x, b) in [(&h, &b), (&r, &b2)] {
        x.run_detached(b);
        std::thread::sleep(Duration::from_millis(300));
        x.ok(&["kill", "--all", &b.id, "KILL"]);
        let t = Instant::now();
        while events(b).contains("populated 1") {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "processes left: {}",
                std::fs::read_to_string(cgroup_dir(b).join("cgroup.procs")).unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        x.wait_status(&b.id, "stopped");
        finish(x, b);
    }
}

/// The device program: a node the spec creates but does not allow is refused (EPERM); the
/// default devices work; mknod is allowed. Same words on both runtimes.
#[test]
fn device_rules_match_runc() {
    let (h, r) = (husk(), runc());
    let mut b = Bundle::sh(
        "head -c1 /dev/kmsg >/dev/null 2>&1 && echo kmsg-open || echo kmsg-denied; \
         head -c1 /dev/zero | wc -c; echo x > /dev/null && echo null-ok; \
         mknod /tmp/k c 1 11 && echo mknod-ok; head -c1 /tmp/k >/dev/null 2>&1 || echo k-denied; \
         head -c1 /dev/full | wc -c",
    );
    b.config["linux"]["devices"] =
        json!([{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 420}]);
    b.config["linux"]["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
    for set in ["bounding", "effective", "permitted"] {
        b.config["process"]["capabilities"][set] = json!(["CAP_MKNOD"]);
    }
    let b2 = twin(&b);
    let (hc, ho, he) = h.run_bundle(&b);
    let (rc, ro, re) = r.run_bundle(&b2);
    assert_eq!((hc, rc), (0, 0), "husk: {he}\nrunc: {re}");
    assert_eq!(
        ho, "kmsg-denied\n1\nnull-ok\nmknod-ok\nk-denied\n1\n",
        "{he}"
    );
    assert_eq!(ho, ro);
}

/// A container over its memory limit is OOM-killed: exit 137 and `oom_kill` in memory.events,
/// which is what the shim watches and containerd ≥ 2.3 reads.
#[test]
fn oom_kill_is_counted_in_memory_events() {
    let (h, r) = (husk(), runc());
    let mib = 1i64 << 20;
    let mut b = Bundle::sh("exec tail /dev/zero");
    b.config["linux"]["resources"] = json!({"memory": {"limit": 32 * mib, "swap": 32 * mib}, "unified": {"memory.oom.group": "1"}});
    let b2 = twin(&b);
    for (x, b) in [(&h, &b), (&r, &b2)] {
        b.write();
        x.track(&b.id);
        x.ok_detached(
            b,
            &["create", "--bundle", b.path().to_str().unwrap(), &b.id],
        );
        let pid = x.state(&b.id)["pid"].as_i64().unwrap() as i32;
        x.ok(&["start", &b.id]);
        x.wait_status(&b.id, "stopped");
        let ev = std::fs::read_to_string(cgroup_dir(b).join("memory.events")).unwrap();
        let n: u64 = ev
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(n >= 1, "{}: memory.events: {ev}", x.bin.display());
        let _ = pid;
        finish(x, b);
    }
}

/// Values runc refuses are refused by husk too, with the field named and nothing left behind.
#[test]
fn bad_values_fail_like_runc() {
    let (h, r) = (husk(), runc());
    for (what, res) in [
        ("swap without memory", json!({"memory": {"swap": 1048576}})),
        (
            "swap below memory",
            json!({"memory": {"limit": 2097152, "swap": 1048576}}),
        ),
        (
            "unknown unified key",
            json!({"unified": {"nosuch.knob": "1"}}),
        ),
        (
            "unknown hugepage size",
            json!({"hugepageLimits": [{"pageSize": "3MB", "limit": 0}]}),
        ),
        (
            "rdma device that does not exist",
            json!({"rdma": {"nosuchdev": {"hcaHandles": 1}}}),
        ),
    ] {
        let mut b = Bundle::sh("true");
        b.config["linux"]["resources"] = res;
        let b2 = twin(&b);
        for (x, b) in [(&h, &b), (&r, &b2)] {
            b.write();
            x.track(&b.id);
            let out = x.run(&["create", "--bundle", b.path().to_str().unwrap(), &b.id]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "{what}: {} accepted it",
                x.bin.display()
            );
            assert!(!err.contains("panicked"), "{what}: {err}");
            assert!(
                !cgroup_dir(b).exists(),
                "{what}: {} left {}",
                x.bin.display(),
                cgroup_dir(b).display()
            );
        }
    }
}
