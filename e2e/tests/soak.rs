//! The churn soak, short (issue 14 §1; `scripts/soak.sh` runs the long one): pods through CRI
//! on husk and on runc in one test bed, and nothing may leak or be lost — shim processes,
//! zombies, mounts, cgroups, netns, fds of containerd and of the long-lived shim, runtime state
//! files, containerd's entries, the long-lived shim's memory; no exit status, no output, no CRI
//! call may fail. `HUSK_SOAK_PODS` sets the pods per handler (default 40).

use husk_e2e::bed::{TestBed, BUSYBOX};
use husk_e2e::soak::{self, Config};
use std::time::Duration;

#[test]
fn churn_leaves_nothing_behind_and_loses_no_exit() {
    let pods = std::env::var("HUSK_SOAK_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let bed = TestBed::start();
    let _ = bed.cri(&[BUSYBOX]);
    let cfg = Config {
        pods,
        clients: 4,
        // Bounded: on a loaded machine fewer pods run, and the test says how many.
        budget: Duration::from_secs(90),
        handlers: husk_e2e::env::handlers(),
        execs_per_pod: 4,
    };
    let report = soak::run(&bed, &cfg, &|l| eprintln!("soak: {l}"));
    eprintln!("{}", report.to_markdown());
    let problems = report.problems();
    assert!(
        problems.is_empty(),
        "the soak found:\n  {}",
        problems.join("\n  ")
    );
    for p in &report.phases {
        assert!(
            p.pods_done >= pods.min(10),
            "{}: only {} pods ran in {:.0} s",
            p.handler,
            p.pods_done,
            p.seconds
        );
    }
}
