//! Root integration tests of the core through the `husk` CLI, with real rootfs trees.

mod common;
use common::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

#[test]
fn scratch_image_with_one_static_binary_prints_its_greeting() {
    let h = Husk::new();
    let b = Bundle::scratch_hello();
    // A scratch image has nothing: no /proc, /dev or /sys directories until husk makes them.
    assert_eq!(std::fs::read_dir(b.rootfs()).unwrap().count(), 1);
    let (code, out, err) = h.run_bundle(&b);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(
        out,
        "Hello from husk: this container is one static binary, no OS inside - just your kernel.\n"
    );
}

#[test]
fn exit_codes_and_separate_stdout_stderr() {
    let h = Husk::new();
    let (code, out, err) = h.run_bundle(&Bundle::sh("echo to-out; echo to-err >&2; exit 3"));
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (3, "to-out\n", "to-err\n")
    );
    let (code, _, err) = h.run_bundle(&Bundle::sh("true"));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn sigkill_gives_137() {
    let h = Husk::new();
    let b = Bundle::sh("echo started; exec sleep 60");
    b.write();
    h.track(&b.id);
    let child = h
        .cmd(&["run", "--bundle", b.path().to_str().unwrap(), &b.id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    h.wait_status(&b.id, "running");
    h.ok(&["kill", &b.id, "KILL"]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "started\n");
}

#[test]
fn sigterm_gives_143_for_a_process_without_a_handler() {
    let h = Husk::new();
    // Without its own pid namespace the process is not a namespace init, so SIGTERM's default
    // action applies (an init ignores signals it has no handler for).
    let mut b = Bundle::sh("exec sleep 60");
    b.config["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "ipc"}, {"type": "uts"}]);
    b.write();
    h.track(&b.id);
    let child = h
        .cmd(&["run", "--bundle", b.path().to_str().unwrap(), &b.id])
        .spawn()
        .unwrap();
    h.wait_status(&b.id, "running");
    std::thread::sleep(Duration::from_millis(50));
    h.ok(&["kill", &b.id, "15"]);
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(143));
}

#[test]
fn hostname_user_groups_and_capabilities() {
    let h = Husk::new();
    let mut b =
        Bundle::sh("hostname; id; grep ^Cap /proc/self/status; grep NoNewPrivs /proc/self/status");
    b.config["hostname"] = json!("box1");
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 20]});
    let caps = json!(["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    b.config["process"]["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps, "ambient": caps, "inheritable": caps});
    let (code, out, err) = h.run_bundle(&b);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "box1");
    assert_eq!(lines[1], "uid=1000(user) gid=1000(user) groups=10,20");
    // CAP_CHOWN (0), CAP_KILL (5), CAP_NET_BIND_SERVICE (10): 0x421
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            lines.contains(&format!("{set}:\t0000000000000421").as_str()),
            "{set} wrong in:\n{out}"
        );
    }
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
}

#[test]
fn default_capabilities_of_the_default_spec() {
    let h = Husk::new();
    let (code, out, err) = h.run_bundle(&Bundle::sh(
        "grep -E '^Cap(Eff|Bnd|Prm|Amb)' /proc/self/status",
    ));
    assert_eq!(code, 0, "{err}");
    // CAP_KILL (5), CAP_NET_BIND_SERVICE (10), CAP_AUDIT_WRITE (29)
    assert_eq!(out, "CapPrm:\t0000000020000420\nCapEff:\t0000000020000420\nCapBnd:\t0000000020000420\nCapAmb:\t0000000000000000\n");
}

#[test]
fn ambient_capabilities_without_inheritable_are_left_out_like_runc() {
    // `runc spec` writes ambient capabilities but no inheritable set; the kernel cannot raise
    // those, and runc runs the container without them.
    let h = Husk::new();
    let mut b = Bundle::sh("grep -E '^Cap(Inh|Eff|Amb)' /proc/self/status");
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    b.config["process"]["capabilities"] =
        json!({"bounding": caps, "effective": caps, "permitted": caps, "ambient": caps});
    let (code, out, err) = h.run_bundle(&b);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "CapInh:\t0000000000000000\nCapEff:\t0000000020000420\nCapAmb:\t0000000000000000\n"
    );
}

