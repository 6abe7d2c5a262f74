//! The churn soak (issue 14 §1): pods come and go through CRI, as kubelet drives them, on each
//! handler of one test bed in turn, and nothing may be left behind or lost.
//!
//! Per handler: a long-lived "sentinel" pod is started and stays up through the phase, under
//! a continuous ExecSync storm (its shim's fds and resident set are watched); one warm-up pod
//! runs; the counters of [`account::Snapshot`] are read (the baseline); then `clients` CRI
//! clients in parallel churn up to `pods` pods, each a sandbox with two containers — `once`
//! exits at once with code 3, `run` keeps running — an Attach to `run` (stdin in, its echo out),
//! an ExecSync storm on `run` (every exit code and stdout checked), stats polls (ContainerStats,
//! ListContainerStats, PodSandboxStats), then StopContainer, RemoveContainer, StopPodSandbox,
//! RemovePodSandbox and the pod cgroup's removal (kubelet's part). The phase stops by itself at
//! `pods` pods or after `budget`, whichever comes first. The counters are read again once they
//! settle; anything above the baseline is a leak. After the last phase the sentinels go too
//! and the counters must be back at the very first reading.

pub mod account;
pub mod report;

use crate::bed::{TestBed, BUSYBOX};
use crate::cri::{v1 as cri, Cri};
use account::{Scope, Snapshot};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bound on every CRI call: a stuck call is an error of its pod, not a hung soak.
const CALL_LIMIT: Duration = Duration::from_secs(90);
/// How long an exited container's status may take to say so, and its log to hold its output.
const EXIT_LIMIT: Duration = Duration::from_secs(60);
/// How long the counters may take to return to their baseline after the last pod.
const SETTLE_LIMIT: Duration = Duration::from_secs(45);

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Pods per handler.
    pub pods: usize,
    /// CRI clients churning in parallel (4–16).
    pub clients: usize,
    /// Wall-clock bound of each handler's phase: no pod is started after it.
    pub budget: Duration,
    /// CRI handlers, one phase each, in this order.
    pub handlers: Vec<String>,
    /// ExecSync calls per pod on its running container.
    pub execs_per_pod: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pods: 1000,
            clients: 8,
            budget: Duration::from_secs(3600),
            handlers: vec!["husk".into(), "runc".into()],
            execs_per_pod: 6,
        }
    }
}

/// The shim binary serving `handler`'s pods on the test bed.
pub fn shim_name(handler: &str) -> &'static str {
    if handler.starts_with("husk") {
        "containerd-shim-husk-v2"
    } else {
        "containerd-shim-runc-v2"
    }
}

/// What one handler's phase measured.
#[derive(Debug, Default)]
pub struct Phase {
    pub handler: String,
    /// Pods that went through the whole lifecycle without a CRI error.
    pub pods_done: usize,
    /// Pods started (done or failed).
    pub pods_started: usize,
    pub seconds: f64,
    pub before: Snapshot,
    pub after: Snapshot,
    /// Exit statuses not reported or wrong (containers and execs).
    pub exits_lost: usize,
    /// Output not delivered (CRI log, ExecSync stdout, Attach).
    pub output_lost: usize,
    /// CRI calls that failed, and the first messages.
    pub errors: usize,
    pub first_errors: Vec<String>,
    /// Latency samples: (pod index, operation, ms).
    pub samples: Vec<(usize, String, f64)>,
    /// The sentinel's shim: (execs so far, RSS kB) readings.
    pub rss: Vec<(usize, i64)>,
    pub sentinel_execs: usize,
}

/// Outcome of one pod.
#[derive(Default)]
struct PodOutcome {
    timings: Vec<(String, f64)>,
    exits_lost: usize,
    output_lost: usize,
    errors: Vec<String>,
}

impl PodOutcome {
    fn timed<T>(
        &mut self,
        op: &str,
        f: impl FnOnce() -> Result<T, tonic::Status>,
    ) -> Result<T, String> {
        let t = Instant::now();
        let r = f();
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        match r {
            Ok(v) => {
                self.timings.push((op.to_string(), ms));
                Ok(v)
            }
            Err(e) => {
                let msg = format!("{op}: {}: {}", e.code(), e.message());
                self.errors.push(msg.clone());
                Err(msg)
            }
        }
    }
}

