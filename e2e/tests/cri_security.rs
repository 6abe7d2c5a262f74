//! CRI security settings on both handlers: privileged, seccomp profiles, masked and read-only
//! paths, sysctls, no_new_privs against a setuid binary, and the image's USER forms.

use husk_e2e::bed::{BUSYBOX, SETUID, USER_NAME, USER_UID, USER_UID_GID};
use husk_e2e::cri::v1 as cri;
use husk_e2e::cri::Cri;
use husk_e2e::suite::{on_both, pod_security, run_to_exit, security, Pod};

#[test]
fn privileged_container_gets_all_capabilities_devices_and_no_seccomp() {
    let seen = on_both(&[BUSYBOX], |bed, c, handler| {
        run_to_exit(
            bed,
            c,
            handler,
            "priv",
            BUSYBOX,
            &[
                "sh",
                "-c",
                "grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status; \
                 mkdir -p /mnt/t && mount -t tmpfs t /mnt/t && echo mount-ok; \
                 test -c /dev/loop-control && echo host-devices; \
                 echo 1 > /proc/sys/kernel/ns_last_pid && echo proc-sys-writable",
            ],
            pod_security(|s| s.privileged = true),
            security(|s| s.privileged = true),
        )
    });
    assert_eq!(seen.code, 0, "{seen:?}");
    assert!(seen.stdout.contains("Seccomp:\t0\n"), "{seen:?}");
    assert!(seen.stdout.contains("mount-ok"), "{seen:?}");
    assert!(seen.stdout.contains("proc-sys-writable"), "{seen:?}");
    let host_devices = std::path::Path::new("/dev/loop-control").exists();
    assert_eq!(
        seen.stdout.contains("host-devices"),
        host_devices,
        "{seen:?}"
    );
}

fn profile(kind: cri::security_profile::ProfileType, path: &str) -> cri::SecurityProfile {
    cri::SecurityProfile {
        profile_type: kind as i32,
        localhost_ref: path.into(),
    }
}

#[test]
fn seccomp_runtime_default_unconfined_and_localhost() {
    use cri::security_profile::ProfileType;
    let seen = on_both(&[BUSYBOX], |bed, c, handler| {
        // A Localhost profile: everything allowed but mkdir, which fails with EPERM.
        let local = bed.dir.path().join("no-mkdir.json");
        std::fs::write(
            &local,
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
        )
        .unwrap();
        let script = "grep '^Seccomp:' /proc/self/status; \
             unshare -U true 2>/dev/null && echo unshare-ok || echo unshare-denied; \
             mkdir /tmp/d 2>&1 && echo mkdir-ok";
        let mut out = Vec::new();
        for (name, p) in [
            ("default", profile(ProfileType::RuntimeDefault, "")),
            ("unconfined", profile(ProfileType::Unconfined, "")),
            (
                "local",
                profile(ProfileType::Localhost, &local.display().to_string()),
            ),
        ] {
            let r = run_to_exit(
                bed,
                c,
                handler,
                &format!("seccomp-{name}"),
                BUSYBOX,
                &["sh", "-c", script],
                |_| {},
                security(|s| s.seccomp = Some(p)),
            );
            out.push((name, r.stdout));
        }
        out
    });
    let by = |n: &str| seen.iter().find(|(k, _)| *k == n).unwrap().1.clone();
    assert!(by("default").starts_with("Seccomp:\t2\n"), "{seen:?}");
    assert!(by("default").contains("unshare-denied"), "{seen:?}");
    assert!(by("default").contains("mkdir-ok"), "{seen:?}");
    assert!(by("unconfined").starts_with("Seccomp:\t0\n"), "{seen:?}");
    assert!(by("local").starts_with("Seccomp:\t2\n"), "{seen:?}");
    assert!(by("local").contains("Operation not permitted"), "{seen:?}");
    assert!(!by("local").contains("mkdir-ok"), "{seen:?}");
}

