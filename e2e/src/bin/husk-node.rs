//! The node guest from the command line (see `husk_e2e::node`):
//!
//! ```text
//! husk-node matrix [--full] [--only SUBSTRING]   the guest stage of scripts/test.sh
//! husk-node sh [COMMAND...]                      boot the guest, run COMMAND (default: an
//!                                                interactive shell) with the workspace mounted
//! husk-node bench [--containerd L] [--driver D] [HUSK-BENCH OPTIONS]
//!                                                the benchmark in the guest, ratios only
//! husk-node soak [--containerd L] [--driver D] [HUSK-SOAK OPTIONS]
//!                                                the churn soak with leak accounting in the guest
//! husk-node build                                build the cached image if missing, print it
//! ```

use husk_e2e::node::{NodeVm, GUEST_OUT};
use std::time::Instant;

fn usage() -> ! {
    eprintln!(
        "usage: husk-node matrix [--full] [--only SUBSTRING]\n       husk-node sh [COMMAND...]\n       husk-node bench [--containerd 1.7|2.x] [--driver systemd|cgroupfs] [--out DIR] [HUSK-BENCH OPTIONS]\n       husk-node soak [--containerd 1.7|2.x] [--driver systemd|cgroupfs] [--out DIR] [HUSK-SOAK OPTIONS]\n       husk-node build"
    );
    std::process::exit(2)
}

fn start(out: &std::path::Path) -> NodeVm {
    let t = Instant::now();
    let vm = NodeVm::start(out).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    eprintln!(
        "==> node guest up in {:.1} s (warm start {:.1} s; {} under {}, image {})",
        t.elapsed().as_secs_f64(),
        vm.start_time.as_secs_f64(),
        vm.src.display(),
        vm.image.accel.name(),
        vm.image.dir.display()
    );
    vm
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("build") => {
            let accel = husk_e2e::node::qemu::Accel::detect();
            let (image, _lock) = husk_e2e::node::Image::ensure(accel).unwrap_or_else(|e| {
                eprintln!("{e}");
                std::process::exit(1)
            });
            println!(
                "image: {}\n{}{}",
                image.dir.display(),
                image.versions(),
                image.timings()
            );
        }
        Some("sh") => {
            let out = tempfile::Builder::new()
                .prefix("husk-node-out-")
                .tempdir_in("/tmp")
                .unwrap();
            let vm = start(out.path());
            let code = if args.len() > 1 {
                let cmd = args[1..].join(" ");
                let st = vm
                    .ssh
                    .run(&cmd)
                    .stdin(std::process::Stdio::inherit())
                    .status()
                    .unwrap();
                st.code().unwrap_or(1)
            } else {
                eprintln!(
                    "(the workspace is at {} in the guest, {} is shared with {})",
                    vm.src.display(),
                    GUEST_OUT,
                    out.path().display()
                );
                let st = vm
                    .ssh
                    .command()
                    .args(["-t", "-o", "ControlMaster=no", "root@127.0.0.1"])
                    .status()
                    .unwrap();
                st.code().unwrap_or(1)
            };
            drop(vm);
            std::process::exit(code);
        }
        Some("matrix") => husk_e2e::node::matrix::main(&args[1..]),
        Some("bench") => husk_e2e::node::tool::main(husk_e2e::node::tool::Tool::Bench, &args[1..]),
        Some("soak") => husk_e2e::node::tool::main(husk_e2e::node::tool::Tool::Soak, &args[1..]),
        _ => usage(),
    }
}
