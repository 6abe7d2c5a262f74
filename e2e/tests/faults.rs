//! Fault injection (issue 14 §2): what must still hold when a shim is SIGKILLed, containerd
//! restarts in the middle of calls, the log destination fills up, a container storms forks at
//! its pids limit, or a container is wedged in a frozen cgroup. Every scenario runs on `runc`
//! (the reference) and `husk` in one test bed, through CRI as kubelet drives it (the
//! parallel-exec restart through `ctr`, whose exec ids the test chooses).
//!
//! Nothing here may hang or outlive its test: every CRI call and every `ctr` command is
//! bounded (`CALL_LIMIT`), every wait is bounded and panics saying what never happened, and
//! each fault is undone by a guard's `Drop` (a frozen cgroup thawed, a tmpfs unmounted,
//! client processes killed) so a failing test leaves its test bed removable.

use husk_e2e::bed::{TestBed, BUSYBOX, CRI_NS, FORKSTORM};
use husk_e2e::cri::{v1 as cri, Cri};
use husk_e2e::suite::{log_text, on_both, pod_security, security, Pod};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The bound on every CRI call and `ctr` command of these tests: a wedged runtime fails the
/// test with `DeadlineExceeded` instead of hanging it.
const CALL_LIMIT: Duration = Duration::from_secs(60);

/// A CRI client whose every call is bounded by `CALL_LIMIT`.
fn cri(socket: &Path) -> Cri {
    let mut c = Cri::connect(socket);
    c.set_deadline(Some(CALL_LIMIT));
    c
}

/// `ctr` with `args`, bounded by `CALL_LIMIT`; its stdout (panics when it fails).
fn ctr_ok(bed: &TestBed, args: &[&str]) -> String {
    bed.ctr_ok(&[&["--timeout", "60s"], args].concat())
}

/// Processes (ctr clients, `ctr events`) killed and reaped when the test ends, passed or not.
struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The shim binary serving CRI handler `handler` in the test bed.
fn shim_name(handler: &str) -> &'static str {
    if handler.starts_with("husk") {
        "containerd-shim-husk-v2"
    } else {
        "containerd-shim-runc-v2"
    }
}

/// The pid of the shim serving pod `pod` (its `-id` is the sandbox's id, one shim per pod).
fn shim_of(bed: &TestBed, handler: &str, pod: &str) -> i32 {
    let pids: Vec<i32> = bed
        .shim_pids_named(shim_name(handler))
        .into_iter()
        .filter(|p| cmdline(*p).contains(pod))
        .collect();
    assert_eq!(pids.len(), 1, "one {handler} shim for pod {pod}: {pids:?}");
    pids[0]
}

fn cmdline(pid: i32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
        .into_owned()
}

/// Whether `pid` is gone (or a zombie nobody reaped yet: it holds nothing but its pid).
fn dead(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
        .unwrap_or(true)
}

fn sigkill(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap_or_else(|e| panic!("kill -9 {pid}: {e}"));
    wait_for(Duration::from_secs(10), || dead(pid))
        .unwrap_or_else(|| panic!("pid {pid} survived SIGKILL"));
}

/// Polls `f` every 20 ms until it holds or `limit` passes; `Some(())` when it held.
fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> Option<()> {
    let t = Instant::now();
    loop {
        if f() {
            return Some(());
        }
        if t.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pids whose command line contains `needle`.
fn pids_running(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| cmdline(*p).contains(needle) && !dead(*p))
        .collect()
}

/// containerd crashes (SIGKILL: nothing is flushed or closed gracefully) and comes back.
fn crash_and_restart_containerd(bed: &mut TestBed) {
    let mut child = bed.containerd.take().expect("containerd runs");
    let _ = child.kill();
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(200));
    bed.start_containerd();
}

/// Every directory under `dir` (down to `depth` levels) whose name contains one of `ids`.
fn dirs_named(dir: &Path, ids: &[String], depth: u32, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        if ids.iter().any(|id| name.contains(id.as_str())) {
            out.push(e.path().display().to_string());
        } else if depth > 1 {
            dirs_named(&e.path(), ids, depth - 1, out);
        }
    }
}

/// What the pods and containers `ids` left behind once removed: processes (in their cgroups or
/// naming them: shims), mounts, cgroups in every hierarchy, husk's and runc's state, the task
/// bundles under containerd's state. Empty when everything was cleaned up. containerd's
/// clean-up after a dead shim (`shim delete`) may still be running when the pod is removed:
/// what is left is looked at until it is gone, for up to 30 s.
fn leftovers(bed: &TestBed, ids: &[String]) -> Vec<String> {
    let mut left = leftovers_now(bed, ids);
    let t = Instant::now();
    while !left.is_empty() && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
        left = leftovers_now(bed, ids);
    }
    left
}

fn leftovers_now(bed: &TestBed, ids: &[String]) -> Vec<String> {
    let ids: Vec<String> = ids.iter().filter(|i| !i.is_empty()).cloned().collect();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if dead(pid) {
            continue;
        }
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let cmd = cmdline(pid);
        if ids
            .iter()
            .any(|id| cg.contains(id.as_str()) || cmd.contains(id.as_str()))
        {
            out.push(format!("process {pid}: {}", cmd.replace('\0', " ")));
        }
    }
    for l in std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
    {
        if ids.iter().any(|id| l.contains(id.as_str())) {
            out.push(format!("mount {l}"));
        }
    }
    let mut dirs = Vec::new();
    dirs_named(Path::new("/sys/fs/cgroup"), &ids, 4, &mut dirs);
    for root in [
        PathBuf::from("/run/containerd/husk").join(CRI_NS),
        PathBuf::from("/run/containerd/runc").join(CRI_NS),
        bed.dir
            .path()
            .join("state/io.containerd.runtime.v2.task")
            .join(CRI_NS),
    ] {
        dirs_named(&root, &ids, 1, &mut dirs);
    }
    out.extend(dirs.into_iter().map(|d| format!("directory {d}")));
    out
}

