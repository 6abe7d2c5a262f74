//! The shim binary's own command line, as a person trying it sees it.

use std::process::Command;

fn shim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_containerd-shim-husk-v2"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_prints_usage() {
    for flag in ["--help", "-h", "-help"] {
        let out = shim(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with("Usage: containerd-shim-husk-v2"),
            "{flag}: {text}"
        );
        assert!(text.contains("io.containerd.husk.v2"), "{flag}: {text}");
    }
}

#[test]
fn an_unknown_flag_is_exit_2_with_a_hint() {
    let out = shim(&["-bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "containerd-shim-husk-v2: unknown flag -bogus (-h prints usage)\n"
    );
}