#[test]
fn masked_and_readonly_paths() {
    let h = Husk::new();
    let mut b = Bundle::sh("wc -c < /proc/keys; ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/domainname && echo writable || echo readonly; touch /data/x 2>/dev/null && echo data-writable || echo data-readonly");
    b.config["linux"]["readonlyPaths"] = json!(["/proc/sys", "/data"]);
    std::fs::create_dir(b.rootfs().join("data")).unwrap();
    let (code, out, err) = h.run_bundle(&b);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "0\n0\nreadonly\ndata-readonly\n", "stderr: {err}");
}

#[test]
fn readonly_root_and_mount_options() {
    let h = Husk::new();
    let mut b = Bundle::sh("touch /x 2>/dev/null && echo root-rw || echo root-ro; touch /tmp/y && echo tmp-rw; grep ' /tmp ' /proc/self/mounts | grep -c noexec; cat /shared/file");
    b.config["root"]["readonly"] = json!(true);
    let host = b.path().join("shared");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("file"), "from host\n").unwrap();
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "noexec", "nodev", "size=1m"]}));
    mounts.push(json!({"destination": "/shared", "type": "bind", "source": host, "options": ["rbind", "ro", "rprivate"]}));
    let (code, out, err) = h.run_bundle(&b);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "root-ro\ntmp-rw\n1\nfrom host\n");
}

#[test]
fn memory_limit_oom_kills() {
    let h = Husk::new();
    let mut b =
        Bundle::sh("echo start; x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived");
    b.config["linux"]["resources"] = json!({"memory": {"limit": 33554432, "swap": 33554432}});
    b.write();
    h.track(&b.id);
    let out = h.run(&[
        "run",
        "--keep",
        "--bundle",
        b.path().to_str().unwrap(),
        &b.id,
    ]);
    assert_eq!(
        out.status.code(),
        Some(137),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "start\n");
    let oc = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/husk-test/{}/memory.oom_control",
        b.id
    ))
    .unwrap();
    let kills: u64 = oc
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(kills >= 1, "{oc}");
    assert_eq!(
        std::fs::read_to_string(format!(
            "/sys/fs/cgroup/memory/husk-test/{}/memory.limit_in_bytes",
            b.id
        ))
        .unwrap()
        .trim(),
        "33554432"
    );
    h.ok(&["delete", &b.id]);
    assert!(cgroup_dirs(&b.id).is_empty());
}

#[test]
fn pids_limit_stops_fork_bombs() {
    let h = Husk::new();
    let mut b = Bundle::sh("cat /sys/fs/cgroup/pids/pids.max; for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1 & done 2>/dev/null; echo forked; wait");
    b.config["linux"]["resources"] = json!({"pids": {"limit": 5}});
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "cgroup");
    let (code, out, err) = h.run_bundle(&b);
    assert_ne!(out.lines().next(), None, "{err}");
    assert!(
        err.contains("fork") || err.contains("Resource temporarily unavailable") || code != 0,
        "code {code} out {out} err {err}"
    );
}

#[test]
fn pids_limit_is_written_and_visible_inside() {
    let h = Husk::new();
    let mut b = Bundle::sh("cat /sys/fs/cgroup/pids/pids.max");
    b.config["linux"]["resources"] = json!({"pids": {"limit": 42}});
    let (code, out, err) = h.run_bundle(&b);
    assert_eq!((code, out.as_str()), (0, "42\n"), "{err}");
}

#[test]
fn seccomp_denies_a_syscall_with_the_given_errno() {
    let h = Husk::new();
    let mut b = Bundle::sh("mkdir /tmp/a; echo mkdir=$?; ls / > /dev/null && echo ls-ok");
    b.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]});
    let (code, out, err) = h.run_bundle(&b);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "mkdir=1\nls-ok\n");
    assert!(err.contains("Operation not permitted"), "{err}");
}

