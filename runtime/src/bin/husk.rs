//! `husk`: runc's command line over the husk runtime core.

use clap::{Parser, Subcommand};
use husk_runtime::{CreateOptions, Error, ExecOptions, Runtime};
use oci_spec::runtime::{LinuxResources, Process};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "husk",
    version,
    about = "A native OCI container runtime (runc-compatible command line)"
)]
struct Cli {
    /// Directory holding container state.
    #[arg(long, global = true, default_value = husk_runtime::state::DEFAULT_ROOT)]
    root: PathBuf,
    /// Write logs to this file instead of stderr.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    log_format: String,
    /// Enable debug logging.
    #[arg(long, global = true)]
    debug: bool,
    /// Use the systemd cgroup driver: cgroupsPath is `slice:prefix:name` and the container
    /// runs in the transient unit `prefix-name.scope` in `slice` (empty path:
    /// `system.slice:husk:<id>`). Without it a path of that form is a literal cgroupfs
    /// directory, as with runc.
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility ("auto", "true", "false").
    #[arg(long, global = true)]
    rootless: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct CreateArgs {
    /// Container id.
    id: String,
    /// Path to the OCI bundle.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is true.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Write the container's pid to this file.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Pass this many extra fds (3, 4, …) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: i32,
    /// Use MS_MOVE + chroot instead of pivot_root (for ramfs roots).
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Accepted for runc compatibility.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a container; its process waits for `start`.
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Create and start a container (and wait for it unless --detach).
    Run {
        #[command(flatten)]
        create: CreateArgs,
        #[arg(short, long)]
        detach: bool,
        /// Do not delete the container after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Print the container's state as JSON.
    State { id: String },
    /// Send a signal (name or number, default SIGTERM) to the container.
    Kill {
        id: String,
        signal: Option<String>,
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a container.
    Delete {
        id: String,
        #[arg(short, long)]
        force: bool,
    },
    /// Run a new process in a running container.
    Exec {
        id: String,
        /// The command and its arguments (everything after the id).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
        #[arg(long = "console-socket")]
        console_socket: Option<PathBuf>,
        #[arg(long)]
        cwd: Option<PathBuf>,
        #[arg(short, long)]
        env: Vec<String>,
        #[arg(short, long)]
        tty: bool,
        /// uid[:gid]
        #[arg(short, long)]
        user: Option<String>,
        #[arg(short = 'g', long = "additional-gids")]
        additional_gids: Vec<u32>,
        /// A process.json to run instead of the command line.
        #[arg(short, long)]
        process: Option<PathBuf>,
        #[arg(short, long)]
        detach: bool,
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        #[arg(long = "preserve-fds", default_value_t = 0)]
        preserve_fds: i32,
        #[arg(short, long)]
        cap: Vec<String>,
        /// Set no_new_privs (`--no-new-privs=false` clears the spec's).
        #[arg(long = "no-new-privs", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        no_new_privs: Option<bool>,
        /// Exec into a paused container too (the process starts frozen).
        #[arg(long = "ignore-paused")]
        ignore_paused: bool,
        #[arg(long)]
        apparmor: Option<String>,
    },
    /// List the processes of a container.
    Ps {
        id: String,
        #[arg(short, long, default_value = "table")]
        format: String,
    },
    /// List containers.
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Freeze every process of the container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change the container's resource limits.
    Update {
        id: String,
        /// LinuxResources JSON file ("-" for stdin).
        #[arg(short, long)]
        resources: Option<PathBuf>,
        #[arg(long)]
        memory: Option<String>,
        #[arg(long = "memory-reservation")]
        memory_reservation: Option<String>,
        #[arg(long = "memory-swap")]
        memory_swap: Option<String>,
        #[arg(long = "cpu-shares")]
        cpu_shares: Option<u64>,
        #[arg(long = "cpu-quota")]
        cpu_quota: Option<i64>,
        #[arg(long = "cpu-period")]
        cpu_period: Option<u64>,
        #[arg(long = "cpuset-cpus")]
        cpuset_cpus: Option<String>,
        #[arg(long = "cpuset-mems")]
        cpuset_mems: Option<String>,
        #[arg(long = "pids-limit")]
        pids_limit: Option<i64>,
        #[arg(long = "blkio-weight")]
        blkio_weight: Option<u16>,
    },
    /// Print the OCI features document.
    Features,
    /// Write a default config.json.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
}

impl Cmd {
    /// The command's name when it needs root (all but `spec` and `features`, which touch no
    /// container: husk has no rootless mode).
    fn needs_root(&self) -> Option<&'static str> {
        Some(match self {
            Cmd::Spec { .. } | Cmd::Features => return None,
            Cmd::Create(_) => "create",
            Cmd::Start { .. } => "start",
            Cmd::Run { .. } => "run",
            Cmd::State { .. } => "state",
            Cmd::Kill { .. } => "kill",
            Cmd::Delete { .. } => "delete",
            Cmd::Exec { .. } => "exec",
            Cmd::Ps { .. } => "ps",
            Cmd::List { .. } => "list",
            Cmd::Pause { .. } => "pause",
            Cmd::Resume { .. } => "resume",
            Cmd::Update { .. } => "update",
        })
    }
}

fn main() {
    husk_runtime::run_helper_if_requested();
    let cli = Cli::parse();
    init_logging(&cli);
    if let Some(verb) = cli.cmd.needs_root() {
        if !nix::unistd::geteuid().is_root() {
            // Said plainly, before any path under --root turns it into "Permission denied".
            eprintln!(
                "husk: {verb} needs root: rootless containers are not supported; \
                 run it as root (for example with sudo)"
            );
            std::process::exit(1);
        }
    }
    let log_to_file = cli.log.is_some();
    // runc: a failed exec exits 255 with "exec failed: …" (the process's own status is its own).
    let exec = matches!(cli.cmd, Cmd::Exec { .. });
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let (msg, code) = if exec {
                (format!("exec failed: {e}"), 255)
            } else {
                (e.to_string(), 1)
            };
            if log_to_file {
                tracing::error!("{msg}");
            }
            eprintln!("husk: {msg}");
            std::process::exit(code);
        }
    }
}

