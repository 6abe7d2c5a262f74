//! `husk-node bench` and `husk-node soak`: the benchmark (`husk-bench`) or the churn soak with
//! leak accounting (`husk-soak`), built here, inside a fresh node guest, against the guest's
//! containerd with the systemd cgroup driver (`SystemdCgroup = true` on every handler,
//! kubelet's `.slice` pod parents), husk against runc (and crun for the benchmark: crun runs on
//! pure cgroup v2, which this host's hybrid layout denies it). containerd runs where a node's
//! does: in a systemd service with a delegated cgroup, its shims beside it.
//!
//! Under TCG the guest's CPU is emulated, so its absolute times say nothing about a real node;
//! the benchmark is asked for ratios only (`--ratios-only`), which the interleaved iterations
//! keep comparable: every runtime runs under the same emulation, back to back. The soak's
//! leak counters (cgroups of the unified tree, systemd scopes, mounts, processes...) do not
//! depend on speed.

use super::matrix::{version_of, CONTAINERD};
use super::{NodeVm, GUEST_OUT};
use crate::env::CgroupDriver;
use std::path::PathBuf;
use std::time::Instant;

/// What runs in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `husk-bench`, ratios only; results in `bench-results/guest` by default.
    Bench,
    /// `husk-soak`; results in `soak-results/guest` by default.
    Soak,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Bench => "bench",
            Tool::Soak => "soak",
        }
    }

    fn binary(self) -> &'static str {
        match self {
            Tool::Bench => "husk-bench",
            Tool::Soak => "husk-soak",
        }
    }

    fn usage(self) -> String {
        let (what, more) = match self {
            Tool::Bench => (
                "husk vs runc vs crun, ratios only",
                "--iterations N, --memory-pods LIST, --parallel LIST",
            ),
            Tool::Soak => (
                "husk and runc, churn with leak accounting",
                "--pods N, --clients C, --minutes M, --handlers LIST",
            ),
        };
        format!(
            "usage: husk-node {name} [--containerd 1.7|2.x] [--driver systemd|cgroupfs] [--out DIR] [{bin} OPTIONS...]
Runs target/<profile>/{bin} in a fresh node guest (default: containerd 2.x, systemd driver),
{what}. DIR (default {name}-results/guest) receives its results.
Other options go to {bin} ({more}).",
            name = self.name(),
            bin = self.binary(),
        )
    }
}

fn usage_error(tool: Tool, msg: &str) -> ! {
    eprintln!("husk-node {}: {msg}\n{}", tool.name(), tool.usage());
    std::process::exit(2)
}

/// Parses the arguments, boots the guest, runs `tool` there and exits with its status.
pub fn main(tool: Tool, args: &[String]) {
    let mut containerd = "2.x";
    let mut driver = CgroupDriver::Systemd;
    let mut out = NodeVm::workspace().join(format!("{}-results/guest", tool.name()));
    let mut forwarded: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--containerd" => {
                let v = it.next().map(String::as_str).unwrap_or("");
                // 1.6.20 cannot signal runc's containers under trixie's AppArmor 4 without
                // unloading a profile (see `matrix::Cell::setup`): not a node worth measuring.
                containerd = CONTAINERD
                    .iter()
                    .find(|c| c.0 == v && c.0 != "1.6")
                    .map(|c| c.0)
                    .unwrap_or_else(|| {
                        usage_error(tool, &format!("--containerd {v:?}: 1.7 or 2.x"))
                    });
            }
            "--driver" => {
                driver = match it.next().map(String::as_str) {
                    Some("systemd") => CgroupDriver::Systemd,
                    Some("cgroupfs") => CgroupDriver::Cgroupfs,
                    v => usage_error(tool, &format!("--driver {v:?}")),
                }
            }
            "--out" => {
                out = it
                    .next()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| usage_error(tool, "--out needs a directory"))
            }
            "-h" | "--help" => {
                println!("{}", tool.usage());
                return;
            }
            _ => forwarded.push(a.clone()),
        }
    }
    let bench = crate::bed::target_dir().join(tool.binary());
    if !bench.exists() {
        usage_error(
            tool,
            &format!(
                "{} is not built (cargo build --release builds it)",
                bench.display()
            ),
        );
    }
    // The tool's own test bed finds the shim beside it.
    crate::bed::shim_binary();
    let out = std::path::absolute(&out).unwrap_or(out);
    let _ = std::fs::remove_dir_all(out.join("images"));
    std::fs::create_dir_all(&out).unwrap();
    let t = Instant::now();
    crate::images::prebuild(&out.join("images"));
    println!(
        "==> node guest {}: OCI images prebuilt on the host in {:.1} s",
        tool.name(),
        t.elapsed().as_secs_f64()
    );
    let vm = NodeVm::start(&out).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let versions = vm.image.versions();
    let ctd_bin = CONTAINERD.iter().find(|c| c.0 == containerd).unwrap().1;
    let accel = vm.image.accel.name();
    println!(
        "==> node guest up in {:.1} s under {accel}: containerd {} ({ctd_bin}), runc {}, crun {}, \
         SystemdCgroup = {}",
        vm.start_time.as_secs_f64(),
        version_of(&versions, ctd_bin),
        version_of(&versions, "/usr/bin/runc"),
        version_of(&versions, "/usr/bin/crun"),
        driver == CgroupDriver::Systemd,
    );
    let why = match accel {
        "tcg" => "node guest under TCG: its CPU is emulated, so absolute times mean nothing for a real node; the iterations are interleaved, so the ratios compare runtimes under the same emulation",
        _ => "node guest (a VM on this host's shared cores): compare ratios, not the guest's times",
    };
    let env = [
        ("HUSK_CONTAINERD", ctd_bin.to_string()),
        ("HUSK_CGROUP_DRIVER", driver.name().to_string()),
        ("HUSK_RUNC", "/usr/bin/runc".to_string()),
        ("HUSK_CRUN", "/usr/bin/crun".to_string()),
        ("HUSK_IMAGE_DIR", format!("{GUEST_OUT}/images")),
    ];
    // A service with a delegated cgroup, as containerd.service runs on a node; its containerd
    // and shims live in it.
    let q = |s: &str| super::ssh::quote(s);
    let mut script = String::from(
        "systemctl reset-failed husk-tool.service 2>/dev/null; \
         systemd-run --quiet --wait --pipe --collect --service-type=exec --unit=husk-tool \
         -p Delegate=yes -p KillMode=mixed -p TimeoutStopSec=30 --working-directory=/var/tmp",
    );
    for (k, v) in &env {
        script += &format!(" -E {k}={}", q(v));
    }
    if accel == "tcg" {
        script += &format!(" -E {}=1", crate::bed::EMULATED_CPU_ENV);
    }
    script += &format!(
        " {} --out {}",
        q(&bench.display().to_string()),
        q(&format!("{GUEST_OUT}/results")),
    );
    if tool == Tool::Bench {
        script += &format!(" --ratios-only {}", q(why));
    }
    for a in &forwarded {
        script += &format!(" {}", q(a));
    }
    let t = Instant::now();
    let st = vm
        .ssh
        .run(&script)
        .stdin(std::process::Stdio::null())
        .status()
        .expect("ssh");
    println!(
        "==> node guest {} finished in {:.0} s ({st}); results in {}",
        tool.name(),
        t.elapsed().as_secs_f64(),
        out.join("results").display()
    );
    drop(vm);
    let _ = std::fs::remove_dir_all(out.join("images"));
    std::process::exit(st.code().unwrap_or(1));
}
