//! Behaviours runc and containerd's runc shim have, through a real containerd driven with `ctr`
//! (and CRI): real-time signals through the husk shim's Kill, and the `husk` CLI as the
//! `BinaryName` of containerd's own runc shim (`io.containerd.runc.v2`), a drop-in for runc.

use husk_e2e::bed::{husk_binary, TestBed, BUSYBOX};
use husk_e2e::cri::v1 as cri;
use husk_e2e::suite::Pod;
use std::time::{Duration, Instant};

const RT: &str = "io.containerd.husk.v2";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Polls `cat FILE` inside task `id` (through an exec) until it holds `want`.
fn wait_file(bed: &TestBed, id: &str, file: &str, want: &str) {
    let t = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let out = bed.ctr(&[
            "task",
            "exec",
            "--exec-id",
            &format!("cat{n}"),
            id,
            "cat",
            file,
        ]);
        let got = text(&out.stdout);
        if got == want {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{file} in {id}: {got:?}, want {want:?} ({})",
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// containerd sends any signal number in KillRequest (ctr's `--signal 36`, a CRI stop signal
/// such as SIGRTMIN+3): the husk shim refused every real-time signal as unknown. Delivered to
/// the init and to an exec'd process, each of which traps them.
#[test]
fn real_time_signals_reach_the_init_and_an_exec_through_the_shim() {
    let bed = TestBed::start();
    bed.import(BUSYBOX);
    let trap = |sigs: &[u32], tag: &str| {
        let mut s = String::new();
        for n in sigs {
            s.push_str(&format!("trap 'echo {tag}{n} >> /tmp/got' {n}; "));
        }
        s.push_str("echo ready > /tmp/ready-");
        s.push_str(tag);
        s.push_str("; while :; do sleep 0.05; done");
        s
    };
    let init = trap(&[36, 50, 64], "i");
    bed.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        RT,
        BUSYBOX,
        "rt",
        "sh",
        "-c",
        &init,
    ]);
    wait_file(&bed, "rt", "/tmp/ready-i", "ready\n");
    for n in ["36", "50", "64"] {
        bed.ctr_ok(&["task", "kill", "--signal", n, "rt"]);
    }
    wait_file(&bed, "rt", "/tmp/got", "i36\ni50\ni64\n");
    let exec = trap(&[40], "e");
    let mut child = bed
        .ctr_cmd(&["task", "exec", "--exec-id", "e1", "rt", "sh", "-c", &exec])
        .spawn()
        .unwrap();
    wait_file(&bed, "rt", "/tmp/ready-e", "ready\n");
    bed.ctr_ok(&["task", "kill", "--exec-id", "e1", "--signal", "40", "rt"]);
    wait_file(&bed, "rt", "/tmp/got", "i36\ni50\ni64\ne40\n");
    bed.ctr_ok(&[
        "task",
        "kill",
        "--exec-id",
        "e1",
        "--signal",
        "SIGKILL",
        "rt",
    ]);
    let _ = child.wait();
    bed.ctr_ok(&["task", "kill", "--signal", "SIGKILL", "rt"]);
    let t = Instant::now();
    while !bed.ctr_ok(&["task", "ls"]).contains("STOPPED") && t.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    bed.ctr_ok(&["task", "delete", "rt"]);
    bed.ctr_ok(&["container", "rm", "rt"]);
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn wait_task(bed: &TestBed, id: &str, want: &str) {
    let t = Instant::now();
    loop {
        let ls = bed.ctr_ok(&["task", "ls"]);
        if ls
            .lines()
            .any(|l| l.split_whitespace().next() == Some(id) && l.contains(want))
        {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "task {id} never reached {want}: {ls}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// containerd's runc shim with husk's CLI as its runc (`BinaryName`; ctr's `--runc-binary`):
/// the shim calls `husk --root … --log …/log.json --log-format json` with create (pid file,
/// console socket), start, state, exec (--process --detach --pid-file), kill [--all], ps
/// --format json, pause, resume, update --resources -, delete [--force]; it reads the last
/// error of the JSON log for its messages and matches words of the errors (a kill of a stopped
/// container must say "container not running" to become "process already finished"). A whole
/// lifecycle must work as with runc, and a stopped container's `kill --all` (which the shim
/// sends after the init of a container without its own pid namespace exits) must succeed.
#[test]
fn husk_is_a_drop_in_runc_binary_for_containerds_runc_shim() {
    let husk = husk_binary();
    let bed = TestBed::start_with_runc_binaries(&[("husk-cli", &husk)]);
    bed.import(BUSYBOX);
    let h = husk.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut a = vec![
            "run",
            "--runtime",
            "io.containerd.runc.v2",
            "--runc-binary",
            h,
        ];
        a.extend_from_slice(args);
        bed.ctr(&a)
    };
    // No pid namespace of its own: when its init exits the shim kills what is left with
    // `kill --all` on the stopped container.
    let host_pid_ns = format!("pid:/proc/{}/ns/pid", std::process::id());
    let out = run(&[
        "--rm",
        "--with-ns",
        &host_pid_ns,
        BUSYBOX,
        "hostpid",
        "true",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let log = bed.log();
    assert!(
        !log.contains("failed to kill init's children"),
        "the shim's kill --all of the stopped container failed:\n{log}"
    );
    // Foreground: output and exit status.
    let out = run(&[
        "--rm",
        BUSYBOX,
        "fg",
        "sh",
        "-c",
        "echo hi; echo err >&2; exit 7",
    ]);
    assert_eq!(
        (
            code(&out),
            text(&out.stdout).as_str(),
            text(&out.stderr).as_str()
        ),
        (7, "hi\n", "err\n")
    );
    // A create that fails: the shim's message is husk's last JSON log error.
    let out = run(&["--rm", BUSYBOX, "bad", "no-such-command"]);
    assert_ne!(code(&out), 0);
    let err = text(&out.stderr);
    assert!(
        err.contains("OCI runtime create failed") && err.contains("executable file not found"),
        "{err}"
    );
    let _ = bed.ctr(&["container", "rm", "bad"]);
    // Detached: exec, ps, pause/resume, metrics, kill, a stopped container's kills.
    let out = run(&["-d", BUSYBOX, "d1", "sleep", "1000"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    wait_task(&bed, "d1", "RUNNING");
    let out = bed.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "d1",
        "sh",
        "-c",
        "echo in; exit 3",
    ]);
    assert_eq!(
        (code(&out), text(&out.stdout).as_str()),
        (3, "in\n"),
        "{}",
        text(&out.stderr)
    );
    let ps = bed.ctr_ok(&["task", "ps", "d1"]);
    assert_eq!(ps.lines().count(), 2, "{ps}");
    bed.ctr_ok(&["task", "pause", "d1"]);
    wait_task(&bed, "d1", "PAUSED");
    bed.ctr_ok(&["task", "resume", "d1"]);
    wait_task(&bed, "d1", "RUNNING");
    let metrics = bed.ctr_ok(&["task", "metrics", "d1"]);
    assert!(metrics.contains("memory"), "{metrics}");
    bed.ctr_ok(&["task", "kill", "-s", "SIGKILL", "d1"]);
    wait_task(&bed, "d1", "STOPPED");
    let out = bed.ctr(&["task", "kill", "-s", "SIGKILL", "d1"]);
    assert!(
        text(&out.stderr).contains("process already finished"),
        "kill of a stopped task: {}",
        text(&out.stderr)
    );
    let out = bed.ctr(&["task", "kill", "--all", "-s", "SIGKILL", "d1"]);
    assert_eq!(
        code(&out),
        0,
        "kill --all of a stopped task: {}",
        text(&out.stderr)
    );
    let out = bed.ctr(&["task", "delete", "d1"]);
    assert!(text(&out.stderr).contains("137"), "{}", text(&out.stderr));
    bed.ctr_ok(&["container", "rm", "d1"]);
    // Through CRI, on a handler configured with BinaryName and on runc: a pod, a container,
    // ExecSync, UpdateContainerResources (`update --resources -`), stats, a stop.
    let mut c = bed.cri(&[BUSYBOX]);
    let mut seen = vec![];
    for handler in ["runc", "husk-cli"] {
        let pod = Pod::run(&bed, &mut c, handler, "binname", |_| {});
        let id = pod.start(&mut c, "sleeper", BUSYBOX, &["sleep", "1000"], |_| {});
        let exec = c
            .exec_sync(&id, &["sh", "-c", "echo cri; exit 4"], 10)
            .unwrap_or_else(|e| panic!("{handler}: ExecSync: {}", e.message()));
        let req = cri::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                cpu_shares: 512,
                ..Default::default()
            }),
            ..Default::default()
        };
        c.call(|mut r| async move { r.update_container_resources(req).await })
            .unwrap_or_else(|e| panic!("{handler}: UpdateContainerResources: {}", e.message()));
        let limits = c
            .exec_sync(
                &id,
                &[
                    "cat",
                    "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                    "/sys/fs/cgroup/cpu/cpu.shares",
                ],
                10,
            )
            .unwrap_or_else(|e| panic!("{handler}: ExecSync: {}", e.message()));
        let req = cri::ContainerStatsRequest {
            container_id: id.clone(),
        };
        let stats = c
            .call(|mut r| async move { r.container_stats(req).await })
            .unwrap_or_else(|e| panic!("{handler}: ContainerStats: {}", e.message()))
            .stats
            .expect("stats");
        c.stop_container(&id, 1);
        let st = c.container_status(&id);
        c.remove_container(&id);
        pod.remove(&mut c);
        seen.push((
            exec.exit_code,
            text(&exec.stdout),
            text(&limits.stdout),
            stats.memory.and_then(|m| m.working_set_bytes).is_some(),
            st.exit_code,
            st.reason,
        ));
    }
    assert_eq!(
        seen[0], seen[1],
        "runc (left) and husk as BinaryName (right)"
    );
    assert_eq!((seen[1].0, seen[1].2.as_str()), (4, "67108864\n512\n"));
    let log = bed.log();
    for bad in [
        "failed to kill init's children",
        "OCI runtime killall failed",
    ] {
        assert!(!log.contains(bad), "containerd's log has {bad:?}:\n{log}");
    }
}
