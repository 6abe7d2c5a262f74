//! The systemd cgroup driver on cgroup v2: a container's cgroup is a transient unit —
//! `prefix-name.scope` in `slice` — that husk asks systemd's manager for over D-Bus, as runc
//! does with `--systemd-cgroup` (runc/docs/systemd.md). Then husk writes to the unit's cgroup
//! directly what systemd has no property for (systemd + fs).
//!
//! - `unit`: the `slice:prefix:name` form, unit names and slice expansion (pure).
//! - `props`: unit properties from the OCI resources (pure).
//! - `dbus`: the calls, over zbus's async API.
//!
//! Threads and memory: [`Systemd`] drives zbus on a tokio runtime it is given — the shim's own
//! single-threaded one, from the shim's blocking threads (`Executor::Shared`) — or, for the CLI
//! and other one-shot callers, on a current-thread runtime of its own that runs only inside
//! each call (`Executor::Owned`). Neither starts a thread. One connection is opened on first
//! use and shared by every container of the caller, reopened once when systemd or the bus
//! daemon dropped it. A shim closes it after [`IDLE`] without calls: systemd writes every
//! manager signal to every connection on its direct socket (systemd#32381), so a connection
//! held by each idle pod's shim would cost systemd work and wake every shim for every unit
//! change on the node; a pod's calls come in bursts (its containers start, change, stop).
//!
//! No D-Bus call ever happens in the single-threaded helper that forks the container: the
//! caller (shim or CLI) starts the unit with the helper's pid before the helper makes
//! namespaces, so the cgroup namespace is rooted in the unit's cgroup (runc's order).

pub mod dbus;
mod private;
pub mod props;
pub mod unit;

pub use unit::{expand_slice, UnitSpec};

use crate::error::{Error, Result};
use dbus::{Bus, CallError};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a shim keeps its connection to systemd without calls: a pod's calls come in a
/// burst per container (connect, Version, StartTransientUnit, SetUnitProperties), and
/// reconnecting costs a millisecond.
pub const IDLE: Duration = Duration::from_secs(2);

/// Where [`Systemd`] runs its D-Bus futures.
pub enum Executor {
    /// A runtime driven by another thread (the shim's): calls block the calling thread, which
    /// must not be one of that runtime's async workers (use `spawn_blocking`).
    Shared(tokio::runtime::Handle),
    /// A current-thread runtime made on first use and driven only inside calls (the CLI).
    Owned(OnceLock<tokio::runtime::Runtime>),
}

impl Executor {
    fn block_on<F: std::future::Future>(&self, f: F) -> Result<F::Output> {
        match self {
            Executor::Shared(h) => Ok(h.block_on(f)),
            Executor::Owned(cell) => {
                if cell.get().is_none() {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_io()
                        .enable_time()
                        .build()
                        .map_err(|e| Error::Systemd(format!("tokio runtime: {e}")))?;
                    let _ = cell.set(rt);
                }
                Ok(cell.get().expect("set above").block_on(f))
            }
        }
    }
}

/// The systemd manager as a cgroup manager: starts, changes and stops containers' units.
pub struct Systemd {
    exec: Executor,
    bus: Arc<Mutex<Option<Arc<Bus>>>>,
    use_: Arc<Use>,
    on_idle: Option<Arc<dyn Fn() + Send + Sync>>,
    version: OnceLock<u32>,
    private_socket: PathBuf,
    system_bus: bool,
}

/// When the connection was last used, by how many calls now, and whether a closer waits.
struct Use {
    last: Mutex<Instant>,
    in_flight: AtomicUsize,
    closer: AtomicBool,
}

/// One call in flight (see `Systemd::busy`).
struct Busy<'a>(&'a Systemd);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let u = &self.0.use_;
        *u.last.lock().unwrap() = Instant::now();
        u.in_flight.fetch_sub(1, Ordering::SeqCst);
        let Executor::Shared(h) = &self.0.exec else {
            return;
        };
        if u.closer.swap(true, Ordering::SeqCst) {
            return;
        }
        let (u, bus, on_idle) = (
            self.0.use_.clone(),
            self.0.bus.clone(),
            self.0.on_idle.clone(),
        );
        h.spawn(async move {
            loop {
                tokio::time::sleep(IDLE).await;
                let quiet = u.last.lock().unwrap().elapsed() >= IDLE;
                if quiet && u.in_flight.load(Ordering::SeqCst) == 0 {
                    // A call that already holds the connection keeps it until it is done.
                    if bus.lock().unwrap().take().is_some() {
                        tracing::debug!("closing the idle connection to systemd");
                    }
                    u.closer.store(false, Ordering::SeqCst);
                    if let Some(f) = on_idle {
                        f();
                    }
                    return;
                }
            }
        });
    }
}

impl Default for Systemd {
    fn default() -> Self {
        Self::new(Executor::Owned(OnceLock::new()))
    }
}

