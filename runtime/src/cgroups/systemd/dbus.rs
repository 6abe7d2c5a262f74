//! The D-Bus conversation with systemd's manager (org.freedesktop.systemd1(5)), over zbus's
//! async API on whatever tokio runtime drives the caller (`super::Executor`): no thread of its
//! own.
//!
//! As root husk talks to `/run/systemd/private`, systemd's direct socket: no bus daemon in the
//! path, no `Hello`, and the manager's signals (JobRemoved) arrive there unconditionally. Where
//! that socket cannot be reached it uses the system bus, where the manager only emits signals
//! while some client is subscribed: so `Subscribe` once per connection, and a match rule per
//! job wait. Every wait is bounded.

use super::props::Prop;
use futures_util::StreamExt;
use std::path::Path;
use std::time::Duration;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};
use zbus::{Connection, MatchRule, Message, MessageStream};

pub const DESTINATION: &str = "org.freedesktop.systemd1";
pub const PATH: &str = "/org/freedesktop/systemd1";
pub const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// systemd's direct socket (root only).
pub const PRIVATE_SOCKET: &str = "/run/systemd/private";

/// How long one method call may take before husk gives up on it. systemd answers in
/// milliseconds, but PID 1 is single-threaded and a node under load (a mount storm, many pods
/// at once) can keep it busy for seconds.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// zbus's own bound on a call: only a backstop, later than `CALL_TIMEOUT`, whose error names
/// the call.
const ZBUS_TIMEOUT: Duration = Duration::from_secs(75);
/// How long a unit's job may take (runc's bound, raised from 1 s for loaded hosts: runc#2614).
pub const JOB_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting and authenticating may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// The connection is gone (systemd re-executed, the bus daemon restarted): reconnect.
    Closed(String),
    /// systemd answered with a D-Bus error (`org.freedesktop.systemd1.UnitExists`, …).
    Dbus {
        name: String,
        message: String,
    },
    /// No answer in time.
    Timeout(String),
    Other(String),
}

impl CallError {
    pub fn is(&self, dbus_name: &str) -> bool {
        matches!(self, CallError::Dbus { name, .. } if name == dbus_name)
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Closed(m) => write!(f, "the D-Bus connection to systemd closed: {m}"),
            CallError::Dbus { name, message } => write!(f, "{message} ({name})"),
            CallError::Timeout(m) => write!(f, "{m}"),
            CallError::Other(m) => write!(f, "{m}"),
        }
    }
}

fn closed_kind(k: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        k,
        BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected | UnexpectedEof
    )
}

impl From<zbus::Error> for CallError {
    fn from(e: zbus::Error) -> Self {
        match e {
            zbus::Error::MethodError(name, message, _) => CallError::Dbus {
                name: name.to_string(),
                message: message.unwrap_or_default(),
            },
            zbus::Error::InputOutput(io) if closed_kind(io.kind()) => {
                CallError::Closed(io.to_string())
            }
            zbus::Error::InputOutput(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                CallError::Timeout(format!("no answer from systemd within {ZBUS_TIMEOUT:?}"))
            }
            zbus::Error::InputOutput(io) => CallError::Other(io.to_string()),
            e => CallError::Other(e.to_string()),
        }
    }
}

/// One connection to systemd.
pub struct Bus {
    conn: Connection,
    /// On systemd's direct socket (no bus daemon, no sender names).
    direct: bool,
    /// What it is connected to, for messages.
    pub what: String,
}

async fn bounded<T>(
    what: impl FnOnce() -> String,
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, CallError>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => Err(CallError::Timeout(format!(
            "{} got no answer within {limit:?}",
            what()
        ))),
    }
}

