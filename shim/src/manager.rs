//! The shim's own lifecycle as containerd drives it: `start` (one shim per pod: find or spawn
//! the server for the pod and print its address), `delete` (clean up after a dead shim).
//! Both run before any thread exists.

use crate::args::Args;
use crate::options::RuntimeOptions;
use containerd_shim_protos::protobuf::Message;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// Annotations that put containers of one pod into one shim (as containerd's runc shim does).
const GROUP_LABELS: [&str; 2] = [
    "io.containerd.runc.v2.group",
    "io.kubernetes.cri.sandbox-id",
];
pub const SOCKET_DIR: &str = "/run/containerd/s";
/// The fd the served shim inherits its listening socket on.
pub const LISTENER_FD: i32 = 3;

pub fn grouping_id(bundle: &Path, id: &str) -> String {
    let Ok(data) = std::fs::read(bundle.join("config.json")) else {
        return id.to_string();
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) else {
        return id.to_string();
    };
    GROUP_LABELS
        .iter()
        .find_map(|k| {
            v.pointer(&format!("/annotations/{}", k.replace('/', "~1")))
                .and_then(|x| x.as_str())
                .filter(|s| !s.is_empty())
                .map(String::from)
        })
        .unwrap_or_else(|| id.to_string())
}

/// containerd's socket naming: sha256 of "<containerd address>/<namespace>/<group id>".
pub fn socket_path(address: &str, namespace: &str, group: &str) -> PathBuf {
    let joined = Path::new(address).join(namespace).join(group);
    let digest = Sha256::digest(joined.to_string_lossy().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    PathBuf::from(SOCKET_DIR).join(hex)
}

/// What containerd wrote to stdin (it closes it after). A terminal is nobody's input: a
/// person running the shim by hand would otherwise wait for end-of-file.
fn read_stdin() -> Vec<u8> {
    let mut buf = Vec::new();
    if nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
        return buf;
    }
    let _ = std::io::stdin().read_to_end(&mut buf);
    buf
}

/// What `start` found on stdin.
#[derive(Debug, PartialEq)]
pub enum StartInput {
    /// containerd <= 2.2: runtime options (an Any), or nothing.
    Legacy,
    /// containerd >= 2.3: the bootstrap protocol.
    Bootstrap(husk_proto::bootstrap::BootstrapParams),
}

/// Tells containerd 2.3's BootstrapParams from the runtime-options Any older versions send:
/// both start with two strings, but the params' first one is this shim's instance id.
pub fn classify_stdin(data: &[u8], id: &str) -> StartInput {
    use husk_proto::Message;
    if data.is_empty() {
        return StartInput::Legacy;
    }
    match husk_proto::bootstrap::BootstrapParams::decode(data) {
        Ok(p)
            if p.instance_id == id
                || !p.containerd_ttrpc_address.is_empty()
                || !p.containerd_version.is_empty() =>
        {
            StartInput::Bootstrap(p)
        }
        _ => StartInput::Legacy,
    }
}

