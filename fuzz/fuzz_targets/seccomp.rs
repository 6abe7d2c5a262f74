//! `linux.seccomp` → BPF through libseccomp, as create compiles it before anything exists.
//! Properties: no panic and no abort inside libseccomp on any profile (hostile syscall names,
//! argument indexes, operators, errno values, architectures, flags); a profile that compiles
//! also exports as BPF.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::LinuxSeccomp;
use std::os::fd::FromRawFd;

fuzz_target!(|data: &[u8]| {
    let Ok(profile) = serde_json::from_slice::<LinuxSeccomp>(data) else {
        return;
    };
    let Ok(ctx) = husk_runtime::seccomp::compile(&profile) else {
        return;
    };
    // libseccomp writes through a file descriptor: a memfd keeps this off the disk.
    // SAFETY: memfd_create with a static name; the new fd is owned by the File.
    let fd = unsafe { libc::memfd_create(c"bpf".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create");
    let f = unsafe { std::fs::File::from_raw_fd(fd) };
    ctx.export_bpf(&f)
        .expect("a compiled filter exports as BPF");
});
