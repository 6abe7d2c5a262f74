//! OOM notifications, armed at Create: cgroup v1 through an eventfd registered on
//! memory.oom_control; cgroup v2 through inotify on memory.events, firing when `oom_kill`
//! grows (not `oom`, which is charged to the pod when limits are equal).

use husk_runtime::cgroups::CgroupPaths;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

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
    let events = dir.join("memory.events");
    let count = move || {
        crate::metrics::keyed(&std::fs::read_to_string(&events).unwrap_or_default())
            .get("oom_kill")
            .copied()
    };
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