/// Shared between the clients of one phase.
struct Shared<'a> {
    bed: &'a TestBed,
    handler: &'a str,
    cfg: &'a Config,
    scope: Mutex<Scope>,
    phase: Mutex<Phase>,
    next: AtomicUsize,
    done: AtomicUsize,
    start: Instant,
}

/// The pod cgroup kubelet makes for pod `uid` under the bed's driver (cgroupfs when the bed
/// sets none, as kubelet always passes a parent).
fn pod_parent(bed: &TestBed, uid: &str) -> String {
    bed.driver
        .unwrap_or(crate::env::CgroupDriver::Cgroupfs)
        .pod_parent(uid)
}

/// kubelet removes a pod's cgroup once the pod is gone: every hierarchy's directory of a
/// cgroupfs parent, or (systemd driver) it stops the pod's slice unit. A cgroup the runtime
/// left a child in stays, and the cgroup counter shows it: a slice is only stopped when empty,
/// as stopping it would take a leftover scope with it.
fn remove_pod_cgroup(bed: &TestBed, parent: &str) {
    let rel = parent.trim_start_matches('/');
    if bed.driver == Some(crate::env::CgroupDriver::Systemd) {
        let dir = PathBuf::from("/sys/fs/cgroup").join(rel);
        let dir = if crate::env::cgroup_v2() {
            dir
        } else {
            PathBuf::from("/sys/fs/cgroup/systemd").join(rel)
        };
        let has_child = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_type().is_ok_and(|t| t.is_dir()));
        let unit = rel.rsplit('/').next().unwrap_or(rel);
        if !has_child {
            let _ = std::process::Command::new("systemctl")
                .args(["stop", unit])
                .stderr(std::process::Stdio::null())
                .status();
        }
        return;
    }
    let roots: Vec<PathBuf> = if crate::env::cgroup_v2() {
        vec![PathBuf::from("/sys/fs/cgroup")]
    } else {
        std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    };
    for r in roots {
        let _ = std::fs::remove_dir(r.join(rel));
    }
}

/// The network namespace's name (`cni-<uuid>`) of a running sandbox, from its verbose status.
fn netns_of(c: &mut Cri, pod: &str) -> Option<String> {
    let req = cri::PodSandboxStatusRequest {
        pod_sandbox_id: pod.into(),
        verbose: true,
    };
    let info = c
        .call_within(CALL_LIMIT, |mut r| async move {
            r.pod_sandbox_status(req).await
        })
        .ok()?
        .info;
    let v: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    let path = v["runtimeSpec"]["linux"]["namespaces"]
        .as_array()?
        .iter()
        .find(|n| n["type"] == "network")?["path"]
        .as_str()?
        .to_string();
    Some(path.rsplit('/').next()?.to_string())
}

fn status(c: &mut Cri, id: &str) -> Result<cri::ContainerStatus, tonic::Status> {
    let req = cri::ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    };
    c.call_within(
        CALL_LIMIT,
        |mut r| async move { r.container_status(req).await },
    )?
    .status
    .ok_or_else(|| tonic::Status::internal("no status"))
}

