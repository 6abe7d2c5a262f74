//! The CRI suite: containerd's CRI API driven exactly as kubelet drives it, on runtime handler
//! `husk` and on `runc` (the reference). Every scenario runs on both; a difference in what a
//! user would see is a failure.

use husk_e2e::bed::BUSYBOX;
use husk_e2e::cri::{v1 as cri, Cri};
use husk_e2e::suite::{log_lines, on_both};
use std::time::{Duration, Instant};

#[test]
fn pod_sandbox_lifecycle() {
    on_both(&[], |bed, c, handler| {
        let cfg = bed.pod_config(
            &format!("pod-{handler}"),
            &bed.dir.path().join(format!("logs-{handler}")),
        );
        let pod = c.run_pod(&cfg, handler);
        let st = c.pod_status(&pod);
        let ready = st.state == cri::PodSandboxState::SandboxReady as i32;
        let ip = st.network.map(|n| n.ip).unwrap_or_default();
        assert!(ip.starts_with("10."), "{handler}: pod IP {ip:?}");
        let filter = cri::PodSandboxFilter {
            id: pod.clone(),
            ..Default::default()
        };
        let listed = c.list_pods(Some(filter)).len();
        c.stop_pod(&pod);
        let stopped = c.pod_status(&pod).state == cri::PodSandboxState::SandboxNotready as i32;
        c.remove_pod(&pod);
        let gone = c
            .list_pods(Some(cri::PodSandboxFilter {
                id: pod.clone(),
                ..Default::default()
            }))
            .is_empty();
        (ready, listed, stopped, gone)
    });
}

#[test]
fn exit_codes_reasons_and_logs() {
    let seen = on_both(&[BUSYBOX], |bed, c, handler| {
        let logs = bed.dir.path().join(format!("logs-{handler}"));
        let pod_cfg = bed.pod_config(&format!("exit-{handler}"), &logs);
        let pod = c.run_pod(&pod_cfg, handler);
        let mut out = Vec::new();
        for (name, script) in [
            ("ok", "echo hello; exit 0"),
            (
                "fail",
                "echo to-err >&2; echo line1; printf partial; exit 3",
            ),
        ] {
            let cfg = Cri::container_config(name, BUSYBOX, &["sh", "-c", script]);
            let id = c
                .create_container(&pod, &cfg, &pod_cfg)
                .expect("CreateContainer");
            c.start_container(&id).expect("StartContainer");
            let st = c.wait_exited(&id);
            let mut lines = log_lines(&logs.join(format!("{name}.log")));
            lines.sort();
            out.push((name, st.exit_code, st.reason, lines));
            c.remove_container(&id);
        }
        c.stop_pod(&pod);
        c.remove_pod(&pod);
        out
    });
    assert_eq!(seen[0].1, 0);
    assert_eq!(seen[0].2, "Completed");
    assert_eq!(seen[0].3, vec!["stdout F hello"]);
    assert_eq!((seen[1].1, seen[1].2.as_str()), (3, "Error"));
    assert_eq!(
        seen[1].3,
        vec!["stderr F to-err", "stdout F line1", "stdout P partial"]
    );
}

#[test]
fn exec_sync_output_exit_code_and_timeout() {
    let seen = on_both(&[BUSYBOX], |bed, c, handler| {
        let pod_cfg = bed.pod_config(
            &format!("exec-{handler}"),
            &bed.dir.path().join(format!("logs-{handler}")),
        );
        let pod = c.run_pod(&pod_cfg, handler);
        let id = c
            .create_container(
                &pod,
                &Cri::container_config("main", BUSYBOX, &["sleep", "1000"]),
                &pod_cfg,
            )
            .unwrap();
        c.start_container(&id).unwrap();
        let r = c
            .exec_sync(&id, &["sh", "-c", "echo out; echo err >&2; exit 4"], 10)
            .expect("ExecSync");
        let t = Instant::now();
        let timed_out = c.exec_sync(&id, &["sleep", "30"], 1);
        let took = t.elapsed();
        assert!(
            took < Duration::from_secs(20),
            "{handler}: ExecSync timeout not honoured ({took:?})"
        );
        // The timed-out process must not be left running in the container (containerd kills
        // it; give that a moment).
        let mut ps = c
            .exec_sync(&id, &["sh", "-c", "ps -o args | grep -c '^sleep 30$'"], 10)
            .unwrap();
        let t = Instant::now();
        while String::from_utf8_lossy(&ps.stdout).trim() != "0"
            && t.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(100));
            ps = c
                .exec_sync(&id, &["sh", "-c", "ps -o args | grep -c '^sleep 30$'"], 10)
                .unwrap();
        }
        c.stop_container(&id, 1);
        c.remove_container(&id);
        c.stop_pod(&pod);
        c.remove_pod(&pod);
        (
            String::from_utf8_lossy(&r.stdout).into_owned(),
            String::from_utf8_lossy(&r.stderr).into_owned(),
            r.exit_code,
            timed_out.map(|r| r.exit_code).map_err(|s| s.code()),
            String::from_utf8_lossy(&ps.stdout).trim().to_string(),
        )
    });
    assert_eq!(
        (seen.0.as_str(), seen.1.as_str(), seen.2),
        ("out\n", "err\n", 4)
    );
    assert!(
        seen.3.is_err(),
        "a timed-out ExecSync is an error: {:?}",
        seen.3
    );
    assert_eq!(seen.4, "0", "the timed-out process was killed");
}

