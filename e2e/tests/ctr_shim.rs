//! The shim through a real containerd, driven with `ctr`.

use husk_e2e::bed::{TestBed, BUSYBOX, SCRATCH};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The runtime under test: husk's shim unless `HUSK_E2E_RUNTIME` names another (the node
/// guest runs this suite on `io.containerd.runc.v2` too).
static RUNTIME: std::sync::LazyLock<String> = std::sync::LazyLock::new(husk_e2e::env::ctr_runtime);

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn wait_task_status(bed: &TestBed, id: &str, want: &str) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        let ls = bed.ctr_ok(&["task", "ls"]);
        if ls
            .lines()
            .any(|l| l.split_whitespace().next() == Some(id) && l.contains(want))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "task {id} never reached {want}: {}",
        bed.ctr_ok(&["task", "ls"])
    );
}

/// `ctr task delete` reports a non-zero exit status as "exit with non-zero exit code N".
fn deleted_exit_code(bed: &TestBed, id: &str) -> i32 {
    let out = bed.ctr(&["task", "delete", id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    err.rsplit("exit code ")
        .next()
        .and_then(|s| s.trim().trim_end_matches('"').parse().ok())
        .unwrap_or(0)
}

#[test]
fn run_prints_output_and_exit_code() {
    let bed = TestBed::start();
    bed.import(BUSYBOX);
    let out = bed.ctr(&[
        "run",
        "--rm",
        "--runtime",
        &RUNTIME,
        BUSYBOX,
        "t",
        "sh",
        "-c",
        "echo hi; exit 7",
    ]);
    assert_eq!(text(&out.stdout), "hi\n", "{}", text(&out.stderr));
    assert_eq!(code(&out), 7);
    for (cmd, want) in [("exit 0", 0), ("echo err >&2; exit 3", 3)] {
        let out = bed.ctr(&[
            "run",
            "--rm",
            "--runtime",
            &RUNTIME,
            BUSYBOX,
            "codes",
            "sh",
            "-c",
            cmd,
        ]);
        assert_eq!(code(&out), want, "{cmd}: {}", text(&out.stderr));
    }
}

#[test]
fn scratch_image_with_one_binary() {
    let bed = TestBed::start();
    bed.import(SCRATCH);
    let out = bed.ctr(&["run", "--rm", "--runtime", &RUNTIME, SCRATCH, "hello"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("Hello from husk"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn kill_gives_137_and_exec_sigterm_gives_143() {
    let bed = TestBed::start();
    bed.import(BUSYBOX);
    bed.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        &RUNTIME,
        BUSYBOX,
        "k",
        "sleep",
        "1000",
    ]);
    wait_task_status(&bed, "k", "RUNNING");
    let exec = bed
        .ctr_cmd(&["task", "exec", "--exec-id", "e1", "k", "sleep", "1000"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !bed
        .ctr_ok(&["task", "ps", "k"])
        .lines()
        .any(|l| l.contains("e1"))
        && t.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    bed.ctr_ok(&["task", "kill", "--exec-id", "e1", "-s", "SIGTERM", "k"]);
    assert_eq!(exec.wait_with_output().unwrap().status.code(), Some(143));
    bed.ctr_ok(&["task", "kill", "-s", "SIGKILL", "k"]);
    wait_task_status(&bed, "k", "STOPPED");
    assert_eq!(deleted_exit_code(&bed, "k"), 137);
    bed.ctr_ok(&["container", "rm", "k"]);
}

#[test]
fn exec_with_and_without_tty() {
    let bed = TestBed::start();
    bed.import(BUSYBOX);
    bed.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        &RUNTIME,
        BUSYBOX,
        "x",
        "sleep",
        "1000",
    ]);
    let out = bed.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "plain",
        "x",
        "sh",
        "-c",
        "echo out; echo err >&2; [ -t 0 ] && echo tty || echo notty; exit 5",
    ]);
    assert_eq!(code(&out), 5);
    assert_eq!(text(&out.stdout), "out\nnotty\n");
    assert_eq!(text(&out.stderr), "err\n");
    // ctr -t needs a terminal of its own: give it one with script(1).
    let cmd = format!(
        "{} --address {} --namespace {} task exec -t --exec-id tty x sh -c 'tty; exit 3'",
        bed.ctr_bin().display(),
        bed.socket().display(),
        bed.ns
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("/dev/pts/"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn pause_resume_kill_all_and_metrics() {
    let bed = TestBed::start();
    bed.import(BUSYBOX);
    bed.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        &RUNTIME,
        BUSYBOX,
        "p",
        "sh",
        "-c",
        "sleep 1000 & sleep 1000 & wait",
    ]);
    wait_task_status(&bed, "p", "RUNNING");
    bed.ctr_ok(&["task", "pause", "p"]);
    wait_task_status(&bed, "p", "PAUSED");
    bed.ctr_ok(&["task", "resume", "p"]);
    wait_task_status(&bed, "p", "RUNNING");
    let metrics = bed.ctr_ok(&["task", "metrics", "p"]);
    assert!(
        metrics.contains("memory.usage_in_bytes") || metrics.contains("memory.usage"),
        "{metrics}"
    );
    assert!(metrics.contains("pids.current"), "{metrics}");
    let t = Instant::now();
    while bed.ctr_ok(&["task", "ps", "p"]).lines().count() < 4
        && t.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    bed.ctr_ok(&["task", "kill", "--all", "-s", "SIGKILL", "p"]);
    wait_task_status(&bed, "p", "STOPPED");
}

/// The major version of the ctr the bed drives (`ctr --version`).
fn ctr_major(bed: &TestBed) -> u32 {
    let out = std::process::Command::new(bed.ctr_bin())
        .arg("--version")
        .output()
        .unwrap();
    let v = text(&out.stdout);
    v.split_whitespace()
        .last()
        .and_then(|v| v.trim_start_matches('v').split('.').next()?.parse().ok())
        .unwrap_or_else(|| panic!("ctr --version: {v}"))
}

/// Task metrics as `ctr task metrics --format json` decodes them: on cgroup v2
/// (`io.containerd.cgroups.v2.Metrics`) pids, cpu, memory with memory.stat's fields and the
/// peaks, memory_events, io, and — where this ctr's containerd/cgroups knows them (containerd
/// ≥ 2.0) — PSI for cpu, memory and io; on v1 the v1 message. The shim reads them from the
/// container's cgroup under load (a busy loop, a write to disk).
#[test]
fn task_metrics_carry_what_the_cgroup_version_has() {
    let bed = TestBed::start();
    bed.import(BUSYBOX);
    bed.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        &RUNTIME,
        BUSYBOX,
        "m",
        "sh",
        "-c",
        "dd if=/dev/zero of=/tmp/f bs=1M count=8 2>/dev/null; while :; do :; done",
    ]);
    wait_task_status(&bed, "m", "RUNNING");
    std::thread::sleep(Duration::from_millis(1500));
    let out = bed.ctr_ok(&["task", "metrics", "--format", "json", "m"]);
    let m: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let v2 = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    let num = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    if v2 {
        assert!(num(&m["pids"]["current"]) >= 1, "{out}");
        assert!(num(&m["cpu"]["usage_usec"]) > 0, "{out}");
        assert!(num(&m["cpu"]["user_usec"]) > 0, "{out}");
        assert!(num(&m["memory"]["usage"]) > 0, "{out}");
        assert!(
            num(&m["memory"]["anon"]) + num(&m["memory"]["file"]) > 0,
            "{out}"
        );
        assert!(num(&m["memory"]["usage_limit"]) > 0, "{out}");
        assert!(m["memory_events"].is_object(), "{out}");
        if ctr_major(&bed) >= 2 {
            for c in ["cpu", "memory", "io"] {
                assert!(m[c]["psi"]["some"].is_object(), "no {c} PSI: {out}");
            }
            assert!(num(&m["memory"]["max_usage"]) > 0, "no memory.peak: {out}");
        }
    } else {
        assert!(num(&m["pids"]["current"]) >= 1, "{out}");
        assert!(num(&m["memory"]["usage"]["usage"]) > 0, "{out}");
        assert!(num(&m["cpu"]["usage"]["total"]) > 0, "{out}");
    }
    bed.ctr_ok(&["task", "kill", "-s", "SIGKILL", "m"]);
    wait_task_status(&bed, "m", "STOPPED");
}

#[test]
fn oom_kill_is_reported_as_an_oom_event() {
    let bed = TestBed::start();
    bed.import(BUSYBOX);
    let mut events = bed
        .ctr_cmd(&["events"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = bed.ctr(&[
        "run",
        "--rm",
        "--runtime",
        &RUNTIME,
        "--memory-limit",
        "33554432",
        BUSYBOX,
        "oom",
        "sh",
        "-c",
        "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(
        code(&out),
        137,
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(300));
    let _ = events.kill();
    let ev = text(&events.wait_with_output().unwrap().stdout);
    let oom = ev
        .lines()
        .position(|l| l.contains("/tasks/oom"))
        .unwrap_or_else(|| panic!("no /tasks/oom event in:\n{ev}"));
    let exit = ev
        .lines()
        .position(|l| l.contains("/tasks/exit"))
        .expect("exit event");
    assert!(oom < exit, "OOM must be reported before the exit:\n{ev}");
}

#[test]
fn twenty_containers_in_parallel() {
    let bed = TestBed::start();
    bed.import(BUSYBOX);
    let kids: Vec<_> = (0..20)
        .map(|i| {
            (
                i,
                bed.ctr_cmd(&[
                    "run",
                    "--rm",
                    "--runtime",
                    &RUNTIME,
                    BUSYBOX,
                    &format!("par{i}"),
                    "sh",
                    "-c",
                    &format!("echo n{i}; exit {}", i % 5),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
            )
        })
        .collect();
    for (i, k) in kids {
        let out = k.wait_with_output().unwrap();
        assert_eq!(code(&out), i % 5, "par{i}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("n{i}\n"));
    }
}

#[test]
fn containerd_restart_keeps_containers_running_and_controllable() {
    let mut bed = TestBed::start();
    bed.import(BUSYBOX);
    bed.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        &RUNTIME,
        BUSYBOX,
        "r",
        "sh",
        "-c",
        "trap 'exit 9' TERM; while true; do sleep 0.1; done",
    ]);
    wait_task_status(&bed, "r", "RUNNING");
    let pid_before = bed.ctr_ok(&["task", "ls"]);
    bed.stop_containerd();
    std::thread::sleep(Duration::from_millis(300));
    bed.start_containerd();
    wait_task_status(&bed, "r", "RUNNING");
    assert_eq!(
        bed.ctr_ok(&["task", "ls"]),
        pid_before,
        "same task, same pid after the restart"
    );
    bed.ctr_ok(&["task", "kill", "-s", "SIGTERM", "r"]);
    wait_task_status(&bed, "r", "STOPPED");
    assert_eq!(deleted_exit_code(&bed, "r"), 9);
}

#[test]
fn killed_shim_is_cleaned_up_by_containerd() {
    let bed = TestBed::start();
    bed.import(BUSYBOX);
    bed.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        &RUNTIME,
        BUSYBOX,
        "s",
        "sleep",
        "1000",
    ]);
    wait_task_status(&bed, "s", "RUNNING");
    let task_pid: i32 = bed
        .ctr_ok(&["task", "ls"])
        .lines()
        .find(|l| l.starts_with("s "))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    let bundle = bed
        .dir
        .path()
        .join("state/io.containerd.runtime.v2.task")
        .join(&bed.ns)
        .join("s");
    let socket = std::fs::read_to_string(bundle.join("address"))
        .expect("the shim wrote its address into the bundle")
        .trim()
        .trim_start_matches("unix://")
        .to_string();
    assert!(std::path::Path::new(&socket).exists());
    let shims = bed.shim_pids();
    assert_eq!(shims.len(), 1, "one shim: {shims:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shims[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // containerd notices the dead shim, runs `shim delete`, which kills the container (each
    // `ctr` call takes seconds in the emulated node guest, hence the generous bound).
    let t = Instant::now();
    while std::path::Path::new(&format!("/proc/{task_pid}")).exists()
        && t.elapsed() < Duration::from_secs(60)
    {
        let _ = bed.ctr(&["task", "delete", "-f", "s"]);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !std::path::Path::new(&format!("/proc/{task_pid}/status")).exists()
            || std::fs::read_to_string(format!("/proc/{task_pid}/status"))
                .unwrap()
                .contains("State:\tZ"),
        "container process survived its shim"
    );
    let _ = bed.ctr(&["task", "delete", "-f", "s"]);
    assert!(
        !bed.ctr_ok(&["task", "ls"]).contains("s "),
        "{}",
        bed.ctr_ok(&["task", "ls"])
    );
    let cgroup = if husk_e2e::env::cgroup_v2() {
        format!("/sys/fs/cgroup/{}/s", bed.ns)
    } else {
        format!("/sys/fs/cgroup/memory/{}/s", bed.ns)
    };
    assert!(
        !std::path::Path::new(&cgroup).exists(),
        "cgroup {cgroup} left behind"
    );
    // husk's `shim delete` also removes the dead shim's socket; containerd's runc shim leaves
    // it (seen with containerd 1.7 in the node guest), so this holds husk only.
    if RUNTIME.as_str() == "io.containerd.husk.v2" {
        assert!(
            !std::path::Path::new(&socket).exists(),
            "the dead shim's socket was left behind"
        );
    }
}

#[test]
fn busybox_under_containerds_default_seccomp_profile_and_capabilities() {
    // `ctr run --seccomp` puts containerd's own default profile (the one CRI calls
    // RuntimeDefault) and containerd's default capability set into the spec.
    let bed = TestBed::start();
    bed.import(BUSYBOX);
    let script = "grep -E '^(CapEff|Seccomp):' /proc/self/status; ls /bin > /dev/null && echo ls-ok; \
                  unshare -m true 2>/dev/null || echo unshare-denied; mount -t tmpfs t /mnt 2>/dev/null || echo mount-denied; \
                  echo x > /tmp/f && cat /tmp/f";
    let out = bed.ctr(&[
        "run",
        "--rm",
        "--seccomp",
        "--runtime",
        &RUNTIME,
        BUSYBOX,
        "sec",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    // containerd's defaults: CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID
    // SETFCAP SETPCAP NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE = 0xa80425fb; mode 2 = filter.
    assert_eq!(
        text(&out.stdout),
        "CapEff:\t00000000a80425fb\nSeccomp:\t2\nls-ok\nunshare-denied\nmount-denied\nx\n"
    );
}

#[test]
fn fifty_concurrent_execs_into_one_container() {
    let bed = TestBed::start();
    bed.import(BUSYBOX);
    bed.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        &RUNTIME,
        BUSYBOX,
        "ex",
        "sleep",
        "1000",
    ]);
    wait_task_status(&bed, "ex", "RUNNING");
    let kids: Vec<_> = (0..50)
        .map(|i| {
            (
                i,
                bed.ctr_cmd(&[
                    "task",
                    "exec",
                    "--exec-id",
                    &format!("e{i}"),
                    "ex",
                    "sh",
                    "-c",
                    &format!("echo x{i}; exit {}", i % 7),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
            )
        })
        .collect();
    for (i, k) in kids {
        let out = k.wait_with_output().unwrap();
        assert_eq!(code(&out), i % 7, "e{i}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("x{i}\n"));
    }
    // The container is still healthy and holds only its init.
    assert_eq!(bed.ctr_ok(&["task", "ps", "ex"]).lines().count(), 2);
}

#[test]
fn kill_of_an_exited_task_answers_as_runcs_shim() {
    // containerd's WithProcessKill (CRI's exit handler, `ctr task delete -f`) waits on a task
    // and sends it Kill with `all`; if that Kill fails with FailedPrecondition, containerd
    // drops its pending Wait and the shim's reply lands on an inactive ttrpc stream (the
    // test bed fails any test whose containerd logs that).
    let bed = TestBed::start();
    bed.import(BUSYBOX);
    let mut seen = Vec::new();
    for rt in [RUNTIME.as_str(), "io.containerd.runc.v2"] {
        let id = format!("done-{}", rt.split('.').nth(2).unwrap());
        bed.ctr_ok(&[
            "run",
            "-d",
            "--runtime",
            rt,
            BUSYBOX,
            &id,
            "sh",
            "-c",
            "exit 3",
        ]);
        wait_task_status(&bed, &id, "STOPPED");
        let all = bed.ctr(&["task", "kill", "--all", "-s", "SIGKILL", &id]);
        let one = bed.ctr(&["task", "kill", "-s", "SIGKILL", &id]);
        let del = bed.ctr(&["task", "delete", "--force", &id]);
        seen.push((
            rt,
            code(&all),
            code(&one),
            text(&one.stderr).contains("already finished"),
            code(&del),
        ));
        bed.ctr_ok(&["container", "rm", &id]);
    }
    // runc: kill --all of an exited task succeeds; a plain kill is NotFound ("already finished").
    assert_eq!(
        seen[1],
        ("io.containerd.runc.v2", 0, 1, true, 0),
        "{seen:?}"
    );
    assert_eq!(
        (seen[0].1, seen[0].2, seen[0].3, seen[0].4),
        (seen[1].1, seen[1].2, seen[1].3, seen[1].4),
        "husk answers as runc's shim: {seen:?}"
    );
}

#[test]
fn stdin_written_before_it_is_closed_reaches_the_process() {
    // ctr copies its stdin into the task's stdin FIFO, closes the FIFO at end-of-file and
    // then sends CloseIO: every byte written before CloseIO must reach the process (runc's
    // shim closes only its own write handle and copies to end-of-file). husk used to drop its
    // copy at once, losing what was still in the FIFO (about 1 exec in 20 lost its last line),
    // and ignored a CloseIO that came while Start was still running (`cat` never ended).
    const EXECS: usize = 60;
    let bed = TestBed::start();
    bed.import(BUSYBOX);
    bed.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        &RUNTIME,
        BUSYBOX,
        "in",
        "sleep",
        "1000",
    ]);
    wait_task_status(&bed, "in", "RUNNING");
    for i in 0..EXECS {
        let mut child = bed
            .ctr_cmd(&[
                "--timeout",
                "20s",
                "task",
                "exec",
                "--exec-id",
                &format!("in{i}"),
                "in",
                "cat",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        use std::io::Write;
        stdin.write_all(b"hello\n").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        stdin.write_all(b"hello\n").unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(
            code(&out) == 0 && text(&out.stdout) == "hello\nhello\n",
            "exec {i} of {EXECS} lost stdin: exit {}, stdout {:?}, stderr {:?}",
            code(&out),
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

/// The fds `ls -l /proc/self/fd` lists, apart from the one ls opened to read that directory.
fn inherited_fds(ls: &str) -> Vec<String> {
    ls.lines()
        .filter_map(|l| l.split_once(" -> "))
        .filter(|(_, target)| !(target.starts_with("/proc/") && target.ends_with("/fd")))
        .map(|(left, target)| {
            format!(
                "{} -> {target}",
                left.split_whitespace().last().unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn cve_2024_21626_through_the_shim() {
    // No fd of the shim or of husk's helper reaches a container process (run and exec), and
    // a working directory through /proc/self/fd/N is refused with a clear error, never
    // entered (runc's GHSA-xr7r-f8xq-vfvv; runtime/tests/advisories.rs has the CLI side).
    let bed = TestBed::start();
    bed.import(BUSYBOX);
    let out = bed.ctr(&[
        "run",
        "--rm",
        "--runtime",
        &RUNTIME,
        BUSYBOX,
        "fds",
        "ls",
        "-l",
        "/proc/self/fd/",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let fds = inherited_fds(&text(&out.stdout));
    assert_eq!(fds.len(), 3, "run: {fds:?}");
    assert!(
        fds.iter().all(|f| f.starts_with(['0', '1', '2'])),
        "run: {fds:?}"
    );
    bed.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        &RUNTIME,
        BUSYBOX,
        "cwd",
        "sleep",
        "1000",
    ]);
    wait_task_status(&bed, "cwd", "RUNNING");
    let out = bed.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "fds",
        "cwd",
        "ls",
        "-l",
        "/proc/self/fd/",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let fds = inherited_fds(&text(&out.stdout));
    assert_eq!(fds.len(), 3, "exec: {fds:?}");
    assert!(
        fds.iter().all(|f| f.starts_with(['0', '1', '2'])),
        "exec: {fds:?}"
    );
    for n in 3..=10 {
        let cwd = format!("/proc/self/fd/{n}");
        let out = bed.ctr(&[
            "task",
            "exec",
            "--exec-id",
            &format!("cwd{n}"),
            "--cwd",
            &cwd,
            "cwd",
            "pwd",
        ]);
        assert_ne!(
            code(&out),
            0,
            "exec --cwd {cwd} ran in {}",
            text(&out.stdout)
        );
        // husk names the field; runc (the node guest's reference cell) fails its chdir.
        assert!(
            RUNTIME.as_str() != "io.containerd.husk.v2"
                || text(&out.stderr).contains("process.cwd"),
            "exec --cwd {cwd}: {}",
            text(&out.stderr)
        );
        let name = format!("cwd-run{n}");
        let out = bed.ctr(&[
            "run",
            "--rm",
            "--runtime",
            &RUNTIME,
            "--cwd",
            &cwd,
            BUSYBOX,
            &name,
            "pwd",
        ]);
        assert_ne!(
            code(&out),
            0,
            "run --cwd {cwd} ran in {}",
            text(&out.stdout)
        );
        // husk names the field; runc (the node guest's reference cell) fails its chdir.
        assert!(
            RUNTIME.as_str() != "io.containerd.husk.v2"
                || text(&out.stderr).contains("process.cwd"),
            "run --cwd {cwd}: {}",
            text(&out.stderr)
        );
        let _ = bed.ctr(&["container", "rm", &name]);
    }
    bed.ctr_ok(&["task", "kill", "-s", "SIGKILL", "cwd"]);
}
