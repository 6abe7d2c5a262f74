//! CVE-2019-5736 guard: the helper is never the on-disk husk binary. It runs from a sealed
//! memfd copy, so a container process that opens /proc/<helper>/exe gets a memfd it cannot
//! write (F_SEAL_WRITE) instead of the host's binary.

use crate::error::{Context, Result};
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

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
