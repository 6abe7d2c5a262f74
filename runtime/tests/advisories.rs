//! runc's security advisories as attack tests: each a hostile caller, image or spec that must
//! fail safely on husk. The attack is the class an advisory describes, made deterministic
//! (an image that already holds the swapped symlink, a hook that mounts at the moment a racing
//! container would), not one exploit. Where it applies, the same attack runs on runc (Debian
//! 12's 1.1.5+deb12u1) for comparison: current runc (1.2.8, 1.3.3, 1.4.0-rc.3 and later)
//! refuses all of them, this older one is vulnerable to some — that is printed, never a husk
//! failure.
//!
//! - CVE-2019-5736 (GHSA-gxmr-w5mj-v8hh): the host's runtime binary rewritten through
//!   `/proc/<pid>/exe` of the runtime process inside the container.
//! - CVE-2024-21626 (GHSA-xr7r-f8xq-vfvv): a working directory reached through a leaked fd
//!   (`/proc/self/fd/N`), in the spec, in `exec --cwd`, or as a symlink a container planted.
//! - CVE-2025-31133 (GHSA-9493-h29p-rfm2): maskedPaths bound from a "/dev/null" that is not
//!   the null device (a symlink to, or a mount of, a procfs file).
//! - CVE-2025-52565 (GHSA-qw9x-cqr3-wc7r): the /dev/console bind going somewhere else.
//! - CVE-2025-52881 (GHSA-cgrx-mc8f-2prm): procfs writes (sysctls, oom_score_adj, LSM labels)
//!   redirected by a mount over, or a symlink in, the /proc they walk through.

