//! Which verb a container accepts in which state: one table, and typed refusals that carry
//! runc's words.
//!
//! runc (1.1, the reference) is the model: every cell below is runc's exit status on the same
//! bundle, and `tests/runc_parity_reports.rs` checks each verb in each state against runc. The
//! refusal texts are runc's too, because containerd's runc shim reads them when a
//! runc-compatible binary is its `BinaryName` (containerd `pkg/process`: `checkKillError`
//! turns "container not running" into "process already finished" (NotFound), and a delete
//! that says "does not exist" counts as done).
//!
//! | verb           | created | running | paused | stopped |
//! |----------------|---------|---------|--------|---------|
//! | start          | ✓       |         |        |         |
//! | kill           | ✓       | ✓       | ✓      |         |
//! | kill --all     | ✓       | ✓       | ✓      | ✓ (whatever is left in the cgroup) |
//! | pause          | ✓       | ✓       |        |         |
//! | resume         |         |         | ✓      |         |
//! | exec           | ✓       | ✓       | with --ignore-paused | |
//! | update         | ✓       | ✓       | ✓      |         |
//! | delete         | ✓       |         |        | ✓       |
//! | delete --force, ps, state | ✓ | ✓ | ✓ | ✓ |

use crate::state::Status;
use std::fmt;

/// A command on a container (runc's verbs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    /// `kill` of the init.
    Kill,
    /// `kill --all`: every process of the container's cgroup.
    KillAll,
    Pause,
    Resume,
    Exec {
        /// runc's `--ignore-paused`: exec into a paused container (the process starts frozen).
        ignore_paused: bool,
    },
    Update,
    Delete,
    /// `delete --force`: a live container is killed first.
    DeleteForce,
    Ps,
    State,
}

impl Verb {
    /// Is `self` allowed in `status`?
    pub fn allowed_in(self, status: Status) -> bool {
        use Status::*;
        match self {
            Verb::KillAll | Verb::DeleteForce | Verb::Ps | Verb::State => true,
            Verb::Start => status == Created,
            Verb::Kill | Verb::Update => matches!(status, Created | Running | Paused),
            Verb::Pause => matches!(status, Created | Running),
            Verb::Resume => status == Paused,
            Verb::Exec { ignore_paused } => {
                matches!(status, Created | Running) || (ignore_paused && status == Paused)
            }
            Verb::Delete => matches!(status, Created | Stopped),
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verb::Start => "start",
            Verb::Kill => "kill",
            Verb::KillAll => "kill --all",
            Verb::Pause => "pause",
            Verb::Resume => "resume",
            Verb::Exec { .. } => "exec",
            Verb::Update => "update",
            Verb::Delete => "delete",
            Verb::DeleteForce => "delete --force",
            Verb::Ps => "ps",
            Verb::State => "state",
        })
    }
}

/// `verb` refused because the container `id` is `status`. Displays runc's message for the
/// case (callers such as containerd's runc shim match on it), then the container and state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct IllegalTransition {
    pub id: String,
    pub verb: Verb,
    pub status: Status,
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Status::*;
        let runc = match (self.verb, self.status) {
            (Verb::Start, Running) => "cannot start an already running container",
            (Verb::Start, Paused) => "cannot start a container in the paused state",
            (Verb::Start, Stopped) => "cannot start a container that has stopped",
            (Verb::Kill | Verb::Pause | Verb::Update, _) => "container not running",
            (Verb::Resume, _) => "container not paused",
            (Verb::Exec { .. }, Paused) => {
                "cannot exec in a paused container (use --ignore-paused to override)"
            }
            (Verb::Exec { .. }, Stopped) => "cannot exec in a stopped container",
            (Verb::Delete, s) => {
                return write!(
                    f,
                    "cannot delete container {} that is not stopped: {s}",
                    self.id
                )
            }
            _ => "the container is not in a state for this",
        };
        write!(
            f,
            "{runc} (cannot {} container {:?}: it is {})",
            self.verb, self.id, self.status
        )
    }
}

/// Ok when `verb` is allowed on container `id` in `status`, else the typed refusal.
pub fn check(id: &str, verb: Verb, status: Status) -> Result<(), IllegalTransition> {
    if verb.allowed_in(status) {
        Ok(())
    } else {
        Err(IllegalTransition {
            id: id.to_string(),
            verb,
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [Status; 4] = [
        Status::Created,
        Status::Running,
        Status::Paused,
        Status::Stopped,
    ];

    #[test]
    fn the_table_as_runc_answers() {
        // (verb, allowed in created, running, paused, stopped): runc 1.1's exit statuses.
        let table = [
            (Verb::Start, [true, false, false, false]),
            (Verb::Kill, [true, true, true, false]),
            (Verb::KillAll, [true, true, true, true]),
            (Verb::Pause, [true, true, false, false]),
            (Verb::Resume, [false, false, true, false]),
            (
                Verb::Exec {
                    ignore_paused: false,
                },
                [true, true, false, false],
            ),
            (
                Verb::Exec {
                    ignore_paused: true,
                },
                [true, true, true, false],
            ),
            (Verb::Update, [true, true, true, false]),
            (Verb::Delete, [true, false, false, true]),
            (Verb::DeleteForce, [true; 4]),
            (Verb::Ps, [true; 4]),
            (Verb::State, [true; 4]),
        ];
        for (verb, row) in table {
            for (status, want) in STATES.into_iter().zip(row) {
                assert_eq!(verb.allowed_in(status), want, "{verb} in {status}");
                assert_eq!(check("c", verb, status).is_ok(), want);
            }
        }
    }

    #[test]
    fn refusals_carry_the_text_containerd_matches() {
        let msg = |verb, status| check("c1", verb, status).unwrap_err().to_string();
        // containerd's checkKillError: "container not running" -> process already finished.
        assert!(msg(Verb::Kill, Status::Stopped).starts_with("container not running"));
        assert!(msg(Verb::Resume, Status::Running).starts_with("container not paused"));
        assert!(msg(
            Verb::Exec {
                ignore_paused: false
            },
            Status::Stopped
        )
        .starts_with("cannot exec in a stopped container"));
        assert_eq!(
            msg(Verb::Delete, Status::Running),
            "cannot delete container c1 that is not stopped: running"
        );
        assert!(msg(Verb::Start, Status::Stopped).contains("\"c1\""));
    }
}
