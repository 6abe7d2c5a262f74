//! The node installer against the test bed's containerd: before it, handler `husk` is unknown;
//! after it (and a containerd restart), a pod runs on `husk`.

use husk_e2e::bed::{target_dir, TestBed, BUSYBOX};
use husk_e2e::cri::{v1 as cri, Cri};
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
    // The bed's containerd, whichever HUSK_CONTAINERD selects (on a node the installer asks
    // the API server or `containerd --version`).
    let version = husk_e2e::bed::containerd_version(&bed.containerd_bin);
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
        "--containerd-version",
        &version,
    ];
    let out = installer(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = std::fs::read_to_string(d.join("config.toml")).unwrap();
    // husk's handler gets the cgroup driver of the bed's runc handler, whichever registration.
    let runc_systemd = first.contains("runtimes.runc.options]\n  SystemdCgroup = true");
    let said = String::from_utf8_lossy(&out.stdout);
    let driver = if runc_systemd { "systemd" } else { "cgroupfs" };
    assert!(
        said.contains(&format!(
            "cgroup driver: {driver} (SystemdCgroup = {runc_systemd}), as runtime handler `runc` (runc) uses"
        )),
        "{said}"
    );
    assert!(
        first.contains(&format!(
            "runtimes.husk.options]\nSystemdCgroup = {runc_systemd}\n"
        )),
        "{first}"
    );
    // containerd 2.x before 2.2.7 / 2.3.4 asks only runc-type handlers for their features;
    // 1.x's CRI ignores runtime_path (containerd#8207: a runc-type husk handler's pods would
    // run on runc, which the uninstall's "still run" check below would catch).
    let runc_type = format!("runtime_path = \"{bin}/containerd-shim-husk-v2\"");
    let release = husk_e2e::bed::containerd_release(&bed.containerd_bin);
    let native = release.0 < 2 || husk_e2e::bed::introspects_every_runtime_type(release);
    assert_eq!(
        !first.contains(&runc_type),
        native,
        "containerd {version}: {first}"
    );
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
    // Uninstall words, not install's ("picks up the handler on its next start").
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("drops the handler on its next start") && !said.contains("picks up"),
        "{said}"
    );
    let after = std::fs::read_to_string(d.join("config.toml")).unwrap();
    assert!(!after.contains("io.containerd.husk.v2"), "{after}");
    assert!(!d.join("bin/containerd-shim-husk-v2").exists());
}

/// The static binaries scripts/lib.sh `build_static` makes for the installer image.
fn static_bin_dir() -> std::path::PathBuf {
    let dir = target_dir().join("../static/x86_64-unknown-linux-gnu/release");
    assert!(
        dir.join("husk-node-installer").exists(),
        "{} holds no static build: the README's test command builds it (scripts/lib.sh build_static)",
        dir.display()
    );
    dir
}

/// Runs the installer image in a pod on `runc` (as the chart's DaemonSet does on a node whose
/// default runtime is runc), with the test bed's directory mounted where the host paths would be
/// and the host's PID namespace; returns the container's exit code and its log.
fn run_installer_pod(c: &mut Cri, bed: &TestBed, name: &str, args: &[&str]) -> (i32, String) {
    let logs = bed.dir.path().join(format!("logs-{name}"));
    let mut pod_cfg = Cri::pod_config(name, &logs);
    let node_pid = cri::NamespaceOption {
        pid: cri::NamespaceMode::Node as i32,
        ..Default::default()
    };
    pod_cfg.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(node_pid.clone()),
            privileged: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let pod = c.run_pod(&pod_cfg, "runc");
    let mut cfg = Cri::container_config(name, INSTALLER_IMAGE, &[]);
    cfg.command = std::iter::once("/husk-node-installer")
        .chain(args.iter().copied())
        .map(String::from)
        .collect();
    cfg.mounts = vec![cri::Mount {
        container_path: "/host".into(),
        host_path: bed.dir.path().display().to_string(),
        ..Default::default()
    }];
    cfg.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            privileged: true,
            namespace_options: Some(node_pid),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = c.create_container(&pod, &cfg, &pod_cfg).unwrap();
    c.start_container(&id).unwrap();
    let code = c.wait_exited(&id).exit_code;
    let log = std::fs::read_to_string(logs.join(format!("{name}.log"))).unwrap_or_default();
    c.remove_container(&id);
    c.stop_pod(&pod);
    c.remove_pod(&pod);
    (code, log)
}

