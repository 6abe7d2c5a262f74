//! Behaviours from public bug reports against runc, crun, youki and kata, where runc (the
//! reference, Debian's 1.1) does the right thing: each is checked on husk and, where the
//! behaviour is runc's, on runc with the same bundle.

mod common;
use common::*;

/// `kill ID 36` and the real-time names were refused as unknown signals. Every signal by
/// number must reach the container's process (it blocks all of them and reports each one it
/// takes, so "delivered" means queued by the kernel), and husk also takes the real-time names
/// of containerd's and kill(1)'s tables (runc 1.1 refuses them: it knows only numbers there).
#[test]
fn every_signal_by_number_and_real_time_names_reach_the_container() {
    let (h, r) = (Husk::new(), runc_cli());
    for (x, name) in [(&r, "runc"), (&h, "husk")] {
        let b = Bundle::busybox(&["/sigrecv"]);
        std::fs::copy(fixture_binary("sigrecv"), b.rootfs().join("sigrecv")).unwrap();
        x.run_detached(&b);
        let mut out = OutputLines::of(&b);
        assert_eq!(out.next(), "ready", "{name}");
        let mut sigs: Vec<(String, i32)> = (1..=64)
            .filter(|n| *n != libc::SIGKILL && *n != libc::SIGSTOP)
            .map(|n| (n.to_string(), n))
            .collect();
        if name == "husk" {
            for (s, n) in [
                ("RTMIN", 34),
                ("RTMIN+2", 36),
                ("SIGRTMIN+3", 37),
                ("SIGRTMAX-1", 63),
                ("RTMAX", 64),
                ("SIGRTMAX", 64),
                ("usr1", 10),
            ] {
                sigs.push((s.to_string(), n));
            }
        }
        for (arg, n) in &sigs {
            let o = x.run(&["kill", &b.id, arg]);
            assert!(
                o.status.success(),
                "{name} kill {arg}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert_eq!(out.next(), n.to_string(), "{name}: kill {arg}");
        }
        // 0 checks that the process exists; past 64 there is no signal.
        x.ok(&["kill", &b.id, "0"]);
        assert!(
            !x.run(&["kill", &b.id, "65"]).status.success(),
            "{name}: 65"
        );
        // SIGSTOP stops it; SIGCONT resumes it (and, blocked, is reported); SIGKILL ends it.
        let pid = x.state(&b.id)["pid"].as_i64().unwrap();
        x.ok(&["kill", &b.id, "STOP"]);
        wait_for(
            || proc_state(pid) == Some('T'),
            &format!("{name}: stopped by SIGSTOP"),
        );
        x.ok(&["kill", &b.id, "CONT"]);
        assert_eq!(out.next(), "18", "{name}: SIGCONT");
        assert_ne!(proc_state(pid), Some('T'), "{name}: still stopped");
        x.ok(&["kill", &b.id, "KILL"]);
        x.wait_status(&b.id, "stopped");
    }
}

/// The state letter of /proc/<pid>/stat (R, S, T, Z…).
fn proc_state(pid: i64) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

fn wait_for(mut ok: impl FnMut() -> bool, what: &str) {
    let t = std::time::Instant::now();
    while !ok() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "timed out: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

const STATES: [&str; 5] = ["created", "running", "paused", "stopped", "missing"];

/// A container of `b` in `state` ("missing": none at all).
fn make_in_state(x: &Husk, b: &Bundle, state: &str) {
    match state {
        "missing" => {}
        "created" => x.create(b),
        _ => {
            x.run_detached(b);
            x.wait_status(&b.id, "running");
            match state {
                "paused" => {
                    x.ok(&["pause", &b.id]);
                }
                "stopped" => {
                    x.ok(&["kill", &b.id, "KILL"]);
                    x.wait_status(&b.id, "stopped");
                }
                _ => {}
            }
        }
    }
}

/// What a user sees of one verb: its exit status, its stderr, and the state it leaves.
fn outcome(x: &Husk, id: &str, verb: &[&str]) -> (i32, String, String) {
    let args: Vec<&str> = verb
        .iter()
        .map(|a| if *a == "ID" { id } else { a })
        .collect();
    let out = x.run(&args);
    let status = || {
        let st = x.run(&["state", id]);
        if st.status.success() {
            serde_json::from_slice::<serde_json::Value>(&st.stdout).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string()
        } else {
            "gone".to_string()
        }
    };
    // A SIGKILL takes a moment to land: the state it leads to is the one that counts.
    let mut after = status();
    let t = std::time::Instant::now();
    while verb.contains(&"KILL") && after != "stopped" && t.elapsed().as_secs() < 3 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        after = status();
    }
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
        after,
    )
}

