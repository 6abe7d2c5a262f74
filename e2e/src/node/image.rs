//! The node guest's image: a Debian trixie root made with mmdebstrap from the Debian mirror,
//! other containerd and runc lines unpacked beside the packaged ones, a cold boot, and the
//! warm state saved right after it. Cached under `/var/cache/husk/node/<key>/`, where the key
//! hashes the package set, this recipe (this file, `customize.sh`, the QEMU command line) and
//! the QEMU version; a changed key builds a new image. A lock file serializes builders, and a
//! shared lock per image keeps a running guest's image from being removed.
//!
//! Layout of an image directory: `base.img` (raw ext4, the mmdebstrap'd root), `warm.qcow2`
//! (the cold boot's writes over it), `warm.state` (RAM and device state, QEMU migration
//! stream), `vmlinux` (uncompressed kernel: no decompressor to run under TCG), `initrd.img`,
//! `id_ed25519` (root's ssh key, made per image), `known_hosts` (the guest's host key),
//! `versions` (what the guest runs), `timings` (how long the build took).

use super::qemu::{self, Accel, Machine};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where images are cached.
pub const CACHE: &str = "/var/cache/husk/node";
/// The guest's Debian suite: what a current node runs (systemd 257, Linux 6.12, containerd
/// 1.7.24, runc 1.1.15, crun 1.21).
pub const SUITE: &str = "trixie";
/// Installed in the guest (mmdebstrap's minbase variant plus these).
pub const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "openssh-server",
    "linux-image-amd64",
    "initramfs-tools",
    "zstd",
    "kmod",
    "containerd",
    "runc",
    "crun",
    "containernetworking-plugins",
    "iptables",
    "iproute2",
    "apparmor",
    "apparmor-utils",
    "libseccomp2",
    "procps",
    "util-linux",
    "bsdutils",
    "mount",
];
/// .debs unpacked (not installed) under `/opt/<dir>`: (dir, suite, package, version prefix).
/// containerd 1.6 is bookworm's, 2.x and the current runc come from sid (runc 1.3 needs glibc
/// >= 2.38, which trixie has).
pub const UNPACKED: &[(&str, &str, &str, &str)] = &[
    ("containerd-1.6", "bookworm", "containerd", "1.6."),
    ("containerd-2", "sid", "containerd", "2."),
    ("runc-sid", "sid", "runc", "1."),
];
/// Root filesystem size (sparse).
const DISK_SIZE: &str = "8G";

/// A built image directory.
pub struct Image {
    pub dir: PathBuf,
    pub accel: Accel,
}

impl Image {
    pub fn kernel(&self) -> PathBuf {
        self.dir.join("vmlinux")
    }
    pub fn initrd(&self) -> PathBuf {
        self.dir.join("initrd.img")
    }
    pub fn warm_disk(&self) -> PathBuf {
        self.dir.join("warm.qcow2")
    }
    pub fn warm_state(&self) -> PathBuf {
        self.dir.join("warm.state")
    }
    pub fn key_file(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }
    /// What the guest runs (kernel, systemd, containerd, runc, crun), one `name: version` a line.
    pub fn versions(&self) -> String {
        std::fs::read_to_string(self.dir.join("versions")).unwrap_or_default()
    }
    /// The build's timings, one `step: seconds` a line.
    pub fn timings(&self) -> String {
        std::fs::read_to_string(self.dir.join("timings")).unwrap_or_default()
    }

