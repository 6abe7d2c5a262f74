//! Every command block of README.md runs as written, from the clone's root, as root: the blocks
//! are read from README.md itself, so an edited or added block is tested as it stands. What
//! each block needs decides how it runs, and the test prints what it ran and what it did not:
//! - `scripts/test.sh` is the test command this test is part of (CI runs it from a clean
//!   clone): its line is not run here; the other set-up command, `scripts/demo.sh`, is;
//!   lines starting the QEMU node guest (`target/debug/husk-node`, `scripts/v2-guest.sh`,
//!   `scripts/systemd-guest.sh`) are left to the test command's guest stage, which boots that
//!   guest; `scripts/bench.sh --guest` (the benchmark in that guest, ~20 minutes under TCG) is
//!   not run at all, as the test command leaves it out for CI's time budget;
//! - blocks meant for a Kubernetes node (`husk-node-installer`) run in a private mount and
//!   PID namespace where /etc/containerd and /usr/local/bin are empty tmpfs: a node with
//!   containerd's default paths and no husk pod, without touching this machine's containerd;
//! - the `husk run` block starts an interactive shell on a terminal: it runs under script(1),
//!   which gives it one, and types `exit 3` into it;
//! - `scripts/soak.sh` runs with the small N its block gives (a short soak on both handlers);
//! - `toml` blocks are configuration, not commands.
//!
//! A block no rule matches fails the test: teach it how to run the new block.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Block {
    /// Line of the opening fence.
    line: usize,
    lang: String,
    text: String,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, l) in readme.lines().enumerate() {
        match (&mut open, l.strip_prefix("```")) {
            (None, Some(lang)) => {
                open = Some(Block {
                    line: i + 1,
                    lang: lang.trim().to_string(),
                    text: String::new(),
                })
            }
            (Some(_), Some(_)) => out.push(open.take().unwrap()),
            (Some(b), None) => {
                b.text.push_str(l);
                b.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "README.md has an unclosed code block");
    out
}

struct Ran {
    code: i32,
    out: String,
    took: Duration,
}

/// Runs `script` with bash (errexit, pipefail) in the clone's root, bounded by `limit`.
fn run(script: &str, limit: Duration, wrap: Wrap) -> Ran {
    let root = repo_root();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("set -euo pipefail\n{script}")).unwrap();
    let bash = format!("bash {}", file.path().display());
    let (prog, args, input): (&str, Vec<String>, &[u8]) = match wrap {
        Wrap::Plain => ("bash", vec![file.path().display().to_string()], b""),
        Wrap::Terminal(input) => (
            "script",
            vec!["-qec".into(), bash, "/dev/null".into()],
            input.as_bytes(),
        ),
        Wrap::Node => (
            "unshare",
            vec![
                "--mount".into(),
                "--pid".into(),
                "--fork".into(),
                "--mount-proc".into(),
                "bash".into(),
                "-euc".into(),
                format!(
                    "mount -t tmpfs husk-node /etc/containerd 2>/dev/null || {{ mkdir -p /etc/containerd && mount -t tmpfs husk-node /etc/containerd; }}
                     mount -t tmpfs husk-node /usr/local/bin
                     {bash}"
                ),
            ],
            b"",
        ),
    };
    let t = Instant::now();
    let mut child = Command::new("timeout")
        .arg("--kill-after=10")
        .arg(limit.as_secs().to_string())
        .arg(prog)
        .args(&args)
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    Ran {
        code: o.status.code().unwrap_or(-1),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        took: t.elapsed(),
    }
}

