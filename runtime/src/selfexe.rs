//! CVE-2019-5736 guard: a container process that opens /proc/<helper>/exe must never get a
//! writable handle on the host's husk binary. The helper runs from a read-only, detached bind
//! mount of the binary (open_tree + mount_setattr, what runc 1.2 does): no copy, so no
//! megabytes of memory per container; writes through it fail with EROFS. Where the kernel or
//! privileges refuse that (kernel < 5.12, no CAP_SYS_ADMIN), from a sealed memfd copy.

use crate::error::{Context, Result};
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// An fd to exec the helper from (see the module's comment).
pub fn protected_self() -> Result<OwnedFd> {
    readonly_mount_of_self().or_else(|_| sealed_copy_of_self())
}

fn readonly_mount_of_self() -> nix::Result<OwnedFd> {
    // No wrapper in nix or libc for open_tree(2).
    // SAFETY: a valid C string and flags; the result is checked before use.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c"/proc/self/exe".as_ptr(),
            (OPEN_TREE_CLONE | libc::O_CLOEXEC as u32) as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(nix::Error::last());
    }
    // SAFETY: open_tree returned a new fd we own.
    let fd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) };
    use crate::mountopts::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};
    crate::rootfs::mount_setattr(
        &fd,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        0,
        false,
    )?;
    Ok(fd)
}

const OPEN_TREE_CLONE: u32 = 1;

pub fn sealed_copy_of_self() -> Result<OwnedFd> {
    let exe = std::fs::File::open("/proc/self/exe").ctx(|| "open /proc/self/exe")?;
    let len = exe.metadata().ctx(|| "stat /proc/self/exe")?.len();
    let memfd = memfd_create(c"husk", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
        .ctx(|| "memfd_create")?;
    let mut off: i64 = 0;
    while (off as u64) < len {
        // sendfile copies in the kernel; no userspace buffer.
        let remaining = (len - off as u64) as usize;
        let n =
            nix::sys::sendfile::sendfile64(memfd.as_fd(), exe.as_fd(), Some(&mut off), remaining)
                .ctx(|| "copy husk into a memfd")?;
        if n == 0 {
            break;
        }
    }
    fcntl(
        &memfd,
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_SEAL
                | SealFlag::F_SEAL_SHRINK
                | SealFlag::F_SEAL_GROW
                | SealFlag::F_SEAL_WRITE,
        ),
    )
    .ctx(|| "seal the memfd")?;
    let _ = memfd.as_raw_fd();
    Ok(memfd)
}
