//! husk against containerd's runc shim with runc, and the same shim with crun, through one
//! private containerd, in one run, interleaved. Prints a table, writes JSON and an SVG chart.
//!
//!   husk-bench [--iterations N] [--out DIR] [--handlers LIST] [--memory-pods LIST]
//!              [--parallel LIST] [--ratios-only WHY]      (see `USAGE`; CI runs a quick N)
//!
//! The test bed takes its containerd, cgroup driver and runtime binaries from the environment
//! (`husk_e2e::env`: `HUSK_CONTAINERD`, `HUSK_CGROUP_DRIVER`, `HUSK_RUNC`, `HUSK_CRUN`), so the
//! same benchmark runs on this host and inside the systemd + cgroup v2 node guest
//! (`husk-node bench`), where pods get kubelet's cgroup parents for that driver.

use husk_e2e::bed::{TestBed, BUSYBOX, SCRATCH};
use husk_e2e::cri::{v1 as cri, Cri};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The handlers the benchmark knows, in the order of every table and chart: husk is measured,
/// runc and crun are the references.
const HANDLERS: [&str; 3] = ["husk", "runc", "crun"];

const USAGE: &str = "usage: husk-bench [OPTIONS]
Starts a private containerd (the test bed, needs root) and measures husk against runc and crun,
interleaved. The environment selects containerd, the cgroup driver and the runtime binaries
(HUSK_CONTAINERD, HUSK_CGROUP_DRIVER=systemd|cgroupfs, HUSK_RUNC, HUSK_CRUN; see e2e/src/env.rs).
  --iterations N        CRI lifecycles and ctr runs per handler (default 100)
  --out DIR             where results.json, p50.svg, memory.svg and containerd.log go
                        (default bench-results)
  --handlers LIST       comma-separated subset of husk,runc,crun; husk is required (default all)
  --memory-pods LIST    running pods at which shim memory is taken (default 1,10,50,100; 1,3
                        below 20 iterations)
  --parallel LIST       CRI clients in parallel for pods/s (default 1,4,16)
  --ratios-only WHY     print ratios instead of absolute times (memory stays in kB), saying WHY
                        (e.g. an emulated CPU, where times are not comparable with anything)";

/// What the command line asked for.
struct Options {
    iterations: usize,
    out_dir: std::path::PathBuf,
    handlers: Vec<&'static str>,
    memory_pods: Option<Vec<usize>>,
    parallel: Vec<usize>,
    ratios_only: Option<String>,
}

fn usage_error(msg: String) -> ! {
    eprintln!("husk-bench: {msg}\n{USAGE}");
    std::process::exit(2)
}

