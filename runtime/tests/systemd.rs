//! The systemd cgroup driver on a real systemd + cgroup v2 node: the `husk` CLI with
//! `--systemd-cgroup`, and the driver's D-Bus client through the library. This host (cgroup v1,
//! no systemd as PID 1) cannot show any of it: these tests run in the node guest
//! (`scripts/systemd-guest.sh`, see README) and fail loudly anywhere else.
//!
//! What they assert is what a user sees: `systemctl show` of the unit while the container runs
//! and after it is deleted, `/proc/<pid>/cgroup`, the cgroup files, what `runc --systemd-cgroup`
//! makes of the same bundle.

mod common;
use common::*;
use husk_runtime::cgroups::systemd::{self, props, Executor, Systemd, UnitSpec};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const HOW: &str = "run them in the node guest: scripts/systemd-guest.sh";

/// Tests that re-execute systemd, restart dbus or reload take this exclusively; the others
/// share it, so no create or `systemctl show` meets a systemd that is going away.
static SYSTEMD: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    SYSTEMD.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    SYSTEMD.write().unwrap_or_else(|e| e.into_inner())
}

/// Fails unless this is a systemd + cgroup v2 host, as root.
fn require_node() {
    require_root();
    assert!(
        Path::new("/run/systemd/system").is_dir(),
        "the systemd driver tests need systemd as PID 1: {HOW}"
    );
    let st = nix::sys::statfs::statfs("/sys/fs/cgroup").unwrap();
    assert!(
        st.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC,
        "the systemd driver tests need the unified cgroup v2 hierarchy: {HOW}"
    );
}

fn node() -> Husk {
    require_node();
    Husk::new()
}

