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
    let mut doc = parse(Path::new("c"), text).unwrap();
    !add_handler(&mut doc, schema, &Registration::Native)
}

#[test]
fn v2_config_with_other_runtimes_is_edited_in_place_preserving_it() {
    let (plan, schema) = plan_install(
        Path::new("/etc/containerd/config.toml"),
        V2_WITH_RUNC,
        Schema::V2,
        Some(Path::new("/etc/containerd/conf.d")),
        &Registration::Native,
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
    let (again, _) = plan_install(
        Path::new("c"),
        &out,
        Schema::V2,
        None,
        &Registration::Native,
    )
    .unwrap();
    assert_eq!(again, Plan::AlreadyInstalled);
}

#[test]
fn fresh_empty_config_gets_a_version() {
    let (plan, _) =
        plan_install(Path::new("c"), "", Schema::V2, None, &Registration::Native).unwrap();
    let Plan::InPlace(out) = plan else { panic!() };
    assert!(out.starts_with("version = 2"), "{out}");
    assert!(installed(&out, Schema::V2));
    let (plan, _) =
        plan_install(Path::new("c"), "", Schema::V3, None, &Registration::Native).unwrap();
    let Plan::InPlace(out) = plan else { panic!() };
    assert!(
        out.contains(r#"[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.husk]"#),
        "{out}"
    );
}

#[test]
fn v3_config_uses_a_drop_in() {
    let dir = Path::new("/etc/containerd/conf.d");
    let covered = "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n";
    let (plan, schema) = plan_install(
        Path::new("c"),
        covered,
        Schema::V2,
        Some(dir),
        &Registration::Native,
    )
    .unwrap();
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
    let (plan, _) = plan_install(
        Path::new("c"),
        bare,
        Schema::V2,
        Some(dir),
        &Registration::Native,
    )
    .unwrap();
    let Plan::DropIn {
        config: Some(c), ..
    } = plan
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
        &Registration::Native,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("/etc/c.toml") && e.contains("not valid TOML"),
        "{e}"
    );
    let e = plan_install(
        Path::new("c"),
        "[plugins.cri]\n",
        Schema::V2,
        None,
        &Registration::Native,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("version 1"), "{e}");
    let e = plan_install(
        Path::new("c"),
        "version = 4\n",
        Schema::V2,
        None,
        &Registration::Native,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("version 4"), "{e}");
}

#[test]
fn uninstall_removes_only_what_the_installer_wrote() {
    let (Plan::InPlace(out), _) = plan_install(
        Path::new("c"),
        V2_WITH_RUNC,
        Schema::V2,
        None,
        &Registration::Native,
    )
    .unwrap() else {
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
fn systemd_cgroup_driver_is_detected() {
    let doc = parse(Path::new("c"), V2_WITH_RUNC).unwrap();
    assert!(!uses_systemd_cgroup(&doc, Schema::V2));
    let doc = parse(
        Path::new("c"),
        &V2_WITH_RUNC.replace("SystemdCgroup = false", "SystemdCgroup = true"),
    )
    .unwrap();
    assert!(uses_systemd_cgroup(&doc, Schema::V2));
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
    let runc = Registration::RuncType {
        runtime_path: shim.into(),
    };
    // containerd#13504: every runtime type introspected from 2.4.0, 2.2.7 and 2.3.4 on.
    for (v, want) in [
        ((1, 6, 20), &runc),
        ((1, 7, 24), &runc),
        ((2, 0, 11), &runc),
        ((2, 1, 9), &runc),
        ((2, 2, 6), &runc),
        ((2, 2, 7), &Registration::Native),
        ((2, 3, 3), &runc),
        ((2, 3, 4), &Registration::Native),
        ((2, 4, 0), &Registration::Native),
        ((3, 0, 0), &Registration::Native),
    ] {
        assert_eq!(&registration_for(Some(v), shim), want, "{v:?}");
    }
    assert_eq!(registration_for(None, shim), runc);
}

#[test]
fn runc_type_registration_and_switching() {
    let runc = Registration::RuncType {
        runtime_path: "/usr/local/bin/containerd-shim-husk-v2".into(),
    };
    let (Plan::InPlace(out), _) =
        plan_install(Path::new("c"), V2_WITH_RUNC, Schema::V2, None, &runc).unwrap()
    else {
        panic!()
    };
    assert!(
        out.contains(
            "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.husk]\nruntime_type = \"io.containerd.runc.v2\"\nruntime_path = \"/usr/local/bin/containerd-shim-husk-v2\"\n"
        ),
        "{out}"
    );
    // Twice = once; the other registration rewrites the installer's table.
    let (again, _) = plan_install(Path::new("c"), &out, Schema::V2, None, &runc).unwrap();
    assert_eq!(again, Plan::AlreadyInstalled);
    let (Plan::InPlace(native), _) = plan_install(
        Path::new("c"),
        &out,
        Schema::V2,
        None,
        &Registration::Native,
    )
    .unwrap() else {
        panic!()
    };
    assert!(
        native.contains("runtime_type = \"io.containerd.husk.v2\""),
        "{native}"
    );
    assert!(!native.contains("runtime_path"), "{native}");
    assert_eq!(native.matches("runtimes.husk]").count(), 1, "{native}");
    let mut doc = parse(Path::new("c"), &native).unwrap();
    assert!(remove_handler(&mut doc, Schema::V2));

    // containerd 2.x: the same table in the drop-in.
    let dir = tempfile::tempdir().unwrap();
    let v3 = format!(
        "version = 3\nimports = [\"{}/*.toml\"]\n",
        dir.path().display()
    );
    let (Plan::DropIn { file, content, .. }, _) =
        plan_install(Path::new("c"), &v3, Schema::V3, Some(dir.path()), &runc).unwrap()
    else {
        panic!()
    };
    assert!(content.contains("runtime_path = \"/usr/local/bin/containerd-shim-husk-v2\""));
    std::fs::write(&file, &content).unwrap();
    let (again, _) =
        plan_install(Path::new("c"), &v3, Schema::V3, Some(dir.path()), &runc).unwrap();
    assert_eq!(again, Plan::AlreadyInstalled);
    let (switched, _) = plan_install(
        Path::new("c"),
        &v3,
        Schema::V3,
        Some(dir.path()),
        &Registration::Native,
    )
    .unwrap();
    assert!(matches!(switched, Plan::DropIn { .. }), "{switched:?}");
}

#[test]
fn husk_follows_the_nodes_systemd_cgroup_driver() {
    let systemd = V2_WITH_RUNC.replace("SystemdCgroup = false", "SystemdCgroup = true");
    for reg in [
        Registration::Native,
        Registration::RuncType {
            runtime_path: "/x/containerd-shim-husk-v2".into(),
        },
    ] {
        let (Plan::InPlace(out), _) =
            plan_install(Path::new("c"), &systemd, Schema::V2, None, &reg).unwrap()
        else {
            panic!()
        };
        assert!(
            out.contains("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.husk.options]\nSystemdCgroup = true"),
            "{out}"
        );
        // The operator moves runc back to cgroupfs: husk follows on the next install.
        let back = out.replacen("SystemdCgroup = true", "SystemdCgroup = false", 1);
        let (Plan::InPlace(out), _) =
            plan_install(Path::new("c"), &back, Schema::V2, None, &reg).unwrap()
        else {
            panic!()
        };
        assert!(!out.contains("SystemdCgroup = true"), "{out}");
    }
}