/// `kill --all ID KILL` on a stopped container failed on husk ("it is stopped"); runc exits 0
/// (containerd's runc shim sends exactly that after the init of a container without its own
/// pid namespace exits). Every verb in every state, against runc on the same bundle: the same
/// exit status and the same state afterwards; where containerd's runc shim reads runc's error
/// text, the same words.
#[test]
fn every_verb_in_every_state_answers_like_runc() {
    let (h, r) = (Husk::new(), runc_cli());
    let verbs: [&[&str]; 11] = [
        &["start", "ID"],
        &["kill", "ID", "KILL"],
        &["kill", "--all", "ID", "KILL"],
        &["pause", "ID"],
        &["resume", "ID"],
        &["exec", "ID", "true"],
        &["update", "--pids-limit", "100", "ID"],
        &["delete", "ID"],
        &["delete", "--force", "ID"],
        &["ps", "ID"],
        &["state", "ID"],
    ];
    let mut diffs = vec![];
    let mut table = String::new();
    for state in STATES {
        for verb in verbs {
            let mut got = vec![];
            for x in [&r, &h] {
                let b = Bundle::busybox(&["sleep", "60"]);
                x.track(&b.id);
                make_in_state(x, &b, state);
                got.push(outcome(x, &b.id, verb));
            }
            let (rc, re, ra) = &got[0];
            let (hc, he, ha) = &got[1];
            let line = format!(
                "{state:<8} {:<28} runc {rc:>3} -> {ra:<8} husk {hc:>3} -> {ha:<8} | {he}\n",
                verb.join(" ")
            );
            table.push_str(&line);
            if (rc, ra) != (hc, ha) {
                diffs.push(format!("{line}   runc said: {re}\n"));
            }
            // The words containerd's runc shim matches on (pkg/process checkKillError, delete).
            let words = if state == "missing" && *hc != 0 {
                "does not exist"
            } else if state == "stopped" && verb[0] == "kill" && verb[1] != "--all" {
                "container not running"
            } else if verb[0] == "exec" && *hc != 0 {
                "exec failed: "
            } else {
                ""
            };
            if !he.contains(words) {
                diffs.push(format!(
                    "{line}   husk's error lacks runc's words {words:?}\n"
                ));
            }
        }
    }
    assert!(
        diffs.is_empty(),
        "husk differs from runc:\n{}\nwhole table:\n{table}",
        diffs.join("")
    );
}

/// Runs `b` in the foreground on husk and on runc (the same config, each with its own cgroup)
/// and returns (exit code, stdout, stderr) of each: [runc, husk].
fn on_both(b: &Bundle, fill: impl Fn(&std::path::Path)) -> [(i32, String, String); 2] {
    let (h, r) = (Husk::new(), runc_cli());
    let mut out = vec![];
    for x in [&r, &h] {
        let mut b2 = Bundle::busybox(&["true"]);
        let id = b2.id.clone();
        b2.config = b.config.clone();
        b2.config["linux"]["cgroupsPath"] = serde_json::json!(format!("/husk-test/{id}"));
        fill(&b2.rootfs());
        out.push(x.run_bundle(&b2));
    }
    [out[0].clone(), out[1].clone()]
}