fn sh(cmd: &str) -> (bool, String) {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `systemctl show` of `props` of `unit`.
fn show(unit: &str, props: &[&str]) -> BTreeMap<String, String> {
    let out = Command::new("systemctl")
        .args(["show", unit, "-p", &props.join(",")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn prop(unit: &str, p: &str) -> String {
    show(unit, &[p]).remove(p).unwrap_or_default()
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
        .trim()
        .to_string()
}

/// The unit is gone: not loaded, not failed, no cgroup.
fn assert_gone(unit: &str, dir: &Path) {
    // systemd unloads a stopped unit on its next GC pass: allow it a moment.
    let t = Instant::now();
    while prop(unit, "LoadState") != "not-found" && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        prop(unit, "LoadState"),
        "not-found",
        "{unit} is still loaded: {:?}",
        show(unit, &["ActiveState", "Result"])
    );
    let (_, failed) = sh("systemctl list-units --all --plain --no-legend --state=failed");
    assert!(!failed.contains(unit), "{unit} left failed: {failed}");
    assert!(!dir.exists(), "{} is left", dir.display());
}

/// A unique slice under `huskit.slice`, as kubelet makes pod slices (`huskit-pod<n>.slice`).
fn pod_slice() -> String {
    format!("huskit-{}.slice", unique_id("pod").replace('-', "_"))
}

fn cgroup_of(slice: &str, unit: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup")
        .join(
            systemd::expand_slice(slice)
                .unwrap()
                .trim_start_matches('/'),
        )
        .join(unit)
}

/// `husk --systemd-cgroup ARGS`.
fn sd(h: &Husk, args: &[&str]) -> std::process::Output {
    h.cmd(&[&["--systemd-cgroup"], args].concat())
        .output()
        .unwrap()
}

fn sd_ok(h: &Husk, args: &[&str]) -> String {
    let out = sd(h, args);
    assert!(
        out.status.success(),
        "husk --systemd-cgroup {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `husk --systemd-cgroup create` of the bundle (its stdout/stderr to files).
fn sd_create(h: &Husk, b: &Bundle) {
    b.write();
    h.track(&b.id);
    let err = b.path().join("create.err");
    let st = h
        .cmd(&[
            "--systemd-cgroup",
            "create",
            "--bundle",
            b.path().to_str().unwrap(),
            &b.id,
        ])
        .stdout(std::fs::File::create(b.path().join("create.out")).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .unwrap();
    assert!(
        st.success(),
        "husk --systemd-cgroup create: {}",
        std::fs::read_to_string(&err).unwrap_or_default()
    );
}

fn exec(h: &Husk, id: &str, cmd: &str) -> String {
    h.ok(&["exec", id, "sh", "-c", cmd])
}

#[test]
fn a_cri_container_is_a_scope_in_its_pod_slice_with_its_limits_until_deleted() {
    let _systemd = shared();
    let h = node();
    let slice = pod_slice();
    let mut b = Bundle::busybox(&["sleep", "1000"]);
    b.config["linux"]["cgroupsPath"] = json!(format!("{slice}:cri-containerd:{}", b.id));
    b.config["linux"]["resources"] = json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "memory": {"limit": 67108864},
        "cpu": {"shares": 1024, "quota": 12345, "period": 100000},
        "pids": {"limit": 64},
        "unified": {"memory.oom.group": "1"}
    });
    sd_create(&h, &b);
    let unit = format!("cri-containerd-{}.scope", b.id);
    let dir = cgroup_of(&slice, &unit);
    let s = show(
        &unit,
        &[
            "ActiveState",
            "Slice",
            "Delegate",
            "ControlGroup",
            "MemoryMax",
            "TasksMax",
            "CPUQuotaPerSecUSec",
            "CPUWeight",
            "OOMPolicy",
            "DevicePolicy",
            "DefaultDependencies",
            "NeedDaemonReload",
            "MemoryAccounting",
            "TasksAccounting",
        ],
    );
    let want = |k: &str| s.get(k).map(String::as_str).unwrap_or("");
    assert_eq!(want("ActiveState"), "active", "{s:?}");
    assert_eq!(want("Slice"), slice);
    assert_eq!(want("Delegate"), "yes");
    // huskit-pod….slice is nested under huskit.slice, as systemd expands slice names.
    let cg = format!("/huskit.slice/{slice}/{unit}");
    assert_eq!(want("ControlGroup"), cg);
    assert_eq!(want("MemoryMax"), "67108864");
    assert_eq!(want("TasksMax"), "64");
    // 12345 µs per 100 ms is 12.345 %: systemd keeps whole percents, so 13 % (as runc).
    assert_eq!(want("CPUQuotaPerSecUSec"), "130ms");
    assert_eq!(want("CPUWeight"), "100");
    assert_eq!(want("OOMPolicy"), "kill");
    assert_eq!(want("DevicePolicy"), "strict");
    assert_eq!(want("DefaultDependencies"), "no");
    assert_eq!(want("NeedDaemonReload"), "no");
    assert_eq!(want("MemoryAccounting"), "yes");
    assert_eq!(want("TasksAccounting"), "yes");
    let pid = h.state(&b.id)["pid"].as_i64().unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap(),
        format!("0::{cg}\n")
    );
    assert_eq!(read(&dir, "memory.max"), "67108864");
    assert_eq!(read(&dir, "cpu.max"), "13000 100000");
    assert_eq!(read(&dir, "pids.max"), "64");
    assert_eq!(read(&dir, "cpu.weight"), "100");
    assert_eq!(read(&dir, "memory.oom.group"), "1");
    h.ok(&["start", &b.id]);
    // The container's cgroup namespace is rooted at the scope, and exec joins the scope.
    assert_eq!(exec(&h, &b.id, "cat /proc/self/cgroup"), "0::/\n");
    assert_eq!(
        exec(
            &h,
            &b.id,
            "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max"
        ),
        "67108864\n64\n"
    );
    // A cgroup the container made below its own (Delegate=yes hands it the subtree): delete
    // removes it too.
    std::fs::create_dir(dir.join("sub")).unwrap();
    h.ok(&["delete", "--force", &b.id]);
    assert_gone(&unit, &dir);
}

#[test]
fn update_and_device_rules_survive_a_daemon_reload() {
    let _systemd = exclusive();
    let h = node();
    let slice = pod_slice();
    let mut b = Bundle::busybox(&["sleep", "1000"]);
    b.config["linux"]["cgroupsPath"] = json!(format!("{slice}:cri-containerd:{}", b.id));
    sd_create(&h, &b);
    h.ok(&["start", &b.id]);
    let unit = format!("cri-containerd-{}.scope", b.id);
    let dir = cgroup_of(&slice, &unit);
    sd_ok(
        &h,
        &[
            "update",
            "--memory",
            "100M",
            "--cpu-quota",
            "20000",
            "--cpu-period",
            "100000",
            "--pids-limit",
            "50",
            "--cpuset-cpus",
            "0",
            "--cpu-shares",
            "512",
            &b.id,
        ],
    );
    // A device the default rules deny (/dev/kmsg, 1:11), one they allow (/dev/zero).
    let probe = "mknod /tmp/kmsg c 1 11 2>/dev/null; head -c1 /tmp/kmsg >/dev/null 2>&1 && echo kmsg-open || echo kmsg-denied; head -c1 /dev/zero | wc -c";
    let seen = || {
        (
            read(&dir, "memory.max"),
            read(&dir, "cpu.max"),
            read(&dir, "pids.max"),
            read(&dir, "cpuset.cpus"),
            read(&dir, "cpu.weight"),
            exec(&h, &b.id, probe),
            prop(&unit, "AllowedCPUs"),
        )
    };
    let before = seen();
    assert_eq!(
        before,
        (
            "104857600".into(),
            "20000 100000".into(),
            "50".into(),
            "0".into(),
            "59".into(),
            "kmsg-denied\n1\n".into(),
            "0".into()
        )
    );
    let progs = husk_runtime::cgroups::devices::bpf::attached_names(&dir).unwrap();
    assert!(progs.iter().any(|p| p == "husk_devices"), "{progs:?}");
    let (ok, out) = sh("systemctl daemon-reload");
    assert!(ok, "{out}");
    assert_eq!(
        seen(),
        before,
        "a daemon-reload changed the container's limits"
    );
    assert_eq!(prop(&unit, "NeedDaemonReload"), "no");
    let progs = husk_runtime::cgroups::devices::bpf::attached_names(&dir).unwrap();
    assert!(progs.iter().any(|p| p == "husk_devices"), "{progs:?}");
    h.ok(&["delete", "--force", &b.id]);
    assert_gone(&unit, &dir);
}

#[test]
fn pause_and_resume_freeze_the_scope() {
    let _systemd = shared();
    let h = node();
    let slice = pod_slice();
    let mut b = Bundle::busybox(&["sleep", "1000"]);
    b.config["linux"]["cgroupsPath"] = json!(format!("{slice}:cri-containerd:{}", b.id));
    sd_create(&h, &b);
    h.ok(&["start", &b.id]);
    let unit = format!("cri-containerd-{}.scope", b.id);
    let dir = cgroup_of(&slice, &unit);
    h.ok(&["pause", &b.id]);
    assert_eq!(h.state(&b.id)["status"], "paused");
    assert_eq!(read(&dir, "cgroup.freeze"), "1");
    let t = Instant::now();
    while !read(&dir, "cgroup.events").contains("frozen 1") {
        assert!(t.elapsed() < Duration::from_secs(10), "never frozen");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(prop(&unit, "ActiveState"), "active");
    h.ok(&["resume", &b.id]);
    assert_eq!(h.state(&b.id)["status"], "running");
    assert_eq!(read(&dir, "cgroup.freeze"), "0");
    assert_eq!(exec(&h, &b.id, "echo alive"), "alive\n");
    h.ok(&["delete", "--force", &b.id]);
    assert_gone(&unit, &dir);
}

#[test]
fn a_leftover_failed_scope_of_the_same_name_is_reset_and_replaced() {
    let _systemd = shared();
    let h = node();
    let slice = pod_slice();
    let mut b = Bundle::busybox(&["sleep", "1000"]);
    b.config["linux"]["cgroupsPath"] = json!(format!("{slice}:cri-containerd:{}", b.id));
    let unit = format!("cri-containerd-{}.scope", b.id);
    // A scope of that name killed by the OOM killer stays loaded as failed (result oom-kill).
    let (_, out) = sh(&format!(
        "systemd-run --scope --quiet --unit={unit} --slice={slice} -p MemoryMax=16M -p MemorySwapMax=0 -p OOMPolicy=kill tail /dev/zero"
    ));
    assert_eq!(
        prop(&unit, "ActiveState"),
        "failed",
        "could not make a failed scope: {out} {:?}",
        show(&unit, &["Result", "LoadState"])
    );
    sd_create(&h, &b);
    assert_eq!(prop(&unit, "ActiveState"), "active");
    let pid = h.state(&b.id)["pid"].as_i64().unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap(),
        format!("0::/huskit.slice/{slice}/{unit}\n")
    );
    h.ok(&["delete", "--force", &b.id]);
    assert_gone(&unit, &cgroup_of(&slice, &unit));
}

#[test]
fn a_live_unit_of_the_same_name_is_one_clear_error_and_nothing_is_left() {
    let _systemd = shared();
    let h = node();
    let slice = pod_slice();
    let mut b = Bundle::busybox(&["sleep", "1000"]);
    b.config["linux"]["cgroupsPath"] = json!(format!("{slice}:cri-containerd:{}", b.id));
    let unit = format!("cri-containerd-{}.scope", b.id);
    let (ok, out) = sh(&format!(
        "systemd-run --scope --quiet --unit={unit} --slice={slice} sleep 1000 >/dev/null 2>&1 &
         for i in $(seq 100); do systemctl is-active --quiet {unit} && exit 0; sleep 0.1; done; exit 1"
    ));
    assert!(ok, "{out}");
    b.write();
    let out = sd(
        &h,
        &["create", "--bundle", b.path().to_str().unwrap(), &b.id],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&unit) && err.contains("UnitExists"), "{err}");
    assert!(!h.run(&["state", &b.id]).status.success(), "state left");
    // The other scope is untouched.
    assert_eq!(prop(&unit, "ActiveState"), "active");
    sh(&format!("systemctl stop {unit}"));
}

#[test]
fn paths_not_in_the_systemd_form_and_bad_names_are_refused_up_front() {
    let _systemd = shared();
    let h = node();
    for (path, id_suffix) in [
        ("/kubepods/burstable/pod1", ""),
        ("notaslice:p:n", ""),
        ("a--b.slice:p:n", ""),
        ("huskit.slice:p:bad+name", "+x"),
    ] {
        let mut b = Bundle::busybox(&["true"]);
        b.id.push_str(id_suffix);
        b.config["linux"]["cgroupsPath"] = json!(path);
        b.write();
        let out = sd(
            &h,
            &["create", "--bundle", b.path().to_str().unwrap(), &b.id],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{path}: accepted");
        assert!(err.contains("linux.cgroupsPath"), "{path}: {err}");
        assert!(!h.run(&["state", &b.id]).status.success());
    }
}

#[test]
fn no_cgroups_path_is_a_husk_scope_in_the_system_slice() {
    let _systemd = shared();
    let h = node();
    let mut b = Bundle::busybox(&["sleep", "1000"]);
    b.config["linux"]
        .as_object_mut()
        .unwrap()
        .remove("cgroupsPath");
    sd_create(&h, &b);
    let unit = format!("husk-{}.scope", b.id);
    assert_eq!(prop(&unit, "Slice"), "system.slice");
    assert_eq!(prop(&unit, "ControlGroup"), format!("/system.slice/{unit}"));
    h.ok(&["delete", "--force", &b.id]);
    assert_gone(&unit, &cgroup_of("system.slice", &unit));
}

#[test]
fn without_the_flag_a_systemd_form_path_is_a_literal_directory_as_with_runc() {
    let _systemd = shared();
    let h = node();
    let slice = pod_slice();
    let mut b = Bundle::busybox(&["sleep", "1000"]);
    let path = format!("{slice}:cri-containerd:{}", b.id);
    b.config["linux"]["cgroupsPath"] = json!(path);
    h.create(&b);
    let unit = format!("cri-containerd-{}.scope", b.id);
    assert_eq!(prop(&unit, "LoadState"), "not-found");
    let pid = h.state(&b.id)["pid"].as_i64().unwrap();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cg.trim_end().ends_with(&format!("/{path}")), "{cg}");
    h.ok(&["delete", "--force", &b.id]);
}

/// One `(properties, cgroup files, /proc/self/cgroup inside)` observation of a container made
/// with `--systemd-cgroup` by `bin` (husk or a runc).
fn observe(bin: &str, prefix: &str) -> BTreeMap<String, String> {
    let h = Husk::with_bin(bin);
    let slice = pod_slice();
    let mut b = Bundle::busybox(&["sleep", "1000"]);
    b.config["linux"]["cgroupsPath"] = json!(format!("{slice}:{prefix}:{}", b.id));
    b.config["linux"]["resources"] = json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "memory": {"limit": 33554432},
        "cpu": {"quota": 25000, "period": 100000, "cpus": "0"},
        "pids": {"limit": 32}
    });
    sd_create(&h, &b);
    h.ok(&["start", &b.id]);
    let unit = format!("{prefix}-{}.scope", b.id);
    let dir = cgroup_of(&slice, &unit);
    let mut seen = show(
        &unit,
        &[
            "ActiveState",
            "Delegate",
            "MemoryMax",
            "TasksMax",
            "CPUQuotaPerSecUSec",
            "AllowedCPUs",
            "DevicePolicy",
            "DefaultDependencies",
            "MemoryAccounting",
            "CPUAccounting",
            "TasksAccounting",
            "IOAccounting",
            "NeedDaemonReload",
        ],
    );
    for f in ["memory.max", "cpu.max", "pids.max", "cpuset.cpus"] {
        seen.insert(f.into(), read(&dir, f));
    }
    seen.insert(
        "slice".into(),
        prop(&unit, "Slice").replace(&slice, "SLICE"),
    );
    seen.insert(
        "inside /proc/self/cgroup".into(),
        exec(&h, &b.id, "cat /proc/self/cgroup"),
    );
    seen.insert(
        "inside /dev/kmsg".into(),
        exec(
            &h,
            &b.id,
            "mknod /tmp/k c 1 11 2>/dev/null; head -c1 /tmp/k >/dev/null 2>&1 && echo open || echo denied",
        ),
    );
    h.ok(&["delete", "--force", &b.id]);
    assert_gone(&unit, &dir);
    seen
}