#[test]
fn busybox_under_a_runtime_default_style_profile() {
    // RuntimeDefault's shape: deny by default with EPERM, allow the ordinary syscalls, refuse
    // the privileged ones (mount, unshare, keyctl, ptrace …), clone3 -> ENOSYS.
    let h = Husk::new();
    let mut b = Bundle::sh("ls /bin | wc -l > /dev/null && echo ls-ok; unshare -m true 2>/dev/null || echo unshare-denied; mount -t tmpfs t /mnt 2>/dev/null || echo mount-denied; echo done");
    b.config["linux"]["seccomp"] = runtime_default_like_profile();
    b.config["process"]["noNewPrivileges"] = json!(false);
    let (code, out, err) = h.run_bundle(&b);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out, "ls-ok\nunshare-denied\nmount-denied\ndone\n",
        "stderr: {err}"
    );
}

fn runtime_default_like_profile() -> serde_json::Value {
    let denied = [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "keyctl",
        "add_key",
        "request_key",
        "ptrace",
        "reboot",
        "swapon",
        "swapoff",
        "kexec_load",
        "init_module",
        "finit_module",
        "delete_module",
        "bpf",
        "perf_event_open",
        "pivot_root",
        "acct",
        "settimeofday",
        "clock_settime",
        "clone3",
        "open_by_handle_at",
        "userfaultfd",
        "fsopen",
        "fsmount",
        "move_mount",
        "open_tree",
    ];
    let mut allowed = vec![];
    for nr in 0..460 {
        if let Ok(name) = libseccomp::ScmpSyscall::from(nr).get_name() {
            if !denied.contains(&name.as_str()) {
                allowed.push(name);
            }
        }
    }
    json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [
        {"names": allowed, "action": "SCMP_ACT_ALLOW"},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 2114060288u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
    ]})
}