/// A comma-separated list of positive numbers.
fn number_list(flag: &str, v: Option<String>) -> Vec<usize> {
    let list: Option<Vec<usize>> = v.and_then(|v| {
        v.split(',')
            .map(|x| x.trim().parse::<usize>().ok().filter(|n| *n > 0))
            .collect()
    });
    match list {
        Some(l) if !l.is_empty() => l,
        _ => usage_error(format!(
            "{flag} needs a comma-separated list of positive numbers"
        )),
    }
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> Options {
        let mut o = Options {
            iterations: 100,
            out_dir: "bench-results".into(),
            handlers: HANDLERS.to_vec(),
            memory_pods: None,
            parallel: vec![1, 4, 16],
            ratios_only: None,
        };
        while let Some(a) = args.next() {
            match a.as_str() {
                "--iterations" => {
                    o.iterations = match args.next().map(|v| v.parse::<usize>()) {
                        Some(Ok(n)) if n > 0 => n,
                        _ => usage_error("--iterations needs a positive number".into()),
                    }
                }
                "--out" => match args.next() {
                    Some(d) => o.out_dir = d.into(),
                    None => usage_error("--out needs a directory".into()),
                },
                "--handlers" => {
                    let v = args.next().unwrap_or_default();
                    let mut hs = Vec::new();
                    for h in v.split(',').map(str::trim).filter(|h| !h.is_empty()) {
                        match HANDLERS.iter().find(|k| **k == h) {
                            Some(k) if !hs.contains(k) => hs.push(*k),
                            Some(_) => {}
                            None => usage_error(format!(
                                "--handlers: unknown handler {h:?} (husk, runc, crun)"
                            )),
                        }
                    }
                    if !hs.contains(&"husk") {
                        usage_error("--handlers must include husk".into());
                    }
                    // The tables' order, whatever the order given.
                    o.handlers = HANDLERS
                        .iter()
                        .copied()
                        .filter(|h| hs.contains(h))
                        .collect();
                }
                "--memory-pods" => o.memory_pods = Some(number_list(&a, args.next())),
                "--parallel" => o.parallel = number_list(&a, args.next()),
                "--ratios-only" => match args.next() {
                    Some(why) if !why.trim().is_empty() => o.ratios_only = Some(why),
                    _ => usage_error("--ratios-only needs a reason".into()),
                },
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => usage_error(format!("unknown argument {other:?}")),
            }
        }
        o
    }
}

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
    let pod_cfg = bed.pod_config(
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
    let pod_cfg = bed.pod_config(name, &bed.dir.path().join("bench-logs"));
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
    // And between two polls (kubelet's come every 10 s or so), once the shims had a quiet
    // moment again: what a node's shims hold most of the time.
    std::thread::sleep(Duration::from_secs(3));
    let (rss_quiet, pss_quiet, _) = shim_memory(bed);
    for pod in made {
        c.stop_pod(&pod);
        c.remove_pod(&pod);
    }
    result?;
    Ok(json!({
        "pods": pods, "shims": shims, "seconds_to_start": secs,
        "rss_kb_per_pod": rss as f64 / pods as f64, "pss_kb_per_pod": pss as f64 / pods as f64,
        "rss_kb_per_pod_between_polls": rss_quiet as f64 / pods as f64,
        "pss_kb_per_pod_between_polls": pss_quiet as f64 / pods as f64
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
    let pod_cfg = bed.pod_config(
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
    let pod_cfg = bed.pod_config(&format!("log-{handler}"), &logs);
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

/// CPU time in ms (clock ticks of `USER_HZ` = 100, proc(5)): the machine's busy time from
/// `/proc/stat` (user, nice, system, irq, softirq, steal), containerd's own (`utime + stime`
/// of its `/proc/<pid>/stat`) and its reaped children's (`cutime + cstime`: the CNI plugins
/// and the shims' `start` processes it waits for), and this client's.
struct CpuSplit {
    busy: f64,
    containerd: f64,
    containerd_children: f64,
    client: f64,
}

impl CpuSplit {
    fn now(containerd: u32) -> CpuSplit {
        const MS_PER_TICK: f64 = 10.0;
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let busy: f64 = stat
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .enumerate()
            // user nice system idle iowait irq softirq steal: all but idle and iowait.
            .filter(|(i, _)| matches!(i, 0 | 1 | 2 | 5 | 6 | 7))
            .filter_map(|(_, v)| v.parse::<f64>().ok())
            .sum();
        let ms = |ticks: u64| ticks as f64 * MS_PER_TICK;
        let cd = husk_e2e::probe::cpu_ticks(&containerd.to_string()).unwrap_or_default();
        let me = husk_e2e::probe::cpu_ticks("self").unwrap_or_default();
        CpuSplit {
            busy: busy * MS_PER_TICK,
            containerd: ms(cd.own),
            containerd_children: ms(cd.waited_children),
            client: ms(me.own),
        }
    }

    /// CPU ms per pod between `self` (before) and `after`; `rest` is everything else the
    /// machine did: shims, the runtime processes they start, the kernel's threads.
    fn per_pod(&self, after: &CpuSplit, pods: usize) -> Value {
        let d = |a: f64, b: f64| (b - a) / pods as f64;
        let busy = d(self.busy, after.busy);
        let containerd = d(self.containerd, after.containerd);
        let children = d(self.containerd_children, after.containerd_children);
        let client = d(self.client, after.client);
        json!({
            "busy": busy,
            "containerd": containerd,
            "containerd_children": children,
            "client": client,
            "rest": busy - containerd - children - client,
        })
    }
}

/// Pods started per second by `workers` CRI clients in parallel, `per_worker` pods each
/// (sandbox + one running container), then everything removed; and the CPU ms per pod the
/// machine spent while they started (`CpuSplit::per_pod`).
fn pods_per_second(
    bed: &TestBed,
    handler: &str,
    workers: usize,
    per_worker: usize,
) -> Result<(f64, Value), String> {
    let containerd = bed.containerd.as_ref().map(|c| c.id()).unwrap_or(0);
    let cpu_before = CpuSplit::now(containerd);
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
    let cpu = cpu_before.per_pod(&CpuSplit::now(containerd), workers * per_worker);
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
        None => Ok(((workers * per_worker) as f64 / secs, cpu)),
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
    let crun = husk_e2e::env::crun_binary().display().to_string();
    if handler_runtime == "crun" {
        a.push("--runc-binary");
        a.push(&crun);
    }
    // With the systemd driver every runtime gets a `slice:prefix:name` cgroup and makes it a
    // transient scope: runc and crun through the runc shim's `SystemdCgroup` option, husk by
    // its per-container rule (a slice path on a host whose init is systemd).
    let cgroup = format!("system.slice:husk-bench:{id}");
    if bed.driver == Some(husk_e2e::env::CgroupDriver::Systemd) {
        a.extend(["--cgroup", &cgroup]);
        if handler_runtime != "husk" {
            a.push("--runc-systemd-cgroup");
        }
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

/// `a / b` as a ratio column ("0.52x"), empty when either side is missing.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => String::new(),
    }
}

/// The first line of `binary --version`, for the report.
fn version_line(binary: &str) -> String {
    std::process::Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| format!("{binary}: no version"))
}

fn main() {
    let o = Options::parse(std::env::args().skip(1));
    let iterations = o.iterations;
    let handlers: &[&str] = &o.handlers;
    let out_dir = o.out_dir.clone();
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut bed = TestBed::start();
    // Reported with the results below instead of failing at teardown: a benchmark reports.
    bed.forbid_log_lines = false;
    let mut c = bed.cri(&[BUSYBOX]);
    bed.import(BUSYBOX);
    bed.import(SCRATCH);
    let mut s = Samples::default();
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    // Progress on stderr: the report comes at the end, and an emulated guest takes a while.
    let t_all = Instant::now();
    let progress = |what: &str| {
        eprintln!(
            "husk-bench: {what} ({:.0} s)",
            t_all.elapsed().as_secs_f64()
        )
    };
    let live_of = |failures: &BTreeMap<String, String>| -> Vec<&'static str> {
        handlers
            .iter()
            .copied()
            .filter(|h| !failures.contains_key(*h))
            .collect()
    };
    // Warm-up, then interleaved iterations so the machine's drift hits every runtime alike.
    for &h in handlers {
        if let Err(e) = lifecycle(&mut c, &bed, h, 9999, &mut Samples::default()) {
            failures.insert(h.to_string(), e);
        }
    }
    for it in 0..iterations {
        for h in live_of(&failures) {
            if let Err(e) = lifecycle(&mut c, &bed, h, it, &mut s) {
                failures.insert(h.to_string(), e);
            }
        }
    }
    progress("CRI lifecycles done");
    // Where pod start time goes, from containerd's debug log of the iterations above.
    let log = bed.log();
    let mut profile = json!({});
    for &h in handlers {
        let pods: Vec<String> = (0..iterations).map(|i| format!("b-{h}-{i}")).collect();
        for (phase, v) in husk_e2e::profile::pod_start_phases(&log, &pods) {
            profile[phase][h] = stats(&v);
        }
    }
    for it in 0..iterations {
        for h in live_of(&failures) {
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
    progress("ctr runs done");
    // Where a `ctr run --rm` goes (busybox /bin/true), from the log of the runs above.
    let log = bed.log();
    for &h in handlers {
        let ids: Vec<String> = (0..iterations).map(|i| format!("cb-{h}-{i}")).collect();
        for (phase, v) in husk_e2e::profile::ctr_run_phases(&log, &ids) {
            profile[phase][h] = stats(&v);
        }
    }
    let mut memory = json!({});
    let live = live_of(&failures);
    let levels: Vec<usize> = o.memory_pods.clone().unwrap_or_else(|| {
        if iterations >= 20 {
            vec![1, 10, 50, 100]
        } else {
            vec![1, 3]
        }
    });
    for &h in &live {
        for &pods in &levels {
            match memory_per_pod(&mut c, &bed, h, pods) {
                Ok(v) => memory[h][pods.to_string()] = v,
                Err(e) => {
                    failures.insert(format!("{h} memory"), e);
                }
            }
        }
    }
    progress("shim memory done");
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
    progress("cost per container done");
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
    progress("log throughput done");
    let mut throughput = json!({});
    let mut throughput_cpu = json!({});
    let per_worker = if iterations >= 20 { 5 } else { 1 };
    for &workers in &o.parallel {
        for h in live_of(&failures) {
            match pods_per_second(&bed, h, workers, per_worker) {
                Ok((v, cpu)) => {
                    throughput[h][workers.to_string()] = json!(v);
                    throughput_cpu[h][workers.to_string()] = cpu;
                }
                Err(e) => {
                    failures.insert(format!("{h} throughput"), e);
                }
            }
        }
    }
    progress("pods per second done");
    // Report.
    let runc = husk_e2e::env::runc_binary()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "runc".into());
    let machine = json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "containerd": bed.ctr_ok(&["version"]).lines().find(|l| l.contains("Version")).unwrap_or("").trim(),
        "cgroup": if husk_e2e::env::cgroup_v2() { "v2" } else { "v1 (or hybrid)" },
        "cgroup_driver": bed.driver.map(|d| d.name()).unwrap_or("cgroupfs (containerd's default)"),
        "runc": version_line(&runc),
        "crun": version_line(&husk_e2e::env::crun_binary().display().to_string()),
        "load_average": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
    });
    let ro = o.ratios_only.as_deref();
    let mut latency = json!({});
    let whats: Vec<String> =
        s.0.keys()
            .map(|(w, _)| w.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
    for w in &whats {
        for &h in handlers {
            if let Some(v) = s.0.get(&(w.clone(), h.to_string())) {
                latency[w][h] = stats(v);
            }
        }
    }
    // p-quantile `q` of `h` for measurement `w` in `table`.
    let q = |table: &Value, w: &str, h: &str, q: &str| {
        table
            .get(w)
            .and_then(|v| v.get(h))
            .and_then(|s| s[q].as_f64())
    };
    println!(
        "husk-bench: {iterations} iterations per runtime, interleaved; {}; {}, cgroup driver {}",
        machine["containerd"].as_str().unwrap_or(""),
        machine["cgroup"].as_str().unwrap_or(""),
        machine["cgroup_driver"].as_str().unwrap_or("")
    );
    match ro {
        Some(why) => {
            println!("RATIOS ONLY — {why}: absolute times are not reported; memory is in kB\n");
            println!(
                "{:<34} {:>10} {:>10}   {:>10} {:>10}",
                "measurement", "husk/runc", "husk/crun", "p95 h/r", "p95 h/c"
            );
            for w in &whats {
                let r = |other: &str, qq: &str| {
                    ratio(q(&latency, w, "husk", qq), q(&latency, w, other, qq))
                };
                println!(
                    "{:<34} {:>10} {:>10}   {:>10} {:>10}",
                    w,
                    r("runc", "p50"),
                    r("crun", "p50"),
                    r("runc", "p95"),
                    r("crun", "p95")
                );
            }
        }
        None => {
            println!("times in ms\n");
            println!(
                "{:<34} {:>6} {:>9} {:>9} {:>9} {:>9}   {:>10} {:>10}",
                "measurement", "rt", "min", "p50", "p95", "p99", "husk/runc", "husk/crun"
            );
            for w in &whats {
                for &h in handlers {
                    let Some(st) = latency.get(w).and_then(|v| v.get(h)) else {
                        continue;
                    };
                    let r = |other: &str| match h {
                        "husk" => {
                            ratio(q(&latency, w, "husk", "p50"), q(&latency, w, other, "p50"))
                        }
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
                        r("runc"),
                        r("crun")
                    );
                }
            }
        }
    }
    println!(
        "\nwhere pod start, ExecSync and ctr run go ({}, per phase, from containerd's debug log):",
        if ro.is_some() { "p50 ratios" } else { "p50 ms" }
    );
    if let Some(phases) = profile.as_object() {
        for (phase, v) in phases {
            let p50 = |h: &str| v.get(h).and_then(|s| s["p50"].as_f64());
            if ro.is_some() {
                println!(
                    "  {phase:<72} husk/runc {:>7}  husk/crun {:>7}",
                    ratio(p50("husk"), p50("runc")),
                    ratio(p50("husk"), p50("crun"))
                );
            } else {
                let ms = |h: &str| {
                    p50(h)
                        .map(|x| format!("{x:>8.1}"))
                        .unwrap_or_else(|| format!("{:>8}", "-"))
                };
                println!(
                    "  {phase:<72} husk {}  runc {}  crun {}",
                    ms("husk"),
                    ms("runc"),
                    ms("crun")
                );
            }
        }
    }
    println!("\nshim memory per pod (kB), pods started one after the other:");
    for &h in handlers {
        for pods in &levels {
            if let Some(m) = memory.get(h).and_then(|m| m.get(pods.to_string())) {
                let start = match ro {
                    Some(_) => String::new(),
                    None => format!(
                        ", {:.1} s to start them",
                        m["seconds_to_start"].as_f64().unwrap()
                    ),
                };
                println!(
                    "  {h:<5} {pods:>3} pods: RSS {:>8.0}  PSS {:>8.0}  ({} shim processes{start}); \
                     3 s later, between polls: RSS {:>8.0}  PSS {:>8.0}",
                    m["rss_kb_per_pod"].as_f64().unwrap(),
                    m["pss_kb_per_pod"].as_f64().unwrap(),
                    m["shims"],
                    m["rss_kb_per_pod_between_polls"].as_f64().unwrap(),
                    m["pss_kb_per_pod_between_polls"].as_f64().unwrap(),
                );
            }
        }
    }
    for other in ["runc", "crun"] {
        for pods in &levels {
            let kb = |h: &str, k: &str| {
                memory
                    .get(h)
                    .and_then(|m| m.get(pods.to_string()))
                    .and_then(|m| m[k].as_f64())
            };
            if kb(other, "rss_kb_per_pod").is_some() {
                println!(
                    "  husk/{other} {pods:>3} pods: RSS {}  PSS {}",
                    ratio(kb("husk", "rss_kb_per_pod"), kb(other, "rss_kb_per_pod")),
                    ratio(kb("husk", "pss_kb_per_pod"), kb(other, "pss_kb_per_pod"))
                );
            }
        }
    }
    let mut cost_json = json!({});
    for ((what, h), v) in &cost.0 {
        cost_json[what][h] = stats(v);
    }
    println!("\ncost of one container (shim + runtime processes, from a cgroup of their own):");
    if let Some(whats) = cost_json.as_object() {
        for (what, per) in whats {
            for &h in handlers {
                let Some(st) = per.get(h) else { continue };
                let time = what.starts_with("CPU");
                if ro.is_some() && time {
                    continue;
                }
                println!(
                    "  {what:<46} {h:<5} min {:>8.1}  p50 {:>8.1}  p95 {:>8.1}",
                    st["min"].as_f64().unwrap(),
                    st["p50"].as_f64().unwrap(),
                    st["p95"].as_f64().unwrap()
                );
            }
            for other in ["runc", "crun"] {
                let r = ratio(
                    q(&cost_json, what, "husk", "p50"),
                    q(&cost_json, what, other, "p50"),
                );
                if !r.is_empty() {
                    println!("  {what:<46} husk/{other} p50 {r}");
                }
            }
        }
    }
    println!(
        "\nlog throughput ({} MiB of stdout to the CRI log, byte count checked):",
        log_bytes >> 20
    );
    let mbs = |h: &str| logs.get(h).and_then(|v| v["mb_per_s"].as_f64());
    for &h in handlers {
        if let Some(v) = logs.get(h) {
            let rate = match ro {
                Some(_) if h == "husk" => String::new(),
                Some(_) => format!("husk/{h} {}, ", ratio(mbs("husk"), mbs(h))),
                None => format!("{:>8.1} MB/s, ", v["mb_per_s"].as_f64().unwrap()),
            };
            println!(
                "  {h:<5} {rate}{} bytes lost",
                v["lost_bytes"].as_u64().unwrap()
            );
        }
    }
    println!("\npods started per second (sandbox + running container, {per_worker} per worker):");
    for workers in &o.parallel {
        let get = |h: &str| {
            throughput
                .get(h)
                .and_then(|t| t.get(workers.to_string()))
                .and_then(|v| v.as_f64())
        };
        let Some(husk) = get("husk") else { continue };
        let mut line = format!("  {workers:>2} in parallel:");
        if ro.is_none() {
            line += &format!(" husk {husk:6.1}/s");
            for other in ["runc", "crun"] {
                if let Some(v) = get(other) {
                    line += &format!("  {other} {v:6.1}/s");
                }
            }
        }
        for other in ["runc", "crun"] {
            if get(other).is_some() {
                line += &format!("  husk/{other} {}", ratio(Some(husk), get(other)));
            }
        }
        println!("{line}");
    }
    // Where the CPU of those pods went: what saturates pods/s on a small machine.
    println!(
        "CPU ms per pod while they started ({}; rest = shims, runtime processes, kernel threads):",
        if ro.is_some() {
            "busy as a ratio to husk's, the rest as shares of it"
        } else {
            "ms"
        }
    );
    let husk_busy = |workers: &usize| {
        throughput_cpu["husk"][workers.to_string()]["busy"]
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    for workers in &o.parallel {
        for h in handlers {
            let Some(c) = throughput_cpu
                .get(*h)
                .and_then(|t| t.get(workers.to_string()))
            else {
                continue;
            };
            let f = |k: &str| c[k].as_f64().unwrap_or(0.0);
            let show = |k: &str| match ro {
                // Under emulation only ratios and shares mean something.
                Some(_) if k == "busy" => format!("{:>5.2}x", f(k) / husk_busy(workers)),
                Some(_) => format!("{:>5.0} %", 100.0 * f(k) / f("busy").max(1e-9)),
                None => format!("{:>7.1}", f(k)),
            };
            println!(
                "  {workers:>2} in parallel {h:<5} busy {}  containerd {}  its children (CNI, shim start) {}  client {}  rest {}",
                show("busy"),
                show("containerd"),
                show("containerd_children"),
                show("client"),
                show("rest")
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
    let report = json!({"iterations": iterations, "handlers": handlers, "ratios_only": ro, "machine": machine, "latency_ms": latency, "shim_memory": memory, "pods_per_second": throughput, "pods_per_second_cpu_ms_per_pod": throughput_cpu, "container_cost": cost_json, "log_throughput": logs, "pod_start_profile": profile, "not_run": not_run, "failures": failures, "forbidden_log_lines": leftover.len()});
    std::fs::write(
        out_dir.join("results.json"),
        serde_json::to_vec_pretty(&report).unwrap(),
    )
    .unwrap();
    std::fs::write(out_dir.join("p50.svg"), svg(&latency, ro.is_some())).unwrap();
    std::fs::write(out_dir.join("memory.svg"), memory_svg(&memory, &levels)).unwrap();
    // The phases above are cut from it; kept so an odd figure can be looked into afterwards.
    std::fs::write(out_dir.join("containerd.log"), bed.log()).unwrap();
    println!(
        "\nwrote results.json, p50.svg, memory.svg and containerd.log in {}",
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

/// A grouped bar chart of p50 latency per measurement and runtime; with `relative`, each p50
/// divided by runc's (husk's when runc did not run), for runs whose absolute times mean nothing.
fn svg(latency: &Value, relative: bool) -> String {
    let rows: Vec<(String, Vec<Option<f64>>)> = latency
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(name, v)| {
                    let p50 = |h: &str| v.get(h).and_then(|s| s["p50"].as_f64());
                    let base = if relative {
                        p50("runc").or(p50("husk")).filter(|b| *b > 0.0)
                    } else {
                        Some(1.0)
                    };
                    let cell = |h: &str| Some(p50(h)? / base?);
                    (name.clone(), HANDLERS.iter().map(|h| cell(h)).collect())
                })
                .collect()
        })
        .unwrap_or_default();
    let title = if relative {
        "p50 latency relative to runc (runc = 1), lower is better"
    } else {
        "p50 latency (ms), lower is better"
    };
    bar_chart(title, &rows)
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
                // Two decimals for ratios (relative charts), one for ms and kB.
                let label = if max <= 10.0 {
                    format!("{p:.2}")
                } else {
                    format!("{p:.1}")
                };
                out.push_str(&format!(r#"<rect x="{left}" y="{y}" width="{w:.1}" height="{}" fill="{c}"/><text x="{}" y="{}">{label}</text>"#, bar_h - 2.0, left + w + 4.0, y + bar_h - 3.0));
            }
        }
    }
    out.push_str("</svg>\n");
    out
}
