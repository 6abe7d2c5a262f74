//! Idmapped bind mounts (OCI runtime spec 1.2 mount `uidMappings`/`gidMappings`, `idmap`,
//! `ridmap`) through the `husk` CLI, on real filesystems: tmpfs, and ext4, xfs and btrfs
//! images on loop devices; overlayfs and ramfs, which the kernel cannot idmap, for the
//! refusals. Debian's runc 1.1 has no idmap support, so the behaviour itself is asserted: the
//! ids seen through the mount inside, the ids a write lands with on disk, and nothing left
//! behind by a refusal.

mod common;
use common::*;
use serde_json::{json, Value};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The mapping kubelet sends for a `hostUsers: false` pod (container 0 → host N·65536).
const HOST_BASE: u32 = 100000;

fn mapping(container: u32, host: u32, size: u32) -> Value {
    json!([{"containerID": container, "hostID": host, "size": size}])
}

/// A filesystem of `kind` mounted on a fresh directory, unmounted (and its loop device freed)
/// on drop.
struct Fs {
    dir: tempfile::TempDir,
    kind: &'static str,
}

impl Fs {
    fn new(kind: &'static str) -> Fs {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix(&format!("husk-idmap-{kind}-"))
            .tempdir()
            .unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let run = |cmd: &mut Command| {
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        match kind {
            "tmpfs" | "ramfs" => run(Command::new("mount").args(["-t", kind, kind]).arg(&mnt)),
            "ext4" | "xfs" | "btrfs" => {
                let img = dir.path().join("fs.img");
                // Sparse images: the smallest each mkfs accepts.
                let size = match kind {
                    "xfs" => "320M",
                    "btrfs" => "128M",
                    _ => "32M",
                };
                run(Command::new("truncate").args(["-s", size]).arg(&img));
                run(Command::new(format!("mkfs.{kind}")).arg("-q").arg(&img));
                run(Command::new("mount")
                    .args(["-o", "loop"])
                    .arg(&img)
                    .arg(&mnt));
            }
            "overlay" => {
                for d in ["lower", "upper", "work"] {
                    std::fs::create_dir(dir.path().join(d)).unwrap();
                }
                let p = dir.path().display();
                run(Command::new("mount")
                    .args(["-t", "overlay", "overlay", "-o"])
                    .arg(format!(
                        "lowerdir={p}/lower,upperdir={p}/upper,workdir={p}/work"
                    ))
                    .arg(&mnt));
            }
            other => panic!("no such test filesystem {other}"),
        }
        std::fs::set_permissions(&mnt, std::fs::Permissions::from_mode(0o755)).unwrap();
        Fs { dir, kind }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// A file owned by `uid:gid` on disk.
    fn file(&self, name: &str, uid: u32, gid: u32) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, name).unwrap();
        std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
        p
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// A busybox bundle running `cmd` in a user namespace of its own with kubelet's mapping; the
/// rootfs belongs to the mapped root, as containerd's snapshot of such a pod does.
fn userns_bundle(cmd: &str) -> Bundle {
    let mut b = Bundle::sh(cmd);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = mapping(0, HOST_BASE, 65536);
    b.config["linux"]["gidMappings"] = mapping(0, HOST_BASE, 65536);
    let st = Command::new("chown")
        .args(["-R", &format!("{HOST_BASE}:{HOST_BASE}")])
        .arg(b.rootfs())
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::set_permissions(b.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    b
}

/// Appends mount `m`; its index in `mounts` (errors name it).
fn add_mount(b: &mut Bundle, m: Value) -> usize {
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(m);
    mounts.len() - 1
}

/// A bind mount of `src` at `dest` with `options` and, if given, one uid and one gid mapping.
fn bind(src: &Path, dest: &str, options: &[&str], maps: Option<(Value, Value)>) -> Value {
    let mut m = json!({"destination": dest, "type": "bind", "source": src, "options": options});
    if let Some((u, g)) = maps {
        m["uidMappings"] = u;
        m["gidMappings"] = g;
    }
    m
}

fn release() -> String {
    nix::sys::utsname::uname()
        .unwrap()
        .release()
        .to_string_lossy()
        .into_owned()
}

fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::metadata(p).unwrap();
    (m.uid(), m.gid())
}

/// Husk's user namespace holders still alive (processes named `husk-userns`). They live for
/// a fraction of a millisecond, so one seen for 5 s was left behind.
fn leftover_holders() -> Vec<i32> {
    let find = || -> Vec<i32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == husk_runtime::idmap::HOLDER_NAME)
            })
            .collect()
    };
    let t = std::time::Instant::now();
    loop {
        let left = find();
        if left.is_empty() || t.elapsed() > std::time::Duration::from_secs(5) {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `husk run` of `b` fails with one message containing `want`, and leaves nothing behind: no
/// state, no mount under the bundle, no cgroup, no user namespace holder.
fn refused(h: &Husk, b: &Bundle, want: &str) {
    let (code, out, err) = h.run_bundle(b);
    assert_eq!(code, 1, "stdout: {out} stderr: {err}");
    assert!(err.contains(want), "want {want:?} in: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one message: {err}");
    let st = h.run(&["state", &b.id]);
    assert!(!st.status.success(), "state of {} remains", b.id);
    assert!(
        mounts_below(b.path()).is_empty(),
        "{:?}",
        mounts_below(b.path())
    );
    assert!(cgroup_dirs(&b.id).is_empty(), "{:?}", cgroup_dirs(&b.id));
    assert!(leftover_holders().is_empty(), "{:?}", leftover_holders());
}

#[test]
fn kubelets_volume_mapping_on_tmpfs_ext4_xfs_btrfs() {
    let h = Husk::new();
    let fss: Vec<Fs> = ["tmpfs", "ext4", "xfs", "btrfs"]
        .into_iter()
        .map(Fs::new)
        .collect();
    let mut script = String::new();
    for fs in &fss {
        let k = fs.kind;
        fs.file("root-owned", 0, 0);
        fs.file("user-owned", 1234, 2345);
        script += &format!(
            "stat -c '{k} %u:%g %n' /v/{k}/root-owned /v/{k}/user-owned /plain/{k}/root-owned; \
             echo w > /v/{k}/written && echo {k} wrote; \
             echo w > /plain/{k}/denied 2>/dev/null || echo {k} plain write refused; "
        );
    }
    let mut b = userns_bundle(&script);
    for fs in &fss {
        let k = fs.kind;
        // What containerd sends for a hostUsers:false volume: rbind, rprivate and the pod's
        // mapping, without an idmap option.
        let maps = (mapping(0, HOST_BASE, 65536), mapping(0, HOST_BASE, 65536));
        add_mount(
            &mut b,
            bind(
                &fs.path(),
                &format!("/v/{k}"),
                &["rbind", "rprivate"],
                Some(maps),
            ),
        );
        add_mount(
            &mut b,
            bind(&fs.path(), &format!("/plain/{k}"), &["rbind"], None),
        );
    }
    let (code, out, err) = h.run_bundle(&b);
    assert_eq!(code, 0, "{err}\n{out}");
    for fs in &fss {
        let k = fs.kind;
        // Inside: disk ids as they are (0 is the container's root); without the idmapping the
        // same file is the overflow id.
        for want in [
            format!("{k} 0:0 /v/{k}/root-owned"),
            format!("{k} 1234:2345 /v/{k}/user-owned"),
            format!("{k} 65534:65534 /plain/{k}/root-owned"),
            format!("{k} wrote"),
            format!("{k} plain write refused"),
        ] {
            assert!(
                out.lines().any(|l| l == want),
                "{want:?} missing in:\n{out}"
            );
        }
        // Outside: the container root's write landed as disk uid 0, not as host 100000.
        assert_eq!(owner(&fs.path().join("written")), (0, 0), "{k}");
        assert!(!fs.path().join("denied").exists(), "{k}");
    }
}

#[test]
fn mappings_without_a_user_namespace_use_a_throwaway_one() {
    let h = Husk::new();
    let fs = Fs::new("tmpfs");
    fs.file("f", 7, 7);
    let mut b = Bundle::sh("cat /proc/self/uid_map; stat -c '%u:%g' /v/f; touch /v/g");
    // containerID 0-9 on disk are seen as host 5000-5009 (uids) and 6000-6009 (gids).
    let maps = (mapping(0, 5000, 10), mapping(0, 6000, 10));
    add_mount(
        &mut b,
        bind(&fs.path(), "/v", &["bind", "idmap"], Some(maps)),
    );
    let (code, out, err) = h.run_bundle(&b);
    assert_eq!(code, 1, "touch must fail: {out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "4294967295"]
    );
    assert_eq!(lines[1], "5007:6007");
    // Host root (not in the mount's mapping) cannot create files through it.
    assert!(err.contains("Value too large"), "{err}");
    assert!(leftover_holders().is_empty());
}

#[test]
fn a_mapping_other_than_the_containers_within_its_namespace() {
    let h = Husk::new();
    let fs = Fs::new("ext4");
    fs.file("f", 0, 0);
    let mut b = userns_bundle("stat -c '%u:%g' /v/f; touch /v/mine; stat -c '%u:%g' /v/mine");
    // Disk 0-999 seen as host 101000-101999, i.e. container 1000-1999.
    let maps = (
        mapping(0, HOST_BASE + 1000, 1000),
        mapping(0, HOST_BASE + 2000, 1000),
    );
    add_mount(
        &mut b,
        bind(&fs.path(), "/v", &["bind", "idmap"], Some(maps)),
    );
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 2000});
    std::fs::set_permissions(fs.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, out, err) = h.run_bundle(&b);
    assert_eq!(code, 0, "{err}");
    // The process (container 1000:2000) owns the root-owned directory through the mount: its
    // file lands as disk 0:0.
    assert_eq!(out, "1000:2000\n1000:2000\n");
    assert_eq!(owner(&fs.path().join("mine")), (0, 0));
    assert!(leftover_holders().is_empty());
}

