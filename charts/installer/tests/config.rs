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

/// The native registration (most fixtures: it is what they were written for).
const NATIVE: &Registration = &Registration::Native;

fn runc_type() -> Registration {
    Registration::RuncType {
        runtime_path: "/usr/local/bin/containerd-shim-husk-v2".into(),
    }
}

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
        NATIVE,
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
    let again = plan_install(Path::new("c"), &out, Schema::V2, None, NATIVE).unwrap();
    assert_eq!(again.plan, Plan::AlreadyInstalled);
}

#[test]
fn fresh_empty_config_gets_a_version() {
    let Plan::InPlace(out) = plan_install(Path::new("c"), "", Schema::V2, None, NATIVE)
        .unwrap()
        .plan
    else {
        panic!()
    };
    assert!(out.starts_with("version = 2"), "{out}");
    assert!(installed(&out, Schema::V2));
    let Plan::InPlace(out) = plan_install(Path::new("c"), "", Schema::V3, None, NATIVE)
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
        plan_install(Path::new("c"), covered, Schema::V2, Some(dir), NATIVE).unwrap();
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
    } = plan_install(Path::new("c"), bare, Schema::V2, Some(dir), NATIVE)
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
        NATIVE,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("/etc/c.toml") && e.contains("not valid TOML"),
        "{e}"
    );
    let e = plan_install(Path::new("c"), "[plugins.cri]\n", Schema::V2, None, NATIVE)
        .unwrap_err()
        .to_string();
    assert!(e.contains("version 1"), "{e}");
    let e = plan_install(Path::new("c"), "version = 4\n", Schema::V2, None, NATIVE)
        .unwrap_err()
        .to_string();
    assert!(e.contains("version 4"), "{e}");
}

#[test]
fn uninstall_removes_only_what_the_installer_wrote() {
    let Plan::InPlace(out) = plan_install(Path::new("c"), V2_WITH_RUNC, Schema::V2, None, NATIVE)
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
    let d = plan_install(Path::new("c"), V2_WITH_RUNC, Schema::V2, None, NATIVE).unwrap();
    assert_eq!(
        (d.driver, d.runc_handler.as_deref()),
        (Driver::Cgroupfs, Some("runc"))
    );
    assert_eq!(husk_driver_of(&d.plan, Schema::V2), Some(Driver::Cgroupfs));
    // kubeadm's systemd setup: husk's handler says SystemdCgroup = true.
    let systemd = V2_WITH_RUNC.replace("SystemdCgroup = false", "SystemdCgroup = true");
    let d = plan_install(Path::new("c"), &systemd, Schema::V2, None, NATIVE).unwrap();
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
        plan_install(Path::new("c"), out, Schema::V2, None, NATIVE)
            .unwrap()
            .plan,
        Plan::AlreadyInstalled
    );
    // The operator moved runc back to cgroupfs: a re-run moves husk too, and only that.
    let moved = out.replacen("SystemdCgroup = true", "SystemdCgroup = false", 1);
    let Plan::InPlace(again) = plan_install(Path::new("c"), &moved, Schema::V2, None, NATIVE)
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
    let d = plan_install(
        Path::new("c"),
        &covered,
        Schema::V3,
        Some(dir.path()),
        NATIVE,
    )
    .unwrap();
    let Plan::DropIn { file, content, .. } = &d.plan else {
        panic!("{:?}", d.plan)
    };
    assert_eq!(husk_driver_of(&d.plan, Schema::V3), Some(Driver::Systemd));
    std::fs::write(file, content).unwrap();
    assert_eq!(
        plan_install(
            Path::new("c"),
            &covered,
            Schema::V3,
            Some(dir.path()),
            NATIVE
        )
        .unwrap()
        .plan,
        Plan::AlreadyInstalled
    );
    // runc flipped to cgroupfs: the drop-in is rewritten.
    let flipped = covered.replace("SystemdCgroup = true", "SystemdCgroup = false");
    let d = plan_install(
        Path::new("c"),
        &flipped,
        Schema::V3,
        Some(dir.path()),
        NATIVE,
    )
    .unwrap();
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
    install
        .arg("install")
        .arg("--shim")
        .arg(&shim)
        .args(["--registration", "native"]);
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

