//! The demo the README's first command runs: a private containerd with husk installed as the
//! CRI runtime handler `husk`, and one pod on that handler holding two containers side by
//! side — one that is a single static binary (no OS inside) and a busybox userland — with what
//! each holds, its output and its exit code, as kubelet would see them.

use husk_e2e::bed::{TestBed, BUSYBOX, SCRATCH};
use husk_e2e::cri::Cri;

fn main() {
    if let Some(a) = std::env::args().nth(1) {
        // It takes no options; say what it does rather than start a containerd by surprise.
        eprintln!(
            "usage: husk-demo (no arguments; needs root)\n\
             Starts a private containerd with runtime handler `husk`, runs a pod with an OS-less\n\
             scratch container and a busybox container, prints what each holds, its output and\n\
             exit code, then tears everything down."
        );
        std::process::exit(if a == "-h" || a == "--help" { 0 } else { 2 });
    }
    let bed = TestBed::start();
    println!(
        "containerd is up on {} with runtime handler `husk` -> io.containerd.husk.v2 ({})",
        bed.socket().display(),
        husk_e2e::bed::shim_binary().display()
    );
    let mut c = bed.cri(&[SCRATCH, BUSYBOX]);
    let logs = bed.dir.path().join("pod-logs");
    let pod_cfg = Cri::pod_config("husk-demo", &logs);
    let pod = c.run_pod(&pod_cfg, "husk");
    let ip = c.pod_status(&pod).network.map(|n| n.ip).unwrap_or_default();
    println!("pod husk-demo is ready on handler husk, pod IP {ip}");
    let busybox_cmd = ["sh", "-c", "echo \"hello from busybox on kernel $(uname -r)\"; echo \"pid $$ in pod $(hostname), $(ls /bin | wc -l) commands in /bin\"; exit 7"];
    for (name, title, image, cmd, why) in [
        (
            "hello",
            "an OS-less container: one static binary",
            SCRATCH,
            &[][..],
            "",
        ),
        (
            "busybox",
            "a busybox userland",
            BUSYBOX,
            &busybox_cmd[..],
            " -- on purpose: its script ends with `exit 7`, to show a failing container's \
             code and reason reaching kubelet",
        ),
    ] {
        println!("\n=== {name}: {title} ({image}) ===");
        let rootfs = bed
            .dir
            .path()
            .join(format!("img-{}", image.replace(['/', ':'], "_")));
        let files = walk(&rootfs);
        println!(
            "--- inside: {} file(s), {} bytes in all",
            files.len(),
            files.iter().map(|(_, s)| s).sum::<u64>()
        );
        for (p, s) in files.iter().take(3) {
            println!("    {p} ({s} bytes)");
        }
        let cfg = Cri::container_config(name, image, cmd);
        let id = c
            .create_container(&pod, &cfg, &pod_cfg)
            .expect("CreateContainer");
        c.start_container(&id).expect("StartContainer");
        let st = c.wait_exited(&id);
        println!(
            "--- output (CRI log {}):",
            logs.join(format!("{name}.log")).display()
        );
        for l in std::fs::read_to_string(logs.join(format!("{name}.log")))
            .unwrap_or_default()
            .lines()
        {
            // "<time> <stream> <F|P> <text>"
            println!("    {}", l.splitn(4, ' ').nth(3).unwrap_or(""));
        }
        println!("--- exit code: {} ({}){why}", st.exit_code, st.reason);
        c.remove_container(&id);
    }
    c.stop_pod(&pod);
    c.remove_pod(&pod);
    println!("\npod removed; containerd and everything it made are torn down now.");
}

fn walk(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                out.push((
                    e.path().strip_prefix(dir).unwrap().display().to_string(),
                    m.len(),
                ));
            }
        }
    }
    out.sort();
    out
}
