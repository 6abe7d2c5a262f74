//! containerd's Task API sent straight to a running shim's ttrpc socket, as containerd's own
//! client does: for requests `ctr` and CRI never build (e.g. an exec whose request asks for a
//! terminal while its process JSON does not). The same calls go to husk's shim and to
//! containerd's runc shim (task API v2 on containerd 1.x, v3 on 2.x: same methods and
//! messages), so runc's shim is the reference.

use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::ttrpc;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A connection to one shim's task service.
pub struct ShimClient {
    client: ttrpc::Client,
    /// `containerd.task.v2.Task` or `containerd.task.v3.Task`, whichever the shim serves.
    service: &'static str,
    /// containerd's namespace, sent as ttrpc metadata as containerd does.
    namespace: String,
}

/// Every call is bounded: a shim that never answers fails the test instead of hanging it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

impl ShimClient {
    /// Connects to the shim serving task `id` of containerd namespace `ns`, through the
    /// `address` file the shim wrote into the task's bundle under containerd's `state`, or
    /// the `address` of the `bootstrap.json` containerd 2.x writes there instead for a shim
    /// that wrote none (runc's shim of a CRI pod's sandbox).
    pub fn for_task(state_dir: &Path, ns: &str, id: &str) -> ShimClient {
        let bundle = bundle_dir(state_dir, ns, id);
        let address = std::fs::read_to_string(bundle.join("address"))
            .or_else(|e| {
                let b = std::fs::read(bundle.join("bootstrap.json")).map_err(|_| e)?;
                let v: serde_json::Value = serde_json::from_slice(&b)
                    .map_err(|e| std::io::Error::other(format!("bootstrap.json: {e}")))?;
                v["address"]
                    .as_str()
                    .map(String::from)
                    .ok_or_else(|| std::io::Error::other("bootstrap.json has no address"))
            })
            .unwrap_or_else(|e| panic!("{}/address: {e}", bundle.display()));
        let client = ttrpc::Client::connect(address.trim())
            .unwrap_or_else(|e| panic!("connect to shim at {address}: {e}"));
        let mut c = ShimClient {
            client,
            service: "containerd.task.v2.Task",
            namespace: ns.to_string(),
        };
        let connect = api::ConnectRequest {
            id: id.to_string(),
            ..Default::default()
        };
        if c.call::<_, api::ConnectResponse>("Connect", &connect)
            .is_err()
        {
            c.service = "containerd.task.v3.Task";
            c.call::<_, api::ConnectResponse>("Connect", &connect)
                .unwrap_or_else(|e| panic!("shim at {address} serves no task API: {e}"));
        }
        c
    }

    /// One unary call of `method`, bounded by `CALL_TIMEOUT`.
    pub fn call<Req: Message, Resp: Message>(
        &self,
        method: &str,
        req: &Req,
    ) -> Result<Resp, ttrpc::Error> {
        let mut r = ttrpc::Request::new();
        r.service = self.service.to_string();
        r.method = method.to_string();
        r.timeout_nano = CALL_TIMEOUT.as_nanos() as i64;
        let mut md = ttrpc::proto::KeyValue::new();
        md.key = "containerd-namespace-ttrpc".into();
        md.value = self.namespace.clone();
        r.metadata.push(md);
        r.payload = req
            .write_to_bytes()
            .map_err(|e| ttrpc::Error::Others(e.to_string()))?;
        let resp = self.client.request(r)?;
        Resp::parse_from_bytes(&resp.payload).map_err(|e| ttrpc::Error::Others(e.to_string()))
    }
}

/// containerd's bundle directory of a task (runtime v2 layout).
pub fn bundle_dir(state_dir: &Path, ns: &str, id: &str) -> PathBuf {
    state_dir
        .join("io.containerd.runtime.v2.task")
        .join(ns)
        .join(id)
}

/// An ExecProcessRequest: `process` is the OCI process JSON, sent as containerd sends it.
pub fn exec_request(
    id: &str,
    exec_id: &str,
    terminal: bool,
    stdout: &str,
    process: &serde_json::Value,
) -> api::ExecProcessRequest {
    let mut any = containerd_shim_protos::protobuf::well_known_types::any::Any::new();
    any.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process".into();
    any.value = serde_json::to_vec(process).unwrap();
    api::ExecProcessRequest {
        id: id.into(),
        exec_id: exec_id.into(),
        terminal,
        stdout: stdout.into(),
        spec: MessageField::some(any),
        ..Default::default()
    }
}

/// The status code of a failed call (OK for success).
pub fn code<T>(r: &Result<T, ttrpc::Error>) -> ttrpc::Code {
    match r {
        Ok(_) => ttrpc::Code::OK,
        Err(ttrpc::Error::RpcStatus(s)) => s.code(),
        Err(_) => ttrpc::Code::UNKNOWN,
    }
}
