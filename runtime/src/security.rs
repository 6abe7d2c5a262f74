//! Process security: capabilities, identity switch, rlimits, no_new_privs, AppArmor,
//! personality and sysctl validation. All of it runs in the single-threaded init (capabilities
//! are per thread).

use crate::error::{Context, Error, Result};
use caps::{CapSet, CapsHashSet};
use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxPersonality, LinuxPersonalityDomain, PosixRlimit,
    PosixRlimitType, User,
};
use std::str::FromStr;

fn to_caps(set: Option<&std::collections::HashSet<Capability>>) -> CapsHashSet {
    let mut out = CapsHashSet::new();
    for c in set.into_iter().flatten() {
        let name = serde_json::to_value(c)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        match caps::Capability::from_str(&name) {
            // Capabilities this kernel does not know are ignored, like runc does.
            Ok(cap) if caps::runtime::thread_all_supported().contains(&cap) => {
                out.insert(cap);
            }
            _ => {
                tracing::warn!(capability = %name, "capability not supported by this kernel, ignored")
            }
        }
    }
    out
}

/// Drops everything outside the bounding set (must run before the uid switch: needs
/// CAP_SETPCAP).
pub fn apply_bounding(c: Option<&LinuxCapabilities>) -> Result<()> {
    let bounding = to_caps(c.and_then(|c| c.bounding().as_ref()));
    for cap in caps::runtime::thread_all_supported() {
        if !bounding.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| Error::Init(format!("drop {cap} from the bounding set: {e}")))?;
        }
    }
    Ok(())
}

/// Sets effective, permitted, inheritable (in an order the kernel accepts) and then ambient.
pub fn apply_caps(c: Option<&LinuxCapabilities>) -> Result<()> {
    let e = to_caps(c.and_then(|c| c.effective().as_ref()));
    let p = to_caps(c.and_then(|c| c.permitted().as_ref()));
    let i = to_caps(c.and_then(|c| c.inheritable().as_ref()));
    let a = to_caps(c.and_then(|c| c.ambient().as_ref()));
    if !e.is_subset(&p) {
        return Err(Error::spec(
            "process.capabilities.effective",
            "must be a subset of permitted",
        ));
    }
    let set = |s: CapSet, v: &CapsHashSet, name: &str| {
        caps::set(None, s, v).map_err(|err| Error::Init(format!("set {name} capabilities: {err}")))
    };
    // Shrinking effective first keeps effective ⊆ permitted at every step.
    set(CapSet::Effective, &e, "effective")?;
    set(CapSet::Permitted, &p, "permitted")?;
    set(CapSet::Effective, &e, "effective")?;
    set(CapSet::Inheritable, &i, "inheritable")?;
    caps::clear(None, CapSet::Ambient).ok();
    for cap in raisable_ambient(&a, &p, &i) {
        caps::raise(None, CapSet::Ambient, cap)
            .map_err(|err| Error::Init(format!("raise ambient {cap}: {err}")))?;
    }
    Ok(())
}

/// The ambient capabilities the kernel lets us raise: those both permitted and inheritable
/// (capabilities(7)). The others are left out with a warning rather than failing the
/// container: runc does the same, and its own default `runc spec` lists ambient capabilities
/// without inheritable ones, so failing would break that config.
fn raisable_ambient(
    ambient: &CapsHashSet,
    permitted: &CapsHashSet,
    inheritable: &CapsHashSet,
) -> Vec<caps::Capability> {
    let mut out: Vec<caps::Capability> = Vec::new();
    for cap in ambient {
        if permitted.contains(cap) && inheritable.contains(cap) {
            out.push(*cap);
        } else {
            tracing::warn!(capability = %cap, "ambient capability is not both permitted and inheritable, not raised");
        }
    }
    out.sort_by_key(|c| c.index());
    out
}

/// Switches to the process user, keeping capabilities across the switch so `apply_caps` can
/// set them afterwards.
pub fn switch_user(user: &User, setgroups_allowed: bool) -> Result<()> {
    let uid = nix::unistd::Uid::from_raw(user.uid());
    let gid = nix::unistd::Gid::from_raw(user.gid());
    nix::sys::prctl::set_keepcaps(true).ctx(|| "prctl(PR_SET_KEEPCAPS)")?;
    if setgroups_allowed {
        let groups: Vec<nix::unistd::Gid> = user
            .additional_gids()
            .iter()
            .flatten()
            .map(|g| nix::unistd::Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&groups).ctx(|| {
            format!(
                "setgroups {:?} (process.user.additionalGids)",
                user.additional_gids()
            )
        })?;
    }
    nix::unistd::setresgid(gid, gid, gid)
        .ctx(|| format!("setgid {} (process.user.gid)", user.gid()))?;
    nix::unistd::setresuid(uid, uid, uid)
        .ctx(|| format!("setuid {} (process.user.uid)", user.uid()))?;
    nix::sys::prctl::set_keepcaps(false).ctx(|| "prctl(PR_SET_KEEPCAPS, 0)")?;
    if let Some(mask) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
            mask as libc::mode_t,
        ));
    }
    Ok(())
}

