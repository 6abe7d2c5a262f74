//! The container's processes. `husk` never forks a multi-threaded process: the parent spawns a
//! fresh re-exec of the husk binary (from a sealed memfd, see `selfexe`) in helper mode. That
//! single-threaded helper joins/creates the namespaces and forks the container process with
//! CLONE_PARENT, so the process that asked (the CLI or the shim) is its parent and can wait
//! for it. The container process finishes the set-up, reports over the channel and execs.

use crate::channel::Channel;
use crate::error::{Context, Error, Result};
use crate::namespaces::{self, Action, Kind};
use crate::rootfs::{self, CgroupLayoutInfo};
use oci_spec::runtime::{Process, Spec};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

pub const HELPER_ENV: &str = "_HUSK_HELPER_FD";

static READY_SENT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Mode {
    /// A new container: `namespaces` are created or joined, the rootfs is prepared.
    Create {
        spec: Box<Spec>,
        rootfs: PathBuf,
        bundle: PathBuf,
        no_pivot: bool,
        fifo_fd: i32,
        cgroup: CgroupLayoutInfo,
    },
    /// A process in a running container: join every namespace of its init.
    Exec {
        seccomp: Option<Box<oci_spec::runtime::LinuxSeccomp>>,
        apparmor_allowed: bool,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitConfig {
    pub id: String,
    pub mode: Mode,
    pub process: Process,
    pub namespaces: Vec<Action>,
    pub uid_mappings: Vec<(u32, u32, u32)>,
    pub gid_mappings: Vec<(u32, u32, u32)>,
    pub console_fd: Option<i32>,
    pub preserve_fds: i32,
    /// An `O_PATH` fd of the container's v2 cgroup: the process is born there
    /// (`fork::fork_parent`), and the helper leaves the cgroup namespace to that fork. `None`
    /// (v1, user namespaces): the caller moved the helper into the cgroup before it started.
    pub cgroup_fd: Option<i32>,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ToInit {
    Config(Box<InitConfig>),
    IdMapsWritten,
    /// Carries (as its fd) a detached clone of the source of `mounts[index]` made by the
    /// parent: every idmapped mount's (idmapped, sent before `Continue`), and any the container
    /// asked for with `FromInit::MountSourceRequest`.
    MountSource {
        index: usize,
    },
    /// The container process may go on; carries its pid as the host sees it.
    Continue {
        pid: i32,
        state_json: String,
    },
    HooksDone,
    HooksFailed(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum FromInit {
    /// A new user namespace exists: the parent writes the id maps of this pid.
    IdMapRequest {
        pid: i32,
    },
    /// Sent before `Pid` when the process was to be born in its cgroup: whether clone3 put
    /// it there (false: the helper moved itself first, see `fork`).
    BornInCgroup(bool),
    /// The container process was forked.
    Pid(i32),
    /// The container's root cannot reach the source of bind mount `mounts[index]` (a user
    /// namespace without search permission on a host directory, e.g. containerd's sandbox
    /// state): the parent, still the host's root, makes a detached clone of it and answers
    /// with `ToInit::MountSource`, as runc's parent opens such sources.
    MountSourceRequest {
        index: usize,
    },
    /// Mounts are in place: the parent runs prestart/createRuntime hooks now.
    RunHooks,
    /// Set-up is done; the process now waits for `start`.
    Ready,
    Error(String),
}

/// Entry point of the helper: call first thing in `main` of any binary embedding the runtime.
/// Returns only when this process is not a helper.
pub fn run_helper_if_requested() {
    let Ok(fd) = std::env::var(HELPER_ENV) else {
        return;
    };
    std::env::remove_var(HELPER_ENV);
    let Ok(fd) = fd.parse::<i32>() else {
        eprintln!("husk: bad {HELPER_ENV}");
        std::process::exit(2);
    };
    // SAFETY: the parent passed this fd to us and nothing else owns it.
    let chan = Channel::from_fd(unsafe { OwnedFd::from_raw_fd(fd) });
    set_cloexec(fd);
    let code = match helper(&chan) {
        Ok(()) => 0,
        Err(e) => {
            let _ = chan.send(&FromInit::Error(e.to_string()));
            1
        }
    };
    // SAFETY: leave without running destructors or atexit handlers in the helper.
    unsafe { libc::_exit(code) }
}

fn set_cloexec(fd: i32) {
    // SAFETY: fcntl on an fd number; a closed fd just fails.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

fn reset_signals() {
    // Ignored signals survive execve: give the container a clean slate.
    for sig in 1..32 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let empty = nix::sys::signal::SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&empty),
        None,
    );
}

fn helper(chan: &Channel) -> Result<()> {
    reset_signals();
    let cfg: InitConfig = match chan.recv::<ToInit>()? {
        Some(ToInit::Config(c)) => *c,
        _ => return Err(Error::Init("expected the init configuration".into())),
    };
    let fifo_fd = match &cfg.mode {
        Mode::Create { fifo_fd, .. } => Some(*fifo_fd),
        Mode::Exec { .. } => None,
    };
    let keep: Vec<i32> = [Some(chan.raw()), fifo_fd, cfg.console_fd, cfg.cgroup_fd]
        .into_iter()
        .flatten()
        .collect();
    close_inherited(&keep, cfg.preserve_fds);
    // SAFETY: the caller passed this fd for us alone; it must not reach the container.
    let cgroup_dir = cfg.cgroup_fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    if let Some(fd) = &cgroup_dir {
        set_cloexec(fd.as_raw_fd());
    }
    // Opened in the host's view, before any namespace is joined or made (see `procfs`).
    let proc = crate::procfs::Proc::open()?;
    // While the helper still has the host's privileges (a joined user namespace takes them),
    // and before joining anything (the container's /proc is not ours to trust): the container
    // process inherits it.
    if let Some(adj) = cfg.process.oom_score_adj() {
        proc.write_self("oom_score_adj", adj.to_string().as_bytes())
            .map_err(|e| Error::spec("process.oomScoreAdj", format!("{adj}: {e}")))?;
    }
    // Join namespaces by path first (all opened before any setns, since joining the mount
    // namespace changes what paths mean); the user namespace goes first. A cgroup namespace is
    // left to the fork when the process is to be born in its cgroup.
    let mut joins: Vec<namespaces::Opened> = Vec::new();
    for a in &cfg.namespaces {
        if let Action::Join(kind, path) = a {
            if namespaces::is_current(*kind, path) {
                continue;
            }
            joins.push(namespaces::open(*kind, path)?);
        }
    }
    joins.sort_by_key(|n| if n.kind == Kind::User { 0 } else { 1 });
    let late_cgroupns = match joins.iter().position(|n| n.kind == Kind::Cgroup) {
        Some(i) if cgroup_dir.is_some() => Some(joins.remove(i)),
        _ => None,
    };
    for ns in &joins {
        namespaces::join(ns)?;
        if ns.kind == Kind::User {
            // Our ids are the host's, unmapped in the joined namespace (files would be made
            // with the overflow id, EOVERFLOW): become its root, as runc's nsexec does.
            become_root("the joined user namespace")?;
        }
    }
    drop(joins);
    let creates = |k| namespaces::creates(&cfg.namespaces, k);
    if creates(Kind::User) {
        nix::sched::unshare(Kind::User.flag()).ctx(|| "create user namespace")?;
        chan.send(&FromInit::IdMapRequest {
            pid: nix::unistd::getpid().as_raw(),
        })?;
        match chan.recv::<ToInit>()? {
            Some(ToInit::IdMapsWritten) => {}
            _ => return Err(Error::Init("parent did not write the id mappings".into())),
        }
        become_root("the user namespace")?;
    }
    let mut flags = nix::sched::CloneFlags::empty();
    for a in &cfg.namespaces {
        if let Action::Create(k) = a {
            if *k != Kind::User {
                flags |= k.flag();
            }
        }
    }
    let new_cgroupns = flags.contains(nix::sched::CloneFlags::CLONE_NEWCGROUP);
    if cgroup_dir.is_some() {
        flags.remove(nix::sched::CloneFlags::CLONE_NEWCGROUP);
    }
    if !flags.is_empty() {
        nix::sched::unshare(flags).ctx(|| format!("create namespaces {flags:?}"))?;
    }
    if let (true, Mode::Create { spec, .. }) = (creates(Kind::Time), &cfg.mode) {
        if let Some(offsets) = spec
            .linux()
            .as_ref()
            .and_then(|l| l.time_offsets().as_ref())
        {
            let mut s = String::new();
            for (clock, o) in offsets {
                s.push_str(&format!(
                    "{clock} {} {}\n",
                    o.secs().unwrap_or(0),
                    o.nanosecs().unwrap_or(0)
                ));
            }
            proc.write_self("timens_offsets", s.as_bytes())
                .map_err(|e| Error::spec("linux.timeOffsets", e.to_string()))?;
        }
    }
    // fork with CLONE_PARENT: the new process is a child of whoever started this helper.
    let into = cgroup_dir.as_ref().map(|d| crate::fork::IntoCgroup {
        dir: d.as_fd(),
        new_cgroupns,
        join_cgroupns: late_cgroupns.as_ref(),
    });
    let asked = into.is_some();
    if let crate::fork::Forked::Parent {
        pid,
        born_in_cgroup,
    } = crate::fork::fork_parent(into)?
    {
        if asked {
            chan.send(&FromInit::BornInCgroup(born_in_cgroup))?;
        }
        chan.send(&FromInit::Pid(pid))?;
        return Ok(());
    }
    drop(cgroup_dir);
    drop(late_cgroupns);
    // The container process.
    let Err(e) = container_process(chan, cfg, proc);
    if READY_SENT.load(std::sync::atomic::Ordering::Relaxed) {
        // Nobody listens on the channel any more: the container's stderr is the only witness.
        eprintln!("husk: container process: {e}");
    } else {
        let _ = chan.send(&FromInit::Error(e.to_string()));
    }
    unsafe { libc::_exit(127) }
}

/// setresgid/setresuid to 0 in the user namespace just created or joined (`what`).
fn become_root(what: &str) -> Result<()> {
    let root_uid = nix::unistd::Uid::from_raw(0);
    let root_gid = nix::unistd::Gid::from_raw(0);
    nix::unistd::setresgid(root_gid, root_gid, root_gid)
        .ctx(|| format!("become gid 0 in {what}"))?;
    nix::unistd::setresuid(root_uid, root_uid, root_uid).ctx(|| format!("become uid 0 in {what}"))
}

/// Waits for `Continue`, collecting the idmapped mount sources sent before it.
fn wait_continue(chan: &Channel) -> Result<(i32, String, HashMap<usize, OwnedFd>)> {
    let mut sources = HashMap::new();
    loop {
        match chan.recv_with_fd::<ToInit>()? {
            Some((ToInit::MountSource { index }, Some(fd))) => {
                sources.insert(index, fd);
            }
            Some((ToInit::Continue { pid, state_json }, _)) => {
                return Ok((pid, state_json, sources))
            }
            _ => {
                return Err(Error::Init(
                    "parent went away before the container was set up".into(),
                ))
            }
        }
    }
}

fn container_process(
    chan: &Channel,
    cfg: InitConfig,
    proc: crate::procfs::Proc,
) -> Result<std::convert::Infallible> {
    let (_pid, state_json, idmapped) = wait_continue(chan)?;
    let process = &cfg.process;
    let terminal = process.terminal().unwrap_or(false);
    if let Mode::Create { .. } = cfg.mode {
        nix::unistd::setsid().ctx(|| "setsid")?;
    } else if terminal {
        nix::unistd::setsid().ctx(|| "setsid")?;
    }
    let console = cfg.console_fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    match &cfg.mode {
        Mode::Create {
            spec,
            rootfs,
            bundle,
            no_pivot,
            fifo_fd,
            cgroup,
        } => {
            let new_mnt = namespaces::creates(&cfg.namespaces, Kind::Mount);
            if !new_mnt {
                return Err(Error::spec(
                    "linux.namespaces",
                    "a mount namespace is required to set up the root filesystem",
                ));
            }
            let cx = rootfs::Context2 {
                spec,
                rootfs,
                bundle,
                // Created or joined (a CRI app container joins its pod's): either way not the
                // host's, so device nodes cannot be made.
                userns: namespaces::has(&cfg.namespaces, Kind::User),
                new_cgroupns: namespaces::creates(&cfg.namespaces, Kind::Cgroup),
                new_netns: namespaces::creates(&cfg.namespaces, Kind::Network),
                cgroup_layout: cgroup,
                sources: std::cell::RefCell::new(idmapped),
                chan: Some(chan),
            };
            rootfs::prepare(&cx)?;
            drop(cx);
            let root = crate::inroot::Root::open(rootfs)?;
            let linux = spec.linux().as_ref();
            rootfs::mask_paths(
                &root,
                linux
                    .and_then(|l| l.masked_paths().as_deref())
                    .unwrap_or(&[]),
            )?;
            rootfs::readonly_paths(
                &root,
                linux
                    .and_then(|l| l.readonly_paths().as_deref())
                    .unwrap_or(&[]),
            )?;
            if terminal {
                let sock = console
                    .as_ref()
                    .ok_or_else(|| Error::spec("process.terminal", "needs --console-socket"))?;
                let ptmx = root
                    .open_file(Path::new("/dev/ptmx"), libc::O_RDWR | libc::O_NOCTTY)
                    .ctx(|| "open the container's /dev/ptmx")?;
                let pty = crate::tty::open_pty(ptmx)?;
                if let Some(sz) = process.console_size() {
                    crate::tty::set_size(&pty.master, sz.height() as u16, sz.width() as u16)?;
                }
                crate::tty::mount_console(&root, &pty.slave)?;
                crate::tty::send_master(sock, &pty.master, &pty.slave_name)?;
                crate::tty::become_controlled(&pty.slave)?;
            }
            drop(console);
            drop(root);
            if let Some(h) = spec.hooks() {
                if h.prestart().is_some() || h.create_runtime().is_some() {
                    chan.send(&FromInit::RunHooks)?;
                    match chan.recv::<ToInit>()? {
                        Some(ToInit::HooksDone) => {}
                        Some(ToInit::HooksFailed(m)) => return Err(Error::Init(m)),
                        _ => return Err(Error::Init("parent went away during hooks".into())),
                    }
                }
                crate::hooks::run_all(
                    h.create_container().as_ref(),
                    &state_json,
                    "createContainer",
                )?;
            }
            // Through the verified procfs: the file a sysctl names acts on our (new) namespaces.
            for (k, v) in linux
                .and_then(|l| l.sysctl().as_ref())
                .into_iter()
                .flatten()
            {
                proc.write_sysctl(k, v)?;
            }
            rootfs::pivot(rootfs, *no_pivot)?;
            rootfs::finish(spec)?;
            if namespaces::creates(&cfg.namespaces, Kind::Uts) {
                if let Some(h) = spec.hostname() {
                    nix::unistd::sethostname(h).ctx(|| format!("hostname {h:?}"))?;
                }
                if let Some(d) = spec.domainname() {
                    // SAFETY: plain syscall on a byte buffer.
                    if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
                        return Err(nix::Error::last()).ctx(|| format!("domainname {d:?}"));
                    }
                }
            }
            if let Some(p) = linux.and_then(|l| l.personality().as_ref()) {
                crate::security::apply_personality(p)?;
            }
            let userns = namespaces::has(&cfg.namespaces, Kind::User);
            let setgroups_allowed = procfs_steps(proc, process, userns)?;
            let prepared = prepare_exec(process)?;
            // Report success, then block until `start` opens the exec fifo.
            chan.send(&FromInit::Ready)?;
            READY_SENT.store(true, std::sync::atomic::Ordering::Relaxed);
            let fifo = nix::fcntl::open(
                &crate::inroot::fd_path(fifo_fd),
                nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .ctx(|| "open exec fifo")?;
            nix::unistd::write(&fifo, b"0").ctx(|| "write exec fifo")?;
            drop(fifo);
            let _ = nix::unistd::close(*fifo_fd);
            if let Some(h) = spec.hooks() {
                crate::hooks::run_all(h.start_container().as_ref(), &state_json, "startContainer")?;
            }
            finalize_and_exec(
                process,
                linux.and_then(|l| l.seccomp().as_ref()),
                prepared,
                cfg.preserve_fds,
                setgroups_allowed,
            )
        }
        Mode::Exec {
            seccomp,
            apparmor_allowed: _,
        } => {
            if let Some(sock) = &console {
                let ptmx = nix::fcntl::open(
                    "/dev/ptmx",
                    nix::fcntl::OFlag::O_RDWR
                        | nix::fcntl::OFlag::O_NOCTTY
                        | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .ctx(|| "open the container's /dev/ptmx")?;
                let pty = crate::tty::open_pty(ptmx)?;
                if let Some(sz) = process.console_size() {
                    crate::tty::set_size(&pty.master, sz.height() as u16, sz.width() as u16)?;
                }
                crate::tty::send_master(sock, &pty.master, &pty.slave_name)?;
                crate::tty::become_controlled(&pty.slave)?;
            }
            drop(console);
            let userns = namespaces::has(&cfg.namespaces, Kind::User);
            let setgroups_allowed = procfs_steps(proc, process, userns)?;
            let prepared = prepare_exec(process)?;
            finalize_and_exec(
                process,
                seccomp.as_deref(),
                prepared,
                cfg.preserve_fds,
                setgroups_allowed,
            )
        }
    }
}

/// The steps that need procfs, taken while the verified handle is open: the AppArmor label
/// for the next execve (written before `start`, as runc does) and whether setgroups(2) is
/// allowed in a user namespace. The handle is closed on return, before the process enters
/// its working directory.
fn procfs_steps(proc: crate::procfs::Proc, p: &Process, userns: bool) -> Result<bool> {
    if let Some(profile) = p.apparmor_profile().as_deref().filter(|s| !s.is_empty()) {
        crate::security::apply_apparmor(&proc, profile)?;
    }
    Ok(!userns
        || proc
            .read_self("setgroups")
            .map(|s| s.trim() != "deny")
            .unwrap_or(true))
}

/// Everything needed for execve, resolved while errors can still reach the caller.
pub struct Prepared {
    path: CString,
    args: Vec<CString>,
    env: Vec<CString>,
}

fn cstr(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::spec(what, format!("{s:?} contains a NUL byte")))
}

fn prepare_exec(p: &Process) -> Result<Prepared> {
    let args = p.args().clone().unwrap_or_default();
    let first = args
        .first()
        .ok_or_else(|| Error::spec("process.args", "must not be empty"))?;
    let mut env = dedup_env(p.env().as_deref().unwrap_or(&[]))?;
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home_of(p.user().uid())));
    }
    crate::inroot::chdir_in_root(p.cwd())?;
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let exe = lookup(first, path_var)?;
    Ok(Prepared {
        path: cstr(&exe.to_string_lossy(), "process.args[0]")?,
        args: args
            .iter()
            .map(|a| cstr(a, "process.args"))
            .collect::<Result<_>>()?,
        env: env
            .iter()
            .map(|e| cstr(e, "process.env"))
            .collect::<Result<_>>()?,
    })
}

/// `process.env` as runc 1.1 hands it to execve: every entry `NAME=value` with a non-empty
/// name, and a repeated name taking its last value in its first place (so getenv(3), which
/// returns the first match, sees the last value, as a shell would).
fn dedup_env(env: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(env.len());
    let mut at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for kv in env {
        let name = match kv.split_once('=') {
            Some(("", _)) => {
                return Err(Error::spec(
                    "process.env",
                    format!("environment variable name can't be empty: {kv:?}"),
                ))
            }
            Some((name, _)) => name,
            None => {
                return Err(Error::spec(
                    "process.env",
                    format!("invalid environment variable: {kv:?}"),
                ))
            }
        };
        match at.get(name) {
            Some(&i) => out[i] = kv.clone(),
            None => {
                at.insert(name, out.len());
                out.push(kv.clone());
            }
        }
    }
    Ok(out)
}

fn home_of(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 5 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
            })
        })
        .unwrap_or_else(|| "/".into())
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Finds `name` like execvp would, so a typo is reported at create, not after start.
pub fn lookup(name: &str, path_var: &str) -> Result<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        if is_executable(&p) {
            return Ok(p);
        }
        return Err(Error::spec(
            "process.args[0]",
            format!("exec: {name:?}: no such executable file"),
        ));
    }
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(name);
        if is_executable(&p) {
            return Ok(p);
        }
    }
    Err(Error::spec(
        "process.args[0]",
        format!("exec: {name:?}: executable file not found in $PATH"),
    ))
}

