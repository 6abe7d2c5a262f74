//! husk-node-installer: puts husk on a node (the shim binary and containerd's `husk` runtime
//! handler) and takes it off again. Runs on the host or in the Helm chart's DaemonSet.

use clap::{Parser, Subcommand};
use husk_installer::*;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "husk-node-installer", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct Common {
    /// containerd's config file.
    #[arg(long, default_value = "/etc/containerd/config.toml")]
    config: PathBuf,
    /// Where containerd finds shims.
    #[arg(long = "bin-dir", default_value = "/usr/local/bin")]
    bin_dir: PathBuf,
    /// Drop-in directory for containerd 2.x configs (used when containerd imports it).
    #[arg(long = "drop-in-dir", default_value = "/etc/containerd/conf.d")]
    drop_in_dir: PathBuf,
    /// Restart containerd afterwards (systemctl, in the host's mount namespace when run in a
    /// pod with hostPID). Running pods survive a containerd restart.
    #[arg(long)]
    restart: bool,
    /// Label this node husk.dev/runtime-ready=true through the Kubernetes API once containerd
    /// has the handler loaded (and remove the label on uninstall). Needs the pod's service
    /// account and the node's name.
    #[arg(long = "label-node")]
    label_node: bool,
    /// The node's name (the chart passes spec.nodeName through the downward API).
    #[arg(long = "node-name", env = "NODE_NAME")]
    node_name: Option<String>,
}

impl Common {
    fn set_ready_label(&self, ready: bool) -> Result<(), Error> {
        if !self.label_node {
            return Ok(());
        }
        let node = self.node_name.as_deref().ok_or_else(|| {
            Error::Io("--label-node needs the node's name (--node-name or NODE_NAME)".into())
        })?;
        let api = kube::ApiServer::in_cluster()?;
        let value = ready.then_some("true");
        api.set_node_label(node, kube::READY_LABEL, value)?;
        if ready {
            println!("labelled node {node} {}=true", kube::READY_LABEL);
        } else {
            println!("removed label {} from node {node}", kube::READY_LABEL);
        }
        Ok(())
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the shim and register the `husk` runtime handler.
    Install {
        #[command(flatten)]
        common: Common,
        /// The shim binary to install.
        #[arg(long, default_value = "/opt/husk/containerd-shim-husk-v2")]
        shim: PathBuf,
        /// Config schema for an empty or missing config: 2 (containerd 1.6/1.7) or 3 (2.x).
        #[arg(long = "config-version", default_value_t = 2)]
        config_version: u8,
        /// How to register husk: `runc-type` (runtime_type io.containerd.runc.v2 with
        /// runtime_path = the shim: containerd before 2.2.7 / 2.3.4 asks only runc-type
        /// handlers for their features, such as user namespaces), `native`
        /// (io.containerd.husk.v2), or `auto`: by the node's containerd version.
        #[arg(long, default_value = "auto", value_parser = ["auto", "runc-type", "native"])]
        registration: String,
        /// The node's containerd version for `--registration auto` (else asked of the API
        /// server with --node-name, or of `containerd --version`).
        #[arg(long = "containerd-version")]
        containerd_version: Option<String>,
        /// The shim's path as containerd sees it, for the runc-type registration's
        /// `runtime_path` (default: --bin-dir's; in a pod the host path differs).
        #[arg(long = "runtime-path")]
        runtime_path: Option<PathBuf>,
    },
    /// Stay running (the DaemonSet's main container); on SIGTERM, optionally uninstall.
    Hold {
        #[command(flatten)]
        common: Common,
        /// Uninstall when terminated (the DaemonSet's pod is deleted, e.g. by helm uninstall).
        #[arg(long = "uninstall-on-exit")]
        uninstall_on_exit: bool,
        /// With --uninstall-on-exit: remove even while husk pods still run.
        #[arg(long)]
        force: bool,
    },
    /// Remove what `install` did.
    Uninstall {
        #[command(flatten)]
        common: Common,
        /// Remove even while husk pods still run (they keep running; new ones cannot start).
        #[arg(long)]
        force: bool,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("husk-node-installer: {e}");
        std::process::exit(1);
    }
}

fn backup(config: &std::path::Path, text: &str) -> Result<(), Error> {
    let b = config.with_extension("toml.husk-backup");
    if !b.exists() && !text.is_empty() {
        std::fs::write(&b, text).map_err(|e| Error::Io(format!("backup {}: {e}", b.display())))?;
        println!("backed up {} to {}", config.display(), b.display());
    }
    Ok(())
}

/// The host's mount namespace when this process runs in another one but sees the host's PID 1
/// (a pod with hostPID): systemctl and systemd's sockets live there, not in a FROM-scratch image.
fn host_mount_ns() -> Option<std::fs::File> {
    use std::os::unix::fs::MetadataExt;
    let host = std::fs::File::open("/proc/1/ns/mnt").ok()?;
    let ours = std::fs::metadata("/proc/self/ns/mnt").ok()?;
    let theirs = host.metadata().ok()?;
    (theirs.dev(), theirs.ino())
        .ne(&(ours.dev(), ours.ino()))
        .then_some(host)
}

/// What a restart of containerd would change: the handler registered, or removed.
#[derive(Clone, Copy)]
enum Change {
    Installed,
    Removed,
}

/// The line printed when containerd is left running.
fn not_restarted(change: Change) -> &'static str {
    match change {
        Change::Installed => "containerd was not restarted (pass --restart): it picks up the handler on its next start; running pods survive the restart with husk.",
        Change::Removed => "containerd was not restarted (pass --restart): it drops the handler on its next start; until then it still offers the handler, whose shim binary is gone.",
    }
}

