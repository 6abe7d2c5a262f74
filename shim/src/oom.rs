//! OOM notifications, armed at Create: cgroup v1 through an eventfd registered on
//! memory.oom_control; cgroup v2 through inotify on memory.events, firing when `oom_kill`
//! grows (not `oom`, which is charged to the pod when limits are equal).
//!
//! With the systemd driver a container's cgroup v2 is its scope's, which systemd removes as
//! soon as the scope is empty — with `OOMPolicy=kill` (memory.oom.group) it stops the scope
//! itself on the kill. The shim can then see the init's exit after the cgroup and its
//! `memory.events` are gone. The scope's parent (the pod's slice) outlives it and counts its
//! descendants' kills (`memory.events` is hierarchical, cgroup-v2.rst): [`ParentLedger`]
//! attributes such a kill to the container whose SIGKILLed init was in it.

use husk_runtime::cgroups::CgroupPaths;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The `oom_kill` count of cgroup v2 directory `dir` (its own and its descendants' kills);
/// `None` when the cgroup is gone.
pub fn v2_oom_kills(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("memory.events")).ok()?;
    Some(
        crate::metrics::keyed(&text)
            .get("oom_kill")
            .copied()
            .unwrap_or(0),
    )
}

/// Per shim (one per pod): for the parent cgroup of each container, how many of the parent's
/// OOM kills are accounted for — there before a container was created, or reported by a
/// container through its own cgroup. A kill beyond that, seen when a container's own cgroup
/// is already gone, is that container's.
#[derive(Clone, Default)]
pub struct ParentLedger(Arc<Mutex<HashMap<PathBuf, u64>>>);

impl ParentLedger {
    /// Accounts for every kill the parent of container cgroup `dir` has counted so far (at
    /// Create, and when a container reported its OOM kill through its own cgroup).
    pub fn absorb(&self, dir: &Path) {
        let Some(parent) = dir.parent() else { return };
        let Some(now) = v2_oom_kills(parent) else {
            return;
        };
        let mut m = self.0.lock().unwrap();
        let seen = m.entry(parent.to_path_buf()).or_insert(now);
        *seen = (*seen).max(now);
    }

    /// Whether the parent of container cgroup `dir` counted a kill nobody accounted for; if
    /// so it is now accounted to the caller. Only asked for an init that died of SIGKILL
    /// after its own cgroup was removed.
    pub fn claim(&self, dir: &Path) -> bool {
        let Some(parent) = dir.parent() else {
            return false;
        };
        let Some(now) = v2_oom_kills(parent) else {
            return false;
        };
        let mut m = self.0.lock().unwrap();
        let Some(seen) = m.get_mut(parent) else {
            return false;
        };
        if now > *seen {
            *seen += 1;
            true
        } else {
            false
        }
    }
}

fn eventfd() -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Calls `on_oom` for every OOM kill in the cgroup until it is removed.
pub fn watch(paths: &CgroupPaths, on_oom: impl Fn() + Send + 'static) -> std::io::Result<()> {
    if paths.v2 {
        return watch_v2(paths, on_oom);
    }
    let Some(dir) = paths.dirs.get("memory") else {
        return Ok(());
    };
    let efd = eventfd()?;
    let control = std::fs::File::open(dir.join("memory.oom_control"))?;
    std::fs::write(
        dir.join("cgroup.event_control"),
        format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()),
    )?;
    let afd = crate::io::async_fd(efd)?;
    let control_path = dir.join("memory.oom_control");
    tokio::spawn(async move {
        let _control = control;
        loop {
            let Ok(mut g) = afd.readable().await else {
                break;
            };
            let mut buf = [0u8; 8];
            match nix::unistd::read(afd.get_ref(), &mut buf) {
                Ok(8) => {
                    // The eventfd also fires when the cgroup is removed.
                    if !control_path.exists() {
                        break;
                    }
                    on_oom();
                }
                Ok(_) => break,
                Err(nix::errno::Errno::EAGAIN) => g.clear_ready(),
                Err(_) => break,
            }
        }
    });
    Ok(())
}

fn watch_v2(paths: &CgroupPaths, on_oom: impl Fn() + Send + 'static) -> std::io::Result<()> {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let Some(dir) = paths.dirs.get("").cloned() else {
        return Ok(());
    };
    let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
        .map_err(std::io::Error::from)?;
    ino.add_watch(&dir.join("memory.events"), AddWatchFlags::IN_MODIFY)
        .map_err(std::io::Error::from)?;
    let fd: OwnedFd = ino.into();
    let afd = crate::io::async_fd(fd)?;
    let count = move || v2_oom_kills(&dir);
    let mut last = count().unwrap_or(0);
    tokio::spawn(async move {
        loop {
            let Ok(mut g) = afd.readable().await else {
                break;
            };
            let mut buf = [0u8; 4096];
            match nix::unistd::read(afd.get_ref(), &mut buf) {
                Ok(_) => {}
                Err(nix::errno::Errno::EAGAIN) => {
                    g.clear_ready();
                    continue;
                }
                Err(_) => break,
            }
            let Some(now) = count() else { break };
            if now > last {
                last = now;
                on_oom();
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(dir: &Path, kills: u64) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("memory.events"),
            format!("low 0\nhigh 0\nmax 12\noom 1\noom_kill {kills}\noom_group_kill 0\n"),
        )
        .unwrap();
    }

    #[test]
    fn a_kill_in_a_removed_scope_is_claimed_once_from_the_parent() {
        let t = tempfile::tempdir().unwrap();
        let slice = t.path().join("pod.slice");
        let (a, b) = (slice.join("a.scope"), slice.join("b.scope"));
        events(&slice, 2); // kills before either container: not theirs
        events(&a, 0);
        events(&b, 0);
        let ledger = ParentLedger::default();
        ledger.absorb(&a);
        ledger.absorb(&b);
        assert!(!ledger.claim(&a), "nothing new in the slice");
        // a is OOM-killed and its scope removed before the shim looked.
        events(&slice, 3);
        std::fs::remove_dir_all(&a).unwrap();
        assert_eq!(v2_oom_kills(&a), None);
        assert!(ledger.claim(&a));
        // b, SIGKILLed afterwards (a stop past its grace period), is not OOM-killed.
        std::fs::remove_dir_all(&b).unwrap();
        assert!(!ledger.claim(&b));
    }

    #[test]
    fn a_kill_reported_through_the_containers_own_cgroup_is_not_claimed_again() {
        let t = tempfile::tempdir().unwrap();
        let slice = t.path().join("pod.slice");
        let (a, b) = (slice.join("a.scope"), slice.join("b.scope"));
        events(&slice, 0);
        events(&a, 0);
        events(&b, 0);
        let ledger = ParentLedger::default();
        ledger.absorb(&a);
        ledger.absorb(&b);
        events(&a, 1);
        events(&slice, 1);
        assert_eq!(v2_oom_kills(&a), Some(1));
        ledger.absorb(&a);
        std::fs::remove_dir_all(&b).unwrap();
        assert!(!ledger.claim(&b));
        // A parent the ledger never saw claims nothing.
        let other = t.path().join("other.slice/c.scope");
        events(other.parent().unwrap(), 5);
        assert!(!ParentLedger::default().claim(&other));
    }
}
