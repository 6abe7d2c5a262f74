//! The runtime options containerd hands `shim start`: the handler's `options` section of
//! containerd's config (or a `ctr run --runtime-config-path` file), as a protobuf Any.
//!
//! Where they come from (containerd's CRI `GenerateRuntimeOptions`, ctr's `getRuntimeOptions`):
//! - runtime_type `io.containerd.runc.v2`: `containerd.runc.v1.Options`, the TOML section
//!   decoded into runc's fields (`ShimCgroup`, `BinaryName`, `SystemdCgroup`...);
//! - any other runtime_type (husk's own `io.containerd.husk.v2`): `runtimeoptions.v1.Options`
//!   with `config_path` (the TOML keys `ConfigPath`/`TypeUrl`, every version) and, from
//!   containerd 1.7 when no ConfigPath is set, `config_body`: the whole TOML section;
//! - a handler without an options section: nothing.
//!
//! How they arrive: containerd <= 2.2 writes the Any itself to stdin; containerd >= 2.3 writes
//! BootstrapParams, the Any being one of its `extensions`.
//!
//! husk reads the same TOML keys from runtimeoptions' body or file as containerd maps into
//! runc's Options, so one spelling (`ShimCgroup = "/path"`) works whichever runtime_type
//! husk is registered under.

use husk_proto::bootstrap::BootstrapParams;
use husk_proto::{runc_options, runtime_options, Any, Message};

/// Decoded runtime options.
#[derive(Debug, Default)]
pub enum RuntimeOptions {
    /// No options were passed.
    #[default]
    None,
    /// `containerd.runc.v1.Options` (husk registered as runtime_type io.containerd.runc.v2).
    Runc(runc_options::Options),
    /// `runtimeoptions.v1.Options`: the handler's TOML, from config_body or config_path.
    Generic {
        options: runtime_options::Options,
        /// The TOML the options point at (empty when they carry none).
        config: toml_edit::DocumentMut,
    },
    /// An Any of a type husk does not know: ignored (as containerd's runc shim ignores
    /// options it cannot decode for a field it does not need).
    Unknown,
}

#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("runtime options: cannot decode {what}: {source}")]
    Decode {
        what: &'static str,
        source: husk_proto::prost::DecodeError,
    },
    #[error("runtime options: read config_path {path}: {source}")]
    ReadConfig {
        path: String,
        source: std::io::Error,
    },
    #[error("runtime options: {what} is not valid TOML: {source}")]
    Toml {
        what: String,
        source: toml_edit::TomlError,
    },
    #[error("runtime options: {key} in {what} must be a {kind}")]
    WrongType {
        key: &'static str,
        kind: &'static str,
        what: String,
    },
}

/// The message name an Any's type URL names (the part after the last '/', as protobuf's Any).
fn type_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

impl RuntimeOptions {
    /// What containerd <= 2.2 wrote to stdin: nothing, or the options Any.
    pub fn from_stdin(data: &[u8]) -> Result<RuntimeOptions, OptionsError> {
        if data.is_empty() {
            return Ok(RuntimeOptions::None);
        }
        let any = Any::decode(data).map_err(|source| OptionsError::Decode {
            what: "the Any on stdin",
            source,
        })?;
        Self::from_any(&any)
    }

    /// containerd >= 2.3: the first extension that is a runtime options message.
    pub fn from_bootstrap(params: &BootstrapParams) -> Result<RuntimeOptions, OptionsError> {
        for ext in &params.extensions {
            let Some(any) = &ext.value else { continue };
            match Self::from_any(any)? {
                RuntimeOptions::Unknown => continue,
                known => return Ok(known),
            }
        }
        Ok(RuntimeOptions::None)
    }

    pub fn from_any(any: &Any) -> Result<RuntimeOptions, OptionsError> {
        match type_name(&any.type_url) {
            husk_proto::RUNC_OPTIONS_TYPE => runc_options::Options::decode(&any.value[..])
                .map(RuntimeOptions::Runc)
                .map_err(|source| OptionsError::Decode {
                    what: husk_proto::RUNC_OPTIONS_TYPE,
                    source,
                }),
            husk_proto::RUNTIME_OPTIONS_TYPE | husk_proto::CRI_RUNTIME_OPTIONS_TYPE => {
                let options =
                    runtime_options::Options::decode(&any.value[..]).map_err(|source| {
                        OptionsError::Decode {
                            what: husk_proto::RUNTIME_OPTIONS_TYPE,
                            source,
                        }
                    })?;
                let config = generic_config(&options)?;
                Ok(RuntimeOptions::Generic { options, config })
            }
            _ => Ok(RuntimeOptions::Unknown),
        }
    }