/// Polls until container `id` has exited; its status (None: still not exited at the limit).
fn wait_exit(c: &mut Cri, id: &str) -> Result<Option<cri::ContainerStatus>, tonic::Status> {
    let t = Instant::now();
    loop {
        let st = status(c, id)?;
        if st.state == cri::ContainerState::ContainerExited as i32 {
            return Ok(Some(st));
        }
        if t.elapsed() > EXIT_LIMIT {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the CRI log at `path` holds `want` on stdout.
fn log_holds(path: &std::path::Path, want: &str) -> bool {
    let t = Instant::now();
    loop {
        if crate::suite::log_text(path, "stdout").contains(want) {
            return true;
        }
        if t.elapsed() > Duration::from_secs(10) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn exec(c: &mut Cri, id: &str, cmd: &[&str]) -> Result<cri::ExecSyncResponse, tonic::Status> {
    let req = cri::ExecSyncRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout: 60,
    };
    c.call_within(CALL_LIMIT, |mut r| async move { r.exec_sync(req).await })
}

/// One pod through its whole lifecycle; `name` is unique in the bed.
fn churn_one(sh: &Shared, c: &mut Cri, name: &str) -> PodOutcome {
    let mut o = PodOutcome::default();
    let logs = sh.bed.dir.path().join("soak-logs").join(name);
    let mut config = sh.bed.pod_config(name, &logs);
    let uid = config
        .metadata
        .as_ref()
        .map(|m| m.uid.clone())
        .unwrap_or_default();
    let parent = pod_parent(sh.bed, &uid);
    config
        .linux
        .get_or_insert_with(Default::default)
        .cgroup_parent = parent.clone();
    let t0 = Instant::now();
    let req = cri::RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: sh.handler.into(),
    };
    let Ok(pod) = o.timed("RunPodSandbox", || {
        c.call_within(
            CALL_LIMIT,
            |mut r| async move { r.run_pod_sandbox(req).await },
        )
        .map(|r| r.pod_sandbox_id)
    }) else {
        return o;
    };
    {
        let mut s = sh.scope.lock().unwrap();
        s.ids.insert(pod.clone());
        s.sandboxes.insert(pod.clone());
    }
    if let Some(n) = netns_of(c, &pod) {
        sh.scope.lock().unwrap().netns.insert(n);
    }
    let _ = lifecycle(sh, c, &mut o, &pod, &config, &logs, t0);
    // Whatever happened, the pod goes (as kubelet would retry it until it does).
    let req = cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    };
    let _ = o.timed("StopPodSandbox", || {
        c.call_within(
            CALL_LIMIT,
            |mut r| async move { r.stop_pod_sandbox(req).await },
        )
    });
    let req = cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    };
    let _ = o.timed("RemovePodSandbox", || {
        c.call_within(CALL_LIMIT, |mut r| async move {
            r.remove_pod_sandbox(req).await
        })
    });
    remove_pod_cgroup(sh.bed, &parent);
    let _ = std::fs::remove_dir_all(&logs);
    o
}

fn container(
    sh: &Shared,
    c: &mut Cri,
    o: &mut PodOutcome,
    pod: &str,
    pod_config: &cri::PodSandboxConfig,
    cfg: cri::ContainerConfig,
) -> Result<String, String> {
    let id = o.timed("CreateContainer", || {
        c.create_container_within(CALL_LIMIT, pod, &cfg, pod_config)
    })?;
    sh.scope.lock().unwrap().ids.insert(id.clone());
    let req = cri::StartContainerRequest {
        container_id: id.clone(),
    };
    o.timed("StartContainer", || {
        c.call_within(
            CALL_LIMIT,
            |mut r| async move { r.start_container(req).await },
        )
    })?;
    Ok(id)
}

/// The containers, Attach, ExecSync storm, stats and container removal of one pod.
fn lifecycle(
    sh: &Shared,
    c: &mut Cri,
    o: &mut PodOutcome,
    pod: &str,
    pod_config: &cri::PodSandboxConfig,
    logs: &std::path::Path,
    t0: Instant,
) -> Result<(), String> {
    let once = container(
        sh,
        c,
        o,
        pod,
        pod_config,
        Cri::container_config("once", BUSYBOX, &["sh", "-c", "echo once; exit 3"]),
    )?;
    let mut run_cfg = Cri::container_config(
        "run",
        BUSYBOX,
        &["sh", "-c", "read l; echo attached:$l; exec sleep 100000"],
    );
    run_cfg.stdin = true;
    let run = container(sh, c, o, pod, pod_config, run_cfg)?;
    o.timings.push((
        "pod start-to-running".into(),
        t0.elapsed().as_secs_f64() * 1000.0,
    ));
    // Attach: what is typed reaches the container, what it prints comes back.
    let req = cri::AttachRequest {
        container_id: run.clone(),
        stdin: true,
        tty: false,
        stdout: true,
        stderr: true,
    };
    let url = o.timed("Attach", || {
        c.call_within(CALL_LIMIT, |mut r| async move { r.attach(req).await })
            .map(|r| r.url)
    })?;
    let t = Instant::now();
    let word = format!("hi-{}", &pod[..12]);
    match crate::stream::attach_until(
        &url,
        format!("{word}\n").as_bytes(),
        &format!("attached:{word}"),
        EXIT_LIMIT,
    ) {
        Ok(_) => o
            .timings
            .push(("Attach stream".into(), t.elapsed().as_secs_f64() * 1000.0)),
        Err(e) => {
            o.output_lost += 1;
            o.errors.push(format!("Attach stream: {e}"));
        }
    }
    // ExecSync storm: every exit code and every byte of stdout must come back.
    for k in 0..sh.cfg.execs_per_pod {
        let script = format!("echo x{k}; exit {}", k % 5);
        let r = o.timed("ExecSync", || exec(c, &run, &["sh", "-c", &script]))?;
        if r.exit_code != (k % 5) as i32 {
            o.exits_lost += 1;
            o.errors.push(format!(
                "ExecSync {script:?}: exit code {} (want {})",
                r.exit_code,
                k % 5
            ));
        }
        if r.stdout != format!("x{k}\n").as_bytes() {
            o.output_lost += 1;
            o.errors.push(format!(
                "ExecSync {script:?}: stdout {:?}",
                String::from_utf8_lossy(&r.stdout)
            ));
        }
    }
    // Stats polls, as kubelet's and the metrics server's.
    let id = run.clone();
    o.timed("ContainerStats", || {
        c.call_within(CALL_LIMIT, |mut r| async move {
            r.container_stats(cri::ContainerStatsRequest { container_id: id })
                .await
        })
    })?;
    let filter = cri::ContainerStatsFilter {
        pod_sandbox_id: pod.into(),
        ..Default::default()
    };
    o.timed("ListContainerStats", || {
        c.call_within(CALL_LIMIT, |mut r| async move {
            r.list_container_stats(cri::ListContainerStatsRequest {
                filter: Some(filter),
            })
            .await
        })
    })?;
    let id = pod.to_string();
    o.timed("PodSandboxStats", || {
        c.call_within(CALL_LIMIT, |mut r| async move {
            r.pod_sandbox_stats(cri::PodSandboxStatsRequest { pod_sandbox_id: id })
                .await
        })
    })?;
    // `once` has exited with its code, and its output is in its log.
    match o.timed("wait once exited", || wait_exit(c, &once))? {
        Some(st) if st.exit_code == 3 => {}
        Some(st) => {
            o.exits_lost += 1;
            o.errors
                .push(format!("once: exit code {} (want 3)", st.exit_code));
        }
        None => {
            o.exits_lost += 1;
            o.errors
                .push(format!("once: not exited after {EXIT_LIMIT:?}"));
        }
    }
    if !log_holds(&logs.join("once.log"), "once\n") {
        o.output_lost += 1;
        o.errors.push("once: its output is not in its log".into());
    }
    if !log_holds(&logs.join("run.log"), &format!("attached:{word}\n")) {
        o.output_lost += 1;
        o.errors
            .push("run: attached output is not in its log".into());
    }
    let req = cri::StopContainerRequest {
        container_id: run.clone(),
        timeout: 0,
    };
    o.timed("StopContainer", || {
        c.call_within(
            CALL_LIMIT,
            |mut r| async move { r.stop_container(req).await },
        )
    })?;
    match status(c, &run) {
        Ok(st)
            if st.state == cri::ContainerState::ContainerExited as i32 && st.exit_code == 137 => {}
        Ok(st) => {
            o.exits_lost += 1;
            o.errors.push(format!(
                "run after StopContainer: state {} exit code {} (want exited, 137)",
                st.state, st.exit_code
            ));
        }
        Err(e) => o.errors.push(format!("ContainerStatus: {}", e.message())),
    }
    for id in [once, run] {
        let req = cri::RemoveContainerRequest { container_id: id };
        o.timed("RemoveContainer", || {
            c.call_within(
                CALL_LIMIT,
                |mut r| async move { r.remove_container(req).await },
            )
        })?;
    }
    Ok(())
}

/// A pod that stays up through a phase: its id, its running container's id, its shim.
struct Sentinel {
    pod: String,
    container: String,
    parent: String,
    shim: Option<i32>,
}

fn start_sentinel(bed: &TestBed, c: &mut Cri, handler: &str, scope: &mut Scope) -> Sentinel {
    let name = format!("sentinel-{handler}");
    let logs = bed.dir.path().join("soak-logs").join(&name);
    let mut config = bed.pod_config(&name, &logs);
    let uid = config
        .metadata
        .as_ref()
        .map(|m| m.uid.clone())
        .unwrap_or_default();
    let parent = pod_parent(bed, &uid);
    config
        .linux
        .get_or_insert_with(Default::default)
        .cgroup_parent = parent.clone();
    let pod = c.run_pod(&config, handler);
    scope.ids.insert(pod.clone());
    scope.sandboxes.insert(pod.clone());
    if let Some(n) = netns_of(c, &pod) {
        scope.netns.insert(n);
    }
    let cfg = Cri::container_config("app", BUSYBOX, &["sleep", "100000"]);
    let container = c
        .create_container(&pod, &cfg, &config)
        .unwrap_or_else(|e| panic!("{handler}: sentinel CreateContainer: {}", e.message()));
    scope.ids.insert(container.clone());
    c.start_container(&container)
        .unwrap_or_else(|e| panic!("{handler}: sentinel StartContainer: {}", e.message()));
    let shim = crate::probe::shim_of(&bed.socket(), &pod);
    Sentinel {
        pod,
        container,
        parent,
        shim,
    }
}

fn remove_sentinel(bed: &TestBed, c: &mut Cri, s: &Sentinel) {
    c.stop_pod(&s.pod);
    c.remove_pod(&s.pod);
    remove_pod_cgroup(bed, &s.parent);
}

/// The exec storm on the sentinel until `stop`: every stdout checked, the shim's RSS read
/// every 20 execs.
fn storm(sh: &Shared, sentinel: &Sentinel, stop: &AtomicBool) {
    let mut c = Cri::connect(&sh.bed.socket());
    let mut k = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let want = format!("s{k}\n");
        let t = Instant::now();
        let r = exec(&mut c, &sentinel.container, &["echo", &format!("s{k}")]);
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let mut ph = sh.phase.lock().unwrap();
        let at = sh.done.load(Ordering::Relaxed);
        match r {
            Ok(r) if r.exit_code == 0 && r.stdout == want.as_bytes() => {
                ph.samples
                    .push((at, "ExecSync (long-lived pod)".into(), ms))
            }
            Ok(r) => {
                ph.output_lost += 1;
                if ph.first_errors.len() < 20 {
                    ph.first_errors.push(format!(
                        "sentinel exec {k}: exit {} stdout {:?}",
                        r.exit_code,
                        String::from_utf8_lossy(&r.stdout)
                    ));
                }
            }
            Err(e) => {
                ph.errors += 1;
                if ph.first_errors.len() < 20 {
                    ph.first_errors
                        .push(format!("sentinel exec {k}: {}", e.message()));
                }
            }
        }
        k += 1;
        ph.sentinel_execs = k;
        if k % 20 == 1 {
            if let Some(rss) = sentinel.shim.and_then(account::rss_kb) {
                ph.rss.push((k, rss));
            }
        }
        drop(ph);
        // A storm, but one that leaves the churn clients most of the machine.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the soak on `bed` (which must have the busybox image imported into CRI's namespace:
/// `bed.cri(&[BUSYBOX])`). `progress` gets a line now and then.
pub fn run(bed: &TestBed, cfg: &Config, progress: &(dyn Fn(&str) + Sync)) -> report::Report {
    let mut c = Cri::connect(&bed.socket());
    let all_shims: Vec<String> = {
        let mut v: Vec<String> = cfg.handlers.iter().map(|h| shim_name(h).into()).collect();
        v.sort();
        v.dedup();
        v
    };
    let first_scope = Scope {
        shim_names: all_shims.clone(),
        ..Default::default()
    };
    let initial = Snapshot::take(bed, &mut c, &first_scope);
    let mut whole = first_scope;
    let mut phases = Vec::new();
    let mut sentinels = Vec::new();
    for handler in &cfg.handlers {
        let mut scope = Scope {
            shim_names: vec![shim_name(handler).into()],
            ..Default::default()
        };
        let sentinel = start_sentinel(bed, &mut c, handler, &mut scope);
        let sh = Shared {
            bed,
            handler,
            cfg,
            scope: Mutex::new(scope),
            phase: Mutex::new(Phase {
                handler: handler.clone(),
                ..Default::default()
            }),
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            start: Instant::now(),
        };
        // One pod first, so what is made once (the first shim's code paged in, CNI state,
        // containerd's caches) is in the baseline.
        let warm = churn_one(&sh, &mut c, &format!("warmup-{handler}"));
        if let Some(e) = warm.errors.first() {
            progress(&format!("{handler}: warm-up pod: {e}"));
        }
        let _ = exec(&mut c, &sentinel.container, &["true"]);
        std::thread::sleep(Duration::from_secs(2));
        let scope = sh.scope.lock().unwrap().clone();
        let before = Snapshot::take(bed, &mut c, &scope);
        let sh = Shared {
            start: Instant::now(),
            ..sh
        };
        progress(&format!(
            "{handler}: {} pods, {} clients, at most {:.0} s",
            cfg.pods,
            cfg.clients,
            cfg.budget.as_secs_f64()
        ));
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let storm_thread = s.spawn(|| storm(&sh, &sentinel, &stop));
            let clients: Vec<_> = (0..cfg.clients)
                .map(|_| {
                    s.spawn(|| {
                        let mut c = Cri::connect(&bed.socket());
                        loop {
                            if sh.start.elapsed() > cfg.budget {
                                break;
                            }
                            let i = sh.next.fetch_add(1, Ordering::SeqCst);
                            if i >= cfg.pods {
                                break;
                            }
                            let o = churn_one(&sh, &mut c, &format!("soak-{handler}-{i}"));
                            let n = sh.done.fetch_add(1, Ordering::SeqCst) + 1;
                            let mut ph = sh.phase.lock().unwrap();
                            ph.pods_started += 1;
                            if o.errors.is_empty() {
                                ph.pods_done += 1;
                            }
                            ph.exits_lost += o.exits_lost;
                            ph.output_lost += o.output_lost;
                            ph.errors += o.errors.len();
                            for e in o.errors {
                                if ph.first_errors.len() < 20 {
                                    ph.first_errors.push(format!("pod {i}: {e}"));
                                }
                            }
                            for (op, ms) in o.timings {
                                ph.samples.push((i, op, ms));
                            }
                            let step = (cfg.pods / 10).max(1);
                            if n.checked_rem(step) == Some(0) {
                                progress(&format!(
                                    "{handler}: {n} pods in {:.0} s ({} with errors)",
                                    sh.start.elapsed().as_secs_f64(),
                                    ph.pods_started - ph.pods_done
                                ));
                            }
                        }
                    })
                })
                .collect();
            for h in clients {
                h.join().expect("soak client panicked");
            }
            stop.store(true, Ordering::Relaxed);
            storm_thread.join().expect("storm thread panicked");
        });
        let seconds = sh.start.elapsed().as_secs_f64();
        // The sentinel's shim read once more after the last exec, as at the baseline.
        let _ = exec(&mut c, &sentinel.container, &["true"]);
        std::thread::sleep(Duration::from_secs(2));
        let scope = sh.scope.lock().unwrap().clone();
        let after = account::settle(bed, &mut c, &scope, &before, SETTLE_LIMIT);
        let mut phase = sh.phase.into_inner().unwrap();
        phase.seconds = seconds;
        phase.before = before;
        phase.after = after;
        if let Some(rss) = sentinel.shim.and_then(account::rss_kb) {
            let n = phase.sentinel_execs;
            phase.rss.push((n, rss));
        }
        progress(&format!(
            "{handler}: {} of {} pods done in {seconds:.0} s; leaks: {:?}",
            phase.pods_done,
            phase.pods_started,
            phase.after.leaks(&phase.before)
        ));
        whole.ids.extend(scope.ids);
        whole.sandboxes.extend(scope.sandboxes);
        whole.netns.extend(scope.netns);
        phases.push(phase);
        sentinels.push(sentinel);
    }
    for s in &sentinels {
        remove_sentinel(bed, &mut c, s);
    }
    let end = account::settle(bed, &mut c, &whole, &initial, SETTLE_LIMIT);
    report::Report {
        config: cfg.clone(),
        phases,
        initial,
        end,
    }
}

/// Latency quantile `q` (0–1) of `v`, in ms; None when empty.
pub fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Some(s[((s.len() as f64 - 1.0) * q).round() as usize])
}

/// p99 per operation over the pods whose index is in `range`.
pub fn p99_by_op(
    samples: &[(usize, String, f64)],
    range: std::ops::Range<usize>,
) -> BTreeMap<String, f64> {
    let mut by: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (i, op, ms) in samples {
        if range.contains(i) {
            by.entry(op.clone()).or_default().push(*ms);
        }
    }
    by.into_iter()
        .filter_map(|(k, v)| Some((k, quantile(&v, 0.99)?)))
        .collect()
}
