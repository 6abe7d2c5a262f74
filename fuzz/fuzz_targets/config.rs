//! `config.json` as `husk create` reads it: parse, the namespace plan, validation, the cgroup
//! path, and everything else create checks before anything exists. Properties: no panic on
//! any input; a spec that loads also saves and loads back unchanged (the state dir keeps a
//! copy that `exec` re-reads); a cgroup path never leaves its hierarchy.
#![no_main]

use husk_runtime::{cgroups, namespaces, spec};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = spec::parse(data, Path::new("config.json")) else {
        return;
    };
    // The saved copy must load back to the same spec.
    let saved = serde_json::to_vec(&s).expect("a parsed spec serialises");
    let again = spec::parse(&saved, Path::new("state/config.json"))
        .expect("the saved copy of a spec parses back");
    // Typed comparison: capability sets have no order.
    assert!(again == s, "the saved spec changed on reload");
    let linux = s.linux().clone().unwrap_or_default();
    if let Ok(plan) = namespaces::plan(linux.namespaces().as_deref().unwrap_or(&[])) {
        let _ = spec::validate(&s, &plan);
    }
    if let Some(p) = linux.rootfs_propagation() {
        let _ = husk_runtime::mountopts::parse(&[p.clone()]);
    }
    if let Some(sc) = linux.seccomp() {
        let _ = husk_runtime::seccomp::compile(sc);
    }
    // cgroupsPath against a fixed v1 and v2 layout (the host's is not the fuzzer's business).
    let own: BTreeMap<String, String> = [
        ("memory".to_string(), "/kubepods/pod1".to_string()),
        (String::new(), "/kubepods/pod1".to_string()),
    ]
    .into();
    let v1 = cgroups::Layout::V1(
        [(
            "memory".to_string(),
            (PathBuf::from("/sys/fs/cgroup/memory"), PathBuf::from("/")),
        )]
        .into(),
    );
    let v2 = cgroups::Layout::V2(PathBuf::from("/sys/fs/cgroup"));
    for layout in [&v1, &v2] {
        if let Ok(paths) = cgroups::resolve(layout, linux.cgroups_path().as_deref(), "c1", &own) {
            for dir in paths.dirs.values() {
                assert!(
                    dir.starts_with("/sys/fs/cgroup")
                        && !dir.components().any(|c| c == Component::ParentDir),
                    "cgroupsPath {:?} resolved to {}",
                    linux.cgroups_path(),
                    dir.display()
                );
            }
        }
    }
});