fn init_logging(cli: &Cli) {
    let level = if cli.debug { "debug" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HUSK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let file = cli.log.as_ref().and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    });
    match (file, cli.log_format.as_str()) {
        (Some(f), "json") => builder
            .event_format(RuncJson)
            .with_writer(std::sync::Mutex::new(f))
            .init(),
        (Some(f), _) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .init(),
        // Errors already go to stderr as one line; logs there only when asked for.
        (None, "json") => builder
            .event_format(RuncJson)
            .with_writer(std::io::stderr)
            .init(),
        (None, _) => builder.with_writer(std::io::stderr).init(),
    }
}

/// runc's `--log-format json` lines (logrus' JSON formatter): `{"level":"error","msg":"…",
/// "time":"<RFC 3339>"}` plus one key per event field. containerd's runc shim takes the last
/// `"level":"error"` line of this log as the runtime's error message (`getLastRuntimeError` in
/// containerd's pkg/process), so with husk as its `BinaryName` users see husk's reason.
struct RuncJson;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for RuncJson
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut w: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = serde_json::Map::new();
        event.record(&mut JsonFields(&mut fields));
        let msg = fields
            .remove("message")
            .unwrap_or_else(|| serde_json::Value::String(String::new()));
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG => "debug",
            tracing::Level::TRACE => "trace",
        };
        let mut line = serde_json::Map::new();
        line.insert("level".into(), level.into());
        line.insert("msg".into(), msg);
        line.insert(
            "time".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                .into(),
        );
        for (k, v) in fields {
            line.entry(k).or_insert(v);
        }
        writeln!(w, "{}", serde_json::Value::Object(line))
    }
}