#[test]
fn husk_and_runc_make_the_same_unit_of_the_same_bundle() {
    let _systemd = shared();
    require_node();
    let husk = observe(husk_bin(), "husk");
    for runc in ["/usr/sbin/runc", "/opt/runc-sid/usr/sbin/runc"] {
        assert!(
            Path::new(runc).exists(),
            "{runc} is missing (the node guest has runc 1.1 and sid's): {HOW}"
        );
        let r = observe(runc, "runc");
        let diff: Vec<String> = husk
            .keys()
            .filter(|k| husk.get(*k) != r.get(*k))
            .map(|k| format!("{k}: husk {:?}, {runc} {:?}", husk[k], r.get(k)))
            .collect();
        assert!(
            diff.is_empty(),
            "husk and {runc} differ:\n{}",
            diff.join("\n")
        );
    }
}

/// A process for a scope of a library-level test: `sleep`, killed on drop.
struct Sleeper(std::process::Child);

impl Sleeper {
    fn new() -> Sleeper {
        Sleeper(Command::new("sleep").arg("1000").spawn().unwrap())
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_scope(sd: &Systemd, name: &str, pid: u32) -> (UnitSpec, PathBuf) {
    let slice = pod_slice();
    let unit = UnitSpec::parse(&format!("{slice}:huskit:{name}"), name).unwrap();
    let p = props::creation(&unit, name, Some(pid), None, sd.version());
    sd.start(&unit, &p).unwrap();
    let dir = cgroup_of(&slice, &unit.name);
    (unit, dir)
}

fn memory_max(n: u64) -> Vec<props::Prop> {
    vec![props::Prop {
        name: "MemoryMax",
        value: props::PropValue::U64(n),
    }]
}

#[test]
fn the_client_reconnects_after_systemd_reexecutes() {
    let _systemd = exclusive();
    require_node();
    let sd = Systemd::default();
    let p = Sleeper::new();
    let name = unique_id("reexec");
    let (unit, dir) = start_scope(&sd, &name, p.0.id());
    assert_eq!(sd.connected_to().as_deref(), Some("/run/systemd/private"));
    // systemd re-executing drops every connection on its direct socket.
    let (ok, out) = sh("systemctl daemon-reexec");
    assert!(ok, "{out}");
    sd.set(&unit.name, &memory_max(50 << 20))
        .expect("set after daemon-reexec");
    assert_eq!(read(&dir, "memory.max"), (50u64 << 20).to_string());
    drop(p);
    sd.stop(&unit.name).unwrap();
    assert_gone(&unit.name, &dir);
}

#[test]
fn over_the_system_bus_the_client_survives_a_dbus_restart() {
    let _systemd = exclusive();
    require_node();
    let sd = Systemd::default().via_system_bus();
    let p = Sleeper::new();
    let name = unique_id("bus");
    let (unit, dir) = start_scope(&sd, &name, p.0.id());
    assert_eq!(sd.connected_to().as_deref(), Some("the system bus"));
    let (ok, out) = sh("systemctl restart dbus.service");
    assert!(ok, "{out}");
    let t = Instant::now();
    while !sh("busctl --system status >/dev/null 2>&1").0 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "dbus did not come back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    sd.set(&unit.name, &memory_max(40 << 20))
        .expect("set after a dbus restart");
    assert_eq!(read(&dir, "memory.max"), (40u64 << 20).to_string());
    drop(p);
    sd.stop(&unit.name).unwrap();
    assert_gone(&unit.name, &dir);
}

#[test]
fn on_a_shared_runtime_the_connection_closes_when_idle() {
    let _systemd = shared();
    require_node();
    // The shim's arrangement: a current-thread runtime driven by one thread, calls from another.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let handle = rt.handle().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let driver = std::thread::spawn(move || {
        rt.block_on(async {
            let _ = stop_rx.await;
        })
    });
    let sd = Systemd::new(Executor::Shared(handle));
    let p = Sleeper::new();
    let name = unique_id("idle");
    let (unit, dir) = start_scope(&sd, &name, p.0.id());
    assert!(sd.is_connected());
    let t = Instant::now();
    while sd.is_connected() {
        assert!(
            t.elapsed() < systemd::IDLE + Duration::from_secs(10),
            "the connection stayed open"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(t.elapsed() >= systemd::IDLE - Duration::from_millis(500));
    // The next call reconnects.
    sd.set(&unit.name, &memory_max(30 << 20)).unwrap();
    assert_eq!(read(&dir, "memory.max"), (30u64 << 20).to_string());
    drop(p);
    sd.stop(&unit.name).unwrap();
    assert_gone(&unit.name, &dir);
    let _ = stop_tx.send(());
    driver.join().unwrap();
}

#[test]
fn a_unit_whose_start_job_fails_is_reset_and_reported() {
    let _systemd = shared();
    require_node();
    let sd = Systemd::default();
    let name = unique_id("nopid");
    // A scope of a pid that does not exist: systemd refuses it (or its job fails); either
    // way one error naming the unit, and no failed unit left behind.
    let slice = pod_slice();
    let unit = UnitSpec::parse(&format!("{slice}:huskit:{name}"), &name).unwrap();
    let p = props::creation(&unit, &name, Some(i32::MAX as u32), None, sd.version());
    let e = sd.start(&unit, &p).unwrap_err().to_string();
    assert!(e.contains(&unit.name), "{e}");
    assert_gone(&unit.name, &cgroup_of(&slice, &unit.name));
}

#[test]
fn a_shims_containers_start_at_once_over_one_connection() {
    let _systemd = shared();
    require_node();
    // A pod's shim creating its containers at once: blocking threads sharing one connection on
    // the shim's current-thread runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let handle = rt.handle().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let driver = std::thread::spawn(move || {
        rt.block_on(async {
            let _ = stop_rx.await;
        })
    });
    let sd = std::sync::Arc::new(Systemd::new(Executor::Shared(handle)));
    let res: oci_spec::runtime::LinuxResources = serde_json::from_value(json!({
        "memory": {"limit": 33554432},
        "cpu": {"shares": 256, "quota": 10000},
        "devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]
    }))
    .unwrap();
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let (sd, res) = (sd.clone(), res.clone());
            std::thread::spawn(move || {
                let p = Sleeper::new();
                let t = Instant::now();
                let name = unique_id(&format!("many{i}"));
                let (unit, dir) = start_scope(&sd, &name, p.0.id());
                let cg = husk_runtime::cgroups::Cgroup::new(husk_runtime::cgroups::CgroupPaths {
                    v2: true,
                    dirs: [(String::new(), dir.clone())].into(),
                });
                sd.apply(&unit.name, &cg, &res).unwrap();
                assert_eq!(read(&dir, "memory.max"), "33554432");
                let took = t.elapsed();
                drop(p);
                sd.stop(&unit.name).unwrap();
                assert_gone(&unit.name, &dir);
                took
            })
        })
        .collect();
    let times: Vec<Duration> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    println!("start + apply per unit: {times:?}");
    let _ = stop_tx.send(());
    driver.join().unwrap();
}

