//! containerd's shim command line: Go-style single-dash flags, then an action
//! (`start`, `delete`, or none to serve).

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Args {
    pub namespace: String,
    pub id: String,
    pub address: String,
    pub publish_binary: String,
    pub bundle: String,
    pub socket: String,
    pub debug: bool,
    pub version: bool,
    pub info: bool,
    pub help: bool,
    pub action: String,
}

/// What `-h`/`-help` prints.
pub const USAGE: &str = "\
Usage: containerd-shim-husk-v2 [flags] [start|delete]

containerd's runtime v2 shim for husk (runtime type io.containerd.husk.v2). containerd runs it;
there is nothing to run by hand. Register it as a runtime handler and containerd starts one
shim per pod (see README.md, \"Installing on a node\").

Actions:
  start     start (or find) the pod's shim server and print its address (containerd runs this)
  delete    clean up after a shim that died: kill what is left, report the exit
  (none)    serve the task API on the socket containerd handed over

Flags (Go style, one dash or two):
  -namespace NS        containerd namespace of the task
  -id ID               task id
  -address PATH        containerd's gRPC socket
  -publish-binary PATH containerd binary that publishes events
  -bundle PATH         bundle directory (delete; default: the working directory)
  -socket ADDR         socket to serve on (serve mode)
  -debug               debug logging
  -info                print the runtime info (OCI features) containerd asks for, as protobuf
  -v, -version         print the version
  -h, -help            print this help";

pub fn parse(argv: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut i = 0;
    while i < argv.len() {
        let raw = &argv[i];
        i += 1;
        if !raw.starts_with('-') {
            if a.action.is_empty() {
                a.action = raw.clone();
                continue;
            }
            return Err(format!("unexpected argument {raw:?}"));
        }
        let flag = raw.trim_start_matches('-');
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            let v = argv
                .get(i)
                .cloned()
                .ok_or_else(|| format!("flag -{name} needs a value"))?;
            i += 1;
            Ok(v)
        };
        match name {
            "namespace" => a.namespace = value(name)?,
            "id" => a.id = value(name)?,
            "address" => a.address = value(name)?,
            "publish-binary" => a.publish_binary = value(name)?,
            "bundle" => a.bundle = value(name)?,
            "socket" => a.socket = value(name)?,
            "debug" => a.debug = inline.as_deref().is_none_or(|v| v == "true"),
            "v" | "version" => a.version = true,
            "info" => a.info = true,
            "h" | "help" => a.help = true,
            other => return Err(format!("unknown flag -{other}")),
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn containerd_16_start_line() {
        let a = parse(&v("-namespace k8s.io -address /run/containerd/containerd.sock -publish-binary /usr/bin/containerd -id abc start")).unwrap();
        assert_eq!(
            (a.namespace.as_str(), a.id.as_str(), a.action.as_str()),
            ("k8s.io", "abc", "start")
        );
        assert_eq!(a.publish_binary, "/usr/bin/containerd");
    }

    #[test]
    fn delete_with_bundle_and_debug() {
        let a = parse(&v(
            "-namespace default -address /a -publish-binary /b -id x -bundle /run/b -debug delete",
        ))
        .unwrap();
        assert!(a.debug);
        assert_eq!((a.bundle.as_str(), a.action.as_str()), ("/run/b", "delete"));
        let a = parse(&v("--debug=false -id=y")).unwrap();
        assert!(!a.debug);
        assert_eq!(a.id, "y");
    }

    #[test]
    fn help() {
        for f in ["-h", "--help", "-help"] {
            assert!(parse(&v(f)).unwrap().help, "{f}");
        }
    }

    #[test]
    fn bad_flags() {
        assert!(parse(&v("-bogus x")).is_err());
        assert!(parse(&v("-id")).is_err());
        assert!(parse(&v("start delete")).is_err());
    }
}
