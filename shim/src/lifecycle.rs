//! The task and exec lifecycle state machines and containerd's event-ordering rules:
//! TaskCreate → TaskStart → TaskExit → TaskDelete; ExecAdded → ExecStarted → exit;
//! an exit is never published before its start, and exec exits come before the init's exit.
//! Pure logic: the service feeds it facts and publishes what it returns, in order.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: u32,
    pub status: u32,
    /// Unix time in nanoseconds.
    pub at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    Created,
    Running,
    Paused,
    Stopped(Exit),
    Deleted,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Transition {
    #[error("process {0} is already started")]
    AlreadyStarted(String),
    #[error("process {0} has exited")]
    Exited(String),
    #[error("process {0} is not running")]
    NotRunning(String),
    #[error("process {0} is still running")]
    StillRunning(String),
    #[error("process {0} was deleted")]
    Deleted(String),
    #[error("cannot start exec {0}: the container's init has exited")]
    InitGone(String),
    #[error("process {0} already finished")]
    Finished(String),
    #[error("process {0} is not started")]
    NotStarted(String),
}

/// What a Kill request signals, once the state allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillTarget {
    /// The init process (and with `all`, every process of the container's cgroup).
    Init { all: bool },
    /// Whatever is left in the cgroup of an init that has exited: nothing to signal is
    /// success, as `runc kill --all` on a stopped container exits 0.
    RemainingOfStoppedInit,
    /// One exec'd process.
    Exec,
}

impl ProcState {
    pub fn start(self, who: &str) -> Result<ProcState, Transition> {
        match self {
            ProcState::Created => Ok(ProcState::Running),
            ProcState::Running | ProcState::Paused => Err(Transition::AlreadyStarted(who.into())),
            ProcState::Stopped(_) => Err(Transition::Exited(who.into())),
            ProcState::Deleted => Err(Transition::Deleted(who.into())),
        }
    }
    pub fn pause(self, who: &str) -> Result<ProcState, Transition> {
        match self {
            ProcState::Running | ProcState::Created => Ok(ProcState::Paused),
            ProcState::Paused => Ok(ProcState::Paused),
            ProcState::Stopped(_) => Err(Transition::Exited(who.into())),
            ProcState::Deleted => Err(Transition::Deleted(who.into())),
        }
    }
    pub fn resume(self, who: &str) -> Result<ProcState, Transition> {
        match self {
            ProcState::Paused => Ok(ProcState::Running),
            _ => Err(Transition::NotRunning(who.into())),
        }
    }
    pub fn exit(self, e: Exit) -> ProcState {
        match self {
            ProcState::Deleted => ProcState::Deleted,
            _ => ProcState::Stopped(e),
        }
    }
    /// Delete is allowed for a process that never started or has exited.
    pub fn delete(self, who: &str) -> Result<ProcState, Transition> {
        match self {
            ProcState::Created | ProcState::Stopped(_) => Ok(ProcState::Deleted),
            ProcState::Running | ProcState::Paused => Err(Transition::StillRunning(who.into())),
            ProcState::Deleted => Err(Transition::Deleted(who.into())),
        }
    }
    /// Kill as containerd's runc shim answers it: a created or running init is signalled; an
    /// exited init is `Finished` (NotFound to containerd) unless `all` asks for what is left
    /// of its cgroup; an exec not started yet is `NotStarted` (FailedPrecondition), an exited
    /// one `Finished` (its pid may already belong to another process).
    ///
    /// containerd's `WithProcessKill` (CRI's exit handler and `ctr task delete -f` use it)
    /// sends Kill with `all` while its Wait on the same process is pending, and cancels that
    /// Wait as soon as Kill fails with FailedPrecondition: the shim's Wait reply then reaches
    /// a ttrpc stream containerd has dropped ("received message on inactive stream").
    pub fn kill(self, who: &str, init: bool, all: bool) -> Result<KillTarget, Transition> {
        match (self, init) {
            (ProcState::Created | ProcState::Running | ProcState::Paused, true) => {
                Ok(KillTarget::Init { all })
            }
            (ProcState::Stopped(_), true) if all => Ok(KillTarget::RemainingOfStoppedInit),
            (ProcState::Running | ProcState::Paused, false) => Ok(KillTarget::Exec),
            (ProcState::Created, false) => Err(Transition::NotStarted(who.into())),
            (ProcState::Stopped(_), _) => Err(Transition::Finished(who.into())),
            (ProcState::Deleted, _) => Err(Transition::Deleted(who.into())),
        }
    }
    pub fn exit_info(self) -> Option<Exit> {
        match self {
            ProcState::Stopped(e) => Some(e),
            _ => None,
        }
    }
}