/// kubelet's clean-up of a pod: its containers stopped and removed, then the pod. Like
/// kubelet's garbage collector, a failed RemovePodSandbox is tried again (up to 5 times, 2 s
/// apart): after the pod's shim was killed, containerd 2.x (2.1.9) at times answers the first
/// one with "failed to delete task: ttrpc: closed" (its task service still holds the dead
/// shim's connection), with husk's shim and with runc's alike.
fn remove_pod(c: &mut Cri, pod: &str) {
    for ctr in c.list_containers(pod) {
        c.stop_container(&ctr.id, 0);
        c.remove_container(&ctr.id);
    }
    c.stop_pod(pod);
    let mut tries = 0;
    loop {
        let req = cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.into(),
        };
        match c.call(|mut r| async move { r.remove_pod_sandbox(req).await }) {
            Ok(_) => return,
            Err(e) if tries < 4 => {
                let name = c
                    .pod_status(pod)
                    .metadata
                    .map(|m| m.name)
                    .unwrap_or_default();
                eprintln!(
                    "RemovePodSandbox of {name} ({pod}) failed, tried again as kubelet would: {e:?}"
                );
                tries += 1;
                std::thread::sleep(Duration::from_secs(2));
                c.stop_pod(pod);
            }
            Err(e) => panic!("RemovePodSandbox {pod}, 5 times: {e:?}"),
        }
    }
}

/// Whether the test bed runs containerd 2.x.
fn containerd2(bed: &TestBed) -> bool {
    bed.containerd_version()
        .trim_start_matches('v')
        .starts_with('2')
}

/// What a handler is held to leaving behind after its shim was killed. containerd 2.x's
/// clean-up after a dead runc shim (2.1.9 and runc 1.1 here) leaves the killed pod's container
/// behind: its runc state directory and its cgroups. That is printed for the record; husk (and
/// runc on 1.6) is held to leaving nothing.
fn excused_leftovers(bed: &TestBed, handler: &str, left: &[String]) -> Vec<String> {
    if handler == "runc" && containerd2(bed) {
        if !left.is_empty() {
            eprintln!("runc on containerd 2.x left after its shim was killed: {left:?}");
        }
        return vec![];
    }
    left.to_vec()
}

/// A pod named `name` runs again on `handler` after a fault: one container says `again` and
/// exits 0. (exit code, stdout).
fn recreate(bed: &TestBed, c: &mut Cri, handler: &str, name: &str) -> (i32, String) {
    let pod = Pod::run(bed, c, handler, name, |_| {});
    let id = pod.start(c, "again", BUSYBOX, &["echo", "again"], |_| {});
    let st = c.wait_exited(&id);
    let out = log_text(&pod.log("again"), "stdout");
    pod.remove(c);
    (st.exit_code, out)
}

/// What a killed-shim scenario saw.
#[derive(Debug, PartialEq)]
struct AfterShimKill {
    /// The call in flight (or the next one) failed instead of hanging.
    call_failed: bool,
    /// The container is reported exited (or never started) once its shim is gone.
    container_state: i32,
    leftovers: Vec<String>,
    recreated: (i32, String),
}

/// SIGKILLs the shim of `pod` at a point `at` reaches, then cleans up as kubelet does.
fn shim_killed(
    bed: &TestBed,
    c: &mut Cri,
    handler: &str,
    name: &str,
    cmd: &[&str],
    at: impl FnOnce(&mut Cri, &Pod, &str, i32) -> bool,
) -> AfterShimKill {
    let pod = Pod::run(bed, c, handler, name, |_| {});
    let cfg = Cri::container_config("main", BUSYBOX, cmd);
    let id = c
        .create_container(&pod.id, &cfg, &pod.config)
        .expect("CreateContainer");
    let shim = shim_of(bed, handler, &pod.id);
    let call_failed = at(c, &pod, &id, shim);
    assert!(dead(shim), "{handler}: the scenario did not kill the shim");
    // containerd notices the dead shim and reports the task exited (bounded: 30 s).
    let _ = wait_for(Duration::from_secs(30), || {
        let s = c.container_status(&id).state;
        s == cri::ContainerState::ContainerExited as i32
            || s == cri::ContainerState::ContainerCreated as i32
    });
    let container_state = c.container_status(&id).state;
    remove_pod(c, &pod.id);
    let leftovers = excused_leftovers(bed, handler, &leftovers(bed, &[pod.id.clone(), id]));
    AfterShimKill {
        call_failed,
        container_state,
        leftovers,
        recreated: recreate(bed, c, handler, name),
    }
}

#[test]
fn shim_killed_between_create_and_start() {
    on_both(&[BUSYBOX], |bed, c, handler| {
        c.set_deadline(Some(CALL_LIMIT));
        let seen = shim_killed(
            bed,
            c,
            handler,
            "kill-created",
            &["sleep", "1000"],
            |c, _pod, id, shim| {
                sigkill(shim);
                c.start_container(id).is_err()
            },
        );
        assert_eq!(
            seen,
            AfterShimKill {
                call_failed: true,
                container_state: seen.container_state,
                leftovers: vec![],
                recreated: (0, "again\n".into()),
            },
            "{handler}"
        );
        seen
    });
}

#[test]
fn shim_killed_during_exec() {
    on_both(&[BUSYBOX], |bed, c, handler| {
        c.set_deadline(Some(CALL_LIMIT));
        let socket = bed.socket();
        let seen = shim_killed(
            bed,
            c,
            handler,
            "kill-exec",
            &["sleep", "1000"],
            |c, _pod, id, shim| {
                c.start_container(id).expect("StartContainer");
                let id2 = id.to_string();
                let exec = std::thread::spawn(move || {
                    cri(&socket).exec_sync(&id2, &["sh", "-c", "echo started; exec sleep 60"], 30)
                });
                // The exec's process, in the container's cgroup.
                wait_for(Duration::from_secs(20), || {
                    pids_running("sleep\x0060").into_iter().any(|p| {
                        std::fs::read_to_string(format!("/proc/{p}/cgroup"))
                            .is_ok_and(|cg| cg.contains(id))
                    })
                })
                .expect("the exec never ran");
                sigkill(shim);
                exec.join().unwrap().is_err()
            },
        );
        assert_eq!(
            (&seen.call_failed, &seen.leftovers, &seen.recreated),
            (&true, &vec![], &(0, "again\n".to_string())),
            "{handler}"
        );
        assert_eq!(
            seen.container_state,
            cri::ContainerState::ContainerExited as i32,
            "{handler}"
        );
        seen
    });
}

