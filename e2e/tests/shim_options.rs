//! The runtime options containerd hands `shim start`: `ShimCgroup` places the shim process
//! in an existing cgroup, as containerd's runc shim does. Given by `ctr run
//! --runtime-config-path` (runtimeoptions' config_path, every containerd) and by a CRI
//! handler's options section (runtimeoptions' config_body, containerd >= 1.7).

use husk_e2e::bed::{TestBed, BUSYBOX, SHIM_CGROUP_HANDLER};
use husk_e2e::cri::Cri;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const RT: &str = "io.containerd.husk.v2";

/// The host's cgroup v1 hierarchies (mount points), from /proc/self/mountinfo.
fn v1_hierarchies() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mount = pre.split_whitespace().nth(4)?;
            (post.split_whitespace().next() == Some("cgroup")).then(|| PathBuf::from(mount))
        })
        .collect();
    out.sort();
    out.dedup();
    assert!(
        !out.is_empty(),
        "these tests expect this host's cgroup v1 hierarchies"
    );
    out
}

/// A cgroup created in every v1 hierarchy, removed when dropped (after the test bed, whose
/// teardown ends the shims inside it: declare it first).
struct ShimCgroup(String);

impl ShimCgroup {
    fn create(path: &str) -> ShimCgroup {
        for h in v1_hierarchies() {
            let dir = h.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(&dir).unwrap();
            // A new cpuset cgroup holds no process until it has CPUs and memory nodes.
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(v) = std::fs::read_to_string(h.join(f)) {
                    std::fs::write(dir.join(f), v.trim()).unwrap();
                }
            }
        }
        ShimCgroup(path.to_string())
    }
}

impl Drop for ShimCgroup {
    fn drop(&mut self) {
        for h in v1_hierarchies() {
            let dir = h.join(self.0.trim_start_matches('/'));
            let t = Instant::now();
            // A killed shim leaves its cgroup a moment after the kill.
            while dir.exists()
                && std::fs::remove_dir(&dir).is_err()
                && t.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// The v1 cgroup paths of `pid`, one per hierarchy line of /proc/PID/cgroup.
fn v1_cgroups(pid: i32) -> Vec<(String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
            (!ctrls.is_empty()).then(|| (ctrls.to_string(), path.to_string()))
        })
        .collect()
}

fn one_shim(bed: &TestBed) -> i32 {
    let shims = bed.shim_pids();
    assert_eq!(shims.len(), 1, "one husk shim: {shims:?}");
    shims[0]
}

#[test]
fn ctr_runtime_config_path_places_the_shim_in_its_cgroup() {
    let cg = ShimCgroup::create(&format!("/husk-e2e-{}-ctr-shims", std::process::id()));
    let bed = TestBed::start();
    bed.import(BUSYBOX);
    let config = bed.dir.path().join("husk-runtime.toml");
    std::fs::write(&config, format!("ShimCgroup = \"{}\"\n", cg.0)).unwrap();
    let config = config.display().to_string();
    bed.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        RT,
        "--runtime-config-path",
        &config,
        BUSYBOX,
        "cg",
        "sleep",
        "1000",
    ]);
    let shim = one_shim(&bed);
    let lines = v1_cgroups(shim);
    assert!(!lines.is_empty());
    for (ctrls, path) in &lines {
        assert_eq!(path, &cg.0, "shim {shim} in {ctrls}: {lines:?}");
    }
}

#[test]
fn a_shim_cgroup_that_does_not_exist_fails_the_start_clearly() {
    let bed = TestBed::start();
    bed.import(BUSYBOX);
    let config = bed.dir.path().join("husk-runtime.toml");
    let missing = format!("/husk-e2e-{}-no-such-cgroup", std::process::id());
    std::fs::write(&config, format!("ShimCgroup = \"{missing}\"\n")).unwrap();
    let out = bed.ctr(&[
        "run",
        "-d",
        "--runtime",
        RT,
        "--runtime-config-path",
        &config.display().to_string(),
        BUSYBOX,
        "nocg",
        "sleep",
        "1000",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started without its cgroup");
    assert!(
        err.contains(&format!(
            "{missing:?} does not exist in any cgroup hierarchy"
        )),
        "{err}"
    );
    assert!(
        bed.shim_pids().is_empty(),
        "the shim server was left running"
    );
    let _ = bed.ctr(&["container", "rm", "nocg"]);
}

#[test]
fn a_cri_handlers_options_section_places_the_shim_in_its_cgroup() {
    // RunPodSandbox on a handler whose options section says `ShimCgroup = ...`: containerd
    // >= 1.7 passes the section to a non-runc runtime as runtimeoptions' config_body;
    // containerd 1.6 passes only ConfigPath/TypeUrl, so the shim stays where it started.
    let cg; // dropped after the bed, whose teardown ends the shim inside it
    let bed = TestBed::start();
    cg = ShimCgroup::create(&bed.shim_cgroup());
    let mut c = bed.cri(&[]);
    let version = bed.containerd_version();
    let passes_body = !version.starts_with("1.6");
    let pod = c.run_pod(
        &Cri::pod_config("shimcg", &bed.dir.path().join("logs")),
        SHIM_CGROUP_HANDLER,
    );
    let shim = one_shim(&bed);
    let lines = v1_cgroups(shim);
    eprintln!(
        "containerd {version}: handler {SHIM_CGROUP_HANDLER} with ShimCgroup = {:?}, shim {shim} in {lines:?}",
        cg.0
    );
    for (ctrls, path) in &lines {
        if passes_body {
            assert_eq!(path, &cg.0, "shim {shim} in {ctrls}: {lines:?}");
        } else {
            assert_ne!(
                path, &cg.0,
                "containerd 1.6 sends no config_body: {lines:?}"
            );
        }
    }
    c.stop_pod(&pod);
    c.remove_pod(&pod);
}
