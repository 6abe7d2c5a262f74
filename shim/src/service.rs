//! containerd's Task API (v2) over the husk runtime core. One shim serves every container of
//! a pod. The container map lock is only held for lookups, never across creation; runtime
//! calls that fork run on blocking threads under the reaper's spawn guard.

use crate::console::{ConsoleSocket, CONSOLE_WAIT};
use crate::events::{Event, Publisher};
use crate::io::ProcessIo;
use crate::lifecycle::{Emit, EventGate, Exit, KillTarget, ProcState, Transition};
use async_trait::async_trait;
use containerd_shim_protos::api;
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::shim::oci::ProcessDetails;
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::ttrpc::{self, r#async::TtrpcContext, Code};
use husk_runtime::{Container, Runtime};
use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};

type TResult<T> = ttrpc::Result<T>;

fn status(code: Code, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}

fn from_runtime(e: husk_runtime::Error) -> ttrpc::Error {
    use husk_runtime::Error as E;
    let code = match &e {
        E::NotFound(_) => Code::NOT_FOUND,
        E::AlreadyExists(_) => Code::ALREADY_EXISTS,
        E::IllegalState { .. } => Code::FAILED_PRECONDITION,
        E::InvalidId(_) | E::Spec { .. } | E::Config { .. } => Code::INVALID_ARGUMENT,
        E::Unsupported { .. } => Code::UNIMPLEMENTED,
        _ => Code::UNKNOWN,
    };
    status(code, e.to_string())
}

fn from_transition(e: Transition) -> ttrpc::Error {
    let code = match e {
        Transition::Deleted(_) | Transition::Finished(_) => Code::NOT_FOUND,
        _ => Code::FAILED_PRECONDITION,
    };
    status(code, e.to_string())
}

struct Proc {
    pid: u32,
    state: ProcState,
    stdin: String,
    stdout: String,
    stderr: String,
    terminal: bool,
    io: Option<ProcessIo>,
    /// CloseIO on stdin came (possibly before Start set up the IO: ctr closes stdin as soon
    /// as its own input ends, which can be while Start is still running).
    stdin_closed: bool,
    console: Option<OwnedFd>,
    exit: watch::Sender<Option<Exit>>,
    spec: Option<oci_spec::runtime::Process>,
}

impl Proc {
    fn new(stdin: &str, stdout: &str, stderr: &str, terminal: bool) -> Proc {
        Proc {
            pid: 0,
            state: ProcState::Created,
            stdin: stdin.into(),
            stdout: stdout.into(),
            stderr: stderr.into(),
            terminal,
            io: None,
            stdin_closed: false,
            console: None,
            exit: watch::channel(None).0,
            spec: None,
        }
    }
}

struct Ctr {
    id: String,
    bundle: PathBuf,
    rootfs_mounted: bool,
    container: Container,
    init: Proc,
    execs: HashMap<String, Proc>,
    gate: EventGate,
    oom_published: bool,
    /// The shim's `oom::ParentLedger`.
    oom_ledger: crate::oom::ParentLedger,
}

impl Ctr {
    /// The container's cgroup v2 directory (`None` on v1).
    fn v2_dir(&self) -> Option<PathBuf> {
        let paths = &self.container.persisted().cgroup;
        paths.v2.then(|| paths.dirs.get("").cloned()).flatten()
    }

    /// Whether the init, which exited with `status`, was OOM-killed: the cgroup's own count,
    /// or (cgroup v2, the cgroup already removed by systemd, the init SIGKILLed) a kill its
    /// parent counted that no other container of the pod accounts for.
    fn init_oom_killed(&self, status: u32) -> bool {
        let Some(dir) = self.v2_dir() else {
            return self.container.cgroup().oom_kill_count() > 0;
        };
        match crate::oom::v2_oom_kills(&dir) {
            Some(n) => {
                if n > 0 {
                    self.oom_ledger.absorb(&dir);
                }
                n > 0
            }
            None => {
                let claimed = status == 128 + libc::SIGKILL as u32 && self.oom_ledger.claim(&dir);
                if claimed {
                    tracing::info!(id = %self.id, "OOM kill counted by the parent cgroup (the container's was already removed)");
                }
                claimed
            }
        }
    }

    fn process_mut(&mut self, exec_id: &str) -> TResult<&mut Proc> {
        if exec_id.is_empty() {
            return Ok(&mut self.init);
        }
        self.execs
            .get_mut(exec_id)
            .ok_or_else(|| status(Code::NOT_FOUND, format!("exec {exec_id} not found")))
    }

    /// The init (empty exec id) or one of the execs.
    fn process(&self, exec_id: &str) -> TResult<&Proc> {
        if exec_id.is_empty() {
            return Ok(&self.init);
        }
        self.execs
            .get(exec_id)
            .ok_or_else(|| status(Code::NOT_FOUND, format!("exec {exec_id} not found")))
    }
}

#[derive(Clone)]
pub struct Service {
    namespace: String,
    runtime: Arc<Runtime>,
    containers: Arc<Mutex<HashMap<String, Arc<Mutex<Ctr>>>>>,
    /// Creates in flight: their containers are not in `containers` yet, and the shim must
    /// not end under them.
    creating: Arc<AtomicUsize>,
    /// OOM kills of the pod's parent cgroup already accounted for (`oom::ParentLedger`).
    oom_ledger: crate::oom::ParentLedger,
    events: Publisher,
    pub shutdown: Arc<Notify>,
}

