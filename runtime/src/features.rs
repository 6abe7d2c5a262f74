//! `husk features` (the OCI features document: exactly what husk supports, which containerd
//! and critest read) and `husk spec` (a default config.json, like runc's).

use serde_json::{json, Value};

pub fn features() -> Value {
    let caps: Vec<String> = caps::runtime::thread_all_supported()
        .iter()
        .map(|c| c.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let idmap = crate::idmap::supported();
    let recursive_attrs = crate::rootfs::mount_setattr_available();
    let mut mount_options = crate::mountopts::known_options();
    // Listed only where they work: idmap/ridmap where this kernel idmaps a tmpfs (what every
    // user-namespaced pod needs), rro and the other recursive attributes where it has
    // mount_setattr(2) (Linux 5.12; containerd reads `rro` as CRI recursive read-only support).
    mount_options.retain(|o| {
        *o != "tmpcopyup"
            && (idmap || !matches!(*o, "idmap" | "ridmap"))
            && (recursive_attrs || !crate::mountopts::is_recursive_attr(o))
    });
    let (maj, min, micro) = libseccomp_version();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": crate::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": mount_options,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": { "v1": true, "v2": true, "systemd": true, "systemdUser": false, "rdma": true },
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_RISCV64", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG"]
            },
            "apparmor": { "enabled": crate::security::apparmor_enabled() },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": idmap } }
        },
        "annotations": {
            "io.github.seccomp.libseccomp.version": format!("{maj}.{min}.{micro}"),
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "dev.husk.version": env!("CARGO_PKG_VERSION")
        }
    })
}

fn libseccomp_version() -> (u32, u32, u32) {
    libseccomp::ScmpVersion::current()
        .map(|v| (v.major, v.minor, v.micro))
        .unwrap_or((0, 0, 0))
}

/// runc's default spec, with husk's hostname.
pub fn default_spec() -> Value {
    json!({
        "ociVersion": crate::OCI_VERSION,
        "process": {
            "terminal": true,
            "user": { "uid": 0, "gid": 0 },
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": true },
        "hostname": "husk",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
        ],
        "linux": {
            "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
            "namespaces": [{ "type": "pid" }, { "type": "network" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }, { "type": "cgroup" }],
            "maskedPaths": crate::rootfs::default_masked(),
            "readonlyPaths": crate::rootfs::default_readonly()
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_spec_parses_and_validates() {
        let v = super::default_spec();
        let spec = crate::spec::parse(
            &serde_json::to_vec(&v).unwrap(),
            std::path::Path::new("config.json"),
        )
        .unwrap();
        let plan = crate::namespaces::plan(
            spec.linux()
                .as_ref()
                .unwrap()
                .namespaces()
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        crate::spec::validate(&spec, &plan).unwrap();
    }

    #[test]
    fn features_advertise_what_is_implemented() {
        let f = super::features();
        let opts: Vec<&str> = f["mountOptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(opts.contains(&"rbind") && !opts.contains(&"tmpcopyup"));
        // This kernel (the tests' hosts run 6.1+) has mount_setattr, so rro works; idmap and
        // ridmap are listed exactly when the extension says so.
        assert!(opts.contains(&"rro"));
        let idmap = f["linux"]["mountExtensions"]["idmap"]["enabled"]
            .as_bool()
            .unwrap();
        assert_eq!(opts.contains(&"idmap") && opts.contains(&"ridmap"), idmap);
        assert!(f["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "user"));
        assert_eq!(f["linux"]["cgroup"]["systemd"], true);
        assert_eq!(f["linux"]["cgroup"]["systemdUser"], false);
        assert!(f["linux"]["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "CAP_SYS_ADMIN"));
    }
}