#[test]
fn idmap_without_mappings_takes_the_container_namespace() {
    let h = Husk::new();
    let fs = Fs::new("tmpfs");
    fs.file("f", 3, 4);
    let mut b = userns_bundle("stat -c '%u:%g' /v/f; touch /v/new");
    add_mount(&mut b, bind(&fs.path(), "/v", &["bind", "idmap"], None));
    let (code, out, err) = h.run_bundle(&b);
    assert_eq!((code, out.as_str()), (0, "3:4\n"), "{err}");
    assert_eq!(owner(&fs.path().join("new")), (0, 0));
}

#[test]
fn ridmap_reaches_submounts_and_idmap_does_not() {
    let h = Husk::new();
    let top = Fs::new("ext4");
    top.file("f", 0, 0);
    std::fs::create_dir(top.path().join("sub")).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "sub"])
        .arg(top.path().join("sub"))
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(top.path().join("sub/g"), "g").unwrap();
    let mut b = userns_bundle(
        "stat -c '%n %u' /top/f /top/sub/g /all/f /all/sub/g /rec-top/f /rec-top/sub/g",
    );
    let maps = || Some((mapping(0, HOST_BASE, 65536), mapping(0, HOST_BASE, 65536)));
    add_mount(
        &mut b,
        bind(&top.path(), "/top", &["rbind", "idmap"], maps()),
    );
    add_mount(
        &mut b,
        bind(&top.path(), "/all", &["rbind", "ridmap"], maps()),
    );
    // Bare mappings mean idmap (runc).
    add_mount(&mut b, bind(&top.path(), "/rec-top", &["rbind"], maps()));
    let (code, out, err) = h.run_bundle(&b);
    let _ = Command::new("umount").arg(top.path().join("sub")).status();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "/top/f 0\n/top/sub/g 65534\n/all/f 0\n/all/sub/g 0\n/rec-top/f 0\n/rec-top/sub/g 65534\n"
    );
}

