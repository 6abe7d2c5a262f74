//! Where a pod's start time and an ExecSync's time go, read from the test bed's containerd
//! debug log. containerd logs each step of RunPodSandbox, StartContainer and ExecSync (CNI
//! setup, the shim coming up, task and exec events), and both shims log the moment they serve,
//! so the same markers split the time for every handler without instrumenting either runtime.

use std::collections::BTreeMap;

/// A step of a CRI call: from the line matching `from` to the first later line matching `to`.
struct Phase {
    name: &'static str,
    from: &'static [&'static str],
    to: &'static [&'static str],
}

/// What a shim logs once it serves ttrpc: containerd's runc shim, and husk's.
const SHIM_SERVING: &[&str] = &["starting signal loop", "husk shim serving"];

const RUN_POD_SANDBOX: &[Phase] = &[
    Phase {
        name: "RunPodSandbox: containerd (sandbox record, snapshot, spec)",
        from: &["RunPodSandbox for"],
        to: &["begin cni setup"],
    },
    Phase {
        name: "RunPodSandbox: CNI (bridge, portmap, loopback)",
        from: &["begin cni setup"],
        to: &["cni result"],
    },
    Phase {
        name: "RunPodSandbox: shim start (fork/exec until it serves)",
        from: &["cni result"],
        to: SHIM_SERVING,
    },
    Phase {
        name: "RunPodSandbox: task create (runtime builds the pause container)",
        from: SHIM_SERVING,
        to: &["topic=/tasks/create"],
    },
    Phase {
        name: "RunPodSandbox: task start",
        from: &["topic=/tasks/create"],
        to: &["topic=/tasks/start"],
    },
    Phase {
        name: "RunPodSandbox: containerd (after start)",
        from: &["topic=/tasks/start"],
        to: &["returns sandbox id"],
    },
];

const START_CONTAINER: &[Phase] = &[
    Phase {
        name: "StartContainer: containerd + task create (runtime builds the container)",
        from: &["StartContainer for"],
        to: &["topic=/tasks/create"],
    },
    Phase {
        name: "StartContainer: task start",
        from: &["topic=/tasks/create"],
        to: &["topic=/tasks/start"],
    },
    Phase {
        name: "StartContainer: containerd (after start)",
        from: &["topic=/tasks/start"],
        to: &["returns successfully"],
    },
];

/// ExecSync. containerd logs the exec's id before it calls the shim and the exit once the
/// shim reported it, on every version, so the span between them is the runtime's (the shim's
/// Exec and Start, the process's own run, the exit's report) for every handler; 1.6 and 1.7
/// also log the shim's exec-added and exec-started events, which cut the Start alone. The rest
/// is containerd's (the exec record and FIFOs, the output copy, kill and delete after the exit).
const EXEC_SYNC: &[Phase] = &[
    Phase {
        name: "ExecSync: containerd before the shim (until the exec id)",
        from: &["ExecSync for"],
        to: &["Generated exec id"],
    },
    Phase {
        name: "ExecSync: the shim's Exec + Start, the process, its exit reported",
        from: &["Generated exec id"],
        to: &["exits with exit code"],
    },
    Phase {
        name: "ExecSync: the shim's Start alone (containerd 1.6/1.7 events)",
        from: &["topic=/tasks/exec-added"],
        to: &["topic=/tasks/exec-started"],
    },
    Phase {
        name: "ExecSync: containerd after the exit (output, kill, delete)",
        from: &["exits with exit code"],
        to: &["returns with exit code"],
    },
];

