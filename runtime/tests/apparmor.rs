//! AppArmor on a node that has it (Debian's and Ubuntu's kernels do), husk against runc on the
//! same bundle: `husk features` says it is enabled, a profile that denies a file write is
//! enforced in the container for its init and for an exec'd process (which runs under the
//! container's profile unless it names its own), and a profile that is not loaded is one clear
//! error with nothing left behind.
//!
//! This host has no AppArmor: these tests run in the node guest (`scripts/v2-guest.sh`, see
//! README) and fail loudly anywhere else. The reference is sid's runc, or `HUSK_RUNC`.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

const HOW: &str = "run them in the node guest: scripts/v2-guest.sh";
const PROFILE: &str = "husk-test-deny-tmp-write";

fn require_apparmor() {
    require_root();
    assert!(
        husk_runtime::security::apparmor_enabled(),
        "these tests need AppArmor enabled: {HOW}"
    );
}

/// Loads (or replaces) the test profile: everything allowed but writes below /tmp.
fn load_profile() {
    static LOADED: std::sync::Once = std::sync::Once::new();
    LOADED.call_once(|| {
        let p = std::env::temp_dir().join(format!("{PROFILE}.profile"));
        std::fs::write(
            &p,
            format!(
                "profile {PROFILE} flags=(attach_disconnected,mediate_deleted) {{\n  file,\n  capability,\n  network,\n  signal,\n  deny /tmp/** w,\n}}\n"
            ),
        )
        .unwrap();
        let out = Command::new("apparmor_parser")
            .arg("-r")
            .arg(&p)
            .output()
            .expect("apparmor_parser (the apparmor package)");
        assert!(
            out.status.success(),
            "apparmor_parser -r {}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

fn husk() -> Husk {
    require_apparmor();
    Husk::new()
}

fn runc() -> Husk {
    require_apparmor();
    let bin = std::env::var("HUSK_RUNC").unwrap_or_else(|_| "/opt/runc-sid/usr/sbin/runc".into());
    assert!(
        Path::new(&bin).exists(),
        "no reference runc at {bin}: {HOW}"
    );
    Husk::with_bin(bin)
}

fn twin(b: &Bundle) -> Bundle {
    let mut t = Bundle::busybox(&["true"]);
    t.config = b.config.clone();
    t.config["linux"]["cgroupsPath"] = json!(format!("/husk-test/{}", t.id));
    t
}

#[test]
fn features_report_apparmor_enabled() {
    for x in [husk(), runc()] {
        let f: Value = serde_json::from_str(&x.ok(&["features"])).unwrap();
        assert_eq!(
            f["linux"]["apparmor"]["enabled"],
            true,
            "{}: {f}",
            x.bin.display()
        );
    }
}

const PROBE: &str = "cat /proc/self/attr/current; \
    echo x > /tmp/f 2>/dev/null && echo tmp-written || echo tmp-denied; \
    echo y > /root/g && echo root-written";

#[test]
fn a_profile_denying_a_write_is_enforced_for_init_and_exec() {
    let (h, r) = (husk(), runc());
    load_profile();
    let mut b = Bundle::sh(&format!("{PROBE}; exec sleep 600"));
    b.config["process"]["apparmorProfile"] = json!(PROFILE);
    let b2 = twin(&b);
    let mut seen = vec![];
    for (x, b) in [(&h, &b), (&r, &b2)] {
        x.run_detached(b);
        let mut init = String::new();
        for _ in 0..500 {
            init = std::fs::read_to_string(b.path().join("stdout")).unwrap_or_default();
            if init.contains("root-written") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // An exec with no profile of its own runs under the container's.
        let inherited = x.ok(&["exec", &b.id, "sh", "-c", PROBE]);
        // One that names a profile gets that one.
        let process = json!({"args": ["sh", "-c", PROBE], "cwd": "/", "user": {"uid": 0, "gid": 0},
            "env": ["PATH=/bin"], "apparmorProfile": "unconfined"});
        let pf = b.path().join("process.json");
        std::fs::write(&pf, process.to_string()).unwrap();
        let own = x.ok(&["exec", "--process", pf.to_str().unwrap(), &b.id]);
        x.ok(&["delete", "--force", &b.id]);
        seen.push(format!(
            "init:\n{init}exec:\n{inherited}exec unconfined:\n{own}"
        ));
    }
    let want = format!(
        "init:\n{PROFILE} (enforce)\ntmp-denied\nroot-written\n\
         exec:\n{PROFILE} (enforce)\ntmp-denied\nroot-written\n\
         exec unconfined:\nunconfined\ntmp-written\nroot-written\n"
    );
    assert_eq!(seen[0], want, "husk");
    assert_eq!(seen[0], seen[1], "husk (left) and runc (right) differ");
}

#[test]
fn a_profile_that_is_not_loaded_is_one_clear_error() {
    let (h, r) = (husk(), runc());
    let mut b = Bundle::sh("true");
    b.config["process"]["apparmorProfile"] = json!("husk-test-no-such-profile");
    let b2 = twin(&b);
    for (x, b) in [(&h, &b), (&r, &b2)] {
        b.write();
        x.track(&b.id);
        let out = x.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{}: started it", x.bin.display());
        if x.bin.ends_with("husk") {
            assert!(
                err.contains("\"husk-test-no-such-profile\" is not loaded"),
                "{err}"
            );
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(!x.root.path().join(&b.id).exists(), "state left behind");
        }
        let cg = Path::new("/sys/fs/cgroup/husk-test").join(&b.id);
        assert!(
            !cg.exists(),
            "{}: {} left behind",
            x.bin.display(),
            cg.display()
        );
    }
}
