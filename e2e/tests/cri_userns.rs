//! Kubernetes user namespaces (`hostUsers: false`) and the runtime features containerd reads,
//! through CRI on containerd 2.x (1.6 silently ignores `hostUsers: false`; 1.x reports no
//! runtime handlers in CRI Status), on husk registered both ways: natively
//! (`io.containerd.husk.v2`) and as containerd's runc type with `runtime_path` (`husk-runc`).
//!
//! Where the reference runc supports idmapped mounts (sid's runc 1.3 in the node guest:
//! `HUSK_RUNC`), it runs the same pods and husk must see what it sees; bookworm's runc 1.1 does
//! not, so on this host the behaviour itself is asserted.

use husk_e2e::bed::{
    containerd_release, introspects_every_runtime_type, TestBed, BUSYBOX, HUSK_RUNC_TYPE,
};
use husk_e2e::cri::{v1 as cri, Cri};
use husk_e2e::suite::{log_text, panic_text, Pod};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// What kubelet sends for a `hostUsers: false` pod: one mapping, container 0 → host n·65536,
/// 65536 long, the same for uids and gids.
fn kubelet_mapping(n: u32) -> Vec<cri::IdMapping> {
    vec![cri::IdMapping {
        host_id: n * 65536,
        container_id: 0,
        length: 65536,
    }]
}

fn userns_pod(n: u32) -> impl FnOnce(&mut cri::PodSandboxConfig) {
    move |p| {
        let linux = p.linux.get_or_insert_with(Default::default);
        let sc = linux.security_context.get_or_insert_with(Default::default);
        let ns = sc.namespace_options.get_or_insert_with(Default::default);
        ns.userns_options = Some(cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: kubelet_mapping(n),
            gids: kubelet_mapping(n),
        });
    }
}

/// Whether `runc features` (the reference's binary) says it can idmap mounts.
fn reference_idmaps() -> bool {
    let runc = husk_e2e::env::runc_binary()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "runc".into());
    let out = std::process::Command::new(&runc).arg("features").output();
    out.ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|f| f["linux"]["mountExtensions"]["idmap"]["enabled"].as_bool())
        .unwrap_or(false)
}

fn sh(cmd: &str) {
    let st = std::process::Command::new("sh")
        .args(["-c", cmd])
        .status()
        .unwrap();
    assert!(st.success(), "{cmd}");
}

/// Processes named like husk's throw-away user namespace holders.
fn holders() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "husk-userns")
        })
        .count()
}

/// Everything one handler's user-namespaced pod shows, inside and outside.
#[derive(Debug, PartialEq, Clone)]
struct Seen {
    uid_map: String,
    id: String,
    /// Owners through the idmapped volume: a root-owned and a 1234-owned host file.
    volume_owners: String,
    /// Owner on disk of a file the container's root wrote into the volume.
    volume_write_on_disk: (u32, u32),
    /// Owner on the host of a file the container's root wrote into its own rootfs.
    rootfs_write_on_host: (u32, u32),
    /// The container's init as the host sees it (`Uid:` of /proc/<pid>/status, real id).
    host_uid: u32,
    /// Denied to the container's root: writing a root-owned host file without idmapping,
    /// creating a device node.
    denied: String,
    exec_exit: i32,
    log: String,
}