pub fn set_no_new_privs() -> Result<()> {
    nix::sys::prctl::set_no_new_privs().ctx(|| "prctl(PR_SET_NO_NEW_PRIVS)")
}

fn rlimit_resource(t: PosixRlimitType) -> Option<libc::__rlimit_resource_t> {
    Some(match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    })
}

pub fn apply_rlimits(limits: &[PosixRlimit]) -> Result<()> {
    for (i, l) in limits.iter().enumerate() {
        let Some(res) = rlimit_resource(l.typ()) else {
            continue;
        };
        let lim = libc::rlimit {
            rlim_cur: l.soft(),
            rlim_max: l.hard(),
        };
        // SAFETY: plain syscall with a valid struct.
        if unsafe { libc::setrlimit(res, &lim) } != 0 {
            return Err(nix::Error::last()).ctx(|| {
                format!(
                    "setrlimit process.rlimits[{i}] {:?} soft={} hard={}",
                    l.typ(),
                    l.soft(),
                    l.hard()
                )
            });
        }
    }
    Ok(())
}

pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .map(|s| s.trim() == "Y")
        .unwrap_or(false)
}

/// Whether securityfs' `apparmor/profiles` text (`NAME (MODE)` lines) lists `name`.
fn profile_listed(profiles: &str, name: &str) -> bool {
    profiles
        .lines()
        .any(|l| l.rsplit_once(" (").map_or(l, |(n, _)| n) == name)
}

/// Checks, before anything is created, that `process.apparmorProfile` can be applied: AppArmor
/// is enabled, and the profile is loaded (`unconfined` always is; a profile in another policy
/// namespace, `:ns:name`, is left to the kernel). Without it the container's execve would fail
/// with a bare ENOENT from `/proc/self/attr/apparmor/exec` after all the set-up.
///
/// Errors: `Unsupported` when AppArmor is not enabled; a `process.apparmorProfile` spec error
/// naming the profile when it is not loaded.
pub fn check_apparmor_profile(profile: &str) -> Result<()> {
    if !apparmor_enabled() {
        return Err(Error::Unsupported {
            feature: format!("process.apparmorProfile {profile:?}"),
            reason: "AppArmor is not enabled on this host".into(),
        });
    }
    if profile == "unconfined" || profile.starts_with(':') {
        return Ok(());
    }
    // Where securityfs is not mounted the kernel has the last word at execve.
    match std::fs::read_to_string("/sys/kernel/security/apparmor/profiles") {
        Ok(loaded) if !profile_listed(&loaded, profile) => Err(Error::spec(
            "process.apparmorProfile",
            format!(
                "AppArmor profile {profile:?} is not loaded (load it with apparmor_parser; \
                 /sys/kernel/security/apparmor/profiles lists the loaded ones)"
            ),
        )),
        _ => Ok(()),
    }
}

/// Arranges for `profile` to be applied at the next execve, through the verified procfs
/// (a label written anywhere else would leave the container unconfined: CVE-2019-19921).
pub fn apply_apparmor(proc: &crate::procfs::Proc, profile: &str) -> Result<()> {
    if !apparmor_enabled() {
        return Err(Error::Unsupported {
            feature: format!("process.apparmorProfile {profile:?}"),
            reason: "AppArmor is not enabled on this host".into(),
        });
    }
    let data = format!("exec {profile}");
    // The LSM-specific file first (kernel >= 5.1 with stacking), then the legacy one.
    proc.write_self("attr/apparmor/exec", data.as_bytes())
        .or_else(|_| proc.write_self("attr/exec", data.as_bytes()))
        .map_err(|e| Error::spec("process.apparmorProfile", format!("{profile:?}: {e}")))
}

pub fn apply_personality(p: &LinuxPersonality) -> Result<()> {
    let mut persona = match p.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    for f in p.flags().iter().flatten() {
        persona |= match f.as_str() {
            "ADDR_NO_RANDOMIZE" => 0x0040000,
            "ADDR_COMPAT_LAYOUT" => 0x0200000,
            "READ_IMPLIES_EXEC" => 0x0400000,
            "ADDR_LIMIT_32BIT" => 0x0800000,
            "SHORT_INODE" => 0x1000000,
            "WHOLE_SECONDS" => 0x2000000,
            "STICKY_TIMEOUTS" => 0x4000000,
            "ADDR_LIMIT_3GB" => 0x8000000,
            other => {
                return Err(Error::spec(
                    "linux.personality.flags",
                    format!("unknown flag {other:?}"),
                ))
            }
        };
    }
    // SAFETY: personality(2) only changes this process's execution domain.
    if unsafe { libc::personality(persona as libc::c_ulong) } < 0 {
        return Err(nix::Error::last()).ctx(|| "personality(2) (linux.personality)");
    }
    Ok(())
}