const INSTALLER_IMAGE: &str = "docker.io/husk/husk-installer:e2e";

#[test]
fn installer_image_from_scratch_installs_a_static_shim_that_runs_pods() {
    let mut bed = TestBed::start_with(false);
    // The image: FROM scratch, the two static binaries and nothing else.
    let rootfs = bed.dir.path().join("installer-rootfs");
    husk_e2e::images::installer_rootfs(&rootfs, &static_bin_dir());
    let mut files: Vec<_> = std::fs::read_dir(&rootfs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["containerd-shim-husk-v2", "husk-node-installer"]);
    let archive = husk_e2e::images::build_oci_archive(
        &rootfs,
        INSTALLER_IMAGE,
        &husk_e2e::images::installer_image_config(),
        bed.dir.path(),
    );
    let mut c = bed.cri(&[BUSYBOX]);
    bed.import_archive(husk_e2e::bed::CRI_NS, &archive);

    let common = [
        "--config",
        "/host/config.toml",
        "--bin-dir",
        "/host/bin",
        "--drop-in-dir",
        "/host/conf.d",
    ];
    // As the chart does: the shim's path on the host for a runc-type registration's
    // runtime_path (the pod sees the host's directory under /host).
    let runtime_path = bed
        .dir
        .path()
        .join("bin/containerd-shim-husk-v2")
        .display()
        .to_string();
    let mut install = vec![
        "install",
        "--shim",
        "/containerd-shim-husk-v2",
        "--runtime-path",
        &runtime_path,
    ];
    install.extend(common);
    let (code, log) = run_installer_pod(&mut c, &bed, "install", &install);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("registered runtime handler `husk`") && log.contains("cgroup driver: "),
        "{log}"
    );
    let installed = bed.dir.path().join("bin/containerd-shim-husk-v2");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(static_bin_dir().join("containerd-shim-husk-v2")).unwrap(),
        "the image's static shim is what lands on the node"
    );

    // containerd loads the handler on restart; a pod then runs on the static shim.
    bed.stop_containerd();
    bed.start_containerd();
    let mut c = Cri::connect(&bed.socket());
    let pod_cfg = Cri::pod_config("on-static-shim", &bed.dir.path().join("logs"));
    let pod = c.run_pod(&pod_cfg, "husk");
    let id = c
        .create_container(
            &pod,
            &Cri::container_config("app", BUSYBOX, &["sh", "-c", "exit 4"]),
            &pod_cfg,
        )
        .unwrap();
    c.start_container(&id).unwrap();
    assert_eq!(c.wait_exited(&id).exit_code, 4);
    let shim_exe = bed
        .shim_pids()
        .iter()
        .filter_map(|p| std::fs::read_link(format!("/proc/{p}/exe")).ok())
        .collect::<Vec<_>>();
    assert!(
        shim_exe.iter().any(|e| e == &installed),
        "the pod's shim runs from {} ({shim_exe:?})",
        installed.display()
    );

    // Uninstall from the image, with the host's PID namespace: it sees the pod's shim and
    // refuses; after the pod is gone it removes handler and binary.
    let mut uninstall = vec!["uninstall"];
    uninstall.extend(common);
    let (code, log) = run_installer_pod(&mut c, &bed, "uninstall", &uninstall);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("still run"), "{log}");
    c.remove_container(&id);
    c.stop_pod(&pod);
    c.remove_pod(&pod);
    uninstall.push("--force");
    let (code, log) = run_installer_pod(&mut c, &bed, "uninstall-force", &uninstall);
    assert_eq!(code, 0, "{log}");
    assert!(!installed.exists());
    let after = std::fs::read_to_string(bed.dir.path().join("config.toml")).unwrap();
    assert!(!after.contains("io.containerd.husk.v2"), "{after}");
}
