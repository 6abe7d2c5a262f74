//! The soak's figures: pods/min held, leaks per 1,000 pods, exits and output lost, the
//! long-lived shim's memory, p99 latencies at the start and at the end of each phase; as
//! JSON, as a Markdown table (RELIABILITY.md's), and as the list of problems a test fails on.

use super::account::{informative, Snapshot};
use super::{p99_by_op, quantile, Config, Phase};
use serde_json::{json, Value};

/// How much a long-lived shim's resident set may grow between the first and the last third
/// of the exec storm before it counts as growing without bound: 1 MiB or a quarter of what it
/// held, whichever is more (allocator arenas and lazily paged code settle within that; a
/// per-exec leak over thousands of execs does not).
pub fn rss_bound_kb(early_kb: i64) -> i64 {
    (early_kb / 4).max(1024)
}

pub struct Report {
    pub config: Config,
    pub phases: Vec<Phase>,
    /// Before any pod, and after the last one and the long-lived pods were removed.
    pub initial: Snapshot,
    pub end: Snapshot,
}

/// Median RSS of the first and of the last third of the readings (None with fewer than 6).
pub fn rss_thirds(rss: &[(usize, i64)]) -> Option<(i64, i64)> {
    if rss.len() < 6 {
        return None;
    }
    let third = rss.len() / 3;
    let med = |s: &[(usize, i64)]| {
        let v: Vec<f64> = s.iter().map(|x| x.1 as f64).collect();
        quantile(&v, 0.5).unwrap_or(0.0) as i64
    };
    Some((med(&rss[..third]), med(&rss[rss.len() - third..])))
}

impl Phase {
    pub fn pods_per_min(&self) -> f64 {
        if self.seconds > 0.0 {
            self.pods_done as f64 * 60.0 / self.seconds
        } else {
            0.0
        }
    }

    /// The first and the last tenth of the pods started (at least one each).
    pub fn windows(&self) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let n = self.pods_started;
        let w = (n / 10).max(1);
        (0..w, n.saturating_sub(w)..n.max(1))
    }

    /// What must be zero and is not, as lines.
    pub fn problems(&self) -> Vec<String> {
        let h = &self.handler;
        let mut out = Vec::new();
        for (k, b, a) in self.after.leaks(&self.before) {
            out.push(format!("{h}: leak: {k}: {b} before, {a} after"));
        }
        if self.exits_lost > 0 {
            out.push(format!(
                "{h}: {} exit statuses lost or wrong",
                self.exits_lost
            ));
        }
        if self.output_lost > 0 {
            out.push(format!("{h}: output lost {} times", self.output_lost));
        }
        if self.errors > 0 {
            out.push(format!(
                "{h}: {} CRI errors, first: {:?}",
                self.errors,
                self.first_errors.iter().take(5).collect::<Vec<_>>()
            ));
        }
        if self.pods_started == 0 {
            out.push(format!("{h}: no pod ran"));
        }
        if let Some((early, late)) = rss_thirds(&self.rss) {
            if late - early > rss_bound_kb(early) {
                out.push(format!(
                    "{h}: the long-lived shim's RSS grew from {early} kB to {late} kB over {} execs",
                    self.sentinel_execs
                ));
            }
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let (first, last) = self.windows();
        let leaks: Vec<Value> = self
            .after
            .leaks(&self.before)
            .into_iter()
            .map(|(k, b, a)| json!({"counter": k, "before": b, "after": a}))
            .collect();
        json!({
            "handler": self.handler,
            "pods_started": self.pods_started,
            "pods_done": self.pods_done,
            "seconds": self.seconds,
            "pods_per_min": self.pods_per_min(),
            "exits_lost": self.exits_lost,
            "output_lost": self.output_lost,
            "cri_errors": self.errors,
            "first_errors": self.first_errors,
            "leaks": leaks,
            "before": self.before.counters,
            "after": self.after.counters,
            "long_lived_shim": {
                "execs": self.sentinel_execs,
                "rss_kb": self.rss,
                "fds": self.after.long_lived_shim_fds(&self.before),
            },
            "p99_ms_start": p99_by_op(&self.samples, first),
            "p99_ms_end": p99_by_op(&self.samples, last),
            "problems": self.problems(),
        })
    }
}

