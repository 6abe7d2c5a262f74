//! The library API: `Runtime` creates and finds containers; `Container` drives one through
//! its lifecycle. The CLI and the shim are thin layers over this.

use crate::cgroups::systemd::{self as sd, Systemd, UnitSpec};
use crate::cgroups::{self, Cgroup, Layout};
use crate::channel::{self, Channel};
use crate::error::{Context, Error, Result};
use crate::lifecycle::{self, Verb};
use crate::namespaces::{self, Action, Kind};
use crate::process::{FromInit, InitConfig, Mode, ToInit, HELPER_ENV};
use crate::rootfs::CgroupLayoutInfo;
use crate::spec;
use crate::state::{self, OciState, Persisted, Status};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxResources, Process, Spec};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Standard streams for a container process; `None` inherits the caller's.
#[derive(Default)]
pub struct StdioFds {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

#[derive(Default)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: i32,
    pub no_pivot: bool,
    pub stdio: StdioFds,
    /// The cgroup driver the caller asked for; `None` lets husk choose (`Driver::select`).
    pub cgroup_driver: Option<cgroups::Driver>,
}

#[derive(Default)]
pub struct ExecOptions {
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: i32,
    pub stdio: StdioFds,
    /// runc's `--ignore-paused`: exec into a paused container too.
    pub ignore_paused: bool,
}

pub struct Runtime {
    root: PathBuf,
    exe: OnceLock<OwnedFd>,
    cache_exe: bool,
    systemd: Arc<Systemd>,
}

/// The sealed copy of the binary the helper runs from: kept, or made for one spawn.
enum Exe<'a> {
    Cached(&'a OwnedFd),
    Once(OwnedFd),
}