    /// The cached image for this recipe, built first if missing (minutes: mmdebstrap and a
    /// cold boot). Holds a shared lock on the image for as long as the returned lock lives.
    pub fn ensure(accel: Accel) -> Result<(Image, File), String> {
        std::fs::create_dir_all(CACHE).map_err(|e| format!("{CACHE}: {e}"))?;
        let key = cache_key(accel)?;
        let image = Image {
            dir: Path::new(CACHE).join(&key),
            accel,
        };
        let lock = lock_file(&Path::new(CACHE).join(".lock"), libc::LOCK_EX)?;
        if !image.dir.join("timings").exists() {
            eprintln!(
                "==> building the node guest image {} (first use of this recipe: a few minutes)",
                image.dir.display()
            );
            build(&image)?;
            remove_unused(&key);
        }
        let inuse = lock_file(&image.dir.join(".inuse"), libc::LOCK_SH)?;
        drop(lock);
        Ok((image, inuse))
    }
}

/// Opens (creating) `path` and takes a flock on it, waiting.
fn lock_file(path: &Path, op: i32) -> Result<File, String> {
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(f.as_raw_fd(), op) } != 0 {
        return Err(format!(
            "flock {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(f)
}

/// Removes images of other keys no guest is using (called with the cache lock held).
fn remove_unused(keep: &str) {
    for e in std::fs::read_dir(CACHE).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == keep || name.starts_with('.') || !e.path().is_dir() {
            continue;
        }
        let Ok(f) = File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(e.path().join(".inuse"))
        else {
            continue;
        };
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The image key: a hash of everything the image depends on — the package set, the
/// mmdebstrap arguments, `customize.sh`, the commands run at the cold boot, the QEMU command
/// line (devices, memory, vCPUs, kernel command line) and the QEMU version — and nothing else,
/// so a comment edit does not cost a rebuild.
pub fn cache_key(accel: Accel) -> Result<String, String> {
    let placeholder = Path::new("/");
    let machine = Machine {
        accel,
        kernel: placeholder,
        initrd: placeholder,
        disk: placeholder,
        ssh_port: 0,
        src: placeholder,
        out: placeholder,
        console: PathBuf::new(),
        qmp: PathBuf::new(),
    }
    .command();
    let machine: Vec<String> = machine
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut h = Sha256::new();
    for part in [
        SUITE,
        &PACKAGES.join(","),
        &format!("{UNPACKED:?}"),
        &MMDEBSTRAP.join(" "),
        ESSENTIAL_HOOK,
        include_str!("customize.sh"),
        VERSIONS,
        &machine.join(" "),
        &qemu::version()?,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    Ok(h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// mmdebstrap's arguments besides the package list, suite, target and mirror.
const MMDEBSTRAP: &[&str] = &[
    "--variant=minbase",
    "--mode=root",
    "--format=directory",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
];

/// Run after the essential packages, before the others: the initramfs only needs to find the virtio root
/// disk (a small initramfs is quick to unpack under TCG).
const ESSENTIAL_HOOK: &str = "--essential-hook=mkdir -p \"$1/etc/initramfs-tools/conf.d\" && \
     printf 'MODULES=list\\nCOMPRESS=zstd\\n' > \"$1/etc/initramfs-tools/conf.d/husk.conf\" && \
     printf 'virtio_pci\\nvirtio_blk\\next4\\n' >> \"$1/etc/initramfs-tools/modules\"";

/// The Debian mirror apt already uses here (the first `.../debian` URI in its sources,
/// one-line or deb822, comments skipped: the rule of scripts/lib.sh's `apt_mirror`),
/// deb.debian.org when none is found.
pub fn mirror() -> String {
    let mut texts = vec![std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    for e in std::fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
    {
        texts.push(std::fs::read_to_string(e.path()).unwrap_or_default());
    }
    texts
        .iter()
        .flat_map(|t| t.lines())
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .find(|w| {
            (w.starts_with("http://") || w.starts_with("https://"))
                && w.trim_end_matches('/').ends_with("/debian")
        })
        .map(|w| w.trim_end_matches('/').to_string())
        .unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

fn run(what: &str, cmd: &mut Command, log: &Path) -> Result<(), String> {
    let logf = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| e.to_string())?;
    let st = cmd
        .stdin(Stdio::null())
        .stdout(logf.try_clone().map_err(|e| e.to_string())?)
        .stderr(logf)
        .status()
        .map_err(|e| format!("{what}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        Err(format!(
            "{what} failed ({st}); end of {}:\n{}",
            log.display(),
            tail(&text, 30)
        ))
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Downloads `package` of Debian `suite` into `dest` with apt's own client, through a private
/// sources list and package lists (the host's apt configuration is left alone). Its path.
fn download_deb(
    suite: &str,
    package: &str,
    prefix: &str,
    dest: &Path,
    log: &Path,
) -> Result<PathBuf, String> {
    let cache = Path::new(CACHE).join(format!(".apt-{suite}"));
    std::fs::create_dir_all(cache.join("lists/partial")).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(cache.join("archives/partial")).map_err(|e| e.to_string())?;
    std::fs::write(
        cache.join("sources.list"),
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {} {suite} main\n",
            mirror()
        ),
    )
    .map_err(|e| e.to_string())?;
    let opts = |c: &mut Command| {
        c.arg("-o")
            .arg(format!(
                "Dir::Etc::SourceList={}",
                cache.join("sources.list").display()
            ))
            .args(["-o", "Dir::Etc::SourceParts=/dev/null"])
            .arg("-o")
            .arg(format!(
                "Dir::State::Lists={}",
                cache.join("lists").display()
            ))
            .arg("-o")
            .arg(format!("Dir::Cache={}", cache.display()))
            .args(["-o", "APT::Sandbox::User=root", "-q"]);
    };
    let mut update = Command::new("apt-get");
    opts(&mut update);
    run(
        &format!("apt-get update ({suite})"),
        update.arg("update"),
        log,
    )?;
    std::fs::create_dir_all(dest).map_err(|e| e.to_string())?;
    let mut dl = Command::new("apt-get");
    opts(&mut dl);
    run(
        &format!("apt-get download {package} ({suite})"),
        dl.arg("download").arg(package).current_dir(dest),
        log,
    )?;
    let deb = std::fs::read_dir(dest)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(&format!("{package}_{prefix}")) && n.ends_with(".deb")
        })
        .ok_or_else(|| {
            format!(
                "{suite}'s {package} is not version {prefix}x (see {})",
                dest.display()
            )
        })?;
    Ok(deb)
}

/// Extracts the uncompressed kernel from a bzImage: the payload's place and size are in the
/// x86 boot protocol's setup header (Documentation/arch/x86/boot.rst: `setup_sects` at 0x1f1,
/// `payload_offset`/`payload_length` at 0x248/0x24c); trixie compresses it with zstd, bookworm
/// with xz. The payload's last 4 bytes are the decompressed size, not part of the stream.
pub fn extract_vmlinux(bzimage: &Path, out: &Path) -> Result<(), String> {
    let d = std::fs::read(bzimage).map_err(|e| format!("{}: {e}", bzimage.display()))?;
    if d.len() < 0x250 || &d[0x202..0x206] != b"HdrS" {
        return Err(format!("{} is not a bzImage", bzimage.display()));
    }
    let setup_sects = match d[0x1f1] {
        0 => 4,
        n => n as usize,
    };
    let le = |o: usize| u32::from_le_bytes(d[o..o + 4].try_into().unwrap()) as usize;
    let start = (setup_sects + 1) * 512 + le(0x248);
    let len = le(0x24c);
    let payload = d
        .get(start..start + len.saturating_sub(4))
        .ok_or("bzImage payload out of bounds")?;
    let tool = if payload.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "zstd"
    } else if payload.starts_with(&[0xfd, b'7', b'z', b'X', b'Z']) {
        "xz"
    } else {
        return Err(format!(
            "{}: kernel payload is neither zstd nor xz",
            bzimage.display()
        ));
    };
    let mut child = Command::new(tool)
        .args(["-dc", "-q"])
        .stdin(Stdio::piped())
        .stdout(File::create(out).map_err(|e| e.to_string())?)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{tool}: {e}"))?;
    use std::io::Write;
    let _ = child.stdin.take().unwrap().write_all(payload);
    let _ = child.wait();
    let head = std::fs::read(out).map_err(|e| e.to_string())?;
    if !head.starts_with(b"\x7fELF") {
        return Err(format!(
            "{tool} did not yield an ELF vmlinux from {}",
            bzimage.display()
        ));
    }
    Ok(())
}

/// What the guest runs, asked at the cold boot and kept beside the image.
const VERSIONS: &str = r#"
echo "kernel: $(uname -r)"
echo "systemd: $(systemctl --version | head -1)"
echo "cgroup: $(stat -fc %T /sys/fs/cgroup) controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
echo "apparmor: $(cat /sys/module/apparmor/parameters/enabled)"
for c in /usr/bin/containerd /opt/containerd-1.6/usr/bin/containerd /opt/containerd-2/usr/bin/containerd; do
  echo "$c: $($c --version | awk '{print $3}')"
  "$(dirname $c)/ctr" --version >/dev/null
done
echo "/usr/bin/runc: $(runc --version | head -1 | awk '{print $3}')"
echo "/opt/runc-sid/usr/sbin/runc: $(/opt/runc-sid/usr/sbin/runc --version | head -1 | awk '{print $3}')"
echo "/usr/bin/crun: $(crun --version | head -1 | awk '{print $3}')"
iptables -L -n >/dev/null
systemd-run --quiet --wait --pipe true
"#;

fn build(image: &Image) -> Result<(), String> {
    let t0 = Instant::now();
    let tmp = image.dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let log = tmp.join("build.log");
    let mut timings = Vec::new();
    let mut step = |name: &str, t: Instant| {
        let s = t.elapsed().as_secs_f64();
        eprintln!("    {name}: {s:.1} s");
        timings.push(format!("{name}: {s:.1}"));
    };

    let t = Instant::now();
    run(
        "ssh-keygen",
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "husk-node", "-f"])
            .arg(tmp.join("id_ed25519")),
        &log,
    )?;
    let debs = tmp.join("debs");
    let debs_dl = Path::new(CACHE).join(".debs");
    let _ = std::fs::remove_dir_all(&debs_dl);
    std::fs::create_dir_all(&debs).map_err(|e| e.to_string())?;
    for (dir, suite, package, prefix) in UNPACKED {
        let deb = download_deb(suite, package, prefix, &debs_dl.join(dir), &log)?;
        std::fs::rename(&deb, debs.join(format!("{dir}.deb"))).map_err(|e| e.to_string())?;
    }
    step("download containerd 1.6, 2.x and sid's runc", t);

    let t = Instant::now();
    let root = tmp.join("root");
    let mirror = mirror();
    run(
        "mmdebstrap",
        Command::new("mmdebstrap")
            .args(MMDEBSTRAP)
            .arg(format!("--include={}", PACKAGES.join(",")))
            .arg(ESSENTIAL_HOOK)
            .arg(SUITE)
            .arg(&root)
            .arg(format!("deb {mirror} {SUITE} main")),
        &log,
    )?;
    step("mmdebstrap", t);

    let t = Instant::now();
    let script = tmp.join("customize.sh");
    std::fs::write(&script, include_str!("customize.sh")).map_err(|e| e.to_string())?;
    let pubkey = std::fs::read_to_string(tmp.join("id_ed25519.pub")).map_err(|e| e.to_string())?;
    run(
        "customize.sh",
        Command::new("sh")
            .arg(&script)
            .arg(&root)
            .env("HUSK_NODE_PUBKEY", pubkey.trim())
            .env("HUSK_NODE_DEBS", &debs),
        &log,
    )?;
    let boot = root.join("boot");
    let find = |prefix: &str| -> Result<PathBuf, String> {
        std::fs::read_dir(&boot)
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .ok_or_else(|| format!("no {prefix}* in the guest's /boot"))
    };
    extract_vmlinux(&find("vmlinuz-")?, &tmp.join("vmlinux"))?;
    std::fs::copy(find("initrd.img-")?, tmp.join("initrd.img")).map_err(|e| e.to_string())?;
    let hostkey = std::fs::read_to_string(root.join("etc/ssh/ssh_host_ed25519_key.pub"))
        .map_err(|e| format!("the guest's ssh host key: {e}"))?;
    let mut f = hostkey.split_whitespace();
    std::fs::write(
        tmp.join("known_hosts"),
        format!(
            "husk-node {} {}\n",
            f.next().unwrap_or(""),
            f.next().unwrap_or("")
        ),
    )
    .map_err(|e| e.to_string())?;
    run(
        "mkfs.ext4",
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "husk-node", "-d"])
            .arg(&root)
            .arg(tmp.join("base.img"))
            .arg(DISK_SIZE),
        &log,
    )?;
    std::fs::remove_dir_all(&root).map_err(|e| e.to_string())?;
    std::fs::remove_dir_all(&debs).map_err(|e| e.to_string())?;
    run(
        "qemu-img create",
        Command::new("qemu-img")
            .args([
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "raw",
                "-b",
                "base.img",
                "warm.qcow2",
            ])
            .current_dir(&tmp),
        &log,
    )?;
    step("customize, kernel, mkfs.ext4", t);

    let t = Instant::now();
    let versions = cold_boot(image, &tmp)?;
    std::fs::write(tmp.join("versions"), &versions).map_err(|e| e.to_string())?;
    step("cold boot and warm state", t);
    step("total", t0);
    std::fs::write(tmp.join("timings"), timings.join("\n") + "\n").map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&image.dir);
    std::fs::rename(&tmp, &image.dir).map_err(|e| e.to_string())?;
    eprint!("    guest: {}", versions.replace('\n', "\n    guest: "));
    eprintln!();
    Ok(())
}