/// What `start` prints: a bare address for containerd <= 2.2, a BootstrapResult otherwise.
pub fn start_reply(input: &StartInput, address: &str) -> Vec<u8> {
    use husk_proto::Message;
    match input {
        StartInput::Legacy => address.as_bytes().to_vec(),
        StartInput::Bootstrap(_) => husk_proto::bootstrap::BootstrapResult {
            version: 2,
            address: address.to_string(),
            protocol: "ttrpc".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    }
}

/// `-info`: the RuntimeInfo protobuf with husk's OCI features.
pub fn info() -> Vec<u8> {
    // containerd sends the runtime options on stdin; husk has none to echo back.
    let _options = read_stdin();
    runtime_info()
}

fn runtime_info() -> Vec<u8> {
    use husk_proto::Message;
    husk_proto::types::RuntimeInfo {
        name: "io.containerd.husk.v2".into(),
        version: Some(husk_proto::types::RuntimeVersion {
            version: env!("CARGO_PKG_VERSION").into(),
            revision: String::new(),
        }),
        options: None,
        features: Some(husk_proto::Any {
            type_url: husk_proto::FEATURES_TYPE_URL.into(),
            value: serde_json::to_vec(&husk_runtime::features::features()).unwrap_or_default(),
        }),
        annotations: Default::default(),
    }
    .encode_to_vec()
}

/// `start`: prints the ttrpc address of the pod's shim, starting it if needed.
pub fn start(args: &Args) -> Result<Vec<u8>, String> {
    let stdin = read_stdin();
    let input = classify_stdin(&stdin, &args.id);
    let options = match &input {
        StartInput::Legacy => RuntimeOptions::from_stdin(&stdin),
        StartInput::Bootstrap(p) => RuntimeOptions::from_bootstrap(p),
    }
    .map_err(|e| e.to_string())?;
    let shim_cgroup = options.shim_cgroup().map_err(|e| e.to_string())?;
    let mut args = args.clone();
    if let StartInput::Bootstrap(p) = &input {
        if !p.namespace.is_empty() {
            args.namespace = p.namespace.clone();
        }
        if !p.containerd_ttrpc_address.is_empty() {
            std::env::set_var(
                "TTRPC_ADDRESS",
                p.containerd_ttrpc_address.trim_start_matches("unix://"),
            );
        }
        args.debug |= p.log_level < 0;
    }
    let address = start_server(&args, shim_cgroup.as_deref())?;
    Ok(start_reply(&input, &address))
}

/// Starts the pod's shim server (or finds it running) and returns its address. A new server
/// is moved into `shim_cgroup` before containerd learns its address; if that fails, the
/// server is killed and `start` fails, as with containerd's runc shim.
fn start_server(args: &Args, shim_cgroup: Option<&str>) -> Result<String, String> {
    let bundle = std::env::current_dir().map_err(|e| format!("cwd: {e}"))?;
    let group = grouping_id(&bundle, &args.id);
    let sock = socket_path(&args.address, &args.namespace, &group);
    let address = format!("unix://{}", sock.display());
    std::fs::create_dir_all(SOCKET_DIR).map_err(|e| format!("create {SOCKET_DIR}: {e}"))?;
    let listener = match UnixListener::bind(&sock) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if UnixStream::connect(&sock).is_ok() {
                // The pod's shim is alive: this container joins it.
                write_address(&bundle, &address)?;
                return Ok(address);
            }
            let _ = std::fs::remove_file(&sock);
            UnixListener::bind(&sock).map_err(|e| format!("bind {}: {e}", sock.display()))?
        }
        Err(e) => return Err(format!("bind {}: {e}", sock.display())),
    };
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "-namespace",
        &args.namespace,
        "-id",
        &args.id,
        "-address",
        &args.address,
        "-publish-binary",
        &args.publish_binary,
        "-socket",
        &address,
    ]);
    if args.debug {
        cmd.arg("-debug");
    }
    cmd.current_dir(&bundle)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let lfd = listener.as_raw_fd();
    // SAFETY: setsid and dup2 are async-signal-safe; nothing else runs before exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // dup2 onto itself would leave FD_CLOEXEC set: clear it instead.
            let r = if lfd == LISTENER_FD {
                libc::fcntl(lfd, libc::F_SETFD, 0)
            } else {
                libc::dup2(lfd, LISTENER_FD)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Nothing containerd happened to inherit (a CI pipe, a terminal) may be held open
            // by a long-lived shim.
            libc::syscall(libc::SYS_close_range, LISTENER_FD + 1, u32::MAX, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("start shim server: {e}"))?;
    drop(listener);
    if let Some(cg) = shim_cgroup {
        if let Err(e) = crate::shim_cgroup::join(child.id(), cg) {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(&sock);
            return Err(e.to_string());
        }
    }
    // The server is a daemon: it is reparented to init (or the nearest subreaper) when we exit.
    let _ = child.id();
    write_address(&bundle, &address)?;
    Ok(address)
}

fn write_address(bundle: &Path, address: &str) -> Result<(), String> {
    std::fs::write(bundle.join("address"), address).map_err(|e| format!("write address: {e}"))
}

/// A shim killed outright leaves its socket behind: remove it once nothing answers on it.
fn remove_dead_socket(bundle: &Path) {
    let Ok(address) = std::fs::read_to_string(bundle.join("address")) else {
        return;
    };
    let path = Path::new(address.trim().trim_start_matches("unix://"));
    if path.starts_with(SOCKET_DIR) && UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}

