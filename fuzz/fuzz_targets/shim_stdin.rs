//! What containerd writes to `shim start`'s stdin: nothing, the runtime options as an `Any`
//! (containerd <= 2.2), or BootstrapParams (containerd >= 2.3). Properties: no panic on any
//! bytes; input that decodes as BootstrapParams is answered with a BootstrapResult that
//! decodes back with the address; anything else is answered with the bare address.
#![no_main]

use containerd_shim_husk_v2::manager::{self, StartInput};
use husk_proto::bootstrap::BootstrapResult;
use husk_proto::Message;
use libfuzzer_sys::fuzz_target;

const ADDRESS: &str = "unix:///run/containerd/s/0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    // The options Any of older containerd and the RuntimeInfo `-info` answers with decode
    // (or fail) cleanly too.
    let _ = husk_proto::Any::decode(data);
    let _ = husk_proto::types::RuntimeInfo::decode(data);
    let input = manager::classify_stdin(data, "c1");
    let reply = manager::start_reply(&input, ADDRESS);
    match input {
        StartInput::Legacy => assert_eq!(reply, ADDRESS.as_bytes()),
        StartInput::Bootstrap(_) => {
            let r = BootstrapResult::decode(&reply[..]).expect("the reply decodes");
            assert_eq!((r.version, r.address.as_str()), (2, ADDRESS));
        }
    }
});
