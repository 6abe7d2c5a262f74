//! husk against runc on the same bundle: what the container sees and what the commands print
//! must match.

mod common;
use common::*;
use serde_json::json;

/// What a process sees of its container, in a form both runtimes must agree on.
const PROBE: &str = "id; hostname; grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status; \
    cat /proc/self/uid_map; ls -A /dev | sort | tr '\\n' ' '; echo; \
    awk '$2==\"/\"||$2==\"/proc\"||$2==\"/sys\"||$2==\"/dev\"||$2==\"/dev/pts\"||$2==\"/dev/shm\"||$2==\"/dev/mqueue\"||$2==\"/sys/fs/cgroup\"{print $2, $3}' /proc/self/mounts | sort; \
    for p in /proc/keys /proc/timer_list /sys/firmware; do [ -r $p ] && wc -c < $p; done; \
    echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo sys-rw || echo sys-ro; \
    touch /rootfile 2>/dev/null && echo root-rw || echo root-ro; ulimit -n; umask; pwd; echo $HOME; exit 3";

#[test]
fn the_container_sees_the_same_thing() {
    let (h, r) = (Husk::new(), runc());
    let mut b = Bundle::sh(PROBE);
    b.config["root"]["readonly"] = json!(true);
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [1000, 5]});
    b.config["process"]["cwd"] = json!("/tmp");
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 2048, "soft": 1024}]);
    let (hc, hout, herr) = h.run_bundle(&b);
    let mut b2 = Bundle::sh(PROBE);
    b2.config = b.config.clone();
    b2.config["linux"]["cgroupsPath"] = json!(format!("/husk-test/{}", b2.id));
    let (rc, rout, rerr) = r.run_bundle(&b2);
    assert_eq!((hc, rc), (3, 3), "husk: {herr}\nrunc: {rerr}");
    assert_eq!(hout, rout, "husk stderr: {herr}\nrunc stderr: {rerr}");
}

#[test]
fn state_list_and_errors_match_runc() {
    let (h, r) = (Husk::new(), runc());
    let b = Bundle::sh("exec sleep 60");
    let mut b2 = Bundle::sh("exec sleep 60");
    b2.config["linux"]["cgroupsPath"] = json!(format!("/husk-test/{}", b2.id));
    h.create(&b);
    r.create(&b2);
    let hs = h.state(&b.id);
    let rs = r.state(&b2.id);
    let keys = |v: &serde_json::Value| {
        v.as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "annotations")
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&hs), keys(&rs), "state JSON fields");
    assert_eq!(
        (hs["status"].as_str(), rs["status"].as_str()),
        (Some("created"), Some("created"))
    );
    for (x, id) in [(&h, &b.id), (&r, &b2.id)] {
        x.ok(&["start", id]);
        x.wait_status(id, "running");
        // Both refuse to delete a running container without --force, and to start it twice.
        assert!(!x.run(&["delete", id]).status.success());
        assert!(!x.run(&["start", id]).status.success());
        let list: serde_json::Value =
            serde_json::from_str(&x.ok(&["list", "--format", "json"])).unwrap();
        assert_eq!(list.as_array().unwrap().len(), 1);
        let pids: Vec<i64> = serde_json::from_str(&x.ok(&["ps", "--format", "json", id])).unwrap();
        assert_eq!(pids.len(), 1);
        x.ok(&["pause", id]);
        assert_eq!(x.state(id)["status"], "paused");
        x.ok(&["resume", id]);
        x.ok(&["kill", id, "KILL"]);
        x.wait_status(id, "stopped");
        x.ok(&["delete", id]);
        assert!(!x.run(&["state", id]).status.success());
        // Deleting what does not exist: an error, unless forced.
        assert!(!x.run(&["delete", id]).status.success());
        assert!(x.run(&["delete", "--force", id]).status.success());
    }
}

/// Every directory named `leaf` in any cgroup hierarchy of this host (v1 controllers and the
/// cgroup2 mount), found by walking from each mount point.
fn cgroup_dirs_named(leaf: &str) -> Vec<std::path::PathBuf> {
    let mut found = vec![];
    let mut stack: Vec<std::path::PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| {
            let fs = l.split(" - ").nth(1).and_then(|r| r.split(' ').next());
            matches!(fs, Some("cgroup") | Some("cgroup2"))
        })
        .filter_map(|l| l.split(' ').nth(4).map(std::path::PathBuf::from))
        .collect();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if e.file_name() == leaf {
                    found.push(e.path());
                }
                stack.push(e.path());
            }
        }
    }
    found.sort();
    found
}

/// What containerd's CRI sends for a `.slice` pod parent on any node (issue: every pod failed on
/// husk): `slice:prefix:name`. Without `--systemd-cgroup` runc takes it as one literal, relative
/// cgroup directory below its own cgroup in each hierarchy, and removes it on delete. husk must
/// make the same directories and leave none behind.
#[test]
fn systemd_form_cgroups_path_is_a_literal_directory_without_systemd_cgroup() {
    let (h, r) = (Husk::new(), runc());
    let mut seen = vec![];
    for (x, name) in [(&h, "husk"), (&r, "runc")] {
        let b = Bundle::sh("cat /proc/self/cgroup; exec sleep 60");
        let mut b = b;
        let leaf = format!("test.slice:cri-containerd:{}", b.id);
        b.config["linux"]["cgroupsPath"] = json!(leaf);
        h.track(&b.id);
        x.create(&b);
        x.ok(&["start", &b.id]);
        x.wait_status(&b.id, "running");
        let dirs = cgroup_dirs_named(&leaf);
        assert!(!dirs.is_empty(), "{name}: no cgroup directory named {leaf}");
        // The container's own processes are in it.
        let pid = x.state(&b.id)["pid"].as_i64().unwrap();
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert!(own.contains(&leaf), "{name}: /proc/{pid}/cgroup: {own}");
        // Where, relative to the hierarchy: the same places for both runtimes. On a hybrid host runc
        // also joins the cgroup2 mount (/sys/fs/cgroup/unified); husk places containers only in
        // the v1 hierarchies there, so that one is not compared.
        seen.push(
            dirs.iter()
                .filter(|d| !d.starts_with("/sys/fs/cgroup/unified"))
                .map(|d| d.display().to_string().replace(&b.id, "ID"))
                .collect::<Vec<_>>(),
        );
        x.ok(&["kill", &b.id, "KILL"]);
        x.wait_status(&b.id, "stopped");
        x.ok(&["delete", &b.id]);
        assert_eq!(
            cgroup_dirs_named(&leaf),
            Vec::<std::path::PathBuf>::new(),
            "{name}: cgroup directories left after delete"
        );
    }
    assert_eq!(
        seen[0], seen[1],
        "husk (left) and runc (right) cgroup directories differ"
    );
}

/// `--systemd-cgroup` on a host without systemd: one clear error, nothing left behind (runc:
/// "systemd not running on this host, cannot use systemd cgroups manager").
#[test]
fn systemd_cgroup_flag_without_systemd_is_one_clear_error() {
    assert!(
        !std::path::Path::new("/run/systemd/system").exists(),
        "this test is for hosts without systemd as PID 1"
    );
    let h = Husk::new();
    let mut b = Bundle::sh("true");
    b.config["linux"]["cgroupsPath"] = json!(format!("test.slice:husk:{}", b.id));
    b.write();
    let out = h.run(&[
        "--systemd-cgroup",
        "create",
        "--bundle",
        b.path().to_str().unwrap(),
        &b.id,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("systemd is not running on this host"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!h.root.path().join(&b.id).exists(), "state dir left behind");
}