/// `ctr run --rm`, from the snapshot's prepare to the container record's delete event (ctr's
/// own start and exit lie outside: the run's total minus this window). containerd 1.6/1.7
/// markers; 2.x logs no task events at debug level, so only the first two phases are cut.
const CTR_RUN: &[Phase] = &[
    Phase {
        name: "ctr run: containerd (snapshot, container record)",
        from: &["msg=\"prepare snapshot\""],
        to: &["topic=/containers/create"],
    },
    Phase {
        name: "ctr run: shim start (fork/exec until it serves)",
        from: &["topic=/containers/create"],
        to: SHIM_SERVING,
    },
    Phase {
        name: "ctr run: task create",
        from: SHIM_SERVING,
        to: &["topic=/tasks/create"],
    },
    Phase {
        name: "ctr run: task start",
        from: &["topic=/tasks/create"],
        to: &["topic=/tasks/start"],
    },
    Phase {
        name: "ctr run: the process runs, its exit reported",
        from: &["topic=/tasks/start"],
        to: &["topic=/tasks/exit"],
    },
    Phase {
        name: "ctr run: task delete",
        from: &["topic=/tasks/exit"],
        to: &["topic=/tasks/delete"],
    },
    Phase {
        name: "ctr run: containerd after (dead-shim cleanup, snapshot, record)",
        from: &["topic=/tasks/delete"],
        to: &["topic=/containers/delete"],
    },
    Phase {
        name: "ctr run: window (snapshot prepare to record deleted)",
        from: &["msg=\"prepare snapshot\""],
        to: &["topic=/containers/delete"],
    },
];

/// Milliseconds per `ctr run` phase, one sample per run, for the containers named `ids`
/// (each run's snapshot key is its container id).
pub fn ctr_run_phases(log: &str, ids: &[String]) -> BTreeMap<String, Vec<f64>> {
    let lines: Vec<&str> = log.lines().collect();
    let mut out = BTreeMap::new();
    for id in ids {
        // The space ends the key: "c-1" must not match "c-10".
        let start = format!("msg=\"prepare snapshot\" key={id} ");
        if let Some(run) = block(&lines, &start, "topic=/containers/delete") {
            split(&run, CTR_RUN, &mut out);
        }
    }
    out
}

/// Seconds since the epoch of a containerd (`time="…Z"`) or husk shim (leading RFC 3339)
/// log line.
pub fn timestamp(line: &str) -> Option<f64> {
    let t = match line.find("time=\"") {
        Some(i) => &line[i + 6..],
        None => line,
    };
    let t = t.get(..t.find('Z')?)?;
    let (date, time) = t.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut hms = time.splitn(3, ':');
    let (h, min) = (
        hms.next()?.parse::<i64>().ok()?,
        hms.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = hms.next()?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60) as f64 + sec)
}

/// The lines of one call: from the first line holding `start` to the next holding `end`.
fn block<'a>(lines: &[&'a str], start: &str, end: &str) -> Option<Vec<&'a str>> {
    let i = lines.iter().position(|l| l.contains(start))?;
    let j = lines[i..].iter().position(|l| l.contains(end))?;
    Some(lines[i..=i + j].to_vec())
}

fn split(block: &[&str], phases: &[Phase], out: &mut BTreeMap<String, Vec<f64>>) {
    let first = |from: usize, markers: &[&str]| {
        block[from..]
            .iter()
            .position(|l| markers.iter().any(|m| l.contains(m)))
            .map(|i| from + i)
    };
    for p in phases {
        let Some(a) = first(0, p.from) else { continue };
        let Some(b) = first(a, p.to) else { continue };
        if let (Some(ta), Some(tb)) = (timestamp(block[a]), timestamp(block[b])) {
            out.entry(p.name.to_string())
                .or_default()
                .push((tb - ta) * 1000.0);
        }
    }
}