#[test]
fn shim_killed_during_a_log_flood() {
    on_both(&[BUSYBOX], |bed, c, handler| {
        c.set_deadline(Some(CALL_LIMIT));
        let seen = shim_killed(
            bed,
            c,
            handler,
            "kill-flood",
            &[
                "yes",
                "a line of the flood that fills the CRI log as fast as it can",
            ],
            |c, pod, id, shim| {
                c.start_container(id).expect("StartContainer");
                let log = pod.log("main");
                wait_for(Duration::from_secs(60), || {
                    std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) > 4 << 20
                })
                .expect("the flood never reached 4 MiB of log");
                sigkill(shim);
                // The next call on the container fails or reports it exited: never hangs.
                true
            },
        );
        assert_eq!(
            (&seen.leftovers, &seen.recreated),
            (&vec![], &(0, "again\n".to_string())),
            "{handler}"
        );
        assert_eq!(
            seen.container_state,
            cri::ContainerState::ContainerExited as i32,
            "{handler}"
        );
        seen
    });
}

/// Numbers of the lines `<prefix><n>` of `text`, in order.
fn numbered(text: &str, prefix: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix)?.split(' ').next()?.parse().ok())
        .collect()
}

/// Creates `/tmp/<name>` inside the container whose host pid is `pid`.
fn touch_in(pid: i32, name: &str) {
    std::fs::write(format!("/proc/{pid}/root/tmp/{name}"), "")
        .unwrap_or_else(|e| panic!("/proc/{pid}/root/tmp/{name}: {e}"));
}

/// A CRI client once containerd's CRI serves again after a restart (it answers "server is not
/// initialized yet" while it recovers its pods).
fn cri_ready(socket: &Path) -> Cri {
    let mut c = cri(socket);
    wait_for(Duration::from_secs(60), || {
        let req = cri::ListPodSandboxRequest { filter: None };
        c.call(|mut r| async move { r.list_pod_sandbox(req).await })
            .is_ok()
    })
    .expect("CRI never served again after the restart");
    c
}

/// kubelet after a restart of containerd: the pods named `name` that are not ready are
/// stopped and removed; the ready one, else a new one, is returned.
fn reconcile_pod(bed: &TestBed, c: &mut Cri, handler: &str, name: &str) -> (Pod, Vec<String>) {
    let full = format!("{name}-{handler}");
    let mut ready = None;
    let mut seen = Vec::new();
    for p in c.list_pods(None) {
        if p.metadata.as_ref().map(|m| m.name.as_str()) != Some(full.as_str()) {
            continue;
        }
        seen.push(p.id.clone());
        if p.state == cri::PodSandboxState::SandboxReady as i32 && ready.is_none() {
            ready = Some(p.id.clone());
        } else {
            remove_pod(c, &p.id);
        }
    }
    let pod = match ready {
        Some(id) => {
            let logs = bed.dir.path().join(format!("logs-{full}"));
            Pod {
                id,
                config: bed.pod_config(&full, &logs),
                logs,
            }
        }
        None => Pod::run(bed, c, handler, name, |_| {}),
    };
    seen.push(pod.id.clone());
    (pod, seen)
}

#[derive(Debug, PartialEq)]
struct AfterRestart {
    /// The container started before the restarts: exit code, whether its numbered lines are
    /// all there in order, whether lines written after the restarts reached the log.
    survivor: (i32, bool, bool),
    /// The container whose StartContainer was cut: exit code and its output after the restart.
    interrupted: (i32, String),
    leftovers: Vec<String>,
}

#[test]
fn containerd_restart_during_run_pod_sandbox_and_start_container() {
    // on_both hands out the bed shared; restarting containerd needs it mutably.
    let handlers = husk_e2e::env::handlers();
    let mut bed = TestBed::start();
    let mut c = bed.cri(&[BUSYBOX]);
    c.set_deadline(Some(CALL_LIMIT));
    let mut results = Vec::new();
    for handler in &handlers {
        let seen = restart_scenario(&mut bed, &mut c, handler);
        eprintln!("{handler}: {seen:?}");
        results.push((handler.clone(), seen));
    }
    for (handler, seen) in &results {
        // containerd 1.6's runc shim started for a pod whose RunPodSandbox the crash cut is
        // never stopped: it, its bundle, state and a cgroup stay behind. That is printed
        // above for the record; husk is held to leaving nothing.
        let leftovers = if handler == "runc" {
            vec![]
        } else {
            seen.leftovers.clone()
        };
        assert_eq!(
            (&seen.survivor, &seen.interrupted, &leftovers),
            (
                &(5, true, true),
                &(4, "before\nafter\n".to_string()),
                &vec![]
            ),
            "{handler}"
        );
    }
}