/// The AppArmor profile the Localhost case loads: everything allowed but writes below /tmp.
const APPARMOR_TEST_PROFILE: &str = "husk-e2e-deny-tmp-write";

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// AppArmor as kubelet asks for it (the `apparmor` field and the deprecated string, as kubelet
/// sends both): `runtime/default` (containerd's generated `cri-containerd.apparmor.d`, loaded by
/// containerd), `unconfined`, and `localhost/<profile>` with a profile that denies writes below
/// /tmp. On a host without AppArmor containerd refuses all but `unconfined` at CreateContainer,
/// on both handlers alike.
#[test]
fn apparmor_runtime_default_unconfined_and_localhost() {
    use cri::security_profile::ProfileType;
    let enabled = apparmor_enabled();
    if enabled {
        let p = std::env::temp_dir().join(format!("{APPARMOR_TEST_PROFILE}.profile"));
        std::fs::write(
            &p,
            format!(
                "profile {APPARMOR_TEST_PROFILE} flags=(attach_disconnected,mediate_deleted) {{\n  file,\n  capability,\n  network,\n  signal,\n  deny /tmp/** w,\n}}\n"
            ),
        )
        .unwrap();
        let out = std::process::Command::new("apparmor_parser")
            .arg("-r")
            .arg(&p)
            .output()
            .expect("apparmor_parser (the apparmor package)");
        assert!(
            out.status.success(),
            "apparmor_parser: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let seen = on_both(&[BUSYBOX], |bed, c, handler| {
        let script = "cat /proc/self/attr/current 2>/dev/null || echo no-label; \
             echo x > /tmp/f 2>/dev/null && echo tmp-written || echo tmp-denied";
        let mut out = Vec::new();
        for (name, kind, local, deprecated) in [
            (
                "default",
                ProfileType::RuntimeDefault,
                "",
                "runtime/default".to_string(),
            ),
            (
                "unconfined",
                ProfileType::Unconfined,
                "",
                "unconfined".to_string(),
            ),
            (
                "local",
                ProfileType::Localhost,
                APPARMOR_TEST_PROFILE,
                format!("localhost/{APPARMOR_TEST_PROFILE}"),
            ),
        ] {
            // kubelet sends the deprecated string too: containerd 1.6 reads only that.
            #[allow(deprecated)]
            let tune = security(|s| {
                s.apparmor = Some(profile(kind, local));
                s.apparmor_profile = deprecated;
            });
            if name != "unconfined" && !enabled {
                let pod = Pod::run(bed, c, handler, &format!("apparmor-{name}"), |_| {});
                let mut cfg = Cri::container_config("main", BUSYBOX, &["sh", "-c", script]);
                tune(&mut cfg);
                let e = c
                    .create_container(&pod.id, &cfg, &pod.config)
                    .expect_err("an AppArmor profile on a host without AppArmor");
                out.push((
                    name,
                    format!("refused: {}", e.message().contains("apparmor")),
                ));
                pod.remove(c);
                continue;
            }
            let r = run_to_exit(
                bed,
                c,
                handler,
                &format!("apparmor-{name}"),
                BUSYBOX,
                &["sh", "-c", script],
                |_| {},
                tune,
            );
            assert_eq!(r.code, 0, "{name}: {r:?}");
            // Unconfined is unconfined whatever the label: Debian's AppArmor 4 gives
            // /usr/sbin/runc a profile of its own in unconfined mode ("runc (unconfined)"),
            // which a container started without a profile keeps.
            let stdout = r
                .stdout
                .lines()
                .map(|l| {
                    if l.ends_with(" (unconfined)") {
                        "unconfined"
                    } else {
                        l
                    }
                })
                .map(|l| format!("{l}\n"))
                .collect::<String>();
            out.push((name, stdout));
        }
        out
    });
    let by = |n: &str| seen.iter().find(|(k, _)| *k == n).unwrap().1.clone();
    if enabled {
        assert_eq!(
            by("default"),
            "cri-containerd.apparmor.d (enforce)\ntmp-written\n",
            "{seen:?}"
        );
        assert_eq!(by("unconfined"), "unconfined\ntmp-written\n", "{seen:?}");
        assert_eq!(
            by("local"),
            format!("{APPARMOR_TEST_PROFILE} (enforce)\ntmp-denied\n"),
            "{seen:?}"
        );
    } else {
        // containerd refuses any profile but unconfined there ("apparmor is not supported").
        assert_eq!(by("default"), "refused: true", "{seen:?}");
        assert!(by("unconfined").ends_with("tmp-written\n"), "{seen:?}");
        assert_eq!(by("local"), "refused: true", "{seen:?}");
    }
}

/// kubelet's masked and read-only paths for `procMount: Default`.
const KUBELET_MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const KUBELET_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