/// What the service must publish, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emit {
    TaskStart {
        pid: u32,
    },
    ExecStarted {
        exec_id: String,
        pid: u32,
    },
    /// `exec_id` empty for the init.
    TaskExit {
        exec_id: String,
        exit: Exit,
    },
}

/// Orders start/exit events for one container.
#[derive(Debug, Default)]
pub struct EventGate {
    init_started: bool,
    held_init_exit: Option<Exit>,
    /// Execs whose ExecStarted is published and whose exit is not yet.
    running_execs: BTreeMap<String, ()>,
    /// Exits that arrived before the matching start was published.
    early_exec_exits: BTreeMap<String, Exit>,
    init_exit_published: bool,
}

impl EventGate {
    pub fn init_started(&mut self, pid: u32) -> Vec<Emit> {
        self.init_started = true;
        let mut out = vec![Emit::TaskStart { pid }];
        out.extend(self.flush_init());
        out
    }

    pub fn init_exited(&mut self, exit: Exit) -> Vec<Emit> {
        self.held_init_exit = Some(exit);
        self.flush_init()
    }

    /// The init exit goes out only after its start and after every started exec's exit.
    fn flush_init(&mut self) -> Vec<Emit> {
        if !self.init_started || !self.running_execs.is_empty() || self.init_exit_published {
            return vec![];
        }
        match self.held_init_exit.take() {
            Some(exit) => {
                self.init_exit_published = true;
                vec![Emit::TaskExit {
                    exec_id: String::new(),
                    exit,
                }]
            }
            None => vec![],
        }
    }

    pub fn exec_started(&mut self, exec_id: &str, pid: u32) -> Vec<Emit> {
        let mut out = vec![Emit::ExecStarted {
            exec_id: exec_id.into(),
            pid,
        }];
        match self.early_exec_exits.remove(exec_id) {
            Some(exit) => {
                out.push(Emit::TaskExit {
                    exec_id: exec_id.into(),
                    exit,
                });
                out.extend(self.flush_init());
            }
            None => {
                self.running_execs.insert(exec_id.into(), ());
            }
        }
        out
    }

    pub fn exec_exited(&mut self, exec_id: &str, exit: Exit) -> Vec<Emit> {
        if self.running_execs.remove(exec_id).is_none() {
            self.early_exec_exits.insert(exec_id.into(), exit);
            return vec![];
        }
        let mut out = vec![Emit::TaskExit {
            exec_id: exec_id.into(),
            exit,
        }];
        out.extend(self.flush_init());
        out
    }

    /// An exec that failed to start never gets a start event; forget it.
    pub fn exec_failed(&mut self, exec_id: &str) -> Vec<Emit> {
        self.early_exec_exits.remove(exec_id);
        self.running_execs.remove(exec_id);
        self.flush_init()
    }