#[test]
fn create_start_state_list_and_delete() {
    let h = Husk::new();
    let b = Bundle::sh("exec sleep 60");
    h.create(&b);
    let st = h.state(&b.id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["ociVersion"], husk_runtime::OCI_VERSION);
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0);
    // The init waits, blocked, until start.
    assert!(std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .starts_with("husk-init"));
    let list: serde_json::Value =
        serde_json::from_str(&h.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(list[0]["id"], b.id.as_str());
    assert!(h.ok(&["list", "-q"]).contains(&b.id));
    h.ok(&["start", &b.id]);
    h.wait_status(&b.id, "running");
    let out = h.run(&["start", &b.id]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot start"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = h.run(&["delete", &b.id]);
    assert!(
        !out.status.success(),
        "deleting a running container needs --force"
    );
    h.ok(&["kill", &b.id, "SIGKILL"]);
    h.wait_status(&b.id, "stopped");
    assert_eq!(h.state(&b.id)["pid"], 0);
    h.ok(&["delete", &b.id]);
    assert!(!h.run(&["state", &b.id]).status.success());
    assert!(cgroup_dirs(&b.id).is_empty());
    assert!(!h.root.path().join(&b.id).exists());
}

#[test]
fn exec_into_a_running_container() {
    let h = Husk::new();
    let b = Bundle::sh("echo $$ > /tmp/init-pid; exec sleep 60");
    h.run_detached(&b);
    let out = h.run(&[
        "exec",
        &b.id,
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '; echo; hostname; id -u; exit 5",
    ]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "sleep 60 \nhusk\n0\n");
    // user, env and cwd flags
    let out = h.ok(&[
        "exec",
        "--user",
        "1000:1000",
        "--env",
        "FOO=bar",
        "--cwd",
        "/tmp",
        &b.id,
        "sh",
        "-c",
        "id -u; echo $FOO; pwd",
    ]);
    assert_eq!(out, "1000\nbar\n/tmp\n");
    // the exec'd process is in the container's cgroup while it runs
    let out = h.ok(&["exec", &b.id, "cat", "/proc/self/cgroup"]);
    assert!(
        out.contains(&format!("/husk-test/{}", b.id)) || out.contains(":/\n"),
        "{out}"
    );
    // a process killed by SIGTERM
    let h2 = &h;
    let id = b.id.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        id
    });
    let child = h2.cmd(&["exec", &b.id, "sleep", "30"]).spawn().unwrap();
    let _ = t.join();
    let pids: Vec<i64> = serde_json::from_str(&h.ok(&["ps", "--format", "json", &b.id])).unwrap();
    assert!(pids.len() >= 2, "{pids:?}");
    let sleeper = pids
        .iter()
        .copied()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default()
                == "sleep\x0030\x00"
        })
        .max()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sleeper as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(143));
    // a missing binary is reported, not run
    let out = h.run(&["exec", &b.id, "no-such-binary"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("executable file not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pause_and_resume() {
    let h = Husk::new();
    let b = Bundle::sh("exec sleep 60");
    h.run_detached(&b);
    h.ok(&["pause", &b.id]);
    assert_eq!(h.state(&b.id)["status"], "paused");
    let pid = h.state(&b.id)["pid"].as_i64().unwrap();
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(st.contains("State:\tD") || st.contains("State:\tS"), "{st}");
    assert!(
        !h.run(&["exec", &b.id, "true"]).status.success(),
        "exec into a paused container must fail"
    );
    h.ok(&["resume", &b.id]);
    assert_eq!(h.state(&b.id)["status"], "running");
    assert!(!h.run(&["resume", &b.id]).status.success());
}

#[test]
fn update_changes_limits() {
    let h = Husk::new();
    let mut b = Bundle::sh("exec sleep 60");
    b.config["linux"]["resources"] = json!({"pids": {"limit": 10}});
    h.run_detached(&b);
    h.ok(&[
        "update",
        "--pids-limit",
        "20",
        "--memory",
        "64m",
        "--cpu-shares",
        "512",
        &b.id,
    ]);
    let cg = |c: &str, f: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{c}/husk-test/{}/{f}", b.id))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(cg("pids", "pids.max"), "20");
    assert_eq!(cg("memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(cg("cpu", "cpu.shares"), "512");
    let res = b.path().join("res.json");
    std::fs::write(&res, r#"{"pids":{"limit":33}}"#).unwrap();
    h.ok(&["update", "--resources", res.to_str().unwrap(), &b.id]);
    assert_eq!(cg("pids", "pids.max"), "33");
}

#[test]
fn kill_all_signals_every_process() {
    let h = Husk::new();
    let b = Bundle::sh("sleep 60 & sleep 60 & wait");
    h.run_detached(&b);
    for _ in 0..100 {
        if serde_json::from_str::<Vec<i64>>(&h.ok(&["ps", "-f", "json", &b.id]))
            .unwrap()
            .len()
            == 3
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    h.ok(&["kill", "--all", &b.id, "KILL"]);
    h.wait_status(&b.id, "stopped");
    h.ok(&["delete", &b.id]);
}

#[test]
fn console_socket_receives_a_working_pty() {
    use std::io::Read;
    let h = Husk::new();
    let mut b = Bundle::sh("tty; echo $((6*7)); ls -l /dev/console | grep -c ' 136, '");
    b.config["process"]["terminal"] = json!(true);
    let sock_path = b.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    b.write();
    h.track(&b.id);
    let child = h
        .cmd(&[
            "run",
            "--detach",
            "--console-socket",
            sock_path.to_str().unwrap(),
            "--bundle",
            b.path().to_str().unwrap(),
            &b.id,
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (conn, _) = listener.accept().unwrap();
    let master = husk_runtime::tty::recv_fd(&conn).unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let mut f = std::fs::File::from(master);
    let mut out = String::new();
    let mut buf = [0u8; 4096];
    // Read until the container exits (EIO on the master once the slave is closed).
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(out.replace("\r\n", "\n"), "/dev/pts/0\n42\n1\n");
}

#[test]
fn symlinks_in_the_image_cannot_escape_the_root() {
    let h = Husk::new();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("secret"), "host data").unwrap();
    let mut b = Bundle::sh("ls /evil-abs /evil-rel; cat /evil-abs/marker");
    std::os::unix::fs::symlink(&victim, b.rootfs().join("evil-abs")).unwrap();
    std::os::unix::fs::symlink(
        "../../../../../../../../../../".to_string() + victim.to_str().unwrap(),
        b.rootfs().join("evil-rel"),
    )
    .unwrap();
    let m = b.config["mounts"].as_array_mut().unwrap();
    m.push(json!({"destination": "/evil-abs", "type": "tmpfs", "source": "tmpfs"}));
    m.push(json!({"destination": "/evil-rel/sub", "type": "tmpfs", "source": "tmpfs"}));
    b.config["linux"]["maskedPaths"] = json!(["/evil-abs/secret"]);
    b.config["linux"]["devices"] =
        json!([{"path": "/dev/../evil-rel/node", "type": "c", "major": 1, "minor": 3}]);
    let (_code, _out, err) = h.run_bundle(&b);
    // Whatever the container saw, the host directory is untouched.
    let names: Vec<String> = std::fs::read_dir(&victim)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["secret".to_string()],
        "host dir changed; stderr: {err}"
    );
    assert_eq!(
        std::fs::read_to_string(victim.join("secret")).unwrap(),
        "host data"
    );
    assert!(mounts_below(&victim).is_empty());
    // The link targets were created inside the rootfs instead.
    assert!(
        b.rootfs().join(victim.strip_prefix("/").unwrap()).exists()
            || err.contains("linux.devices"),
        "{err}"
    );
}

#[test]
fn failed_create_leaves_nothing_behind() {
    let h = Husk::new();
    // A bind mount whose source does not exist: fails inside the init, after namespaces and
    // the cgroup exist.
    let mut b = Bundle::sh("true");
    b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/x", "type": "bind", "source": "/nonexistent/source", "options": ["rbind"]}));
    b.config["linux"]["resources"] = json!({"pids": {"limit": 10}});
    b.write();
    let out = h.run(&["create", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("husk:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("/nonexistent/source") && lines[0].contains("/x"),
        "{err}"
    );
    assert!(!h.root.path().join(&b.id).exists(), "state dir left behind");
    assert!(
        cgroup_dirs(&b.id).is_empty(),
        "cgroup left behind: {:?}",
        cgroup_dirs(&b.id)
    );
    assert!(mounts_below(&b.rootfs()).is_empty(), "mounts left behind");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(procs_of(&b), Vec::<String>::new(), "processes left behind");
}

/// Processes that belong to the bundle's container: in its cgroup, or rooted in its rootfs.
fn procs_of(b: &Bundle) -> Vec<String> {
    let rootfs = b.rootfs();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            let cg = std::fs::read_to_string(p.join("cgroup")).ok()?;
            let root = std::fs::read_link(p.join("root")).ok()?;
            (cg.contains(&b.id) || root.starts_with(&rootfs)).then(|| p.display().to_string())
        })
        .collect()
}

#[test]
fn bad_input_gets_one_clear_message() {
    let h = Husk::new();
    type Edit = Box<dyn Fn(&mut Bundle)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "malformed",
            Box::new(|b: &mut Bundle| {
                std::fs::write(b.path().join("config.json.raw"), "{").unwrap()
            }),
            "invalid JSON",
        ),
        (
            "missing rootfs",
            Box::new(|b: &mut Bundle| b.config["root"]["path"] = json!("nope")),
            "root.path",
        ),
        (
            "unknown namespace",
            Box::new(|b: &mut Bundle| {
                b.config["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "bogus"}])
            }),
            "bogus",
        ),
        (
            "bad sysctl",
            Box::new(|b: &mut Bundle| b.config["linux"]["sysctl"] = json!({"vm.swappiness": "10"})),
            "vm.swappiness",
        ),
        (
            "net sysctl in the host's netns",
            Box::new(|b: &mut Bundle| {
                let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
                ns.retain(|n| n["type"] != "network");
                ns.push(json!({"type": "network", "path": "/proc/self/ns/net"}));
                b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_unprivileged_port_start": "80"})
            }),
            "needs its own network namespace",
        ),
        (
            "missing binary",
            Box::new(|b: &mut Bundle| b.config["process"]["args"] = json!(["/bin/nope"])),
            "/bin/nope",
        ),
        (
            "unknown mount option",
            Box::new(|b: &mut Bundle| b.config["mounts"][0]["options"] = json!(["idmap"])),
            "idmap",
        ),
        (
            // Without AppArmor (as here) the profile is refused up front; with AppArmor this
            // profile does not exist. Either way it is named, never silently dropped.
            "apparmor profile",
            Box::new(|b: &mut Bundle| {
                b.config["process"]["apparmorProfile"] = json!("husk-no-such-profile")
            }),
            "husk-no-such-profile",
        ),
        (
            "negative oomScoreAdj out of range",
            Box::new(|b: &mut Bundle| b.config["process"]["oomScoreAdj"] = json!(-5000)),
            "process.oomScoreAdj",
        ),
    ];
    for (name, edit, want) in cases {
        let mut b = Bundle::sh("true");
        edit(&mut b);
        b.write();
        if b.path().join("config.json.raw").exists() {
            std::fs::rename(
                b.path().join("config.json.raw"),
                b.path().join("config.json"),
            )
            .unwrap();
        }
        let out = h.run(&["create", "--bundle", b.path().to_str().unwrap(), &b.id]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(want), "{name}: expected {want:?} in {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(
            !h.root.path().join(&b.id).exists(),
            "{name}: state left behind"
        );
        assert!(cgroup_dirs(&b.id).is_empty(), "{name}: cgroup left behind");
    }
    // An id already in use
    let b = Bundle::sh("exec sleep 60");
    h.create(&b);
    let out = h.run(&["create", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert_eq!(
        h.state(&b.id)["status"],
        "created",
        "the first container is untouched"
    );
    // Unknown CLI option
    let out = h.run(&["create", "--bogus-flag", "x"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn hooks_run_with_state_on_stdin() {
    let h = Husk::new();
    let mut b = Bundle::sh("cat /hook-created-container 2>/dev/null || echo no-file; echo main");
    let log = b.path().join("hooks.log");
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("read s; echo {name} >> {}", log.display())]});
    b.config["hooks"] = json!({"prestart": [hook("prestart")], "createRuntime": [hook("createRuntime")], "poststart": [hook("poststart")], "poststop": [hook("poststop")],
        "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "read s; echo $s | grep -q '\"status\"' && echo in-container > /hook-created-container"]}]});
    let (code, out, err) = h.run_bundle(&b);
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("main\n"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "prestart\ncreateRuntime\npoststart\npoststop\n"
    );
}

#[test]
fn user_namespace_with_id_mappings() {
    let h = Husk::new();
    let mut b = Bundle::sh("cat /proc/self/uid_map; id -u");
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    // The mapped root must be able to read the rootfs.
    std::process::Command::new("chown")
        .args(["-R", "100000:100000"])
        .arg(b.rootfs())
        .status()
        .unwrap();
    std::fs::set_permissions(b.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, out, err) = h.run_bundle(&b);
    assert_eq!(code, 0, "{err}");
    let mut words = out.split_whitespace();
    assert_eq!(
        (words.next(), words.next(), words.next(), words.next()),
        (Some("0"), Some("100000"), Some("65536"), Some("0")),
        "{out}"
    );
}

/// Runs `cmd` under script(1), a terminal of its own. Its stdin stays open (and silent) until
/// the command ends: at EOF script types an end-of-file character into the terminal, which the
/// container's terminal would echo.
fn script(cmd: &str) -> std::process::Output {
    let mut child = std::process::Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    out
}

#[test]
fn foreground_terminal_without_console_socket_like_runc() {
    // `husk run` of a terminal spec proxies the pty to its own stdio (under script(1), which
    // gives the test a terminal).
    let h = Husk::new();
    let mut b = Bundle::sh("tty; stty size; exit 4");
    b.config["process"]["terminal"] = json!(true);
    b.write();
    h.track(&b.id);
    let cmd = format!(
        "stty rows 33 cols 101; {} --root {} run --bundle {} {}",
        husk_bin(),
        h.root.path().display(),
        b.path().display(),
        b.id
    );
    let out = script(&cmd);
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    assert_eq!(
        out.status.code(),
        Some(4),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("/dev/pts/0\n33 101\n"), "{text:?}");
    // exec -t into a running container the same way
    let b2 = Bundle::sh("exec sleep 60");
    h.run_detached(&b2);
    let cmd = format!(
        "{} --root {} exec -t {} sh -c 'tty; exit 6'",
        husk_bin(),
        h.root.path().display(),
        b2.id
    );
    let out = script(&cmd);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/dev/pts/"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A detached terminal container needs a console socket.
    let mut b3 = Bundle::sh("true");
    b3.config["process"]["terminal"] = json!(true);
    b3.write();
    let out = h.run(&[
        "run",
        "--detach",
        "--bundle",
        b3.path().to_str().unwrap(),
        &b3.id,
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("console-socket"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