/// A `process.cwd` missing from the image: runc creates it (root-owned, 0755 less the umask,
/// before the root turns read-only, whoever the user) and starts the process there; husk
/// failed with `process.cwd …: ENOENT`.
#[test]
fn a_missing_cwd_is_created_as_runc_creates_it() {
    let mut b = Bundle::sh("pwd; stat -c '%n %a %u %g' /qa /qa/work /qa/work/dir; id -u");
    b.config["process"]["cwd"] = serde_json::json!("/qa/work/dir");
    b.config["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
    b.config["root"]["readonly"] = serde_json::json!(true);
    let [runc, husk] = on_both(&b, |_| {});
    assert_eq!(runc.0, 0, "runc: {}", runc.2);
    assert_eq!(
        runc.1,
        "/qa/work/dir\n/qa 755 0 0\n/qa/work 755 0 0\n/qa/work/dir 755 0 0\n1000\n"
    );
    assert_eq!(husk, runc, "husk (left) and runc (right)");
}

/// A tmpfs without `mode=` over an image directory takes that directory's mode (runc chmods
/// the new tmpfs to it, even over an explicit `mode=`; a target that did not exist keeps the
/// tmpfs default 1777 or its `mode=`): husk gave 1777 to all, making private directories
/// world-writable. Also through a symlink, with set-id/sticky bits, and read-only.
#[test]
fn a_tmpfs_takes_the_mode_of_the_directory_it_covers() {
    use std::os::unix::fs::PermissionsExt;
    let dirs = [
        ("data", 0o700),
        ("pub", 0o751),
        ("exp", 0o700),
        ("stk", 0o3750),
        ("ro", 0o750),
        ("target", 0o705),
    ];
    let mut b =
        Bundle::sh("stat -c '%n %a %u' /data /pub /exp /stk /ro /target /new /new2; touch /ro/x");
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    for (dest, opts) in [
        ("/data", vec!["nosuid", "nodev"]),
        ("/pub", vec!["nosuid", "nodev"]),
        ("/exp", vec!["nosuid", "nodev", "mode=1777"]),
        ("/stk", vec![]),
        ("/ro", vec!["ro"]),
        ("/lnk", vec![]),
        ("/new", vec![]),
        ("/new2", vec!["mode=700"]),
    ] {
        mounts.push(serde_json::json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": opts}));
    }
    let [runc, husk] = on_both(&b, |rootfs| {
        for (d, mode) in dirs {
            std::fs::create_dir(rootfs.join(d)).unwrap();
            std::fs::set_permissions(rootfs.join(d), std::fs::Permissions::from_mode(mode))
                .unwrap();
        }
        std::os::unix::fs::symlink("target", rootfs.join("lnk")).unwrap();
    });
    assert_eq!(
        runc.1,
        "/data 700 0\n/pub 751 0\n/exp 700 0\n/stk 3750 0\n/ro 750 0\n/target 705 0\n/new 1777 0\n/new2 700 0\n",
        "runc: {}",
        runc.2
    );
    assert!(runc.2.contains("Read-only file system"), "{}", runc.2);
    assert_eq!(husk, runc, "husk (left) and runc (right)");
}

/// A file bind mount onto a dangling symlink in the image (`/etc/localtime ->
/// /usr/share/zoneinfo/Some/Zone`, target missing): runc follows the link inside the root,
/// creates the target file and its parent directories, and binds there; husk failed `resolve
/// … ENOENT`. The kind: any destination that is, or passes through, a symlink (dangling or
/// not, absolute or relative, even one pointing above the root) is resolved inside the root,
/// for files and directories.
#[test]
fn bind_mounts_onto_symlinks_follow_them_inside_the_root() {
    let host = tempfile::tempdir().unwrap();
    let file = host.path().join("zone");
    std::fs::write(&file, "zone-data\n").unwrap();
    let dir = host.path().join("dir");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("inside"), "dir-data\n").unwrap();
    let mut b = Bundle::sh(
        "for f in /etc/localtime /usr/share/zoneinfo/Some/Zone /etc/rel /var/lib/x/file \
         /etc/ok /usr/existing /via/link/file /real/file /up /escaped /dirlink/inside \
         /somewhere/deep/inside; do echo \"$f: $(cat $f 2>&1)\"; done; \
         for l in /etc/localtime /etc/rel /etc/ok /via/link /up /dirlink; do echo \"$l -> $(readlink $l)\"; done",
    );
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    for (dest, src) in [
        ("/etc/localtime", &file),
        ("/etc/rel", &file),
        ("/etc/ok", &file),
        ("/via/link/file", &file),
        ("/up", &file),
        ("/dirlink", &dir),
    ] {
        mounts.push(serde_json::json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "ro"]}));
    }
    let [runc, husk] = on_both(&b, |rootfs| {
        let ln = |target: &str, link: &str| {
            std::os::unix::fs::symlink(target, rootfs.join(link)).unwrap()
        };
        std::fs::create_dir_all(rootfs.join("usr")).unwrap();
        std::fs::write(rootfs.join("usr/existing"), "image-data\n").unwrap();
        std::fs::create_dir_all(rootfs.join("via")).unwrap();
        ln("/usr/share/zoneinfo/Some/Zone", "etc/localtime");
        ln("../var/lib/x/file", "etc/rel");
        ln("/usr/existing", "etc/ok");
        ln("/real", "via/link");
        ln("../../../../../../escaped", "up");
        ln("/somewhere/deep", "dirlink");
    });
    assert_eq!(runc.0, 0, "runc: {}", runc.2);
    assert_eq!(
        runc.1,
        "/etc/localtime: zone-data\n/usr/share/zoneinfo/Some/Zone: zone-data\n\
         /etc/rel: zone-data\n/var/lib/x/file: zone-data\n/etc/ok: zone-data\n\
         /usr/existing: zone-data\n/via/link/file: zone-data\n/real/file: zone-data\n\
         /up: zone-data\n/escaped: zone-data\n/dirlink/inside: dir-data\n\
         /somewhere/deep/inside: dir-data\n\
         /etc/localtime -> /usr/share/zoneinfo/Some/Zone\n/etc/rel -> ../var/lib/x/file\n\
         /etc/ok -> /usr/existing\n/via/link -> /real\n/up -> ../../../../../../escaped\n\
         /dirlink -> /somewhere/deep\n",
        "runc"
    );
    assert_eq!(husk, runc, "husk (left) and runc (right)");
    assert!(!std::path::Path::new("/escaped").exists());
}