mod common;
use common::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Prints what runc did with the same attack (the comparison point; never asserted: an old
/// runc may be vulnerable).
fn reference(what: &str, out: &Output) {
    eprintln!(
        "runc {}, {what}: exit {:?}\n  stdout: {}\n  stderr: {}",
        runc_version(),
        out.status.code(),
        text(&out.stdout).trim().replace('\n', "\n          "),
        text(&out.stderr).trim()
    );
}

fn runc_version() -> String {
    let out = runc().cmd(&["--version"]).output().unwrap();
    text(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Runs `cmd`, killing it if it has not finished within `limit` (its exit is then SIGKILL's).
fn within(cmd: &mut Command, limit: std::time::Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        let t = std::time::Instant::now();
        while t.elapsed() < limit {
            if d.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // SAFETY: signalling a child that has not been reaped yet (its pid is still ours).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    out
}

/// `run --detach` of `b` without asserting success (for the reference runtime): whether it
/// started, and its stderr. The container's stdio goes to files (a pipe would stay open).
fn try_detached(rt: &Husk, b: &Bundle) -> (bool, String) {
    b.write();
    rt.track(&b.id);
    let err_path = b.path().join("stderr");
    let st = rt
        .cmd(&[
            "run",
            "--detach",
            "--bundle",
            b.path().to_str().unwrap(),
            &b.id,
        ])
        .stdout(std::fs::File::create(b.path().join("stdout")).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .status()
        .unwrap();
    (
        st.success(),
        std::fs::read_to_string(&err_path).unwrap_or_default(),
    )
}

#[test]
fn cve_2025_52881_sysctls_are_written_to_the_real_procfs_file() {
    // A createContainer hook runs in the container's mount namespace right before sysctls
    // are written — where a racing container with shared mounts could act. It mounts a decoy
    // over the sysctl's file, in the host's /proc view and in the container's.
    let setup = |b: &mut Bundle| {
        let decoy = b.path().join("decoy");
        std::fs::write(&decoy, "decoy").unwrap();
        let file = "proc/sys/net/ipv4/ip_unprivileged_port_start";
        let hook = format!(
            "mount --bind {d} /{file} && mount --bind {d} {r}/{file}",
            d = decoy.display(),
            r = b.rootfs().display()
        );
        b.config["hooks"] =
            json!({"createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", hook]}]});
        b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_unprivileged_port_start": "80"});
        decoy
    };
    // The value the container's network namespace really has, read from the host.
    let real = |rt: &Husk, id: &str| -> String {
        let pid = rt.state(id)["pid"].as_i64().unwrap();
        let out = Command::new("nsenter")
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .args(["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"])
            .output()
            .unwrap();
        text(&out.stdout).trim().to_string()
    };
    let h = Husk::new();
    let mut b = Bundle::sh("exec sleep 60");
    let decoy = setup(&mut b);
    h.run_detached(&b);
    assert_eq!(
        std::fs::read_to_string(&decoy).unwrap(),
        "decoy",
        "the sysctl went to the decoy"
    );
    assert_eq!(real(&h, &b.id), "80", "the sysctl was not applied");
    let r = runc();
    let mut b = Bundle::sh("exec sleep 60");
    let decoy = setup(&mut b);
    let (started, err) = try_detached(&r, &b);
    let applied = if started {
        real(&r, &b.id)
    } else {
        String::new()
    };
    eprintln!(
        "runc {}, sysctl under a decoy mount: started {started}, decoy now {:?}, real value {applied:?}; {}",
        runc_version(),
        std::fs::read_to_string(&decoy).unwrap(),
        err.trim()
    );
}

/// An image whose /proc is its own directory with `self` pointing at the container's init
/// (the spec mounts procfs at /realproc instead): a /proc that redirects.
fn with_redirecting_proc(b: &mut Bundle) {
    for m in b.config["mounts"].as_array_mut().unwrap() {
        if m["destination"] == "/proc" {
            m["destination"] = json!("/realproc");
        }
    }
    std::fs::create_dir_all(b.rootfs().join("realproc")).unwrap();
    std::os::unix::fs::symlink("/realproc/1", b.rootfs().join("proc/self")).unwrap();
    b.config["process"]["oomScoreAdj"] = json!(100);
}

#[test]
fn cve_2025_52881_exec_oom_score_adj_is_the_exec_process_own() {
    let process = |adj: i32| {
        json!({"args": ["cat", "/realproc/self/oom_score_adj"], "cwd": "/", "oomScoreAdj": adj,
               "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"]})
    };
    let adj_of = |rt: &Husk, id: &str| -> String {
        let pid = rt.state(id)["pid"].as_i64().unwrap();
        std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
            .unwrap_or_else(|e| format!("({e})"))
            .trim()
            .to_string()
    };
    let exec_with = |rt: &Husk, b: &Bundle, adj: i32| -> Output {
        let p = b.path().join(format!("process-{adj}.json"));
        std::fs::write(&p, process(adj).to_string()).unwrap();
        let mut c = rt.cmd(&["exec", "--process", p.to_str().unwrap(), &b.id]);
        within(&mut c, std::time::Duration::from_secs(20))
    };
    let h = Husk::new();
    let mut b = Bundle::sh("exec sleep 60");
    with_redirecting_proc(&mut b);
    h.run_detached(&b);
    let out = exec_with(&h, &b, 500);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "500",
        "the exec process did not get its oomScoreAdj"
    );
    assert_eq!(
        adj_of(&h, &b.id),
        "100",
        "the write went to the container's init"
    );
    // An ordinary container: the exec's own value, the init's untouched.
    let mut b = Bundle::sh("exec sleep 60");
    b.config["process"]["oomScoreAdj"] = json!(100);
    std::fs::create_dir_all(b.rootfs().join("realproc")).unwrap();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/realproc", "type": "proc", "source": "proc"}));
    h.run_detached(&b);
    let out = exec_with(&h, &b, 300);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "300");
    assert_eq!(adj_of(&h, &b.id), "100");
    // runc on the redirecting /proc.
    let r = runc();
    let mut b = Bundle::sh("exec sleep 60");
    with_redirecting_proc(&mut b);
    let (started, err) = try_detached(&r, &b);
    if !started {
        eprintln!(
            "runc {}, redirecting /proc: not started: {err}",
            runc_version()
        );
        return;
    }
    let out = exec_with(&r, &b, 500);
    eprintln!(
        "runc {}, exec oomScoreAdj 500 with /proc/self -> /realproc/1: exit {:?}, exec saw {:?}, init now {}; {}",
        runc_version(),
        out.status.code(),
        text(&out.stdout).trim(),
        adj_of(&r, &b.id),
        text(&out.stderr).trim()
    );
}