impl Systemd {
    pub fn new(exec: Executor) -> Systemd {
        Systemd {
            exec,
            bus: Arc::new(Mutex::new(None)),
            use_: Arc::new(Use {
                last: Mutex::new(Instant::now()),
                in_flight: AtomicUsize::new(0),
                closer: AtomicBool::new(false),
            }),
            on_idle: None,
            version: OnceLock::new(),
            private_socket: PathBuf::from(dbus::PRIVATE_SOCKET),
            system_bus: true,
        }
    }

    /// Calls `f` after a shim's idle connection was closed (the shim trims its resident set
    /// then: what the connection used is not needed until the next container).
    pub fn on_idle(mut self, f: impl Fn() + Send + Sync + 'static) -> Systemd {
        self.on_idle = Some(Arc::new(f));
        self
    }

    /// Talks to a manager at `socket` only (tests: a fake systemd).
    pub fn with_socket(mut self, socket: impl Into<PathBuf>) -> Systemd {
        self.private_socket = socket.into();
        self.system_bus = false;
        self
    }

    /// Talks to the system bus only (never the direct socket): for tests and diagnostics.
    pub fn via_system_bus(mut self) -> Systemd {
        self.private_socket = PathBuf::new();
        self.system_bus = true;
        self
    }

    /// Whether a connection to systemd is open now (a shim's closes after [`IDLE`]).
    pub fn is_connected(&self) -> bool {
        self.bus
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|b| !b.is_closed())
    }

    /// What the open connection goes to (`/run/systemd/private`, `the system bus`).
    pub fn connected_to(&self) -> Option<String> {
        self.bus.lock().unwrap().as_ref().map(|b| b.what.clone())
    }

    /// Marks a call in flight until the guard drops (then the idle closer may run).
    fn busy(&self) -> Busy<'_> {
        self.use_.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(self)
    }

    async fn connection(&self) -> Result<Arc<Bus>> {
        if let Some(b) = self.bus.lock().unwrap().as_ref().filter(|b| !b.is_closed()) {
            return Ok(b.clone());
        }
        let bus = Arc::new(
            Bus::connect(&self.private_socket, self.system_bus)
                .await
                .map_err(|e| Error::Systemd(format!("cannot reach systemd over D-Bus: {e}")))?,
        );
        *self.bus.lock().unwrap() = Some(bus.clone());
        tracing::debug!(to = %bus.what, "connected to systemd");
        Ok(bus)
    }

    /// Runs `f` on the connection; on a closed connection, reconnects and runs it once more
    /// (systemd re-executed or the bus daemon restarted: runc#2923).
    async fn with_bus<T, F, Fut>(&self, f: F) -> Result<T, CallError>
    where
        F: Fn(Arc<Bus>) -> Fut,
        Fut: std::future::Future<Output = Result<T, CallError>>,
    {
        let bus = self
            .connection()
            .await
            .map_err(|e| CallError::Other(e.to_string()))?;
        match f(bus).await {
            Err(CallError::Closed(m)) => {
                tracing::info!(error = %m, "D-Bus connection to systemd lost; reconnecting");
                self.bus.lock().unwrap().take();
                let bus = self
                    .connection()
                    .await
                    .map_err(|e| CallError::Other(e.to_string()))?;
                f(bus).await
            }
            r => r,
        }
    }

    /// Connects now (if not yet): one clear error up front when D-Bus cannot be reached.
    pub fn connect(&self) -> Result<()> {
        let _busy = self.busy();
        self.exec.block_on(self.connection())?.map(|_| ())
    }

    /// systemd's version (the leading number of the manager's `Version`), read once; 0 when
    /// it cannot be read (every version-gated property is then left to cgroupfs).
    pub fn version(&self) -> u32 {
        if let Some(v) = self.version.get() {
            return *v;
        }
        let _busy = self.busy();
        let read = self
            .exec
            .block_on(self.with_bus(|b| async move { b.version().await }))
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        let v = match read {
            Ok(s) => parse_version(&s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read systemd's Version: version-gated properties are left to cgroupfs");
                0
            }
        };
        *self.version.get_or_init(|| v)
    }

    /// Starts `unit` holding `pid` (a scope; a slice is started empty and the caller moves the
    /// process in) and waits for its job. An existing unit of that name — usually a failed
    /// leftover — is reset and the start retried once (runc's rule; runc#3780).
    ///
    /// Errors: D-Bus unreachable, the start refused, a job result other than `done` (the unit
    /// is reset so no failed unit lingers), no result within 30 s.
    pub fn start(&self, unit: &UnitSpec, props: &[props::Prop]) -> Result<()> {
        let name = unit.name.as_str();
        let _busy = self.busy();
        let r = self.exec.block_on(async {
            let mut retried = false;
            loop {
                let r = self
                    .with_bus(|b| async move { b.start_transient_unit(name, props).await })
                    .await;
                match r {
                    Err(e) if e.is("org.freedesktop.systemd1.UnitExists") && !retried => {
                        tracing::info!(unit = name, "unit exists: resetting it and retrying once");
                        retried = true;
                        let _ = self
                            .with_bus(|b| async move { b.reset_failed_unit(name).await })
                            .await;
                    }
                    Ok(result) if result != "done" => {
                        let _ = self
                            .with_bus(|b| async move { b.reset_failed_unit(name).await })
                            .await;
                        return Err(format!("its start job ended with result {result:?}"));
                    }
                    Ok(_) => return Ok(()),
                    Err(e @ CallError::Timeout(_)) => {
                        // The start was asked for but its job did not end in time: the unit
                        // is this call's, so it goes.
                        let _ = self
                            .with_bus(|b| async move { b.stop_unit(name).await })
                            .await;
                        let _ = self
                            .with_bus(|b| async move { b.reset_failed_unit(name).await })
                            .await;
                        return Err(e.to_string());
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
        })?;
        r.map_err(|m| Error::Systemd(format!("cannot start unit {name}: {m}")))
    }

    /// `SetUnitProperties(runtime)`: the properties land in /run/systemd/transient and survive
    /// a daemon-reload.
    pub fn set(&self, name: &str, props: &[props::Prop]) -> Result<()> {
        if props.is_empty() {
            return Ok(());
        }
        let _busy = self.busy();
        self.exec
            .block_on(self.with_bus(|b| async move { b.set_unit_properties(name, props).await }))?
            .map_err(|e| Error::Systemd(format!("cannot set properties of unit {name}: {e}")))
    }

    /// Stops `name` (bounded wait for the job) and resets it, so neither a stopped nor a failed
    /// unit is left. A unit systemd already unloaded (its scope emptied) is not an error.
    pub fn stop(&self, name: &str) -> Result<()> {
        const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";
        let _busy = self.busy();
        let r = self.exec.block_on(async {
            let stopped = self
                .with_bus(|b| async move { b.stop_unit(name).await })
                .await;
            let reset = self
                .with_bus(|b| async move { b.reset_failed_unit(name).await })
                .await;
            match stopped {
                Ok(result) if result != "done" => {
                    tracing::warn!(unit = name, result = %result, "stop job did not finish as done");
                }
                Err(e) if !e.is(NO_SUCH_UNIT) => return Err(e),
                _ => {}
            }
            match reset {
                Err(e) if !e.is(NO_SUCH_UNIT) => Err(e),
                _ => Ok(()),
            }
        })?;
        r.map_err(|e| Error::Systemd(format!("cannot stop unit {name}: {e}")))
    }
}

impl Systemd {
    /// Applies `res` to a container in unit `name` whose cgroup is `cg`: the properties systemd
    /// has for them first (so a daemon-reload restores them), then every cgroup v2 write and
    /// husk's device program, as the cgroupfs driver makes them (systemd + fs, as runc does).
    pub fn apply(
        &self,
        name: &str,
        cg: &super::Cgroup,
        res: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        let version = self.version();
        let (mut props, writes) = props::from_writes(&super::v2_writes(res)?, version)
            .map_err(|m| Error::spec("linux.resources", m))?;
        if let Some(d) = res.devices() {
            props.extend(props::devices(d, version));
        }
        self.set(name, &props)?;
        cg.apply_v2(&writes, res.devices().as_deref())
    }
}

/// The leading number of systemd's version string ("257.9-1", "v245.4-1.fc32", "\"252\"").
pub fn parse_version(s: &str) -> u32 {
    let s = s.trim_start_matches(['"', 'v']);
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn unreachable_systemd_is_one_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let sd = super::Systemd::default().with_socket(dir.path().join("no-such-socket"));
        let e = sd.connect().unwrap_err().to_string();
        assert!(
            e.starts_with("systemd: cannot reach systemd over D-Bus: "),
            "{e}"
        );
        assert!(e.contains("no-such-socket"), "{e}");
        assert!(!sd.is_connected());
        // A socket nobody answers on the D-Bus protocol: refused, not hung.
        let path = dir.path().join("mute");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (c, _) = listener.accept().unwrap();
            drop(c);
        });
        let sd = super::Systemd::default().with_socket(&path);
        let e = sd.connect().unwrap_err().to_string();
        assert!(e.contains("cannot reach systemd"), "{e}");
        t.join().unwrap();
    }

    #[test]
    fn versions() {
        assert_eq!(super::parse_version("257.9-1~deb13u1"), 257);
        assert_eq!(super::parse_version("v245.4-1.fc32"), 245);
        assert_eq!(super::parse_version("\"252\""), 252);
        assert_eq!(super::parse_version("junk"), 0);
    }
}