#[test]
fn security_context_user_readonly_rootfs_and_capabilities() {
    let seen = on_both(&[BUSYBOX], |bed, c, handler| {
        let pod_cfg = bed.pod_config(
            &format!("sec-{handler}"),
            &bed.dir.path().join(format!("logs-{handler}")),
        );
        let pod = c.run_pod(&pod_cfg, handler);
        let mut cfg = Cri::container_config("sec", BUSYBOX, &["sleep", "1000"]);
        cfg.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                run_as_user: Some(cri::Int64Value { value: 1000 }),
                run_as_group: Some(cri::Int64Value { value: 1000 }),
                supplemental_groups: vec![2000],
                readonly_rootfs: true,
                no_new_privs: true,
                capabilities: Some(cri::Capability {
                    drop_capabilities: vec!["ALL".into()],
                    add_capabilities: vec!["NET_BIND_SERVICE".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let id = c.create_container(&pod, &cfg, &pod_cfg).unwrap();
        c.start_container(&id).unwrap();
        let r = c.exec_sync(&id, &["sh", "-c", "id; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; touch /x 2>&1; hostname"], 10).unwrap();
        c.stop_container(&id, 1);
        c.remove_container(&id);
        c.stop_pod(&pod);
        c.remove_pod(&pod);
        String::from_utf8_lossy(&r.stdout).replace(&format!("sec-{handler}"), "<pod>")
    });
    assert!(
        seen.starts_with("uid=1000(user) gid=1000(user) groups=1000(user),2000(extra)\n"),
        "{seen}"
    );
    // A non-root user keeps only the bounding set (no ambient capabilities from CRI).
    assert!(
        seen.contains("CapEff:\t0000000000000000\nCapBnd:\t0000000000000400\nNoNewPrivs:\t1\n"),
        "{seen}"
    );
    assert!(seen.contains("Read-only file system"), "{seen}");
}

#[test]
fn oom_kill_is_reported_as_oomkilled() {
    let seen = on_both(&[BUSYBOX], |bed, c, handler| {
        let pod_cfg = bed.pod_config(
            &format!("oom-{handler}"),
            &bed.dir.path().join(format!("logs-{handler}")),
        );
        let pod = c.run_pod(&pod_cfg, handler);
        let mut cfg = Cri::container_config(
            "oom",
            BUSYBOX,
            &[
                "sh",
                "-c",
                "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo survived",
            ],
        );
        cfg.linux = Some(cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 32 << 20,
                ..Default::default()
            }),
            ..Default::default()
        });
        let id = c.create_container(&pod, &cfg, &pod_cfg).unwrap();
        c.start_container(&id).unwrap();
        let st = c.wait_exited(&id);
        c.remove_container(&id);
        c.stop_pod(&pod);
        c.remove_pod(&pod);
        // Asserted inside the scenario, so that a reference that misses the OOM event (seen
        // once: runc 1.1's shim on containerd 1.7, systemd driver, in the emulated node guest
        // under load, reported "Error") fails its own run and is retried once (`on_both`).
        assert_eq!(
            (st.exit_code, st.reason.as_str()),
            (137, "OOMKilled"),
            "{handler}: exit code and reason"
        );
        (st.exit_code, st.reason)
    });
    assert_eq!(seen, (137, "OOMKilled".to_string()));
}