/// The first fd after stdio and the `--preserve-fds` ones.
fn first_unpreserved(preserve_fds: i32) -> u32 {
    3u32.saturating_add(preserve_fds.max(0) as u32)
}

/// close_range(2) of `first..=last` with `flags`; without it (kernel < 5.9) one fd at a time
/// up to the fd limit. No /proc involved: the container's may lie.
fn close_range(first: u32, last: u32, flags: u32) {
    if first > last {
        return;
    }
    // SAFETY: close_range only closes (or marks) fds of this process.
    if unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) } == 0 {
        return;
    }
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft.min(1 << 20) as u32)
        .unwrap_or(1 << 16);
    for fd in first..=last.min(limit) {
        if flags & libc::CLOSE_RANGE_CLOEXEC != 0 {
            set_cloexec(fd as i32);
        } else {
            // SAFETY: closing an fd number this process may or may not hold.
            unsafe { libc::close(fd as i32) };
        }
    }
}

/// Closes every fd the helper inherited but does not need: only stdio, the preserved fds,
/// and `keep` (the channel, the exec fifo, the console socket) stay. A caller's stray fd — a
/// directory of the host, say — must never be reachable from the container, not even as
/// `/proc/self/fd/N` for a working directory before exec (CVE-2024-21626).
fn close_inherited(keep: &[i32], preserve_fds: i32) {
    let first = first_unpreserved(preserve_fds);
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|fd| u32::try_from(*fd).ok())
        .filter(|fd| *fd >= first)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from = first;
    for k in keep {
        if k > from {
            close_range(from, k - 1, 0);
        }
        from = from.max(k + 1);
    }
    close_range(from, u32::MAX, 0);
}

