//! Protobuf messages written by husk for containerd interfaces no maintained crate covers.

pub mod bootstrap {
    include!(concat!(
        env!("OUT_DIR"),
        "/containerd.runtime.bootstrap.v1.rs"
    ));
}

/// `containerd.runc.v1.Options`: a runc-type handler's options.
pub mod runc_options {
    include!(concat!(env!("OUT_DIR"), "/containerd.runc.v1.rs"));
}

/// `runtimeoptions.v1.Options`: any other handler's options (TOML body or file).
pub mod runtime_options {
    include!(concat!(env!("OUT_DIR"), "/runtimeoptions.v1.rs"));
}

pub mod types {
    include!(concat!(env!("OUT_DIR"), "/containerd.types.rs"));
}

pub use prost;
pub use prost::Message;
pub use prost_types::Any;

/// The type URLs containerd gives the runtime options it passes to `shim start` (the Any's
/// type_url; matched on the part after the last '/', as protobuf's Any does).
pub const RUNC_OPTIONS_TYPE: &str = "containerd.runc.v1.Options";
pub const RUNTIME_OPTIONS_TYPE: &str = "runtimeoptions.v1.Options";
/// containerd 1.4's name for runtimeoptions.v1.Options.
pub const CRI_RUNTIME_OPTIONS_TYPE: &str = "cri.runtimeoptions.v1.Options";

/// containerd's typeurl for the OCI runtime features document.
pub const FEATURES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_result_wire_format() {
        let r = bootstrap::BootstrapResult {
            version: 2,
            address: "unix:///run/x".into(),
            protocol: "ttrpc".into(),
            ..Default::default()
        };
        let b = r.encode_to_vec();
        // field 1 varint 2, field 2 length-delimited
        assert_eq!(&b[..3], &[0x08, 0x02, 0x12]);
        assert_eq!(bootstrap::BootstrapResult::decode(&b[..]).unwrap(), r);
    }

    #[test]
    fn options_wire_format() {
        // shim_cgroup is field 3, length-delimited: tag 0x1a.
        let o = runc_options::Options {
            shim_cgroup: "/s".into(),
            ..Default::default()
        };
        assert_eq!(o.encode_to_vec(), vec![0x1a, 2, b'/', b's']);
        // config_body is field 3 too (bytes).
        let g = runtime_options::Options {
            config_body: b"a".to_vec(),
            ..Default::default()
        };
        assert_eq!(g.encode_to_vec(), vec![0x1a, 1, b'a']);
    }

    #[test]
    fn params_round_trip() {
        let p = bootstrap::BootstrapParams {
            instance_id: "c1".into(),
            namespace: "k8s.io".into(),
            log_level: -4,
            containerd_ttrpc_address: "unix:///run/containerd/containerd.sock.ttrpc".into(),
            ..Default::default()
        };
        assert_eq!(
            bootstrap::BootstrapParams::decode(&p.encode_to_vec()[..]).unwrap(),
            p
        );
    }
}
