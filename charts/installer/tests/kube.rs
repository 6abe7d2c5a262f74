//! Node labelling against a TLS endpoint that speaks the one API call the installer makes
//! (PATCH /api/v1/nodes/NAME). No kube-apiserver can run on this machine (no package, no
//! network), so this endpoint checks what a real one would: the TLS chain to the cluster CA,
//! the bearer token, the patch content type and body; and answers like one (JSON Status on
//! errors, 503 while starting).

use husk_installer::kube::{ApiServer, READY_LABEL};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::sync::Arc;

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Serves one answer per connection from `answers` (status, body); returns the CA's PEM, the
/// base URL and a receiver of the requests it saw.
fn api_server(answers: Vec<(u16, &'static str)>) -> (String, String, mpsc::Receiver<Request>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![server_cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap(),
            )
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (status, body) in answers {
            let (tcp, _) = listener.accept().unwrap();
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut reader = BufReader::new(&mut tls);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap().to_string();
            let path = parts.next().unwrap().to_string();
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            let mut raw = vec![0; len];
            reader.read_exact(&mut raw).unwrap();
            tx.send(Request {
                method,
                path,
                headers,
                body: String::from_utf8(raw).unwrap(),
            })
            .unwrap();
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            tls.write_all(reply.as_bytes()).unwrap();
            tls.flush().unwrap();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (ca_cert.pem(), base, rx)
}

fn token_file(token: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), format!("{token}\n")).unwrap();
    f
}

#[test]
fn labels_and_unlabels_the_node_with_a_merge_patch() {
    let node = r#"{"kind":"Node","apiVersion":"v1","metadata":{"name":"node-a"}}"#;
    let (ca, base, seen) = api_server(vec![(200, node), (200, node)]);
    let token = token_file("tok-123");
    let api = ApiServer::new(&base, ca.as_bytes(), token.path()).unwrap();

    api.set_node_label("node-a", READY_LABEL, Some("true"))
        .unwrap();
    let r = seen.recv().unwrap();
    assert_eq!(r.method, "PATCH");
    assert_eq!(r.path, "/api/v1/nodes/node-a");
    assert_eq!(r.header("authorization"), Some("Bearer tok-123"));
    assert_eq!(
        r.header("content-type"),
        Some("application/merge-patch+json")
    );
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"metadata": {"labels": {"husk.dev/runtime-ready": "true"}}})
    );

    // A rotated token is picked up; removal is a null in the merge patch.
    std::fs::write(token.path(), "tok-456").unwrap();
    api.set_node_label("node-a", READY_LABEL, None).unwrap();
    let r = seen.recv().unwrap();
    assert_eq!(r.header("authorization"), Some("Bearer tok-456"));
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"metadata": {"labels": {"husk.dev/runtime-ready": null}}})
    );
}

#[test]
fn retries_while_the_api_server_is_unavailable() {
    let (ca, base, seen) = api_server(vec![
        (503, r#"{"kind":"Status","message":"starting"}"#),
        (429, r#"{"kind":"Status","message":"too many requests"}"#),
        (200, r#"{"kind":"Node"}"#),
    ]);
    let token = token_file("t");
    let api = ApiServer::new(&base, ca.as_bytes(), token.path()).unwrap();
    api.set_node_label("n", READY_LABEL, Some("true")).unwrap();
    assert_eq!(seen.try_iter().count(), 3);
}

#[test]
fn forbidden_is_a_clear_error_naming_the_missing_permission() {
    let (ca, base, _seen) = api_server(vec![(
        403,
        r#"{"kind":"Status","status":"Failure","message":"nodes \"n\" is forbidden: User \"system:serviceaccount:husk-system:husk\" cannot patch resource \"nodes\"","reason":"Forbidden","code":403}"#,
    )]);
    let token = token_file("t");
    let api = ApiServer::new(&base, ca.as_bytes(), token.path()).unwrap();
    let err = api
        .set_node_label("n", READY_LABEL, Some("true"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 403"), "{err}");
    assert!(err.contains("cannot patch resource"), "{err}");
    assert!(err.contains("ClusterRole"), "{err}");
}

#[test]
fn a_server_not_signed_by_the_cluster_ca_is_refused() {
    let (_ca, base, _seen) = api_server(vec![(200, "{}")]);
    let (other_ca, _, _) = api_server(vec![]);
    let token = token_file("t");
    let api = ApiServer::new(&base, other_ca.as_bytes(), token.path()).unwrap();
    let err = api
        .set_node_label("n", READY_LABEL, Some("true"))
        .unwrap_err()
        .to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[test]
fn an_empty_ca_bundle_is_refused_up_front() {
    let token = token_file("t");
    let err = ApiServer::new("https://127.0.0.1:1", b"not a pem", token.path())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no certificate"), "{err}");
}

#[test]
fn the_nodes_container_runtime_as_kubelet_reports_it() {
    let node = r#"{"kind":"Node","status":{"nodeInfo":{"containerRuntimeVersion":"containerd://2.1.4","kubeletVersion":"v1.34.1"}}}"#;
    let (ca, base, seen) = api_server(vec![(200, node), (200, r#"{"kind":"Node"}"#)]);
    let token = token_file("tok");
    let api = ApiServer::new(&base, ca.as_bytes(), token.path()).unwrap();
    assert_eq!(
        api.node_runtime_version("node-a").unwrap(),
        "containerd://2.1.4"
    );
    let r = seen.recv().unwrap();
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("GET", "/api/v1/nodes/node-a")
    );
    assert_eq!(r.header("authorization"), Some("Bearer tok"));
    let e = api.node_runtime_version("node-a").unwrap_err().to_string();
    assert!(e.contains("no containerRuntimeVersion"), "{e}");
}