/// Makes `cmd` start with `dir` open (without close-on-exec) at each fd of `at`: a caller that
/// leaks directory handles of the host into the runtime, as runc once leaked its own
/// /sys/fs/cgroup handle into `runc init`.
fn leaking(cmd: &mut Command, dir: &Path, at: &[i32]) {
    let fd: OwnedFd = std::fs::File::open(dir).unwrap().into();
    let at = at.to_vec();
    // SAFETY: only dup2 and fcntl (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for n in &at {
                // dup2 onto itself would keep close-on-exec: clear it instead.
                let r = if fd.as_raw_fd() == *n {
                    libc::fcntl(*n, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd.as_raw_fd(), *n)
                };
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// A host directory holding a secret the container must never read.
fn host_secret() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("secret"), "host-secret").unwrap();
    d
}

/// A busybox bundle that also holds the `fds` probe at /fds.
fn probe_bundle(args: &[&str]) -> Bundle {
    let b = Bundle::busybox(args);
    std::fs::copy(fixture_binary("fds"), b.rootfs().join("fds")).unwrap();
    b
}

/// The fd numbers the probe listed.
fn fds_of(out: &str) -> BTreeSet<i32> {
    out.lines()
        .filter_map(|l| l.strip_prefix("fd "))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect()
}

fn run_fg(rt: &Husk, b: &Bundle, leak: Option<(&Path, &[i32])>, extra: &[&str]) -> Output {
    b.write();
    rt.track(&b.id);
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    args.extend(["--bundle", b.path().to_str().unwrap(), &b.id]);
    let mut cmd = rt.cmd(&args);
    if let Some((dir, at)) = leak {
        leaking(&mut cmd, dir, at);
    }
    cmd.output().unwrap()
}

/// `exec [flags] <id> <cmd...>`, optionally from a leaking caller.
fn exec(
    rt: &Husk,
    id: &str,
    flags: &[&str],
    cmd: &[&str],
    leak: Option<(&Path, &[i32])>,
) -> Output {
    let mut args = vec!["exec"];
    args.extend_from_slice(flags);
    args.push(id);
    args.extend_from_slice(cmd);
    let mut c = rt.cmd(&args);
    if let Some((dir, at)) = leak {
        leaking(&mut c, dir, at);
    }
    c.output().unwrap()
}

/// The fds a caller leaks in these tests: a host directory at each.
const LEAKED: [i32; 5] = [5, 6, 7, 8, 9];