/// The runtime root the shim keeps husk state under, per containerd namespace.
pub fn runtime_root(namespace: &str) -> PathBuf {
    PathBuf::from("/run/containerd/husk").join(namespace)
}

/// `delete`: containerd lost the shim. Kill what is left, unmount, remove the cgroup and
/// state, and report the container as killed.
pub fn delete(args: &Args) -> Result<Vec<u8>, String> {
    let bundle = if args.bundle.is_empty() {
        std::env::current_dir().map_err(|e| e.to_string())?
    } else {
        PathBuf::from(&args.bundle)
    };
    let rt = husk_runtime::Runtime::new(runtime_root(&args.namespace));
    let mut pid = 0;
    match rt.load(&args.id) {
        Ok(c) => {
            pid = c.pid();
            if let Err(e) = c.delete(true) {
                eprintln!("delete {}: {e}", args.id);
            }
        }
        Err(husk_runtime::Error::NotFound(_)) => {}
        Err(e) => eprintln!("load {}: {e}", args.id),
    }
    crate::mount::unmount_rootfs(&bundle.join("rootfs"));
    remove_dead_socket(&bundle);
    let mut resp = containerd_shim_protos::shim::shim::DeleteResponse::new();
    resp.pid = pid.max(0) as u32;
    resp.exit_status = 128 + libc::SIGKILL as u32;
    resp.exited_at = containerd_shim_protos::protobuf::MessageField::some(crate::events::now());
    resp.write_to_bytes().map_err(|e| e.to_string())
}

pub fn print(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_name_matches_containerd() {
        let p = socket_path("/run/containerd/containerd.sock", "default", "abc");
        let hex = p.file_name().unwrap().to_string_lossy().to_string();
        assert_eq!(hex.len(), 64);
        let want: String = Sha256::digest(b"/run/containerd/containerd.sock/default/abc")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, want);
        assert!(p.as_os_str().len() < 108, "fits sun_path");
    }

    #[test]
    fn bootstrap_params_are_told_from_runtime_options() {
        use husk_proto::Message;
        let p = husk_proto::bootstrap::BootstrapParams {
            instance_id: "c1".into(),
            namespace: "k8s.io".into(),
            containerd_ttrpc_address: "unix:///run/containerd/containerd.sock.ttrpc".into(),
            ..Default::default()
        };
        let input = classify_stdin(&p.encode_to_vec(), "c1");
        assert_eq!(input, StartInput::Bootstrap(p));
        let reply = husk_proto::bootstrap::BootstrapResult::decode(
            &start_reply(&input, "unix:///run/containerd/s/x")[..],
        )
        .unwrap();
        assert_eq!(
            (
                reply.version,
                reply.address.as_str(),
                reply.protocol.as_str()
            ),
            (2, "unix:///run/containerd/s/x", "ttrpc")
        );
        // An options Any (containerd <= 2.2) is not mistaken for bootstrap params.
        let any = husk_proto::Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: vec![0x08, 0x01],
        };
        assert_eq!(
            classify_stdin(&any.encode_to_vec(), "c1"),
            StartInput::Legacy
        );
        assert_eq!(classify_stdin(b"", "c1"), StartInput::Legacy);
        assert_eq!(start_reply(&StartInput::Legacy, "unix:///a"), b"unix:///a");
    }

    #[test]
    fn info_carries_the_features_document() {
        use husk_proto::Message;
        let i = husk_proto::types::RuntimeInfo::decode(&runtime_info()[..]).unwrap();
        assert_eq!(i.name, "io.containerd.husk.v2");
        let f = i.features.unwrap();
        assert_eq!(f.type_url, husk_proto::FEATURES_TYPE_URL);
        let v: serde_json::Value = serde_json::from_slice(&f.value).unwrap();
        assert!(v["mountOptions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "rro"));
        assert_eq!(v["linux"]["cgroup"]["systemd"], true);
    }

    #[test]
    fn grouping_by_sandbox_annotation() {
        let d = std::env::temp_dir().join(format!("husk-group-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("config.json"),
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1"}}"#,
        )
        .unwrap();
        assert_eq!(grouping_id(&d, "ctr"), "pod1");
        std::fs::write(d.join("config.json"), r#"{"annotations":{}}"#).unwrap();
        assert_eq!(grouping_id(&d, "ctr"), "ctr");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