/// Runs `args` of `x` with a deadline: a hung command fails the test instead of hanging it.
fn run_within(x: &Husk, args: &[&str], secs: u64) -> (i32, String) {
    let mut child = x
        .cmd(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (st.code().unwrap_or(-1), err);
        }
        if t.elapsed().as_secs() >= secs {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} {args:?} still running after {secs} s", x.bin.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The pids in a v1 cgroup directory of the pids controller (none if it is gone).
fn cgroup_procs(path: &str) -> Vec<i64> {
    std::fs::read_to_string(format!("/sys/fs/cgroup/pids{path}/cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// Containers may share one cgroupsPath (the runtime spec does not require it to be unique).
/// A runs `sleep`; B, in the same cgroup, runs and is deleted: runc leaves A running (B's
/// delete kills B's processes only and leaves the cgroup while it is not empty); husk killed
/// every process of the cgroup and removed it. `delete --force` of a running B alike. And
/// `create` into the shared cgroup while A is paused (frozen) hung on husk; runc refuses at once.
#[test]
fn containers_sharing_a_cgroup_leave_each_other_alone() {
    let (h, r) = (Husk::new(), runc_cli());
    for (x, name) in [(&r, "runc"), (&h, "husk")] {
        let a = Bundle::busybox(&["sleep", "600"]);
        let path = format!("/husk-test/shared-{}", a.id);
        let in_shared = |mut b: Bundle| {
            b.config["linux"]["cgroupsPath"] = serde_json::json!(path);
            b
        };
        let a = in_shared(a);
        x.run_detached(&a);
        x.wait_status(&a.id, "running");
        let a_pid = x.state(&a.id)["pid"].as_i64().unwrap();
        // B runs to its end in the foreground (`run` deletes it afterwards).
        let (code, _, err) = x.run_bundle(&in_shared(Bundle::busybox(&["true"])));
        assert_eq!(code, 0, "{name}: {err}");
        // B created, started, exited, deleted.
        let b = in_shared(Bundle::busybox(&["true"]));
        x.create(&b);
        x.ok(&["start", &b.id]);
        x.wait_status(&b.id, "stopped");
        x.ok(&["delete", &b.id]);
        // B still running, force-deleted.
        let b = in_shared(Bundle::busybox(&["sleep", "600"]));
        x.run_detached(&b);
        x.wait_status(&b.id, "running");
        let b_pid = x.state(&b.id)["pid"].as_i64().unwrap();
        x.ok(&["delete", "--force", &b.id]);
        assert!(
            !cgroup_procs(&path).contains(&b_pid),
            "{name}: B's init is left"
        );
        assert_eq!(
            x.state(&a.id)["status"],
            "running",
            "{name}: A after B's deletes"
        );
        assert_eq!(
            cgroup_procs(&path),
            vec![a_pid],
            "{name}: the shared cgroup"
        );
        // A paused: a create into its frozen cgroup is refused at once, leaving nothing.
        x.ok(&["pause", &a.id]);
        let c = in_shared(Bundle::busybox(&["true"]));
        c.write();
        let (code, err) = run_within(
            x,
            &["create", "--bundle", c.path().to_str().unwrap(), &c.id],
            20,
        );
        assert_eq!(code, 1, "{name}: create into a frozen cgroup: {err}");
        assert!(err.contains("frozen"), "{name}: {err}");
        assert!(!x.run(&["state", &c.id]).status.success(), "{name}: C left");
        assert_eq!(x.state(&a.id)["status"], "paused", "{name}");
        assert_eq!(
            cgroup_procs(&path),
            vec![a_pid],
            "{name}: the shared cgroup"
        );
        x.ok(&["resume", &a.id]);
        // A's own end removes the cgroup, now empty.
        x.ok(&["delete", "--force", &a.id]);
        assert_eq!(cgroup_procs(&path), Vec::<i64>::new());
        assert!(
            !std::path::Path::new(&format!("/sys/fs/cgroup/pids{path}")).exists(),
            "{name}: the cgroup is left after the last container"
        );
    }
}

/// B without a pid namespace of its own, sharing A's cgroup: its init's death does not end
/// what it started, so runc's delete kills every process of the cgroup (it cannot tell whose
/// they are), A's included. husk does what runc does.
#[test]
fn a_container_without_its_own_pid_namespace_clears_its_cgroup_like_runc() {
    let (h, r) = (Husk::new(), runc_cli());
    for (x, name) in [(&r, "runc"), (&h, "husk")] {
        let mut a = Bundle::busybox(&["sleep", "600"]);
        let path = format!("/husk-test/shared-{}", a.id);
        a.config["linux"]["cgroupsPath"] = serde_json::json!(path);
        x.run_detached(&a);
        x.wait_status(&a.id, "running");
        let mut b = Bundle::sh("sleep 600 & echo started");
        b.config["linux"]["cgroupsPath"] = serde_json::json!(path);
        let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "pid");
        let (code, out, err) = x.run_bundle(&b);
        assert_eq!((code, out.as_str()), (0, "started\n"), "{name}: {err}");
        x.wait_status(&a.id, "stopped");
        assert_eq!(cgroup_procs(&path), Vec::<i64>::new(), "{name}");
        x.ok(&["delete", &a.id]);
    }
}

/// `exec --additional-gids` adds to the groups the container's process spec already has
/// (runc: `0 555 777` for a spec with 555 and `--additional-gids 777`); husk replaced them.
/// Every exec flag the same way, against runc: --user (uid alone keeps the spec's gid),
/// --env merged into the spec's (a repeated name keeps its first place, the last value wins,
/// as for the init's own env), --cwd, --cap, --no-new-privs[=false], and --process (which
/// makes runc ignore the other flags).
#[test]
fn exec_flags_merge_into_the_process_spec_like_runc() {
    let (h, r) = (Husk::new(), runc_cli());
    let mut b = Bundle::busybox(&["sleep", "600"]);
    b.config["process"]["user"] = serde_json::json!({"uid": 0, "gid": 5, "additionalGids": [555]});
    b.config["process"]["env"] = serde_json::json!(["PATH=/bin", "A=1", "B=2", "A=3", "EMPTY="]);
    b.config["process"]["noNewPrivileges"] = serde_json::json!(true);
    let process = b.path().join("process.json");
    std::fs::write(
        &process,
        serde_json::json!({"args": ["sh", "-c", "pwd; echo $X; id -G"], "cwd": "/",
            "env": ["PATH=/bin"], "user": {"uid": 7, "gid": 8}})
        .to_string(),
    )
    .unwrap();
    let p = process.to_str().unwrap();
    let execs: Vec<Vec<&str>> = vec![
        vec!["id", "-G"],
        vec!["--additional-gids", "777", "id", "-G"],
        vec!["--user", "1000", "id"],
        vec!["--user", "1000:2000", "--additional-gids", "5", "id"],
        vec!["sh", "-c", "tr '\\0' '\\n' < /proc/1/environ"],
        vec!["-e", "A=9", "-e", "C=3", "-e", "A=10", "-e", "B=", "env"],
        vec!["--cwd", "/tmp", "pwd"],
        vec!["--cwd", "/nonexistent", "pwd"],
        vec!["--cap", "CAP_SYS_ADMIN", "grep", "Cap", "/proc/self/status"],
        vec![
            "--cap",
            "CAP_SYS_ADMIN",
            "--user",
            "1000",
            "grep",
            "Cap",
            "/proc/self/status",
        ],
        vec!["grep", "NoNewPrivs", "/proc/self/status"],
        vec![
            "--no-new-privs=false",
            "grep",
            "NoNewPrivs",
            "/proc/self/status",
        ],
        vec![
            "--process",
            p,
            "--cwd",
            "/tmp",
            "-e",
            "X=1",
            "--user",
            "1:1",
        ],
        vec!["no-such-command"],
        vec!["-e", "NOEQUALS", "env"],
        vec!["-e", "=x", "env"],
        vec!["sh", "-c", "exit 3"],
    ];
    let mut seen: Vec<Vec<(i32, String)>> = vec![];
    for x in [&r, &h] {
        let mut b2 = Bundle::busybox(&["sleep", "600"]);
        let id = b2.id.clone();
        b2.config = b.config.clone();
        b2.config["linux"]["cgroupsPath"] = serde_json::json!(format!("/husk-test/{id}"));
        x.run_detached(&b2);
        x.wait_status(&id, "running");
        let mut got = vec![];
        for e in &execs {
            let mut args = vec!["exec"];
            // flags (with their values) before the id, the command after it
            let mut i = 0;
            while i < e.len() {
                let a = e[i];
                let takes_value = matches!(
                    a,
                    "--additional-gids" | "--user" | "-e" | "--cwd" | "--cap" | "--process"
                );
                if a.starts_with('-') {
                    args.push(a);
                    if takes_value {
                        args.push(e[i + 1]);
                        i += 1;
                    }
                    i += 1;
                } else {
                    break;
                }
            }
            args.push(&id);
            args.extend_from_slice(&e[i..]);
            let out = x.run(&args);
            got.push((
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            ));
        }
        seen.push(got);
    }
    let mut diffs = String::new();
    for (i, e) in execs.iter().enumerate() {
        if seen[0][i] != seen[1][i] {
            diffs.push_str(&format!(
                "exec {e:?}:\n  runc {:?}\n  husk {:?}\n",
                seen[0][i], seen[1][i]
            ));
        }
    }
    assert!(diffs.is_empty(), "husk differs from runc:\n{diffs}");
    assert_eq!(seen[1][1], (0, "5 555 777\n".to_string()));
}

/// `run` in the foreground passes on the signals it receives, as runc does for the standard
/// ones it can catch: husk passed on eight (HUP, INT, QUIT, TERM, USR1, USR2, WINCH, CONT) and
/// died of any other, real-time ones included, leaving the container running unattended.
/// husk is checked alone: runc 1.1 (Go's signal package) takes real-time signals in without
/// passing them on, and passes on its own runtime's SIGURG, so it is no reference here.
#[test]
fn run_in_the_foreground_passes_on_every_signal() {
    let h = Husk::new();
    let sigs = [
        1, 2, 3, 10, 12, 14, 15, 20, 21, 22, 24, 26, 29, 30, 34, 36, 50, 63, 64,
    ];
    let b = Bundle::busybox(&["/sigrecv"]);
    std::fs::copy(fixture_binary("sigrecv"), b.rootfs().join("sigrecv")).unwrap();
    b.write();
    h.track(&b.id);
    let out = std::fs::File::create(b.path().join("stdout")).unwrap();
    let mut child = h
        .cmd(&["run", "--bundle", b.path().to_str().unwrap(), &b.id])
        .stdout(out)
        .spawn()
        .unwrap();
    let mut lines = OutputLines::of(&b);
    assert_eq!(lines.next(), "ready");
    for n in sigs {
        // SAFETY: kill(2) to our own child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, n) }, 0);
        assert_eq!(lines.next(), n.to_string(), "signal {n} to `husk run`");
    }
    h.ok(&["kill", &b.id, "KILL"]);
    assert_eq!(child.wait().unwrap().code(), Some(137));
}