#[test]
fn cve_2024_21626_no_fd_of_the_runtime_reaches_the_container() {
    let h = Husk::new();
    let secret = host_secret();
    let leak = Some((secret.path(), &LEAKED[..]));
    // create + start (run), from a caller leaking host directories
    let b = probe_bundle(&["/fds"]);
    let out = run_fg(&h, &b, leak, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        fds_of(&text(&out.stdout)),
        BTreeSet::from([0, 1, 2]),
        "run: {}",
        text(&out.stdout)
    );
    // --preserve-fds 1: fd 3 goes in on purpose, nothing else does
    let b = probe_bundle(&["/fds"]);
    let out = run_fg(
        &h,
        &b,
        Some((secret.path(), &[3, 7])),
        &["--preserve-fds", "1"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        fds_of(&text(&out.stdout)),
        BTreeSet::from([0, 1, 2, 3]),
        "run --preserve-fds 1: {}",
        text(&out.stdout)
    );
    // exec into a running container, from a leaking caller
    let b = probe_bundle(&["sleep", "60"]);
    h.run_detached(&b);
    let out = exec(&h, &b.id, &[], &["/fds"], leak);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        fds_of(&text(&out.stdout)),
        BTreeSet::from([0, 1, 2]),
        "exec: {}",
        text(&out.stdout)
    );
    // The same once the container's /proc no longer is procfs (a tmpfs mounted over it, by a
    // startContainer hook for run and from inside the container for exec: what a privileged
    // container can do to itself). Closing fds must not depend on listing the container's
    // /proc/self/fd, which then lists nothing (husk did so before: fds 5-9 reached the
    // container, on run and on exec).
    let mut b = probe_bundle(&["/fds"]);
    b.config["hooks"] = json!({"startContainer": [
        {"path": "/bin/mount", "args": ["mount", "-t", "tmpfs", "tmpfs", "/proc"]}]});
    let out = run_fg(&h, &b, leak, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        fds_of(&text(&out.stdout)),
        BTreeSet::from([0, 1, 2]),
        "run, /proc a tmpfs: {}",
        text(&out.stdout)
    );
    let b = probe_bundle(&["sleep", "60"]);
    h.run_detached(&b);
    let pid = h.state(&b.id)["pid"].as_i64().unwrap();
    let st = Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-m",
            "mount",
            "-t",
            "tmpfs",
            "tmpfs",
            "/proc",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let out = exec(&h, &b.id, &[], &["/fds"], leak);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        fds_of(&text(&out.stdout)),
        BTreeSet::from([0, 1, 2]),
        "exec, /proc a tmpfs: {}",
        text(&out.stdout)
    );
}

/// The working directories that lead through an fd: every low fd number.
fn fd_paths() -> Vec<String> {
    (3..=12).map(|n| format!("/proc/self/fd/{n}")).collect()
}

