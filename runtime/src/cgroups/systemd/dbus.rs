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
/// How long a call on systemd's direct socket waits for its answer before husk writes a
/// no-reply `Ping` after it, and again at this interval while it waits (see `Bus::nudged`).
pub const NUDGE_AFTER: Duration = Duration::from_secs(1);

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
        bounded(
            || format!("systemd's {method}"),
            CALL_TIMEOUT,
            self.nudged(method, async {
                Ok(self
                    .conn
                    .call_method(Some(DESTINATION), PATH, Some(MANAGER), method, body)
                    .await?)
            }),
        )
        .await
    }

    /// Awaits `call` and, on systemd's direct socket, writes a no-reply
    /// `org.freedesktop.DBus.Peer.Ping` after it each `NUDGE_AFTER` it goes unanswered.
    ///
    /// Why: sd-bus's server reads the end of the SASL exchange and whatever follows it in one
    /// read; it switches to running at `BEGIN` and leaves the rest in its read buffer, and its
    /// event loop polls the socket for more only when its message queue is empty
    /// (`sd_bus_get_events`, `sd_bus_get_timeout` in src/libsystemd/sd-bus/sd-bus.c). So when
    /// a busy PID 1 reads `BEGIN` and the first call together, that call waits for the next
    /// bytes on the connection; with none coming it hit `CALL_TIMEOUT` (seen: 2 of 4 shims
    /// started at once in the node guest each stalled 60 s in their first call). The ping is
    /// those bytes; systemd answers it with nothing.
    async fn nudged<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<T, CallError>>,
    ) -> Result<T, CallError> {
        if !self.direct {
            return call.await;
        }
        tokio::pin!(call);
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + NUDGE_AFTER, NUDGE_AFTER);
        loop {
            tokio::select! {
                r = &mut call => return r,
                _ = tick.tick() => {
                    tracing::debug!(call = what, "no answer yet from systemd: pinging it");
                    if let Err(e) = self.ping().await {
                        tracing::debug!(error = %e, "cannot ping systemd");
                    }
                }
            }
        }
    }

    /// Writes `Ping` with NO_REPLY_EXPECTED: bytes for systemd to read, nothing to wait for.
    async fn ping(&self) -> Result<(), zbus::Error> {
        let msg = Message::method_call(PATH, "Ping")?
            .destination(DESTINATION)?
            .interface("org.freedesktop.DBus.Peer")?
            .with_flags(zbus::message::Flags::NoReplyExpected)?
            .build(&())?;
        self.conn.send(&msg).await
    }

    /// The manager's `Version` property ("257.9-1~deb13u1").
    pub async fn version(&self) -> Result<String, CallError> {
        let reply = bounded(
            || "reading systemd's Version".into(),
            CALL_TIMEOUT,
            self.nudged("Version", async {
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
            }),
        )
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;

    async fn read_line(s: &mut UnixStream) -> String {
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            line.push(s.read_u8().await.unwrap());
        }
        String::from_utf8_lossy(&line[..line.len() - 2]).into_owned()
    }

    async fn read_message(s: &mut UnixStream) -> Vec<u8> {
        let mut m = vec![0u8; 16];
        s.read_exact(&mut m).await.unwrap();
        let total = super::super::private::message_len(&m).unwrap();
        m.resize(total, 0);
        s.read_exact(&mut m[16..]).await.unwrap();
        m
    }

    /// A server that does what sd-bus's does when a busy PID 1 reads `BEGIN` and the first
    /// call in one read: the call is dispatched only when more bytes arrive on the socket.
    /// husk's first call must still be answered, and well within `CALL_TIMEOUT`.
    #[tokio::test]
    async fn a_first_call_read_together_with_begin_is_answered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("private");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            assert!(read_line(&mut s).await.starts_with("\0AUTH EXTERNAL "));
            s.write_all(b"OK 0123456789abcdef0123456789abcdef\r\n")
                .await
                .unwrap();
            assert_eq!(read_line(&mut s).await, "BEGIN");
            let call = read_message(&mut s).await;
            assert!(call.windows(7).any(|w| w == b"Version"));
            // Not dispatched until the next bytes: they must come, and be a no-reply Ping.
            let next = read_message(&mut s).await;
            assert!(next.windows(4).any(|w| w == b"Ping"), "{next:?}");
            assert_ne!(next[2] & 0x1, 0, "the ping asks for no reply");
            let serial = u32::from_le_bytes(call[8..12].try_into().unwrap());
            let request = Message::method_call("/", "Get")
                .unwrap()
                .serial(serial.try_into().unwrap())
                .build(&())
                .unwrap();
            let reply = Message::method_return(&request.header())
                .unwrap()
                .build(&Value::from("257.9-1"))
                .unwrap();
            s.write_all(reply.data()).await.unwrap();
            // Held open until the client is done.
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        });
        let bus = Bus::connect(&path, false).await.unwrap();
        let version = tokio::time::timeout(NUDGE_AFTER * 10, bus.version())
            .await
            .expect("the first call is answered once systemd gets more bytes")
            .unwrap();
        assert_eq!(version, "257.9-1");
        drop(bus);
        server.await.unwrap();
    }
}