    /// The cgroup the shim is to be placed in (`ShimCgroup`), if any.
    pub fn shim_cgroup(&self) -> Result<Option<String>, OptionsError> {
        match self {
            RuntimeOptions::Runc(o) => Ok(Some(o.shim_cgroup.clone()).filter(|s| !s.is_empty())),
            RuntimeOptions::Generic { options, config } => {
                toml_string(config, "ShimCgroup", &config_source(options))
            }
            RuntimeOptions::None | RuntimeOptions::Unknown => Ok(None),
        }
    }

    /// The cgroup driver the handler asks for (`SystemdCgroup`): `Some` only when the options
    /// say it (runc's Options always do: false there is runc's cgroupfs); `None` lets husk
    /// choose (`Driver::select`: systemd for a `slice:prefix:name` path on a systemd host).
    pub fn cgroup_driver(&self) -> Result<Option<husk_runtime::cgroups::Driver>, OptionsError> {
        use husk_runtime::cgroups::Driver;
        let systemd = match self {
            RuntimeOptions::Runc(o) => Some(o.systemd_cgroup),
            RuntimeOptions::Generic { options, config } => {
                toml_bool(config, "SystemdCgroup", &config_source(options))?
            }
            RuntimeOptions::None | RuntimeOptions::Unknown => None,
        };
        Ok(systemd.map(|s| if s { Driver::Systemd } else { Driver::Cgroupfs }))
    }
}

/// Where a generic option's TOML came from, for messages.
fn config_source(o: &runtime_options::Options) -> String {
    if o.config_path.is_empty() {
        "the handler's options section".into()
    } else {
        o.config_path.clone()
    }
}

/// The TOML runtimeoptions point at: the file at config_path (containerd sends no body
/// then), else config_body.
fn generic_config(o: &runtime_options::Options) -> Result<toml_edit::DocumentMut, OptionsError> {
    let text = if !o.config_path.is_empty() {
        std::fs::read_to_string(&o.config_path).map_err(|source| OptionsError::ReadConfig {
            path: o.config_path.clone(),
            source,
        })?
    } else {
        String::from_utf8_lossy(&o.config_body).into_owned()
    };
    text.parse().map_err(|source| OptionsError::Toml {
        what: config_source(o),
        source,
    })
}

/// A top-level key, matched case-insensitively as containerd's TOML decoding matches Go field
/// names.
fn toml_item<'a>(doc: &'a toml_edit::DocumentMut, key: &str) -> Option<&'a toml_edit::Item> {
    doc.as_table()
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, item)| item)
}

/// A top-level string key (`toml_item`).
fn toml_string(
    doc: &toml_edit::DocumentMut,
    key: &'static str,
    what: &str,
) -> Result<Option<String>, OptionsError> {
    let Some(item) = toml_item(doc, key) else {
        return Ok(None);
    };
    match item.as_str() {
        Some("") => Ok(None),
        Some(s) => Ok(Some(s.to_string())),
        None => Err(OptionsError::WrongType {
            key,
            kind: "string",
            what: what.to_string(),
        }),
    }
}

