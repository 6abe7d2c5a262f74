//! The guest stage of the README's test command: the shim suite (`tests/ctr_shim.rs`) and the
//! CRI suite (`tests/cri*.rs`) — the same test binaries the host stage runs — run inside the
//! node guest against its containerd, on husk and on runc, over a matrix of containerd lines
//! and cgroup drivers. Each cell gets a fresh guest (restored from the warm state), so nothing
//! one cell leaves behind reaches the next.
//!
//! The default matrix runs every scenario at least once on husk and on runc (the CRI suite
//! compares them scenario by scenario), both cgroup drivers and both containerd lines (1.x, 2.x);
//! `--full` runs the cross product (and sid's runc as the reference once). The output says
//! what ran where; the summary lists every failure with its first lines, attributed to the
//! handler that failed.

use super::NodeVm;
use crate::env::CgroupDriver;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The CRI suite's test binaries.
pub const CRI: &[&str] = &[
    "cri",
    "cri_security",
    "cri_namespaces",
    "cri_storage",
    "cri_streaming",
];
/// The shim suite's test binary.
pub const SHIM: &[&str] = &["ctr_shim"];
/// User-namespaced pods and the runtime features containerd reads (containerd 2.x only).
pub const USERNS: &[&str] = &["cri_userns"];

/// containerd lines in the guest: (short name, binary).
pub const CONTAINERD: &[(&str, &str)] = &[
    ("1.6", "/opt/containerd-1.6/usr/bin/containerd"),
    ("1.7", "/usr/bin/containerd"),
    ("2.x", "/opt/containerd-2/usr/bin/containerd"),
];
/// sid's runc, the current-runc reference.
pub const RUNC_SID: &str = "/opt/runc-sid/usr/sbin/runc";

/// One run of some suite binaries in a fresh guest.
#[derive(Clone, Debug)]
pub struct Cell {
    pub binaries: &'static [&'static str],
    /// containerd line (a key of `CONTAINERD`).
    pub containerd: &'static str,
    pub driver: CgroupDriver,
    /// CRI suite: the handlers (`HUSK_E2E_HANDLERS`); shim suite: the ctr runtime.
    pub handlers: &'static str,
    /// The runc binary of handler `runc` (`HUSK_RUNC`), when not the guest's packaged one.
    pub runc: Option<&'static str>,
}

impl Cell {
    fn suite(&self) -> String {
        if self.binaries == SHIM {
            "shim suite".into()
        } else if self.binaries == CRI {
            "CRI suite".into()
        } else if self.binaries == USERNS {
            "CRI user namespaces".into()
        } else {
            format!("CRI ({})", self.binaries.join(", "))
        }
    }

    pub fn name(&self) -> String {
        format!(
            "{} | containerd {} | {} driver | {}{}",
            self.suite(),
            self.containerd,
            self.driver.name(),
            self.handlers,
            self.runc.map(|_| " (runc: sid's)").unwrap_or("")
        )
    }

    fn containerd_bin(&self) -> &'static str {
        CONTAINERD
            .iter()
            .find(|c| c.0 == self.containerd)
            .map(|c| c.1)
            .unwrap()
    }

    /// What the guest needs before this cell runs, and why.
    fn setup(&self) -> Option<(&'static str, &'static str)> {
        // AppArmor 4 (trixie) confines /usr/sbin/runc in a profile named `runc`, and the
        // container profile containerd generates accepts signals only from unconfined peers
        // until containerd#10123 (1.6.32, 1.7.17): with bookworm's 1.6.20 every `runc kill`
        // fails with "unable to signal init: permission denied". A node running 1.6 on
        // AppArmor 4 has to unload that profile, so this cell does.
        (self.containerd == "1.6").then_some((
            "containerd 1.6.20 predates containerd#10123: AppArmor 4's `runc` profile is unloaded for this cell",
            "apparmor_parser -R /etc/apparmor.d/runc",
        ))
    }

    /// The environment the suite binaries get (see `crate::env`).
    fn env(&self) -> Vec<(String, String)> {
        let mut e = vec![
            ("HUSK_CONTAINERD".into(), self.containerd_bin().into()),
            ("HUSK_CGROUP_DRIVER".into(), self.driver.name().into()),
            (
                "HUSK_IMAGE_DIR".into(),
                format!("{}/images", super::GUEST_OUT),
            ),
            ("RUST_BACKTRACE".into(), "0".into()),
            // 2 million lines per flood take ~10 min per cell under emulation.
            ("HUSK_E2E_FLOOD_LINES".into(), "200000".into()),
        ];
        if self.binaries == SHIM {
            e.push(("HUSK_E2E_RUNTIME".into(), self.handlers.into()));
        } else {
            e.push(("HUSK_E2E_HANDLERS".into(), self.handlers.into()));
        }
        if let Some(r) = self.runc {
            e.push(("HUSK_RUNC".into(), r.into()));
        }
        e
    }
}

