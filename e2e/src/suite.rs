//! What every CRI suite file shares: running a scenario on both handlers and comparing, and
//! running one container in its own pod to completion.

use crate::bed::TestBed;
use crate::cri::{v1 as cri, Cri};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Runs `scenario` on every handler of `HUSK_E2E_HANDLERS` (default: `runc`, the reference,
/// then `husk`) in one test bed and requires each to see what the reference saw. Every handler
/// runs even when one panics, and the failure names who failed and who passed, so a failure
/// in the node guest says whether runc passes the same scenario. Returns the last handler's
/// observation.
pub fn on_both<T: PartialEq + std::fmt::Debug>(
    images: &[&str],
    scenario: impl Fn(&TestBed, &mut Cri, &str) -> T,
) -> T {
    let handlers = crate::env::handlers();
    let bed = TestBed::start();
    let mut c = bed.cri(images);
    let mut seen: Vec<(String, Result<T, String>)> = Vec::new();
    let run = |bed: &TestBed, c: &mut Cri, h: &str| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(bed, c, h)))
            .map_err(|e| panic_text(&*e))
    };
    for h in &handlers {
        let mut r = run(&bed, &mut c, h);
        if let (Err(e), false) = (&r, h.starts_with("husk")) {
            // A reference runtime (runc, crun) is not what is under test: one failure of its
            // own (seen: runc 1.1's shim closing ttrpc under emulation) is retried once in a
            // fresh test bed, and said so; husk's failures are never retried.
            eprintln!("reference {h} failed, retried once in a fresh test bed: {e}");
            let bed = TestBed::start();
            let mut c = bed.cri(images);
            r = run(&bed, &mut c, h)
                .map_err(|again| format!("{again} (and before the retry: {e})"));
        }
        seen.push((h.clone(), r));
    }
    let verdict: Vec<String> = seen
        .iter()
        .map(|(h, r)| match r {
            Ok(_) => format!("{h}: passed"),
            Err(e) => format!("{h}: FAILED: {e}"),
        })
        .collect();
    if seen.iter().any(|(_, r)| r.is_err()) {
        panic!(
            "handlers failed ({}):\n{}",
            handlers.join(" then "),
            verdict.join("\n")
        );
    }
    let mut values = seen.into_iter().map(|(h, r)| (h, r.unwrap()));
    let (reference, first) = values.next().expect("HUSK_E2E_HANDLERS names no handler");
    let mut last = first;
    let mut prev_name = reference.clone();
    for (h, v) in values {
        assert_eq!(last, v, "{prev_name} (left) and {h} (right) differ");
        prev_name = h;
        last = v;
    }
    last
}

/// The text of a panic payload.
pub fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(non-text panic)".into())
}

/// CRI log lines without their timestamps: "<stream> <P|F> <text>".
pub fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_once(' ').map(|x| x.1).unwrap_or("").to_string())
        .collect()
}

/// The text a CRI log holds for `stream` ("stdout"/"stderr"), partial lines joined.
pub fn log_text(path: &Path, stream: &str) -> String {
    let mut out = String::new();
    for l in log_lines(path) {
        let mut f = l.splitn(3, ' ');
        let (s, tag, text) = (f.next(), f.next(), f.next().unwrap_or(""));
        if s == Some(stream) {
            out.push_str(text);
            if tag == Some("F") {
                out.push('\n');
            }
        }
    }
    out
}

/// A pod of one test: its id, config and log directory.
pub struct Pod {
    pub id: String,
    pub config: cri::PodSandboxConfig,
    pub logs: PathBuf,
}

impl Pod {
    /// Runs a pod named `<name>-<handler>` after `tune` adjusted its config.
    pub fn run(
        bed: &TestBed,
        c: &mut Cri,
        handler: &str,
        name: &str,
        tune: impl FnOnce(&mut cri::PodSandboxConfig),
    ) -> Pod {
        let name = format!("{name}-{handler}");
        let logs = bed.dir.path().join(format!("logs-{name}"));
        let mut config = bed.pod_config(&name, &logs);
        tune(&mut config);
        let id = c.run_pod(&config, handler);
        Pod { id, config, logs }
    }

