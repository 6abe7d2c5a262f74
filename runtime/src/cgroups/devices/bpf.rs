//! cgroup v2 device control: v2 has no devices controller, so the OCI device rules become a
//! BPF_PROG_TYPE_CGROUP_DEVICE program attached to the container's cgroup. No maintained crate
//! assembles these tiny programs without pulling in libbpf/clang, so the handful of
//! instructions is encoded here. Semantics follow the v1 devices cgroup: the last matching
//! rule decides; with no match the access is denied if any rule exists.

use crate::error::{Error, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub regs: u8, // dst | src << 4
    pub off: i16,
    pub imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const MOV32_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

fn access_bits(access: &str) -> i32 {
    access.chars().fold(0, |a, c| {
        a | match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => 0,
        }
    })
}

/// Builds the program for `rules` (OCI order).
pub fn program(rules: &[LinuxDeviceCgroup]) -> Vec<Insn> {
    // r2 = type, r3 = access, r4 = major, r5 = minor (struct bpf_cgroup_dev_ctx)
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(AND32_K, 2, 0, 0, 0xffff),
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH32_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        let mut checks: Vec<Vec<Insn>> = Vec::new();
        match rule.typ() {
            Some(LinuxDeviceType::B) => checks.push(vec![insn(JNE_K, 2, 0, 0, DEV_BLOCK)]),
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => {
                checks.push(vec![insn(JNE_K, 2, 0, 0, DEV_CHAR)])
            }
            // fifos are not device-controlled; a rule for them never matches a device access
            Some(LinuxDeviceType::P) => continue,
            Some(LinuxDeviceType::A) | None => {}
        }
        let acc = access_bits(rule.access().as_deref().unwrap_or("rwm"));
        if acc != ACC_MKNOD | ACC_READ | ACC_WRITE {
            if rule.allow() {
                // allow: every requested bit must be allowed, (r3 & acc) == r3
                checks.push(vec![
                    insn(MOV32_X, 1, 3, 0, 0),
                    insn(AND32_K, 1, 0, 0, acc),
                    insn(JNE_X, 1, 3, 0, 0),
                ]);
            } else {
                // deny: any requested bit that is denied, (r3 & acc) != 0
                checks.push(vec![
                    insn(MOV32_X, 1, 3, 0, 0),
                    insn(AND32_K, 1, 0, 0, acc),
                    insn(JEQ_K, 1, 0, 0, 0),
                ]);
            }
        }
        if let Some(m) = rule.major().filter(|m| *m >= 0) {
            checks.push(vec![insn(JNE_K, 4, 0, 0, m as i32)]);
        }
        if let Some(m) = rule.minor().filter(|m| *m >= 0) {
            checks.push(vec![insn(JNE_K, 5, 0, 0, m as i32)]);
        }
        let block_len: usize = checks.iter().map(Vec::len).sum::<usize>() + 2;
        let mut emitted = 0;
        for group in checks {
            for mut i in group {
                emitted += 1;
                if i.code == JNE_K || i.code == JNE_X || i.code == JEQ_K {
                    // jump past the rest of this block (to the next rule)
                    i.off = (block_len - emitted) as i16;
                }
                p.push(i);
            }
        }
        p.push(insn(MOV64_K, 0, 0, 0, rule.allow() as i32));
        p.push(insn(EXIT, 0, 0, 0, 0));
        if block_len == 2 {
            // A rule matching everything decides alone: what follows would be unreachable,
            // and the verifier refuses unreachable instructions.
            return p;
        }
    }
    p.push(insn(MOV64_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

fn bpf(cmd: i32, attr: &mut [u8; 128]) -> std::io::Result<i32> {
    // SAFETY: attr is a zero-initialised bpf_attr-sized buffer.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as i32)
    }
}

fn put32(a: &mut [u8; 128], off: usize, v: u32) {
    a[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}
fn put64(a: &mut [u8; 128], off: usize, v: u64) {
    a[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

const BPF_PROG_LOAD: i32 = 5;
const BPF_PROG_ATTACH: i32 = 8;
const BPF_PROG_DETACH: i32 = 9;
const BPF_PROG_GET_FD_BY_ID: i32 = 13;
const BPF_OBJ_GET_INFO_BY_FD: i32 = 15;
const BPF_PROG_QUERY: i32 = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

fn load(prog: &[Insn]) -> std::io::Result<OwnedFd> {
    let raw: Vec<u64> = prog
        .iter()
        .map(|i| {
            let mut b = [0u8; 8];
            b[0] = i.code;
            b[1] = i.regs;
            b[2..4].copy_from_slice(&i.off.to_ne_bytes());
            b[4..8].copy_from_slice(&i.imm.to_ne_bytes());
            u64::from_ne_bytes(b)
        })
        .collect();
    let license = b"Apache-2.0\0";
    let mut log = vec![0u8; 16 * 1024];
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE);
    put32(&mut attr, 4, raw.len() as u32);
    put64(&mut attr, 8, raw.as_ptr() as u64);
    put64(&mut attr, 16, license.as_ptr() as u64);
    put32(&mut attr, 24, 1); // log_level: the verifier explains a refusal
    put32(&mut attr, 28, log.len() as u32);
    put64(&mut attr, 32, log.as_mut_ptr() as u64);
    attr[48..48 + PROG_NAME.len()].copy_from_slice(PROG_NAME);
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(e) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let msg = String::from_utf8_lossy(&log[..end]);
            let last = msg
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            Err(std::io::Error::new(
                e.kind(),
                format!("{e}: verifier: {last}"),
            ))
        }
    }
}

/// The name husk's programs carry (`bpftool cgroup show` lists it), so husk replaces only its
/// own: systemd attaches its device program (`sd_devices`) to a unit it restricts, and both
/// must allow an access.
const PROG_NAME: &[u8] = b"husk_devices";

/// The name of program `fd` (bpf_prog_info.name).
fn prog_name(fd: &OwnedFd) -> Vec<u8> {
    let mut info = [0u8; 256];
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, fd.as_raw_fd() as u32);
    put32(&mut attr, 4, info.len() as u32);
    put64(&mut attr, 8, info.as_mut_ptr() as u64);
    if bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).is_err() {
        return vec![];
    }
    let name = &info[64..80];
    name[..name.iter().position(|b| *b == 0).unwrap_or(16)].to_vec()
}