impl Bus {
    /// Connects to systemd's direct socket `private`, or, where it cannot be reached, to the
    /// system bus (`DBUS_SYSTEM_BUS_ADDRESS`, default `/run/dbus/system_bus_socket`) when
    /// `system_bus` is set. Errors name both attempts.
    pub async fn connect(private: &Path, system_bus: bool) -> Result<Bus, String> {
        let direct = bounded(
            || format!("connecting to {}", private.display()),
            CONNECT_TIMEOUT,
            async {
                let io = |e: std::io::Error| CallError::Other(e.to_string());
                let mut stream = connect_unix(private).await.map_err(io)?;
                let guid = super::private::authenticate(&mut stream)
                    .await
                    .map_err(io)?;
                Ok(zbus::connection::Builder::authenticated_socket(
                    super::private::PrivateSocket::new(stream),
                    guid.as_str(),
                )?
                .p2p()
                .method_timeout(ZBUS_TIMEOUT)
                .build()
                .await?)
            },
        )
        .await;
        let direct_err = match direct {
            Ok(conn) => {
                return Ok(Bus {
                    conn,
                    direct: true,
                    what: private.display().to_string(),
                })
            }
            Err(e) => e,
        };
        if !system_bus {
            return Err(format!("{}: {direct_err}", private.display()));
        }
        let bus = bounded(
            || "connecting to the system bus".into(),
            CONNECT_TIMEOUT,
            async {
                let conn = zbus::connection::Builder::system()?
                    .method_timeout(ZBUS_TIMEOUT)
                    .build()
                    .await?;
                // The manager emits JobRemoved on the bus only while a client is subscribed.
                conn.call_method(Some(DESTINATION), PATH, Some(MANAGER), "Subscribe", &())
                    .await?;
                Ok(conn)
            },
        )
        .await;
        match bus {
            Ok(conn) => Ok(Bus {
                conn,
                direct: false,
                what: "the system bus".into(),
            }),
            Err(e) => Err(format!(
                "{}: {direct_err}; the system bus: {e}",
                private.display()
            )),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    async fn call<B>(&self, method: &str, body: &B) -> Result<Message, CallError>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        if self.conn.is_closed() {
            return Err(CallError::Closed(format!("{} is closed", self.what)));
        }
        bounded(|| format!("systemd's {method}"), CALL_TIMEOUT, async {
            Ok(self
                .conn
                .call_method(Some(DESTINATION), PATH, Some(MANAGER), method, body)
                .await?)
        })
        .await
    }

    /// The manager's `Version` property ("257.9-1~deb13u1").
    pub async fn version(&self) -> Result<String, CallError> {
        let reply = bounded(|| "reading systemd's Version".into(), CALL_TIMEOUT, async {
            Ok(self
                .conn
                .call_method(
                    Some(DESTINATION),
                    PATH,
                    Some("org.freedesktop.DBus.Properties"),
                    "Get",
                    &(MANAGER, "Version"),
                )
                .await?)
        })
        .await?;
        let v: OwnedValue = reply.body().deserialize()?;
        String::try_from(v).map_err(|e| CallError::Other(format!("Version: {e}")))
    }

    /// Runs `start` (a call answering a job path) and waits for that job's JobRemoved signal.
    /// Returns the job's result: done, canceled, timeout, failed, dependency or skipped.
    async fn job(
        &self,
        unit: &str,
        what: &str,
        start: impl std::future::Future<Output = Result<Message, CallError>>,
    ) -> Result<String, CallError> {
        // Listen before asking, so the signal cannot be missed; only this unit's jobs reach
        // the stream (arg2 is the unit name).
        let mut rule = MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .interface(MANAGER)
            .and_then(|b| b.member("JobRemoved"))
            .and_then(|b| b.path(PATH))
            .and_then(|b| b.arg(2, unit))
            .map_err(CallError::from)?;
        if !self.direct {
            rule = rule.sender(DESTINATION).map_err(CallError::from)?;
        }
        let mut stream = MessageStream::for_match_rule(rule.build(), &self.conn, Some(16)).await?;
        let reply = start.await?;
        let job: OwnedObjectPath = reply.body().deserialize()?;
        bounded(
            || format!("systemd's job {} ({what} {unit})", job.as_str()),
            JOB_TIMEOUT,
            async {
                while let Some(msg) = stream.next().await {
                    let msg = msg?;
                    let Ok((_, path, _, result)) = msg
                        .body()
                        .deserialize::<(u32, OwnedObjectPath, String, String)>()
                    else {
                        continue;
                    };
                    if path == job {
                        return Ok(result);
                    }
                }
                Err(CallError::Closed(format!(
                    "{} closed while waiting for job {}",
                    self.what,
                    job.as_str()
                )))
            },
        )
        .await
    }

    /// `StartTransientUnit(name, "replace", props, [])` and its job's result.
    pub async fn start_transient_unit(
        &self,
        name: &str,
        props: &[Prop],
    ) -> Result<String, CallError> {
        let props: Vec<(&str, Value<'_>)> =
            props.iter().map(|p| (p.name, p.value.to_value())).collect();
        let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
        self.job(
            name,
            "starting",
            self.call("StartTransientUnit", &(name, "replace", props, aux)),
        )
        .await
    }

    /// `StopUnit(name, "replace")` and its job's result.
    pub async fn stop_unit(&self, name: &str) -> Result<String, CallError> {
        self.job(name, "stopping", self.call("StopUnit", &(name, "replace")))
            .await
    }

    /// `SetUnitProperties(name, runtime=true, props)`: kept in /run, re-applied on reload.
    pub async fn set_unit_properties(&self, name: &str, props: &[Prop]) -> Result<(), CallError> {
        let props: Vec<(&str, Value<'_>)> =
            props.iter().map(|p| (p.name, p.value.to_value())).collect();
        self.call("SetUnitProperties", &(name, true, props))
            .await
            .map(|_| ())
    }

    /// `ResetFailedUnit(name)`: forgets a failed unit so systemd can unload it.
    pub async fn reset_failed_unit(&self, name: &str) -> Result<(), CallError> {
        self.call("ResetFailedUnit", &(name,)).await.map(|_| ())
    }
}

/// Connects to a unix socket, retrying a few times while the listener's backlog is full
/// (EAGAIN, as a loaded systemd's may be: opencontainers/cgroups#45).
async fn connect_unix(path: &Path) -> std::io::Result<tokio::net::UnixStream> {
    let mut delay = Duration::from_millis(10);
    for _ in 0..6 {
        match tokio::net::UnixStream::connect(path).await {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            r => return r,
        }
    }
    tokio::net::UnixStream::connect(path).await
}