/// What kubelet sends for a Burstable container on a cgroup v2 node: CPU quota and period,
/// shares, a memory limit and `unified` `memory.oom.group=1` (an OOM kill takes the whole
/// container, kubelet's default unless singleProcessOOMKill), as the container sees it in its
/// cgroup namespace; then an OOM kill with a second process running, which must take both
/// (OOMKilled). On v1 a `unified` key is refused (at StartContainer) by both handlers.
#[test]
fn kubelet_v2_resources_and_oom_group_kill() {
    let v2 = husk_e2e::env::cgroup_v2();
    let seen = on_both(&[BUSYBOX], |bed, c, handler| {
        let pod_cfg = bed.pod_config(
            &format!("kv2-{handler}"),
            &bed.dir.path().join(format!("logs-kv2-{handler}")),
        );
        let pod = c.run_pod(&pod_cfg, handler);
        let resources = |limit: i64| {
            Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    cpu_period: 100_000,
                    cpu_quota: 50_000,
                    cpu_shares: 512,
                    memory_limit_in_bytes: limit,
                    unified: [("memory.oom.group".to_string(), "1".to_string())].into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
        };
        let mut cfg = Cri::container_config(
            "main",
            BUSYBOX,
            &[
                "sh",
                "-c",
                "cd /sys/fs/cgroup && cat cpu.max memory.max memory.oom.group memory.swap.max; \
                 grep -c . cgroup.procs",
            ],
        );
        cfg.linux = resources(64 << 20);
        let started = c
            .create_container(&pod, &cfg, &pod_cfg)
            .and_then(|id| c.start_container(&id).map(|_| id));
        let seen = match started {
            Err(_) => "refused".to_string(),
            Ok(id) => {
                let st = c.wait_exited(&id);
                let log = husk_e2e::suite::log_text(
                    &bed.dir.path().join(format!("logs-kv2-{handler}/main.log")),
                    "stdout",
                );
                c.remove_container(&id);
                // Over the limit with a second process beside the one that allocates.
                let mut oom = Cri::container_config(
                    "oom",
                    BUSYBOX,
                    &[
                        "sh",
                        "-c",
                        "sleep 1000 & x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo survived",
                    ],
                );
                oom.linux = resources(32 << 20);
                let id = c.create_container(&pod, &oom, &pod_cfg).unwrap();
                c.start_container(&id).unwrap();
                let o = c.wait_exited(&id);
                c.remove_container(&id);
                // As in `oom_kill_is_reported_as_oomkilled`: asserted inside the scenario
                // so that a reference that misses the OOM event (seen once: runc 1.1's shim on
                // containerd 1.7, systemd driver, in the emulated guest, "exit 137 Error") fails
                // its own run and is retried once; husk is never retried.
                if v2 {
                    assert_eq!(
                        (o.exit_code, o.reason.as_str()),
                        (137, "OOMKilled"),
                        "{handler}: the group OOM kill's exit code and reason"
                    );
                }
                format!(
                    "exit {} {}\n{log}oom: exit {} {}",
                    st.exit_code, st.reason, o.exit_code, o.reason
                )
            }
        };
        c.stop_pod(&pod);
        c.remove_pod(&pod);
        seen
    });
    if v2 {
        // memory.swap.max: containerd sets swap = memory limit when it has no swap of its own
        // to give (so 0), on every handler.
        assert!(
            seen.starts_with("exit 0 Completed\n50000 100000\n67108864\n1\n"),
            "{seen}"
        );
        assert!(seen.ends_with("oom: exit 137 OOMKilled"), "{seen}");
    } else {
        assert_eq!(seen, "refused");
    }
}