#[derive(Clone, Copy)]
enum Wrap {
    Plain,
    /// On a terminal (script(1)), with this typed in.
    Terminal(&'static str),
    /// On a simulated node: private mount + PID namespace, empty /etc/containerd and
    /// /usr/local/bin.
    Node,
}

/// Removes what the `husk run` block creates, even when it fails.
struct Bundle(PathBuf);

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("target/release/husk"))
            .args(["delete", "--force", "demo"])
            .output();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn every_command_block_in_the_readme_runs_as_written() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the README's commands run as root: run this through the README's test command"
    );
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let bundle = root.join("bundle");
    assert!(
        !bundle.exists(),
        "{} exists already: the README's `husk run` example creates it",
        bundle.display()
    );
    let _cleanup = Bundle(bundle);
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for b in blocks(&readme) {
        let at = format!("README.md:{}", b.line);
        let first = b.text.lines().next().unwrap_or("").to_string();
        if b.lang == "toml" {
            report.push(format!("{at}: toml, configuration (not run)"));
            continue;
        }
        assert_eq!(b.lang, "sh", "{at}: a ```{} block", b.lang);
        // Lines this test does not run, and why; every other line of their block runs.
        let not_here = |l: &str| -> Option<&'static str> {
            let l = l.trim_start();
            if l.starts_with("scripts/test.sh") {
                Some("it is the test command running this test (CI runs it from a clean clone)")
            } else if [
                "target/debug/husk-node",
                "scripts/v2-guest.sh",
                "scripts/systemd-guest.sh",
            ]
            .iter()
            .any(|p| l.starts_with(p))
            {
                Some("it boots the QEMU node guest, which the test command's guest stage runs")
            } else if l.starts_with("FUZZ_") || l.starts_with("scripts/fuzz.sh") {
                Some("the test command's fuzz stage runs scripts/fuzz.sh (every target, 20 s each); this line runs it for minutes")
            } else if l.starts_with("fuzz/target/") {
                Some("it replays the fuzz build, which the test command's fuzz stage makes after this test")
            } else if l.starts_with("scripts/bench.sh --guest") {
                Some("the benchmark in the QEMU node guest takes ~20 minutes under TCG: not part of the test command (CI's time budget)")
            } else {
                None
            }
        };
        let (skipped, runnable): (Vec<&str>, Vec<&str>) =
            b.text.lines().partition(|l| not_here(l).is_some());
        for l in &skipped {
            report.push(format!(
                "{at}: `{}` not run: {}",
                l.trim(),
                not_here(l).unwrap_or_default()
            ));
        }
        let script = runnable.join("\n");
        if script.trim().is_empty() {
            continue;
        }
        // (wrap, time limit, expected exit code, text the output must hold)
        let (wrap, limit, want_code, want_text): (Wrap, u64, i32, &[&str]) = if script
            .contains("scripts/demo.sh")
        {
            // The first build takes ~15 minutes on 2 cores; later ones are incremental.
            (
                Wrap::Plain,
                3600,
                0,
                &[
                    "Hello from husk",
                    "exit code: 7 (Error) -- on purpose",
                    "torn down",
                ],
            )
        } else if script.contains("husk run") {
            (
                Wrap::Terminal("echo hello from the readme\nexit 3\n"),
                120,
                3,
                &["hello from the readme"],
            )
        } else if script.contains("husk-node-installer") {
            (
                Wrap::Node,
                120,
                0,
                &[
                    "installed /usr/local/bin/containerd-shim-husk-v2",
                    "removed /usr/local/bin/containerd-shim-husk-v2",
                ],
            )
        } else if script.contains("scripts/soak.sh") {
            // A short soak on both handlers (the release build is the test command's own).
            (
                Wrap::Plain,
                1800,
                0,
                &["no leak, no lost exit, no error", "pods/min held"],
            )
        } else if script.contains("HUSK_CONTAINERD=") || script.starts_with("cargo test") {
            (Wrap::Plain, 1800, 0, &["test result: ok"])
        } else {
            failures.push(format!(
                    "{at}: no rule for this block, starting `{first}`: say in tests/readme.rs how to run it"
                ));
            continue;
        };
        let r = run(&script, Duration::from_secs(limit), wrap);
        let how = match wrap {
            Wrap::Plain => "",
            Wrap::Terminal(_) => " on a terminal",
            Wrap::Node => " on a simulated node",
        };
        report.push(format!(
            "{at}: ran{how} in {:.0?}: `{first}`...: exit {}",
            r.took, r.code
        ));
        let missing: Vec<&&str> = want_text.iter().filter(|t| !r.out.contains(**t)).collect();
        if r.code != want_code || !missing.is_empty() {
            failures.push(format!(
                "{at}: exit {} (want {want_code}), missing {missing:?} in output:\n{}",
                r.code,
                tail(&r.out, 60)
            ));
        }
    }
    eprintln!("README.md command blocks:\n  {}", report.join("\n  "));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}
