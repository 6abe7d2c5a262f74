//! The `husk` command line as a user meets it.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// husk has no rootless mode: a non-root user is told so plainly instead of `create
/// /run/husk/<id>: Permission denied` (README's troubleshooting quotes this message). `spec`
/// and `features` touch no container and work for anyone.
#[test]
fn non_root_use_says_root_is_needed() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let bin = dir.path().join("husk");
    std::fs::copy(husk_bin(), &bin).unwrap();
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(&bin)
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("setpriv (util-linux) runs a command as another user")
    };
    for args in [
        &["run", "--bundle", ".", "x"][..],
        &["create", "x"],
        &["list"],
        &["state", "x"],
        &["kill", "x", "KILL"],
        &["delete", "--force", "x"],
        &["exec", "x", "true"],
    ] {
        let out = as_nobody(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(
            err,
            format!(
                "husk: {} needs root: rootless containers are not supported; run it as root \
                 (for example with sudo)\n",
                args[0]
            ),
            "{args:?}"
        );
    }
    let out = as_nobody(&["features"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = as_nobody(&["spec"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("config.json").exists());
}
