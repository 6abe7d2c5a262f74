//! containerd-shim-husk-v2: containerd's runtime v2 shim (runtime type io.containerd.husk.v2)
//! over the husk native runtime core. No runc, and no exec of the husk CLI: containers are
//! created in process through `husk_runtime`.

use containerd_shim_husk_v2::{args, events, manager, reaper, residency, service};
use containerd_shim_protos::shim_async::create_task;
use containerd_shim_protos::ttrpc;
use std::sync::Arc;

fn main() {
    // Re-execs of this binary set up containers; they never reach the shim code.
    husk_runtime::run_helper_if_requested();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match args::parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("containerd-shim-husk-v2: {e} (-h prints usage)");
            std::process::exit(2);
        }
    };
    if args.help {
        println!("{}", args::USAGE);
        return;
    }
    if args.info {
        manager::print(&manager::info());
        return;
    }
    if args.version {
        println!(
            "containerd-shim-husk-v2:\n  Version: {}\n  Runtime: io.containerd.husk.v2",
            env!("CARGO_PKG_VERSION")
        );
        return;
    }
    match args.action.as_str() {
        "start" => match manager::start(&args) {
            // containerd reads stdout+stderr as the address: print nothing else.
            Ok(reply) => manager::print(&reply),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        },
        "delete" => match manager::delete(&args) {
            Ok(bytes) => manager::print(&bytes),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        },
        "" => {
            if let Err(e) = serve(args) {
                eprintln!("containerd-shim-husk-v2: {e}");
                std::process::exit(1);
            }
        }
        other => {
            eprintln!("containerd-shim-husk-v2: unknown action {other:?}");
            std::process::exit(2);
        }
    }
}

fn init_logging(debug: bool) {
    // containerd reads the shim's log from the `log` FIFO in the bundle directory.
    let level = if debug { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::new(level);
    let log = std::fs::OpenOptions::new().write(true).open("log");
    match log {
        Ok(f) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .init(),
        Err(_) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .init(),
    }
}

fn serve(args: args::Args) -> Result<(), String> {
    if args.socket.is_empty() {
        return Err("serve mode needs -socket (containerd runs `start` first)".into());
    }
    init_logging(args.debug);
    reaper::set_subreaper().map_err(|e| format!("subreaper: {e}"))?;
    // One malloc arena: the shim is a single-threaded runtime; a blocking-pool thread would
    // otherwise leave a second arena of its own resident for the pod's lifetime.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    // A container writing to a closed FIFO must not kill the shim.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Blocking threads (create, start, exec) come in bursts per pod; an idle one would
        // hold its stack and the code of its exit path resident for 10 s after each burst.
        .thread_keep_alive(residency::QUIET / 2)
        .build()
        .map_err(|e| format!("tokio: {e}"))?;
    rt.block_on(async move {
        reaper::start_orphan_reaper().map_err(|e| format!("SIGCHLD: {e}"))?;
        let ttrpc_address =
            std::env::var("TTRPC_ADDRESS").unwrap_or_else(|_| format!("{}.ttrpc", args.address));
        let publisher = events::Publisher::start(
            format!("unix://{}", ttrpc_address.trim_start_matches("unix://")),
            args.namespace.clone(),
        );
        // A shim lives as long as its pod: do not keep a copy of this binary in memory for it.
        // The systemd driver's D-Bus connection (opened on the first container that uses it)
        // runs on this runtime: no thread of its own; runtime calls come from blocking threads.
        let runtime = husk_runtime::Runtime::new(manager::runtime_root(&args.namespace))
            .keep_helper_copy(false)
            .with_systemd(
                husk_runtime::cgroups::systemd::Systemd::new(
                    husk_runtime::cgroups::systemd::Executor::Shared(
                        tokio::runtime::Handle::current(),
                    ),
                )
                // Trim once the idle connection is closed: it is not needed until the next
                // container.
                .on_idle(residency::touch),
            );
        let service = Arc::new(service::Service::new(
            args.namespace.clone(),
            runtime,
            publisher,
        ));
        let shutdown = service.shutdown.clone();
        service.end_if_orphaned(
            service::ORPHAN_GRACE_AFTER_START,
            "no create since the shim started",
        );
        let services = create_task(service);
        // SAFETY: fd 3 is the listening socket `start` handed us.
        let mut server =
            unsafe { ttrpc::asynchronous::Server::new().add_unix_listener(manager::LISTENER_FD) }
                .map_err(|e| format!("listener: {e}"))?
                .register_service(services);
        server
            .start()
            .await
            .map_err(|e| format!("ttrpc server: {e}"))?;
        tracing::info!(namespace = %args.namespace, id = %args.id, "husk shim serving");
        residency::spawn_trimmer();
        residency::touch();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        tokio::select! {
            _ = shutdown.notified() => {}
            _ = term.recv() => {}
        }
        let _ = server.shutdown().await;
        let sock = args.socket.trim_start_matches("unix://");
        let _ = std::fs::remove_file(sock);
        Ok::<(), String>(())
    })
}
