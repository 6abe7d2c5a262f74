//! New filesystem instances through the mount API (fsopen(2), fsconfig(2), fsmount(2), Linux
//! 5.2): a detached mount, attached nowhere, that nothing can be mounted over. Written by hand
//! because nix and libc offer the syscall numbers only.

use nix::errno::Errno;
use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;

/// `MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC` (linux/mount.h).
pub const NOSUID_NODEV_NOEXEC: libc::c_uint = 0x2 | 0x4 | 0x8;

/// Takes ownership of the fd a syscall returned, or its errno.
pub(crate) fn owned(r: libc::c_long) -> nix::Result<OwnedFd> {
    if r < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the syscall returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// A fresh instance of filesystem `fstype` with no options, as a detached mount whose
/// `MOUNT_ATTR_*` are `attrs`. Errors: the errno of the failing step (EPERM without
/// CAP_SYS_ADMIN, ENODEV for an unknown filesystem, ENOSYS before Linux 5.2).
pub fn detached(fstype: &CStr, attrs: libc::c_uint) -> nix::Result<OwnedFd> {
    // SAFETY: a valid C string and flags; the result is checked and owned.
    let fs = owned(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })?;
    // SAFETY: an fd we own, a command without key or value.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if r < 0 {
        return Err(Errno::last());
    }
    // SAFETY: an fd we own and flags; the result is checked and owned.
    owned(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })
}
