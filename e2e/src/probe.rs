//! What the benchmark reads from the kernel about the shims: which shim serves a pod, and a
//! cgroup of its own to put it in, whose counters then hold the CPU time and the peak memory of
//! that shim and every runtime process it starts (runc/crun create and init, husk's helper) —
//! until the container's process moves to its own cgroup.

use std::path::{Path, PathBuf};

/// CPU time of one process in clock ticks (`USER_HZ`, 100 a second here; proc(5)).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTicks {
    /// `utime + stime`: the process's own, all its threads.
    pub own: u64,
    /// `cutime + cstime`: of the children it has waited for.
    pub waited_children: u64,
}

/// `/proc/<pid>/stat` fields 14–17 of `pid` (a number or `self`); `None` once it is gone or if
/// the line does not parse.
pub fn cpu_ticks(pid: &str) -> Option<CpuTicks> {
    parse_cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_cpu_ticks(s: &str) -> Option<CpuTicks> {
    // The command (field 2) may hold spaces and parentheses: fields after its last ") ".
    let (_, rest) = s.rsplit_once(") ")?;
    // `rest` starts at field 3 (state): fields 14 to 17 are at 11 to 14.
    let f: Vec<u64> = rest
        .split(' ')
        .skip(11)
        .take(4)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    (f.len() == 4).then(|| CpuTicks {
        own: f[0] + f[1],
        waited_children: f[2] + f[3],
    })
}

/// The shim process serving `sandbox` on this test bed (shims are started with `-id <sandbox>`).
pub fn shim_of(socket: &Path, sandbox: &str) -> Option<i32> {
    let addr = socket.display().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let is_shim = args
            .first()
            .is_some_and(|a| String::from_utf8_lossy(a).contains("containerd-shim"));
        let serves = args
            .windows(2)
            .any(|w| w[0] == b"-id" && w[1] == sandbox.as_bytes());
        let ours = args.contains(&addr.as_bytes());
        (is_shim && serves && ours).then_some(pid)
    })
}

/// A scratch cgroup (v1: memory + cpuacct hierarchies; v2: one directory) for one process.
pub struct ProbeCgroup {
    memory: PathBuf,
    cpu: PathBuf,
    v2: bool,
}

fn write(path: &Path, v: &str) -> Result<(), String> {
    std::fs::write(path, v).map_err(|e| format!("write {v} to {}: {e}", path.display()))
}

fn read_u64(path: &Path, key: Option<&str>) -> Result<u64, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let v = match key {
        None => text.trim(),
        Some(k) => text
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(' '))
            .ok_or_else(|| format!("{} has no {k}", path.display()))?,
    };
    v.trim()
        .parse()
        .map_err(|e| format!("{}: {v:?}: {e}", path.display()))
}

impl ProbeCgroup {
    pub fn new(name: &str) -> Result<Self, String> {
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let (memory, cpu) = if v2 {
            let d = Path::new("/sys/fs/cgroup").join(name);
            (d.clone(), d)
        } else {
            (
                Path::new("/sys/fs/cgroup/memory").join(name),
                Path::new("/sys/fs/cgroup/cpuacct").join(name),
            )
        };
        for d in [&memory, &cpu] {
            std::fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
        }
        Ok(ProbeCgroup { memory, cpu, v2 })
    }

    /// Moves `pid` (all its threads) in.
    pub fn adopt(&self, pid: i32) -> Result<(), String> {
        write(&self.memory.join("cgroup.procs"), &pid.to_string())?;
        if !self.v2 {
            write(&self.cpu.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// CPU time (user + sys) charged here so far, in ns.
    pub fn cpu_ns(&self) -> Result<u64, String> {
        if self.v2 {
            Ok(read_u64(&self.cpu.join("cpu.stat"), Some("usage_usec"))? * 1000)
        } else {
            read_u64(&self.cpu.join("cpuacct.usage"), None)
        }
    }

    /// Memory charged here now, in bytes.
    pub fn memory(&self) -> Result<u64, String> {
        let f = if self.v2 {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        };
        read_u64(&self.memory.join(f), None)
    }

    /// Starts a new peak measurement (v1 resets the high-water mark; a fresh v2 cgroup starts
    /// at what has been charged to it since it was made).
    pub fn reset_peak(&self) -> Result<(), String> {
        if self.v2 {
            // Writable since Linux 6.12; older kernels keep the peak since creation.
            let _ = std::fs::write(self.memory.join("memory.peak"), "0");
            Ok(())
        } else {
            write(&self.memory.join("memory.max_usage_in_bytes"), "0")
        }
    }

    pub fn peak(&self) -> Result<u64, String> {
        let f = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        read_u64(&self.memory.join(f), None)
    }

    /// Moves `pid` back to the root cgroup and removes this one.
    pub fn release(self, pid: i32) {
        let root = |d: &Path| d.parent().unwrap().join("cgroup.procs");
        let _ = std::fs::write(root(&self.memory), pid.to_string());
        let _ = std::fs::write(root(&self.cpu), pid.to_string());
        let _ = std::fs::remove_dir(&self.memory);
        let _ = std::fs::remove_dir(&self.cpu);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_fields_14_to_17_after_the_command() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime cutime cstime …; a command may hold ") ".
        let line = "42 (a) b) S 1 42 42 0 -1 4194560 10 20 0 0 7 3 100 50 20 0 1 0 99";
        let t = parse_cpu_ticks(line).unwrap();
        assert_eq!((t.own, t.waited_children), (10, 150));
        assert!(parse_cpu_ticks("42 (x) S 1 2").is_none());
        assert!(cpu_ticks("self").is_some());
    }
}