/// The probe either was refused (one clear error naming process.cwd) or ran inside the
/// container: never with the host's directory as its working directory.
fn assert_confined(what: &str, out: &Output) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        !stdout.contains("host-secret"),
        "{what}: read the host's secret: {stdout}"
    );
    if out.status.success() {
        assert!(
            !stdout.contains("cwd unreachable"),
            "{what}: cwd outside the root: {stdout}"
        );
    } else {
        assert!(
            stderr.contains("process.cwd"),
            "{what}: unclear error: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    }
}

#[test]
fn cve_2024_21626_cwd_through_a_leaked_fd_stays_inside() {
    let h = Husk::new();
    let secret = host_secret();
    let leak = Some((secret.path(), &LEAKED[..]));
    // The spec's process.cwd (attack 1: a hostile image's WORKDIR).
    for cwd in fd_paths() {
        let mut b = probe_bundle(&["/fds", "secret"]);
        b.config["process"]["cwd"] = json!(cwd);
        let out = run_fg(&h, &b, leak, &[]);
        assert_confined(&format!("run with process.cwd {cwd}"), &out);
        assert!(!h.root.path().join(&b.id).exists() || out.status.success());
    }
    // exec --cwd (attack 2), and exec --cwd of a symlink the container planted (attack 3b).
    let mut b = probe_bundle(&[
        "sh",
        "-c",
        "for n in 3 4 5 6 7 8 9 10 11 12; do ln -s /proc/self/fd/$n /tmp/l$n; done; exec sleep 60",
    ]);
    b.config["process"]["cwd"] = json!("/");
    h.run_detached(&b);
    for _ in 0..200 {
        if b.rootfs().join("tmp/l12").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for n in 3..=12 {
        for cwd in [format!("/proc/self/fd/{n}"), format!("/tmp/l{n}")] {
            let out = exec(&h, &b.id, &["--cwd", &cwd], &["/fds", "secret"], leak);
            assert_confined(&format!("exec --cwd {cwd}"), &out);
        }
    }
    // runc, same spec variant (Debian's 1.1.5+deb12u1 carries the CVE-2024-21626 fix).
    let r = runc();
    for cwd in fd_paths() {
        let mut b = probe_bundle(&["/fds", "secret"]);
        b.config["process"]["cwd"] = json!(cwd);
        let out = run_fg(&r, &b, leak, &[]);
        reference(&format!("process.cwd {cwd}"), &out);
    }
    // An ordinary cwd still works, and symlinks inside the image still resolve inside it.
    std::os::unix::fs::symlink("/tmp", b.rootfs().join("tmplink")).unwrap();
    let out = exec(&h, &b.id, &["--cwd", "/tmplink"], &["/fds"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("cwd /tmp\n"),
        "{}",
        text(&out.stdout)
    );
}

/// A bundle using the image's own /dev (the spec mounts no tmpfs there), as a hostile image
/// can ask for.
fn with_image_dev(b: &mut Bundle) {
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["destination"] != "/dev");
}

/// Reads the masked files and says what /dev/null is.
const MASK_PROBE: &str = "for p in /proc/keys /proc/timer_list; do \
    echo \"$p:$(head -c 16 $p 2>&1)\"; done; stat -c '%F %t:%T' /dev/null";

#[test]
fn cve_2025_31133_masks_are_only_ever_the_null_device() {
    let h = Husk::new();
    // (a) A hostile image: its /dev/null is a symlink to a procfs file, and it is the /dev the
    // container uses. Masking must not bind the procfs file over the masked paths.
    let hostile = |b: &mut Bundle| {
        with_image_dev(b);
        let null = b.rootfs().join("dev/null");
        let _ = std::fs::remove_file(&null);
        // A writable procfs file, as in the advisory; this one is the container's own (UTS
        // namespace), so a runtime that falls for it harms nothing here.
        std::os::unix::fs::symlink("/proc/sys/kernel/domainname", &null).unwrap();
    };
    let mut b = Bundle::sh(MASK_PROBE);
    hostile(&mut b);
    let (code, out, err) = h.run_bundle(&b);
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains("Linux"),
        "a masked path shows a procfs file: {out}"
    );
    assert!(out.contains("/proc/keys:\n"), "{out}");
    assert!(out.contains("character special file 1:3"), "{out}");
    let r = runc();
    let mut b = Bundle::sh(MASK_PROBE);
    hostile(&mut b);
    b.write();
    r.track(&b.id);
    reference(
        "image /dev/null -> /proc/sys/kernel/domainname",
        &r.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]),
    );
    // (b) The null device itself swapped: husk masks with the /dev/null it sees while it
    // sets up (before pivot_root); here a procfs file is mounted over it. Refused, clearly.
    let b = Bundle::sh(MASK_PROBE);
    b.write();
    h.track(&b.id);
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind /proc/sys/kernel/ostype /dev/null && exec \"$@\"")
        .arg("sh")
        .arg(&h.bin)
        .arg("--root")
        .arg(h.root.path())
        .args(["run", "--bundle", b.path().to_str().unwrap(), &b.id])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        !stdout.contains("Linux"),
        "masked with a procfs file: {stdout}"
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("not the null device"), "{stderr}");
    assert!(!h.root.path().join(&b.id).exists(), "state left behind");
    assert!(cgroup_dirs(&b.id).is_empty(), "cgroup left behind");
}