fn attached(cg: &OwnedFd) -> Vec<u32> {
    let mut ids = [0u32; 64];
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, cg.as_raw_fd() as u32);
    put32(&mut attr, 4, BPF_CGROUP_DEVICE);
    put64(&mut attr, 16, ids.as_mut_ptr() as u64);
    put32(&mut attr, 24, ids.len() as u32);
    if bpf(BPF_PROG_QUERY, &mut attr).is_err() {
        return vec![];
    }
    let n = u32::from_ne_bytes(attr[24..28].try_into().unwrap()) as usize;
    ids[..n.min(ids.len())].to_vec()
}

/// The names of the device programs attached to `cgroup_dir` (husk's is `husk_devices`).
pub fn attached_names(cgroup_dir: &Path) -> Result<Vec<String>> {
    let cg = nix::fcntl::open(
        cgroup_dir,
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::Cgroup {
        path: cgroup_dir.display().to_string(),
        message: format!("open: {e}"),
    })?;
    let mut names = Vec::new();
    for id in attached(&cg) {
        let mut a = [0u8; 128];
        put32(&mut a, 0, id);
        if let Ok(fd) = bpf(BPF_PROG_GET_FD_BY_ID, &mut a) {
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            names.push(String::from_utf8_lossy(&prog_name(&fd)).into_owned());
        }
    }
    Ok(names)
}