/// How long a shim serving no container waits, after containerd asked it for a task it never
/// had, before it ends itself (`Service::end_if_orphaned`). containerd's Create follows its
/// Connect within milliseconds when both are legitimate.
pub const ORPHAN_GRACE_AFTER_CONNECT: Duration = Duration::from_secs(5);

/// How long a freshly started shim waits for its first Create before it ends itself:
/// containerd sends it right after `start` returns; only a containerd that died in between
/// (and never came back to ask) leaves a shim without one.
pub const ORPHAN_GRACE_AFTER_START: Duration = Duration::from_secs(60);

impl Service {
    pub fn new(namespace: String, runtime: Runtime, events: Publisher) -> Service {
        Service {
            namespace,
            runtime: Arc::new(runtime),
            containers: Default::default(),
            creating: Default::default(),
            oom_ledger: Default::default(),
            events,
            shutdown: Arc::new(Notify::new()),
        }
    }

    /// After `grace`, ends the shim if it serves no container and creates none: it was
    /// started for a Create that never came. containerd starts a shim, then sends Create; if
    /// it dies in between, the shim has no task, and containerd 1.6, once restarted, loads it
    /// as a task anyway (its Connect answers) and keeps it for ever, with its bundle;
    /// containerd 1.7+ ends such a "leaky shim" itself (containerd#6860). Ending lets
    /// containerd's dead-shim cleanup (the `delete` action, the bundle) run.
    pub fn end_if_orphaned(&self, grace: Duration, why: &'static str) {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if this.is_empty() {
                tracing::warn!(namespace = %this.namespace, why, "no container to serve: ending");
                this.shutdown.notify_one();
            }
        });
    }

    /// No container served and none being created.
    fn is_empty(&self) -> bool {
        self.creating.load(Ordering::SeqCst) == 0 && self.containers.lock().unwrap().is_empty()
    }

    fn get(&self, id: &str) -> TResult<Arc<Mutex<Ctr>>> {
        self.containers
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| status(Code::NOT_FOUND, format!("container {id} not found")))
    }

    fn publish_emits(&self, ctr: &mut Ctr, emits: Vec<Emit>) {
        publish_emits(&self.events, ctr, emits);
    }
}

fn publish_emits(events: &Publisher, ctr: &mut Ctr, emits: Vec<Emit>) {
    for e in emits {
        match e {
            Emit::TaskStart { pid } => events.publish(Event::Start(ev::TaskStart {
                container_id: ctr.id.clone(),
                pid,
                ..Default::default()
            })),
            Emit::ExecStarted { exec_id, pid } => {
                events.publish(Event::ExecStarted(ev::TaskExecStarted {
                    container_id: ctr.id.clone(),
                    exec_id,
                    pid,
                    ..Default::default()
                }))
            }
            Emit::TaskExit { exec_id, exit } => {
                if exec_id.is_empty() && !ctr.oom_published && ctr.init_oom_killed(exit.status) {
                    // Checked synchronously so CRI sees OOMKilled, never a bare Error.
                    ctr.oom_published = true;
                    events.publish(Event::Oom(ev::TaskOOM {
                        container_id: ctr.id.clone(),
                        ..Default::default()
                    }));
                }
                let id = if exec_id.is_empty() {
                    ctr.id.clone()
                } else {
                    exec_id
                };
                events.publish(Event::Exit(ev::TaskExit {
                    container_id: ctr.id.clone(),
                    id,
                    pid: exit.pid,
                    exit_status: exit.status,
                    exited_at: MessageField::some(crate::events::ts(exit.at)),
                    ..Default::default()
                }));
            }
        }
    }
}

/// Waits for a process's exit and feeds it through the state machine. The exit is reported
/// (and the zombie reaped, so its pid cannot be reused meanwhile) only once the process's
/// output has reached containerd: see `io::spawn_copy`.
fn spawn_exit_watch(
    events: Publisher,
    ctr: Arc<Mutex<Ctr>>,
    exec_id: String,
    pid: i32,
    pidfd: OwnedFd,
    output: Vec<watch::Receiver<u64>>,
) {
    tokio::spawn(async move {
        let is_init = exec_id.is_empty();
        let before_reap = async {
            {
                let c = ctr.lock().unwrap();
                if is_init && !c.container.persisted().new_pid_ns {
                    // No pid namespace of its own: nothing else kills the rest when init
                    // dies, and the rest may hold its output pipes open.
                    let _ = c.container.kill(Signal::SIGKILL, true);
                }
            }
            crate::io::flushed(output).await;
        };
        let code = crate::reaper::wait(pid, pidfd, before_reap).await;
        let exit = Exit {
            pid: pid as u32,
            status: code,
            at: crate::events::now_nanos(),
        };
        let mut c = ctr.lock().unwrap();
        tracing::info!(id = %c.id, exec_id = %exec_id, pid, status = code, "process exited");
        let emits = if is_init {
            c.init.state = c.init.state.exit(exit);
            let _ = c.init.exit.send_replace(Some(exit));
            c.gate.init_exited(exit)
        } else {
            let Some(p) = c.execs.get_mut(&exec_id) else {
                return;
            };
            p.state = p.state.exit(exit);
            let _ = p.exit.send_replace(Some(exit));
            c.gate.exec_exited(&exec_id, exit)
        };
        publish_emits(&events, &mut c, emits);
    });
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> TResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| status(Code::INTERNAL, format!("task: {e}")))
}

