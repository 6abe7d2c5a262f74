//! OCI seccomp profile → BPF, through libseccomp (the only library that expresses a full OCI
//! profile: per-rule actions, several architectures, argument comparisons).

use crate::error::{Error, Result};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

const EPERM: i32 = libc::EPERM;

fn action(a: LinuxSeccompAction, errno: Option<u32>, field: &str) -> Result<ScmpAction> {
    // libseccomp takes an errno below MAX_ERRNO (4095) and refuses more with no word on why;
    // a trace message has the filter's 16 bits of data (SECCOMP_RET_DATA).
    let max = match a {
        LinuxSeccompAction::ScmpActErrno => 4094,
        _ => 0xffff,
    };
    if let Some(e) = errno.filter(|e| *e > max) {
        return Err(Error::spec(
            format!("{field} errnoRet"),
            format!("{e} is out of range (at most {max})"),
        ));
    }
    Ok(match a {
        // SCMP_ACT_KILL is the historic name of "kill the thread" (runc maps it the same).
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => {
            ScmpAction::Errno(errno.map(|e| e as i32).unwrap_or(EPERM))
        }
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(errno.map(|e| e as u16).unwrap_or(EPERM as u16))
        }
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(Error::Unsupported {
                feature: format!("{field}: SCMP_ACT_NOTIFY"),
                reason: "seccomp user notification (listenerPath) is not supported by husk yet"
                    .into(),
            })
        }
    })
}

fn arch(a: Arch) -> Option<ScmpArch> {
    Some(match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        _ => return None,
    })
}

fn compare(
    op: LinuxSeccompOperator,
    index: usize,
    value: u64,
    value_two: Option<u64>,
) -> ScmpArgCompare {
    let op2 = match op {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // OCI: value is the mask, valueTwo the datum: (arg & value) == valueTwo.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return ScmpArgCompare::new(
                index as u32,
                ScmpCompareOp::MaskedEqual(value),
                value_two.unwrap_or(0),
            )
        }
    };
    ScmpArgCompare::new(index as u32, op2, value)
}

/// Builds the filter (not loaded). Unknown syscall names are skipped, as runc does: a profile
/// lists syscalls of every architecture and kernel version.
pub fn compile(s: &LinuxSeccomp) -> Result<ScmpFilterContext> {
    let err =
        |what: &str, e: libseccomp::error::SeccompError| Error::Seccomp(format!("{what}: {e}"));
    let default = action(
        s.default_action(),
        s.default_errno_ret(),
        "linux.seccomp.defaultAction",
    )?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| err("create filter", e))?;
    // no_new_privs is applied by the runtime itself, at the moment the spec asks for it.
    ctx.set_ctl_nnp(false)
        .map_err(|e| err("disable NNP control", e))?;
    for a in s.architectures().iter().flatten() {
        let sa = arch(*a).ok_or_else(|| {
            Error::spec(
                "linux.seccomp.architectures",
                format!("unsupported architecture {a:?}"),
            )
        })?;
        match ctx.add_arch(sa) {
            Ok(_) => {}
            Err(e) if e.errno() == Some(libseccomp::error::SeccompErrno::EEXIST) => {}
            Err(e) => return Err(err(&format!("add architecture {a:?}"), e)),
        }
    }
    for f in s.flags().iter().flatten() {
        match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => ctx.set_ctl_log(true).map(|_| ()),
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => ctx.set_ctl_ssb(true).map(|_| ()),
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => ctx.set_ctl_tsync(true).map(|_| ()),
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                ctx.set_ctl_waitkill(true).map(|_| ())
            }
        }
        .map_err(|e| err(&format!("flag {f:?}"), e))?;
    }
    for (i, rule) in s.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let act = action(rule.action(), rule.errno_ret(), &field)?;
        if act == default {
            continue; // libseccomp refuses rules equal to the default action
        }
        let args = rule.args().clone().unwrap_or_default();
        // Syscalls have six arguments; a larger index must not be truncated into a small one.
        if let Some((j, a)) = args.iter().enumerate().find(|(_, a)| a.index() > 5) {
            return Err(Error::spec(
                format!("{field}.args[{j}].index"),
                format!("{} is not a syscall argument (0..5)", a.index()),
            ));
        }
        for name in rule.names() {
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                tracing::debug!(syscall = %name, "seccomp: unknown syscall skipped");
                continue;
            };
            if args.is_empty() {
                ctx.add_rule(act, sc)
                    .map_err(|e| err(&format!("{field}: {name}"), e))?;
                continue;
            }
            let conds: Vec<ScmpArgCompare> = args
                .iter()
                .map(|a| compare(a.op(), a.index(), a.value(), a.value_two()))
                .collect();
            let mut idx: Vec<usize> = args.iter().map(|a| a.index()).collect();
            idx.sort_unstable();
            idx.dedup();
            if idx.len() == args.len() {
                ctx.add_rule_conditional(act, sc, &conds)
                    .map_err(|e| err(&format!("{field}: {name}"), e))?;
            } else {
                // Several comparisons of one argument cannot be ANDed by libseccomp: one rule
                // each (runc does the same).
                for c in conds {
                    ctx.add_rule_conditional(act, sc, &[c])
                        .map_err(|e| err(&format!("{field}: {name}"), e))?;
                }
            }
        }
    }
    Ok(ctx)
}

