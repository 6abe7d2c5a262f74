//! Process exits. The shim is a child subreaper: container processes are its children
//! (husk creates them with CLONE_PARENT) and exec orphans are reparented to it.
//!
//! - Known processes (inits, execs) are waited through pidfds, armed right after creation
//!   while the process is still our unreaped child, so an instant exit is never lost and pid
//!   reuse cannot confuse us.
//! - Everything else that turns zombie (orphans) is reaped on SIGCHLD, except while the
//!   runtime is spawning and waiting for its own helpers and hooks: they hold `spawn_guard`,
//!   so the orphan reaper never steals their exit status.

use std::collections::HashSet;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

static GUARD: RwLock<()> = RwLock::new(());
static WATCHED: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

/// Held while runtime code may have children it waits for itself.
pub fn spawn_guard() -> RwLockReadGuard<'static, ()> {
    GUARD.read().unwrap_or_else(|e| e.into_inner())
}

pub fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Exit status as a shell reports it: the code, or 128 + the signal.
fn decode(info: &libc::siginfo_t) -> u32 {
    // SAFETY: si_status is valid for CLD_* codes.
    let status = unsafe { info.si_status() } as u32;
    if info.si_code == libc::CLD_EXITED {
        status
    } else {
        128 + status
    }
}

/// Marks `pid` as waited by a pidfd so the orphan reaper leaves it alone.
pub fn watch_pid(pid: i32) -> std::io::Result<OwnedFd> {
    let fd = pidfd_open(pid)?;
    WATCHED
        .lock()
        .unwrap()
        .get_or_insert_with(HashSet::new)
        .insert(pid);
    Ok(fd)
}

/// Waits for the process behind `pidfd` to exit, runs `before_reap` while it is a zombie (its
/// pid stays taken, so signals sent meanwhile cannot reach a stranger), then reaps it: its
/// exit status.
pub async fn wait(
    pid: i32,
    pidfd: OwnedFd,
    before_reap: impl std::future::Future<Output = ()>,
) -> u32 {
    let status = match crate::io::async_fd(pidfd) {
        Ok(afd) => {
            let exited = loop {
                let mut guard = match afd.readable().await {
                    Ok(g) => g,
                    Err(_) => break false,
                };
                match waitid(&afd, libc::WNOWAIT) {
                    Ok(Some(_)) => break true,
                    Ok(None) => guard.clear_ready(),
                    Err(e) => {
                        tracing::warn!(pid, error = %e, "waitid");
                        break false;
                    }
                }
            };
            if exited {
                before_reap.await;
                match waitid(&afd, 0) {
                    Ok(Some(status)) => status,
                    Ok(None) => 255,
                    Err(e) => {
                        tracing::warn!(pid, error = %e, "waitid");
                        255
                    }
                }
            } else {
                255
            }
        }
        Err(e) => {
            tracing::warn!(pid, error = %e, "pidfd poll");
            255
        }
    };
    if let Some(w) = WATCHED.lock().unwrap().as_mut() {
        w.remove(&pid);
    }
    status
}

/// The exit status of the process behind `pidfd` if it has exited (`WNOWAIT` leaves it a
/// zombie).
fn waitid(pidfd: &impl AsRawFd, flags: libc::c_int) -> std::io::Result<Option<u32>> {
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid on our own pidfd with a zeroed siginfo.
    let r = unsafe {
        libc::waitid(
            libc::P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | flags,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: si_pid is set by waitid (zero when nothing has exited yet).
    if unsafe { info.si_pid() } == 0 {
        return Ok(None);
    }
    Ok(Some(decode(&info)))
}

fn children() -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    out
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(false)
}

/// Reaps zombie children nobody else waits for. Returns false when it had to back off.
pub fn reap_orphans() -> bool {
    let Ok(_exclusive) = GUARD.try_write() else {
        return false;
    };
    let watched: HashSet<i32> = WATCHED.lock().unwrap().clone().unwrap_or_default();
    for pid in children() {
        if !watched.contains(&pid) && is_zombie(pid) {
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
        }
    }
    true
}

/// Runs the orphan reaper on every SIGCHLD (and retries when it had to back off).
pub fn start_orphan_reaper() -> std::io::Result<()> {
    let mut sig = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
    tokio::spawn(async move {
        loop {
            let backed_off = !reap_orphans();
            if backed_off {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
            if sig.recv().await.is_none() {
                break;
            }
        }
    });
    Ok(())
}

pub fn set_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with constant arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