/// An event's fields as JSON values.
struct JsonFields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonFields<'_> {
    fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
        self.0.insert(f.name().into(), format!("{v:?}").into());
    }
    fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_i64(&mut self, f: &tracing::field::Field, v: i64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_u64(&mut self, f: &tracing::field::Field, v: u64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_bool(&mut self, f: &tracing::field::Field, v: bool) {
        self.0.insert(f.name().into(), v.into());
    }
}

fn create_opts(a: &CreateArgs, systemd_cgroup: bool) -> Result<CreateOptions, Error> {
    let bundle = a.bundle.canonicalize().map_err(|e| Error::Config {
        path: a.bundle.clone(),
        message: format!("bundle: {e}"),
    })?;
    Ok(CreateOptions {
        bundle,
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        preserve_fds: a.preserve_fds,
        no_pivot: a.no_pivot,
        stdio: Default::default(),
        // runc's semantics: the driver is what the flag says, whatever the path looks like.
        cgroup_driver: Some(if systemd_cgroup {
            husk_runtime::cgroups::Driver::Systemd
        } else {
            husk_runtime::cgroups::Driver::Cgroupfs
        }),
    })
}

fn run(cli: Cli) -> Result<i32, Error> {
    let rt = Runtime::new(&cli.root);
    match cli.cmd {
        Cmd::Create(a) => {
            rt.create(&a.id, create_opts(&a, cli.systemd_cgroup)?)?;
            Ok(0)
        }
        Cmd::Start { id } => rt.load(&id)?.start().map(|_| 0),
        Cmd::Run {
            create,
            detach,
            keep,
        } => {
            let mut opts = create_opts(&create, cli.systemd_cgroup)?;
            let terminal = husk_runtime::spec::load_bundle(&opts.bundle)?
                .process()
                .as_ref()
                .and_then(|p| p.terminal())
                .unwrap_or(false);
            let proxy = console_proxy(
                terminal,
                opts.console_socket.is_none(),
                detach,
                rt.root(),
                &create.id,
            )?;
            if let Some(p) = &proxy {
                opts.console_socket = Some(p.path.clone());
            }
            let sigs = if detach {
                None
            } else {
                Some(block_forwarded_signals())
            };
            let c = rt.create(&create.id, opts)?;
            let attached = match proxy.map(ConsoleProxy::attach).transpose() {
                Ok(a) => a,
                Err(e) => {
                    let _ = c.delete(true);
                    return Err(e);
                }
            };
            if let Err(e) = c.start() {
                let _ = c.delete(true);
                return Err(e);
            }
            if detach {
                return Ok(0);
            }
            let code = wait_forwarding(c.pid(), sigs.expect("blocked"), attached.as_ref());
            drop(attached);
            if !keep {
                c.delete(true)?;
            }
            Ok(code)
        }
        Cmd::State { id } => {
            let c = rt.load(&id)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&c.oci_state()).expect("json")
            );
            Ok(0)
        }
        Cmd::Kill { id, signal, all } => {
            let sig = parse_signal(signal.as_deref().unwrap_or("SIGTERM"))?;
            rt.load(&id)?.kill(sig, all).map(|_| 0)
        }
        Cmd::Delete { id, force } => match rt.load(&id) {
            Ok(c) => c.delete(force).map(|_| 0),
            // runc: deleting a missing container with --force succeeds.
            Err(Error::NotFound(_)) if force => Ok(0),
            Err(e) => Err(e),
        },
        Cmd::Exec {
            id,
            command,
            console_socket,
            cwd,
            env,
            tty,
            user,
            additional_gids,
            process,
            detach,
            pid_file,
            preserve_fds,
            cap,
            no_new_privs,
            apparmor,
            ignore_paused,
        } => {
            let c = rt.load(&id)?;
            let mut p = match &process {
                Some(path) => read_process(path)?,
                None => {
                    if command.is_empty() {
                        return Err(Error::spec("exec", "needs a command or --process"));
                    }
                    let mut p = husk_runtime::spec::load_saved(&rt.root().join(&id))?
                        .process()
                        .clone()
                        .unwrap_or_default();
                    p.set_args(Some(command));
                    p.set_terminal(Some(tty));
                    p.set_console_size(None);
                    p
                }
            };
            // runc's getProcess: flags change the bundle's process; --process ignores them.
            if process.is_none() {
                // Appended: a repeated name is resolved when the process starts (the last
                // value wins, in the first one's place), as for the init's own env.
                let mut e = p.env().clone().unwrap_or_default();
                e.extend(env);
                p.set_env(Some(e));
                if let Some(cwd) = cwd {
                    p.set_cwd(cwd);
                }
                let mut usr = p.user().clone();
                if let Some(u) = user {
                    // uid[:gid]; a uid alone keeps the spec's gid.
                    let bad = || Error::Usage(format!("--user {u:?}: not uid[:gid]"));
                    let (uid, gid) = match u.split_once(':') {
                        Some((uid, gid)) => (uid, Some(gid)),
                        None => (u.as_str(), None),
                    };
                    usr.set_uid(uid.parse().map_err(|_| bad())?);
                    if let Some(gid) = gid {
                        usr.set_gid(gid.parse().map_err(|_| bad())?);
                    }
                }
                // Added to the spec's supplementary groups, not instead of them.
                if !additional_gids.is_empty() {
                    let mut gids = usr.additional_gids().clone().unwrap_or_default();
                    gids.extend(additional_gids);
                    usr.set_additional_gids(Some(gids));
                }
                p.set_user(usr);
                if let Some(v) = no_new_privs {
                    p.set_no_new_privileges(Some(v));
                }
                if let Some(a) = apparmor {
                    p.set_apparmor_profile(Some(a));
                }
                if !cap.is_empty() {
                    add_caps(&mut p, &cap)?;
                }
            }
            let proxy = console_proxy(
                p.terminal().unwrap_or(false),
                console_socket.is_none(),
                detach,
                rt.root(),
                &id,
            )?;
            let console_socket = proxy.as_ref().map(|p| p.path.clone()).or(console_socket);
            let sigs = if detach {
                None
            } else {
                Some(block_forwarded_signals())
            };
            let pid = rt.exec(
                &c,
                ExecOptions {
                    process: p,
                    console_socket,
                    pid_file,
                    preserve_fds,
                    stdio: Default::default(),
                    ignore_paused,
                },
            )?;
            if detach {
                return Ok(0);
            }
            let attached = proxy.map(ConsoleProxy::attach).transpose()?;
            let code = wait_forwarding(pid, sigs.expect("blocked"), attached.as_ref());
            drop(attached);
            Ok(code)
        }
        Cmd::Ps { id, format } => {
            let c = rt.load(&id)?;
            let pids = c.pids()?;
            if format == "json" {
                println!("{}", serde_json::to_string(&pids).expect("json"));
            } else {
                print_ps(&pids);
            }
            Ok(0)
        }
        Cmd::List { format, quiet } => {
            let list = rt.list()?;
            if quiet {
                for s in &list {
                    println!("{}", s.id);
                }
            } else if format == "json" {
                println!("{}", serde_json::to_string(&list).expect("json"));
            } else {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "{:<20} {:<8} {:<10} {:<60} {:<32} OWNER",
                    "ID", "PID", "STATUS", "BUNDLE", "CREATED"
                );
                for s in &list {
                    let _ = writeln!(
                        out,
                        "{:<20} {:<8} {:<10} {:<60} {:<32} {}",
                        s.id,
                        s.pid,
                        s.status.to_string(),
                        s.bundle.display(),
                        s.created,
                        if s.owner.is_empty() { "root" } else { &s.owner }
                    );
                }
            }
            Ok(0)
        }
        Cmd::Pause { id } => rt.load(&id)?.pause().map(|_| 0),
        Cmd::Resume { id } => rt.load(&id)?.resume().map(|_| 0),
        Cmd::Update {
            id,
            resources,
            memory,
            memory_reservation,
            memory_swap,
            cpu_shares,
            cpu_quota,
            cpu_period,
            cpuset_cpus,
            cpuset_mems,
            pids_limit,
            blkio_weight,
        } => {
            let c = rt.load(&id)?;
            let mut v: serde_json::Value = match &resources {
                Some(p) => {
                    let data = if p == Path::new("-") {
                        let mut s = String::new();
                        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(
                            |e| Error::Config {
                                path: p.clone(),
                                message: e.to_string(),
                            },
                        )?;
                        s
                    } else {
                        std::fs::read_to_string(p).map_err(|e| Error::Config {
                            path: p.clone(),
                            message: e.to_string(),
                        })?
                    };
                    serde_json::from_str(&data).map_err(|e| Error::Config {
                        path: p.clone(),
                        message: format!("invalid resources JSON: {e}"),
                    })?
                }
                None => serde_json::json!({}),
            };
            let mut set = |ptr: &str, val: serde_json::Value| {
                let (obj, key) = ptr.split_once('.').unwrap();
                v.as_object_mut()
                    .unwrap()
                    .entry(obj)
                    .or_insert_with(|| serde_json::json!({}))[key] = val;
            };
            if let Some(m) = memory {
                set("memory.limit", parse_bytes(&m, "--memory")?.into());
            }
            if let Some(m) = memory_reservation {
                set(
                    "memory.reservation",
                    parse_bytes(&m, "--memory-reservation")?.into(),
                );
            }
            if let Some(m) = memory_swap {
                set("memory.swap", parse_bytes(&m, "--memory-swap")?.into());
            }
            if let Some(x) = cpu_shares {
                set("cpu.shares", x.into());
            }
            if let Some(x) = cpu_quota {
                set("cpu.quota", x.into());
            }
            if let Some(x) = cpu_period {
                set("cpu.period", x.into());
            }
            if let Some(x) = cpuset_cpus {
                set("cpu.cpus", x.into());
            }
            if let Some(x) = cpuset_mems {
                set("cpu.mems", x.into());
            }
            if let Some(x) = pids_limit {
                set("pids.limit", x.into());
            }
            if let Some(x) = blkio_weight {
                set("blockIO.weight", x.into());
            }
            let res: LinuxResources =
                serde_json::from_value(v).map_err(|e| Error::spec("resources", e.to_string()))?;
            c.update(&res).map(|_| 0)
        }
        Cmd::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&husk_runtime::features::features()).expect("json")
            );
            Ok(0)
        }
        Cmd::Spec { bundle } => {
            let p = bundle.join("config.json");
            if p.exists() {
                return Err(Error::Config {
                    path: p,
                    message: "already exists; remove it first".into(),
                });
            }
            std::fs::write(
                &p,
                serde_json::to_string_pretty(&husk_runtime::features::default_spec())
                    .expect("json"),
            )
            .map_err(|e| Error::Config {
                path: p.clone(),
                message: e.to_string(),
            })?;
            Ok(0)
        }
    }
}