fn restart_scenario(bed: &mut TestBed, c: &mut Cri, handler: &str) -> AfterRestart {
    let survivor = Pod::run(bed, c, handler, "survivor", |_| {});
    let tick = survivor.start(
        c,
        "tick",
        BUSYBOX,
        &[
            "sh",
            "-c",
            "i=0; while [ ! -e /tmp/stop ]; do echo tick$i; i=$((i+1)); usleep 20000; done; echo tick$i; exit 5",
        ],
        |_| {},
    );
    let tick_pid = c.container_pid(&tick);
    let tick_log = survivor.log("tick");
    wait_for(Duration::from_secs(20), || {
        numbered(&log_text(&tick_log, "stdout"), "tick").len() >= 10
    })
    .expect("no ticks");
    let socket = bed.socket();
    // 1. containerd dies once RunPodSandbox has started the new pod's shim.
    let shims_before = bed.shim_pids_named(shim_name(handler)).len();
    let run = {
        let (socket, cfg, handler) = (
            socket.clone(),
            bed.pod_config(
                &format!("cut-{handler}"),
                &bed.dir.path().join(format!("logs-cut-{handler}")),
            ),
            handler.to_string(),
        );
        std::thread::spawn(move || {
            let mut c = cri(&socket);
            let req = cri::RunPodSandboxRequest {
                config: Some(cfg),
                runtime_handler: handler,
            };
            c.call(|mut r| async move { r.run_pod_sandbox(req).await })
        })
    };
    wait_for(Duration::from_secs(30), || {
        bed.shim_pids_named(shim_name(handler)).len() > shims_before || run.is_finished()
    })
    .expect("RunPodSandbox never started a shim");
    crash_and_restart_containerd(bed);
    *c = cri_ready(&socket);
    let first = run.join().unwrap();
    eprintln!(
        "{handler}: RunPodSandbox cut by the restart: {:?}",
        first.as_ref().map_err(|e| e.message().to_string())
    );
    let (pod, mut ids) = reconcile_pod(bed, c, handler, "cut");
    // 2. containerd dies while StartContainer runs: the process has started, the reply is
    // not sent yet.
    let cfg = Cri::container_config(
        "work",
        BUSYBOX,
        &[
            "sh",
            "-c",
            "echo before; while [ ! -e /tmp/go ]; do usleep 20000; done; echo after; exit 4",
        ],
    );
    let work = c
        .create_container(&pod.id, &cfg, &pod.config)
        .expect("CreateContainer");
    ids.push(work.clone());
    let start = {
        let (socket, work) = (socket.clone(), work.clone());
        std::thread::spawn(move || cri(&socket).start_container(&work))
    };
    wait_for(Duration::from_secs(30), || {
        pids_running("/tmp/go").into_iter().any(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cgroup")).is_ok_and(|cg| cg.contains(&work))
        }) || start.is_finished()
    })
    .expect("StartContainer never started the process");
    crash_and_restart_containerd(bed);
    *c = cri_ready(&socket);
    let started = start.join().unwrap();
    eprintln!(
        "{handler}: StartContainer cut by the restart: {:?}",
        started.map_err(|e| e.message().to_string())
    );
    // What was written after the restarts reaches containerd: the survivor's ticks and the
    // interrupted container's last line, and both exit codes.
    let at_restart = numbered(&log_text(&tick_log, "stdout"), "tick").len();
    let work_pid = c.container_pid(&work);
    touch_in(work_pid, "go");
    let w = c.wait_exited(&work);
    let interrupted = (w.exit_code, log_text(&pod.log("work"), "stdout"));
    std::thread::sleep(Duration::from_millis(500));
    touch_in(tick_pid, "stop");
    let t = c.wait_exited(&tick);
    let ticks = numbered(&log_text(&tick_log, "stdout"), "tick");
    let contiguous = ticks.iter().enumerate().all(|(i, n)| *n == i as u64);
    if !contiguous {
        eprintln!("{handler}: ticks {ticks:?}");
    }
    let survivor_seen = (t.exit_code, contiguous, ticks.len() > at_restart + 5);
    ids.extend([survivor.id.clone(), tick.clone()]);
    remove_pod(c, &pod.id);
    remove_pod(c, &survivor.id);
    let mut left = leftovers(bed, &ids);
    // Every shim of this handler is gone with its pods (a shim started for a pod containerd
    // forgot would stay forever).
    left.extend(
        bed.shim_pids_named(shim_name(handler))
            .into_iter()
            .map(|p| format!("shim {p}: {}", cmdline(p).replace('\0', " "))),
    );
    AfterRestart {
        survivor: survivor_seen,
        interrupted,
        leftovers: left,
    }
}

/// `ctr events` lines of topic `/tasks/exit`: (container id, process id, exit status).
fn exit_events(text: &str) -> Vec<(String, String, u64)> {
    text.lines()
        .filter(|l| l.contains("/tasks/exit"))
        .filter_map(|l| {
            let json = &l[l.find('{')?..];
            let v: serde_json::Value = serde_json::from_str(json).ok()?;
            Some((
                v["container_id"].as_str()?.to_string(),
                v["id"].as_str()?.to_string(),
                v["exit_status"].as_u64().unwrap_or(0),
            ))
        })
        .collect()
}

const EXECS: usize = 50;

/// What containerd learnt of `EXECS` execs cut by its restart.
#[derive(Debug, PartialEq)]
struct ExecsAcrossRestart {
    /// The container still ran afterwards, and stopped when killed.
    running: bool,
    stopped: bool,
    /// (container, exec id, exit status) of every exec exit containerd published.
    exits: Vec<(String, String, u64)>,
}

/// containerd's restart in the middle of 50 parallel execs (through `ctr`, whose exec ids the
/// test chooses): running containers survive, and every exec's exit status reaches containerd.
/// runc's shim loses about half of them (containerd 1.6.20 and runc 1.1 here): its count is
/// printed for the record and husk is held to every one.
#[test]
fn containerd_restart_during_fifty_parallel_execs() {
    let mut bed = TestBed::start();
    bed.import(BUSYBOX);
    let runc = execs_across_restart(&mut bed, "io.containerd.runc.v2", "ex-runc");
    eprintln!(
        "runc: {} of {EXECS} exec exits reached containerd after its restart; running {}, stopped {}",
        runc.exits.len(),
        runc.running,
        runc.stopped
    );
    let rt = husk_e2e::env::ctr_runtime();
    let seen = execs_across_restart(&mut bed, &rt, "ex-husk");
    let want = ExecsAcrossRestart {
        running: true,
        stopped: true,
        exits: (0..EXECS)
            .map(|i| ("ex-husk".to_string(), format!("e{i}"), (i % 7) as u64))
            .collect(),
    };
    assert_eq!(seen, want, "{rt}");
}

