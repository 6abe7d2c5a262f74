//! Behaviours from public bug reports against runc, crun, youki and kata, where runc (the
//! reference, Debian's 1.1) does the right thing: each is checked on husk and, where the
//! behaviour is runc's, on runc with the same bundle.

mod common;
use common::*;

/// `kill ID 36` and the real-time names were refused as unknown signals. Every signal by
/// number must reach the container's process (it blocks all of them and reports each one it
/// takes, so "delivered" means queued by the kernel), and husk also takes the real-time names
/// of containerd's and kill(1)'s tables (runc 1.1 refuses them: it knows only numbers there).
#[test]
fn every_signal_by_number_and_real_time_names_reach_the_container() {
    let (h, r) = (Husk::new(), runc_cli());
    for (x, name) in [(&r, "runc"), (&h, "husk")] {
        let b = Bundle::busybox(&["/sigrecv"]);
        std::fs::copy(fixture_binary("sigrecv"), b.rootfs().join("sigrecv")).unwrap();
        x.run_detached(&b);
        let mut out = OutputLines::of(&b);
        assert_eq!(out.next(), "ready", "{name}");
        let mut sigs: Vec<(String, i32)> = (1..=64)
            .filter(|n| *n != libc::SIGKILL && *n != libc::SIGSTOP)
            .map(|n| (n.to_string(), n))
            .collect();
        if name == "husk" {
            for (s, n) in [
                ("RTMIN", 34),
                ("RTMIN+2", 36),
                ("SIGRTMIN+3", 37),
                ("SIGRTMAX-1", 63),
                ("RTMAX", 64),
                ("SIGRTMAX", 64),
                ("usr1", 10),
            ] {
                sigs.push((s.to_string(), n));
            }
        }
        for (arg, n) in &sigs {
            let o = x.run(&["kill", &b.id, arg]);
            assert!(
                o.status.success(),
                "{name} kill {arg}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert_eq!(out.next(), n.to_string(), "{name}: kill {arg}");
        }
        // 0 checks that the process exists; past 64 there is no signal.
        x.ok(&["kill", &b.id, "0"]);
        assert!(
            !x.run(&["kill", &b.id, "65"]).status.success(),
            "{name}: 65"
        );
        // SIGSTOP stops it; SIGCONT resumes it (and, blocked, is reported); SIGKILL ends it.
        let pid = x.state(&b.id)["pid"].as_i64().unwrap();
        x.ok(&["kill", &b.id, "STOP"]);
        wait_for(
            || proc_state(pid) == Some('T'),
            &format!("{name}: stopped by SIGSTOP"),
        );
        x.ok(&["kill", &b.id, "CONT"]);
        assert_eq!(out.next(), "18", "{name}: SIGCONT");
        assert_ne!(proc_state(pid), Some('T'), "{name}: still stopped");
        x.ok(&["kill", &b.id, "KILL"]);
        x.wait_status(&b.id, "stopped");
    }
}

/// The state letter of /proc/<pid>/stat (R, S, T, Z…).
fn proc_state(pid: i64) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

fn wait_for(mut ok: impl FnMut() -> bool, what: &str) {
    let t = std::time::Instant::now();
    while !ok() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "timed out: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
