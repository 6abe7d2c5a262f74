//! The guest's QEMU command line, shared by the cold boot that saves the warm state and every
//! warm start that loads it: a saved state only loads into the same machine (devices, memory,
//! vCPUs, QEMU version), so both come from this one function.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Guest memory in MiB: 12 pods at once plus a containerd per test bed, with room to spare.
pub const MEMORY_MIB: u32 = 3072;
/// Guest vCPUs: the host has 2 cores.
pub const VCPUS: u32 = 2;

/// The kernel command line: pure cgroup v2, no speculative-execution mitigations (they only
/// slow an emulated CPU), the serial console for the boot log.
pub const KERNEL_CMDLINE: &str =
    "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 \
     mitigations=off panic=-1 systemd.show_status=false";

/// How QEMU runs the guest's CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization through a stock KVM.
    Kvm,
    /// QEMU's software emulation (multi-threaded TCG).
    Tcg,
}

impl Accel {
    /// KVM when `/dev/kvm` is a stock KVM (kvm_intel or kvm_amd loaded); TCG otherwise. A PVM
    /// hypervisor (`kvm_pvm`, as on this project's machines) also answers on /dev/kvm but only
    /// runs kernels built for PVM, so it counts as no KVM. `HUSK_NODE_ACCEL=tcg|kvm` overrides.
    pub fn detect() -> Accel {
        match std::env::var("HUSK_NODE_ACCEL").ok().as_deref() {
            Some("tcg") => return Accel::Tcg,
            Some("kvm") => return Accel::Kvm,
            _ => {}
        }
        let module = |m: &str| Path::new("/sys/module").join(m).exists();
        let stock = module("kvm_intel") || module("kvm_amd");
        let usable = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
        if usable && stock && !module("kvm_pvm") {
            Accel::Kvm
        } else {
            Accel::Tcg
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// One guest's files and ports.
pub struct Machine<'a> {
    pub accel: Accel,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    /// The qcow2 disk the guest writes to.
    pub disk: &'a Path,
    pub ssh_port: u16,
    /// Shared read-only with tag `src`.
    pub src: &'a Path,
    /// Shared read-write with tag `out`.
    pub out: &'a Path,
    pub console: PathBuf,
    pub qmp: PathBuf,
}

impl Machine<'_> {
    pub fn command(&self) -> Command {
        let mut c = Command::new("qemu-system-x86_64");
        c.args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-machine", "q35"]);
        match self.accel {
            Accel::Kvm => c.args(["-accel", "kvm", "-cpu", "host"]),
            Accel::Tcg => c.args(["-accel", "tcg,thread=multi", "-cpu", "qemu64"]),
        };
        c.args(["-m", &MEMORY_MIB.to_string(), "-smp", &VCPUS.to_string()])
            .arg("-kernel")
            .arg(self.kernel)
            .arg("-initrd")
            .arg(self.initrd)
            .args(["-append", KERNEL_CMDLINE])
            .arg("-drive")
            .arg(format!(
                "file={},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
                self.disk.display()
            ))
            // restrict=on: the guest reaches nothing, only the forwarded ssh port reaches it.
            .arg("-netdev")
            .arg(format!(
                "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{}-:22",
                self.ssh_port
            ))
            .args(["-device", "virtio-net-pci,netdev=n0,romfile="])
            .arg("-virtfs")
            .arg(format!(
                "local,path={},mount_tag=src,security_model=none,readonly=on,multidevs=remap,id=src",
                self.src.display()
            ))
            .arg("-virtfs")
            .arg(format!(
                "local,path={},mount_tag=out,security_model=none,multidevs=remap,id=out",
                self.out.display()
            ))
            .args(["-device", "virtio-rng-pci"])
            .arg("-serial")
            .arg(format!("file:{}", self.console.display()))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", self.qmp.display()));
        c
    }
}

/// `qemu-system-x86_64 --version`'s first line (part of the cache key: a saved state loads
/// only into the QEMU that wrote it).
pub fn version() -> Result<String, String> {
    let out = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .map_err(|e| {
            format!("qemu-system-x86_64: {e} (scripts/lib.sh ensure_guest_tools installs it)")
        })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string())
}
