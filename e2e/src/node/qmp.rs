//! A minimal QMP client (QEMU Machine Protocol: JSON lines over a unix socket, docs/interop/qmp-spec
//! in QEMU): enough to pause the guest, save or load its state and quit.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects to QEMU's `-qmp unix:<path>,server=on,wait=off` socket, retrying until `timeout`
    /// (QEMU creates it a moment after it starts), and leaves capabilities negotiation mode.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, String> {
        let t = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if t.elapsed() > timeout => {
                    return Err(format!("QMP socket {}: {e}", path.display()))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .map_err(|e| e.to_string())?;
        let mut q = Qmp {
            reader: BufReader::new(stream.try_clone().map_err(|e| e.to_string())?),
            writer: stream,
        };
        let greeting = q.read()?;
        if greeting.get("QMP").is_none() {
            return Err(format!("not a QMP greeting: {greeting}"));
        }
        q.execute("qmp_capabilities", json!({}))?;
        Ok(q)
    }

    fn read(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| format!("QMP read: {e}"))?;
        if n == 0 {
            return Err("QMP: QEMU closed the connection".into());
        }
        serde_json::from_str(&line).map_err(|e| format!("QMP: {e}: {line}"))
    }

    /// Runs one command; its `return` value, or QEMU's error text. Events read meanwhile are
    /// dropped (callers poll state with query commands instead).
    pub fn execute(&mut self, cmd: &str, args: Value) -> Result<Value, String> {
        let msg = json!({ "execute": cmd, "arguments": args });
        writeln!(self.writer, "{msg}").map_err(|e| format!("QMP write: {e}"))?;
        loop {
            let v = self.read()?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(format!("QMP {cmd}: {}", e["desc"].as_str().unwrap_or("?")));
            }
        }
    }

    /// The run state (`running`, `paused`, `inmigrate`, `postmigrate`, ...).
    pub fn status(&mut self) -> Result<String, String> {
        Ok(self.execute("query-status", json!({}))?["status"]
            .as_str()
            .unwrap_or("")
            .to_string())
    }

    /// Polls `query-migrate` until the migration (outgoing) completes.
    pub fn wait_migration(&mut self, timeout: Duration) -> Result<(), String> {
        let t = Instant::now();
        loop {
            let m = self.execute("query-migrate", json!({}))?;
            match m["status"].as_str().unwrap_or("") {
                "completed" => return Ok(()),
                "failed" | "cancelled" => {
                    return Err(format!(
                        "migration {}: {}",
                        m["status"],
                        m["error-desc"].as_str().unwrap_or("")
                    ))
                }
                _ if t.elapsed() > timeout => return Err(format!("migration timed out: {m}")),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}
