//! The strings containerd hands the shim: its command line (`start`, `delete`, serve; Go-style
//! flags; NUL-separated here) and the stdio URIs of Create/Exec (FIFO paths, file://,
//! binary:// with a query). The first byte picks which. Properties: no panic; the flags
//! parsed are the ones given; a logger's arguments have containerd's shape.
#![no_main]

use containerd_shim_husk_v2::{args, io};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    if which & 1 == 0 {
        let argv: Vec<String> = text.split('\0').map(String::from).collect();
        if let Ok(a) = args::parse(&argv) {
            if !a.id.is_empty() {
                assert!(
                    argv.iter().any(|x| x.contains(a.id.as_str())),
                    "{argv:?}: id {:?} came from nowhere",
                    a.id
                );
            }
            if !a.action.is_empty() {
                assert!(argv.contains(&a.action), "{argv:?}: action {:?}", a.action);
            }
        }
        return;
    }
    match io::parse_uri(&text) {
        Ok(io::Sink::Binary { args, .. }) => {
            // containerd's shape: key, value, key, value…; each key once.
            assert_eq!(args.len() % 2, 0, "{text:?}: {args:?}");
            let keys: Vec<&String> = args.iter().step_by(2).collect();
            for (i, k) in keys.iter().enumerate() {
                assert!(!keys[..i].contains(k), "{text:?}: key {k:?} twice");
            }
        }
        Ok(io::Sink::Fifo(p)) | Ok(io::Sink::File(p)) => assert!(text.ends_with(p.as_str())),
        Ok(io::Sink::None) => assert!(text.is_empty()),
        Err(_) => {}
    }
});