/// Runs `b` (a terminal container) with a console socket and returns what the pty printed.
fn run_with_console(rt: &Husk, b: &Bundle) -> (bool, String, String) {
    use std::io::Read;
    let sock_path = b.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    listener.set_nonblocking(true).unwrap();
    b.write();
    rt.track(&b.id);
    let mut child = rt
        .cmd(&[
            "run",
            "--detach",
            "--console-socket",
            sock_path.to_str().unwrap(),
            "--bundle",
            b.path().to_str().unwrap(),
            &b.id,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The runtime may refuse before it connects: then there is no pty to read.
    let conn = loop {
        match listener.accept() {
            Ok((c, _)) => break Some(c),
            Err(_) if child.try_wait().unwrap().is_some() => break None,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    };
    let mut out = String::new();
    if let Some(conn) = conn {
        conn.set_nonblocking(false).unwrap();
        if let Ok(master) = husk_runtime::tty::recv_fd(&conn) {
            let status = child.wait().unwrap();
            if status.success() {
                let mut f = std::fs::File::from(master);
                let mut buf = [0u8; 4096];
                while let Ok(n) = f.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        }
    }
    let res = child.wait_with_output().unwrap();
    (
        res.status.success(),
        out.replace("\r\n", "\n"),
        text(&res.stderr),
    )
}

/// What /dev/console is, whether anything got mounted on the procfs file the image's
/// /dev/console points at (a writable one — the container's own UTS namespace, so a runtime
/// that falls for it harms nothing here), and that file's content (a pty bound there would
/// block the read: bounded).
const CONSOLE_PROBE: &str = "stat -c '%F %t' /dev/console; \
    grep -c ' /proc/sys/kernel/domainname ' /proc/self/mountinfo; \
    timeout 2 cat /proc/sys/kernel/domainname; true";

#[test]
fn cve_2025_52565_the_console_is_bound_only_onto_dev_console() {
    // A hostile image whose /dev/console is a symlink to a procfs file (what a racing
    // container would swap in), used as /dev: the pty must land on /dev/console itself.
    let hostile = |b: &mut Bundle| {
        with_image_dev(b);
        b.config["process"]["terminal"] = json!(true);
        std::os::unix::fs::symlink(
            "/proc/sys/kernel/domainname",
            b.rootfs().join("dev/console"),
        )
        .unwrap();
    };
    let h = Husk::new();
    let mut b = Bundle::sh(CONSOLE_PROBE);
    hostile(&mut b);
    let (ok, out, err) = run_with_console(&h, &b);
    assert!(ok, "{err}");
    assert_eq!(out, "character special file 88\n0\n(none)\n", "{err}");
    let r = runc();
    let mut b = Bundle::sh(CONSOLE_PROBE);
    hostile(&mut b);
    let (ok, out, err) = run_with_console(&r, &b);
    eprintln!(
        "runc {}, image /dev/console -> /proc/sys/kernel/domainname: ok={ok}\n  pty: {}\n  stderr: {}",
        runc_version(),
        out.trim().replace('\n', " | "),
        err.trim()
    );
}

#[test]
fn cve_2019_5736_the_host_binary_is_unreachable_from_the_container() {
    // GHSA-gxmr-w5mj-v8hh: the container overwrote the runtime binary through
    // /proc/<pid>/exe of the runtime's process that joined it.
    let h = Husk::new();
    let b = Bundle::sh("exec sleep 60");
    h.create(&b);
    let pid = h.state(&b.id)["pid"].as_i64().unwrap();
    // While the init waits for start it is husk code. The attack: hold its exe, wait until
    // nothing executes it any more, then reopen it for writing. It must not be the binary on
    // disk, and the reopen must fail (read-only mount: EROFS; memfd fallback: seals, EPERM).
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_ne!(exe, std::path::Path::new(husk_bin()), "{}", exe.display());
    let held = nix::fcntl::open(
        format!("/proc/{pid}/exe").as_str(),
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    let before = std::fs::read(husk_bin()).unwrap();
    h.ok(&["delete", "--force", &b.id]);
    let held_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&held));
    // Other tests may be executing husk right now (ETXTBSY then); the protection itself is the
    // read-only mount under the handle, or the memfd's write seal.
    let ro_mount = nix::sys::statvfs::statvfs(held_path.as_str())
        .unwrap()
        .flags()
        .contains(nix::sys::statvfs::FsFlags::ST_RDONLY);
    let sealed = exe.to_string_lossy().starts_with("/memfd:husk");
    assert!(ro_mount || sealed, "{}", exe.display());
    let err = std::fs::OpenOptions::new()
        .write(true)
        .open(&held_path)
        .unwrap_err();
    assert!(
        matches!(
            err.raw_os_error(),
            Some(libc::EROFS) | Some(libc::EPERM) | Some(libc::ETXTBSY)
        ),
        "{err}"
    );
    assert!(std::fs::read(husk_bin()).unwrap() == before);
    // The on-disk binary's mode and content are unchanged (and it is not open for writing).
    let meta = std::fs::metadata(husk_bin()).unwrap();
    assert!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0);
}