#[test]
fn registration_by_containerd_version() {
    for (text, want) in [
        ("containerd://1.6.20", Some((1, 6, 20))),
        (
            "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1",
            Some((1, 6, 20)),
        ),
        (
            "containerd github.com/containerd/containerd/v2 v2.1.9 a1b2c3",
            Some((2, 1, 9)),
        ),
        ("containerd://2.4.0-beta.0", Some((2, 4, 0))),
        ("cri-o://1.30.0", Some((1, 30, 0))),
        ("containerd", None),
    ] {
        assert_eq!(parse_containerd_version(text), want, "{text}");
    }
    let shim = Path::new("/usr/local/bin/containerd-shim-husk-v2");
    let runc = runc_type();
    // containerd#13504: every runtime type introspected from 2.4.0, 2.2.7 and 2.3.4 on.
    // containerd 1.x's CRI ignores runtime_path (containerd#8207) and reports no features.
    for (v, want) in [
        ((1, 6, 20), NATIVE),
        ((1, 7, 24), NATIVE),
        ((2, 0, 11), &runc),
        ((2, 1, 9), &runc),
        ((2, 2, 6), &runc),
        ((2, 2, 7), NATIVE),
        ((2, 3, 3), &runc),
        ((2, 3, 4), NATIVE),
        ((2, 4, 0), NATIVE),
        ((3, 0, 0), NATIVE),
    ] {
        assert_eq!(&registration_for(Some(v), shim), want, "{v:?}");
    }
    // Unknown: native, which runs pods on husk on every containerd.
    assert_eq!(&registration_for(None, shim), NATIVE);
    assert!(!runs_runtime_path((1, 7, 24)) && runs_runtime_path((2, 0, 0)));
}

#[test]
fn runc_type_registration_and_switching() {
    let runc = runc_type();
    let Plan::InPlace(out) = plan_install(Path::new("c"), V2_WITH_RUNC, Schema::V2, None, &runc)
        .unwrap()
        .plan
    else {
        panic!()
    };
    assert!(
        out.contains(
            "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.husk]\nruntime_type = \"io.containerd.runc.v2\"\nruntime_path = \"/usr/local/bin/containerd-shim-husk-v2\"\n"
        ),
        "{out}"
    );
    let doc = parse(Path::new("c"), &out).unwrap();
    assert_eq!(
        husk_registration(&doc, Schema::V2),
        Some((runc.clone(), Driver::Cgroupfs))
    );
    // husk registered as runc's type is not the runc handler husk follows.
    assert_eq!(
        runc_driver(&doc, Schema::V2),
        (Some("runc".into()), Driver::Cgroupfs)
    );
    // Twice = once; the other registration rewrites the installer's table.
    let again = plan_install(Path::new("c"), &out, Schema::V2, None, &runc).unwrap();
    assert_eq!(again.plan, Plan::AlreadyInstalled);
    let Plan::InPlace(native) = plan_install(Path::new("c"), &out, Schema::V2, None, NATIVE)
        .unwrap()
        .plan
    else {
        panic!()
    };
    assert!(
        native.contains("runtime_type = \"io.containerd.husk.v2\""),
        "{native}"
    );
    assert!(!native.contains("runtime_path"), "{native}");
    assert_eq!(native.matches("runtimes.husk]").count(), 1, "{native}");
    assert_eq!(
        plan_install(Path::new("c"), &native, Schema::V2, None, NATIVE)
            .unwrap()
            .plan,
        Plan::AlreadyInstalled
    );
    // Another shim path (a new --runtime-path) is another registration too.
    let moved = Registration::RuncType {
        runtime_path: "/opt/bin/containerd-shim-husk-v2".into(),
    };
    let Plan::InPlace(moved_out) = plan_install(Path::new("c"), &out, Schema::V2, None, &moved)
        .unwrap()
        .plan
    else {
        panic!()
    };
    assert!(
        moved_out.contains("runtime_path = \"/opt/bin/containerd-shim-husk-v2\"")
            && !moved_out.contains("/usr/local/bin/containerd-shim-husk-v2"),
        "{moved_out}"
    );
    let mut doc = parse(Path::new("c"), &native).unwrap();
    assert!(remove_handler(&mut doc, Schema::V2));
    let mut doc = parse(Path::new("c"), &out).unwrap();
    assert!(remove_handler(&mut doc, Schema::V2), "runc type: ours too");

    // containerd 2.x: the same table in the drop-in.
    let dir = tempfile::tempdir().unwrap();
    let v3 = format!(
        "version = 3\nimports = [\"{}/*.toml\"]\n",
        dir.path().display()
    );
    let Plan::DropIn { file, content, .. } =
        plan_install(Path::new("c"), &v3, Schema::V3, Some(dir.path()), &runc)
            .unwrap()
            .plan
    else {
        panic!()
    };
    assert!(content.contains("runtime_path = \"/usr/local/bin/containerd-shim-husk-v2\""));
    assert!(drop_in_registers(
        &content,
        Schema::V3,
        &runc,
        Driver::Cgroupfs
    ));
    std::fs::write(&file, &content).unwrap();
    let again = plan_install(Path::new("c"), &v3, Schema::V3, Some(dir.path()), &runc).unwrap();
    assert_eq!(again.plan, Plan::AlreadyInstalled);
    let switched = plan_install(Path::new("c"), &v3, Schema::V3, Some(dir.path()), NATIVE).unwrap();
    let Plan::DropIn { content, .. } = &switched.plan else {
        panic!("{:?}", switched.plan)
    };
    assert!(
        content.contains("runtime_type = \"io.containerd.husk.v2\"")
            && !content.contains("runtime_path"),
        "{content}"
    );
}

