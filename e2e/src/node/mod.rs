//! `NodeVm`: a systemd + cgroup v2 Kubernetes-style node in a QEMU guest, the test bed for what
//! this host cannot show (its cgroups are v1 and systemd is not PID 1). Debian trixie (systemd
//! 257, Linux 6.12, containerd 1.7, runc 1.1, crun 1.21, AppArmor) booted with pure cgroup v2;
//! containerd 1.6 and 2.x and sid's runc unpacked under `/opt` (`image`).
//!
//! Each start restores the warm state saved right after the image's cold boot (~5 s under TCG)
//! onto a throw-away qcow2 overlay, so every guest starts from the same fresh node. The
//! workspace is shared read-only over 9p at its own path, so the test binaries built here run
//! there unchanged (glibc 2.36 binaries on trixie's 2.41) and find the shim beside them; a
//! second share (`/husk-out` in the guest) carries results back. Commands run over ssh on a
//! 127.0.0.1 port forward (QEMU user networking with `restrict=on`: the guest reaches nothing).
//! KVM is used when a stock one is present, TCG otherwise (`qemu::Accel::detect`). A guest that
//! does not come up is an error carrying the end of its serial console.

pub mod expected;
pub mod image;
pub mod matrix;
pub mod qemu;
pub mod qmp;
pub mod ssh;
pub mod tool;

pub use image::Image;
pub use ssh::Ssh;

use qemu::Machine;
use qmp::Qmp;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where the `out` share is mounted in the guest.
pub const GUEST_OUT: &str = "/husk-out";

/// A free TCP port on 127.0.0.1 (bound then released; QEMU binds it right after).
pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// A QEMU process and its QMP connection.
pub(crate) struct Running {
    child: Option<Child>,
    pub qmp: Option<Qmp>,
    console: PathBuf,
    qemu_log: PathBuf,
}

impl Running {
    /// Starts QEMU for `m`; with `incoming`, paused and waiting for a saved state.
    pub fn spawn(m: &Machine, dir: &Path, incoming: bool) -> Result<Running, String> {
        let qemu_log = dir.join("qemu.log");
        let log = File::create(&qemu_log).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&m.qmp);
        let mut cmd = m.command();
        if incoming {
            cmd.args(["-incoming", "defer"]);
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        // QEMU dies with the test process, whatever kills it.
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            format!("qemu-system-x86_64: {e} (scripts/lib.sh ensure_guest_tools installs it)")
        })?;
        let mut r = Running {
            child: Some(child),
            qmp: None,
            console: m.console.clone(),
            qemu_log,
        };
        match Qmp::connect(&m.qmp, Duration::from_secs(30)) {
            Ok(q) => r.qmp = Some(q),
            Err(e) => return Err(r.failure(&e)),
        }
        Ok(r)
    }

    /// An error message for `what`, with QEMU's own output and the end of the serial console.
    pub fn failure(&mut self, what: &str) -> String {
        let exited = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
            .map(|st| format!(" (QEMU exited: {st})"))
            .unwrap_or_default();
        format!(
            "node guest: {what}{exited}\n--- QEMU:\n{}\n--- end of the serial console ({}):\n{}",
            std::fs::read_to_string(&self.qemu_log)
                .unwrap_or_default()
                .trim(),
            self.console.display(),
            image::tail(
                &std::fs::read_to_string(&self.console).unwrap_or_default(),
                40
            )
        )
    }

    fn alive(&mut self) -> Result<(), String> {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => Ok(()),
            _ => Err("QEMU is gone".into()),
        }
    }

    /// Waits for the guest's sshd and opens the master connection.
    pub fn wait_ssh(&mut self, ssh: &Ssh, timeout: Duration) -> Result<(), String> {
        let r = {
            let mut alive = || self.alive();
            ssh.connect(timeout, &mut alive)
        };
        r.map_err(|e| self.failure(&e))
    }

    /// Quits QEMU (politely through QMP, then SIGKILL) and reaps it.
    pub fn quit(&mut self) {
        if let Some(q) = self.qmp.as_mut() {
            let _ = q.execute("quit", serde_json::json!({}));
        }
        self.qmp = None;
        if let Some(mut c) = self.child.take() {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.quit();
    }
}

