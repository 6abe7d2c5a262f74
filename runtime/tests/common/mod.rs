//! Shared helpers for the root integration tests: real rootfs trees (busybox, scratch) and a
//! `husk` runner with its own state root. Tests need root and fail loudly without it.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the integration tests need root: run them through the README's test command"
    );
}

/// The husk under test: this build's, or `HUSK_TEST_BIN` (e.g. an older build, to check that a
/// new test fails on it).
pub fn husk_bin() -> &'static str {
    static B: OnceLock<String> = OnceLock::new();
    B.get_or_init(|| {
        std::env::var("HUSK_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_husk").into())
    })
}

pub fn unique_id(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Where bundles and trees are made: cargo's target tmpdir, or `HUSK_TEST_TMPDIR` where that is
/// not writable (the node guest mounts the workspace read-only).
fn tmp_base() -> PathBuf {
    std::env::var_os("HUSK_TEST_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
}

/// A busybox userland tree (Debian's static busybox plus its applet links), built once.
/// `HUSK_BUSYBOX` names the binary where it is not installed.
pub fn busybox_tree() -> &'static Path {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        // HUSK_BUSYBOX: a static busybox from elsewhere (the node guest has none of its own).
        let src = std::env::var_os("HUSK_BUSYBOX")
            .map(PathBuf::from)
            .into_iter()
            .chain(["/bin/busybox", "/usr/bin/busybox"].map(PathBuf::from))
            .find(|p| p.exists())
            .expect("busybox is not installed (the README's test command installs busybox-static)");
        let out = Command::new("file")
            .arg(&src)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        assert!(
            !out.contains("dynamically linked"),
            "{} is dynamically linked; install busybox-static",
            src.display()
        );
        let dir = tmp_base().join(format!("busybox-tree-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in [
            "bin",
            "etc",
            "tmp",
            "proc",
            "sys",
            "dev",
            "root",
            "home/user",
        ] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::copy(&src, dir.join("bin/busybox")).unwrap();
        let list = Command::new(&src).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
            }
        }
        std::fs::write(
            dir.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.join("etc/group"), "root:x:0:\nuser:x:1000:\n").unwrap();
        std::fs::set_permissions(
            dir.join("tmp"),
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .unwrap();
        dir
    })
}

/// The scratch image's only file: a static hello binary, compiled once.
pub fn hello_binary() -> &'static Path {
    static H: OnceLock<PathBuf> = OnceLock::new();
    H.get_or_init(|| fixture_binary("hello"))
}

/// runc, as the reference runtime: Debian's package (the README's test command installs it).
pub fn runc() -> Husk {
    let bin = ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("runc is not installed (the README's test command installs it)");
    require_root();
    Husk::with_bin(bin)
}