fn read_process(path: &Path) -> Result<Process, Error> {
    let data = std::fs::read(path).map_err(|e| Error::Config {
        path: path.into(),
        message: e.to_string(),
    })?;
    serde_json::from_slice(&data).map_err(|e| Error::Config {
        path: path.into(),
        message: format!("invalid process JSON: {e}"),
    })
}

fn add_caps(p: &mut Process, caps: &[String]) -> Result<(), Error> {
    let mut c = p.capabilities().clone().unwrap_or_default();
    for name in caps {
        let cap: oci_spec::runtime::Capability =
            serde_json::from_value(serde_json::Value::String(name.clone()))
                .map_err(|_| Error::spec("--cap", format!("unknown capability {name:?}")))?;
        let mut b = c.bounding().clone().unwrap_or_default();
        b.insert(cap);
        c.set_bounding(Some(b));
        let mut e = c.effective().clone().unwrap_or_default();
        e.insert(cap);
        c.set_effective(Some(e));
        let mut pm = c.permitted().clone().unwrap_or_default();
        pm.insert(cap);
        c.set_permitted(Some(pm));
    }
    p.set_capabilities(Some(c));
    Ok(())
}

fn parse_bytes(s: &str, flag: &str) -> Result<i64, Error> {
    let s = s.trim();
    if s == "-1" {
        return Ok(-1);
    }
    let (num, mul) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let unit = s[i..].to_ascii_lowercase();
            let mul: i64 = match unit.trim_end_matches('b').trim_end_matches('i') {
                "" => 1,
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                "t" => 1 << 40,
                _ => return Err(Error::spec(flag, format!("bad size {s:?}"))),
            };
            (&s[..i], mul)
        }
        None => (s, 1),
    };
    num.trim()
        .parse::<i64>()
        .map(|n| n * mul)
        .map_err(|_| Error::spec(flag, format!("bad size {s:?}")))
}

