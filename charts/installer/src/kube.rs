//! Node labelling through the Kubernetes API with the pod's service account, so the husk
//! RuntimeClass's `scheduling.nodeSelector` matches only nodes where husk is ready.
//!
//! One PATCH is all the installer needs, so it speaks plain HTTPS (ureq + rustls) instead of
//! pulling in a full Kubernetes client and an async runtime; the image stays small and static.

use crate::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The label the chart's RuntimeClass selects on.
pub const READY_LABEL: &str = "husk.dev/runtime-ready";
/// Where kubelet mounts the service account's token and the cluster CA.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

pub struct ApiServer {
    base: String,
    token_path: PathBuf,
    agent: ureq::Agent,
}

impl ApiServer {
    /// The API server as seen from a pod: `KUBERNETES_SERVICE_HOST`/`_PORT` and the mounted
    /// service account.
    pub fn in_cluster() -> Result<Self, Error> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
            Error::Io("KUBERNETES_SERVICE_HOST is not set: node labelling works only in a pod (run by the chart's DaemonSet)".into())
        })?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        // An IPv6 service address needs brackets in a URL.
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let dir = Path::new(SERVICE_ACCOUNT_DIR);
        let ca = std::fs::read(dir.join("ca.crt"))
            .map_err(|e| Error::Io(format!("read {}/ca.crt: {e}", dir.display())))?;
        Self::new(&format!("https://{host}:{port}"), &ca, &dir.join("token"))
    }

    /// An API server at `base` (https://host:port) whose certificate chains to `ca_pem`; the
    /// bearer token is re-read from `token_path` on every call because kubelet rotates it.
    pub fn new(base: &str, ca_pem: &[u8], token_path: &Path) -> Result<Self, Error> {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        let mut roots = Vec::new();
        for item in ureq::tls::parse_pem(ca_pem) {
            if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
                roots.push(c.to_owned());
            }
        }
        if roots.is_empty() {
            return Err(Error::Io(
                "the cluster CA bundle holds no certificate".into(),
            ));
        }
        let roots: Vec<Certificate<'static>> = roots;
        let config = ureq::Agent::config_builder()
            .tls_config(
                TlsConfig::builder()
                    .root_certs(RootCerts::Specific(Arc::new(roots)))
                    .build(),
            )
            .timeout_global(Some(Duration::from_secs(15)))
            .http_status_as_error(false)
            .build();
        Ok(ApiServer {
            base: base.trim_end_matches('/').to_string(),
            token_path: token_path.to_path_buf(),
            agent: config.into(),
        })
    }

    /// The node's container runtime as kubelet reports it
    /// (`status.nodeInfo.containerRuntimeVersion`, e.g. `containerd://2.1.4`).
    pub fn node_runtime_version(&self, node: &str) -> Result<String, Error> {
        let url = format!("{}/api/v1/nodes/{node}", self.base);
        let token = std::fs::read_to_string(&self.token_path).map_err(|e| {
            Error::Io(format!(
                "read service account token {}: {e}",
                self.token_path.display()
            ))
        })?;
        let mut resp = self
            .agent
            .get(&url)
            .header("Authorization", &format!("Bearer {}", token.trim()))
            .header("Accept", "application/json")
            .call()
            .map_err(|e| Error::Io(format!("GET {url}: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(Error::Io(format!("GET node {node}: HTTP {status}: {text}")));
        }
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::Io(format!("GET node {node}: {e}")))?;
        v["status"]["nodeInfo"]["containerRuntimeVersion"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Io(format!("node {node} reports no containerRuntimeVersion")))
    }

    /// Sets (`Some`) or removes (`None`) one label on a node with a JSON merge patch, which
    /// leaves every other label alone. Retries while the API server is unreachable or busy.
    pub fn set_node_label(&self, node: &str, key: &str, value: Option<&str>) -> Result<(), Error> {
        let body = serde_json::json!({ "metadata": { "labels": { key: value } } }).to_string();
        let url = format!("{}/api/v1/nodes/{node}", self.base);
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let token = std::fs::read_to_string(&self.token_path).map_err(|e| {
                Error::Io(format!(
                    "read service account token {}: {e}",
                    self.token_path.display()
                ))
            })?;
            let result = self
                .agent
                .patch(&url)
                .header("Authorization", &format!("Bearer {}", token.trim()))
                .header("Content-Type", "application/merge-patch+json")
                .header("Accept", "application/json")
                .send(body.as_bytes());
            let retry = match result {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    if (200..300).contains(&status) {
                        return Ok(());
                    }
                    let text = resp.body_mut().read_to_string().unwrap_or_default();
                    let message = serde_json::from_str::<serde_json::Value>(&text)
                        .ok()
                        .and_then(|v| v["message"].as_str().map(str::to_string))
                        .unwrap_or(text);
                    let err = Error::Io(match status {
                        401 | 403 => format!("PATCH node {node}: HTTP {status}: {message} (the installer's service account needs `get` and `patch` on nodes: the chart's ClusterRole)"),
                        _ => format!("PATCH node {node}: HTTP {status}: {message}"),
                    });
                    if status == 429 || status >= 500 {
                        err
                    } else {
                        return Err(err);
                    }
                }
                Err(e) if transient(&e) => Error::Io(format!("PATCH {url}: {e}")),
                // TLS and protocol failures do not heal by retrying.
                Err(e) => return Err(Error::Io(format!("PATCH {url}: {e}"))),
            };
            if attempt == 6 {
                return Err(retry);
            }
            eprintln!("husk-node-installer: {retry}; retrying in {delay:?}");
            std::thread::sleep(delay);
            delay *= 2;
            attempt += 1;
        }
    }
}

/// Errors worth another try: the API server is restarting, unreachable or slow.
fn transient(e: &ureq::Error) -> bool {
    use std::io::ErrorKind::*;
    match e {
        ureq::Error::Io(io) => matches!(
            io.kind(),
            ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected | TimedOut
        ),
        ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => true,
        _ => false,
    }
}