#[test]
fn joined_user_namespace_uses_its_maps() {
    // A CRI app container: the pod's user namespace joined by path, with the pod's mapping on
    // the spec and on its volumes.
    let h = Husk::new();
    let pod = userns_bundle("exec sleep 60");
    h.run_detached(&pod);
    let pod_pid = h.state(&pod.id)["pid"].as_i64().unwrap();
    let fs = Fs::new("tmpfs");
    fs.file("f", 0, 0);
    let join = |b: &mut Bundle| {
        for ns in b.config["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "user" {
                ns["path"] = json!(format!("/proc/{pod_pid}/ns/user"));
            }
        }
    };
    let mut b = userns_bundle("stat -c '%u:%g' /v/f; touch /v/app");
    join(&mut b);
    let maps = || Some((mapping(0, HOST_BASE, 65536), mapping(0, HOST_BASE, 65536)));
    add_mount(&mut b, bind(&fs.path(), "/v", &["rbind"], maps()));
    let (code, out, err) = h.run_bundle(&b);
    assert_eq!((code, out.as_str()), (0, "0:0\n"), "{err}");
    assert_eq!(owner(&fs.path().join("app")), (0, 0));

    // Host ids the joined namespace does not map: refused once its maps can be read.
    let mut b = userns_bundle("true");
    join(&mut b);
    b.config["linux"]["uidMappings"] = json!(null);
    b.config["linux"]["gidMappings"] = json!(null);
    let outside = Some((mapping(0, 300000, 10), mapping(0, HOST_BASE, 10)));
    let i = add_mount(&mut b, bind(&fs.path(), "/v", &["rbind"], outside));
    refused(
        &h,
        &b,
        &format!(
            "mounts[{i}].uidMappings: host ids 300000-300009 are outside the container's user \
             namespace (its uid_map: 0:100000:65536)"
        ),
    );
    h.ok(&["delete", "--force", &pod.id]);
}

