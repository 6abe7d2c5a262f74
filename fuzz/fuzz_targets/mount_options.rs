//! Mount options (`mounts[].options`, containerd's rootfs mounts, `rootfsPropagation`), one
//! option per line of the input. Properties: no panic; a flag is never both set and cleared; a recursive attribute is never
//! both set and cleared (apart from the atime field, which the kernel wants cleared whole);
//! what falls through to filesystem data is exactly the options husk does not know, in order.
#![no_main]

use husk_runtime::mountopts::{self, MOUNT_ATTR__ATIME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts: Vec<String> = String::from_utf8_lossy(data)
        .split('\n')
        .map(String::from)
        .collect();
    let Ok(o) = mountopts::parse(&opts) else {
        return;
    };
    assert!(
        (o.flags & o.cleared).is_empty(),
        "{opts:?}: flags {:?} both set and cleared",
        o.flags & o.cleared
    );
    assert_eq!(
        o.rec_attr.set & o.rec_attr.clear & !MOUNT_ATTR__ATIME,
        0,
        "{opts:?}: recursive attributes both set and cleared"
    );
    // The data is exactly the options husk does not know, in order.
    let known = mountopts::known_options();
    let ignored = ["", "defaults", "nofail", "auto", "noauto", "user", "nouser"];
    let unknown: Vec<&str> = opts
        .iter()
        .map(String::as_str)
        .filter(|o| !known.contains(o) && !ignored.contains(o))
        .collect();
    assert_eq!(o.data, unknown.join(","), "{opts:?}: filesystem data");
    assert_eq!(
        o.tmpcopyup,
        opts.iter().any(|x| x == "tmpcopyup"),
        "{opts:?}: tmpcopyup"
    );
});