#[test]
fn masked_and_readonly_paths_default_and_custom() {
    let seen = on_both(&[BUSYBOX], |bed, c, handler| {
        let script = "echo kcore $(cat /proc/kcore 2>/dev/null | wc -c); \
             echo passwd $(cat /etc/passwd | wc -c); \
             echo x > /proc/sysrq-trigger 2>/dev/null || echo sysrq-ro; \
             touch /tmp/f 2>/dev/null && echo tmp-rw || echo tmp-ro; \
             ls /proc/acpi 2>/dev/null | wc -l";
        // What kubelet sends for the default proc mount (pkg/securitycontext/util.go): with
        // no lists at all, containerd 2.x masks nothing, and /proc/acpi shows on a machine
        // with ACPI (the node guest) where this host has none.
        let default = run_to_exit(
            bed,
            c,
            handler,
            "masks",
            BUSYBOX,
            &["sh", "-c", script],
            |_| {},
            security(|s| {
                s.masked_paths = KUBELET_MASKED_PATHS.map(String::from).to_vec();
                s.readonly_paths = KUBELET_READONLY_PATHS.map(String::from).to_vec();
            }),
        );
        let custom = run_to_exit(
            bed,
            c,
            handler,
            "masks-custom",
            BUSYBOX,
            &["sh", "-c", script],
            |_| {},
            security(|s| {
                s.masked_paths = vec!["/etc/passwd".into()];
                s.readonly_paths = vec!["/tmp".into()];
            }),
        );
        (default.stdout, custom.stdout)
    });
    // Defaults: /proc/kcore masked (reads nothing), /proc/sysrq-trigger read-only, no /proc/acpi.
    assert_eq!(seen.0, "kcore 0\npasswd 109\nsysrq-ro\ntmp-rw\n0\n");
    // Custom lists replace the defaults.
    assert!(seen.1.contains("passwd 0\n"), "{seen:?}");
    assert!(seen.1.contains("tmp-ro\n"), "{seen:?}");
}

#[test]
fn namespaced_sysctls_from_the_pod() {
    let seen = on_both(&[BUSYBOX], |bed, c, handler| {
        run_to_exit(
            bed,
            c,
            handler,
            "sysctl",
            BUSYBOX,
            &[
                "cat",
                "/proc/sys/net/ipv4/ip_unprivileged_port_start",
                "/proc/sys/kernel/shm_rmid_forced",
                "/proc/sys/net/ipv4/ping_group_range",
            ],
            |p| {
                let linux = p.linux.get_or_insert_with(Default::default);
                linux.sysctls = [
                    ("net.ipv4.ip_unprivileged_port_start", "80"),
                    ("kernel.shm_rmid_forced", "1"),
                    ("net.ipv4.ping_group_range", "0 2147483647"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            },
            |_| {},
        )
        .stdout
    });
    assert_eq!(seen, "80\n1\n0\t2147483647\n");
}

#[test]
fn no_new_privs_stops_a_setuid_binary() {
    let seen = on_both(&[SETUID], |bed, c, handler| {
        let mut out = Vec::new();
        for nnp in [false, true] {
            let r = run_to_exit(
                bed,
                c,
                handler,
                &format!("nnp-{nnp}"),
                SETUID,
                &["/bin/euid"],
                |_| {},
                security(|s| {
                    s.run_as_user = Some(cri::Int64Value { value: 1000 });
                    s.no_new_privs = nnp;
                }),
            );
            out.push(r.stdout);
        }
        out
    });
    assert_eq!(seen, ["uid=1000 euid=0\n", "uid=1000 euid=1000\n"]);
}

#[test]
fn image_user_as_uid_name_and_uid_gid() {
    let seen = on_both(&[USER_UID, USER_NAME, USER_UID_GID], |bed, c, handler| {
        [USER_UID, USER_NAME, USER_UID_GID]
            .iter()
            .enumerate()
            .map(|(i, image)| {
                run_to_exit(
                    bed,
                    c,
                    handler,
                    &format!("user{i}"),
                    image,
                    &["id"],
                    |_| {},
                    |_| {},
                )
                .stdout
            })
            .collect::<Vec<_>>()
    });
    // containerd 2.x also adds the user's groups from the image's /etc/group (2000 "extra");
    // 1.6 does not. Either way runc and husk agree (on_both).
    for s in &seen[..2] {
        assert!(
            s == "uid=1000(user) gid=1000(user) groups=1000(user)\n"
                || s == "uid=1000(user) gid=1000(user) groups=1000(user),2000(extra)\n",
            "{seen:?}"
        );
    }
    assert_eq!(
        seen[2],
        "uid=1000(user) gid=2000(extra) groups=2000(extra)\n"
    );
}
