//! The installer on containerd config fixtures: version 2 (containerd 1.6/1.7) and 3 (2.x).

use husk_installer::*;
use std::path::Path;

const V2_WITH_RUNC: &str = r#"version = 2
# operator's comment stays
root = "/var/lib/containerd"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
"#;

fn installed(text: &str, schema: Schema) -> bool {
    let doc = parse(Path::new("c"), text).unwrap();
    husk_driver(&doc, schema).is_some()
}

/// The driver husk's handler got in the plan's output (the config or the drop-in).
fn husk_driver_of(plan: &Plan, schema: Schema) -> Option<Driver> {
    let text = match plan {
        Plan::InPlace(out) => out,
        Plan::DropIn { content, .. } => content,
        Plan::AlreadyInstalled => return None,
    };
    husk_driver(&parse(Path::new("c"), text).unwrap(), schema)
}

#[test]
fn v2_config_with_other_runtimes_is_edited_in_place_preserving_it() {
    let Decision { plan, schema, .. } = plan_install(
        Path::new("/etc/containerd/config.toml"),
        V2_WITH_RUNC,
        Schema::V2,
        Some(Path::new("/etc/containerd/conf.d")),
    )
    .unwrap();
    assert_eq!(schema, Schema::V2);
    let Plan::InPlace(out) = plan else {
        panic!("{plan:?}")
    };
    // Everything the operator wrote is still there, in the same order, before our table.
    assert!(out.starts_with(V2_WITH_RUNC.trim_end()), "{out}");
    assert!(
        out.contains(r#"[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.husk]"#),
        "{out}"
    );
    assert!(out.contains(r#"runtime_type = "io.containerd.husk.v2""#));
    assert!(installed(&out, Schema::V2));
    // Twice = once.
    let again = plan_install(Path::new("c"), &out, Schema::V2, None).unwrap();
    assert_eq!(again.plan, Plan::AlreadyInstalled);
}

#[test]
fn fresh_empty_config_gets_a_version() {
    let Plan::InPlace(out) = plan_install(Path::new("c"), "", Schema::V2, None)
        .unwrap()
        .plan
    else {
        panic!()
    };
    assert!(out.starts_with("version = 2"), "{out}");
    assert!(installed(&out, Schema::V2));
    let Plan::InPlace(out) = plan_install(Path::new("c"), "", Schema::V3, None)
        .unwrap()
        .plan
    else {
        panic!()
    };
    assert!(
        out.contains(r#"[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.husk]"#),
        "{out}"
    );
}

#[test]
fn v3_config_uses_a_drop_in() {
    let dir = Path::new("/etc/containerd/conf.d");
    let covered = "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n";
    let Decision { plan, schema, .. } =
        plan_install(Path::new("c"), covered, Schema::V2, Some(dir)).unwrap();
    assert_eq!(schema, Schema::V3);
    let Plan::DropIn {
        file,
        content,
        config,
    } = plan
    else {
        panic!()
    };
    assert_eq!(file, dir.join("husk.toml"));
    assert!(config.is_none(), "imports already cover conf.d");
    assert!(
        content.contains(MARKER) && installed(&content, Schema::V3),
        "{content}"
    );
    // Not covered: the config gets an imports entry, nothing else changes.
    let bare =
        "version = 3\n[plugins.\"io.containerd.cri.v1.runtime\"]\n  enable_selinux = false\n";
    let Plan::DropIn {
        config: Some(c), ..
    } = plan_install(Path::new("c"), bare, Schema::V2, Some(dir))
        .unwrap()
        .plan
    else {
        panic!()
    };
    assert!(
        c.contains("imports = [\"/etc/containerd/conf.d/husk.toml\"]"),
        "{c}"
    );
    assert!(c.contains("enable_selinux = false"));
}

#[test]
fn malformed_and_unsupported_configs_are_refused() {
    let e = plan_install(
        Path::new("/etc/c.toml"),
        "version = 2\n[plugins\n",
        Schema::V2,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("/etc/c.toml") && e.contains("not valid TOML"),
        "{e}"
    );
    let e = plan_install(Path::new("c"), "[plugins.cri]\n", Schema::V2, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("version 1"), "{e}");
    let e = plan_install(Path::new("c"), "version = 4\n", Schema::V2, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("version 4"), "{e}");
}

#[test]
fn uninstall_removes_only_what_the_installer_wrote() {
    let Plan::InPlace(out) = plan_install(Path::new("c"), V2_WITH_RUNC, Schema::V2, None)
        .unwrap()
        .plan
    else {
        panic!()
    };
    let mut doc = parse(Path::new("c"), &out).unwrap();
    assert!(remove_handler(&mut doc, Schema::V2));
    assert!(!installed(&doc.to_string(), Schema::V2));
    assert!(doc.to_string().contains("runtimes.runc"));
    // A husk table the operator wrote by hand is theirs.
    let hand = format!("{V2_WITH_RUNC}    [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.husk]\n      runtime_type = \"io.containerd.husk.v2\"\n");
    let mut doc = parse(Path::new("c"), &hand).unwrap();
    assert!(!remove_handler(&mut doc, Schema::V2));
}

#[test]
fn husk_gets_the_cgroup_driver_of_the_nodes_runc_handler() {
    // cgroupfs runc: husk's handler says SystemdCgroup = false.
    let d = plan_install(Path::new("c"), V2_WITH_RUNC, Schema::V2, None).unwrap();
    assert_eq!(
        (d.driver, d.runc_handler.as_deref()),
        (Driver::Cgroupfs, Some("runc"))
    );
    assert_eq!(husk_driver_of(&d.plan, Schema::V2), Some(Driver::Cgroupfs));
    // kubeadm's systemd setup: husk's handler says SystemdCgroup = true.
    let systemd = V2_WITH_RUNC.replace("SystemdCgroup = false", "SystemdCgroup = true");
    let d = plan_install(Path::new("c"), &systemd, Schema::V2, None).unwrap();
    assert_eq!(d.driver, Driver::Systemd);
    let Plan::InPlace(out) = &d.plan else {
        panic!("{:?}", d.plan)
    };
    assert!(
        out.contains("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.husk.options]\nSystemdCgroup = true"),
        "{out}"
    );
    assert_eq!(husk_driver_of(&d.plan, Schema::V2), Some(Driver::Systemd));
    // Installed with systemd: a re-run changes nothing.
    assert_eq!(
        plan_install(Path::new("c"), out, Schema::V2, None)
            .unwrap()
            .plan,
        Plan::AlreadyInstalled
    );
    // The operator moved runc back to cgroupfs: a re-run moves husk too, and only that.
    let moved = out.replacen("SystemdCgroup = true", "SystemdCgroup = false", 1);
    let Plan::InPlace(again) = plan_install(Path::new("c"), &moved, Schema::V2, None)
        .unwrap()
        .plan
    else {
        panic!()
    };
    let doc = parse(Path::new("c"), &again).unwrap();
    assert_eq!(husk_driver(&doc, Schema::V2), Some(Driver::Cgroupfs));
    assert_eq!(runc_driver(&doc, Schema::V2).1, Driver::Cgroupfs);
    assert_eq!(again.matches("runtimes.husk]").count(), 1, "{again}");
}

#[test]
fn the_default_runc_handler_decides_as_containerd_decides() {
    // Two runc-typed handlers: the default one (not first by name) decides.
    let two = r#"version = 3
[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.crun]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.crun.options]
    BinaryName = "crun"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
    SystemdCgroup = true
"#;
    let doc = parse(Path::new("c"), two).unwrap();
    assert_eq!(
        runc_driver(&doc, Schema::V3),
        (Some("runc".into()), Driver::Systemd)
    );
    // A default that is not runc-typed (gVisor, kata): the runc-typed ones by name.
    let other = two.replace(
        "default_runtime_name = \"runc\"",
        "default_runtime_name = \"kata\"",
    );
    let doc = parse(Path::new("c"), &other).unwrap();
    assert_eq!(
        runc_driver(&doc, Schema::V3),
        (Some("crun".into()), Driver::Cgroupfs)
    );
    // No runc handler in the file: containerd's built-in runc, cgroupfs.
    let doc = parse(Path::new("c"), "version = 3\n").unwrap();
    assert_eq!(runc_driver(&doc, Schema::V3), (None, Driver::Cgroupfs));
    // containerd 2.x: the drop-in carries the driver.
    let dir = tempfile::tempdir().unwrap();
    // (top-level keys go before the first table)
    let covered = two.replacen(
        "version = 3\n",
        &format!(
            "version = 3\nimports = [\"{}/*.toml\"]\n",
            dir.path().display()
        ),
        1,
    );
    let d = plan_install(Path::new("c"), &covered, Schema::V3, Some(dir.path())).unwrap();
    let Plan::DropIn { file, content, .. } = &d.plan else {
        panic!("{:?}", d.plan)
    };
    assert_eq!(husk_driver_of(&d.plan, Schema::V3), Some(Driver::Systemd));
    std::fs::write(file, content).unwrap();
    assert_eq!(
        plan_install(Path::new("c"), &covered, Schema::V3, Some(dir.path()))
            .unwrap()
            .plan,
        Plan::AlreadyInstalled
    );
    // runc flipped to cgroupfs: the drop-in is rewritten.
    let flipped = covered.replace("SystemdCgroup = true", "SystemdCgroup = false");
    let d = plan_install(Path::new("c"), &flipped, Schema::V3, Some(dir.path())).unwrap();
    assert_eq!(husk_driver_of(&d.plan, Schema::V3), Some(Driver::Cgroupfs));
}

#[test]
fn binary_is_installed_by_rename() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    std::fs::write(&src, b"new").unwrap();
    let bin = d.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let old = bin.join("containerd-shim-husk-v2");
    std::fs::write(&old, b"old").unwrap();
    let held = std::fs::File::open(&old).unwrap();
    let dst = install_binary(&src, &bin, "containerd-shim-husk-v2").unwrap();
    assert_eq!(std::fs::read(&dst).unwrap(), b"new");
    // The old inode (a running shim's text) is untouched: replaced, not overwritten.
    use std::io::Read;
    let mut s = String::new();
    (&held).read_to_string(&mut s).unwrap();
    assert_eq!(s, "old");
}

#[test]
fn hold_uninstalls_when_terminated() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("config.toml");
    std::fs::write(&cfg, "version = 2\n").unwrap();
    let shim = d.path().join("shim");
    std::fs::write(&shim, b"#!/bin/sh\n").unwrap();
    let bin = env!("CARGO_BIN_EXE_husk-node-installer");
    let common = |c: &mut std::process::Command| {
        c.arg("--config")
            .arg(&cfg)
            .arg("--bin-dir")
            .arg(d.path().join("bin"))
            .arg("--drop-in-dir")
            .arg(d.path().join("conf.d"));
    };
    let mut install = std::process::Command::new(bin);
    install.arg("install").arg("--shim").arg(&shim);
    common(&mut install);
    assert!(install.output().unwrap().status.success());
    assert!(std::fs::read_to_string(&cfg)
        .unwrap()
        .contains(RUNTIME_TYPE));
    let mut hold = std::process::Command::new(bin);
    hold.args(["hold", "--uninstall-on-exit", "--force"])
        .stdout(std::process::Stdio::piped());
    common(&mut hold);
    let child = hold.spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        std::fs::read_to_string(&cfg)
            .unwrap()
            .contains(RUNTIME_TYPE),
        "hold keeps husk installed"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), "version = 2\n");
    assert!(!d.path().join("bin/containerd-shim-husk-v2").exists());
}
