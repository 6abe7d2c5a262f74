//! Commands into the guest over ssh on QEMU's 127.0.0.1 port forward. One ControlMaster
//! connection is opened and reused: under TCG a fresh ssh handshake costs ~2 s, a command over
//! the master ~0.07 s.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Quotes `s` for a POSIX shell.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub struct Ssh {
    pub port: u16,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    pub control: PathBuf,
}

impl Ssh {
    /// `ssh` with the options every call shares. The guest's host key is pinned (known_hosts
    /// written at image build time, looked up through a fixed alias since the port changes).
    pub fn command(&self) -> Command {
        let mut c = Command::new("ssh");
        c.args(["-F", "none", "-i"])
            .arg(&self.key)
            .args(["-p", &self.port.to_string()])
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args([
                "-o",
                "HostKeyAlias=husk-node",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .args(["-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=15"])
            .args(["-o", "ServerAliveCountMax=8", "-o", "LogLevel=ERROR"])
            .arg("-o")
            .arg(format!("ControlPath={}", self.control.display()));
        c
    }

    /// Opens the master connection, retrying until the guest's sshd answers or `timeout`.
    pub fn connect(
        &self,
        timeout: Duration,
        alive: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<(), String> {
        let t = Instant::now();
        let mut last = String::new();
        while t.elapsed() < timeout {
            alive()?;
            let out = self
                .command()
                .args([
                    "-o",
                    "ControlMaster=yes",
                    "-o",
                    "ControlPersist=yes",
                    "-f",
                    "-N",
                ])
                .arg("root@127.0.0.1")
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("ssh: {e}"))?;
            if out.status.success() {
                return Ok(());
            }
            last = String::from_utf8_lossy(&out.stderr).trim().to_string();
            std::thread::sleep(Duration::from_millis(500));
        }
        Err(format!(
            "ssh to the guest did not come up in {timeout:?}: {last}"
        ))
    }

    /// Runs `script` with bash in the guest, over the master connection.
    pub fn run(&self, script: &str) -> Command {
        let mut c = self.command();
        c.args(["-o", "ControlMaster=no", "root@127.0.0.1", "--"])
            .arg(format!("bash -c {}", quote(script)))
            .stdin(Stdio::null());
        c
    }

    pub fn output(&self, script: &str) -> Output {
        self.run(script).output().expect("run ssh")
    }

    /// Closes the master connection.
    pub fn close(&self) {
        if Path::new(&self.control).exists() {
            let _ = self
                .command()
                .args(["-O", "exit", "root@127.0.0.1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
