//! husk against containerd's runc shim with runc, and the same shim with crun, through one
//! private containerd, in one run, interleaved. Prints a table, writes JSON and an SVG chart.
//!
//!   husk-bench [--iterations N] [--out DIR]      (N defaults to 100; CI runs a quick N)

use husk_e2e::bed::{TestBed, BUSYBOX, SCRATCH};
use husk_e2e::cri::{v1 as cri, Cri};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const HANDLERS: [&str; 3] = ["husk", "runc", "crun"];

#[derive(Default)]
struct Samples(BTreeMap<(String, String), Vec<f64>>);

impl Samples {
    fn add(&mut self, handler: &str, what: &str, ms: f64) {
        self.0
            .entry((what.to_string(), handler.to_string()))
            .or_default()
            .push(ms);
    }
}

fn stats(v: &[f64]) -> Value {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let q = |p: f64| s[((s.len() as f64 - 1.0) * p).round() as usize];
    json!({"n": s.len(), "min": s[0], "p50": q(0.5), "p95": q(0.95), "p99": q(0.99)})
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed().as_secs_f64() * 1000.0)
}

/// One pod with one container through the whole CRI lifecycle, every call timed.
fn lifecycle(
    c: &mut Cri,
    bed: &TestBed,
    handler: &str,
    i: usize,
    s: &mut Samples,
) -> Result<(), String> {
    let pod_cfg = Cri::pod_config(
        &format!("b-{handler}-{i}"),
        &bed.dir.path().join("bench-logs"),
    );
    let t0 = Instant::now();
    let req = cri::RunPodSandboxRequest {
        config: Some(pod_cfg.clone()),
        runtime_handler: handler.into(),
    };
    let (pod, ms) = timed(|| c.call(|mut r| async move { r.run_pod_sandbox(req).await }));
    let pod = pod
        .map_err(|e| format!("RunPodSandbox: {}", e.message()))?
        .pod_sandbox_id;
    s.add(handler, "RunPodSandbox", ms);
    let cfg = Cri::container_config("app", BUSYBOX, &["sleep", "1000"]);
    let (id, ms) = timed(|| c.create_container(&pod, &cfg, &pod_cfg));
    let id = id.map_err(|e| format!("CreateContainer: {}", e.message()))?;
    s.add(handler, "CreateContainer", ms);
    let (r, ms) = timed(|| c.start_container(&id));
    r.map_err(|e| format!("StartContainer: {}", e.message()))?;
    s.add(handler, "StartContainer", ms);
    s.add(
        handler,
        "pod start-to-running",
        t0.elapsed().as_secs_f64() * 1000.0,
    );
    let (r, ms) = timed(|| c.exec_sync(&id, &["/bin/true"], 10));
    r.map_err(|e| format!("ExecSync: {}", e.message()))?;
    s.add(handler, "ExecSync /bin/true", ms);
    let (_, ms) = timed(|| c.stop_container(&id, 0));
    s.add(handler, "StopContainer", ms);
    let (_, ms) = timed(|| c.remove_container(&id));
    s.add(handler, "RemoveContainer", ms);
    let (_, ms) = timed(|| c.stop_pod(&pod));
    s.add(handler, "StopPodSandbox", ms);
    let (_, ms) = timed(|| c.remove_pod(&pod));
    s.add(handler, "RemovePodSandbox", ms);
    Ok(())
}