/// Milliseconds per phase, one sample per pod, for the pods named `pods` (their sandbox name
/// in RunPodSandbox's metadata). Each pod's first StartContainer after its sandbox counts, and
/// the first ExecSync after that (keyed by phase names starting "ExecSync:").
pub fn pod_start_phases(log: &str, pods: &[String]) -> BTreeMap<String, Vec<f64>> {
    let lines: Vec<&str> = log.lines().collect();
    let mut out = BTreeMap::new();
    for pod in pods {
        let start = format!("RunPodSandbox for &PodSandboxMetadata{{Name:{pod},");
        let Some(i) = lines.iter().position(|l| l.contains(&start)) else {
            continue;
        };
        let Some(run) = block(&lines[i..], &start, "returns sandbox id") else {
            continue;
        };
        split(&run, RUN_POD_SANDBOX, &mut out);
        let rest = &lines[i + run.len()..];
        let Some(sc) = block(rest, "StartContainer for", "returns successfully") else {
            continue;
        };
        split(&sc, START_CONTAINER, &mut out);
        // Only an ExecSync of this pod: before the next pod's sandbox.
        let rest = match rest.iter().position(|l| l.contains("RunPodSandbox for")) {
            Some(n) => &rest[..n],
            None => rest,
        };
        // Up to the lifecycle's next call: containerd 2.x does not log ExecSync's return.
        if let Some(ex) = block(rest, "ExecSync for", "StopContainer for") {
            split(&ex, EXEC_SYNC, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one sample of the phase whose name starts with `prefix`, rounded to µs; `None` if
    /// the phase was not cut.
    fn sample(p: &BTreeMap<String, Vec<f64>>, prefix: &str) -> Option<f64> {
        let (_, v) = p.iter().find(|(n, _)| n.starts_with(prefix))?;
        assert_eq!(v.len(), 1, "{prefix}: {v:?}");
        Some((v[0] * 1000.0).round() / 1000.0)
    }

    #[test]
    fn timestamps_of_both_log_formats() {
        let a = timestamp(r#"time="2026-11-24T08:47:00.016763075Z" level=info msg="x""#).unwrap();
        let b =
            timestamp("2026-11-24T08:47:01.5Z  INFO containerd_shim_husk_v2: husk shim serving")
                .unwrap();
        assert!((b - a - 1.483236925).abs() < 1e-6);
        // 2026-11-24 is day 20_781 since the epoch.
        assert_eq!(a.floor() as i64, 20_781 * 86_400 + 8 * 3600 + 47 * 60);
        assert!(timestamp("no time here").is_none());
    }

    #[test]
    fn phases_of_one_pod() {
        let log = r#"time="2026-11-24T00:00:00.000Z" level=info msg="RunPodSandbox for &PodSandboxMetadata{Name:p1,Uid:u}"
time="2026-11-24T00:00:00.010Z" level=debug msg="begin cni setup"
time="2026-11-24T00:00:00.040Z" level=debug msg="cni result: {}"
2026-11-24T00:00:00.045Z  INFO containerd_shim_husk_v2: husk shim serving
time="2026-11-24T00:00:00.050Z" level=debug msg="event forwarded" topic=/tasks/create
time="2026-11-24T00:00:00.052Z" level=debug msg="event forwarded" topic=/tasks/start
time="2026-11-24T00:00:00.053Z" level=info msg="RunPodSandbox for &PodSandboxMetadata{Name:p1,Uid:u} returns sandbox id \"s\""
time="2026-11-24T00:00:00.060Z" level=info msg="StartContainer for \"c\""
time="2026-11-24T00:00:00.065Z" level=debug msg="event forwarded" topic=/tasks/create
time="2026-11-24T00:00:00.066Z" level=debug msg="event forwarded" topic=/tasks/start
time="2026-11-24T00:00:00.068Z" level=info msg="StartContainer for \"c\" returns successfully"
time="2026-11-24T00:00:00.070Z" level=debug msg="ExecSync for \"c\" with command [/bin/true] and timeout 10 (s)"
time="2026-11-24T00:00:00.0705Z" level=debug msg="Generated exec id \"e\" for container \"c\""
time="2026-11-24T00:00:00.071Z" level=debug msg="event forwarded" topic=/tasks/exec-added
time="2026-11-24T00:00:00.074Z" level=debug msg="event forwarded" topic=/tasks/exec-started
time="2026-11-24T00:00:00.075Z" level=debug msg="Exec process \"e\" exits with exit code 0 and error <nil>"
time="2026-11-24T00:00:00.077Z" level=debug msg="ExecSync for \"c\" returns with exit code 0"
time="2026-11-24T00:00:00.078Z" level=info msg="StopContainer for \"c\" with timeout 0 (s)"
time="2026-11-24T00:00:00.080Z" level=info msg="RunPodSandbox for &PodSandboxMetadata{Name:p2,Uid:v}"
time="2026-11-24T00:00:00.090Z" level=debug msg="ExecSync for \"d\" with command [/bin/true] and timeout 10 (s)"
time="2026-11-24T00:00:00.091Z" level=debug msg="event forwarded" topic=/tasks/exec-added
"#;
        let p = pod_start_phases(log, &["p1".to_string(), "absent".to_string()]);
        let ms = |k: &str| sample(&p, k).unwrap();
        assert_eq!(ms("RunPodSandbox: containerd (sandbox"), 10.0);
        assert_eq!(ms("RunPodSandbox: CNI"), 30.0);
        assert_eq!(ms("RunPodSandbox: shim start"), 5.0);
        assert_eq!(ms("RunPodSandbox: task create"), 5.0);
        assert_eq!(ms("RunPodSandbox: task start"), 2.0);
        assert_eq!(ms("RunPodSandbox: containerd (after"), 1.0);
        assert_eq!(ms("StartContainer: containerd + task create"), 5.0);
        assert_eq!(ms("StartContainer: task start"), 1.0);
        assert_eq!(ms("StartContainer: containerd (after"), 2.0);
        assert_eq!(ms("ExecSync: containerd before"), 0.5);
        assert_eq!(ms("ExecSync: the shim's Exec + Start"), 4.5);
        assert_eq!(ms("ExecSync: the shim's Start alone"), 3.0);
        assert_eq!(ms("ExecSync: containerd after the exit"), 2.0);
    }

    #[test]
    fn exec_sync_phases_of_containerd_2() {
        // containerd 2.x: no task event lines at debug, no ExecSync return line.
        let log = r#"time="2026-12-02T00:00:00.000Z" level=info msg="RunPodSandbox for &PodSandboxMetadata{Name:p,Uid:u}"
time="2026-12-02T00:00:00.100Z" level=info msg="RunPodSandbox for &PodSandboxMetadata{Name:p,Uid:u} returns sandbox id \"s\""
time="2026-12-02T00:00:00.200Z" level=info msg="StartContainer for \"c\""
time="2026-12-02T00:00:00.300Z" level=info msg="StartContainer for \"c\" returns successfully"
time="2026-12-02T00:00:00.310Z" level=debug msg="ExecSync for \"c\" with command [/bin/true] and timeout 10 (s)"
time="2026-12-02T00:00:00.320Z" level=debug msg="Generated exec id \"e\" for container \"c\""
time="2026-12-02T00:00:00.360Z" level=debug msg="Exec process \"e\" exits with exit code 0 and error <nil>"
time="2026-12-02T00:00:00.380Z" level=info msg="StopContainer for \"c\" with timeout 0 (s)"
"#;
        let p = pod_start_phases(log, &["p".to_string()]);
        let ms = |k: &str| sample(&p, k);
        assert_eq!(ms("ExecSync: containerd before"), Some(10.0));
        assert_eq!(ms("ExecSync: the shim's Exec + Start"), Some(40.0));
        assert_eq!(ms("ExecSync: the shim's Start alone"), None);
        assert_eq!(ms("ExecSync: containerd after the exit"), None);
    }

    #[test]
    fn phases_of_one_ctr_run() {
        let log = r#"time="2026-12-02T00:00:00.000Z" level=debug msg="prepare snapshot" key=c-10 parent="sha256:x"
time="2026-12-02T00:00:00.001Z" level=debug msg="event published" topic=/containers/delete
time="2026-12-02T00:00:01.000Z" level=debug msg="prepare snapshot" key=c-1 parent="sha256:x"
time="2026-12-02T00:00:01.006Z" level=debug msg="event published" topic=/containers/create
2026-12-02T00:00:01.012Z  INFO containerd_shim_husk_v2: husk shim serving namespace=n id=c-1
time="2026-12-02T00:00:01.027Z" level=debug msg="event forwarded" topic=/tasks/create
time="2026-12-02T00:00:01.028Z" level=debug msg="event forwarded" topic=/tasks/start
time="2026-12-02T00:00:01.030Z" level=debug msg="event forwarded" topic=/tasks/exit
time="2026-12-02T00:00:01.034Z" level=debug msg="event forwarded" topic=/tasks/delete
time="2026-12-02T00:00:01.041Z" level=debug msg="event published" topic=/containers/delete
"#;
        let p = ctr_run_phases(log, &["c-1".to_string()]);
        let ms = |k: &str| sample(&p, k).unwrap();
        assert_eq!(ms("ctr run: containerd (snapshot"), 6.0);
        assert_eq!(ms("ctr run: shim start"), 6.0);
        assert_eq!(ms("ctr run: task create"), 15.0);
        assert_eq!(ms("ctr run: task start"), 1.0);
        assert_eq!(ms("ctr run: the process runs"), 2.0);
        assert_eq!(ms("ctr run: task delete"), 4.0);
        assert_eq!(ms("ctr run: containerd after"), 7.0);
        assert_eq!(ms("ctr run: window"), 41.0);
    }
}