    pub fn init_exit_published(&self) -> bool {
        self.init_exit_published
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(pid: u32, status: u32) -> Exit {
        Exit { pid, status, at: 1 }
    }

    #[test]
    fn kill_follows_runcs_shim() {
        let stopped = ProcState::Stopped(exit(10, 0));
        assert_eq!(
            ProcState::Created.kill("c", true, false),
            Ok(KillTarget::Init { all: false })
        );
        assert_eq!(
            ProcState::Running.kill("c", true, true),
            Ok(KillTarget::Init { all: true })
        );
        // containerd's WithProcessKill: kill --all on an exited init succeeds.
        assert_eq!(
            stopped.kill("c", true, true),
            Ok(KillTarget::RemainingOfStoppedInit)
        );
        assert_eq!(
            stopped.kill("c", true, false),
            Err(Transition::Finished("c".into()))
        );
        assert_eq!(
            ProcState::Running.kill("e", false, true),
            Ok(KillTarget::Exec)
        );
        assert_eq!(
            ProcState::Created.kill("e", false, false),
            Err(Transition::NotStarted("e".into()))
        );
        // An exited exec's pid may be reused: never signalled, with or without `all`.
        assert_eq!(
            stopped.kill("e", false, true),
            Err(Transition::Finished("e".into()))
        );
        assert_eq!(
            ProcState::Deleted.kill("c", true, true),
            Err(Transition::Deleted("c".into()))
        );
    }

    #[test]
    fn exit_before_start_is_held_until_start() {
        let mut g = EventGate::default();
        assert_eq!(g.init_exited(exit(10, 0)), vec![]);
        assert_eq!(
            g.init_started(10),
            vec![
                Emit::TaskStart { pid: 10 },
                Emit::TaskExit {
                    exec_id: "".into(),
                    exit: exit(10, 0)
                }
            ]
        );
    }

    #[test]
    fn exec_exits_come_before_the_init_exit() {
        let mut g = EventGate::default();
        g.init_started(10);
        assert_eq!(
            g.exec_started("e1", 20),
            vec![Emit::ExecStarted {
                exec_id: "e1".into(),
                pid: 20
            }]
        );
        g.exec_started("e2", 21);
        assert_eq!(g.init_exited(exit(10, 137)), vec![], "held while execs run");
        assert_eq!(
            g.exec_exited("e1", exit(20, 137)),
            vec![Emit::TaskExit {
                exec_id: "e1".into(),
                exit: exit(20, 137)
            }]
        );
        assert_eq!(
            g.exec_exited("e2", exit(21, 137)),
            vec![
                Emit::TaskExit {
                    exec_id: "e2".into(),
                    exit: exit(21, 137)
                },
                Emit::TaskExit {
                    exec_id: "".into(),
                    exit: exit(10, 137)
                }
            ]
        );
        assert!(g.init_exit_published());
    }

    #[test]
    fn exec_exit_before_exec_started_is_held() {
        let mut g = EventGate::default();
        g.init_started(10);
        assert_eq!(g.exec_exited("e1", exit(20, 3)), vec![]);
        assert_eq!(
            g.exec_started("e1", 20),
            vec![
                Emit::ExecStarted {
                    exec_id: "e1".into(),
                    pid: 20
                },
                Emit::TaskExit {
                    exec_id: "e1".into(),
                    exit: exit(20, 3)
                }
            ]
        );
    }

    #[test]
    fn init_exit_is_published_once() {
        let mut g = EventGate::default();
        g.init_started(10);
        assert_eq!(g.init_exited(exit(10, 0)).len(), 1);
        assert_eq!(g.init_exited(exit(10, 0)), vec![]);
    }

    #[test]
    fn failed_exec_does_not_block_the_init_exit() {
        let mut g = EventGate::default();
        g.init_started(10);
        g.init_exited(exit(10, 1));
        assert_eq!(g.exec_failed("e1"), vec![]);
        let mut g = EventGate::default();
        g.init_started(10);
        g.exec_started("e1", 20);
        assert_eq!(g.init_exited(exit(10, 1)), vec![]);
        assert_eq!(
            g.exec_failed("e1"),
            vec![Emit::TaskExit {
                exec_id: "".into(),
                exit: exit(10, 1)
            }]
        );
    }

    #[test]
    fn illegal_transitions_are_typed_errors() {
        assert_eq!(
            ProcState::Running.start("c"),
            Err(Transition::AlreadyStarted("c".into()))
        );
        assert_eq!(
            ProcState::Running.delete("c"),
            Err(Transition::StillRunning("c".into()))
        );
        assert_eq!(
            ProcState::Stopped(exit(1, 0)).start("c"),
            Err(Transition::Exited("c".into()))
        );
        assert_eq!(
            ProcState::Created.resume("c"),
            Err(Transition::NotRunning("c".into()))
        );
        assert_eq!(ProcState::Created.start("c"), Ok(ProcState::Running));
        assert_eq!(
            ProcState::Running.exit(exit(1, 2)).delete("c"),
            Ok(ProcState::Deleted)
        );
        assert_eq!(ProcState::Deleted.exit(exit(1, 2)), ProcState::Deleted);
    }
}
