//! Process exits. The shim is a child subreaper: container processes are its children
//! (husk creates them with CLONE_PARENT) and exec orphans are reparented to it.
//!
//! - Known processes (inits, execs) are waited through pidfds, armed right after creation
//!   while the process is still our unreaped child, so an instant exit is never lost and pid
//!   reuse cannot confuse us.
//! - Everything else that turns zombie (orphans) is reaped on SIGCHLD, except what runtime
//!   code may be about to wait for itself: while a [`SpawnGuard`] is held (the runtime spawns
//!   helpers, hooks and container processes and waits for some of them, or has not yet armed
//!   a pidfd), zombies that started after the oldest guard did are left alone. An orphan
//!   older than every guard in flight cannot be one of theirs and is reaped at once, so a
//!   container storming forks at its pids limit does not wait for the pod's execs to finish
//!   (its zombies count against that limit until reaped).
//!
//! A zombie's cgroup cannot tell whose it is: on cgroup v1 /proc/<pid>/cgroup shows an
//! exiting task in each v1 hierarchy's root (kernel/cgroup/cgroup.c, proc_cgroup_show). Its
//! start time can: /proc/<pid>/stat field 22, in clock ticks since boot (proc(5)).

use std::collections::HashSet;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

/// The guards held now: (token, the clock tick since boot it started in). Locked for a whole
/// reaping pass, so no guard (and no child of its holder) starts between the pass's look at
/// the guards and its waits.
static IN_FLIGHT: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());
static NEXT_TOKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static WATCHED: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

/// Held while runtime code may have children it waits for itself (see the module doc).
#[must_use = "the orphan reaper holds back only while the guard lives"]
pub struct SpawnGuard(u64);

impl Drop for SpawnGuard {
    fn drop(&mut self) {
        lock_in_flight().retain(|(t, _)| *t != self.0);
    }
}

fn lock_in_flight() -> std::sync::MutexGuard<'static, Vec<(u64, u64)>> {
    IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Held while runtime code may have children it waits for itself.
pub fn spawn_guard() -> SpawnGuard {
    let token = NEXT_TOKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut in_flight = lock_in_flight();
    // Taken under the lock: a process forked after this has a start tick at least this one.
    in_flight.push((token, boot_tick()));
    SpawnGuard(token)
}

/// Now, in clock ticks since boot (CLOCK_BOOTTIME, rounded down as the kernel rounds a task's
/// start time for /proc/<pid>/stat).
fn boot_tick() -> u64 {
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime into a local timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    let ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    ns / (1_000_000_000 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf with a constant.
    match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as u64,
        _ => 100,
    }
}

/// Field 22 of a /proc/<pid>/stat text: the start time in clock ticks since boot.
fn start_tick(stat: &str) -> Option<u64> {
    // Fields after the command's closing parenthesis start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(22 - 3)?.parse().ok()
}

/// Whether a zombie that started at `started` (clock ticks since boot; `None`: unknown) may be
/// reaped while guards that started at `in_flight` ticks are held: only if it is older than
/// every one of them (a process forked in a guard's own tick is held back too).
fn reapable(started: Option<u64>, in_flight: &[(u64, u64)]) -> bool {
    let Some(oldest) = in_flight.iter().map(|(_, t)| *t).min() else {
        return true;
    };
    started.is_some_and(|s| s < oldest)
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

/// A child's /proc/<pid>/stat when it is a zombie.
fn zombie_stat(pid: i32) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rfind(')')
        .is_some_and(|i| s[i + 2..].starts_with('Z'))
        .then_some(s)
}

/// Reaps zombie children nobody else waits for. Returns false when it held some back (a
/// guard was in flight): the caller tries again shortly, since no further SIGCHLD may come.
pub fn reap_orphans() -> bool {
    let in_flight = lock_in_flight();
    let watched: HashSet<i32> = WATCHED.lock().unwrap().clone().unwrap_or_default();
    let mut all = true;
    for pid in children() {
        if watched.contains(&pid) {
            continue;
        }
        let Some(stat) = zombie_stat(pid) else {
            continue;
        };
        if !reapable(start_tick(&stat), &in_flight) {
            all = false;
            continue;
        }
        let _ = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
    }
    all
}

/// Runs the orphan reaper on every SIGCHLD (and again shortly when it held zombies back).
pub fn start_orphan_reaper() -> std::io::Result<()> {
    let mut sig = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
    tokio::spawn(async move {
        loop {
            if !reap_orphans() {
                // Another SIGCHLD also ends the wait: a storm is not slowed by the retry.
                let _ =
                    tokio::time::timeout(std::time::Duration::from_millis(20), sig.recv()).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_guard_reaps_everything() {
        assert!(reapable(None, &[]));
        assert!(reapable(Some(5), &[]));
    }

    #[test]
    fn a_guard_holds_back_what_started_in_or_after_its_tick() {
        let held = [(1, 100), (2, 120)];
        assert!(reapable(Some(99), &held));
        assert!(!reapable(Some(100), &held));
        assert!(!reapable(Some(110), &held));
        assert!(!reapable(None, &held));
    }

    #[test]
    fn start_tick_is_field_22_even_with_spaces_and_parentheses_in_the_name() {
        let stat = "42 (a) b) Z 1 42 42 0 -1 4228 0 0 0 0 0 0 0 0 20 0 1 0 98765 0 0";
        assert_eq!(start_tick(stat), Some(98765));
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        let started = start_tick(&own).unwrap();
        assert!(started <= boot_tick(), "{started} > {}", boot_tick());
    }

    #[test]
    fn guards_come_and_go() {
        let before = lock_in_flight().len();
        let g = spawn_guard();
        let h = spawn_guard();
        assert_eq!(lock_in_flight().len(), before + 2);
        drop(g);
        drop(h);
        assert_eq!(lock_in_flight().len(), before);
    }
}