#[test]
fn update_container_resources_and_container_stats() {
    let seen = on_both(&[BUSYBOX], |bed, c, handler| {
        let pod_cfg = bed.pod_config(
            &format!("upd-{handler}"),
            &bed.dir.path().join(format!("logs-{handler}")),
        );
        let pod = c.run_pod(&pod_cfg, handler);
        let id = c
            .create_container(
                &pod,
                &Cri::container_config("main", BUSYBOX, &["sleep", "1000"]),
                &pod_cfg,
            )
            .unwrap();
        c.start_container(&id).unwrap();
        let req = cri::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                cpu_shares: 512,
                ..Default::default()
            }),
            ..Default::default()
        };
        c.call(|mut r| async move { r.update_container_resources(req).await })
            .expect("UpdateContainerResources");
        // The container's own cgroup files (its cgroup namespace on v2).
        let files: &[&str] = if husk_e2e::env::cgroup_v2() {
            &["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/cpu.weight"]
        } else {
            &[
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "/sys/fs/cgroup/cpu/cpu.shares",
            ]
        };
        let mut limit = String::from_utf8_lossy(
            &c.exec_sync(&id, &[&["cat"], files].concat(), 10)
                .unwrap()
                .stdout,
        )
        .into_owned();
        if husk_e2e::env::cgroup_v2() {
            // cpu.weight from 512 shares: runc < 1.3.2 used a linear map (20); runc >= 1.3.2
            // and crun >= 1.23 the quadratic fit husk uses (59), so 1024 shares become the v2
            // default 100. Checked per handler, kept out of the husk/runc comparison.
            let weight = limit.lines().nth(1).unwrap_or_default().to_string();
            let allowed: &[&str] = if handler == "husk" {
                &["59"]
            } else {
                &["20", "59"]
            };
            assert!(
                allowed.contains(&weight.as_str()),
                "{handler}: cpu.weight {weight} for 512 shares, want one of {allowed:?}"
            );
            limit = limit.lines().next().unwrap_or_default().to_string() + "\n";
        }
        let req = cri::ContainerStatsRequest {
            container_id: id.clone(),
        };
        let stats = c
            .call(|mut r| async move { r.container_stats(req).await })
            .expect("ContainerStats")
            .stats
            .expect("stats");
        let mem = stats
            .memory
            .and_then(|m| m.working_set_bytes)
            .map(|v| v.value)
            .unwrap_or(0);
        let cpu = stats
            .cpu
            .and_then(|c| c.usage_core_nano_seconds)
            .map(|v| v.value)
            .unwrap_or(0);
        c.stop_container(&id, 1);
        c.remove_container(&id);
        c.stop_pod(&pod);
        c.remove_pod(&pod);
        (limit, mem > 0, cpu > 0)
    });
    let (limits, mem, cpu) = seen;
    let lines: Vec<&str> = limits.lines().collect();
    assert_eq!(lines[0], "67108864");
    if !husk_e2e::env::cgroup_v2() {
        assert_eq!(lines, ["67108864", "512"]);
    }
    assert_eq!((mem, cpu), (true, true));
}

#[test]
fn container_list_and_status_with_filters() {
    let seen = on_both(&[BUSYBOX], |bed, c, handler| {
        let pod_cfg = bed.pod_config(
            &format!("list-{handler}"),
            &bed.dir.path().join(format!("logs-{handler}")),
        );
        let pod = c.run_pod(&pod_cfg, handler);
        let mut ids = Vec::new();
        for (name, cmd) in [("runs", "sleep 1000"), ("exits", "exit 0")] {
            let mut cfg = Cri::container_config(name, BUSYBOX, &["sh", "-c", cmd]);
            cfg.labels = [("role".to_string(), name.to_string())].into();
            let id = c.create_container(&pod, &cfg, &pod_cfg).unwrap();
            ids.push(id);
        }
        let created =
            c.container_status(&ids[0]).state == cri::ContainerState::ContainerCreated as i32;
        for id in &ids {
            c.start_container(id).unwrap();
        }
        c.wait_exited(&ids[1]);
        let list = |c: &mut Cri, filter: cri::ContainerFilter| {
            let req = cri::ListContainersRequest {
                filter: Some(filter),
            };
            let mut names: Vec<String> = c
                .call(|mut r| async move { r.list_containers(req).await })
                .expect("ListContainers")
                .containers
                .into_iter()
                .map(|x| x.metadata.unwrap().name)
                .collect();
            names.sort();
            names
        };
        let by_pod = list(
            c,
            cri::ContainerFilter {
                pod_sandbox_id: pod.clone(),
                ..Default::default()
            },
        );
        let running = list(
            c,
            cri::ContainerFilter {
                pod_sandbox_id: pod.clone(),
                state: Some(cri::ContainerStateValue {
                    state: cri::ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            },
        );
        let labelled = list(
            c,
            cri::ContainerFilter {
                label_selector: [("role".to_string(), "exits".to_string())].into(),
                pod_sandbox_id: pod.clone(),
                ..Default::default()
            },
        );
        let st = c.container_status(&ids[0]);
        let status = (
            st.state == cri::ContainerState::ContainerRunning as i32,
            st.started_at > 0,
            st.finished_at,
            st.labels.get("role").cloned(),
            st.image.map(|i| i.image).unwrap_or_default().is_empty(),
        );
        c.stop_container(&ids[0], 0);
        let stopped = c.container_status(&ids[0]);
        for id in &ids {
            c.remove_container(id);
        }
        let after = list(
            c,
            cri::ContainerFilter {
                pod_sandbox_id: pod.clone(),
                ..Default::default()
            },
        );
        c.stop_pod(&pod);
        c.remove_pod(&pod);
        (
            created,
            by_pod,
            running,
            labelled,
            status,
            (stopped.exit_code, stopped.reason),
            after,
        )
    });
    assert!(seen.0, "a created container reports CONTAINER_CREATED");
    assert_eq!(seen.1, ["exits", "runs"]);
    assert_eq!(seen.2, ["runs"]);
    assert_eq!(seen.3, ["exits"]);
    assert_eq!(seen.4, (true, true, 0, Some("runs".to_string()), false));
    assert_eq!(seen.5, (137, "Error".to_string()));
    assert!(seen.6.is_empty());
}

/// Every cgroup directory (any hierarchy, v1 or v2) whose name contains `needle`.
fn cgroup_dirs_containing(needle: &str) -> Vec<std::path::PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut stack: Vec<std::path::PathBuf> = mounts
        .lines()
        .filter(|l| {
            let fs = l.split(" - ").nth(1).and_then(|r| r.split(' ').next());
            matches!(fs, Some("cgroup") | Some("cgroup2"))
        })
        .filter_map(|l| l.split(' ').nth(4).map(std::path::PathBuf::from))
        .collect();
    let mut found = vec![];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if e.file_name().to_string_lossy().contains(needle) {
                    found.push(e.path());
                }
                stack.push(e.path());
            }
        }
    }
    found
}