fn execs_across_restart(bed: &mut TestBed, rt: &str, id: &str) -> ExecsAcrossRestart {
    let id = id.to_string();
    ctr_ok(
        bed,
        &["run", "-d", "--runtime", rt, BUSYBOX, &id, "sleep", "1000"],
    );
    let pid: i32 = ctr_ok(bed, &["task", "ls"])
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id.as_str()))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .expect("task pid");
    // Each exec waits for /tmp/go, which is created only once containerd is back: its
    // exit and its last line happen after the restart.
    let clients = Children(
        (0..EXECS)
            .map(|i| {
                bed.ctr_cmd(&[
                    "task",
                    "exec",
                    "--exec-id",
                    &format!("e{i}"),
                    &id,
                    "sh",
                    "-c",
                    &format!(
                        "while [ ! -e /tmp/go ]; do usleep 20000; done; echo x{i}; exit {}",
                        i % 7
                    ),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
            })
            .collect(),
    );
    // Every exec started: the shim knows its pid (`ctr task ps` names its exec id: containerd
    // 1.x prints `ExecID:e1`, 2.x `exec_id:"e1"`).
    wait_for(Duration::from_secs(60), || {
        ctr_ok(bed, &["task", "ps", &id])
            .lines()
            .filter(|l| l.contains("ExecID:e") || l.contains("exec_id:\"e"))
            .count()
            >= EXECS
    })
    .unwrap_or_else(|| panic!("{rt}: the {EXECS} execs never all ran"));
    crash_and_restart_containerd(bed);
    let mut events = Children(vec![bed
        .ctr_cmd(&["events"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()]);
    let out = events.0[0].stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    // The subscription is live once it sees an event of ours.
    let mut lines = Vec::new();
    let probe = bed.ctr(&[
        "--timeout",
        "60s",
        "task",
        "exec",
        "--exec-id",
        "probe",
        &id,
        "echo",
        "probe",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&probe.stdout),
        "probe\n",
        "{rt}: an exec after the restart: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let t = Instant::now();
    while !exit_events(&lines.join("\n"))
        .iter()
        .any(|(_, e, _)| e == "probe")
    {
        assert!(t.elapsed() < Duration::from_secs(30), "{rt}: no events");
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            lines.push(l);
        }
    }
    touch_in(pid, "go");
    let got = |lines: &[String]| {
        let mut g: Vec<_> = exit_events(&lines.join("\n"))
            .into_iter()
            .filter(|(c, e, _)| c == &id && e.starts_with('e'))
            .collect();
        g.sort_by_key(|(_, e, _)| e[1..].parse::<usize>().unwrap_or(0));
        g.dedup();
        g
    };
    let t = Instant::now();
    while got(&lines).len() < EXECS && t.elapsed() < Duration::from_secs(60) {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            lines.push(l);
        }
    }
    drop(events);
    drop(clients);
    let exits = got(&lines);
    // The container is untouched and still answers.
    let still = ctr_ok(bed, &["task", "ls"]);
    let running = still
        .lines()
        .any(|l| l.starts_with(&format!("{id} ")) && l.contains("RUNNING"));
    ctr_ok(bed, &["task", "kill", "-s", "SIGKILL", &id]);
    let stopped = wait_for(Duration::from_secs(20), || {
        ctr_ok(bed, &["task", "ls"])
            .lines()
            .any(|l| l.starts_with(&format!("{id} ")) && l.contains("STOPPED"))
    })
    .is_some();
    if stopped {
        ctr_ok(bed, &["task", "delete", &id]);
        ctr_ok(bed, &["container", "rm", &id]);
    }
    ExecsAcrossRestart {
        running,
        stopped,
        exits,
    }
}

/// What is left of a task whose shim containerd started and then died before sending it
/// Create, once the restarted containerd has had `ORPHAN_WAIT` to settle.
#[derive(Debug, PartialEq)]
struct ShimWithoutCreate {
    shim_running: bool,
    bundle_left: bool,
}

/// Held by the fork storm, which forks tens of thousands of processes and so reuses pids within
/// seconds, and by tests that must not see a pid they looked up change hands.
static PID_CHURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Longer than husk's grace after containerd's Connect (5 s), with room for a loaded machine.
const ORPHAN_WAIT: Duration = Duration::from_secs(30);

/// containerd dies after a task's shim `start` returned and before its Create (the window the
/// CI once hit in `containerd_restart_during_run_pod_sandbox_and_start_container`, reproduced
/// here every time: the test plays containerd's part up to `start`, on the container's metadata
/// `ctr container create` wrote). The restarted containerd loads the shim from the bundle and
/// asks it for a task it never had. containerd 1.6 then keeps that shim as a task for ever,
/// with its bundle (runc's shim: printed for the record); husk's shim ends itself, and
/// containerd's dead-shim cleanup removes the bundle. containerd 2.x ends either shim itself.
#[test]
fn containerd_restart_between_shim_start_and_create() {
    // Finds processes by pid: not while the storm wraps the pid space (pid_max 32768 here).
    let _calm = PID_CHURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut bed = TestBed::start();
    bed.import(BUSYBOX);
    let runtimes = [
        "io.containerd.runc.v2".to_string(),
        husk_e2e::env::ctr_runtime(),
    ];
    let mut shims = Vec::new();
    for rt in &runtimes {
        let id = format!("nocreate-{}", rt.split('.').nth(2).unwrap_or("x"));
        ctr_ok(
            &bed,
            &[
                "container",
                "create",
                "--runtime",
                rt,
                BUSYBOX,
                &id,
                "sleep",
                "1000",
            ],
        );
        let info: serde_json::Value =
            serde_json::from_str(&ctr_ok(&bed, &["container", "info", &id])).unwrap();
        let bundle = husk_e2e::shim_api::bundle_dir(&bed.dir.path().join("state"), &bed.ns, &id);
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(bundle.join("config.json"), info["Spec"].to_string()).unwrap();
        let binary = husk_e2e::env::shim_binary_name(rt);
        let path = if binary == "containerd-shim-husk-v2" {
            husk_e2e::bed::shim_binary()
        } else {
            PathBuf::from(&binary)
        };
        let socket = bed.socket().display().to_string();
        let out = std::process::Command::new(&path)
            .args(["-namespace", &bed.ns, "-address", &socket])
            .args(["-publish-binary", &bed.containerd_bin.display().to_string()])
            .args(["-id", &id, "start"])
            .env("TTRPC_ADDRESS", format!("{socket}.ttrpc"))
            .current_dir(&bundle)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{binary} start: {e}"));
        assert!(
            out.status.success(),
            "{binary} start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The server `start` spawned (bounded: a loaded machine may be slow to show it).
        let mut found = None;
        let _ = wait_for(Duration::from_secs(10), || {
            found = bed
                .shim_pids_named(&binary)
                .into_iter()
                .find(|p| cmdline(*p).contains(&id));
            found.is_some()
        });
        let Some(pid) = found else {
            let what = format!(
                "{binary} start left no shim serving {id}: it printed {:?}; processes naming {id}: {:?}",
                String::from_utf8_lossy(&out.stdout),
                pids_running(&id)
                    .into_iter()
                    .map(|p| cmdline(p).replace('\0', " "))
                    .collect::<Vec<_>>()
            );
            // runc's shim is only the record here (its outcome is printed, never asserted), and
            // once in a CI run its server was gone within 10 s of `start`, for a reason its
            // discarded log would hold: the reference's miss is reported, husk's fails the test.
            assert_eq!(rt, "io.containerd.runc.v2", "{what}");
            eprintln!("reference not recorded: {what}");
            let _ = bed.ctr(&["container", "rm", &id]);
            continue;
        };
        shims.push((rt.clone(), id, pid, bundle));
    }
    crash_and_restart_containerd(&mut bed);
    let t = Instant::now();
    let seen = |shims: &[(String, String, i32, PathBuf)]| {
        shims
            .iter()
            .map(|(rt, _, pid, bundle)| {
                let s = ShimWithoutCreate {
                    shim_running: !dead(*pid),
                    bundle_left: bundle.exists(),
                };
                (rt.clone(), s)
            })
            .collect::<Vec<_>>()
    };
    let clean = || ShimWithoutCreate {
        shim_running: false,
        bundle_left: false,
    };
    while t.elapsed() < ORPHAN_WAIT
        && seen(&shims)
            .iter()
            .any(|(rt, s)| rt != "io.containerd.runc.v2" && *s != clean())
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let seen = seen(&shims);
    for (rt, id, pid, _) in &shims {
        if !dead(*pid) {
            sigkill(*pid);
        }
        let _ = bed.ctr(&["--timeout", "60s", "task", "delete", "--force", id]);
        ctr_ok(&bed, &["container", "rm", id]);
        eprintln!("{rt}: {:?}", seen.iter().find(|(r, _)| r == rt));
    }
    for (rt, s) in &seen {
        if rt != "io.containerd.runc.v2" {
            assert_eq!(*s, clean(), "{rt} after {:?}", t.elapsed());
        }
    }
}

/// A tmpfs mounted at a directory, unmounted (lazily: a container may still hold its log
/// open) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// A tmpfs of `size` (mount(8)'s `size=`) at `dir`.
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "husk-faults"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn free_bytes(dir: &Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(dir).unwrap();
    s.blocks_available() * s.fragment_size()
}

#[derive(Debug, PartialEq)]
struct AfterFullLog {
    /// The container kept running (its counter moved) while nothing could be logged.
    not_blocked: bool,
    shim_alive: bool,
    error_logged: bool,
    /// Lines written once space returned are in the log.
    resumed: bool,
    exit_code: i32,
}

#[test]
fn full_log_destination() {
    on_both(&[BUSYBOX], |bed, c, handler| {
        c.set_deadline(Some(CALL_LIMIT));
        let name = format!("logfull-{handler}");
        let logs = bed.dir.path().join(&name);
        let _tmpfs = Tmpfs::mount(&logs, "2m");
        // Fill all but ~64 KiB, so the pod's log fills it within a second or two.
        let filler = logs.join("filler");
        let room = free_bytes(&logs);
        std::fs::write(&filler, vec![b'f'; (room - (64 << 10)) as usize]).unwrap();
        let config = bed.pod_config(&name, &logs);
        let pod = Pod {
            id: c.run_pod(&config, handler),
            config,
            logs: logs.clone(),
        };
        // Long lines: a stalled copy would fill the 64 KiB pipe within ~30 of them.
        let pad = "p".repeat(2000);
        let id = pod.start(
            c,
            "main",
            BUSYBOX,
            &[
                "sh",
                "-c",
                &format!(
                    "i=0; while [ ! -e /tmp/stop ]; do echo line$i {pad}; echo $i > /tmp/n; i=$((i+1)); usleep 1000; done; exit 6"
                ),
            ],
            |_| {},
        );
        let pid = c.container_pid(&id);
        let shim = shim_of(bed, handler, &pod.id);
        wait_for(Duration::from_secs(60), || free_bytes(&logs) < 4096)
            .unwrap_or_else(|| panic!("{handler}: the log never filled the tmpfs"));
        // The shell truncates the file before it writes the number: read until a number is there.
        let counter = || {
            (0..500)
                .find_map(|_| {
                    let n = std::fs::read_to_string(format!("/proc/{pid}/root/tmp/n"))
                        .ok()
                        .and_then(|s| s.trim().parse::<u64>().ok());
                    if n.is_none() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    n
                })
                .expect("the container's counter")
        };
        let n1 = counter();
        std::thread::sleep(Duration::from_secs(3));
        let n2 = counter();
        let not_blocked = n2 > n1 + 50;
        eprintln!("{handler}: counter {n1} -> {n2} while the log was full");
        let shim_alive = !dead(shim);
        let log_file = pod.log("main").display().to_string();
        let error_logged = bed
            .log()
            .lines()
            .any(|l| l.contains(&log_file) && l.contains("no space left on device"));
        std::fs::remove_file(&filler).unwrap();
        let resumed = wait_for(Duration::from_secs(30), || {
            numbered(&log_text(&pod.log("main"), "stdout"), "line")
                .last()
                .is_some_and(|n| *n > n2)
        })
        .is_some();
        touch_in(pid, "stop");
        let exit_code = c.wait_exited(&id).exit_code;
        pod.remove(c);
        let seen = AfterFullLog {
            not_blocked,
            shim_alive,
            error_logged,
            resumed,
            exit_code,
        };
        assert_eq!(
            seen,
            AfterFullLog {
                not_blocked: true,
                shim_alive: true,
                error_logged: true,
                resumed: true,
                exit_code: 6,
            },
            "{handler}"
        );
        seen
    });
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    husk_e2e::probe::cpu_ticks(&pid.to_string())
        .unwrap_or_else(|| panic!("no CPU times in /proc/{pid}/stat"))
        .own
}

/// The pids cgroup (v1) or unified cgroup (v2) directory of `pid`.
fn pids_cgroup(pid: i32) -> PathBuf {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for l in cg.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctrl, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        if ctrl.split(',').any(|c| c == "pids") {
            return PathBuf::from("/sys/fs/cgroup/pids").join(path.trim_start_matches('/'));
        }
        if ctrl.is_empty() && husk_e2e::env::cgroup_v2() {
            return PathBuf::from("/sys/fs/cgroup").join(path.trim_start_matches('/'));
        }
    }
    panic!("no pids cgroup for {pid}: {cg}");
}

/// The children of process `pid` (every thread's).
fn shim_children(pid: i32) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

#[derive(Debug, PartialEq)]
struct AfterStorm {
    /// The storm's exit code, and whether it forked and met its pids limit.
    storm: (i32, bool, bool),
    /// Exec exit codes (each exec exits with its own code) while the storm ran.
    exec_codes_right: bool,
    /// A container of the pod started and exited meanwhile: its code.
    sibling_exit: i32,
    /// Zombie children of the shim once the storm is over (every orphan must be reaped).
    zombies_left: usize,
}

/// A container forks as fast as it can at a pids limit of 32 while the pod's other container
/// is exec'd back to back: every exit (the storm's, each exec's, a sibling's) is reported, no
/// zombie is left and the pod is removed. The shim's CPU time over the storm and how many of
/// the storm's orphans it had not reaped yet when sampled are printed, never asserted (speed
/// is the benchmarks' business). Seen on this host: husk's shim 0.2–0.45 s of CPU over a 6 s
/// storm (4–7% of a core), 0–5 unreaped zombies at the median; before its orphan reaper held
/// back only what started during a runtime call, 15–17 (it waited for a moment without any
/// exec in flight).
#[test]
fn fork_storm_at_the_pids_limit() {
    const STORM_SECS: &str = "6";
    let _churn = PID_CHURN.lock().unwrap_or_else(|e| e.into_inner());
    on_both(&[BUSYBOX, FORKSTORM], |bed, c, handler| {
        c.set_deadline(Some(CALL_LIMIT));
        // The host's pid namespace: the storm's orphans are reparented to the shim (the
        // nearest subreaper), which must reap every one of them.
        let host_pid = |ns: &mut Option<cri::NamespaceOption>| {
            *ns = Some(cri::NamespaceOption {
                pid: cri::NamespaceMode::Node as i32,
                ..Default::default()
            })
        };
        let pod = Pod::run(
            bed,
            c,
            handler,
            "storm",
            pod_security(|s| host_pid(&mut s.namespace_options)),
        );
        let storm = pod.start(
            c,
            "storm",
            FORKSTORM,
            &["forkstorm", STORM_SECS, "4", "3"],
            security(|s| host_pid(&mut s.namespace_options)),
        );
        let other = pod.start(
            c,
            "other",
            BUSYBOX,
            &["sleep", "1000"],
            security(|s| host_pid(&mut s.namespace_options)),
        );
        let pid = c.container_pid(&storm);
        std::fs::write(pids_cgroup(pid).join("pids.max"), "32").unwrap();
        let shim = shim_of(bed, handler, &pod.id);
        let (cpu0, t0) = (cpu_ticks(shim), Instant::now());
        touch_in(pid, "go");
        let mut exec_codes_right = true;
        let mut wrong_codes = Vec::new();
        // The most children the shim had at once: the storm's orphans are adopted by it.
        let mut adopted = 0;
        // How many of them were unreaped zombies, sampled between execs.
        let mut zombie_samples = Vec::new();
        let mut k = 0;
        while c.container_status(&storm).state != cri::ContainerState::ContainerExited as i32 {
            // A generous timeout: on a loaded 2-core machine an exec competes with the storm
            // for the CPU (runc's took 28 s once).
            let r = c
                .exec_sync(&other, &["sh", "-c", &format!("exit {}", k % 5)], 50)
                .expect("ExecSync during the storm");
            if r.exit_code != k % 5 {
                exec_codes_right = false;
                wrong_codes.push((
                    k % 5,
                    r.exit_code,
                    String::from_utf8_lossy(&r.stderr).into_owned(),
                ));
            }
            let kids = shim_children(shim);
            adopted = adopted.max(kids.len());
            zombie_samples.push(kids.into_iter().filter(|p| dead(*p)).count());
            k += 1;
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "{handler}: the storm never ended"
            );
        }
        let (cpu, wall) = (cpu_ticks(shim) - cpu0, t0.elapsed().as_secs_f64());
        // SAFETY: sysconf with a constant.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let share = cpu as f64 / hz / wall;
        let st = c.wait_exited(&storm);
        let out = log_text(&pod.log("storm"), "stdout");
        let nums: Vec<u64> = out
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        let err = log_text(&pod.log("storm"), "stderr");
        eprintln!(
            "{handler}: storm {out:?} {err:?} in {wall:.1} s ({:.0} forks/s), {k} execs meanwhile; shim CPU {:.2} s = {:.0}% of one core",
            nums.first().copied().unwrap_or(0) as f64 / wall,
            cpu as f64 / hz,
            share * 100.0
        );
        let sibling = pod.start(
            c,
            "sibling",
            BUSYBOX,
            &["sh", "-c", "exit 7"],
            security(|s| host_pid(&mut s.namespace_options)),
        );
        let sibling_exit = c.wait_exited(&sibling).exit_code;
        // Every orphan was reaped: no zombie child of the shim is left.
        std::thread::sleep(Duration::from_millis(200));
        let zombies = shim_children(shim).into_iter().filter(|p| dead(*p)).count();
        zombie_samples.sort();
        eprintln!(
            "{handler}: the shim had up to {adopted} children during the storm; zombies among them: {zombie_samples:?}"
        );
        // Reported, not asserted (a figure of speed, not of correctness): how many of the
        // storm's orphans the shim had not reaped yet when sampled. They count against the
        // container's pids limit until reaped.
        let median_zombies = zombie_samples
            .get(zombie_samples.len() / 2)
            .copied()
            .unwrap_or(0);
        eprintln!("{handler}: median zombies held during the storm: {median_zombies}");
        if !wrong_codes.is_empty() {
            eprintln!("{handler}: execs that exited with another code (wanted, got, stderr): {wrong_codes:?}");
        }
        pod.remove(c);
        let seen = AfterStorm {
            storm: (
                st.exit_code,
                nums.first().is_some_and(|n| *n > 1000),
                nums.get(1).is_some_and(|n| *n > 0),
            ),
            exec_codes_right,
            sibling_exit,
            zombies_left: zombies,
        };
        assert_eq!(
            seen,
            AfterStorm {
                storm: (3, true, true),
                exec_codes_right: true,
                sibling_exit: 7,
                zombies_left: 0,
            },
            "{handler}"
        );
        seen
    });
}

/// The v1 freezer cgroup directory of `pid`.
fn freezer_cgroup(pid: i32) -> PathBuf {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    cg.lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, path) = (f.next(), f.next()?, f.next()?);
            ctrl.split(',')
                .any(|c| c == "freezer")
                .then(|| PathBuf::from("/sys/fs/cgroup/freezer").join(path.trim_start_matches('/')))
        })
        .unwrap_or_else(|| {
            panic!("this test needs the cgroup v1 freezer (a frozen v1 task ignores SIGKILL until thawed; v2 kills frozen tasks): {cg}")
        })
}

