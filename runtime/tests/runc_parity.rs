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