/// The cgroup parents kubelet sends: the systemd driver's nested `.slice` form (containerd then
/// asks for `slice:cri-containerd:<id>` whatever the runtime's driver), the cgroupfs form, and
/// none. Each pod must run on both handlers; the container's cgroup (as it sees it, ids
/// masked) must be the same; nothing of it may be left after removal.
#[test]
fn cgroup_parents_slice_cgroupfs_and_empty() {
    let uid = format!("{:x}", std::process::id());
    let parents = [
        format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice"),
        format!("/kubepods/burstable/pod{uid}"),
        String::new(),
    ];
    on_both(&[BUSYBOX], |bed, c, handler| {
        let mut seen = vec![];
        for (i, parent) in parents.iter().enumerate() {
            if bed.driver == Some(husk_e2e::env::CgroupDriver::Systemd)
                && !parent.ends_with(".slice")
            {
                // With the systemd driver a parent that is not a slice reaches the runtime as
                // a cgroupfs path: runc refuses it, and husk must too, with the same hint.
                let mut cfg = bed.pod_config(
                    &format!("cg{i}-{handler}"),
                    &bed.dir.path().join(format!("logs-cg{i}-{handler}")),
                );
                cfg.linux.get_or_insert_with(Default::default).cgroup_parent = parent.clone();
                let req = cri::RunPodSandboxRequest {
                    config: Some(cfg),
                    runtime_handler: handler.into(),
                };
                let e = c
                    .call(|mut r| async move { r.run_pod_sandbox(req).await })
                    .expect_err("a cgroupfs parent with the systemd driver");
                assert!(
                    e.message().contains("slice:prefix:name"),
                    "{handler}: {}",
                    e.message()
                );
                seen.push(format!("{parent:?} refused"));
                continue;
            }
            let pod = husk_e2e::suite::Pod::run(bed, c, handler, &format!("cg{i}"), |p| {
                p.linux.get_or_insert_with(Default::default).cgroup_parent = parent.clone();
            });
            let id = pod.start(c, "main", BUSYBOX, &["sleep", "3600"], |_| {});
            let r = c
                .exec_sync(&id, &["cat", "/proc/self/cgroup"], 10)
                .unwrap_or_else(|e| panic!("{handler}: ExecSync with parent {parent:?}: {e}"));
            assert_eq!(r.exit_code, 0, "{handler}: exec with parent {parent:?}");
            // The container's memory (v1) or unified (v2) line, with the ids masked.
            let line = String::from_utf8_lossy(&r.stdout)
                .lines()
                .find(|l| l.contains(":memory:") || l.starts_with("0::"))
                .unwrap_or_default()
                .replace(&id, "CTR")
                .replace(&pod.id, "POD");
            let dirs = cgroup_dirs_containing(&id);
            assert!(!dirs.is_empty(), "{handler}: no cgroup directory for {id}");
            c.remove_container(&id);
            let pod_id = pod.id.clone();
            pod.remove(c);
            for gone in [&id, &pod_id] {
                let left = cgroup_dirs_containing(gone);
                assert!(left.is_empty(), "{handler}: left behind: {left:?}");
            }
            seen.push(line);
        }
        seen
    });
}