/// Returns whether containerd was restarted.
fn restart(yes: bool, change: Change) -> Result<bool, Error> {
    if !yes {
        println!("{}", not_restarted(change));
        return Ok(false);
    }
    let mut cmd = std::process::Command::new("systemctl");
    cmd.args(["restart", "containerd"]);
    if let Some(ns) = host_mount_ns() {
        use std::os::unix::process::CommandExt;
        // SAFETY: setns is a single syscall, safe between fork and exec; the installer is
        // single-threaded, which joining a mount namespace requires anyway.
        unsafe {
            cmd.pre_exec(move || {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNS)
                    .map_err(std::io::Error::from)
            });
        }
    }
    let st = cmd.status().map_err(|e| {
        Error::Io(format!(
            "systemctl: {e} (in a pod, restarting containerd needs hostPID: the chart sets it when containerd.restart is true)"
        ))
    })?;
    if !st.success() {
        return Err(Error::Io(format!("systemctl restart containerd: {st}")));
    }
    println!("containerd restarted");
    Ok(true)
}

/// The node's containerd version, for `--registration auto`: given, else from the API server
/// (kubelet's report of the node), else from `containerd --version` (run in the host's mount
/// namespace from a pod with hostPID). Each source that fails says why.
fn containerd_version(common: &Common, given: Option<&str>) -> Option<(u32, u32, u32)> {
    if let Some(v) = given {
        let parsed = parse_containerd_version(v);
        if parsed.is_none() {
            println!("--containerd-version {v:?} holds no major.minor.patch");
        }
        return parsed;
    }
    if let Some(node) = &common.node_name {
        match kube::ApiServer::in_cluster().and_then(|api| api.node_runtime_version(node)) {
            Ok(v) => match parse_containerd_version(&v) {
                Some(ver) if v.starts_with("containerd") => return Some(ver),
                _ => println!("node {node} runs {v:?}, not containerd"),
            },
            Err(e) => println!("containerd version from the API server: {e}"),
        }
    }
    let mut cmd = std::process::Command::new("containerd");
    cmd.arg("--version");
    if let Some(ns) = host_mount_ns() {
        use std::os::unix::process::CommandExt;
        // SAFETY: setns is a single syscall, safe between fork and exec (see `restart`).
        unsafe {
            cmd.pre_exec(move || {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNS)
                    .map_err(std::io::Error::from)
            });
        }
    }
    match cmd.output() {
        Ok(o) if o.status.success() => {
            parse_containerd_version(&String::from_utf8_lossy(&o.stdout))
        }
        Ok(o) => {
            println!("containerd --version: {}", o.status);
            None
        }
        Err(e) => {
            println!("containerd --version: {e}");
            None
        }
    }
}

