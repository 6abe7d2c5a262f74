//! The node installer against the test bed's containerd: before it, handler `husk` is unknown;
//! after it (and a containerd restart), a pod runs on `husk`.

use husk_e2e::bed::{target_dir, TestBed, BUSYBOX};
use husk_e2e::cri::Cri;
use std::process::Command;

fn installer(args: &[&str]) -> std::process::Output {
    let bin = target_dir().join("husk-node-installer");
    assert!(bin.exists(), "{} is not built", bin.display());
    Command::new(bin).args(args).output().unwrap()
}

#[test]
fn installer_registers_husk_and_a_pod_runs_on_it() {
    let mut bed = TestBed::start_with(false);
    let mut c = bed.cri(&[BUSYBOX]);
    let pod_cfg = Cri::pod_config("inst", &bed.dir.path().join("logs"));
    let req = husk_e2e::cri::v1::RunPodSandboxRequest {
        config: Some(pod_cfg.clone()),
        runtime_handler: "husk".into(),
    };
    let err = c
        .call(|mut r| async move { r.run_pod_sandbox(req).await })
        .unwrap_err();
    assert!(err.message().contains("husk"), "{}", err.message());

    let d = bed.dir.path().to_path_buf();
    let config = d.join("config.toml").display().to_string();
    let bin = d.join("bin").display().to_string();
    let shim = husk_e2e::bed::shim_binary().display().to_string();
    let dropin = d.join("conf.d").display().to_string();
    let args = [
        "install",
        "--config",
        &config,
        "--bin-dir",
        &bin,
        "--shim",
        &shim,
        "--drop-in-dir",
        &dropin,
    ];
    let out = installer(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = std::fs::read_to_string(d.join("config.toml")).unwrap();
    // Twice = once.
    assert!(installer(&args).status.success());
    assert_eq!(
        std::fs::read_to_string(d.join("config.toml")).unwrap(),
        first
    );
    assert!(d.join("config.toml.husk-backup").exists());

    bed.stop_containerd();
    bed.start_containerd();
    let mut c = Cri::connect(&bed.socket());
    let pod = c.run_pod(&pod_cfg, "husk");
    let id = c
        .create_container(
            &pod,
            &Cri::container_config("app", BUSYBOX, &["sh", "-c", "exit 5"]),
            &pod_cfg,
        )
        .unwrap();
    c.start_container(&id).unwrap();
    assert_eq!(c.wait_exited(&id).exit_code, 5);
    // The pod's shim still runs: uninstall refuses without --force.
    let un = [
        "uninstall",
        "--config",
        &config,
        "--bin-dir",
        &bin,
        "--drop-in-dir",
        &dropin,
    ];
    let out = installer(&un);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("still run"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.remove_container(&id);
    c.stop_pod(&pod);
    c.remove_pod(&pod);
    let mut force = un.to_vec();
    force.push("--force");
    let out = installer(&force);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = std::fs::read_to_string(d.join("config.toml")).unwrap();
    assert!(!after.contains("io.containerd.husk.v2"), "{after}");
    assert!(!d.join("bin/containerd-shim-husk-v2").exists());
}