/// runc refuses a console socket for a process without a terminal, and a terminal without a
/// console socket ("cannot use console socket if runc will not detach or allocate tty"), so
/// containerd's runc shim fails such a Create; husk refuses it before creating anything.
fn check_terminal(bundle: &std::path::Path, requested: bool) -> Result<(), String> {
    let config = bundle.join("config.json");
    let Ok(data) = std::fs::read(&config) else {
        return Ok(()); // the runtime reports a missing or unreadable config.json
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) else {
        return Ok(());
    };
    let in_spec = v
        .pointer("/process/terminal")
        .and_then(|t| t.as_bool())
        .unwrap_or(false);
    if in_spec != requested {
        return Err(format!(
            "the request's terminal ({requested}) differs from process.terminal ({in_spec}) in {}",
            config.display()
        ));
    }
    Ok(())
}

/// The console socket for a process with a terminal, in containerd's socket directory.
fn console_socket(terminal: bool) -> TResult<Option<ConsoleSocket>> {
    if !terminal {
        return Ok(None);
    }
    ConsoleSocket::bind(std::path::Path::new(crate::manager::SOCKET_DIR))
        .map(Some)
        .map_err(|e| status(Code::INTERNAL, e.to_string()))
}

/// The pty master from `sock` (bounded by `CONSOLE_WAIT`) and the IO copying it to the
/// process's stdio: the master is kept for ResizePty.
async fn receive_terminal(
    sock: ConsoleSocket,
    stdin: String,
    stdout: String,
) -> Result<(OwnedFd, ProcessIo), String> {
    let master = blocking(move || sock.receive(CONSOLE_WAIT))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let reader = master
        .try_clone()
        .map_err(|e| format!("dup pty master: {e}"))?;
    let io = crate::io::setup_terminal(reader, &stdin, &stdout)?;
    Ok((master, io))
}

/// Kills and reaps a process the shim gives up on before its exit is watched (bounded: a
/// SIGKILLed process exits at once unless the kernel is stuck, and then the orphan reaper
/// takes it later).
async fn kill_and_reap(pid: i32, pidfd: OwnedFd) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    if tokio::time::timeout(
        CONSOLE_WAIT,
        crate::reaper::wait(pid, pidfd, std::future::ready(())),
    )
    .await
    .is_err()
    {
        tracing::warn!(pid, "killed process did not exit in time");
    }
}

fn task_status(s: ProcState, paused: bool) -> api::Status {
    match s {
        ProcState::Created => api::Status::CREATED,
        ProcState::Running if paused => api::Status::PAUSED,
        ProcState::Running => api::Status::RUNNING,
        ProcState::Paused => api::Status::PAUSED,
        ProcState::Stopped(_) | ProcState::Deleted => api::Status::STOPPED,
    }
}

async fn drain(io: Option<ProcessIo>) {
    if let Some(io) = io {
        // Output already in the pipes is copied before the process is reported deleted (the
        // exit already waited for it, so this is normally immediate). A stalled copy keeps
        // running on its own; Delete must answer within containerd's deadline.
        crate::io::flushed(io.progress()).await;
    }
}