/// A static program from tests/fixtures/<name>.c, compiled once per test process.
pub fn fixture_binary(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap();
    if let Some((_, p)) = built.iter().find(|(n, _)| n == name) {
        return p.clone();
    }
    let out = tmp_base().join(format!("{name}-{}", std::process::id()));
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{name}.c"));
    let st = Command::new("cc")
        .args(["-static", "-Os", "-s", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("a C compiler (cc) is needed to build the test fixtures");
    assert!(st.success(), "building {} failed", src.display());
    built.push((name.to_string(), out.clone()));
    out
}

pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub config: Value,
    pub id: String,
}

impl Bundle {
    fn with_rootfs(fill: impl FnOnce(&Path), args: &[&str]) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("husk-bundle-")
            .tempdir_in(tmp_base())
            .unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        fill(&rootfs);
        let id = unique_id("c");
        let mut config = husk_runtime::features::default_spec();
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(args);
        config["root"]["readonly"] = json!(false);
        config["linux"]["cgroupsPath"] = json!(format!("/husk-test/{id}"));
        Bundle { dir, config, id }
    }

    pub fn busybox(args: &[&str]) -> Bundle {
        Self::with_rootfs(|r| copy_tree(busybox_tree(), r), args)
    }

    pub fn scratch_hello() -> Bundle {
        Self::with_rootfs(
            |r| {
                std::fs::copy(hello_binary(), r.join("hello")).unwrap();
            },
            &["/hello"],
        )
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn write(&self) {
        std::fs::write(
            self.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    pub fn sh(cmd: &str) -> Bundle {
        Self::busybox(&["sh", "-c", cmd])
    }
}

pub fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A husk with its own state root; containers left behind are force-deleted on drop.
pub struct Husk {
    pub root: tempfile::TempDir,
    pub bin: PathBuf,
    ids: std::sync::Mutex<Vec<String>>,
}

impl Husk {
    pub fn new() -> Husk {
        require_root();
        Self::with_bin(husk_bin())
    }

    pub fn with_bin(bin: impl Into<PathBuf>) -> Husk {
        Husk {
            root: tempfile::Builder::new()
                .prefix("husk-root-")
                .tempdir()
                .unwrap(),
            bin: bin.into(),
            ids: Default::default(),
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root")
            .arg(self.root.path())
            .args(args)
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Remember `id` for force-deletion when the test ends, however it ends.
    pub fn track(&self, id: &str) {
        self.ids.lock().unwrap().push(id.to_string());
    }

    /// Runs a command whose container outlives it: the container inherits stdout/stderr, so
    /// they go to files (a pipe would never reach EOF while the container lives).
    pub fn ok_detached(&self, b: &Bundle, args: &[&str]) {
        let out = std::fs::File::create(b.path().join("stdout")).unwrap();
        let err_path = b.path().join("stderr");
        let err = std::fs::File::create(&err_path).unwrap();
        let st = self.cmd(args).stdout(out).stderr(err).status().unwrap();
        assert!(
            st.success(),
            "husk {args:?} failed: {}",
            std::fs::read_to_string(&err_path).unwrap_or_default()
        );
    }

    /// `husk create` of the bundle.
    pub fn create(&self, b: &Bundle) {
        b.write();
        self.track(&b.id);
        self.ok_detached(
            b,
            &["create", "--bundle", b.path().to_str().unwrap(), &b.id],
        );
    }

    /// `husk run --detach` of the bundle.
    pub fn run_detached(&self, b: &Bundle) {
        b.write();
        self.track(&b.id);
        self.ok_detached(
            b,
            &[
                "run",
                "--detach",
                "--bundle",
                b.path().to_str().unwrap(),
                &b.id,
            ],
        );
    }

    /// `husk run` of the bundle in the foreground: (exit code, stdout, stderr).
    pub fn run_bundle(&self, b: &Bundle) -> (i32, String, String) {
        b.write();
        self.track(&b.id);
        let out = self.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "husk {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }

    pub fn wait_status(&self, id: &str, want: &str) {
        for _ in 0..500 {
            // The container may not exist yet when a concurrent `run` is still creating it.
            let out = self.run(&["state", id]);
            if out.status.success()
                && serde_json::from_slice::<Value>(&out.stdout).unwrap()["status"] == want
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("container {id} never reached {want}: {}", self.state(id));
    }
}

impl Drop for Husk {
    fn drop(&mut self) {
        for id in self.ids.lock().unwrap().iter() {
            let _ = Command::new(&self.bin)
                .arg("--root")
                .arg(self.root.path())
                .args(["delete", "--force", id])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Is anything still mounted below `path`?
pub fn mounts_below(path: &Path) -> Vec<String> {
    let p = path.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|mp| mp.starts_with(&p)))
        .map(str::to_string)
        .collect()
}

pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut out = vec![];
    for c in ["memory", "pids", "cpu", "devices", "freezer", "unified"] {
        let d = PathBuf::from(format!("/sys/fs/cgroup/{c}/husk-test/{id}"));
        if d.exists() {
            out.push(d);
        }
    }
    out
}

/// Debian's runc (the reference runtime) with its own state root, driven like husk.
pub fn runc_cli() -> Husk {
    require_root();
    let bin = ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("runc is not installed (the README's test command installs it)");
    Husk::with_bin(bin)
}

/// The lines a detached container writes to its stdout file, read as they come.
pub struct OutputLines {
    path: PathBuf,
    seen: usize,
}

impl OutputLines {
    pub fn of(b: &Bundle) -> OutputLines {
        OutputLines {
            path: b.path().join("stdout"),
            seen: 0,
        }
    }

    /// The next line, waiting up to 10 s for it.
    pub fn next(&mut self) -> String {
        let t = std::time::Instant::now();
        loop {
            let all = std::fs::read_to_string(&self.path).unwrap_or_default();
            let complete: Vec<&str> = all
                .split_inclusive('\n')
                .filter(|l| l.ends_with('\n'))
                .collect();
            if let Some(l) = complete.get(self.seen) {
                self.seen += 1;
                return l.trim_end().to_string();
            }
            assert!(
                t.elapsed() < std::time::Duration::from_secs(10),
                "no line {} in {} after 10 s: {all:?}",
                self.seen + 1,
                self.path.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