impl Report {
    /// Every problem of every phase, and what the whole run left once everything was removed.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self.phases.iter().flat_map(|p| p.problems()).collect();
        for (k, b, a) in self.end.leaks(&self.initial) {
            out.push(format!(
                "whole run: leak: {k}: {b} before the first pod, {a} after the last"
            ));
        }
        out
    }

    /// Problems of one handler's phase (the whole-run check names no handler: it is included).
    pub fn problems_of(&self, handler: &str) -> Vec<String> {
        self.problems()
            .into_iter()
            .filter(|p| p.starts_with(&format!("{handler}:")) || p.starts_with("whole run:"))
            .collect()
    }

    pub fn to_json(&self) -> Value {
        json!({
            "config": {
                "pods_per_handler": self.config.pods,
                "clients": self.config.clients,
                "budget_s": self.config.budget.as_secs(),
                "handlers": self.config.handlers,
                "execs_per_pod": self.config.execs_per_pod,
            },
            "phases": self.phases.iter().map(Phase::to_json).collect::<Vec<_>>(),
            "whole_run": {
                "initial": self.initial.counters,
                "end": self.end.counters,
                "leaks": self.end.leaks(&self.initial).into_iter()
                    .map(|(k, b, a)| json!({"counter": k, "before": b, "after": a}))
                    .collect::<Vec<_>>(),
            },
            "problems": self.problems(),
        })
    }

    /// The figures as Markdown: one column per handler.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let hs: Vec<&Phase> = self.phases.iter().collect();
        let head = |s: &mut String, first: &str| {
            s.push_str(&format!("| {first} |"));
            for p in &hs {
                s.push_str(&format!(" {} |", p.handler));
            }
            s.push_str("\n|---|");
            for _ in &hs {
                s.push_str("---:|");
            }
            s.push('\n');
        };
        let row = |s: &mut String, name: &str, f: &dyn Fn(&Phase) -> String| {
            s.push_str(&format!("| {name} |"));
            for p in &hs {
                s.push_str(&format!(" {} |", f(p)));
            }
            s.push('\n');
        };
        head(&mut s, "churn");
        row(&mut s, "pods done / started", &|p| {
            format!("{} / {}", p.pods_done, p.pods_started)
        });
        row(&mut s, "wall time (s)", &|p| format!("{:.0}", p.seconds));
        row(&mut s, "**pods/min held**", &|p| {
            format!("**{:.1}**", p.pods_per_min())
        });
        row(&mut s, "**exits lost**", &|p| {
            format!("**{}**", p.exits_lost)
        });
        row(&mut s, "output lost (log, ExecSync, Attach)", &|p| {
            p.output_lost.to_string()
        });
        row(&mut s, "CRI errors", &|p| p.errors.to_string());
        s.push('\n');
        head(&mut s, "leaks per 1,000 pods (after − before)");
        let counters: Vec<String> = hs
            .first()
            .map(|p| {
                p.before
                    .counters
                    .keys()
                    .filter(|k| !informative(k))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for k in &counters {
            row(&mut s, k, &|p| {
                let b = p.before.counters.get(k).copied().unwrap_or(0);
                let a = p.after.counters.get(k).copied().unwrap_or(0);
                let d = (a - b).max(0);
                let per = d as f64 * 1000.0 / p.pods_started.max(1) as f64;
                if d == 0 {
                    format!("0 ({b} → {a})")
                } else {
                    format!("**{per:.1}** ({b} → {a})")
                }
            });
        }
        row(&mut s, "fds of the long-lived shim", &|p| {
            let (b, a) = p.after.long_lived_shim_fds(&p.before);
            let d = (a - b).max(0);
            format!(
                "{} ({b} → {a})",
                if d == 0 {
                    "0".into()
                } else {
                    format!("**{d}**")
                }
            )
        });
        s.push('\n');
        head(&mut s, "long-lived pod's shim under an ExecSync storm");
        row(&mut s, "execs", &|p| p.sentinel_execs.to_string());
        row(
            &mut s,
            "RSS kB, first reading → last",
            &|p| match (p.rss.first(), p.rss.last()) {
                (Some(a), Some(b)) => format!("{} → {}", a.1, b.1),
                _ => "-".into(),
            },
        );
        row(
            &mut s,
            "RSS kB, median of first third → last third",
            &|p| match rss_thirds(&p.rss) {
                Some((a, b)) => format!("{a} → {b} (bound +{})", rss_bound_kb(a)),
                None => "too few readings".into(),
            },
        );
        s.push('\n');
        head(&mut s, "p99 ms, first 10 % of pods → last 10 %");
        let ops: Vec<String> = {
            let mut v: Vec<String> = hs
                .iter()
                .flat_map(|p| p.samples.iter().map(|x| x.1.clone()))
                .collect();
            v.sort();
            v.dedup();
            v
        };
        for op in &ops {
            row(&mut s, op, &|p| {
                let (f, l) = p.windows();
                let a = p99_by_op(&p.samples, f).get(op).copied();
                let b = p99_by_op(&p.samples, l).get(op).copied();
                match (a, b) {
                    (Some(a), Some(b)) => format!("{a:.0} → {b:.0}"),
                    _ => "-".into(),
                }
            });
        }
        s.push_str("\nwhole run, every pod and the long-lived ones removed: ");
        let leaks = self.end.leaks(&self.initial);
        if leaks.is_empty() {
            s.push_str("every counter back at its value before the first pod.\n");
        } else {
            s.push_str(&format!("LEFT ABOVE THE START: {leaks:?}\n"));
        }
        s.push_str("\nhost-wide, for information (other work shares this machine): ");
        let info: Vec<String> = self
            .initial
            .counters
            .iter()
            .filter(|(k, _)| informative(k))
            .map(|(k, v)| {
                format!(
                    "{} {v} → {}",
                    k.trim_start_matches("host: "),
                    self.end.counters.get(k).copied().unwrap_or(0)
                )
            })
            .collect();
        s.push_str(&info.join(", "));
        s.push('\n');
        s
    }
}
