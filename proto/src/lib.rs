//! Protobuf messages written by husk for containerd interfaces no maintained crate covers.

pub mod bootstrap {
    include!(concat!(
        env!("OUT_DIR"),
        "/containerd.runtime.bootstrap.v1.rs"
    ));
}

pub mod types {
    include!(concat!(env!("OUT_DIR"), "/containerd.types.rs"));
}

pub use prost::Message;
pub use prost_types::Any;

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
