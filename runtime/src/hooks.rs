//! OCI hooks: each gets the container state JSON on stdin and must finish within its timeout.

use crate::error::{Error, Result};
use oci_spec::runtime::Hook;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn run(hook: &Hook, state_json: &str, stage: &str) -> Result<()> {
    let path = hook.path();
    let err = |m: String| Error::Hook {
        path: path.clone(),
        message: format!("{stage}: {m}"),
    };
    let mut cmd = Command::new(path);
    if let Some(args) = hook.args() {
        if let Some(a0) = args.first() {
            cmd.arg0(a0);
        }
        cmd.args(args.iter().skip(1));
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| err(format!("start: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook may exit without reading its input; that is not an error.
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut sleep = Duration::from_micros(200);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {}
            Err(e) => return Err(err(format!("wait: {e}"))),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err(format!(
                "timed out after {}s",
                hook.timeout().unwrap_or(0)
            )));
        }
        std::thread::sleep(sleep);
        sleep = (sleep * 2).min(Duration::from_millis(20));
    };
    if !status.success() {
        let mut msg = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut msg);
        }
        return Err(err(format!(
            "{status}{}",
            if msg.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", msg.trim())
            }
        )));
    }
    Ok(())
}

pub fn run_all(hooks: Option<&Vec<Hook>>, state_json: &str, stage: &str) -> Result<()> {
    for h in hooks.into_iter().flatten() {
        run(h, state_json, stage)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: &str) -> Hook {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn state_on_stdin_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let h = hook(&format!(
            r#"{{"path":"/bin/sh","args":["sh","-c","cat > {0}; echo \"$X\" >> {0}"],"env":["X=42"]}}"#,
            out.display()
        ));
        run(&h, "{\"id\":\"c\"}", "prestart").unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "{\"id\":\"c\"}42\n");
    }

    #[test]
    fn failure_and_timeout_are_reported() {
        let e = run(
            &hook(r#"{"path":"/bin/sh","args":["sh","-c","echo boom >&2; exit 3"]}"#),
            "{}",
            "poststart",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("boom") && e.contains("poststart"), "{e}");
        let t = Instant::now();
        let e = run(
            &hook(r#"{"path":"/bin/sleep","args":["sleep","10"],"timeout":1}"#),
            "{}",
            "prestart",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("timed out"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