/// Which namespace a sysctl belongs to; only namespaced sysctls may be set for a container.
/// Keys are named as sysctl(8) names them, with dots or slashes (see
/// [`crate::procfs::sysctl_path`]); a key that is no sysctl name belongs to none.
pub fn sysctl_namespace(key: &str) -> Option<crate::namespaces::Kind> {
    use crate::namespaces::Kind;
    let path = crate::procfs::sysctl_path(key).ok()?;
    let ipc = [
        "kernel/msgmax",
        "kernel/msgmnb",
        "kernel/msgmni",
        "kernel/sem",
        "kernel/shmall",
        "kernel/shmmax",
        "kernel/shmmni",
        "kernel/shm_rmid_forced",
    ];
    if ipc.contains(&path.as_str()) || path.starts_with("fs/mqueue/") {
        Some(Kind::Ipc)
    } else if path.starts_with("net/") {
        Some(Kind::Network)
    } else if path == "kernel/hostname" || path == "kernel/domainname" {
        Some(Kind::Uts)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespaces::Kind;

    #[test]
    fn apparmor_profiles_are_looked_up_by_exact_name() {
        let list = "cri-containerd.apparmor.d (enforce)\nhusk-deny (complain)\nnvidia_modprobe//kmod (enforce)\n";
        assert!(profile_listed(list, "husk-deny"));
        assert!(profile_listed(list, "nvidia_modprobe//kmod"));
        assert!(!profile_listed(list, "husk"));
        assert!(!profile_listed(list, "cri-containerd"));
        if !apparmor_enabled() {
            // This host: today's clear error, before anything is created.
            let e = check_apparmor_profile("husk-deny").unwrap_err().to_string();
            assert!(e.contains("AppArmor is not enabled on this host"), "{e}");
        }
    }

    #[test]
    fn ambient_capabilities_need_permitted_and_inheritable() {
        use caps::Capability::*;
        let set = |v: &[caps::Capability]| v.iter().copied().collect::<CapsHashSet>();
        let ambient = set(&[CAP_KILL, CAP_NET_BIND_SERVICE, CAP_AUDIT_WRITE]);
        let permitted = set(&[CAP_KILL, CAP_NET_BIND_SERVICE, CAP_AUDIT_WRITE]);
        // runc's default spec: no inheritable set, so nothing can be raised.
        assert!(raisable_ambient(&ambient, &permitted, &set(&[])).is_empty());
        let inheritable = set(&[CAP_NET_BIND_SERVICE, CAP_KILL]);
        assert_eq!(
            raisable_ambient(&ambient, &permitted, &inheritable),
            vec![CAP_KILL, CAP_NET_BIND_SERVICE]
        );
    }

    #[test]
    fn sysctl_classification() {
        assert_eq!(sysctl_namespace("net.ipv4.ip_forward"), Some(Kind::Network));
        assert_eq!(sysctl_namespace("kernel.shm_rmid_forced"), Some(Kind::Ipc));
        assert_eq!(sysctl_namespace("fs.mqueue.msg_max"), Some(Kind::Ipc));
        assert_eq!(sysctl_namespace("vm.swappiness"), None);
        assert_eq!(sysctl_namespace("kernel.pid_max"), None);
        // Slash-separated names (sysctl(8)) classify the same; a path that walks out of its
        // namespace's directory is no sysctl name at all.
        assert_eq!(
            sysctl_namespace("net/ipv4/conf/eth0.100/forwarding"),
            Some(Kind::Network)
        );
        assert_eq!(sysctl_namespace("kernel/shm_rmid_forced"), Some(Kind::Ipc));
        assert_eq!(sysctl_namespace("net/../kernel/core_pattern"), None);
    }

    #[test]
    fn oci_capabilities_convert() {
        let c: LinuxCapabilities =
            serde_json::from_str(r#"{"bounding":["CAP_CHOWN","CAP_NET_BIND_SERVICE"]}"#).unwrap();
        let s = to_caps(c.bounding().as_ref());
        assert!(
            s.contains(&caps::Capability::CAP_CHOWN)
                && s.contains(&caps::Capability::CAP_NET_BIND_SERVICE)
        );
        assert_eq!(s.len(), 2);
    }
}