#[test]
fn systemd_cgroup_driver_is_detected() {
    let doc = parse(Path::new("c"), V2_WITH_RUNC).unwrap();
    assert_eq!(runc_driver(&doc, Schema::V2).1, Driver::Cgroupfs);
    let doc = parse(
        Path::new("c"),
        &V2_WITH_RUNC.replace("SystemdCgroup = false", "SystemdCgroup = true"),
    )
    .unwrap();
    assert_eq!(runc_driver(&doc, Schema::V2).1, Driver::Systemd);
}

/// Both registrations carry the driver; a re-run is "already installed" only when registration
/// and driver both match, and otherwise changes what differs (v2 in place, v3 drop-in).
#[test]
fn husk_follows_the_nodes_systemd_cgroup_driver() {
    let systemd = V2_WITH_RUNC.replace("SystemdCgroup = false", "SystemdCgroup = true");
    for reg in [
        Registration::Native,
        Registration::RuncType {
            runtime_path: "/x/containerd-shim-husk-v2".into(),
        },
    ] {
        let d = plan_install(Path::new("c"), &systemd, Schema::V2, None, &reg).unwrap();
        assert_eq!(d.driver, Driver::Systemd);
        let Plan::InPlace(out) = d.plan else { panic!() };
        assert!(
            out.contains("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.husk.options]\nSystemdCgroup = true"),
            "{out}"
        );
        let doc = parse(Path::new("c"), &out).unwrap();
        assert_eq!(
            husk_registration(&doc, Schema::V2),
            Some((reg.clone(), Driver::Systemd))
        );
        assert_eq!(
            plan_install(Path::new("c"), &out, Schema::V2, None, &reg)
                .unwrap()
                .plan,
            Plan::AlreadyInstalled,
            "{}",
            reg.name()
        );
        // The operator moves runc back to cgroupfs: husk follows on the next install.
        let back = out.replacen("SystemdCgroup = true", "SystemdCgroup = false", 1);
        let Plan::InPlace(out) = plan_install(Path::new("c"), &back, Schema::V2, None, &reg)
            .unwrap()
            .plan
        else {
            panic!()
        };
        assert!(!out.contains("SystemdCgroup = true"), "{out}");
        assert_eq!(
            husk_registration(&parse(Path::new("c"), &out).unwrap(), Schema::V2),
            Some((reg.clone(), Driver::Cgroupfs))
        );
        // The other registration with the systemd driver: both change in one re-run, in
        // place, the operator's keys in husk's table kept.
        let other = match reg {
            Registration::Native => runc_type(),
            Registration::RuncType { .. } => Registration::Native,
        };
        let kept = out.replacen(
            "SystemdCgroup = false\n",
            "SystemdCgroup = false\nBinaryName = \"kept\"\n",
            2,
        );
        let kept = kept.replacen("SystemdCgroup = false", "SystemdCgroup = true", 1);
        let d = plan_install(Path::new("c"), &kept, Schema::V2, None, &other).unwrap();
        let Plan::InPlace(out) = d.plan else { panic!() };
        let doc = parse(Path::new("c"), &out).unwrap();
        assert_eq!(
            husk_registration(&doc, Schema::V2),
            Some((other.clone(), Driver::Systemd)),
            "{out}"
        );
        assert_eq!(out.matches("runtimes.husk]").count(), 1, "{out}");
        assert_eq!(out.matches("BinaryName = \"kept\"").count(), 2, "{out}");
    }
}