#[async_trait]
impl Task for Service {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TResult<api::CreateTaskResponse> {
        let this = self.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.creating.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let id = req.id.clone();
            let r = this.create_now(req).await;
            this.creating.fetch_sub(1, Ordering::SeqCst);
            if let Err(Ok(_)) = tx.send(r) {
                this.discard_unacknowledged(id).await;
            }
        });
        rx.await
            .map_err(|e| status(Code::INTERNAL, format!("create: {e}")))?
    }

    async fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TResult<api::StartResponse> {
        let this = self.clone();
        detached(async move { this.start_now(req).await }).await
    }

    async fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TResult<api::StateResponse> {
        let ctr = self.get(&req.id)?;
        let c = ctr.lock().unwrap();
        let p = c.process(&req.exec_id)?;
        let paused = req.exec_id.is_empty()
            && matches!(p.state, ProcState::Running)
            && c.container.cgroup().is_frozen();
        let mut r = api::StateResponse {
            id: if req.exec_id.is_empty() {
                req.id.clone()
            } else {
                req.exec_id.clone()
            },
            bundle: c.bundle.display().to_string(),
            pid: p.pid,
            stdin: p.stdin.clone(),
            stdout: p.stdout.clone(),
            stderr: p.stderr.clone(),
            terminal: p.terminal,
            exec_id: req.exec_id.clone(),
            ..Default::default()
        };
        r.status = task_status(p.state, paused).into();
        if let Some(e) = p.state.exit_info() {
            r.exit_status = e.status;
            r.exited_at = MessageField::some(crate::events::ts(e.at));
        }
        Ok(r)
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TResult<api::DeleteResponse> {
        let this = self.clone();
        detached(async move { this.delete_now(req).await }).await
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TResult<api::PidsResponse> {
        let ctr = self.get(&req.id)?;
        let c = ctr.lock().unwrap();
        let pids = c.container.pids().map_err(from_runtime)?;
        let exec_of: HashMap<u32, String> =
            c.execs.iter().map(|(k, p)| (p.pid, k.clone())).collect();
        let processes = pids
            .into_iter()
            .map(|pid| {
                let mut info = api::ProcessInfo {
                    pid: pid as u32,
                    ..Default::default()
                };
                if let Some(exec_id) = exec_of.get(&(pid as u32)) {
                    let d = ProcessDetails {
                        exec_id: exec_id.clone(),
                        ..Default::default()
                    };
                    info.info = MessageField::some(crate::events::any_of(
                        "containerd.runc.v1.ProcessDetails",
                        &d,
                    ));
                }
                info
            })
            .collect();
        Ok(api::PidsResponse {
            processes,
            ..Default::default()
        })
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TResult<api::Empty> {
        self.freeze_init(&req.id, true).await?;
        self.events.publish(Event::Paused(ev::TaskPaused {
            container_id: req.id.clone(),
            ..Default::default()
        }));
        Ok(api::Empty::new())
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TResult<api::Empty> {
        self.freeze_init(&req.id, false).await?;
        self.events.publish(Event::Resumed(ev::TaskResumed {
            container_id: req.id.clone(),
            ..Default::default()
        }));
        Ok(api::Empty::new())
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: api::CheckpointTaskRequest,
    ) -> TResult<api::Empty> {
        Err(status(
            Code::UNIMPLEMENTED,
            "checkpoint is not supported by husk yet (no CRIU)",
        ))
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TResult<api::Empty> {
        tracing::info!(id = %req.id, exec_id = %req.exec_id, signal = req.signal, all = req.all, "kill");
        let ctr = self.get(&req.id)?;
        // Any number 1..=64: real-time signals have no nix `Signal`.
        let sig = husk_runtime::Signal::new(req.signal as i32).map_err(|_| {
            status(
                Code::INVALID_ARGUMENT,
                format!("unknown signal {}", req.signal),
            )
        })?;
        // Every process of the cgroup: signalled on a blocking thread with no lock held (a
        // SIGKILL on cgroup v1 freezes the cgroup around it, which waits for the kernel).
        let cgroup = {
            let c = ctr.lock().unwrap();
            let (pid, state) = c.process(&req.exec_id).map(|p| (p.pid, p.state))?;
            let who = if req.exec_id.is_empty() {
                &req.id
            } else {
                &req.exec_id
            };
            match state
                .kill(who, req.exec_id.is_empty(), req.all)
                .map_err(from_transition)?
            {
                // A created init counts as running for kill (containerd kills before delete).
                KillTarget::Init { all: false } => {
                    c.container.kill(sig, false).map_err(from_runtime)?;
                    None
                }
                KillTarget::Init { all: true } | KillTarget::RemainingOfStoppedInit => {
                    Some(c.container.cgroup())
                }
                // Start has not learnt the pid yet (kill(0) would signal the shim's own group).
                KillTarget::Exec if pid == 0 => {
                    return Err(from_transition(Transition::NotStarted(who.clone())))
                }
                KillTarget::Exec => {
                    sig.send(pid as i32)
                        .map_err(|e| status(Code::NOT_FOUND, format!("kill {pid}: {e}")))?;
                    None
                }
            }
        };
        if let Some(cgroup) = cgroup {
            blocking(move || cgroup.signal_all(sig))
                .await?
                .map_err(from_runtime)?;
        }
        Ok(api::Empty::new())
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TResult<api::Empty> {
        tracing::info!(id = %req.id, exec_id = %req.exec_id, "exec");
        crate::residency::touch();
        let ctr = self.get(&req.id)?;
        let mut spec: oci_spec::runtime::Process = serde_json::from_slice(&req.spec.value)
            .map_err(|e| status(Code::INVALID_ARGUMENT, format!("exec spec: {e}")))?;
        // The request's terminal flag wins over the process JSON's, as in containerd's runc
        // shim: containerd's client may set one and not the other.
        spec.set_terminal(Some(req.terminal));
        let mut c = ctr.lock().unwrap();
        if c.execs.contains_key(&req.exec_id) {
            return Err(status(
                Code::ALREADY_EXISTS,
                format!("exec {} already exists", req.exec_id),
            ));
        }
        if matches!(c.init.state, ProcState::Stopped(_) | ProcState::Deleted) {
            return Err(from_transition(Transition::InitGone(req.exec_id.clone())));
        }
        let mut p = Proc::new(&req.stdin, &req.stdout, &req.stderr, req.terminal);
        p.spec = Some(spec);
        c.execs.insert(req.exec_id.clone(), p);
        self.events.publish(Event::ExecAdded(ev::TaskExecAdded {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        }));
        Ok(api::Empty::new())
    }

    async fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TResult<api::Empty> {
        let ctr = self.get(&req.id)?;
        let c = ctr.lock().unwrap();
        let p = c.process(&req.exec_id)?;
        // A process without a terminal has nothing to resize: success, as runc's shim answers
        // (clients resize unconditionally).
        if let Some(console) = &p.console {
            husk_runtime::tty::set_size(console, req.height as u16, req.width as u16)
                .map_err(from_runtime)?;
        }
        Ok(api::Empty::new())
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TResult<api::Empty> {
        let ctr = self.get(&req.id)?;
        let mut c = ctr.lock().unwrap();
        let p = c.process_mut(&req.exec_id)?;
        if req.stdin {
            p.stdin_closed = true;
            if let Some(io) = &mut p.io {
                io.close_stdin();
            }
        }
        Ok(api::Empty::new())
    }

    async fn update(
        &self,
        _ctx: &TtrpcContext,
        req: api::UpdateTaskRequest,
    ) -> TResult<api::Empty> {
        self.get(&req.id)?;
        let res: oci_spec::runtime::LinuxResources =
            serde_json::from_slice(&req.resources.value)
                .map_err(|e| status(Code::INVALID_ARGUMENT, format!("resources: {e}")))?;
        // A fresh handle on a blocking thread: with the systemd driver this talks D-Bus.
        let (rt, id) = (self.runtime.clone(), req.id.clone());
        blocking(move || rt.load(&id)?.update(&res))
            .await?
            .map_err(from_runtime)?;
        Ok(api::Empty::new())
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TResult<api::WaitResponse> {
        let ctr = self.get(&req.id)?;
        let mut rx = {
            let c = ctr.lock().unwrap();
            let p = c.process(&req.exec_id)?;
            p.exit.subscribe()
        };
        let exit = loop {
            if let Some(e) = *rx.borrow_and_update() {
                break e;
            }
            if rx.changed().await.is_err() {
                return Err(status(Code::NOT_FOUND, "process is gone"));
            }
        };
        Ok(api::WaitResponse {
            exit_status: exit.status,
            exited_at: MessageField::some(crate::events::ts(exit.at)),
            ..Default::default()
        })
    }

    async fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TResult<api::StatsResponse> {
        let ctr = self.get(&req.id)?;
        let paths = ctr.lock().unwrap().container.persisted().cgroup.clone();
        // kubelet polls every few seconds: without this the code a poll faulted in would stay
        // resident for the pod's whole life (until its next lifecycle call).
        crate::residency::touch();
        Ok(api::StatsResponse {
            stats: MessageField::some(crate::metrics::collect(&paths)),
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TResult<api::ConnectResponse> {
        let task_pid = self
            .containers
            .lock()
            .unwrap()
            .get(&req.id)
            .map(|c| c.lock().unwrap().init.pid);
        // A restarted containerd asking for a task this empty shim never had: the Create it
        // was started for never came (answered as runc's shim does, then ended).
        if task_pid.is_none() && self.is_empty() {
            self.end_if_orphaned(
                ORPHAN_GRACE_AFTER_CONNECT,
                "connect for a task never created",
            );
        }
        let task_pid = task_pid.unwrap_or(0);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        })
    }

    async fn shutdown(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ShutdownRequest,
    ) -> TResult<api::Empty> {
        self.shutdown_if_empty();
        Ok(api::Empty::new())
    }
}

/// The work of the requests that create, start and delete processes, run by `detached`.
impl Service {
    /// A Create that completed after its request was dropped — containerd died or gave up
    /// mid-call — made a container nobody learnt of: the restarted containerd treats a shim
    /// without tasks as leaky and shuts it down, and the CRI never lists the pod, so nothing
    /// would ever delete it. It is deleted here (its init killed, rootfs unmounted, cgroup and
    /// state removed), and a shim left with no container exits, as after Shutdown.
    async fn discard_unacknowledged(&self, id: String) {
        tracing::warn!(%id, "create: the caller left before the reply; deleting the container");
        let req = api::DeleteRequest {
            id: id.clone(),
            ..Default::default()
        };
        if let Err(e) = self.delete_now(req).await {
            tracing::warn!(%id, error = %e, "delete of an unacknowledged container");
        }
        self.shutdown_if_empty();
    }

    /// Pause (`frozen`) or Resume: the init's transition checked, then the cgroup frozen or
    /// thawed. The freeze waits for the kernel (up to FREEZE_TIMEOUT): on a blocking thread,
    /// with no lock held, so the shim's other calls (stats polls, other containers) go on.
    /// The transition is applied afterwards unless the init exited meanwhile (its exit stands).
    async fn freeze_init(&self, id: &str, frozen: bool) -> TResult<()> {
        let transition = |s: ProcState| if frozen { s.pause(id) } else { s.resume(id) };
        let ctr = self.get(id)?;
        let cgroup = {
            let c = ctr.lock().unwrap();
            transition(c.init.state).map_err(from_transition)?;
            if frozen {
                c.container.prepare_pause()
            } else {
                c.container.prepare_resume()
            }
            .map_err(from_runtime)?
        };
        blocking(move || cgroup.freeze(frozen))
            .await?
            .map_err(from_runtime)?;
        let mut c = ctr.lock().unwrap();
        if let Ok(state) = transition(c.init.state) {
            c.init.state = state;
        }
        Ok(())
    }

    /// Ends the shim once it serves no container (Shutdown's rule).
    fn shutdown_if_empty(&self) {
        if self.is_empty() {
            tracing::info!(namespace = %self.namespace, "shutdown: no containers left");
            self.shutdown.notify_one();
        }
    }

    async fn create_now(&self, req: api::CreateTaskRequest) -> TResult<api::CreateTaskResponse> {
        tracing::info!(id = %req.id, bundle = %req.bundle, "create");
        crate::residency::touch();
        if self.containers.lock().unwrap().contains_key(&req.id) {
            return Err(status(
                Code::ALREADY_EXISTS,
                format!("container {} already exists", req.id),
            ));
        }
        if !req.checkpoint.is_empty() {
            return Err(status(
                Code::UNIMPLEMENTED,
                "checkpoint/restore is not supported by husk yet",
            ));
        }
        let bundle = PathBuf::from(&req.bundle);
        check_terminal(&bundle, req.terminal).map_err(|e| status(Code::INVALID_ARGUMENT, e))?;
        let rootfs = bundle.join("rootfs");
        crate::mount::mount_rootfs(&req.rootfs, &rootfs).map_err(|e| status(Code::INTERNAL, e))?;
        let fail = |e: ttrpc::Error| {
            if !req.rootfs.is_empty() {
                crate::mount::unmount_rootfs(&rootfs);
            }
            e
        };
        let mut io = if req.terminal {
            ProcessIo::default()
        } else {
            crate::io::setup(
                &req.stdin,
                &req.stdout,
                &req.stderr,
                &crate::io::Owner {
                    id: req.id.clone(),
                    namespace: self.namespace.clone(),
                },
            )
            .map_err(|e| fail(status(Code::INVALID_ARGUMENT, e)))?
        };
        let console = console_socket(req.terminal).map_err(fail)?;
        let cgroup_driver = req
            .options
            .as_ref()
            .map(|a| {
                crate::options::RuntimeOptions::from_any(&husk_proto::Any {
                    type_url: a.type_url.clone(),
                    value: a.value.clone(),
                })
            })
            .transpose()
            .and_then(|o| Ok(o.map(|o| o.cgroup_driver()).transpose()?.flatten()))
            .map_err(|e| fail(status(Code::INVALID_ARGUMENT, e.to_string())))?;
        let rt = self.runtime.clone();
        let id = req.id.clone();
        let opts = husk_runtime::CreateOptions {
            bundle: bundle.clone(),
            console_socket: console.as_ref().map(|c| c.path().to_path_buf()),
            stdio: husk_runtime::StdioFds {
                stdin: io.stdin.take(),
                stdout: io.stdout.take(),
                stderr: io.stderr.take(),
            },
            cgroup_driver,
            ..Default::default()
        };
        let created = blocking(move || {
            let _g = crate::reaper::spawn_guard();
            let c = rt.create(&id, opts)?;
            let pidfd = crate::reaper::watch_pid(c.pid())
                .map_err(|e| husk_runtime::Error::Init(format!("pidfd: {e}")))?;
            Ok::<_, husk_runtime::Error>((c, pidfd))
        })
        .await
        .map_err(fail)?;
        let (container, pidfd) = match created {
            Ok(x) => x,
            Err(e) => return Err(fail(from_runtime(e))),
        };
        let pid = container.pid();
        let mut init = Proc::new(&req.stdin, &req.stdout, &req.stderr, req.terminal);
        init.pid = pid as u32;
        let mut pidfd = Some(pidfd);
        if let Some(sock) = console {
            match receive_terminal(sock, req.stdin.clone(), req.stdout.clone()).await {
                Ok((master, tio)) => {
                    init.console = Some(master);
                    io = tio;
                }
                Err(e) => {
                    // Nothing may stay behind a failed Create: the init, its cgroup, state
                    // and the rootfs mount go.
                    let (rt, id) = (self.runtime.clone(), req.id.clone());
                    let _ = blocking(move || {
                        let _g = crate::reaper::spawn_guard();
                        rt.load(&id).and_then(|c| c.delete(true))
                    })
                    .await;
                    if let Some(fd) = pidfd.take() {
                        kill_and_reap(pid, fd).await;
                    }
                    return Err(fail(status(Code::INTERNAL, e)));
                }
            }
        }
        let pidfd = pidfd.take().expect("pidfd kept until the exit watch");
        let output = io.progress();
        init.io = Some(io);
        let cgroup_paths = container.persisted().cgroup.clone();
        let ctr = Arc::new(Mutex::new(Ctr {
            id: req.id.clone(),
            bundle: bundle.clone(),
            rootfs_mounted: !req.rootfs.is_empty(),
            container,
            init,
            execs: HashMap::new(),
            gate: EventGate::default(),
            oom_published: false,
            oom_ledger: self.oom_ledger.clone(),
        }));
        if let Some(dir) = ctr.lock().unwrap().v2_dir() {
            self.oom_ledger.absorb(&dir);
        }
        self.containers
            .lock()
            .unwrap()
            .insert(req.id.clone(), ctr.clone());
        self.events.publish(Event::Create(ev::TaskCreate {
            container_id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: MessageField::some(ev::TaskIO {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
                ..Default::default()
            }),
            checkpoint: req.checkpoint.clone(),
            pid: pid as u32,
            ..Default::default()
        }));
        // OOM watching starts now: the cgroup holds the waiting init.
        let (events, oc, cid) = (self.events.clone(), ctr.clone(), req.id.clone());
        if let Err(e) = crate::oom::watch(&cgroup_paths, move || {
            let mut c = oc.lock().unwrap();
            if !c.oom_published || c.gate.init_exit_published() {
                c.oom_published = true;
                if let Some(dir) = c.v2_dir() {
                    c.oom_ledger.absorb(&dir);
                }
                events.publish(Event::Oom(ev::TaskOOM {
                    container_id: cid.clone(),
                    ..Default::default()
                }));
            }
        }) {
            tracing::warn!(id = %req.id, error = %e, "OOM notifications unavailable");
        }
        spawn_exit_watch(self.events.clone(), ctr, String::new(), pid, pidfd, output);
        Ok(api::CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    async fn start_now(&self, req: api::StartRequest) -> TResult<api::StartResponse> {
        tracing::info!(id = %req.id, exec_id = %req.exec_id, "start");
        crate::residency::touch();
        let ctr = self.get(&req.id)?;
        if req.exec_id.is_empty() {
            {
                let mut c = ctr.lock().unwrap();
                c.init.state = c.init.state.start(&req.id).map_err(from_transition)?;
            }
            let (rt, id) = (self.runtime.clone(), req.id.clone());
            // A fresh handle: the container lock is never held across blocking work.
            let r = blocking(move || {
                let _g = crate::reaper::spawn_guard();
                rt.load(&id)?.start()
            })
            .await?;
            let mut c = ctr.lock().unwrap();
            if let Err(e) = r {
                return Err(from_runtime(e));
            }
            let pid = c.init.pid;
            let emits = c.gate.init_started(pid);
            self.publish_emits(&mut c, emits);
            return Ok(api::StartResponse {
                pid,
                ..Default::default()
            });
        }
        // An exec.
        let (spec, stdin, stdout, stderr, terminal) = {
            let mut c = ctr.lock().unwrap();
            if matches!(c.init.state, ProcState::Stopped(_) | ProcState::Deleted) {
                return Err(from_transition(Transition::InitGone(req.exec_id.clone())));
            }
            let p = c.execs.get_mut(&req.exec_id).ok_or_else(|| {
                status(Code::NOT_FOUND, format!("exec {} not found", req.exec_id))
            })?;
            p.state = p.state.start(&req.exec_id).map_err(from_transition)?;
            (
                p.spec.clone().unwrap_or_default(),
                p.stdin.clone(),
                p.stdout.clone(),
                p.stderr.clone(),
                p.terminal,
            )
        };
        let fail_exec = |ctr: &Arc<Mutex<Ctr>>, events: &Publisher, e: ttrpc::Error| {
            let mut c = ctr.lock().unwrap();
            c.execs.remove(&req.exec_id);
            let emits = c.gate.exec_failed(&req.exec_id);
            publish_emits(events, &mut c, emits);
            e
        };
        let mut io = if terminal {
            ProcessIo::default()
        } else {
            match crate::io::setup(
                &stdin,
                &stdout,
                &stderr,
                &crate::io::Owner {
                    id: req.id.clone(),
                    namespace: self.namespace.clone(),
                },
            ) {
                Ok(io) => io,
                Err(e) => {
                    return Err(fail_exec(
                        &ctr,
                        &self.events,
                        status(Code::INVALID_ARGUMENT, e),
                    ))
                }
            }
        };
        let console = match console_socket(terminal) {
            Ok(c) => c,
            Err(e) => return Err(fail_exec(&ctr, &self.events, e)),
        };
        let opts = husk_runtime::ExecOptions {
            process: spec,
            console_socket: console.as_ref().map(|c| c.path().to_path_buf()),
            stdio: husk_runtime::StdioFds {
                stdin: io.stdin.take(),
                stdout: io.stdout.take(),
                stderr: io.stderr.take(),
            },
            ..Default::default()
        };
        let (rt, id) = (self.runtime.clone(), req.id.clone());
        let r = blocking(move || {
            let _g = crate::reaper::spawn_guard();
            let container = rt.load(&id)?;
            let pid = rt.exec(&container, opts)?;
            let pidfd = crate::reaper::watch_pid(pid)
                .map_err(|e| husk_runtime::Error::Init(format!("pidfd: {e}")))?;
            Ok::<_, husk_runtime::Error>((pid, pidfd))
        })
        .await?;
        let (pid, pidfd) = match r {
            Ok(x) => x,
            Err(e) => return Err(fail_exec(&ctr, &self.events, from_runtime(e))),
        };
        if let Some(sock) = console {
            match receive_terminal(sock, stdin, stdout).await {
                Ok((master, tio)) => {
                    io = tio;
                    let mut c = ctr.lock().unwrap();
                    if let Some(p) = c.execs.get_mut(&req.exec_id) {
                        p.console = Some(master);
                    }
                }
                Err(e) => {
                    // Nobody holds the process's terminal: it must not run on as a zombie.
                    kill_and_reap(pid, pidfd).await;
                    return Err(fail_exec(&ctr, &self.events, status(Code::INTERNAL, e)));
                }
            }
        }
        let output = io.progress();
        {
            let mut c = ctr.lock().unwrap();
            if let Some(p) = c.execs.get_mut(&req.exec_id) {
                p.pid = pid as u32;
                if p.stdin_closed {
                    io.close_stdin();
                }
                p.io = Some(io);
            }
            let emits = c.gate.exec_started(&req.exec_id, pid as u32);
            self.publish_emits(&mut c, emits);
        }
        spawn_exit_watch(
            self.events.clone(),
            ctr,
            req.exec_id.clone(),
            pid,
            pidfd,
            output,
        );
        Ok(api::StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    async fn delete_now(&self, req: api::DeleteRequest) -> TResult<api::DeleteResponse> {
        tracing::info!(id = %req.id, exec_id = %req.exec_id, "delete");
        crate::residency::touch();
        let ctr = self.get(&req.id)?;
        if !req.exec_id.is_empty() {
            let p = {
                let mut c = ctr.lock().unwrap();
                let p = c.execs.get_mut(&req.exec_id).ok_or_else(|| {
                    status(Code::NOT_FOUND, format!("exec {} not found", req.exec_id))
                })?;
                p.state.delete(&req.exec_id).map_err(from_transition)?;
                c.execs.remove(&req.exec_id).unwrap()
            };
            let e = p.state.exit_info();
            drain(p.io).await;
            return Ok(api::DeleteResponse {
                pid: p.pid,
                exit_status: e.map(|e| e.status).unwrap_or(0),
                exited_at: MessageField::some(crate::events::ts(e.map(|e| e.at).unwrap_or(0))),
                ..Default::default()
            });
        }
        let io = {
            let mut c = ctr.lock().unwrap();
            c.init.state.delete(&req.id).map_err(from_transition)?;
            c.init.io.take()
        };
        drain(io).await;
        let (rt, id) = (self.runtime.clone(), req.id.clone());
        let r = blocking(move || {
            let _g = crate::reaper::spawn_guard();
            match rt.load(&id) {
                Ok(c) => c.delete(true),
                Err(husk_runtime::Error::NotFound(_)) => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await?;
        let mut c = ctr.lock().unwrap();
        if let Err(e) = r {
            tracing::warn!(id = %req.id, error = %e, "runtime delete");
        }
        if c.rootfs_mounted {
            crate::mount::unmount_rootfs(&c.bundle.join("rootfs"));
        }
        let exit = c.init.state.exit_info();
        c.init.state = ProcState::Deleted;
        c.init.console = None;
        let (status_code, at) = exit
            .map(|e| (e.status, e.at))
            .unwrap_or((0, crate::events::now_nanos()));
        self.events.publish(Event::Delete(ev::TaskDelete {
            container_id: req.id.clone(),
            pid: c.init.pid,
            exit_status: status_code,
            exited_at: MessageField::some(crate::events::ts(at)),
            id: req.id.clone(),
            ..Default::default()
        }));
        let pid = c.init.pid;
        drop(c);
        self.containers.lock().unwrap().remove(&req.id);
        Ok(api::DeleteResponse {
            pid,
            exit_status: status_code,
            exited_at: MessageField::some(crate::events::ts(at)),
            ..Default::default()
        })
    }
}

/// Runs a request's work on a task of its own and waits for it. ttrpc drops a handler's future
/// when the client's connection closes — containerd crashing or restarting mid-request — which
/// would abandon a Create, Start or Delete half-way: a process started with nobody watching its
/// exit (a zombie the orphan reaper must leave alone, and a pid namespace whose init can then
/// never finish exiting), a container created but never recorded. Detached, the work completes
/// and its outcome is there for containerd once it reconnects. (Create runs the same way, and
/// deletes what it made if its caller is gone: `Service::discard_unacknowledged`.)
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = TResult<T>> + Send + 'static,
) -> TResult<T> {
    tokio::spawn(work)
        .await
        .map_err(|e| status(Code::INTERNAL, format!("task: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_refuses_a_terminal_the_spec_does_not_have_and_the_reverse() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = |t: &str| std::fs::write(dir.path().join("config.json"), t).unwrap();
        cfg(r#"{"process":{"terminal":false}}"#);
        assert!(check_terminal(dir.path(), false).is_ok());
        let e = check_terminal(dir.path(), true).unwrap_err();
        assert!(
            e.contains("terminal (true) differs from process.terminal (false)"),
            "{e}"
        );
        cfg(r#"{"process":{"terminal":true}}"#);
        assert!(check_terminal(dir.path(), true).is_ok());
        assert!(check_terminal(dir.path(), false).is_err());
        // No terminal field means none; no config.json is the runtime's error to report.
        cfg(r#"{"process":{}}"#);
        assert!(check_terminal(dir.path(), false).is_ok());
        std::fs::remove_file(dir.path().join("config.json")).unwrap();
        assert!(check_terminal(dir.path(), true).is_ok());
    }
}