/// RSS and PSS (kB) of every shim process serving this test bed.
fn shim_memory(bed: &TestBed) -> (u64, u64, usize) {
    let addr = bed.socket().display().to_string();
    let (mut rss, mut pss, mut n) = (0, 0, 0);
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let p = e.path();
        let Ok(cmd) = std::fs::read(p.join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        if !(cmd.contains("containerd-shim") && cmd.contains(&addr)) {
            continue;
        }
        let roll = std::fs::read_to_string(p.join("smaps_rollup")).unwrap_or_default();
        let kb = |k: &str| {
            roll.lines()
                .find(|l| l.starts_with(k))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        rss += kb("Rss:");
        pss += kb("Pss:");
        n += 1;
    }
    (rss, pss, n)
}

/// A pod on `handler` with one running `sleep` container; its sandbox id.
fn start_sleeping_pod(
    c: &mut Cri,
    bed: &TestBed,
    handler: &str,
    name: &str,
) -> Result<String, String> {
    let pod_cfg = Cri::pod_config(name, &bed.dir.path().join("bench-logs"));
    let req = cri::RunPodSandboxRequest {
        config: Some(pod_cfg.clone()),
        runtime_handler: handler.into(),
    };
    let pod = c
        .call(|mut r| async move { r.run_pod_sandbox(req).await })
        .map_err(|e| e.message().to_string())?
        .pod_sandbox_id;
    let id = c
        .create_container(
            &pod,
            &Cri::container_config("app", BUSYBOX, &["sleep", "1000"]),
            &pod_cfg,
        )
        .map_err(|e| e.message().to_string())?;
    c.start_container(&id)
        .map_err(|e| e.message().to_string())?;
    Ok(pod)
}

/// Starts `pods` pods one after the other (density), then sums the shims' memory.
fn memory_per_pod(c: &mut Cri, bed: &TestBed, handler: &str, pods: usize) -> Result<Value, String> {
    let mut made = Vec::new();
    let t = Instant::now();
    let mut result = Ok(());
    for i in 0..pods {
        match start_sleeping_pod(c, bed, handler, &format!("m-{handler}-{pods}-{i}")) {
            Ok(pod) => made.push(pod),
            Err(e) => {
                result = Err(format!("pod {i} of {pods}: {e}"));
                break;
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    // Measured as a node sees its pods just after one of kubelet's stats polls: the shims
    // have settled (husk's trim their resident set when idle) and then served a stats call,
    // whose code is part of a shim's working set.
    std::thread::sleep(Duration::from_secs(3));
    let _ = c.call(|mut r| async move {
        r.list_container_stats(cri::ListContainerStatsRequest { filter: None })
            .await
    });
    std::thread::sleep(Duration::from_millis(300));
    let (rss, pss, shims) = shim_memory(bed);
    for pod in made {
        c.stop_pod(&pod);
        c.remove_pod(&pod);
    }
    result?;
    Ok(json!({
        "pods": pods, "shims": shims, "seconds_to_start": secs,
        "rss_kb_per_pod": rss as f64 / pods as f64, "pss_kb_per_pod": pss as f64 / pods as f64
    }))
}

/// CPU time (user+sys) and peak memory of a pod's shim and the runtime processes it starts,
/// over one container's lifecycle (create, start, stop, remove) in a running pod: the shim is
/// moved into a cgroup of its own first, so its children are charged there too.
fn container_cost(
    c: &mut Cri,
    bed: &TestBed,
    handler: &str,
    i: usize,
) -> Result<(f64, f64), String> {
    let pod_cfg = Cri::pod_config(
        &format!("cost-{handler}-{i}"),
        &bed.dir.path().join("bench-logs"),
    );
    let pod = c.run_pod(&pod_cfg, handler);
    let shim = husk_e2e::probe::shim_of(&bed.socket(), &pod)
        .ok_or_else(|| format!("no shim process found for pod {pod}"))?;
    let cg = husk_e2e::probe::ProbeCgroup::new(&format!(
        "husk-bench-{}-{handler}-{i}",
        std::process::id()
    ))?;
    let measured = (|| {
        cg.adopt(shim)?;
        let cpu0 = cg.cpu_ns()?;
        cg.reset_peak()?;
        let mem0 = cg.memory()?;
        let cfg = Cri::container_config("app", BUSYBOX, &["sleep", "1000"]);
        let id = c
            .create_container(&pod, &cfg, &pod_cfg)
            .map_err(|e| format!("CreateContainer: {}", e.message()))?;
        c.start_container(&id)
            .map_err(|e| format!("StartContainer: {}", e.message()))?;
        let peak = cg.peak()?;
        c.stop_container(&id, 0);
        c.remove_container(&id);
        let cpu1 = cg.cpu_ns()?;
        Ok((
            (cpu1 - cpu0) as f64 / 1e6,
            peak.saturating_sub(mem0) as f64 / 1024.0,
        ))
    })();
    cg.release(shim);
    c.stop_pod(&pod);
    c.remove_pod(&pod);
    measured
}

/// MB/s of container stdout reaching the CRI log file (`bytes` bytes in 1 KiB lines, timed from
/// StartContainer to the container's exit), and how many bytes never arrived: a measurement,
/// not a failure (containerd 1.6 drops the tail of a fast writer with runc); more bytes than
/// were written is an error.
fn log_throughput(
    c: &mut Cri,
    bed: &TestBed,
    handler: &str,
    bytes: usize,
) -> Result<(f64, usize), String> {
    let logs = bed.dir.path().join(format!("bench-logs-{handler}"));
    let pod_cfg = Cri::pod_config(&format!("log-{handler}"), &logs);
    let pod = c.run_pod(&pod_cfg, handler);
    let script = format!("head -c {bytes} /dev/zero | tr '\\0' a | fold -w 1023");
    let cfg = Cri::container_config("writer", BUSYBOX, &["sh", "-c", &script]);
    let id = c
        .create_container(&pod, &cfg, &pod_cfg)
        .map_err(|e| format!("CreateContainer: {}", e.message()))?;
    let t = Instant::now();
    c.start_container(&id)
        .map_err(|e| format!("StartContainer: {}", e.message()))?;
    let st = c.wait_exited(&id);
    let secs = t.elapsed().as_secs_f64();
    let path = logs.join("writer.log");
    // Count the payload: every stdout line's text after "<time> stdout <P|F> ".
    let count = || -> (usize, usize) {
        let data = std::fs::read(&path).unwrap_or_default();
        let (mut payload, mut lines) = (0, 0);
        for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let mut f = line.splitn(4, |b| *b == b' ');
            let (_, stream, _, text) = (f.next(), f.next(), f.next(), f.next().unwrap_or(&[]));
            if stream == Some(b"stdout".as_slice()) {
                payload += text.iter().filter(|b| **b == b'a').count();
                lines += 1;
            }
        }
        (payload, lines)
    };
    let mut got = count();
    let settle = Instant::now();
    while got.0 < bytes && settle.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        got = count();
    }
    c.remove_container(&id);
    c.stop_pod(&pod);
    c.remove_pod(&pod);
    if st.exit_code != 0 {
        return Err(format!("log writer exited {}", st.exit_code));
    }
    if got.0 > bytes || got.1 > bytes.div_ceil(1023) {
        return Err(format!(
            "log holds {} of {bytes} bytes in {} lines: more than was written",
            got.0, got.1
        ));
    }
    Ok((bytes as f64 / 1e6 / secs, bytes - got.0))
}

/// Pods started per second with `workers` clients in parallel, each starting `per_worker` pods
/// (sandbox + one running container), then everything removed.
fn pods_per_second(
    bed: &TestBed,
    handler: &str,
    workers: usize,
    per_worker: usize,
) -> Result<f64, String> {
    let t = Instant::now();
    let results: Vec<Result<Vec<String>, String>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || {
                    let mut c = Cri::connect(&bed.socket());
                    let mut pods = Vec::new();
                    for i in 0..per_worker {
                        let pod = start_sleeping_pod(
                            &mut c,
                            bed,
                            handler,
                            &format!("t-{handler}-{workers}-{w}-{i}"),
                        )?;
                        pods.push(pod);
                    }
                    Ok(pods)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let secs = t.elapsed().as_secs_f64();
    let mut c = Cri::connect(&bed.socket());
    let mut err = None;
    for r in results {
        match r {
            Ok(pods) => {
                for p in pods {
                    c.stop_pod(&p);
                    c.remove_pod(&p);
                }
            }
            Err(e) => err = Some(e),
        }
    }
    match err {
        Some(e) => Err(e),
        None => Ok((workers * per_worker) as f64 / secs),
    }
}

fn ctr_run(
    bed: &TestBed,
    handler_runtime: &str,
    image: &str,
    args: &[&str],
    id: &str,
) -> Result<f64, String> {
    let rt = match handler_runtime {
        "husk" => "io.containerd.husk.v2",
        _ => "io.containerd.runc.v2",
    };
    let mut a = vec!["run", "--rm", "--runtime", rt];
    if handler_runtime == "crun" {
        a.push("--runc-binary");
        a.push("/usr/bin/crun");
    }
    a.push(image);
    a.push(id);
    a.extend_from_slice(args);
    let (out, ms) = timed(|| bed.ctr(&a));
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(ms)
}

fn main() {
    const USAGE: &str = "usage: husk-bench [--iterations N (default 100)] [--out DIR (default bench-results)]\n\
         Starts a private containerd (the test bed, needs root) and measures husk against runc and crun.";
    let mut iterations = 100usize;
    let mut out_dir = std::path::PathBuf::from("bench-results");
    let mut args = std::env::args().skip(1);
    let usage_error = |msg: String| -> ! {
        eprintln!("husk-bench: {msg}\n{USAGE}");
        std::process::exit(2)
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--iterations" => {
                iterations = match args.next().map(|v| v.parse::<usize>()) {
                    Some(Ok(n)) if n > 0 => n,
                    _ => usage_error("--iterations needs a positive number".into()),
                }
            }
            "--out" => match args.next() {
                Some(d) => out_dir = d.into(),
                None => usage_error("--out needs a directory".into()),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => usage_error(format!("unknown argument {other:?}")),
        }
    }
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut bed = TestBed::start();
    // Reported with the results below instead of failing at teardown: a benchmark reports.
    bed.forbid_log_lines = false;
    let mut c = bed.cri(&[BUSYBOX]);
    bed.import(BUSYBOX);
    bed.import(SCRATCH);
    let mut s = Samples::default();
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    // Warm-up, then interleaved iterations so the machine's drift hits every runtime alike.
    for h in HANDLERS {
        if let Err(e) = lifecycle(&mut c, &bed, h, 9999, &mut Samples::default()) {
            failures.insert(h.to_string(), e);
        }
    }
    for it in 0..iterations {
        let live: Vec<&str> = HANDLERS
            .iter()
            .copied()
            .filter(|h| !failures.contains_key(*h))
            .collect();
        for h in live {
            if let Err(e) = lifecycle(&mut c, &bed, h, it, &mut s) {
                failures.insert(h.to_string(), e);
            }
        }
    }
    // Where pod start time goes, from containerd's debug log of the iterations above.
    let log = bed.log();
    let mut profile = json!({});
    for h in HANDLERS {
        let pods: Vec<String> = (0..iterations).map(|i| format!("b-{h}-{i}")).collect();
        for (phase, v) in husk_e2e::profile::pod_start_phases(&log, &pods) {
            profile[phase][h] = stats(&v);
        }
    }
    for it in 0..iterations {
        let live: Vec<&str> = HANDLERS
            .iter()
            .copied()
            .filter(|h| !failures.contains_key(*h))
            .collect();
        for h in live {
            match ctr_run(&bed, h, SCRATCH, &[], &format!("cs-{h}-{it}")) {
                Ok(ms) => s.add(h, "ctr run --rm scratch hello", ms),
                Err(e) => {
                    failures.insert(format!("{h} ctr scratch"), e);
                }
            }
            match ctr_run(&bed, h, BUSYBOX, &["/bin/true"], &format!("cb-{h}-{it}")) {
                Ok(ms) => s.add(h, "ctr run --rm busybox /bin/true", ms),
                Err(e) => {
                    failures.insert(format!("{h} ctr busybox"), e);
                }
            }
        }
    }
    let mut memory = json!({});
    let live: Vec<&str> = HANDLERS
        .iter()
        .copied()
        .filter(|h| !failures.contains_key(*h))
        .collect();
    let levels: &[usize] = if iterations >= 20 {
        &[1, 10, 50, 100]
    } else {
        &[1, 3]
    };
    for &h in &live {
        for &pods in levels {
            match memory_per_pod(&mut c, &bed, h, pods) {
                Ok(v) => memory[h][pods.to_string()] = v,
                Err(e) => {
                    failures.insert(format!("{h} memory"), e);
                }
            }
        }
    }
    // Cost of one container lifecycle, interleaved.
    let mut cost = Samples::default();
    for it in 0..(iterations / 5).max(2) {
        for &h in &live {
            match container_cost(&mut c, &bed, h, it) {
                Ok((cpu_ms, peak_kb)) => {
                    cost.add(h, "CPU ms, shim+runtime, per container lifecycle", cpu_ms);
                    cost.add(h, "peak kB, shim+runtime, creating a container", peak_kb);
                }
                Err(e) => {
                    failures.insert(format!("{h} cost"), e);
                }
            }
        }
    }
    let log_bytes = if iterations >= 20 { 64 << 20 } else { 4 << 20 };
    let mut logs = json!({});
    for &h in &live {
        match log_throughput(&mut c, &bed, h, log_bytes) {
            Ok((v, lost)) => {
                logs[h] = json!({"bytes": log_bytes, "mb_per_s": v, "lost_bytes": lost})
            }
            Err(e) => {
                failures.insert(format!("{h} log throughput"), e);
            }
        }
    }
    let mut throughput = json!({});
    let per_worker = if iterations >= 20 { 5 } else { 1 };
    for workers in [1usize, 4, 16] {
        let live: Vec<&str> = HANDLERS
            .iter()
            .copied()
            .filter(|h| !failures.contains_key(*h))
            .collect();
        for h in live {
            match pods_per_second(&bed, h, workers, per_worker) {
                Ok(v) => throughput[h][workers.to_string()] = json!(v),
                Err(e) => {
                    failures.insert(format!("{h} throughput"), e);
                }
            }
        }
    }
    // Report.
    let machine = json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "containerd": bed.ctr_ok(&["version"]).lines().find(|l| l.contains("Version")).unwrap_or("").trim(),
    });
    let mut latency = json!({});
    println!("husk-bench: {iterations} iterations per runtime, interleaved; times in ms\n");
    println!(
        "{:<34} {:>6} {:>9} {:>9} {:>9} {:>9}   {:>10} {:>10}",
        "measurement", "rt", "min", "p50", "p95", "p99", "husk/runc", "husk/crun"
    );
    let whats: Vec<String> =
        s.0.keys()
            .map(|(w, _)| w.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
    for w in &whats {
        let p50 = |h: &str| {
            s.0.get(&(w.clone(), h.to_string()))
                .map(|v| stats(v)["p50"].as_f64().unwrap())
        };
        for h in HANDLERS {
            let Some(v) = s.0.get(&(w.clone(), h.to_string())) else {
                continue;
            };
            let st = stats(v);
            latency[w][h] = st.clone();
            let ratio = |other: &str| match (p50("husk"), p50(other)) {
                (Some(a), Some(b)) if h == "husk" && b > 0.0 => format!("{:.2}x", a / b),
                _ => String::new(),
            };
            println!(
                "{:<34} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>9.2}   {:>10} {:>10}",
                w,
                h,
                st["min"].as_f64().unwrap(),
                st["p50"].as_f64().unwrap(),
                st["p95"].as_f64().unwrap(),
                st["p99"].as_f64().unwrap(),
                ratio("runc"),
                ratio("crun")
            );
        }
    }
    println!("\nwhere pod start goes (p50 ms per phase, from containerd's debug log):");
    if let Some(phases) = profile.as_object() {
        for (phase, v) in phases {
            let p50 = |h: &str| {
                v.get(h)
                    .and_then(|s| s["p50"].as_f64())
                    .map(|x| format!("{x:>8.1}"))
                    .unwrap_or_else(|| format!("{:>8}", "-"))
            };
            println!("  {phase:<72} husk {}  runc {}", p50("husk"), p50("runc"));
        }
    }
    println!("\nshim memory per pod (kB), pods started one after the other:");
    for h in HANDLERS {
        for pods in levels {
            if let Some(m) = memory.get(h).and_then(|m| m.get(pods.to_string())) {
                println!(
                    "  {h:<5} {pods:>3} pods: RSS {:>8.0}  PSS {:>8.0}  ({} shim processes, {:.1} s to start them)",
                    m["rss_kb_per_pod"].as_f64().unwrap(),
                    m["pss_kb_per_pod"].as_f64().unwrap(),
                    m["shims"],
                    m["seconds_to_start"].as_f64().unwrap(),
                );
            }
        }
    }
    let mut cost_json = json!({});
    println!("\ncost of one container (shim + runtime processes, from a cgroup of their own):");
    for ((what, h), v) in &cost.0 {
        let st = stats(v);
        println!(
            "  {what:<46} {h:<5} min {:>8.1}  p50 {:>8.1}  p95 {:>8.1}",
            st["min"].as_f64().unwrap(),
            st["p50"].as_f64().unwrap(),
            st["p95"].as_f64().unwrap()
        );
        cost_json[what][h] = st;
    }
    println!(
        "\nlog throughput ({} MiB of stdout to the CRI log, byte count checked):",
        log_bytes >> 20
    );
    for h in HANDLERS {
        if let Some(v) = logs.get(h) {
            println!(
                "  {h:<5} {:>8.1} MB/s, {} bytes lost",
                v["mb_per_s"].as_f64().unwrap(),
                v["lost_bytes"].as_u64().unwrap()
            );
        }
    }
    println!("\npods started per second (sandbox + running container, {per_worker} per worker):");
    for workers in ["1", "4", "16"] {
        let get = |h: &str| {
            throughput
                .get(h)
                .and_then(|t| t.get(workers))
                .and_then(|v| v.as_f64())
        };
        if let (Some(h), Some(r)) = (get("husk"), get("runc")) {
            println!(
                "  {workers:>2} in parallel: husk {h:6.1}/s  runc {r:6.1}/s  husk/runc {:.2}x",
                h / r
            );
        }
    }
    let (not_run, failures): (BTreeMap<String, String>, BTreeMap<String, String>) = failures
        .into_iter()
        .partition(|(k, v)| not_run_reason(k, v).is_some());
    for (k, v) in &not_run {
        println!(
            "{k}: not run ({})",
            not_run_reason(k, v).unwrap_or_default()
        );
    }
    for (k, v) in &failures {
        println!("FAILED {k}: {v}");
    }
    let leftover = bed.forbidden_log_lines();
    if !leftover.is_empty() {
        println!(
            "FAILED containerd's log: {} forbidden line(s), first: {}",
            leftover.len(),
            leftover[0]
        );
    }
    let report = json!({"iterations": iterations, "machine": machine, "latency_ms": latency, "shim_memory": memory, "pods_per_second": throughput, "container_cost": cost_json, "log_throughput": logs, "pod_start_profile": profile, "not_run": not_run, "failures": failures, "forbidden_log_lines": leftover.len()});
    std::fs::write(
        out_dir.join("results.json"),
        serde_json::to_vec_pretty(&report).unwrap(),
    )
    .unwrap();
    std::fs::write(out_dir.join("p50.svg"), svg(&latency)).unwrap();
    std::fs::write(out_dir.join("memory.svg"), memory_svg(&memory, levels)).unwrap();
    println!(
        "\nwrote results.json, p50.svg and memory.svg in {}",
        out_dir.display()
    );
}

/// Why a runtime was not measured at all, when that is the runtime's own refusal of this host
/// rather than a failure: crun refuses hosts that mount cgroup v1 controllers next to a
/// cgroup2 hierarchy ("cgroups in hybrid mode not supported").
fn not_run_reason(key: &str, error: &str) -> Option<&'static str> {
    (key.starts_with("crun") && error.contains("hybrid mode not supported"))
        .then_some("refuses hybrid cgroup hosts")
}