fn userns_scenario(bed: &TestBed, c: &mut Cri, handler: &str, n: u32) -> Seen {
    let base = n * 65536;
    let host = bed.dir.path().join(format!("vol-{handler}"));
    std::fs::create_dir_all(host.join("data")).unwrap();
    std::fs::create_dir_all(host.join("plain")).unwrap();
    std::fs::write(host.join("data/root-owned"), "r").unwrap();
    std::fs::write(host.join("data/user-owned"), "u").unwrap();
    std::os::unix::fs::chown(host.join("data/user-owned"), Some(1234), Some(1234)).unwrap();
    std::fs::write(host.join("plain/host-file"), "h").unwrap();
    for d in [&host, &host.join("data"), &host.join("plain")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let pod = Pod::run(bed, c, handler, "userns", userns_pod(n));
    let id = pod.start(
        c,
        "main",
        BUSYBOX,
        &[
            "sh",
            "-c",
            "echo hello from a user namespace; exec sleep 1000",
        ],
        |cfg| {
            // kubelet repeats the pod's user namespace in every container's config.
            let linux = cfg.linux.get_or_insert_with(Default::default);
            let sc = linux.security_context.get_or_insert_with(Default::default);
            sc.namespace_options
                .get_or_insert_with(Default::default)
                .userns_options = Some(cri::UserNamespace {
                mode: cri::NamespaceMode::Pod as i32,
                uids: kubelet_mapping(n),
                gids: kubelet_mapping(n),
            });
            cfg.mounts = vec![
                // A hostPath volume as kubelet sends it for this pod: the pod's mapping.
                cri::Mount {
                    container_path: "/vol".into(),
                    host_path: host.join("data").display().to_string(),
                    uid_mappings: kubelet_mapping(n),
                    gid_mappings: kubelet_mapping(n),
                    ..Default::default()
                },
                // Without a mapping: host files keep their host owners.
                cri::Mount {
                    container_path: "/plain".into(),
                    host_path: host.join("plain").display().to_string(),
                    ..Default::default()
                },
            ];
        },
    );
    let exec = |c: &mut Cri, cmd: &str| {
        let r = c
            .exec_sync(&id, &["sh", "-c", cmd], 30)
            .unwrap_or_else(|e| panic!("{handler}: exec {cmd}: {}", e.message()));
        (
            r.exit_code,
            String::from_utf8_lossy(&r.stdout).trim().to_string(),
        )
    };
    let (_, uid_map) = exec(c, "cat /proc/self/uid_map");
    let (_, idline) = exec(c, "id");
    let (_, volume_owners) = exec(c, "stat -c '%u:%g %n' /vol/root-owned /vol/user-owned");
    let (exec_exit, _) = exec(
        c,
        "echo w > /vol/written && echo w > /tmp/in-rootfs; exit 7",
    );
    let (_, denied) = exec(
        c,
        "echo x 2>&1 >> /plain/host-file | sed 's/.*: //'; \
         mknod /tmp/null c 1 3 2>&1 | sed 's/.*: //'",
    );
    let pid = c.container_pid(&id);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let host_uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap();
    let owner = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.uid(), m.gid())
    };
    let rootfs_write_on_host = owner(Path::new(&format!("/proc/{pid}/root/tmp/in-rootfs")));
    let volume_write_on_disk = owner(&host.join("data/written"));
    let log = log_text(&pod.log("main"), "stdout");
    let bundle_mounts = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&id))
            .count()
    };
    assert!(
        bundle_mounts() > 0,
        "{handler}: the rootfs is mounted while it runs"
    );
    c.stop_container(&id, 1);
    c.remove_container(&id);
    pod.remove(c);
    assert_eq!(bundle_mounts(), 0, "{handler}: mounts left behind");
    // What is specific to this pod's host range, checked here; the rest is compared.
    assert_eq!(
        uid_map.split_whitespace().collect::<Vec<_>>(),
        ["0", &base.to_string(), "65536"],
        "{handler}"
    );
    assert_eq!(
        host_uid, base,
        "{handler}: the container's root on the host"
    );
    assert_eq!(rootfs_write_on_host, (base, base), "{handler}");
    Seen {
        uid_map: "0 <pod base> 65536".into(),
        id: idline,
        volume_owners,
        volume_write_on_disk,
        rootfs_write_on_host: (0, 0),
        host_uid: 0,
        denied,
        exec_exit,
        log,
    }
}

