//! The shell scripts' own behaviour (scripts/lib.sh), as a user of the README's commands meets
//! it on a fresh machine.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Holds a POSIX write lock on `path`, as apt and dpkg lock their files (fcntl F_SETLK).
fn lock(path: &Path) -> std::fs::File {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap();
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: fcntl on an open file with a valid flock.
    assert_eq!(unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &fl) }, 0);
    f
}

#[test]
fn apt_waits_for_another_package_manager_instead_of_failing() {
    // unattended-upgrades holds apt's locks on a fresh machine: demo.sh and test.sh must wait.
    // apt-get update on private lists and cache directories and no sources: only the lists
    // lock matters, and this machine's apt state is left alone.
    assert!(nix::unistd::geteuid().is_root(), "apt needs root");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let d = tempfile::tempdir().unwrap();
    let lists = d.path().join("lists");
    std::fs::create_dir_all(lists.join("partial")).unwrap();
    std::fs::create_dir_all(d.path().join("cache/archives/partial")).unwrap();
    let held = lock(&lists.join("lock"));
    let script = format!(
        "source scripts/lib.sh && apt_get -o Dir::State::Lists={} -o Dir::Cache={} \
         -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=/dev/null update -qq",
        lists.display(),
        d.path().join("cache").display()
    );
    let mut child = Command::new("bash")
        .args(["-c", &script])
        .current_dir(root)
        .env("APT_LOCK_WAIT", "120")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        child.try_wait().unwrap().is_none(),
        "apt_get gave up while the lock was held"
    );
    drop(held);
    let t = Instant::now();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(t.elapsed() < Duration::from_secs(30));
    assert!(
        err.contains("waiting for another package manager to finish (held by process"),
        "{err}"
    );
}