pub fn load(ctx: &ScmpFilterContext) -> Result<()> {
    ctx.load()
        .map_err(|e| Error::Seccomp(format!("load filter: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn runtime_default_shape_compiles() {
        // The shape of containerd's RuntimeDefault: errno default, 3 x86 arches, allow rules,
        // masked-equal clone rule, argument ranges on socket, clone3 -> ENOSYS.
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
          "syscalls":[
            {"names":["read","write","exit_group","no_such_syscall_anywhere"],"action":"SCMP_ACT_ALLOW"},
            {"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2114060288,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]},
            {"names":["socket"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":40,"op":"SCMP_CMP_NE"}]},
            {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":0,"op":"SCMP_CMP_EQ"}]},
            {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]},
            {"names":["clone3"],"action":"SCMP_ACT_ERRNO","errnoRet":38},
            {"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}
          ]}"#,
        );
        let ctx = compile(&p).unwrap();
        let f = tempfile::tempfile().unwrap();
        ctx.export_bpf(&f).unwrap();
        assert!(f.metadata().unwrap().len() > 0);
        assert!(ctx.is_arch_present(ScmpArch::X86).unwrap());
        assert!(!ctx.get_ctl_nnp().unwrap());
    }

    #[test]
    fn same_index_args_become_separate_rules() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["socket"],"action":"SCMP_ACT_ERRNO",
            "args":[{"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":0,"value":2,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        compile(&p).unwrap();
    }

    #[test]
    fn notify_is_refused_with_the_field() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        );
        let e = compile(&p).unwrap_err().to_string();
        assert!(e.contains("syscalls[0]") && e.contains("NOTIFY"), "{e}");
    }

    /// Hostile profiles (as the `seccomp` fuzz target makes them): each is one clear error or a
    /// working filter, never a panic, an abort in libseccomp, or a silently different rule.
    #[test]
    fn hostile_profiles_fail_cleanly() {
        let err = |json: &str| compile(&profile(json)).err().map(|e| e.to_string());
        // An argument index past the sixth: refused, not truncated to a small one.
        let e = err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["socket"],"action":"SCMP_ACT_ERRNO",
            "args":[{"index":4294967296,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#)
        .unwrap();
        assert!(e.contains("syscalls[0].args[0].index"), "{e}");
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["socket"],"action":"SCMP_ACT_ERRNO",
            "args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#)
        .is_some());
        // An errno libseccomp refuses (MAX_ERRNO and above), a trace message past 16 bits.
        let e = err(r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":4095}"#).unwrap();
        assert!(e.contains("defaultAction errnoRet"), "{e}");
        assert!(err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["ptrace"],
            "action":"SCMP_ACT_TRACE","errnoRet":65536}]}"#
        )
        .is_some());
        // Names libseccomp does not know (NUL, empty, huge) are skipped like unknown syscalls.
        let long = "x".repeat(100_000);
        compile(&profile(&format!(
            r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{{"names":["","a\u0000b","{long}","read"],"action":"SCMP_ACT_ERRNO"}}]}}"#
        )))
        .unwrap();
        // A big-endian architecture next to little-endian ones: libseccomp's clear refusal.
        let e = err(r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_S390X"]}"#)
            .unwrap();
        assert!(e.contains("S390x"), "{e}");
        // Architectures twice; the largest values; a masked compare without a datum.
        compile(&profile(r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":4094,
            "architectures":["SCMP_ARCH_X86","SCMP_ARCH_X86","SCMP_ARCH_AARCH64","SCMP_ARCH_RISCV64"],
            "syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":5,"value":18446744073709551615,"op":"SCMP_CMP_GT"}]},
                        {"names":["write"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":18446744073709551615,"op":"SCMP_CMP_MASKED_EQ"}]}]}"#))
        .unwrap();
    }

    #[test]
    fn actions_map_like_runc() {
        assert_eq!(
            action(LinuxSeccompAction::ScmpActKill, None, "x").unwrap(),
            ScmpAction::KillThread
        );
        assert_eq!(
            action(LinuxSeccompAction::ScmpActErrno, None, "x").unwrap(),
            ScmpAction::Errno(libc::EPERM)
        );
        assert_eq!(
            action(LinuxSeccompAction::ScmpActErrno, Some(38), "x").unwrap(),
            ScmpAction::Errno(38)
        );
    }
}