#[test]
fn refusals_are_one_message_and_leave_nothing() {
    let h = Husk::new();
    let ramfs = Fs::new("ramfs");
    let overlay = Fs::new("overlay");
    let tmpfs = Fs::new("tmpfs");
    let kube = || Some((mapping(0, HOST_BASE, 65536), mapping(0, HOST_BASE, 65536)));

    // Filesystems the kernel cannot idmap: found by the kernel after the container process
    // exists, so this is the full rollback.
    for (fs, name) in [(&ramfs, "ramfs"), (&overlay, "overlayfs")] {
        let mut b = userns_bundle("true");
        let i = add_mount(&mut b, bind(&fs.path(), "/v", &["rbind"], kube()));
        refused(
            &h,
            &b,
            &format!(
                "mounts[{i}] /v: an idmapped mount of {} ({name}) is not supported by this \
                 kernel: kernel {} cannot idmap {name} mounts",
                fs.path().display(),
                release()
            ),
        );
    }
    // Host ids outside the container's user namespace.
    let mut b = userns_bundle("true");
    let outside = (mapping(0, 200000, 10), mapping(0, HOST_BASE, 10));
    let i = add_mount(&mut b, bind(&tmpfs.path(), "/v", &["rbind"], Some(outside)));
    refused(
        &h,
        &b,
        &format!(
            "config.json: mounts[{i}].uidMappings: host ids 200000-200009 are outside the \
             container's user namespace (linux.uidMappings: 0:100000:65536)"
        ),
    );
    let mut b = userns_bundle("true");
    let straddling = (mapping(0, HOST_BASE, 10), mapping(0, 165530, 10));
    let i = add_mount(
        &mut b,
        bind(&tmpfs.path(), "/v", &["rbind"], Some(straddling)),
    );
    refused(
        &h,
        &b,
        &format!("mounts[{i}].gidMappings: host ids 165536-165539 are outside"),
    );
    // Overlapping entries (the kernel would only say EINVAL).
    let mut b = Bundle::sh("true");
    let overlapping = json!([
        {"containerID": 0, "hostID": 5000, "size": 10},
        {"containerID": 5, "hostID": 7000, "size": 10}
    ]);
    let maps = (overlapping, mapping(0, 5000, 10));
    let i = add_mount(&mut b, bind(&tmpfs.path(), "/v", &["bind"], Some(maps)));
    refused(
        &h,
        &b,
        &format!(
            "mounts[{i}].uidMappings: entries 0 and 1 overlap: containerID ranges 0-9 and 5-14"
        ),
    );
    // Only a bind mount can be idmapped.
    let mut b = userns_bundle("true");
    let i = add_mount(
        &mut b,
        json!({"destination": "/v", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"]}),
    );
    refused(&h, &b, &format!("mounts[{i}].options: /v is idmapped"));
    // idmap without mappings and without a user namespace.
    let mut b = Bundle::sh("true");
    let i = add_mount(&mut b, bind(&tmpfs.path(), "/v", &["bind", "idmap"], None));
    refused(
        &h,
        &b,
        &format!("mounts[{i}].options: idmap/ridmap without uidMappings and gidMappings takes the container's user namespace mappings, but the container has no user namespace"),
    );
    // One map without the other.
    let mut b = Bundle::sh("true");
    let mut m = bind(&tmpfs.path(), "/v", &["bind"], None);
    m["uidMappings"] = mapping(0, 5000, 10);
    let i = add_mount(&mut b, m);
    refused(
        &h,
        &b,
        &format!("mounts[{i}].gidMappings: uidMappings and gidMappings must be given together"),
    );
}

#[test]
fn features_report_idmap_where_it_works() {
    let h = Husk::new();
    let f: Value = serde_json::from_str(&h.ok(&["features"])).unwrap();
    let (major, minor) = {
        let r = release();
        let mut it = r.split(|c: char| !c.is_ascii_digit());
        (
            it.next().unwrap().parse::<u32>().unwrap(),
            it.next().unwrap().parse::<u32>().unwrap(),
        )
    };
    // Every filesystem a user-namespaced pod mounts (tmpfs for its secrets) idmaps since 6.3.
    let works = (major, minor) >= (6, 3);
    assert_eq!(f["linux"]["mountExtensions"]["idmap"]["enabled"], works);
    let opts = f["mountOptions"].as_array().unwrap();
    assert_eq!(opts.iter().any(|o| o == "ridmap"), works);
    assert!(opts.iter().any(|o| o == "rro"));
    assert!(f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "user"));
}
