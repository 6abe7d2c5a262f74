//! The churn soak with leak accounting (issue 14 §1; see `husk_e2e::soak`): pods through CRI
//! on husk and on runc in one private containerd, every leak counter read before and after.
//!
//!   husk-soak [--pods N] [--clients C] [--minutes M] [--handlers husk,runc] [--out DIR]
//!
//! Writes DIR/results.json and DIR/results.md; exits 1 when anything leaked or was lost.

use husk_e2e::bed::{TestBed, BUSYBOX};
use husk_e2e::soak::{self, Config};
use std::time::Duration;

const USAGE: &str = "usage: husk-soak [--pods N (per handler, default 1000)] [--clients C (4-16, default 8)]\n\
    [--minutes M (wall-clock bound per handler, default 60)] [--handlers husk,runc] [--execs E (per pod, default 6)]\n\
    [--out DIR (default soak-results)]\n\
    Starts a private containerd (the test bed, needs root), churns pods on each handler and\n\
    counts what they leave behind. Exits 1 on any leak, lost exit or error.";

fn main() {
    let mut cfg = Config::default();
    let mut out = std::path::PathBuf::from("soak-results");
    let mut args = std::env::args().skip(1);
    let fail = |m: String| -> ! {
        eprintln!("husk-soak: {m}\n{USAGE}");
        std::process::exit(2)
    };
    let num = |v: Option<String>, what: &str| -> usize {
        match v.map(|v| v.parse::<usize>()) {
            Some(Ok(n)) if n > 0 => n,
            _ => fail(format!("{what} needs a positive number")),
        }
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--pods" => cfg.pods = num(args.next(), "--pods"),
            "--clients" => {
                cfg.clients = num(args.next(), "--clients");
                if !(4..=16).contains(&cfg.clients) {
                    fail("--clients must be between 4 and 16".into());
                }
            }
            "--minutes" => {
                cfg.budget = Duration::from_secs(60 * num(args.next(), "--minutes") as u64)
            }
            "--execs" => cfg.execs_per_pod = num(args.next(), "--execs"),
            "--handlers" => {
                cfg.handlers = args
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                if cfg.handlers.is_empty() {
                    fail("--handlers needs a comma-separated list".into());
                }
            }
            "--out" => match args.next() {
                Some(d) => out = d.into(),
                None => fail("--out needs a directory".into()),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => fail(format!("unknown argument {other:?}")),
        }
    }
    std::fs::create_dir_all(&out).unwrap_or_else(|e| fail(format!("{}: {e}", out.display())));
    let bed = TestBed::start();
    let _ = bed.cri(&[BUSYBOX]);
    let t = std::time::Instant::now();
    let report = soak::run(&bed, &cfg, &|l| eprintln!("husk-soak: {l}"));
    let md = report.to_markdown();
    let machine = format!(
        "{} cores, kernel {}, containerd {}; {} pods per handler, {} clients, {:.0} s in all\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        bed.containerd_version(),
        cfg.pods,
        cfg.clients,
        t.elapsed().as_secs_f64()
    );
    let mut json = report.to_json();
    json["machine"] = machine.trim().into();
    std::fs::write(
        out.join("results.json"),
        serde_json::to_vec_pretty(&json).unwrap(),
    )
    .unwrap();
    std::fs::write(out.join("results.md"), format!("{machine}\n{md}")).unwrap();
    println!("{machine}\n{md}");
    let problems = report.problems();
    drop(bed);
    println!("wrote results.json and results.md in {}", out.display());
    if problems.is_empty() {
        println!("husk-soak: no leak, no lost exit, no error");
    } else {
        println!("husk-soak: FAILED:\n  {}", problems.join("\n  "));
        std::process::exit(1);
    }
}