/// A top-level boolean key (`toml_item`).
fn toml_bool(
    doc: &toml_edit::DocumentMut,
    key: &'static str,
    what: &str,
) -> Result<Option<bool>, OptionsError> {
    let Some(item) = toml_item(doc, key) else {
        return Ok(None);
    };
    item.as_bool()
        .map(Some)
        .ok_or_else(|| OptionsError::WrongType {
            key,
            kind: "boolean",
            what: what.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use husk_proto::bootstrap::Extension;

    fn any(type_url: &str, value: Vec<u8>) -> Any {
        Any {
            type_url: type_url.into(),
            value,
        }
    }

    fn runc(shim_cgroup: &str) -> Any {
        let o = runc_options::Options {
            shim_cgroup: shim_cgroup.into(),
            binary_name: "/usr/bin/runc".into(),
            systemd_cgroup: false,
            ..Default::default()
        };
        any("containerd.runc.v1.Options", o.encode_to_vec())
    }

    fn generic(o: runtime_options::Options) -> Any {
        any("runtimeoptions.v1.Options", o.encode_to_vec())
    }

    #[test]
    fn nothing_on_stdin_is_no_options() {
        let o = RuntimeOptions::from_stdin(b"").unwrap();
        assert!(matches!(o, RuntimeOptions::None));
        assert_eq!(o.shim_cgroup().unwrap(), None);
    }

    #[test]
    fn runc_options_carry_the_shim_cgroup() {
        let o = RuntimeOptions::from_stdin(&runc("/kubepods/shims").encode_to_vec()).unwrap();
        assert_eq!(o.shim_cgroup().unwrap().as_deref(), Some("/kubepods/shims"));
        let o = RuntimeOptions::from_stdin(&runc("").encode_to_vec()).unwrap();
        assert_eq!(o.shim_cgroup().unwrap(), None);
    }

    #[test]
    fn the_handlers_toml_section_as_config_body() {
        // containerd >= 1.7 for a non-runc runtime_type: the section, re-marshalled as TOML.
        let body = b"ShimCgroup = '/husk-shims'\nSomethingElse = 3\n".to_vec();
        let o = RuntimeOptions::from_stdin(
            &generic(runtime_options::Options {
                config_body: body,
                ..Default::default()
            })
            .encode_to_vec(),
        )
        .unwrap();
        assert_eq!(o.shim_cgroup().unwrap().as_deref(), Some("/husk-shims"));
        // Keys match case-insensitively, as containerd's TOML decoding does.
        let o = RuntimeOptions::from_any(&generic(runtime_options::Options {
            config_body: b"shimcgroup = \"/x\"".to_vec(),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(o.shim_cgroup().unwrap().as_deref(), Some("/x"));
    }

    #[test]
    fn a_config_path_is_read_and_wins_over_the_body() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("husk.toml");
        std::fs::write(&f, "ShimCgroup = \"/from-file\"\n").unwrap();
        let o = RuntimeOptions::from_any(&generic(runtime_options::Options {
            config_path: f.display().to_string(),
            config_body: b"ShimCgroup = \"/from-body\"".to_vec(),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(o.shim_cgroup().unwrap().as_deref(), Some("/from-file"));
        let e = RuntimeOptions::from_any(&generic(runtime_options::Options {
            config_path: dir.path().join("missing.toml").display().to_string(),
            ..Default::default()
        }))
        .unwrap_err();
        assert!(e.to_string().contains("missing.toml"), "{e}");
    }

    #[test]
    fn bad_input_is_one_clear_error() {
        let e = RuntimeOptions::from_any(&generic(runtime_options::Options {
            config_body: b"ShimCgroup = ".to_vec(),
            ..Default::default()
        }))
        .unwrap_err();
        assert!(e.to_string().contains("not valid TOML"), "{e}");
        let o = RuntimeOptions::from_any(&generic(runtime_options::Options {
            config_body: b"ShimCgroup = 7".to_vec(),
            ..Default::default()
        }))
        .unwrap();
        assert!(o
            .shim_cgroup()
            .unwrap_err()
            .to_string()
            .contains("must be a string"));
        assert!(RuntimeOptions::from_stdin(b"\xff\xff\xff").is_err());
    }

    #[test]
    fn unknown_types_are_ignored() {
        let o = RuntimeOptions::from_any(&any("example.Other", vec![1, 2])).unwrap();
        assert!(matches!(o, RuntimeOptions::Unknown));
        assert_eq!(o.shim_cgroup().unwrap(), None);
    }

    #[test]
    fn containerd_23_passes_them_as_a_bootstrap_extension() {
        let params = BootstrapParams {
            instance_id: "c1".into(),
            extensions: vec![
                Extension {
                    value: Some(any("example.Other", vec![])),
                },
                Extension {
                    value: Some(runc("/shims")),
                },
            ],
            ..Default::default()
        };
        let o = RuntimeOptions::from_bootstrap(&params).unwrap();
        assert_eq!(o.shim_cgroup().unwrap().as_deref(), Some("/shims"));
        let none = RuntimeOptions::from_bootstrap(&BootstrapParams::default()).unwrap();
        assert!(matches!(none, RuntimeOptions::None));
    }

    #[test]
    fn systemd_cgroup_chooses_the_driver() {
        use husk_runtime::cgroups::Driver;
        let o = runc_options::Options {
            systemd_cgroup: true,
            ..Default::default()
        };
        let a = any("containerd.runc.v1.Options", o.encode_to_vec());
        let driver = |a: &Any| RuntimeOptions::from_any(a).unwrap().cgroup_driver();
        assert_eq!(driver(&a).unwrap(), Some(Driver::Systemd));
        // runc's Options always carry the field: absent is false, runc's cgroupfs.
        let a = any("containerd.runc.v1.Options", vec![]);
        assert_eq!(driver(&a).unwrap(), Some(Driver::Cgroupfs));
        let toml = |body: &str| {
            generic(runtime_options::Options {
                config_body: body.as_bytes().to_vec(),
                ..Default::default()
            })
        };
        assert_eq!(
            driver(&toml("SystemdCgroup = true\n")).unwrap(),
            Some(Driver::Systemd)
        );
        assert_eq!(
            driver(&toml("SystemdCgroup = false\nOther = \"x\"\n")).unwrap(),
            Some(Driver::Cgroupfs)
        );
        assert_eq!(driver(&toml("Other = 1\n")).unwrap(), None);
        let e = driver(&toml("SystemdCgroup = \"yes\"\n")).unwrap_err();
        assert!(e.to_string().contains("must be a boolean"), "{e}");
        assert_eq!(RuntimeOptions::None.cgroup_driver().unwrap(), None);
        let a = any("example.com/other.Options", vec![1, 2, 3]);
        assert_eq!(driver(&a).unwrap(), None);
    }
}
