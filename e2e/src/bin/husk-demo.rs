//! The demo the README's first command runs: a private containerd with the husk runtime, two
//! containers side by side — one that is a single static binary (no OS inside) and a busybox
//! userland — with what each holds, its output and its exit code.

use husk_e2e::bed::{TestBed, BUSYBOX, SCRATCH};

fn main() {
    let bed = TestBed::start();
    println!(
        "containerd {} is up on {}, runtime io.containerd.husk.v2 -> {}",
        bed.ctr_ok(&["version"])
            .lines()
            .find(|l| l.contains("Version"))
            .unwrap_or("")
            .trim(),
        bed.socket().display(),
        husk_e2e::bed::shim_binary().display()
    );
    bed.import(SCRATCH);
    bed.import(BUSYBOX);
    let show = |title: &str, image: &str, id: &str, args: &[&str]| {
        println!("\n=== {title} ({image}) ===");
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
        let mut cmd = vec![
            "run",
            "--rm",
            "--runtime",
            "io.containerd.husk.v2",
            image,
            id,
        ];
        cmd.extend_from_slice(args);
        let out = bed.ctr(&cmd);
        println!("--- output:");
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            println!("    {l}");
        }
        println!("--- exit code: {}", out.status.code().unwrap_or(-1));
    };
    show(
        "an OS-less container: one static binary",
        SCRATCH,
        "demo-scratch",
        &[],
    );
    show("a busybox userland", BUSYBOX, "demo-busybox", &["sh", "-c", "echo \"hello from busybox on kernel $(uname -r)\"; echo \"pid $$, $(ls /bin | wc -l) commands in /bin\"; exit 7"]);
}

fn walk(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let m = match e.path().symlink_metadata() {
                Ok(m) => m,
                Err(_) => continue,
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
    out
}