fn procs_of(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// A container's processes moved into a frozen v1 freezer cgroup below its own: back into
/// their cgroup (thawed, so pending signals land) and the frozen cgroup removed when dropped,
/// whether the test passed or not.
struct Frozen {
    /// The container's own freezer cgroup, and the frozen one below it.
    cgroup: PathBuf,
    ice: PathBuf,
}

impl Frozen {
    /// Freezes every process of the container whose freezer cgroup is `cgroup`.
    fn below(cgroup: PathBuf) -> Frozen {
        let ice = cgroup.join("husk-faults-wedge");
        std::fs::create_dir(&ice).unwrap();
        let f = Frozen { cgroup, ice };
        for p in procs_of(&f.cgroup) {
            std::fs::write(f.ice.join("cgroup.procs"), &p).unwrap();
        }
        std::fs::write(f.ice.join("freezer.state"), "FROZEN").unwrap();
        wait_for(Duration::from_secs(10), || {
            std::fs::read_to_string(f.ice.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN")
        })
        .expect("freezer never reached FROZEN");
        f
    }

    fn thaw(&self) {
        for p in procs_of(&self.ice) {
            let _ = std::fs::write(self.cgroup.join("cgroup.procs"), &p);
        }
        let _ = std::fs::write(self.ice.join("freezer.state"), "THAWED");
        let _ = std::fs::remove_dir(&self.ice);
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.thaw();
    }
}

#[derive(Debug, PartialEq)]
struct AfterWedge {
    /// StopContainer and RemoveContainer of the wedged container failed within their deadline.
    stop_timed_out: bool,
    remove_timed_out: bool,
    /// The shim answers a SIGKILL of the wedged task at once (the signal stays pending), and
    /// refuses its Delete at once with a clear error (its process still runs).
    shim_kill_answered: bool,
    shim_delete_refused: bool,
    /// Meanwhile the pod's other containers answered: an exec, stats, a new container's exit
    /// code, a stop.
    others: (String, bool, i32, bool),
    /// Once thawed, the signals the stop sent land: it was killed by one (SIGTERM lands first
    /// on this kernel, with runc too).
    wedged_killed: bool,
    leftovers: Vec<String>,
}

#[test]
fn wedged_container_does_not_block_the_pod() {
    on_both(&[BUSYBOX], |bed, c, handler| {
        c.set_deadline(Some(CALL_LIMIT));
        let pod = Pod::run(bed, c, handler, "wedge", |_| {});
        let wedged = pod.start(c, "wedged", BUSYBOX, &["sleep", "1000"], |_| {});
        let healthy = pod.start(c, "healthy", BUSYBOX, &["sleep", "1000"], |_| {});
        let pid = c.container_pid(&wedged);
        // Frozen below the container's cgroup: the runtime sees its own cgroup thawed and
        // cannot thaw what it does not know (as with a task stuck in the kernel).
        let frozen = Frozen::below(freezer_cgroup(pid));
        let limit = Duration::from_secs(8);
        let stop = {
            let (socket, id) = (bed.socket(), wedged.clone());
            std::thread::spawn(move || {
                let req = cri::StopContainerRequest {
                    container_id: id,
                    timeout: 1,
                };
                cri(&socket).call_within(limit, |mut r| async move { r.stop_container(req).await })
            })
        };
        std::thread::sleep(Duration::from_secs(2));
        // While the stop waits on the wedged container, the rest of its shim answers.
        let bound = Duration::from_secs(20);
        let req = cri::ExecSyncRequest {
            container_id: healthy.clone(),
            cmd: vec!["echo".into(), "alive".into()],
            timeout: 10,
        };
        let exec = c
            .call_within(bound, |mut r| async move { r.exec_sync(req).await })
            .map(|r| String::from_utf8_lossy(&r.stdout).into_owned())
            .unwrap_or_else(|e| format!("exec failed: {}", e.message()));
        let req = cri::ContainerStatsRequest {
            container_id: healthy.clone(),
        };
        let stats = c
            .call_within(bound, |mut r| async move { r.container_stats(req).await })
            .map_err(|e| eprintln!("{handler}: ContainerStats of the healthy container: {e:?}"))
            .is_ok_and(|r| r.stats.is_some_and(|s| s.memory.is_some()));
        let mut cfg = Cri::container_config("late", BUSYBOX, &["sh", "-c", "exit 3"]);
        cfg.log_path = "late.log".into();
        let late = c
            .create_container(&pod.id, &cfg, &pod.config)
            .expect("CreateContainer");
        c.start_container(&late).expect("StartContainer");
        let late_exit = c.wait_exited(&late).exit_code;
        let req = cri::StopContainerRequest {
            container_id: healthy.clone(),
            timeout: 1,
        };
        let stopped = c
            .call_within(bound, |mut r| async move { r.stop_container(req).await })
            .is_ok();
        let stop = stop.join().unwrap();
        let stop_timed_out =
            stop.as_ref().err().map(|e| e.code()) == Some(tonic::Code::DeadlineExceeded);
        let req = cri::RemoveContainerRequest {
            container_id: wedged.clone(),
        };
        let remove = c.call_within(limit, |mut r| async move { r.remove_container(req).await });
        let remove_timed_out =
            remove.as_ref().err().map(|e| e.code()) == Some(tonic::Code::DeadlineExceeded);
        // The task API itself, through the pod's shim (the sandbox's task directory has its
        // address on every containerd; a container's has it on 1.x only).
        let shim = husk_e2e::shim_api::ShimClient::for_task(
            &bed.dir.path().join("state"),
            CRI_NS,
            &pod.id,
        );
        let t = Instant::now();
        let kill = shim.call::<_, containerd_shim_protos::api::Empty>(
            "Kill",
            &containerd_shim_protos::api::KillRequest {
                id: wedged.clone(),
                signal: 9,
                ..Default::default()
            },
        );
        let shim_kill_answered = kill.is_ok() && t.elapsed() < Duration::from_secs(5);
        let t = Instant::now();
        let del = shim.call::<_, containerd_shim_protos::api::DeleteResponse>(
            "Delete",
            &containerd_shim_protos::api::DeleteRequest {
                id: wedged.clone(),
                ..Default::default()
            },
        );
        let shim_delete_refused = del.is_err() && t.elapsed() < Duration::from_secs(5);
        eprintln!(
            "{handler}: stop {stop:?}; remove {remove:?}; shim kill {kill:?}; shim delete {del:?}"
        );
        // Thaw: back into its own (thawed) cgroup, where the pending signals land.
        drop(frozen);
        let wedged_exit = c.wait_exited(&wedged).exit_code;
        let wedged_killed = wedged_exit == 128 + 15 || wedged_exit == 128 + 9;
        let ids = [
            pod.id.clone(),
            wedged.clone(),
            healthy.clone(),
            late.clone(),
        ];
        remove_pod(c, &pod.id);
        let seen = AfterWedge {
            stop_timed_out,
            remove_timed_out,
            shim_kill_answered,
            shim_delete_refused,
            others: (exec, stats, late_exit, stopped),
            wedged_killed,
            leftovers: leftovers(bed, &ids),
        };
        assert_eq!(
            seen,
            AfterWedge {
                stop_timed_out: true,
                remove_timed_out: true,
                shim_kill_answered: true,
                shim_delete_refused: true,
                others: ("alive\n".into(), true, 3, true),
                wedged_killed: true,
                leftovers: vec![],
            },
            "{handler}"
        );
        seen
    });
}