    /// Creates and starts a container; its id.
    pub fn start(
        &self,
        c: &mut Cri,
        name: &str,
        image: &str,
        cmd: &[&str],
        tune: impl FnOnce(&mut cri::ContainerConfig),
    ) -> String {
        let mut cfg = Cri::container_config(name, image, cmd);
        tune(&mut cfg);
        let id = c
            .create_container(&self.id, &cfg, &self.config)
            .unwrap_or_else(|e| panic!("CreateContainer {name}: {}", e.message()));
        c.start_container(&id)
            .unwrap_or_else(|e| panic!("StartContainer {name}: {}", e.message()));
        id
    }

    pub fn log(&self, container: &str) -> PathBuf {
        self.logs.join(format!("{container}.log"))
    }

    pub fn remove(self, c: &mut Cri) {
        c.stop_pod(&self.id);
        c.remove_pod(&self.id);
    }
}

/// What a container that ran to completion left: exit code, reason, stdout, stderr.
#[derive(Debug, PartialEq)]
pub struct Exited {
    pub code: i32,
    pub reason: String,
    pub stdout: String,
    pub stderr: String,
}

/// Runs one container in a pod of its own until it exits.
#[allow(clippy::too_many_arguments)]
pub fn run_to_exit(
    bed: &TestBed,
    c: &mut Cri,
    handler: &str,
    name: &str,
    image: &str,
    cmd: &[&str],
    pod_tune: impl FnOnce(&mut cri::PodSandboxConfig),
    tune: impl FnOnce(&mut cri::ContainerConfig),
) -> Exited {
    let pod = Pod::run(bed, c, handler, name, pod_tune);
    let id = pod.start(c, "main", image, cmd, tune);
    let st = c.wait_exited(&id);
    assert_eq!(
        st.state,
        cri::ContainerState::ContainerExited as i32,
        "{handler}: {name} did not exit"
    );
    let log = pod.log("main");
    let out = Exited {
        code: st.exit_code,
        reason: st.reason,
        stdout: log_text(&log, "stdout"),
        stderr: log_text(&log, "stderr"),
    };
    c.remove_container(&id);
    pod.remove(c);
    out
}

/// A container security context with `f` applied (CRI's message is deep; tests set a field or two).
pub fn security(
    f: impl FnOnce(&mut cri::LinuxContainerSecurityContext),
) -> impl FnOnce(&mut cri::ContainerConfig) {
    move |cfg| {
        let linux = cfg.linux.get_or_insert_with(Default::default);
        f(linux.security_context.get_or_insert_with(Default::default));
    }
}

/// A pod security context with `f` applied.
pub fn pod_security(
    f: impl FnOnce(&mut cri::LinuxSandboxSecurityContext),
) -> impl FnOnce(&mut cri::PodSandboxConfig) {
    move |cfg| {
        let linux = cfg.linux.get_or_insert_with(Default::default);
        f(linux.security_context.get_or_insert_with(Default::default));
    }
}

/// One HTTP/1.0 GET over plain TCP, retried until the server answers (it may still be
/// starting); the response body.
pub fn http_get(addr: &str, timeout: Duration) -> Result<String, String> {
    use std::io::{Read, Write};
    let t = Instant::now();
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect_timeout(
                &addr.parse().map_err(std::io::Error::other)?,
                Duration::from_secs(2),
            )?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: husk\r\n\r\n")?;
            let mut resp = String::new();
            s.read_to_string(&mut resp)?;
            Ok(resp)
        })();
        match attempt {
            Ok(resp) if resp.starts_with("HTTP/1.") => {
                return Ok(resp
                    .split_once("\r\n\r\n")
                    .map(|x| x.1.to_string())
                    .unwrap_or_default())
            }
            Ok(resp) if t.elapsed() > timeout => return Err(format!("bad response {resp:?}")),
            Err(e) if t.elapsed() > timeout => return Err(format!("GET http://{addr}/: {e}")),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