#[test]
fn user_namespaced_pod_with_an_idmapped_volume() {
    let bed = TestBed::start_containerd2();
    let mut c = bed.cri(&[BUSYBOX]);
    let mut handlers = vec![];
    if reference_idmaps() {
        handlers.push("runc");
    }
    handlers.extend(["husk", HUSK_RUNC_TYPE]);
    let mut seen = vec![];
    for (i, h) in handlers.iter().enumerate() {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            userns_scenario(&bed, &mut c, h, 20 + i as u32)
        }));
        seen.push((*h, r.map_err(|e| panic_text(&*e))));
    }
    let failed: Vec<String> = seen
        .iter()
        .filter_map(|(h, r)| r.as_ref().err().map(|e| format!("{h}: {e}")))
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    let want = Seen {
        uid_map: "0 <pod base> 65536".into(),
        id: "uid=0(root) gid=0(root) groups=0(root),10(wheel)".into(),
        volume_owners: "0:0 /vol/root-owned\n1234:1234 /vol/user-owned".into(),
        volume_write_on_disk: (0, 0),
        rootfs_write_on_host: (0, 0),
        host_uid: 0,
        denied: "Permission denied\nOperation not permitted".into(),
        exec_exit: 7,
        log: "hello from a user namespace\n".into(),
    };
    for (h, r) in seen {
        let got = r.unwrap();
        // busybox's `id` lists the groups the image's /etc/group gives root.
        let got = Seen {
            id: got.id.split(" groups=").next().unwrap_or("").to_string(),
            ..got
        };
        let want = Seen {
            id: "uid=0(root) gid=0(root)".into(),
            ..want.clone()
        };
        assert_eq!(got, want, "{h}");
    }
    assert_eq!(holders(), 0, "user namespace holders left behind");
}

#[test]
fn cri_status_reports_husks_features() {
    let bed = TestBed::start_containerd2();
    let mut c = Cri::connect(&bed.socket());
    let release = containerd_release(&bed.containerd_bin);
    let handlers = c.runtime_handlers();
    let features = |name: &str| {
        let h = handlers
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no handler {name} in CRI Status: {handlers:?}"));
        let f = h.features.unwrap_or_default();
        (f.user_namespaces, f.recursive_read_only_mounts)
    };
    // Registered as the runc type, containerd asks husk's shim (`-info`) on every release.
    assert_eq!(
        features(HUSK_RUNC_TYPE),
        (true, true),
        "containerd {release:?}"
    );
    // Natively, only releases that introspect every runtime type see the features.
    let every = introspects_every_runtime_type(release);
    assert_eq!(features("husk"), (every, every), "containerd {release:?}");
}

/// A host directory with a tmpfs mounted inside it, for recursive read-only mounts; shared, so
/// that containerd accepts it with any propagation and reaches its recursive read-only checks.
fn tree_with_submount(bed: &TestBed, name: &str) -> String {
    let d = bed.dir.path().join(name);
    std::fs::create_dir_all(&d).unwrap();
    let ds = d.display();
    sh(&format!(
        "mount --bind {ds} {ds} && mount --make-private {ds} && mount --make-shared {ds} && \
         mkdir {ds}/sub && mount -t tmpfs sub {ds}/sub"
    ));
    d.display().to_string()
}

fn unmount_tree(src: &str) {
    let _ = std::process::Command::new("umount")
        .args(["-R", "-l", src])
        .status();
}