const HUSK_SHIM: &str = "io.containerd.husk.v2";
const RUNC_SHIM: &str = "io.containerd.runc.v2";
const BOTH: &str = "runc,husk";

/// The CRI suite in two parts of about equal time under emulation, so the default matrix runs
/// each scenario once per handler.
pub const CRI_A: &[&str] = &["cri", "cri_security", "cri_streaming"];
pub const CRI_B: &[&str] = &["cri_namespaces", "cri_storage"];

/// The default matrix, sized for the test command's time budget (CI: 90 min on 2 cores, the
/// guest under TCG): every CRI scenario once on runc and husk side by side — the first part
/// with the systemd driver on containerd 1.7 (trixie's), the second with cgroupfs on 2.x —,
/// and the shim suite on husk and on runc on 1.7. containerd 1.6, the other driver of each part
/// and the user-namespaced pods (2.x, sid's runc as the idmapping reference) run with `--full`:
/// there containerd 2.1.9's runc shim closed its ttrpc connection at StopContainer of a
/// user-namespaced pod with runc 1.3.6 (the reference fails, husk passes); the host stage runs
/// `cri_userns` on containerd 2.x, asserting the behaviour itself. (With the systemd driver on containerd 2.1.9, containerd's runc shim closed
/// its ttrpc connection at StopContainer after a terminal exec and in user-namespaced pods —
/// with runc 1.1 and 1.3 alike — so those reference runs would fail on runc's side.)
pub fn default_cells() -> Vec<Cell> {
    use CgroupDriver::*;
    vec![
        cell(CRI_A, "1.7", Systemd, BOTH, None),
        cell(CRI_B, "2.x", Cgroupfs, BOTH, None),
        cell(SHIM, "1.7", Cgroupfs, HUSK_SHIM, None),
        cell(SHIM, "1.7", Cgroupfs, RUNC_SHIM, None),
    ]
}

/// `--full`: the CRI suite on every containerd line with both drivers, the shim suite on every
/// line with husk and runc, and the CRI suite once more with sid's runc as the reference.
pub fn full_cells() -> Vec<Cell> {
    let mut v = Vec::new();
    for (ctd, _) in CONTAINERD {
        for d in [CgroupDriver::Systemd, CgroupDriver::Cgroupfs] {
            v.push(cell(CRI, ctd, d, BOTH, None));
        }
    }
    for (ctd, _) in CONTAINERD {
        for rt in [HUSK_SHIM, RUNC_SHIM] {
            v.push(cell(SHIM, ctd, CgroupDriver::Cgroupfs, rt, None));
        }
    }
    v.push(cell(
        CRI,
        "2.x",
        CgroupDriver::Systemd,
        BOTH,
        Some(RUNC_SID),
    ));
    for d in [CgroupDriver::Systemd, CgroupDriver::Cgroupfs] {
        v.push(cell(USERNS, "2.x", d, BOTH, Some(RUNC_SID)));
    }
    v
}

fn cell(
    binaries: &'static [&'static str],
    containerd: &'static str,
    driver: CgroupDriver,
    handlers: &'static str,
    runc: Option<&'static str>,
) -> Cell {
    Cell {
        binaries,
        containerd,
        driver,
        handlers,
        runc,
    }
}

/// What one test binary reported.
#[derive(Default, Debug)]
pub struct BinaryResult {
    pub passed: Vec<String>,
    /// (test, the first lines of its failure).
    pub failed: Vec<(String, String)>,
    pub time: Duration,
    /// Set when the binary did not finish normally (timeout, crash, no summary line).
    pub broken: Option<String>,
}

/// What one cell ran: each binary's result, and the cell's wall time in seconds.
pub struct CellResult {
    pub cell: Cell,
    pub binaries: Vec<(String, BinaryResult)>,
    pub secs: f64,
}