impl AsRawFd for Exe<'_> {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Exe::Cached(f) => f.as_raw_fd(),
            Exe::Once(f) => f.as_raw_fd(),
        }
    }
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Runtime {
            root: root.into(),
            exe: OnceLock::new(),
            cache_exe: true,
            systemd: Arc::new(Systemd::default()),
        }
    }

    /// The systemd manager client the systemd cgroup driver uses. By default it runs its D-Bus
    /// calls on a current-thread runtime of its own, driven only during each call (a one-shot
    /// caller such as the CLI); a long-lived tokio program passes one on its own runtime
    /// (`sd::Executor::Shared`) and calls the runtime from blocking threads.
    pub fn with_systemd(mut self, systemd: Systemd) -> Self {
        self.systemd = Arc::new(systemd);
        self
    }

    /// Whether to keep the sealed copy of the binary between spawns. Keeping it saves a copy
    /// (~2 ms) per container; dropping it saves its size in memory for a long-lived caller
    /// (a shim per pod) that creates containers rarely.
    pub fn keep_helper_copy(mut self, keep: bool) -> Self {
        self.cache_exe = keep;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn exe(&self) -> Result<Exe<'_>> {
        if !self.cache_exe {
            return Ok(Exe::Once(crate::selfexe::protected_self()?));
        }
        if let Some(fd) = self.exe.get() {
            return Ok(Exe::Cached(fd));
        }
        let fd = crate::selfexe::protected_self()?;
        Ok(Exe::Cached(self.exe.get_or_init(|| fd)))
    }

    /// Starts the helper with `child_end` as its channel and `inherit` fds kept open.
    fn spawn_helper(
        &self,
        child_end: OwnedFd,
        inherit: &[RawFd],
        stdio: StdioFds,
    ) -> Result<std::process::Child> {
        let exe = self.exe()?;
        let mut cmd = Command::new(crate::inroot::fd_path(&exe));
        cmd.arg0("husk-init")
            .env(HELPER_ENV, child_end.as_raw_fd().to_string());
        if let Some(f) = stdio.stdin {
            cmd.stdin(Stdio::from(f));
        }
        if let Some(f) = stdio.stdout {
            cmd.stdout(Stdio::from(f));
        }
        if let Some(f) = stdio.stderr {
            cmd.stderr(Stdio::from(f));
        }
        let mut keep: Vec<RawFd> = inherit.to_vec();
        keep.push(child_end.as_raw_fd());
        // SAFETY: only fcntl (async-signal-safe) runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for fd in &keep {
                    let flags = libc::fcntl(*fd, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(*fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().ctx(|| "start the husk init helper")?;
        drop(child_end);
        Ok(child)
    }

    /// Creates container `id` from `opts.bundle`: on return its process waits for `start`.
    /// On any error everything is rolled back: no process, mount, cgroup or state is left.
    pub fn create(&self, id: &str, opts: CreateOptions) -> Result<Container> {
        state::validate_id(id)?;
        let spec = spec::load_bundle(&opts.bundle)?;
        let rootfs = spec::rootfs_path(&spec, &opts.bundle)?;
        let process = spec
            .process()
            .clone()
            .ok_or_else(|| Error::spec("process", "is required to create a container"))?;
        let linux = spec.linux().clone().unwrap_or_default();
        let plan = namespaces::plan(linux.namespaces().as_deref().unwrap_or(&[]))?;
        spec::validate(&spec, &plan)?;
        if let Some(profile) = process
            .apparmor_profile()
            .as_deref()
            .filter(|p| !p.is_empty())
        {
            crate::security::check_apparmor_profile(profile)?;
        }
        if process.terminal().unwrap_or(false) && opts.console_socket.is_none() {
            return Err(Error::spec(
                "process.terminal",
                "is true but no --console-socket was given",
            ));
        }
        if let Some(seccomp) = linux.seccomp() {
            crate::seccomp::compile(seccomp)?; // report profile errors before anything exists
        }
        let layout = Layout::detect();
        let raw_path = linux
            .cgroups_path()
            .as_deref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let unit = self.choose_driver(id, opts.cgroup_driver, &raw_path, &layout)?;
        let cg_paths = match (&unit, &layout) {
            (Some(u), Layout::V2(root)) => cgroups::CgroupPaths {
                v2: true,
                dirs: [(String::new(), root.join(u.cgroup()))].into(),
            },
            _ => cgroups::resolve(
                &layout,
                linux.cgroups_path().as_deref(),
                id,
                &cgroups::own_cgroups(),
            )?,
        };

        std::fs::create_dir_all(&self.root)
            .ctx(|| format!("create state root {}", self.root.display()))?;
        let dir = state::container_dir(&self.root, id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(id.into()))
            }
            Err(e) => return Err(e).ctx(|| format!("create {}", dir.display())),
        }
        let mut rollback = Rollback {
            dir: Some(dir.clone()),
            cgroup: None,
            unit: None,
            pids: vec![],
        };
        let c = self.create_in(
            id,
            &opts,
            spec,
            rootfs,
            process,
            &plan,
            &layout,
            (cg_paths, unit),
            &dir,
            &mut rollback,
        )?;
        rollback.disarm();
        Ok(c)
    }

    /// The cgroup driver for a new container, and with the systemd driver its unit.
    ///
    /// systemd when asked for, or when nobody said and the path has the systemd form on a
    /// host whose init is systemd (`Driver::select`). Errors: the systemd driver asked for
    /// without systemd, on cgroup v1, with a path not in the `slice:prefix:name` form, or with
    /// systemd unreachable over D-Bus. Unasked on cgroup v1, a systemd-form path stays a
    /// literal cgroupfs directory, as before.
    fn choose_driver(
        &self,
        id: &str,
        explicit: Option<cgroups::Driver>,
        raw_path: &str,
        layout: &Layout,
    ) -> Result<Option<UnitSpec>> {
        match cgroups::Driver::select(explicit, raw_path) {
            cgroups::Driver::Systemd if !cgroups::systemd_running() => Err(Error::Unsupported {
                feature: "the systemd cgroup driver".into(),
                reason: "systemd is not running on this host (no /run/systemd/system); \
                             use the cgroupfs driver"
                    .into(),
            }),
            cgroups::Driver::Systemd if !layout.is_v2() => {
                if explicit.is_some() {
                    return Err(Error::Unsupported {
                        feature: "the systemd cgroup driver on cgroup v1".into(),
                        reason: "husk drives systemd on the unified (v2) hierarchy only; \
                                 use the cgroupfs driver"
                            .into(),
                    });
                }
                tracing::info!(
                    id,
                    cgroups_path = %raw_path,
                    "cgroup v1: cgroupsPath in the systemd form taken as a literal cgroupfs directory"
                );
                Ok(None)
            }
            cgroups::Driver::Systemd => {
                let unit = UnitSpec::parse(raw_path, id)?;
                self.systemd.connect()?;
                Ok(Some(unit))
            }
            cgroups::Driver::Cgroupfs => {
                if cgroups::is_systemd_path(raw_path) {
                    tracing::info!(
                        id,
                        cgroups_path = %raw_path,
                        "cgroupsPath in the systemd form taken as a literal cgroupfs directory (cgroupfs driver, as runc)"
                    );
                }
                Ok(None)
            }
        }
    }

    /// Puts the helper `pid` in the container's cgroup before it makes namespaces: written
    /// to cgroupfs, or (systemd) the unit started with it, then checked.
    fn place(
        &self,
        id: &str,
        spec: &Spec,
        cgroup: &Cgroup,
        unit: Option<&UnitSpec>,
        pid: i32,
        rollback: &mut Rollback,
    ) -> Result<()> {
        let Some(unit) = unit else {
            return cgroup.add_pid(pid);
        };
        let oom_group = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.unified().as_ref())
            .and_then(|u| u.get("memory.oom.group").cloned());
        let props = sd::props::creation(
            unit,
            id,
            (!unit.is_slice()).then_some(pid as u32),
            oom_group.as_deref(),
            self.systemd.version(),
        );
        self.systemd.start(unit, &props)?;
        // Only a unit this call started is stopped on rollback (never one that was there).
        rollback.unit = Some((self.systemd.clone(), unit.name.clone()));
        rollback.cgroup = Some(cgroup.clone());
        cgroup.enable_controllers()?;
        if unit.is_slice() {
            cgroup.add_pid(pid)?;
        }
        // systemd moved the helper: check it is where husk will look for the container.
        let want = cgroup
            .procs_dir()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let seen = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(|p| Path::new(cgroups::CGROUP_ROOT).join(p.trim_start_matches('/')));
        if seen.as_deref() != Some(want.as_path()) {
            return Err(Error::Systemd(format!(
                "unit {} holds the container in {}, not in {}",
                unit.name,
                seen.map(|p| p.display().to_string())
                    .unwrap_or_else(|| "no cgroup".into()),
                want.display()
            )));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn create_in(
        &self,
        id: &str,
        opts: &CreateOptions,
        spec: Spec,
        rootfs: PathBuf,
        process: Process,
        plan: &[Action],
        layout: &Layout,
        (cg_paths, unit): (cgroups::CgroupPaths, Option<UnitSpec>),
        dir: &Path,
        rollback: &mut Rollback,
    ) -> Result<Container> {
        let linux = spec.linux().clone().unwrap_or_default();
        spec::save_config(dir, &spec)?;
        let fifo_path = dir.join(state::EXEC_FIFO);
        nix::unistd::mkfifo(&fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o622))
            .ctx(|| format!("mkfifo {}", fifo_path.display()))?;
        // Writable by the container's user whoever it maps to (mkfifo applied the umask).
        std::fs::set_permissions(
            &fifo_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o622),
        )
        .ctx(|| format!("chmod {}", fifo_path.display()))?;
        let fifo = nix::fcntl::open(
            &fifo_path,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ctx(|| format!("open {}", fifo_path.display()))?;
        let console = opts
            .console_socket
            .as_deref()
            .filter(|_| process.terminal().unwrap_or(false))
            .map(crate::tty::connect_console_socket)
            .transpose()?;

        let cgroup = Cgroup::new(cg_paths.clone());
        if unit.is_none() {
            cgroup.create()?;
            rollback.cgroup = Some(cgroup.clone());
        }
        if unit.is_none() && cgroup.is_frozen() {
            // A process put in it would stop before it could say anything (runc: "container's
            // cgroup unexpectedly frozen"). Another container sharing the cgroupsPath is paused.
            return Err(Error::Cgroup {
                path: cg_paths
                    .dirs
                    .get(if cg_paths.v2 { "" } else { "freezer" })
                    .map(|d| d.display().to_string())
                    .unwrap_or_default(),
                message: "is frozen (is a container sharing this cgroupsPath paused?): \
                          cannot create a container in a frozen cgroup"
                    .into(),
            });
        }

        let (parent_end, child_end) = channel::pair()?;
        let mut inherit = vec![fifo.as_raw_fd()];
        if let Some(c) = &console {
            inherit.push(c.as_raw_fd());
        }
        // A systemd unit's cgroup exists only once the unit is started with the helper in it.
        let born_in = if unit.is_none() {
            cgroup.birth_dir(namespaces::has(plan, Kind::User))?
        } else {
            None
        };
        if let Some(fd) = &born_in {
            inherit.push(fd.as_raw_fd());
        }
        let stdio = StdioFds {
            stdin: opts.stdio.stdin.as_ref().map(dup).transpose()?,
            stdout: opts.stdio.stdout.as_ref().map(dup).transpose()?,
            stderr: opts.stdio.stderr.as_ref().map(dup).transpose()?,
        };
        let spawned = Instant::now();
        let mut helper = self.spawn_helper(child_end.into_fd(), &inherit, stdio)?;
        rollback.pids.push(helper.id() as i32);
        if born_in.is_none() {
            // In the cgroup before it makes its namespaces, so the cgroup namespace is rooted
            // there (a systemd unit is started with the helper in it).
            self.place(
                id,
                &spec,
                &cgroup,
                unit.as_ref(),
                helper.id() as i32,
                rollback,
            )?;
        }

        let cfg = InitConfig {
            id: id.to_string(),
            mode: Mode::Create {
                spec: Box::new(spec.clone()),
                rootfs: rootfs.clone(),
                bundle: opts.bundle.clone(),
                no_pivot: opts.no_pivot,
                fifo_fd: fifo.as_raw_fd(),
                cgroup: CgroupLayoutInfo::new(layout, &cg_paths),
            },
            process,
            namespaces: plan.to_vec(),
            uid_mappings: spec::id_mappings(linux.uid_mappings()),
            gid_mappings: spec::id_mappings(linux.gid_mappings()),
            console_fd: console.as_ref().map(|c| c.as_raw_fd()),
            preserve_fds: opts.preserve_fds,
            cgroup_fd: born_in.as_ref().map(|f| f.as_raw_fd()),
        };
        drop(console);
        drop(born_in);
        let mut persisted = Persisted {
            id: id.to_string(),
            bundle: opts.bundle.clone(),
            rootfs: rootfs.clone(),
            pid: 0,
            pid_start_time: 0,
            created: state::now_rfc3339(),
            owner: String::new(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            cgroup: cg_paths,
            new_pid_ns: namespaces::creates(plan, Kind::Pid),
            use_systemd: unit.is_some(),
            systemd_unit: unit.as_ref().map(|u| u.name.clone()),
        };
        let result = drive_init(
            &parent_end,
            &cfg,
            &mut helper,
            &spec,
            &mut persisted,
            rollback,
            spawned,
        );
        drop(fifo);
        result?;
        let c = Container {
            root: self.root.clone(),
            st: persisted,
            systemd: self.systemd.clone(),
        };
        // Limits go on once the set-up is done (as runc does), before the process can run.
        c.apply(&cgroups::with_default_devices(linux.resources().as_ref()))?;
        state::save(dir, &c.st)?;
        if let Some(p) = &opts.pid_file {
            write_pid_file(p, c.st.pid)?;
        }
        Ok(c)
    }

    pub fn load(&self, id: &str) -> Result<Container> {
        Ok(Container {
            root: self.root.clone(),
            st: state::load(&self.root, id)?,
            systemd: self.systemd.clone(),
        })
    }

    pub fn list(&self) -> Result<Vec<OciState>> {
        let mut out = Vec::new();
        for id in state::list_ids(&self.root)? {
            if let Ok(c) = self.load(&id) {
                out.push(c.oci_state());
            }
        }
        Ok(out)
    }

    /// Starts a new process in a running container. Returns its pid (a child of the caller).
    pub fn exec(&self, c: &Container, opts: ExecOptions) -> Result<i32> {
        let verb = Verb::Exec {
            ignore_paused: opts.ignore_paused,
        };
        lifecycle::check(c.id(), verb, c.status())?;
        let spec = spec::load_saved(&state::container_dir(&self.root, c.id()))?;
        if opts.process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(Error::spec("process.args", "must not be empty"));
        }
        let mut opts = opts;
        // An exec without a profile of its own runs under the container's (runc's
        // newInitConfig): `husk exec ID CMD` must not escape the container's confinement.
        if opts
            .process
            .apparmor_profile()
            .as_deref()
            .unwrap_or("")
            .is_empty()
        {
            let inherited = spec
                .process()
                .as_ref()
                .and_then(|p| p.apparmor_profile().clone())
                .filter(|p| !p.is_empty());
            opts.process.set_apparmor_profile(inherited);
        }
        if let Some(profile) = opts.process.apparmor_profile().as_deref() {
            crate::security::check_apparmor_profile(profile)?;
        }
        if opts.process.terminal().unwrap_or(false) && opts.console_socket.is_none() {
            return Err(Error::spec(
                "process.terminal",
                "is true but no --console-socket was given",
            ));
        }
        let mut plan = Vec::new();
        for k in Kind::ALL {
            let p = PathBuf::from(format!("/proc/{}/ns/{}", c.pid(), k.proc_name()));
            if p.exists() && !namespaces::is_current(k, &p) {
                plan.push(Action::Join(k, p));
            }
        }
        let console = opts
            .console_socket
            .as_deref()
            .filter(|_| opts.process.terminal().unwrap_or(false))
            .map(crate::tty::connect_console_socket)
            .transpose()?;
        let (parent_end, child_end) = channel::pair()?;
        let mut inherit: Vec<RawFd> = console.iter().map(|c| c.as_raw_fd()).collect();
        let cgroup = Cgroup::new(c.st.cgroup.clone());
        let born_in = cgroup.birth_dir(namespaces::has(&plan, Kind::User))?;
        if let Some(fd) = &born_in {
            inherit.push(fd.as_raw_fd());
        }
        let spawned = Instant::now();
        let mut helper = self.spawn_helper(child_end.into_fd(), &inherit, opts.stdio)?;
        let fail = |helper: &mut std::process::Child, e: Error| {
            let _ = helper.kill();
            let _ = helper.wait();
            e
        };
        if born_in.is_none() {
            if let Err(e) = cgroup.add_pid(helper.id() as i32) {
                return Err(fail(&mut helper, e));
            }
        }
        let cfg = InitConfig {
            id: c.id().to_string(),
            mode: Mode::Exec {
                seccomp: spec
                    .linux()
                    .as_ref()
                    .and_then(|l| l.seccomp().clone())
                    .map(Box::new),
                apparmor_allowed: true,
            },
            process: opts.process,
            namespaces: plan,
            uid_mappings: vec![],
            gid_mappings: vec![],
            console_fd: console.as_ref().map(|c| c.as_raw_fd()),
            preserve_fds: opts.preserve_fds,
            cgroup_fd: born_in.as_ref().map(|f| f.as_raw_fd()),
        };
        let mut born_in_cgroup = false;
        drop(console);
        drop(born_in);
        if let Err(e) = parent_end.send(&ToInit::Config(Box::new(cfg))) {
            return Err(fail(&mut helper, e));
        }
        let mut pid = None;
        loop {
            match parent_end.recv::<FromInit>() {
                Ok(Some(FromInit::BornInCgroup(b))) => born_in_cgroup = b,
                Ok(Some(FromInit::Pid(p))) => {
                    tracing::debug!(
                        pid = p,
                        born_in_cgroup,
                        since_spawn_us = spawned.elapsed().as_micros() as u64,
                        "exec process forked"
                    );
                    pid = Some(p);
                    let _ = helper.wait();
                    let st = c.oci_state();
                    parent_end.send(&ToInit::Continue {
                        pid: p,
                        state_json: serde_json::to_string(&st).unwrap_or_default(),
                    })?;
                }
                Ok(Some(FromInit::Error(m))) => {
                    if let Some(p) = pid {
                        reap(p);
                    }
                    let _ = helper.kill();
                    let _ = helper.wait();
                    return Err(Error::Init(m));
                }
                Ok(Some(other)) => {
                    return Err(Error::Init(format!(
                        "unexpected message from exec helper: {other:?}"
                    )))
                }
                // Channel closed by execve (CLOEXEC): the process runs.
                Ok(None) => break,
                Err(e) => return Err(e),
            }
        }
        let _ = helper.wait();
        let pid = pid
            .ok_or_else(|| Error::Init("exec helper exited before starting the process".into()))?;
        if let Some(p) = &opts.pid_file {
            write_pid_file(p, pid)?;
        }
        Ok(pid)
    }
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd> {
    fd.as_fd().try_clone_to_owned().ctx(|| "dup stdio fd")
}

fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    // Atomic, like runc: a reader never sees an empty pid file.
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, pid.to_string()).ctx(|| format!("write pid file {}", tmp.display()))?;
    std::fs::rename(&tmp, path).ctx(|| format!("write pid file {}", path.display()))
}

fn reap(pid: i32) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
}

/// Undoes a half-made container when creation fails.
struct Rollback {
    dir: Option<PathBuf>,
    cgroup: Option<Cgroup>,
    /// The systemd unit started for it.
    unit: Option<(Arc<Systemd>, String)>,
    pids: Vec<i32>,
}

impl Rollback {
    fn disarm(&mut self) {
        self.dir = None;
        self.cgroup = None;
        self.unit = None;
        self.pids.clear();
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        for p in &self.pids {
            let _ = nix::sys::signal::kill(Pid::from_raw(*p), Signal::SIGKILL);
        }
        for p in &self.pids {
            let _ = nix::sys::wait::waitpid(Pid::from_raw(*p), None);
        }
        if let Some((sd, name)) = &self.unit {
            if let Err(e) = sd.stop(name) {
                tracing::warn!(unit = %name, error = %e, "rollback: stopping the unit");
            }
        }
        if let Some(cg) = &self.cgroup {
            // Only what this create started is killed (above): the cgroup may be shared.
            let _ = cg.destroy_if_empty();
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// SIGKILL to every process of `cg`, frozen meanwhile so none forks past it.
fn kill_cgroup(cg: &Cgroup) {
    let _ = cg.signal_all(crate::signal::Signal::KILL);
}

fn wait_empty(cg: &Cgroup, timeout: Duration) {
    let t = Instant::now();
    while t.elapsed() < timeout && !cg.pids().unwrap_or_default().is_empty() {
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn drive_init(
    chan: &Channel,
    cfg: &InitConfig,
    helper: &mut std::process::Child,
    spec: &Spec,
    st: &mut Persisted,
    rollback: &mut Rollback,
    spawned: Instant,
) -> Result<()> {
    chan.send(&ToInit::Config(Box::new(cfg.clone())))?;
    let mut born_in_cgroup = false;
    loop {
        let msg = chan.recv::<FromInit>()?;
        match msg {
            Some(FromInit::IdMapRequest { pid }) => {
                crate::process::write_id_maps(pid, &cfg.uid_mappings, &cfg.gid_mappings)?;
                chan.send(&ToInit::IdMapsWritten)?;
            }
            Some(FromInit::BornInCgroup(born)) => born_in_cgroup = born,
            Some(FromInit::Pid(pid)) => {
                tracing::debug!(
                    pid,
                    born_in_cgroup,
                    since_spawn_us = spawned.elapsed().as_micros() as u64,
                    "container init forked"
                );
                rollback.pids.push(pid);
                let _ = helper.wait();
                st.pid = pid;
                st.pid_start_time = state::pid_start_time(pid).unwrap_or(0);
                if let Mode::Create { spec, bundle, .. } = &cfg.mode {
                    let userns = namespaces::has(&cfg.namespaces, Kind::User);
                    for (index, tree) in crate::idmap::mount_sources(spec, bundle, pid, userns)? {
                        chan.send_with_fd(&ToInit::MountSource { index }, tree.as_fd())?;
                    }
                }
                let oci = oci_state_of(st, Status::Creating);
                chan.send(&ToInit::Continue {
                    pid,
                    state_json: serde_json::to_string(&oci).unwrap_or_default(),
                })?;
            }
            Some(FromInit::MountSourceRequest { index }) => {
                let Mode::Create { spec, bundle, .. } = &cfg.mode else {
                    return Err(Error::Init(
                        "a mount source asked for outside create".into(),
                    ));
                };
                let tree = crate::idmap::bind_source(spec, bundle, index)?;
                chan.send_with_fd(&ToInit::MountSource { index }, tree.as_fd())?;
            }
            Some(FromInit::RunHooks) => {
                let oci =
                    serde_json::to_string(&oci_state_of(st, Status::Creating)).unwrap_or_default();
                let hooks = spec.hooks().as_ref();
                let r = crate::hooks::run_all(
                    hooks.and_then(|h| h.prestart().as_ref()),
                    &oci,
                    "prestart",
                )
                .and_then(|_| {
                    crate::hooks::run_all(
                        hooks.and_then(|h| h.create_runtime().as_ref()),
                        &oci,
                        "createRuntime",
                    )
                });
                match r {
                    Ok(()) => chan.send(&ToInit::HooksDone)?,
                    Err(e) => {
                        let _ = chan.send(&ToInit::HooksFailed(e.to_string()));
                        return Err(e);
                    }
                }
            }
            Some(FromInit::Ready) => return Ok(()),
            Some(FromInit::Error(m)) => return Err(Error::Init(m)),
            None => {
                let status = helper.try_wait().ok().flatten();
                return Err(Error::Init(format!(
                    "container init exited during set-up{}",
                    status.map(|s| format!(" ({s})")).unwrap_or_default()
                )));
            }
        }
    }
}

fn oci_state_of(st: &Persisted, status: Status) -> OciState {
    OciState {
        oci_version: crate::OCI_VERSION.to_string(),
        id: st.id.clone(),
        pid: if status == Status::Stopped { 0 } else { st.pid },
        status,
        bundle: st.bundle.clone(),
        rootfs: st.rootfs.clone(),
        created: st.created.clone(),
        owner: st.owner.clone(),
        annotations: st.annotations.clone(),
    }
}

/// One container, as recorded under the runtime root.
pub struct Container {
    root: PathBuf,
    st: Persisted,
    systemd: Arc<Systemd>,
}

impl Container {
    pub fn id(&self) -> &str {
        &self.st.id
    }
    pub fn pid(&self) -> i32 {
        self.st.pid
    }
    pub fn persisted(&self) -> &Persisted {
        &self.st
    }
    pub fn cgroup(&self) -> Cgroup {
        Cgroup::new(self.st.cgroup.clone())
    }

    /// The systemd unit holding the container (systemd cgroup driver).
    pub fn systemd_unit(&self) -> Option<&str> {
        self.st.systemd_unit.as_deref()
    }

    /// Applies `res` to the cgroup (systemd driver: to the unit, then the cgroup).
    fn apply(&self, res: &LinuxResources) -> Result<()> {
        match self.systemd_unit() {
            Some(unit) => self.systemd.apply(unit, &self.cgroup(), res),
            None => self.cgroup().apply(res),
        }
    }
    fn dir(&self) -> PathBuf {
        state::container_dir(&self.root, &self.st.id)
    }

    pub fn is_alive(&self) -> bool {
        self.st.pid > 0 && state::pid_start_time(self.st.pid) == Some(self.st.pid_start_time)
    }

    /// The state as runc derives it: a dead init is stopped; a frozen cgroup is paused (also
    /// before `start`); an exec fifo still waiting is created; else running.
    pub fn status(&self) -> Status {
        if !self.is_alive() {
            return Status::Stopped;
        }
        if self.cgroup().is_frozen() {
            return Status::Paused;
        }
        if self.dir().join(state::EXEC_FIFO).exists() {
            return Status::Created;
        }
        Status::Running
    }

    pub fn oci_state(&self) -> OciState {
        oci_state_of(&self.st, self.status())
    }

    fn spec(&self) -> Result<Spec> {
        spec::load_saved(&self.dir())
    }

    /// Lets the created container run its process.
    pub fn start(&self) -> Result<()> {
        lifecycle::check(self.id(), Verb::Start, self.status())?;
        let fifo_path = self.dir().join(state::EXEC_FIFO);
        // O_RDWR never blocks and keeps a writer, so the read waits for the init's byte.
        let fifo = nix::fcntl::open(
            &fifo_path,
            nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ctx(|| format!("open {}", fifo_path.display()))?;
        loop {
            let mut pfd = [nix::poll::PollFd::new(
                fifo.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            match nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(100u16)) {
                Ok(n) if n > 0 => {
                    let mut b = [0u8; 1];
                    nix::unistd::read(&fifo, &mut b).ctx(|| "read exec fifo")?;
                    break;
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => {
                    if !self.is_alive() {
                        return Err(Error::Init(format!(
                            "container {} init exited before start",
                            self.id()
                        )));
                    }
                }
                Err(e) => return Err(e).ctx(|| "poll exec fifo"),
            }
        }
        let _ = std::fs::remove_file(&fifo_path);
        let spec = self.spec()?;
        if let Some(h) = spec.hooks() {
            let st =
                serde_json::to_string(&oci_state_of(&self.st, Status::Running)).unwrap_or_default();
            if let Err(e) = crate::hooks::run_all(h.poststart().as_ref(), &st, "poststart") {
                // runc kills the container when a poststart hook fails.
                let _ = self.kill(Signal::SIGKILL, true);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Sends `sig` (any number 0..=64, see [`crate::signal`]) to the init, or with `all` to
    /// every process of the container's cgroup. `all` is allowed in every state, as in runc:
    /// on a stopped container it signals whatever is left in the cgroup, if anything (a
    /// container without its own pid namespace may leave processes behind its init).
    pub fn kill(&self, sig: impl Into<crate::signal::Signal>, all: bool) -> Result<()> {
        let sig = sig.into();
        let is_kill = sig == crate::signal::Signal::KILL;
        if all {
            let cg = self.cgroup();
            // A SIGKILL on v2 goes through cgroup.kill where the kernel has it (5.14).
            return cg.signal_all(sig);
        }
        let status = self.status();
        lifecycle::check(self.id(), Verb::Kill, status)?;
        sig.send(self.st.pid)
            .ctx(|| format!("kill {} with {sig}", self.st.pid))?;
        if is_kill && status == Status::Paused {
            // A frozen process dies only once thawed (runc thaws for SIGKILL too).
            let _ = self.cgroup().freeze(false);
        }
        Ok(())
    }

    pub fn pause(&self) -> Result<()> {
        self.prepare_pause()?.freeze(true)
    }

    pub fn resume(&self) -> Result<()> {
        self.prepare_resume()?.freeze(false)
    }

    /// `pause` in two steps, for a caller that must not hold a lock of its own while the cgroup
    /// freezes (up to `cgroups::FREEZE_TIMEOUT`): the lifecycle check (`IllegalState` unless
    /// running), then `Cgroup::freeze(true)` on the cgroup returned.
    pub fn prepare_pause(&self) -> Result<Cgroup> {
        lifecycle::check(self.id(), Verb::Pause, self.status())?;
        Ok(self.cgroup())
    }

    /// `resume` in two steps (see `prepare_pause`): `IllegalState` unless paused.
    pub fn prepare_resume(&self) -> Result<Cgroup> {
        lifecycle::check(self.id(), Verb::Resume, self.status())?;
        Ok(self.cgroup())
    }

    pub fn update(&self, res: &LinuxResources) -> Result<()> {
        lifecycle::check(self.id(), Verb::Update, self.status())?;
        self.apply(res)
    }

    pub fn pids(&self) -> Result<Vec<i32>> {
        self.cgroup().pids()
    }

    /// Waits (up to `timeout`) until the init is gone, reaping it if it is our child (CLI
    /// `run`, the shim) so it does not stay a zombie.
    fn wait_init_gone(&self, timeout: Duration) {
        let t = Instant::now();
        loop {
            let _ = nix::sys::wait::waitpid(
                Pid::from_raw(self.st.pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
            if !self.is_alive() || t.elapsed() >= timeout {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Deletes the container; with `force` a live one is killed first.
    pub fn delete(&self, force: bool) -> Result<()> {
        let verb = if force {
            Verb::DeleteForce
        } else {
            Verb::Delete
        };
        let status = self.status();
        lifecycle::check(self.id(), verb, status)?;
        let cg = self.cgroup();
        // Only this container's processes are killed: its cgroup may be shared (the runtime
        // spec does not make cgroupsPath unique). The init first, thawed if paused so it can
        // die (as runc); with a pid namespace of its own, the kernel takes every other process
        // of the container with it.
        if self.is_alive() {
            let _ = crate::signal::Signal::KILL.send(self.st.pid);
            if status == Status::Paused {
                let _ = cg.freeze(false);
            }
            self.wait_init_gone(Duration::from_secs(10));
        }
        if !self.st.new_pid_ns {
            // No pid namespace of its own: what its init started outlives it, and only the
            // cgroup knows those processes. runc kills every process of the cgroup here (it
            // cannot tell whose they are), and so does husk.
            kill_cgroup(&cg);
            wait_empty(&cg, Duration::from_secs(10));
        }
        if let Some(unit) = self.systemd_unit() {
            // systemd unloads an emptied scope by itself; stop + reset-failed also clear a
            // unit that failed (OOM) and one that still holds stragglers.
            if let Err(e) = self.systemd.stop(unit) {
                tracing::warn!(id = %self.id(), error = %e, "stopping the container's unit");
            }
        }
        // The cgroup goes once empty; another container may still be using it.
        cg.destroy_if_empty()?;
        let spec = self.spec().ok();
        let _ = std::fs::remove_dir_all(self.dir());
        if let Some(h) = spec.as_ref().and_then(|s| s.hooks().as_ref()) {
            let st =
                serde_json::to_string(&oci_state_of(&self.st, Status::Stopped)).unwrap_or_default();
            // Poststop failures are reported, but the container is gone either way.
            if let Err(e) = crate::hooks::run_all(h.poststop().as_ref(), &st, "poststop") {
                tracing::warn!(id = %self.id(), error = %e, "poststop hook failed");
            }
        }
        Ok(())
    }
}