/// A running node guest, restored from the warm state. Stopped and its disk thrown away on drop.
pub struct NodeVm {
    pub image: Image,
    pub ssh: Ssh,
    /// The workspace, mounted read-only at the same path in the guest.
    pub src: PathBuf,
    /// The host directory shared read-write as `GUEST_OUT`.
    pub out: PathBuf,
    /// From `start` being called to the first command answered (image build excluded).
    pub start_time: Duration,
    vm: Running,
    run: tempfile::TempDir,
    _inuse: File,
}

impl NodeVm {
    /// The workspace root (this crate's parent directory).
    pub fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf()
    }

    /// Boots the guest from its warm state (building the image first when the cache has none
    /// for this recipe), shares the workspace and `out`, and returns once a command runs in it.
    pub fn start(out: &Path) -> Result<NodeVm, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("the node guest needs root (mmdebstrap, QEMU's 9p share as root)".into());
        }
        let accel = qemu::Accel::detect();
        let (image, inuse) = Image::ensure(accel)?;
        let t = Instant::now();
        let src = Self::workspace();
        std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
        let run = tempfile::Builder::new()
            .prefix("husk-node-")
            .tempdir_in("/var/tmp")
            .map_err(|e| e.to_string())?;
        let disk = run.path().join("disk.qcow2");
        let st = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(image.warm_disk())
            .arg(&disk)
            .status()
            .map_err(|e| format!("qemu-img: {e}"))?;
        if !st.success() {
            return Err(format!("qemu-img create {}: {st}", disk.display()));
        }
        let m = Machine {
            accel,
            kernel: &image.kernel(),
            initrd: &image.initrd(),
            disk: &disk,
            ssh_port: free_port()?,
            src: &src,
            out,
            console: run.path().join("console.log"),
            qmp: run.path().join("qmp.sock"),
        };
        let mut vm = Running::spawn(&m, run.path(), true)?;
        let restored = (|| -> Result<(), String> {
            let q = vm.qmp.as_mut().unwrap();
            q.execute(
                "migrate-incoming",
                serde_json::json!({ "uri": format!("file:{}", image.warm_state().display()) }),
            )?;
            let t = Instant::now();
            loop {
                match q.status()?.as_str() {
                    "inmigrate" if t.elapsed() < Duration::from_secs(300) => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    "paused" | "postmigrate" | "prelaunch" => break,
                    "running" => return Ok(()),
                    s => return Err(format!("loading the warm state: guest is {s}")),
                }
            }
            // The state was saved from a stopped guest: it loads paused.
            q.execute("cont", serde_json::json!({}))?;
            Ok(())
        })();
        if let Err(e) = restored {
            return Err(vm.failure(&e));
        }
        let ssh = Ssh {
            port: m.ssh_port,
            key: image.key_file(),
            known_hosts: image.known_hosts(),
            control: run.path().join("ssh.sock"),
        };
        vm.wait_ssh(&ssh, Duration::from_secs(120))?;
        let mut node = NodeVm {
            image,
            ssh,
            src: src.clone(),
            out: out.to_path_buf(),
            start_time: Duration::ZERO,
            vm,
            run,
            _inuse: inuse,
        };
        // The restored clock is the cold boot's: set it to the host's. Then the shares.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mount = format!(
            "date -s @{now} >/dev/null && mkdir -p {s} && \
             mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro src {s} && \
             mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out {GUEST_OUT}",
            s = ssh::quote(&src.display().to_string())
        );
        let out = node.sh(&mount);
        if !out.status.success() {
            return Err(node.vm.failure(&format!(
                "mounting the 9p shares: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        node.start_time = t.elapsed();
        Ok(node)
    }

    /// Runs `script` with bash in the guest.
    pub fn sh(&self, script: &str) -> Output {
        self.ssh.output(script)
    }

    /// Runs `script` in the guest; its stdout. Panics with its stderr and exit status when it
    /// fails.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "in the node guest: {script}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The end of the guest's serial console.
    pub fn console_tail(&self, lines: usize) -> String {
        image::tail(
            &std::fs::read_to_string(self.run.path().join("console.log")).unwrap_or_default(),
            lines,
        )
    }
}

impl Drop for NodeVm {
    fn drop(&mut self) {
        self.ssh.close();
        self.vm.quit();
    }
}