/// What the driver's client works around (`Bus::nudged` in src/cgroups/systemd/dbus.rs), on
/// the real systemd: a first call that reaches PID 1 in the same read as the SASL `BEGIN` —
/// what happens to a client whenever systemd is busy — is answered, at once or (systemd 257:
/// sd-bus leaves it in its read buffer) once a no-reply `Ping` follows it. Fails if a ping
/// does not wake systemd, which would leave such a call to time out.
#[test]
fn a_first_call_read_with_begin_is_answered_once_a_ping_follows() {
    use std::io::{Read, Write};
    require_node();
    let _systemd = shared();
    let mut s = std::os::unix::net::UnixStream::connect("/run/systemd/private").unwrap();
    let uid: String = nix::unistd::geteuid()
        .as_raw()
        .to_string()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    s.write_all(format!("\0AUTH EXTERNAL {uid}\r\n").as_bytes())
        .unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        s.read_exact(&mut b).unwrap();
        line.push(b[0]);
    }
    assert!(line.starts_with(b"OK "), "{line:?}");
    let get = zbus::Message::method_call("/org/freedesktop/systemd1", "Get")
        .unwrap()
        .destination("org.freedesktop.systemd1")
        .unwrap()
        .interface("org.freedesktop.DBus.Properties")
        .unwrap()
        .build(&("org.freedesktop.systemd1.Manager", "Version"))
        .unwrap();
    let mut first = b"BEGIN\r\n".to_vec();
    first.extend_from_slice(&get.data()[..]);
    s.write_all(&first).unwrap();
    // Signals (UnitNew, …) arrive on this socket unasked: read until a method return or error.
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut pinged = false;
    let reply = loop {
        match read_dbus_message(&mut s) {
            Ok(m) if m[1] == 2 || m[1] == 3 => break m,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && !pinged => {
                let ping = zbus::Message::method_call("/org/freedesktop/systemd1", "Ping")
                    .unwrap()
                    .destination("org.freedesktop.systemd1")
                    .unwrap()
                    .interface("org.freedesktop.DBus.Peer")
                    .unwrap()
                    .with_flags(zbus::message::Flags::NoReplyExpected)
                    .unwrap()
                    .build(&())
                    .unwrap();
                s.write_all(&ping.data()[..]).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                pinged = true;
            }
            Err(e) => panic!("no answer from systemd (pinged: {pinged}): {e}"),
        }
    };
    eprintln!(
        "systemd answered the call read with BEGIN {}",
        if pinged {
            "only after a ping"
        } else {
            "at once"
        }
    );
    let v = systemd_version();
    assert!(
        reply[1] == 2 && reply.windows(v.len()).any(|w| w == v.as_bytes()),
        "the reply holds systemd's version {v}: {:?}",
        String::from_utf8_lossy(&reply)
    );
}

/// One whole D-Bus message (little-endian, as systemd writes): the 16-byte fixed header, the
/// header fields padded to 8, the body (D-Bus specification, "Message Format").
fn read_dbus_message(s: &mut std::os::unix::net::UnixStream) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut m = vec![0u8; 16];
    s.read_exact(&mut m)?;
    let le = |at: usize| u32::from_le_bytes(m[at..at + 4].try_into().unwrap()) as usize;
    assert_eq!(m[0], b'l', "a little-endian message");
    let total = (16 + le(12)).next_multiple_of(8) + le(4);
    m.resize(total, 0);
    s.read_exact(&mut m[16..])?;
    Ok(m)
}

/// The leading number of `systemctl --version` ("257").
fn systemd_version() -> String {
    let (ok, out) = sh("systemctl --version");
    assert!(ok, "{out}");
    out.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}