/// Boots the fresh image, waits for a settled system, warms the page cache with the binaries
/// the suites start, and saves RAM and device state to `warm.state` (the 9p shares are never
/// mounted by then: QEMU refuses to save a guest with a mounted 9p share). What the guest runs.
fn cold_boot(image: &Image, dir: &Path) -> Result<String, String> {
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).map_err(|e| e.to_string())?;
    let m = Machine {
        accel: image.accel,
        kernel: &dir.join("vmlinux"),
        initrd: &dir.join("initrd.img"),
        disk: &dir.join("warm.qcow2"),
        ssh_port: super::free_port()?,
        src: &empty,
        out: &empty,
        console: dir.join("console-cold.log"),
        qmp: dir.join("qmp.sock"),
    };
    let mut vm = super::Running::spawn(&m, dir, false)?;
    let ssh = super::Ssh {
        port: m.ssh_port,
        key: dir.join("id_ed25519"),
        known_hosts: dir.join("known_hosts"),
        control: dir.join("ssh.sock"),
    };
    let timeout = match image.accel {
        Accel::Kvm => Duration::from_secs(120),
        Accel::Tcg => Duration::from_secs(900),
    };
    vm.wait_ssh(&ssh, timeout)?;
    let out = ssh.output(&format!(
        "systemctl is-system-running --wait >/dev/null; systemctl --failed --no-legend >&2; {VERSIONS} sync"
    ));
    let versions = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "the fresh guest failed its first commands: {}{}",
            versions,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    ssh.close();
    let qmp = vm.qmp.as_mut().unwrap();
    qmp.execute("stop", serde_json::json!({}))?;
    qmp.execute(
        "migrate",
        serde_json::json!({ "uri": format!("file:{}", dir.join("warm.state").display()) }),
    )?;
    qmp.wait_migration(Duration::from_secs(600))?;
    vm.quit();
    let _ = std::fs::remove_dir(&empty);
    Ok(versions)
}