/// The binary end to end on a config file: `--registration auto` by `--containerd-version`,
/// `--runtime-path`, the driver printed, a switch of registration on a re-run.
#[test]
fn install_registers_by_version_with_the_runc_handlers_driver() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("config.toml");
    std::fs::write(
        &cfg,
        V2_WITH_RUNC.replace("SystemdCgroup = false", "SystemdCgroup = true"),
    )
    .unwrap();
    let shim = d.path().join("shim");
    std::fs::write(&shim, b"#!/bin/sh\n").unwrap();
    let install = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_husk-node-installer"))
            .arg("install")
            .arg("--shim")
            .arg(&shim)
            .arg("--config")
            .arg(&cfg)
            .arg("--bin-dir")
            .arg(d.path().join("bin"))
            .arg("--drop-in-dir")
            .arg(d.path().join("conf.d"))
            .args(extra)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc = parse(&cfg, &std::fs::read_to_string(&cfg).unwrap()).unwrap();
        (said, husk_registration(&doc, Schema::V2))
    };
    let bin_shim = d.path().join("bin").join(SHIM_NAME);
    // containerd 1.x would start runc's shim for a runc-type husk handler: native.
    let (said, got) = install(&["--containerd-version", "1.6.20~ds1"]);
    assert_eq!(got, Some((Registration::Native, Driver::Systemd)), "{said}");
    assert!(said.contains("reports no handler features"), "{said}");
    let (said, got) = install(&["--containerd-version", "containerd://2.1.9"]);
    assert_eq!(
        got,
        Some((
            Registration::RuncType {
                runtime_path: bin_shim.clone()
            },
            Driver::Systemd
        )),
        "{said}"
    );
    assert!(
        said.contains("containerd 2.1.9 asks only runc-type runtimes")
            && said.contains("cgroup driver: systemd (SystemdCgroup = true), as runtime handler `runc` (runc) uses"),
        "{said}"
    );
    let (said, again) = install(&["--containerd-version", "2.1.9"]);
    assert_eq!(again, got);
    assert!(
        said.contains("already registered (runc-type, systemd)"),
        "{said}"
    );
    // containerd upgraded past containerd#13504: the re-run registers husk natively.
    let (said, got) = install(&["--containerd-version", "containerd://2.2.7"]);
    assert_eq!(got, Some((Registration::Native, Driver::Systemd)), "{said}");
    assert!(said.contains("registering husk natively"), "{said}");
    // An explicit registration and the shim's path as the host sees it.
    let (said, got) = install(&[
        "--registration",
        "runc-type",
        "--runtime-path",
        "/host/bin/containerd-shim-husk-v2",
    ]);
    assert_eq!(
        got,
        Some((
            Registration::RuncType {
                runtime_path: "/host/bin/containerd-shim-husk-v2".into()
            },
            Driver::Systemd
        )),
        "{said}"
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert_eq!(text.matches("runtimes.husk]").count(), 1, "{text}");
    // A registration the installer does not know is refused before anything changes.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_husk-node-installer"))
        .args(["install", "--registration", "kata", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), text);
}