/// runc's signal argument: a number or a name; real-time signals included (see
/// `husk_runtime::signal`).
fn parse_signal(s: &str) -> Result<husk_runtime::Signal, Error> {
    s.parse()
        .map_err(|e: husk_runtime::signal::UnknownSignal| Error::Usage(e.to_string()))
}

/// The signals `run` and `exec` in the foreground take in and pass on to the container's
/// process, as runc does: every signal it can catch, real-time ones included, but SIGCHLD
/// (it waits for its child), SIGWINCH (it resizes the terminal), SIGURG (runc drops it) and
/// the faults a program raises in itself. A raw sigset: nix's `SigSet` has no real-time
/// signals.
struct Forwarding(libc::sigset_t);

fn block_forwarded_signals() -> Forwarding {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe { libc::sigemptyset(&mut set) };
    for n in 1..=husk_runtime::signal::SIGRTMAX {
        let own = [
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGILL,
            libc::SIGTRAP,
            libc::SIGSYS,
            libc::SIGPIPE,
            libc::SIGURG,
        ];
        if !own.contains(&n) {
            // glibc refuses its reserved 32 and 33: nobody can send those to us anyway.
            unsafe { libc::sigaddset(&mut set, n) };
        }
    }
    // SAFETY: a valid set; the old mask is not needed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    Forwarding(set)
}