/// Everything above stdio and the preserved fds is closed by execve.
fn close_fds_from(first: u32) {
    close_range(first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
}

fn finalize_and_exec(
    p: &Process,
    seccomp: Option<&oci_spec::runtime::LinuxSeccomp>,
    prep: Prepared,
    preserve_fds: i32,
    setgroups_allowed: bool,
) -> Result<std::convert::Infallible> {
    let filter = seccomp.map(crate::seccomp::compile).transpose()?;
    let nnp = p.no_new_privileges().unwrap_or(false);
    crate::security::apply_rlimits(p.rlimits().as_deref().unwrap_or(&[]))?;
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load before dropping it.
    if let (Some(f), false) = (&filter, nnp) {
        crate::seccomp::load(f)?;
    }
    crate::security::apply_bounding(p.capabilities().as_ref())?;
    crate::security::switch_user(p.user(), setgroups_allowed)?;
    crate::security::apply_caps(p.capabilities().as_ref())?;
    if nnp {
        crate::security::set_no_new_privs()?;
    }
    if let (Some(f), true) = (&filter, nnp) {
        crate::seccomp::load(f)?;
    }
    close_fds_from(first_unpreserved(preserve_fds));
    let e = nix::unistd::execve(&prep.path, &prep.args, &prep.env).unwrap_err();
    Err(e).ctx(|| format!("exec {:?}", prep.path))
}

/// Writes uid_map/gid_map of `pid` (the parent does this for a new user namespace).
pub fn write_id_maps(pid: i32, uid: &[(u32, u32, u32)], gid: &[(u32, u32, u32)]) -> Result<()> {
    let fmt = |m: &[(u32, u32, u32)]| {
        m.iter()
            .map(|(c, h, s)| format!("{c} {h} {s}\n"))
            .collect::<String>()
    };
    let proc = crate::procfs::Proc::open()?;
    proc.write_pid(pid, "uid_map", fmt(uid).as_bytes())
        .map_err(|e| Error::spec("linux.uidMappings", e.to_string()))?;
    proc.write_pid(pid, "gid_map", fmt(gid).as_bytes())
        .map_err(|e| Error::spec("linux.gidMappings", e.to_string()))?;
    Ok(())
}

pub fn raw(fd: &impl AsRawFd) -> i32 {
    fd.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_like_runc_last_value_in_first_place() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            dedup_env(&v(&["PATH=/bin", "A=1", "B=2", "A=3", "E="])).unwrap(),
            v(&["PATH=/bin", "A=3", "B=2", "E="])
        );
        assert!(dedup_env(&v(&["NOEQUALS"])).is_err());
        assert!(dedup_env(&v(&["=x"])).is_err());
    }

    #[test]
    fn lookup_follows_path_and_reports_missing() {
        assert_eq!(
            lookup("sh", "/nonexistent:/bin").unwrap(),
            PathBuf::from("/bin/sh")
        );
        assert_eq!(lookup("/bin/sh", "").unwrap(), PathBuf::from("/bin/sh"));
        let e = lookup("no-such-binary-xyz", "/bin:/usr/bin")
            .unwrap_err()
            .to_string();
        assert!(e.contains("executable file not found in $PATH"), "{e}");
    }
}