#[test]
fn recursive_read_only_mounts() {
    let bed = TestBed::start_containerd2();
    let mut c = bed.cri(&[BUSYBOX]);
    let every = introspects_every_runtime_type(containerd_release(&bed.containerd_bin));
    let mount = |src: &str, ro: bool, rro: bool, p: cri::MountPropagation| cri::Mount {
        container_path: "/m".into(),
        host_path: src.into(),
        readonly: ro,
        recursive_read_only: rro,
        propagation: p as i32,
        ..Default::default()
    };
    use cri::MountPropagation::*;
    let mut seen = vec![];
    let mut handlers = vec!["runc", HUSK_RUNC_TYPE];
    if every {
        handlers.push("husk");
    }

    for handler in &handlers {
        let src = tree_with_submount(&bed, &format!("rro-{handler}"));
        let pod = Pod::run(&bed, &mut c, handler, "rro", |_| {});
        let create = |c: &mut Cri, m: cri::Mount| {
            let mut cfg = Cri::container_config("main", BUSYBOX, &["sleep", "1000"]);
            cfg.mounts = vec![m];
            c.create_container(&pod.id, &cfg, &pod.config)
        };
        // Refused by containerd before the runtime is asked.
        let rw = create(&mut c, mount(&src, false, true, PropagationPrivate)).unwrap_err();
        let shared =
            create(&mut c, mount(&src, true, true, PropagationHostToContainer)).unwrap_err();
        // Honoured: the submount is read-only too (plain `readonly` leaves it writable).
        let id = create(&mut c, mount(&src, true, true, PropagationPrivate))
            .unwrap_or_else(|e| panic!("{handler}: rro mount: {}", e.message()));
        c.start_container(&id).unwrap();
        let r = c
            .exec_sync(
                &id,
                &[
                    "sh",
                    "-c",
                    "touch /m/x 2>&1 | sed 's/.*: //'; touch /m/sub/x 2>&1 | sed 's/.*: //'; \
                     grep ' /m/sub ' /proc/self/mountinfo | cut -d' ' -f6",
                ],
                10,
            )
            .unwrap();
        c.stop_container(&id, 1);
        c.remove_container(&id);
        pod.remove(&mut c);
        unmount_tree(&src);
        seen.push((
            *handler,
            rw.message().to_string(),
            shared.message().to_string(),
            String::from_utf8_lossy(&r.stdout).into_owned(),
        ));
    }
    for (h, rw, shared, out) in &seen {
        assert!(
            rw.contains("recursive read-only mount conflicts with RW mount")
                && shared.contains("recursive read-only mount needs private propagation"),
            "{h}: rro with ReadOnly false or non-private propagation accepted: {seen:?}"
        );
        assert_eq!(
            out.as_str(),
            "Read-only file system\nRead-only file system\nro,relatime\n",
            "{h}"
        );
    }
    // Not on the native handler where containerd never asked it for its features (before
    // 2.2.7 / 2.3.4): containerd 2.1.9 dereferences the handler's missing features for an rro
    // mount and crashes (internal/cri/opts/spec_linux_opts.go withMounts) — one more reason
    // for the runc-type registration there.
}

/// The node installer chooses the registration by containerd's version; on containerd before
/// 2.2.7 / 2.3.4 only the runc-type one gets husk's features into CRI Status (so kubelet
/// accepts `hostUsers: false` pods on it), and the native one still runs pods.
#[test]
fn installer_registration_and_the_features_containerd_reports() {
    let mut bed = TestBed::start_containerd2_with(false);
    let d = bed.dir.path().to_path_buf();
    let release = containerd_release(&bed.containerd_bin);
    let version = husk_e2e::bed::containerd_version(&bed.containerd_bin);
    let (config, bin, dropin) = (
        d.join("config.toml").display().to_string(),
        d.join("bin").display().to_string(),
        d.join("conf.d").display().to_string(),
    );
    let shim = husk_e2e::bed::shim_binary().display().to_string();
    let install = |registration: &str| {
        let out =
            std::process::Command::new(husk_e2e::bed::target_dir().join("husk-node-installer"))
                .args([
                    "install",
                    "--config",
                    &config,
                    "--bin-dir",
                    &bin,
                    "--shim",
                    &shim,
                ])
                .args(["--drop-in-dir", &dropin, "--containerd-version", &version])
                .args(["--registration", registration])
                .output()
                .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let every = introspects_every_runtime_type(release);
    for (registration, want) in [("auto", true), ("native", every), ("runc-type", true)] {
        let said = install(registration);
        bed.stop_containerd();
        bed.start_containerd();
        let mut c = bed.cri(&[BUSYBOX]);
        let f = c
            .runtime_handlers()
            .into_iter()
            .find(|h| h.name == "husk")
            .and_then(|h| h.features)
            .unwrap_or_default();
        assert_eq!(
            (f.user_namespaces, f.recursive_read_only_mounts),
            (want, want),
            "--registration {registration} on containerd {version}: {said}"
        );
        let pod = Pod::run(
            &bed,
            &mut c,
            "husk",
            &format!("inst-{registration}"),
            |_| {},
        );
        let id = pod.start(&mut c, "main", BUSYBOX, &["sh", "-c", "exit 3"], |_| {});
        assert_eq!(
            c.wait_exited(&id).exit_code,
            3,
            "--registration {registration}"
        );
        c.remove_container(&id);
        pod.remove(&mut c);
    }
}