/// runc's foreground terminal: with `process.terminal` and no --console-socket, husk takes the
/// pty master itself and connects it to its own stdin/stdout.
struct ConsoleProxy {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
}

fn console_proxy(
    terminal: bool,
    no_socket: bool,
    detach: bool,
    root: &Path,
    id: &str,
) -> Result<Option<ConsoleProxy>, Error> {
    if !terminal || !no_socket {
        return Ok(None);
    }
    if detach {
        return Err(Error::spec(
            "process.terminal",
            "cannot allocate a tty for a detached container without --console-socket",
        ));
    }
    std::fs::create_dir_all(root).map_err(|e| Error::Config {
        path: root.into(),
        message: e.to_string(),
    })?;
    let path = root.join(format!(".{id}-{}.console", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).map_err(|e| Error::Config {
        path: path.clone(),
        message: format!("console socket: {e}"),
    })?;
    Ok(Some(ConsoleProxy { listener, path }))
}

struct Attached {
    master: std::os::fd::OwnedFd,
    saved: Option<nix::sys::termios::Termios>,
    output: Option<std::thread::JoinHandle<()>>,
}

impl ConsoleProxy {
    fn attach(self) -> Result<Attached, Error> {
        let conn = self.listener.accept().map(|(c, _)| c);
        let _ = std::fs::remove_file(&self.path);
        let conn = conn.map_err(|e| Error::Init(format!("console socket: {e}")))?;
        let master = husk_runtime::tty::recv_fd(&conn)?;
        let stdin = std::io::stdin();
        let saved = nix::sys::termios::tcgetattr(&stdin).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            nix::sys::termios::cfmakeraw(&mut raw);
            let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &raw);
            copy_winsize(&master);
        }
        let mut to_master =
            std::fs::File::from(master.try_clone().map_err(|e| Error::Init(e.to_string()))?);
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_master);
        });
        let mut from_master =
            std::fs::File::from(master.try_clone().map_err(|e| Error::Init(e.to_string()))?);
        // Ends with EIO once the container side of the pty is closed.
        let output = std::thread::spawn(move || {
            let _ = std::io::copy(&mut from_master, &mut std::io::stdout().lock());
        });
        Ok(Attached {
            master,
            saved,
            output: Some(output),
        })
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Some(o) = self.output.take() {
            let _ = o.join();
        }
        if let Some(t) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

fn copy_winsize(master: &impl std::os::fd::AsRawFd) {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: ioctls with a valid winsize on our stdin and the pty master.
    unsafe {
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Waits for our child `pid`, forwarding signals to it; returns its exit code (128+signal for
/// a signal death, as a shell reports it). With a terminal, window size changes go to the pty.
fn wait_forwarding(pid: i32, set: Forwarding, tty: Option<&Attached>) -> i32 {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let target = nix::unistd::Pid::from_raw(pid);
    loop {
        match waitpid(target, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => {}
            Err(nix::errno::Errno::ECHILD) => return 255,
            Err(_) => {}
        }
        let mut sig = 0;
        // SAFETY: a valid, blocked set and an out parameter.
        if unsafe { libc::sigwait(&set.0, &mut sig) } != 0 {
            continue;
        }
        match (sig, tty) {
            (libc::SIGCHLD, _) => {}
            (libc::SIGWINCH, Some(t)) => copy_winsize(&t.master),
            (libc::SIGWINCH, None) => {}
            _ => {
                let _ = husk_runtime::Signal::new(sig).map(|s| s.send(pid));
            }
        }
    }
}

fn print_ps(pids: &[i32]) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{:<8} {:<8} {:<8} CMD", "UID", "PID", "PPID");
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
                .unwrap_or_default()
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .replace('\0', " ")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<8} {:<8} {:<8} {}",
            field("Uid:"),
            pid,
            field("PPid:"),
            cmd
        );
    }
}