/// Parses libtest's output: `test NAME ... ok|FAILED` lines and the `---- NAME stdout ----`
/// blocks holding each failure's panic message.
pub fn parse(output: &str) -> (Vec<String>, Vec<(String, String)>) {
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    let mut messages: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix("test ") {
            if let Some(name) = rest.strip_suffix(" ... ok") {
                passed.push(name.to_string());
                continue;
            }
            if let Some(name) = rest.strip_suffix(" ... FAILED") {
                failed.push(name.to_string());
                continue;
            }
        }
        if let Some(name) = line
            .strip_prefix("---- ")
            .and_then(|l| l.strip_suffix(" stdout ----"))
        {
            current = Some(name.to_string());
            continue;
        }
        if line == "failures:" || line.starts_with("test result:") {
            current = None;
            continue;
        }
        if let Some(c) = &current {
            messages
                .entry(c.clone())
                .or_default()
                .push(line.to_string());
        }
    }
    let failed = failed
        .into_iter()
        .map(|name| {
            let lines = messages.remove(&name).unwrap_or_default();
            // The test's own panic message follows the last "thread '...' panicked at
            // file:line:col:" (on_both prints each handler's panic first, then its verdict).
            let start = lines
                .iter()
                .rposition(|l| l.contains("panicked at"))
                .map(|i| i + 1)
                .unwrap_or(0);
            let msg: Vec<String> = lines[start.min(lines.len())..]
                .iter()
                .filter(|l| !l.trim().is_empty() && !l.starts_with("note: run with"))
                .take(8)
                .cloned()
                .collect();
            (name, msg.join("\n"))
        })
        .collect();
    (passed, failed)
}

/// The test binaries of this workspace's e2e crate, built by cargo (already built by the
/// host stage; cargo only reports them), by target name.
///
/// `HUSK_NODE_CARGO_JSON` names a file holding that cargo output already (the test command
/// writes it before its host stage, so this does not wait on cargo's lock meanwhile).
pub fn test_binaries(workspace: &Path) -> Result<BTreeMap<String, PathBuf>, String> {
    if let Some(file) = std::env::var_os("HUSK_NODE_CARGO_JSON") {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("HUSK_NODE_CARGO_JSON {}: {e}", Path::new(&file).display()))?;
        return Ok(e2e_test_binaries(&text));
    }
    let out = std::process::Command::new("cargo")
        .args([
            "test",
            "--locked",
            // The whole workspace, as the host stage builds it: `-p` alone may resolve
            // features differently and rebuild.
            "--workspace",
            "--tests",
            "--no-run",
            "--message-format=json",
            "--quiet",
        ])
        .current_dir(workspace)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo: {e}"))?;
    if !out.status.success() {
        return Err("cargo test --no-run failed".into());
    }
    Ok(e2e_test_binaries(&String::from_utf8_lossy(&out.stdout)))
}

/// The e2e crate's test executables named in cargo's `--message-format=json` output.
fn e2e_test_binaries(cargo_json: &str) -> BTreeMap<String, PathBuf> {
    let mut bins = BTreeMap::new();
    for line in cargo_json.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let e2e = v["package_id"]
            .as_str()
            .is_some_and(|p| p.contains("/e2e#") || p.contains("husk-e2e"));
        if v["reason"] != "compiler-artifact"
            || !e2e
            || !v["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "test"))
        {
            continue;
        }
        if let (Some(name), Some(exe)) = (v["target"]["name"].as_str(), v["executable"].as_str()) {
            bins.insert(name.to_string(), PathBuf::from(exe));
        }
    }
    bins
}

/// How a guest output line is echoed here: indented, and libtest's closing line reworded
/// (`finished in 1.2s` → `1.2 s`), so the test command's closing tally counts the guest stage
/// once, through its own summary line (which leaves out the expected failures).
fn echo_line(line: &str) -> String {
    match line.strip_prefix("test result: ") {
        Some(rest) => {
            let rest = match rest.rsplit_once("; finished in ") {
                Some((head, secs)) => format!("{head}; {} s", secs.trim_end_matches('s')),
                None => rest.to_string(),
            };
            format!("  guest result: {rest}")
        }
        None => format!("  {line}"),
    }
}

