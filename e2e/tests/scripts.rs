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

/// `apt_mirror` of scripts/lib.sh under a private apt directory laid out as `files` says.
fn apt_mirror(files: &[(&str, &str)]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("sources.list.d")).unwrap();
    for (name, text) in files {
        std::fs::write(d.path().join(name), text).unwrap();
    }
    let out = Command::new("bash")
        .args(["-c", "source scripts/lib.sh && apt_mirror \"$0\""])
        .arg(d.path())
        .current_dir(root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "apt_mirror failed: {err}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn the_guest_tools_find_apt_s_mirror_in_one_line_and_deb822_sources() {
    // A newer Debian image has only /etc/apt/sources.list.d/debian.sources: the guest tools'
    // install failed there (the mirror search read the missing sources.list under pipefail).
    let deb822 = "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
                  URIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\n\
                  Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n";
    assert_eq!(
        apt_mirror(&[("sources.list.d/debian.sources", deb822)]),
        "http://mirror.example/debian"
    );
    assert_eq!(
        apt_mirror(&[(
            "sources.list",
            "# deb http://old.example/debian bookworm main\n\
             deb http://security.example/debian-security bookworm-security main\n\
             deb [arch=amd64] https://one.example/debian/ bookworm main\n"
        )]),
        "https://one.example/debian/"
    );
    assert_eq!(apt_mirror(&[]), "", "no sources: the caller falls back");
}
