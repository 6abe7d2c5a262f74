//! Behaviours runc and containerd's runc shim have, through a real containerd driven with `ctr`:
//! real-time signals through the husk shim's Kill.

use husk_e2e::bed::{TestBed, BUSYBOX};
use std::time::{Duration, Instant};

const RT: &str = "io.containerd.husk.v2";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Polls `cat FILE` inside task `id` (through an exec) until it holds `want`.
fn wait_file(bed: &TestBed, id: &str, file: &str, want: &str) {
    let t = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let out = bed.ctr(&[
            "task",
            "exec",
            "--exec-id",
            &format!("cat{n}"),
            id,
            "cat",
            file,
        ]);
        let got = text(&out.stdout);
        if got == want {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{file} in {id}: {got:?}, want {want:?} ({})",
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// containerd sends any signal number in KillRequest (ctr's `--signal 36`, a CRI stop signal
/// such as SIGRTMIN+3): the husk shim refused every real-time signal as unknown. Delivered to
/// the init and to an exec'd process, each of which traps them.
#[test]
fn real_time_signals_reach_the_init_and_an_exec_through_the_shim() {
    let bed = TestBed::start();
    bed.import(BUSYBOX);
    let trap = |sigs: &[u32], tag: &str| {
        let mut s = String::new();
        for n in sigs {
            s.push_str(&format!("trap 'echo {tag}{n} >> /tmp/got' {n}; "));
        }
        s.push_str("echo ready > /tmp/ready-");
        s.push_str(tag);
        s.push_str("; while :; do sleep 0.05; done");
        s
    };
    let init = trap(&[36, 50, 64], "i");
    bed.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        RT,
        BUSYBOX,
        "rt",
        "sh",
        "-c",
        &init,
    ]);
    wait_file(&bed, "rt", "/tmp/ready-i", "ready\n");
    for n in ["36", "50", "64"] {
        bed.ctr_ok(&["task", "kill", "--signal", n, "rt"]);
    }
    wait_file(&bed, "rt", "/tmp/got", "i36\ni50\ni64\n");
    let exec = trap(&[40], "e");
    let mut child = bed
        .ctr_cmd(&["task", "exec", "--exec-id", "e1", "rt", "sh", "-c", &exec])
        .spawn()
        .unwrap();
    wait_file(&bed, "rt", "/tmp/ready-e", "ready\n");
    bed.ctr_ok(&["task", "kill", "--exec-id", "e1", "--signal", "40", "rt"]);
    wait_file(&bed, "rt", "/tmp/got", "i36\ni50\ni64\ne40\n");
    bed.ctr_ok(&[
        "task",
        "kill",
        "--exec-id",
        "e1",
        "--signal",
        "SIGKILL",
        "rt",
    ]);
    let _ = child.wait();
    bed.ctr_ok(&["task", "kill", "--signal", "SIGKILL", "rt"]);
    let t = Instant::now();
    while !bed.ctr_ok(&["task", "ls"]).contains("STOPPED") && t.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    bed.ctr_ok(&["task", "delete", "rt"]);
    bed.ctr_ok(&["container", "rm", "rt"]);
}
