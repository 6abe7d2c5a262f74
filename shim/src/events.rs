//! Publishing task events to containerd over ttrpc, strictly in the order they were queued
//! (containerd's ordering rules depend on it), with retries while containerd restarts.

use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::well_known_types::{any::Any, timestamp::Timestamp};
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::EventsClient;
use std::time::Duration;
use tokio::sync::mpsc;

pub fn now() -> Timestamp {
    ts(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0))
}

pub fn ts(nanos: i64) -> Timestamp {
    let mut t = Timestamp::new();
    t.seconds = nanos.div_euclid(1_000_000_000);
    t.nanos = nanos.rem_euclid(1_000_000_000) as i32;
    t
}

pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// containerd's typeurl names for the task events.
pub fn any_of<M: Message>(type_url: &str, m: &M) -> Any {
    let mut a = Any::new();
    a.type_url = type_url.to_string();
    a.value = m.write_to_bytes().unwrap_or_default();
    a
}

pub enum Event {
    Create(ev::TaskCreate),
    Start(ev::TaskStart),
    Exit(ev::TaskExit),
    Delete(ev::TaskDelete),
    Oom(ev::TaskOOM),
    ExecAdded(ev::TaskExecAdded),
    ExecStarted(ev::TaskExecStarted),
    Paused(ev::TaskPaused),
    Resumed(ev::TaskResumed),
}

impl Event {
    fn topic_and_any(&self) -> (&'static str, Any) {
        use containerd_shim_protos::topics::*;
        match self {
            Event::Create(e) => (
                TASK_CREATE_EVENT_TOPIC,
                any_of("containerd.events.TaskCreate", e),
            ),
            Event::Start(e) => (
                TASK_START_EVENT_TOPIC,
                any_of("containerd.events.TaskStart", e),
            ),
            Event::Exit(e) => (
                TASK_EXIT_EVENT_TOPIC,
                any_of("containerd.events.TaskExit", e),
            ),
            Event::Delete(e) => (
                TASK_DELETE_EVENT_TOPIC,
                any_of("containerd.events.TaskDelete", e),
            ),
            Event::Oom(e) => (TASK_OOM_EVENT_TOPIC, any_of("containerd.events.TaskOOM", e)),
            Event::ExecAdded(e) => (
                TASK_EXEC_ADDED_EVENT_TOPIC,
                any_of("containerd.events.TaskExecAdded", e),
            ),
            Event::ExecStarted(e) => (
                TASK_EXEC_STARTED_EVENT_TOPIC,
                any_of("containerd.events.TaskExecStarted", e),
            ),
            Event::Paused(e) => (
                TASK_PAUSED_EVENT_TOPIC,
                any_of("containerd.events.TaskPaused", e),
            ),
            Event::Resumed(e) => (
                TASK_RESUMED_EVENT_TOPIC,
                any_of("containerd.events.TaskResumed", e),
            ),
        }
    }
}

#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::UnboundedSender<(Event, Timestamp)>,
}

impl Publisher {
    /// Starts the forwarding task; `ttrpc_address` is containerd's ttrpc socket.
    pub fn start(ttrpc_address: String, namespace: String) -> Publisher {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Event, Timestamp)>();
        tokio::spawn(async move {
            let mut client: Option<EventsClient> = None;
            while let Some((event, at)) = rx.recv().await {
                let (topic, any) = event.topic_and_any();
                let mut req = ForwardRequest::new();
                let env = req.envelope.mut_or_insert_default();
                env.timestamp = MessageField::some(at);
                env.namespace = namespace.clone();
                env.topic = topic.to_string();
                env.event = MessageField::some(any);
                // containerd may be restarting: keep trying, in order, for a while.
                let mut delay = Duration::from_millis(20);
                for attempt in 0..40 {
                    if client.is_none() {
                        match ttrpc::asynchronous::Client::connect(&ttrpc_address).await {
                            Ok(c) => client = Some(EventsClient::new(c)),
                            Err(e) => tracing::debug!(error = %e, "connect to containerd events"),
                        }
                    }
                    if let Some(c) = &client {
                        let ctx =
                            ttrpc::context::with_timeout(Duration::from_secs(5).as_nanos() as i64);
                        match c.forward(ctx, &req).await {
                            Ok(_) => break,
                            Err(e) => {
                                tracing::warn!(topic, attempt, error = %e, "publish event");
                                client = None;
                            }
                        }
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        });
        Publisher { tx }
    }

    pub fn publish(&self, e: Event) {
        let _ = self.tx.send((e, now()));
    }
}

use containerd_shim_protos::ttrpc;
