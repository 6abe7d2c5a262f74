//! Signal numbers as kill(2) takes them, real-time signals included.
//!
//! nix's `Signal` enum stops at 31 (no real-time signals), so the runtime API takes a
//! [`Signal`]: any number from 0 (kill(2)'s existence check) to 64 (`SIGRTMAX` on Linux, `_NSIG`
//! in the kernel's uapi). Names follow runc (`KILL`, `SIGKILL`, any case) and, beyond runc 1.1
//! (which accepts real-time signals only by number), the real-time forms of moby/containerd's
//! signal tables and kill(1): `RTMIN`, `RTMIN+n`, `RTMAX-n`, `RTMAX`, with or without `SIG`.
//! `SIGRTMIN` is 34 as glibc reports it (the kernel's 32 and 33 are taken by the C library's
//! threading), the value those tables use on Linux.

use std::fmt;
use std::str::FromStr;

/// The first real-time signal a program may use (glibc's `SIGRTMIN`).
pub const SIGRTMIN: i32 = 34;
/// The last signal number on Linux (`SIGRTMAX`, `_NSIG`).
pub const SIGRTMAX: i32 = 64;

/// A signal number in 0..=64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(i32);

/// A signal that is neither a number in 0..=64 nor a known name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signal {0:?}")]
pub struct UnknownSignal(pub String);

impl Signal {
    pub const HUP: Signal = Signal(libc::SIGHUP);
    pub const INT: Signal = Signal(libc::SIGINT);
    pub const KILL: Signal = Signal(libc::SIGKILL);
    pub const TERM: Signal = Signal(libc::SIGTERM);
    pub const STOP: Signal = Signal(libc::SIGSTOP);
    pub const CONT: Signal = Signal(libc::SIGCONT);

    /// The signal numbered `n`, or an error outside 0..=64.
    pub fn new(n: i32) -> Result<Signal, UnknownSignal> {
        if (0..=SIGRTMAX).contains(&n) {
            Ok(Signal(n))
        } else {
            Err(UnknownSignal(n.to_string()))
        }
    }

    /// The raw number for kill(2).
    pub fn as_raw(self) -> i32 {
        self.0
    }

    /// Sends this signal to `pid` (kill(2)).
    pub fn send(self, pid: i32) -> nix::Result<()> {
        // SAFETY: kill(2) on a number; errors come back through errno.
        if unsafe { libc::kill(pid, self.0) } == 0 {
            Ok(())
        } else {
            Err(nix::Error::last())
        }
    }

    /// The standard signal of this number, if it has a nix name (1..=31).
    fn standard(self) -> Option<nix::sys::signal::Signal> {
        nix::sys::signal::Signal::try_from(self.0).ok()
    }
}

impl From<nix::sys::signal::Signal> for Signal {
    fn from(s: nix::sys::signal::Signal) -> Signal {
        Signal(s as i32)
    }
}

impl FromStr for Signal {
    type Err = UnknownSignal;

    /// `36`, `KILL`, `sigkill`, `RTMIN`, `RTMIN+2`, `SIGRTMAX-1`, `SIGRTMAX`.
    fn from_str(s: &str) -> Result<Signal, UnknownSignal> {
        let unknown = || UnknownSignal(s.to_string());
        if let Ok(n) = s.parse::<i32>() {
            return Signal::new(n).map_err(|_| unknown());
        }
        let up = s.to_ascii_uppercase();
        let name = up.strip_prefix("SIG").unwrap_or(&up);
        let rt = |base: i32, rest: &str, sign: i32| -> Result<Signal, UnknownSignal> {
            let n = match rest {
                "" => 0,
                r => r[1..]
                    .parse::<i32>()
                    .ok()
                    .filter(|_| r.starts_with(if sign > 0 { '+' } else { '-' }))
                    .ok_or_else(unknown)?,
            };
            let v = base + sign * n;
            if (SIGRTMIN..=SIGRTMAX).contains(&v) {
                Ok(Signal(v))
            } else {
                Err(unknown())
            }
        };
        if let Some(rest) = name.strip_prefix("RTMIN") {
            return rt(SIGRTMIN, rest, 1);
        }
        if let Some(rest) = name.strip_prefix("RTMAX") {
            return rt(SIGRTMAX, rest, -1);
        }
        nix::sys::signal::Signal::from_str(&format!("SIG{name}"))
            .map(Signal::from)
            .map_err(|_| unknown())
    }
}

impl fmt::Display for Signal {
    /// `SIGKILL`, `SIGRTMIN+2`, `SIGRTMAX`, or the bare number (0, 32, 33).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.standard(), self.0) {
            (Some(s), _) => f.write_str(s.as_str()),
            (None, SIGRTMIN) => f.write_str("SIGRTMIN"),
            (None, SIGRTMAX) => f.write_str("SIGRTMAX"),
            (None, n) if n > SIGRTMIN => write!(f, "SIGRTMIN+{}", n - SIGRTMIN),
            (None, n) => write!(f, "signal {n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<i32, UnknownSignal> {
        s.parse::<Signal>().map(Signal::as_raw)
    }

    #[test]
    fn numbers_cover_every_signal_and_the_existence_check() {
        for n in 0..=64 {
            assert_eq!(p(&n.to_string()), Ok(n));
        }
        for bad in ["65", "-1", "99999999999"] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_like_runc_and_real_time_names_like_containerd() {
        for (s, n) in [
            ("KILL", 9),
            ("SIGKILL", 9),
            ("sigterm", 15),
            ("usr1", 10),
            ("SIGCHLD", 17),
            ("RTMIN", 34),
            ("SIGRTMIN", 34),
            ("RTMIN+2", 36),
            ("SIGRTMIN+15", 49),
            ("rtmin+30", 64),
            ("RTMAX", 64),
            ("SIGRTMAX-1", 63),
            ("SIGRTMAX-30", 34),
        ] {
            assert_eq!(p(s), Ok(n), "{s}");
        }
        for bad in [
            "", "SIG", "NOPE", "RTMIN+", "RTMIN-1", "RTMAX+1", "RTMIN+31", "RTMAX-31", "RTMINX",
        ] {
            assert!(p(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn display_round_trips() {
        for n in 1..=64 {
            let s = Signal::new(n).unwrap();
            if n == 32 || n == 33 {
                assert_eq!(s.to_string(), format!("signal {n}"));
                continue;
            }
            assert_eq!(s.to_string().parse::<Signal>(), Ok(s), "{s}");
        }
        assert_eq!(
            Signal::from(nix::sys::signal::Signal::SIGKILL),
            Signal::KILL
        );
    }
}
