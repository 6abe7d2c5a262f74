//! The cgroup driver containerd's runtime options ask for (`SystemdCgroup`), read from the
//! `options` Any of CreateTaskRequest. containerd sends a handler's options section as
//! - `containerd.runc.v1.Options` when husk is registered with `runtime_type =
//!   "io.containerd.runc.v2"` (+ `runtime_path`): `systemd_cgroup` is field 9;
//! - `runtimeoptions.v1.Options` for any other runtime_type (husk's own
//!   `io.containerd.husk.v2`): the section as TOML text in `config_body` (field 3), or in the
//!   file at `config_path` (field 2) — containerd's internal/cri/config `GenerateRuntimeOptions`.
//!
//! A handler without an options section sends nothing: husk then chooses (systemd for a
//! `slice:prefix:name` path on a systemd host, `Driver::select`).
//!
//! Kept in one place so it can be folded into a fuller decoding of the runtime options.

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{CodedInputStream, Message};
use husk_runtime::cgroups::Driver;

const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";
const RUNTIME_OPTIONS: &str = "runtimeoptions.v1.Options";

/// The driver `options` asks for: `Some` only when it says `SystemdCgroup` (runc's Options
/// always say it: false there is runc's cgroupfs). Errors: an options message that does not
/// decode, or TOML that does not parse (containerd would not start such a handler either).
pub fn from_options(options: Option<&Any>) -> Result<Option<Driver>, String> {
    let Some(any) = options.filter(|a| !a.type_url.is_empty()) else {
        return Ok(None);
    };
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    let systemd = match name {
        RUNC_OPTIONS => {
            let o = containerd_shim_protos::shim::oci::Options::parse_from_bytes(&any.value)
                .map_err(|e| format!("{RUNC_OPTIONS}: {e}"))?;
            Some(o.systemd_cgroup)
        }
        RUNTIME_OPTIONS => {
            let (path, body) =
                runtime_options(&any.value).map_err(|e| format!("{RUNTIME_OPTIONS}: {e}"))?;
            let text = if body.is_empty() && !path.is_empty() {
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("runtime options ConfigPath {path}: {e}"))?
            } else {
                String::from_utf8(body)
                    .map_err(|e| format!("{RUNTIME_OPTIONS} config_body: {e}"))?
            };
            systemd_cgroup_in_toml(&text)?
        }
        other => {
            tracing::debug!(
                type_url = other,
                "runtime options of an unknown type ignored"
            );
            None
        }
    };
    Ok(systemd.map(|s| if s { Driver::Systemd } else { Driver::Cgroupfs }))
}

/// (config_path, config_body) of a `runtimeoptions.v1.Options`.
fn runtime_options(bytes: &[u8]) -> Result<(String, Vec<u8>), String> {
    let mut input = CodedInputStream::from_bytes(bytes);
    let (mut path, mut body) = (String::new(), Vec::new());
    while let Some(tag) = input.read_raw_tag_or_eof().map_err(|e| e.to_string())? {
        let wire = containerd_shim_protos::protobuf::rt::WireType::new(tag & 7)
            .ok_or_else(|| format!("bad wire type in tag {tag}"))?;
        match (tag >> 3, tag & 7) {
            (2, 2) => path = input.read_string().map_err(|e| e.to_string())?,
            (3, 2) => body = input.read_bytes().map_err(|e| e.to_string())?,
            _ => input.skip_field(wire).map_err(|e| e.to_string())?,
        }
    }
    Ok((path, body))
}

/// `SystemdCgroup` of the handler's options table (a top-level boolean).
fn systemd_cgroup_in_toml(text: &str) -> Result<Option<bool>, String> {
    let doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| format!("runtime options TOML: {e}"))?;
    match doc.get("SystemdCgroup") {
        None => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| {
            format!(
                "runtime options: SystemdCgroup is a {}, not a boolean",
                v.type_name()
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(type_url: &str, value: Vec<u8>) -> Any {
        let mut a = Any::new();
        a.type_url = type_url.into();
        a.value = value;
        a
    }

    /// A runtimeoptions.v1.Options as containerd marshals it.
    fn runtime_options_bytes(path: &str, body: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for (field, s) in [(1u8, RUNTIME_OPTIONS), (2, path), (3, body)] {
            if s.is_empty() {
                continue;
            }
            v.push(field << 3 | 2);
            v.push(s.len() as u8);
            v.extend_from_slice(s.as_bytes());
        }
        v
    }

    #[test]
    fn runc_options_field_9() {
        let mut o = containerd_shim_protos::shim::oci::Options::new();
        o.systemd_cgroup = true;
        let bytes = o.write_to_bytes().unwrap();
        // field 9, varint 1
        assert_eq!(bytes, [0x48, 0x01]);
        let a = any(RUNC_OPTIONS, bytes);
        assert_eq!(from_options(Some(&a)).unwrap(), Some(Driver::Systemd));
        let a = any(RUNC_OPTIONS, vec![]);
        assert_eq!(from_options(Some(&a)).unwrap(), Some(Driver::Cgroupfs));
    }

    #[test]
    fn husk_options_in_toml() {
        let a = any(
            RUNTIME_OPTIONS,
            runtime_options_bytes("", "SystemdCgroup = true\n"),
        );
        assert_eq!(from_options(Some(&a)).unwrap(), Some(Driver::Systemd));
        let a = any(
            RUNTIME_OPTIONS,
            runtime_options_bytes("", "SystemdCgroup = false\nOther = \"x\"\n"),
        );
        assert_eq!(from_options(Some(&a)).unwrap(), Some(Driver::Cgroupfs));
        let a = any(RUNTIME_OPTIONS, runtime_options_bytes("", "Other = 1\n"));
        assert_eq!(from_options(Some(&a)).unwrap(), None);
        let a = any(
            RUNTIME_OPTIONS,
            runtime_options_bytes("", "SystemdCgroup = \"yes\"\n"),
        );
        assert!(from_options(Some(&a))
            .unwrap_err()
            .contains("not a boolean"));
        // ConfigPath: the TOML is in that file.
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "SystemdCgroup = true\n").unwrap();
        let a = any(
            RUNTIME_OPTIONS,
            runtime_options_bytes(&f.path().display().to_string(), ""),
        );
        assert_eq!(from_options(Some(&a)).unwrap(), Some(Driver::Systemd));
    }

    #[test]
    fn nothing_said_means_husk_chooses() {
        assert_eq!(from_options(None).unwrap(), None);
        assert_eq!(from_options(Some(&Any::new())).unwrap(), None);
        let a = any("example.com/other.Options", vec![1, 2, 3]);
        assert_eq!(from_options(Some(&a)).unwrap(), None);
    }
}