/// Runs `bin` in the guest as a systemd service with a delegated cgroup (as containerd.service
/// runs on a node), streaming its output to stdout and `log`, within `timeout`.
fn run_binary(
    vm: &NodeVm,
    cell: &Cell,
    bin: &Path,
    threads: usize,
    filters: &[String],
    timeout: Duration,
    log: &Path,
) -> (String, Option<String>) {
    let unit = format!(
        "husk-suite-{}",
        bin.file_name()
            .unwrap()
            .to_string_lossy()
            .replace(['.', '_'], "-")
    );
    let mut script = format!(
        "systemd-run --quiet --wait --pipe --collect --service-type=exec --unit={unit} \
         -p Delegate=yes -p KillMode=mixed -p TimeoutStopSec=30 --working-directory={}",
        super::ssh::quote(&vm.src.join("e2e").display().to_string())
    );
    for (k, v) in cell.env() {
        script += &format!(" -E {k}={}", super::ssh::quote(&v));
    }
    if vm.image.accel.name() == "tcg" {
        script += &format!(" -E {}=1", crate::bed::EMULATED_CPU_ENV);
    }
    script += &format!(
        " {} --test-threads {threads}",
        super::ssh::quote(&bin.display().to_string())
    );
    for f in filters {
        script += &format!(" {}", super::ssh::quote(f));
    }
    script += " 2>&1";
    let mut child = vm
        .ssh
        .run(&script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh");
    let stdout = child.stdout.take().unwrap();
    let log_path = log.to_path_buf();
    let reader = std::thread::spawn(move || {
        let mut f = std::fs::File::create(&log_path).unwrap();
        let mut all = String::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            println!("{}", echo_line(&line));
            let _ = writeln!(f, "{line}");
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let t = Instant::now();
    let mut broken = None;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if t.elapsed() > timeout => {
                broken = Some(format!("timed out after {timeout:?}"));
                let _ = vm.sh(&format!(
                    "systemctl kill -s SIGKILL {unit}.service; systemctl stop {unit}.service"
                ));
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    let output = reader.join().unwrap_or_default();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    if broken.is_none() && !output.lines().any(|l| l.starts_with("test result:")) {
        broken = Some(format!(
            "no test summary (the binary crashed or ssh failed): {}",
            err.trim()
        ));
    }
    (output, broken)
}

/// `husk-node matrix [--full] [--only CELL-SUBSTRING]... [--filter TEST-SUBSTRING]...`: runs
/// the cells (those whose name contains one `--only`; in them the tests whose name contains one
/// `--filter`), prints what ran where and a summary, and exits non-zero on any failure that is
/// not an expected one or when a cell could not run. Filtered runs do not check for stale
/// expected failures.
pub fn main(args: &[String]) {
    let mut full = std::env::var("HUSK_NODE_FULL").is_ok_and(|v| v == "1");
    let mut only: Vec<String> = Vec::new();
    let mut filters: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--full" => full = true,
            "--only" => only.extend(it.next().cloned()),
            "--filter" => filters.extend(it.next().cloned()),
            _ => {
                eprintln!("husk-node matrix: unknown argument {a}");
                std::process::exit(2)
            }
        }
    }
    let threads: usize = std::env::var("HUSK_NODE_TEST_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let timeout = Duration::from_secs(
        std::env::var("HUSK_NODE_BINARY_TIMEOUT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1800),
    );
    let mut cells = if full { full_cells() } else { default_cells() };
    if !only.is_empty() {
        cells.retain(|c| only.iter().any(|o| c.name().contains(o.as_str())));
    }
    let workspace = NodeVm::workspace();
    let bins = test_binaries(&workspace).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let results_dir = workspace.join("target/node-results");
    let _ = std::fs::remove_dir_all(&results_dir);
    std::fs::create_dir_all(&results_dir).unwrap();
    let t_images = Instant::now();
    crate::images::prebuild(&results_dir.join("images"));
    println!(
        "==> node guest: {} cells ({} matrix{}); OCI images prebuilt on the host in {:.1} s",
        cells.len(),
        if full { "full" } else { "default" },
        if only.is_empty() {
            String::new()
        } else {
            format!(", only {only:?}")
        },
        t_images.elapsed().as_secs_f64()
    );
    let t_all = Instant::now();
    let mut summary: Vec<CellResult> = Vec::new();
    let mut boot_times = Vec::new();
    let mut versions = String::new();
    for (i, c) in cells.iter().enumerate() {
        let t = Instant::now();
        let vm = match NodeVm::start(&results_dir) {
            Ok(vm) => vm,
            Err(e) => {
                // The guest must not be skipped: a guest that cannot boot fails the stage.
                println!("{e}");
                println!("node guest: 0 passed, 1 failed");
                std::process::exit(1);
            }
        };
        boot_times.push(vm.start_time.as_secs_f64());
        if versions.is_empty() {
            versions = vm.image.versions();
            println!(
                "==> node guest image {} ({}):\n{}",
                vm.image.dir.display(),
                vm.image.accel.name(),
                versions.trim_end()
            );
        }
        let ctd_version = version_of(&versions, c.containerd_bin());
        let runc_path = c.runc.unwrap_or("/usr/bin/runc");
        println!(
            "==> [{}/{}] {} — containerd {} ({}), runc {} ({}), SystemdCgroup = {}, guest up in {:.1} s",
            i + 1,
            cells.len(),
            c.name(),
            ctd_version,
            c.containerd_bin(),
            version_of(&versions, runc_path),
            runc_path,
            c.driver == CgroupDriver::Systemd,
            vm.start_time.as_secs_f64()
        );
        if let Some((why, script)) = c.setup() {
            println!("    {why}");
            vm.sh_ok(script);
        }
        let mut per_bin = Vec::new();
        for b in c.binaries {
            let Some(bin) = bins.get(*b) else {
                println!("test binary {b} not built");
                std::process::exit(1);
            };
            println!("--> {b} in the guest ({})", c.name());
            let tb = Instant::now();
            let log = results_dir.join(format!("{:02}-{b}.log", i + 1));
            let (output, broken) = run_binary(&vm, c, bin, threads, &filters, timeout, &log);
            let (passed, failed) = parse(&output);
            if let Some(why) = &broken {
                println!("  {b} did not finish: {why}");
            }
            per_bin.push((
                b.to_string(),
                BinaryResult {
                    passed,
                    failed,
                    time: tb.elapsed(),
                    broken,
                },
            ));
        }
        drop(vm);
        summary.push(CellResult {
            cell: c.clone(),
            binaries: per_bin,
            secs: t.elapsed().as_secs_f64(),
        });
    }
    let (report, failed) =
        render_summary(&summary, &boot_times, t_all.elapsed(), filters.is_empty());
    print!("{report}");
    std::fs::write(results_dir.join("summary.txt"), &report).unwrap();
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

/// The handler whose pass an expected failure requires, for `cell`: `Some(Some(reference))`
/// for the CRI suite, `Some(None)` for the shim suite on husk, `None` where nothing is excused.
fn reference(cell: &Cell) -> Option<Option<&'static str>> {
    if cell.binaries == SHIM {
        (cell.handlers == HUSK_SHIM).then_some(None)
    } else {
        Some(cell.handlers.split(',').next())
    }
}

/// The version the image's `versions` file gives for `path`.
pub(crate) fn version_of(versions: &str, path: &str) -> String {
    versions
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{path}: ")))
        .unwrap_or("?")
        .to_string()
}

/// `message` with each line cut at 300 characters (a CRI error can be long).
fn shorten(message: &str) -> String {
    message
        .lines()
        .map(|l| match l.char_indices().nth(300) {
            Some((i, _)) => format!("{}…", &l[..i]),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The summary and the number of failures that fail the stage: unexpected failures, binaries
/// that did not finish, and expected-failure entries that excused nothing.
fn render_summary(
    summary: &[CellResult],
    boot_times: &[f64],
    total: Duration,
    check_stale: bool,
) -> (String, usize) {
    let expected = super::expected::list();
    let mut used = vec![false; expected.len()];
    let mut s = String::from("\n==> node guest summary\n");
    let (mut passed, mut excused) = (0, 0);
    let mut unexpected = Vec::new();
    let mut known = Vec::new();
    for r in summary {
        let name = r.cell.name();
        let cp: usize = r.binaries.iter().map(|b| b.1.passed.len()).sum();
        let cf: usize = r
            .binaries
            .iter()
            .map(|b| b.1.failed.len() + b.1.broken.is_some() as usize)
            .sum();
        passed += cp;
        s += &format!(
            "{name:<72} {cp:>3} passed {cf:>3} failed {:>6.0} s\n",
            r.secs
        );
        for (b, res) in &r.binaries {
            s += &format!(
                "    {b:<16} {:>3} passed {:>3} failed {:>6.0} s\n",
                res.passed.len(),
                res.failed.len(),
                res.time.as_secs_f64()
            );
            for (test, msg) in &res.failed {
                let full = format!("{b}::{test}");
                let hit = reference(&r.cell).and_then(|reference| {
                    expected
                        .iter()
                        .position(|e| e.excuses(&name, &full, msg, reference))
                });
                let entry = format!(
                    "[{name}] {full}\n    {}\n",
                    shorten(msg).replace('\n', "\n    ")
                );
                match hit {
                    Some(i) => {
                        used[i] = true;
                        excused += 1;
                        known.push(entry);
                    }
                    None => unexpected.push(entry),
                }
            }
            if let Some(e) = &res.broken {
                unexpected.push(format!("[{name}] {b}: DID NOT FINISH: {e}\n"));
            }
        }
    }
    let ran: Vec<String> = summary.iter().map(|r| r.cell.name()).collect();
    for (e, used) in expected.iter().zip(&used) {
        if check_stale && !used && ran.iter().any(|c| e.applies_to(c)) {
            unexpected.push(format!(
                "expected-failures.txt line {}: [{}] {} — {}: excused nothing; husk passes now, remove the entry\n",
                e.line, e.cell, e.test, e.error
            ));
        }
    }
    if !boot_times.is_empty() {
        s += &format!(
            "guest warm starts: {} (mean {:.1} s); stage total {:.0} s\n",
            boot_times.len(),
            boot_times.iter().sum::<f64>() / boot_times.len() as f64,
            total.as_secs_f64()
        );
    }
    if !known.is_empty() {
        s += &format!(
            "\nexpected failures of husk ({}, e2e/src/node/expected-failures.txt; runc passed each):\n{}",
            known.len(),
            known.concat()
        );
    }
    if !unexpected.is_empty() {
        s += &format!(
            "\nFAILURES ({}):\n{}",
            unexpected.len(),
            unexpected.concat()
        );
    }
    s += &format!(
        "node guest: {passed} passed, {} failed ({excused} expected failures of husk not counted)\n",
        unexpected.len()
    );
    (s, unexpected.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libtest_output() {
        let out = "running 2 tests\ntest a ... ok\ntest b ... FAILED\n\nfailures:\n\n---- b stdout ----\n\nthread 'b' panicked at e2e/src/suite.rs:40:9:\nhandlers failed (runc then husk):\nrunc: passed\nhusk: FAILED: boom\nnote: run with `RUST_BACKTRACE=1`\n\nfailures:\n    b\n\ntest result: FAILED. 1 passed; 1 failed;\n";
        let (p, f) = parse(out);
        assert_eq!(p, ["a"]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0, "b");
        assert_eq!(
            f[0].1,
            "handlers failed (runc then husk):\nrunc: passed\nhusk: FAILED: boom"
        );
    }

    #[test]
    fn every_scenario_meets_husk_and_runc_and_both_drivers_and_all_lines() {
        let cells = default_cells();
        for b in CRI.iter().chain(SHIM) {
            for h in ["husk", "runc"] {
                assert!(
                    cells
                        .iter()
                        .any(|c| c.binaries.contains(b) && c.handlers.contains(h)),
                    "{b} never runs on {h}"
                );
            }
        }
        for d in [CgroupDriver::Systemd, CgroupDriver::Cgroupfs] {
            assert!(cells.iter().any(|c| c.driver == d && c.binaries != SHIM));
        }
        // Both containerd lines (1.x and 2.x) in the default matrix, every line in the full.
        for l in ["1.7", "2.x"] {
            assert!(cells
                .iter()
                .any(|c| c.containerd == l && c.binaries != SHIM));
        }
        for (l, _) in CONTAINERD {
            assert!(full_cells().iter().any(|c| c.containerd == *l));
        }
        let mut parts: Vec<&str> = CRI_A.iter().chain(CRI_B).copied().collect();
        parts.sort();
        let mut all = CRI.to_vec();
        all.sort();
        assert_eq!(parts, all, "CRI_A and CRI_B split the CRI suite");
        // User-namespaced pods: containerd 2.x, with a runc that idmaps as the reference.
        assert!(full_cells()
            .iter()
            .any(|c| c.binaries == USERNS && c.containerd == "2.x" && c.runc == Some(RUNC_SID)));
    }
}