/// A grouped bar chart of p50 latency per measurement and runtime.
fn svg(latency: &Value) -> String {
    let rows: Vec<(String, Vec<Option<f64>>)> = latency
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(name, v)| {
                    let p50 = |h: &str| v.get(h).and_then(|s| s["p50"].as_f64());
                    (name.clone(), HANDLERS.iter().map(|h| p50(h)).collect())
                })
                .collect()
        })
        .unwrap_or_default();
    bar_chart("p50 latency (ms), lower is better", &rows)
}

/// Shim memory per pod (PSS and RSS) at each number of running pods.
fn memory_svg(memory: &Value, levels: &[usize]) -> String {
    let mut rows = Vec::new();
    for (key, label) in [("pss_kb_per_pod", "PSS"), ("rss_kb_per_pod", "RSS")] {
        for pods in levels {
            let get = |h: &str| {
                memory
                    .get(h)
                    .and_then(|m| m.get(pods.to_string()))
                    .and_then(|m| m[key].as_f64())
            };
            rows.push((
                format!("{label}, {pods} pods"),
                HANDLERS.iter().map(|h| get(h)).collect(),
            ));
        }
    }
    bar_chart("shim memory per pod (kB), lower is better", &rows)
}

/// Horizontal grouped bars: one group per row, one bar per handler (in `HANDLERS` order).
fn bar_chart(title: &str, rows: &[(String, Vec<Option<f64>>)]) -> String {
    let colors = ["#2a9d8f", "#e76f51", "#8d99ae"];
    let max = rows
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().copied())
        .fold(1.0f64, f64::max);
    let (left, bar_h, gap, width) = (250.0, 12.0, 10.0, 520.0);
    let group = HANDLERS.len() as f64 * bar_h + gap;
    let height = 40.0 + rows.len() as f64 * group;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="11">"#,
        left + width + 80.0
    );
    out.push_str(&format!(
        r#"<text x="10" y="18" font-size="13">{title}</text>"#
    ));
    for (i, (h, c)) in HANDLERS.iter().zip(colors).enumerate() {
        out.push_str(&format!(r#"<rect x="{}" y="8" width="10" height="10" fill="{c}"/><text x="{}" y="17">{h}</text>"#, 320.0 + i as f64 * 70.0, 334.0 + i as f64 * 70.0));
    }
    for (r, (name, values)) in rows.iter().enumerate() {
        let y0 = 30.0 + r as f64 * group;
        out.push_str(&format!(
            r#"<text x="10" y="{}">{name}</text>"#,
            y0 + 1.6 * bar_h
        ));
        for (k, (v, c)) in values.iter().zip(colors).enumerate() {
            if let Some(p) = v {
                let w = p / max * width;
                let y = y0 + k as f64 * bar_h;
                out.push_str(&format!(r#"<rect x="{left}" y="{y}" width="{w:.1}" height="{}" fill="{c}"/><text x="{}" y="{}">{p:.1}</text>"#, bar_h - 2.0, left + w + 4.0, y + bar_h - 3.0));
            }
        }
    }
    out.push_str("</svg>\n");
    out
}
