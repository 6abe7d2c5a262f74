//! Where a pod's start time goes, read from the test bed's containerd debug log. containerd
//! logs each step of RunPodSandbox and StartContainer (CNI setup, the shim coming up, task
//! events), and both shims log the moment they serve, so the same markers split the time for
//! every handler without instrumenting either runtime.

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
/// in RunPodSandbox's metadata). Each pod's first StartContainer after its sandbox counts.
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
        if let Some(sc) = block(rest, "StartContainer for", "returns successfully") {
            split(&sc, START_CONTAINER, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
"#;
        let p = pod_start_phases(log, &["p1".to_string(), "absent".to_string()]);
        let ms = |k: &str| {
            let v = p.iter().find(|(n, _)| n.starts_with(k)).unwrap().1;
            assert_eq!(v.len(), 1);
            (v[0] * 1000.0).round() / 1000.0
        };
        assert_eq!(ms("RunPodSandbox: containerd (sandbox"), 10.0);
        assert_eq!(ms("RunPodSandbox: CNI"), 30.0);
        assert_eq!(ms("RunPodSandbox: shim start"), 5.0);
        assert_eq!(ms("RunPodSandbox: task create"), 5.0);
        assert_eq!(ms("RunPodSandbox: task start"), 2.0);
        assert_eq!(ms("RunPodSandbox: containerd (after"), 1.0);
        assert_eq!(ms("StartContainer: containerd + task create"), 5.0);
        assert_eq!(ms("StartContainer: task start"), 1.0);
        assert_eq!(ms("StartContainer: containerd (after"), 2.0);
    }
}
