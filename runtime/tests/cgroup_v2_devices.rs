//! The cgroup v2 device program on a real kernel: this machine mounts an (otherwise empty)
//! cgroup2 hierarchy at /sys/fs/cgroup/unified, where a BPF_PROG_TYPE_CGROUP_DEVICE program
//! can be attached and enforced even though the controllers live on v1.

mod common;
use common::require_root;
use std::path::PathBuf;

fn v2_root() -> PathBuf {
    for p in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        let st = nix::sys::statfs::statfs(p).unwrap();
        if st.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC {
            return PathBuf::from(p);
        }
    }
    panic!("no cgroup2 hierarchy is mounted on this machine");
}

#[test]
fn device_rules_are_enforced_by_the_bpf_program() {
    require_root();
    let dir = v2_root().join(format!("husk-test-devices-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    // containerd's shape: deny all, then allow /dev/zero; /dev/null is not allowed.
    let rules: Vec<oci_spec::runtime::LinuxDeviceCgroup> = serde_json::from_str(r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":5,"access":"rwm"}]"#).unwrap();
    husk_runtime::cgroups::devices::bpf::apply(&dir, &rules).unwrap();
    // Applying again replaces the program instead of stacking a second one.
    husk_runtime::cgroups::devices::bpf::apply(&dir, &rules).unwrap();
    assert_eq!(
        husk_runtime::cgroups::devices::bpf::attached_names(&dir).unwrap(),
        ["husk_devices"]
    );
    let probe = format!(
        "echo $$ > {}/cgroup.procs; [ \"$(head -c1 /dev/zero | wc -c)\" = 1 ] && echo zero-ok || echo zero-denied; cat /dev/null && echo null-ok || echo null-denied",
        dir.display()
    );
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", &probe])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir(&dir);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "zero-ok\nnull-denied\n"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