/// Loads the rules' program and attaches it to `cgroup_dir` in place of husk's previous one
/// (other programs, such as systemd's, stay).
pub fn apply(cgroup_dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let err = |m: String| Error::Cgroup {
        path: cgroup_dir.display().to_string(),
        message: m,
    };
    if rules.is_empty() {
        return Ok(());
    }
    let cg = nix::fcntl::open(
        cgroup_dir,
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| err(format!("open: {e}")))?;
    let old = attached(&cg);
    let prog = load(&program(rules)).map_err(|e| err(format!("load device BPF program: {e}")))?;
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, cg.as_raw_fd() as u32);
    put32(&mut attr, 4, prog.as_raw_fd() as u32);
    put32(&mut attr, 8, BPF_CGROUP_DEVICE);
    put32(&mut attr, 12, BPF_F_ALLOW_MULTI);
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| err(format!("attach device BPF program: {e}")))?;
    for id in old {
        let mut a = [0u8; 128];
        put32(&mut a, 0, id);
        if let Ok(fd) = bpf(BPF_PROG_GET_FD_BY_ID, &mut a) {
            let old_fd = unsafe { OwnedFd::from_raw_fd(fd) };
            if prog_name(&old_fd) != PROG_NAME {
                continue;
            }
            let mut d = [0u8; 128];
            put32(&mut d, 0, cg.as_raw_fd() as u32);
            put32(&mut d, 4, old_fd.as_raw_fd() as u32);
            put32(&mut d, 8, BPF_CGROUP_DEVICE);
            bpf(BPF_PROG_DETACH, &mut d)
                .map_err(|e| err(format!("detach old device program: {e}")))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_str(json).unwrap()
    }

    /// A tiny interpreter for the generated subset, so the rule semantics are checked without
    /// a kernel.
    fn run(p: &[Insn], typ: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | typ, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => r[dst] = ctx[(i.off / 4) as usize] as u64,
                AND32_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                RSH32_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                MOV32_X => r[dst] = r[src] as u32 as u64,
                JNE_K => {
                    if r[dst] != i.imm as u32 as u64 {
                        pc += i.off as usize
                    }
                }
                JNE_X => {
                    if r[dst] != r[src] {
                        pc += i.off as usize
                    }
                }
                JEQ_K => {
                    if r[dst] == i.imm as u32 as u64 {
                        pc += i.off as usize
                    }
                }
                MOV64_K => r[dst] = i.imm as u64,
                EXIT => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn containerd_default_rules() {
        let p = program(&rules(
            r#"[{"allow":false,"access":"rwm"},
            {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
            {"allow":true,"type":"c","major":136,"access":"rwm"},
            {"allow":true,"type":"c","major":5,"minor":1,"access":"rw"}]"#,
        ));
        let (c, rw, rwm) = (DEV_CHAR as u32, (ACC_READ | ACC_WRITE) as u32, 7u32);
        assert_eq!(run(&p, c, rw, 1, 3), 1, "/dev/null");
        assert_eq!(run(&p, c, rwm, 136, 9), 1, "pts wildcard minor");
        assert_eq!(run(&p, c, rw, 5, 1), 1, "console rw");
        assert_eq!(
            run(&p, c, ACC_MKNOD as u32, 5, 1),
            0,
            "console mknod not allowed"
        );
        assert_eq!(run(&p, c, rw, 1, 5), 0, "/dev/zero not listed");
        assert_eq!(run(&p, DEV_BLOCK as u32, rw, 8, 0), 0, "block device");
    }

    #[test]
    fn nothing_follows_a_rule_that_matches_everything() {
        // The kernel verifier refuses unreachable instructions.
        let p = program(&rules(
            r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}]"#,
        ));
        assert_eq!(p.last().unwrap().code, EXIT);
        assert_eq!(
            p[p.len() - 2],
            insn(MOV64_K, 0, 0, 0, 0),
            "the deny-all rule is the final word"
        );
        assert_eq!(p.iter().filter(|i| i.code == EXIT).count(), 2);
    }

    #[test]
    fn last_matching_rule_wins() {
        let p = program(&rules(
            r#"[{"allow":true,"access":"rwm"},{"allow":false,"type":"b","major":8,"access":"w"}]"#,
        ));
        assert_eq!(run(&p, DEV_BLOCK as u32, ACC_READ as u32, 8, 0), 1);
        assert_eq!(run(&p, DEV_BLOCK as u32, ACC_WRITE as u32, 8, 0), 0);
        assert_eq!(
            run(&p, DEV_BLOCK as u32, (ACC_READ | ACC_WRITE) as u32, 8, 0),
            0,
            "rw includes the denied w"
        );
        assert_eq!(run(&p, DEV_CHAR as u32, ACC_WRITE as u32, 8, 0), 1);
    }
}
