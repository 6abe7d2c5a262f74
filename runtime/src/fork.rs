//! How the init helper forks a container process: with CLONE_PARENT (the caller becomes its
//! parent), and on cgroup v2 born straight into the container's cgroup with
//! `clone3(CLONE_INTO_CGROUP)` (Linux 5.7, clone(2)) — no migration afterwards. Seeding an
//! empty cgroup that way spares the write of `cgroup.procs`, which takes the global
//! `cgroup_threadgroup_rwsem` for writing and waits for an RCU grace period (kernel commit
//! "cgroup: Elide write-locking threadgroup_rwsem when updating csses on an empty subtree").
//!
//! A cgroup namespace has to be rooted at the container's cgroup (runtime-spec: the init must
//! be in its cgroup before the namespace is made). With CLONE_INTO_CGROUP the helper itself
//! stays outside that cgroup, so it does not unshare the namespace itself: CLONE_NEWCGROUP
//! goes into the same clone3, and the kernel roots the new namespace at the target cgroup
//! (cgroup_post_fork). A cgroup namespace to *join* (exec) is joined by the child once it runs
//! in its cgroup.
//!
//! Where the kernel refuses (no clone3, no CLONE_INTO_CGROUP, or anything else), the helper
//! moves itself into the cgroup through `cgroup.procs`, makes or joins the cgroup namespace,
//! and forks plainly: the same result, one migration more.

use crate::error::{Context, Error, Result};
use crate::namespaces::Opened;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `CLONE_INTO_CGROUP` (include/uapi/linux/sched.h); libc declares it as a c_int.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Where the new process is to run, for a v2 cgroup the caller opened (`O_PATH` directory fd).
pub struct IntoCgroup<'a> {
    pub dir: BorrowedFd<'a>,
    /// Create a cgroup namespace rooted at `dir` for the child.
    pub new_cgroupns: bool,
    /// Or join this one in the child (an exec into a container with a cgroup namespace).
    pub join_cgroupns: Option<&'a Opened>,
}

/// Which side of the fork this is.
pub enum Forked {
    Child,
    /// The parent, with the child's pid and whether it was born in its cgroup (clone3).
    Parent {
        pid: i32,
        born_in_cgroup: bool,
    },
}

fn plain_clone_parent() -> Result<Forked> {
    // SAFETY: the helper is single-threaded; a raw clone without a new stack is a fork.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match pid {
        p if p < 0 => Err(nix::Error::last()).ctx(|| "fork the container process"),
        0 => Ok(Forked::Child),
        p => Ok(Forked::Parent {
            pid: p as i32,
            born_in_cgroup: false,
        }),
    }
}

/// Forks with CLONE_PARENT; with `into`, the child starts in that cgroup (and cgroup namespace).
/// Only for a single-threaded process (the init helper).
pub fn fork_parent(into: Option<IntoCgroup<'_>>) -> Result<Forked> {
    let Some(into) = into else {
        return plain_clone_parent();
    };
    // No exit signal: clone3 refuses one with CLONE_PARENT (EINVAL); the child signals the
    // helper's parent with the helper's own exit signal (SIGCHLD), as a legacy clone does.
    let mut args = CloneArgs {
        flags: libc::CLONE_PARENT as u64 | CLONE_INTO_CGROUP,
        exit_signal: 0,
        cgroup: into.dir.as_raw_fd() as u64,
        ..Default::default()
    };
    if into.new_cgroupns {
        args.flags |= libc::CLONE_NEWCGROUP as u64;
    }
    // SAFETY: the helper is single-threaded and passes no stack: the child continues on a copy
    // of this one, as after fork(2).
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        if let Some(ns) = into.join_cgroupns {
            if let Err(e) = crate::namespaces::join(ns) {
                // The child cannot report through a channel it does not own yet: leave with
                // the reason on stderr; the parent sees the channel close.
                eprintln!("husk: join the cgroup namespace: {e}");
                // SAFETY: leave the child without running the helper's destructors.
                unsafe { libc::_exit(1) };
            }
        }
        return Ok(Forked::Child);
    }
    if pid > 0 {
        return Ok(Forked::Parent {
            pid: pid as i32,
            born_in_cgroup: true,
        });
    }
    // Refused (ENOSYS before 5.3, E2BIG before 5.7, or the cgroup): migrate, then fork.
    let clone3_err = nix::Error::last();
    enter(into.dir).map_err(|e| match e {
        Error::Sys { context, source } => Error::Sys {
            context: format!("{context} (clone3 into the cgroup failed first: {clone3_err})"),
            source,
        },
        e => e,
    })?;
    if into.new_cgroupns {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .ctx(|| "create the cgroup namespace")?;
    }
    if let Some(ns) = into.join_cgroupns {
        crate::namespaces::join(ns)?;
    }
    plain_clone_parent()
}

/// Moves this process into the cgroup `dir` (its `cgroup.procs`).
fn enter(dir: BorrowedFd<'_>) -> Result<()> {
    let fd = nix::fcntl::openat(
        dir,
        "cgroup.procs",
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| "open the container cgroup's cgroup.procs")?;
    // "0" is the writing process itself (cgroup-v2.rst).
    nix::unistd::write(&fd, b"0").ctx(|| "move the init helper into the container cgroup")?;
    Ok(())
}
