//! The JSON payloads containerd's task API hands the shim inside an `Any`: an exec's process
//! (ExecProcessRequest.spec) and new limits (UpdateTaskRequest.resources, the same shape as
//! `linux.resources`). The first byte picks which. Properties: no panic; a decoded process
//! serialises (it crosses the init channel as JSON); resources translate to cgroup v1 and v2
//! writes and to the v2 device program without panicking, and every file written is a plain
//! name inside the container's cgroup directory.
#![no_main]

use husk_runtime::cgroups::{self, devices::bpf as devices_bpf};
use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::{LinuxResources, Process};

fuzz_target!(|data: &[u8]| {
    let Some((&which, json)) = data.split_first() else {
        return;
    };
    if which & 1 == 0 {
        if let Ok(p) = serde_json::from_slice::<Process>(json) {
            let v = serde_json::to_vec(&p).expect("an exec process serialises");
            serde_json::from_slice::<Process>(&v).expect("a serialised process decodes");
        }
        return;
    }
    let Ok(res) = serde_json::from_slice::<LinuxResources>(json) else {
        return;
    };
    let all = cgroups::with_default_devices(Some(&res));
    for writes in [cgroups::v1_writes(&all), cgroups::v2_writes(&all)]
        .into_iter()
        .flatten()
    {
        for w in writes {
            assert!(
                !w.file.is_empty() && !w.file.contains('/') && w.file != "..",
                "cgroup write to {:?}",
                w.file
            );
        }
    }
    let _ = devices_bpf::program(all.devices().as_deref().unwrap_or(&[]));
});