/// The registration `--registration` asks for, explained.
fn choose_registration(
    common: &Common,
    asked: &str,
    given_version: Option<&str>,
    runtime_path: Option<PathBuf>,
) -> Registration {
    let shim = runtime_path.unwrap_or_else(|| common.bin_dir.join(SHIM_NAME));
    match asked {
        "native" => Registration::Native,
        "runc-type" => {
            if let Some(v @ (a, b, c)) = given_version.and_then(parse_containerd_version) {
                if !runs_runtime_path(v) {
                    eprintln!("warning: containerd {a}.{b}.{c} may ignore runtime_path for CRI pods (containerd#8207, fixed in 1.7.1): a runc-type husk handler then runs its pods on runc, and 1.x reports no handler features; use --registration native or auto");
                }
            }
            Registration::RuncType { runtime_path: shim }
        }
        _ => {
            let version = containerd_version(common, given_version);
            let reg = registration_for(version, &shim);
            match (version, &reg) {
                (Some(v @ (a, b, c)), Registration::Native) if !runs_runtime_path(v) => println!(
                    "containerd {a}.{b}.{c} reports no handler features (and 1.6 ignores runtime_path, containerd#8207): registering husk natively ({RUNTIME_TYPE})"
                ),
                (Some((a, b, c)), Registration::Native) => println!(
                    "containerd {a}.{b}.{c} asks every runtime type for its features: registering husk natively ({RUNTIME_TYPE})"
                ),
                (Some((a, b, c)), _) => println!(
                    "containerd {a}.{b}.{c} asks only runc-type runtimes for their features (user namespaces, recursive read-only mounts; fixed in 2.2.7, 2.3.4 and 2.4): registering husk as {RUNC_RUNTIME_TYPE} with runtime_path {}",
                    shim.display()
                ),
                (None, _) => println!(
                    "containerd's version is unknown: registering husk natively ({RUNTIME_TYPE}), which runs pods on husk on every containerd (pass --registration or --containerd-version to choose: containerd 2.x before 2.2.7 / 2.3.4 reports user namespaces for husk only when it is registered as runc-type)"
                ),
            }
            reg
        }
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    match cli.cmd {
        Cmd::Install {
            common,
            shim,
            config_version,
            registration,
            containerd_version,
            runtime_path,
        } => {
            let text = std::fs::read_to_string(&common.config).unwrap_or_default();
            let default = if config_version == 3 {
                Schema::V3
            } else {
                Schema::V2
            };
            let reg = choose_registration(
                &common,
                &registration,
                containerd_version.as_deref(),
                runtime_path,
            );
            let Decision {
                plan,
                schema,
                driver,
                runc_handler,
            } = plan_install(
                &common.config,
                &text,
                default,
                Some(&common.drop_in_dir),
                &reg,
            )?;
            println!(
                "cgroup driver: {} (SystemdCgroup = {}), as {}",
                driver.name(),
                driver == Driver::Systemd,
                runc_handler
                    .map(|h| format!("runtime handler `{h}` (runc) uses"))
                    .unwrap_or_else(|| "containerd's built-in runc handler uses".into())
            );
            let dst = install_binary(&shim, &common.bin_dir, SHIM_NAME)?;
            println!("installed {}", dst.display());
            let already = matches!(plan, Plan::AlreadyInstalled);
            match plan {
                Plan::AlreadyInstalled => println!(
                    "runtime handler `{HANDLER}` already registered ({}, {}) in {}",
                    reg.name(),
                    driver.name(),
                    common.config.display()
                ),
                Plan::InPlace(out) => {
                    backup(&common.config, &text)?;
                    write_atomic(&common.config, out.as_bytes())?;
                    println!(
                        "registered runtime handler `{HANDLER}` ({}, {}) in {} (plugin {})",
                        reg.name(),
                        reg.runtime_type(),
                        common.config.display(),
                        schema.cri_plugin()
                    );
                }
                Plan::DropIn {
                    file,
                    content,
                    config,
                } => {
                    std::fs::create_dir_all(&common.drop_in_dir)
                        .map_err(|e| Error::Io(e.to_string()))?;
                    write_atomic(&file, content.as_bytes())?;
                    if let Some(c) = config {
                        backup(&common.config, &text)?;
                        write_atomic(&common.config, c.as_bytes())?;
                    }
                    println!(
                        "registered runtime handler `{HANDLER}` ({}, {}) in drop-in {}",
                        reg.name(),
                        reg.runtime_type(),
                        file.display()
                    );
                }
            }
            // The node is ready once containerd has loaded the handler: after the restart,
            // or when it was registered before (a re-run of the DaemonSet pod).
            if restart(common.restart, Change::Installed)? || already {
                common.set_ready_label(true)?;
            } else if common.label_node {
                println!(
                    "node not labelled {}: containerd loads the new handler on its next restart",
                    kube::READY_LABEL
                );
            }
            Ok(())
        }
        Cmd::Hold {
            common,
            uninstall_on_exit,
            force,
        } => {
            use nix::sys::signal::{SigSet, Signal};
            let mut set = SigSet::empty();
            set.add(Signal::SIGTERM);
            set.add(Signal::SIGINT);
            set.thread_block()
                .map_err(|e| Error::Io(format!("block signals: {e}")))?;
            println!(
                "husk is installed; holding until terminated{}",
                if uninstall_on_exit {
                    " (then uninstalling)"
                } else {
                    ""
                }
            );
            let sig = set
                .wait()
                .map_err(|e| Error::Io(format!("wait for a signal: {e}")))?;
            println!("received {sig}");
            if uninstall_on_exit {
                uninstall(common, force)?;
            }
            Ok(())
        }
        Cmd::Uninstall { common, force } => uninstall(common, force),
    }
}

fn uninstall(common: Common, force: bool) -> Result<(), Error> {
    let running = running_shims();
    if !running.is_empty() && !force {
        return Err(Error::Io(format!("{} husk shim(s) still run (pids {running:?}): drain the node's husk pods first, or pass --force", running.len())));
    }
    // First stop the scheduler from placing husk pods here.
    common.set_ready_label(false)?;
    let text = std::fs::read_to_string(&common.config).unwrap_or_default();
    if !text.is_empty() {
        let mut doc = parse(&common.config, &text)?;
        let schema = schema(&common.config, &doc, Schema::V2)?;
        let drop = common.drop_in_dir.join("husk.toml");
        let mut changed = remove_handler(&mut doc, schema);
        if let Some(arr) = doc.get_mut("imports").and_then(|i| i.as_array_mut()) {
            let before = arr.len();
            arr.retain(|v| v.as_str() != Some(&drop.display().to_string()));
            changed |= arr.len() != before;
        }
        if changed {
            write_atomic(&common.config, doc.to_string().as_bytes())?;
            println!(
                "removed runtime handler `{HANDLER}` from {}",
                common.config.display()
            );
        }
        if std::fs::read_to_string(&drop)
            .map(|t| t.contains(MARKER))
            .unwrap_or(false)
        {
            std::fs::remove_file(&drop).map_err(|e| Error::Io(e.to_string()))?;
            println!("removed {}", drop.display());
        }
    }
    let bin = common.bin_dir.join(SHIM_NAME);
    if bin.exists() {
        std::fs::remove_file(&bin)
            .map_err(|e| Error::Io(format!("remove {}: {e}", bin.display())))?;
        println!("removed {}", bin.display());
    }
    restart(common.restart, Change::Removed).map(drop)
}
