//! OCI images built offline: a busybox userland from Debian's static busybox, and the
//! `FROM scratch` image holding one static binary. Written as OCI image layouts and imported
//! with `ctr image import`.

use crate::bed::{
    BUSYBOX, FORKSTORM, PAUSE, SCRATCH, SETUID, USER_NAME, USER_UID, USER_UID_GID, WEB,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct ImageConfig {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: String,
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            cmd: vec!["sh".into()],
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            user: String::new(),
        }
    }
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every image the suites import.
pub const ALL: [&str; 9] = [
    PAUSE,
    BUSYBOX,
    SCRATCH,
    USER_UID,
    USER_NAME,
    USER_UID_GID,
    SETUID,
    WEB,
    FORKSTORM,
];

/// The OCI archive of image `name`: the prebuilt one in `HUSK_IMAGE_DIR` when there is one
/// (the node guest has no compiler), else built now under `work_dir`.
pub fn archive(name: &str, work_dir: &Path) -> PathBuf {
    if let Some(dir) = crate::env::image_dir() {
        let p = archive_path(&dir, name);
        if p.exists() {
            return p;
        }
    }
    build(name, work_dir)
}

fn archive_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{}.tar", sha256_hex(name.as_bytes())))
}

/// Builds every image of `ALL` into `dir`, for `HUSK_IMAGE_DIR`.
pub fn prebuild(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let work = tempfile::Builder::new()
        .prefix("husk-images-")
        .tempdir_in("/tmp")
        .unwrap();
    for name in ALL {
        let built = build(name, work.path());
        std::fs::rename(&built, archive_path(dir, name))
            .or_else(|_| std::fs::copy(&built, archive_path(dir, name)).map(|_| ()))
            .unwrap();
    }
}

/// Builds image `name` (one of `ALL`; any other name is a plain busybox) under `work_dir`.
pub fn build(name: &str, work_dir: &Path) -> PathBuf {
    let rootfs = work_dir.join(format!("img-{}", name.replace(['/', ':'], "_")));
    let cfg = match name {
        PAUSE => {
            static_rootfs(&rootfs, "pause.c", "pause");
            ImageConfig {
                cmd: vec!["/pause".into()],
                ..Default::default()
            }
        }
        SCRATCH => {
            scratch_rootfs(&rootfs);
            ImageConfig {
                cmd: vec!["/hello".into()],
                ..Default::default()
            }
        }
        USER_UID | USER_NAME | USER_UID_GID => {
            busybox_rootfs(&rootfs);
            let user = match name {
                USER_UID => "1000",
                USER_NAME => "user",
                _ => "1000:2000",
            };
            ImageConfig {
                user: user.into(),
                ..Default::default()
            }
        }
        SETUID => {
            busybox_rootfs(&rootfs);
            static_rootfs(&rootfs.join("bin"), "euid.c", "euid");
            std::fs::set_permissions(
                rootfs.join("bin/euid"),
                std::os::unix::fs::PermissionsExt::from_mode(0o4755),
            )
            .unwrap();
            ImageConfig::default()
        }
        FORKSTORM => {
            busybox_rootfs(&rootfs);
            static_rootfs(&rootfs.join("bin"), "forkstorm.c", "forkstorm");
            ImageConfig::default()
        }
        WEB => {
            busybox_rootfs(&rootfs);
            std::fs::create_dir_all(rootfs.join("www")).unwrap();
            std::fs::write(
                rootfs.join("www/index.html"),
                "hello from a husk web server\n",
            )
            .unwrap();
            ImageConfig {
                cmd: ["httpd", "-f", "-p", "8080", "-h", "/www"]
                    .map(String::from)
                    .to_vec(),
                ..Default::default()
            }
        }
        _ => {
            busybox_rootfs(&rootfs);
            ImageConfig::default()
        }
    };
    build_oci_archive(&rootfs, name, &cfg, work_dir)
}

/// A busybox rootfs tree (static busybox + applet links + passwd/group).
pub fn busybox_rootfs(dir: &Path) {
    let src = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("busybox-static is not installed (the README's test command installs it)");
    for d in [
        "bin",
        "etc",
        "tmp",
        "root",
        "home/user",
        "proc",
        "sys",
        "dev",
    ] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy(&src, dir.join("bin/busybox")).unwrap();
    let list = Command::new(&src).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|a| *a != "busybox")
    {
        let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n").unwrap();
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\nuser:x:1000:\nextra:x:2000:user\nnogroup:x:65534:\n",
    )
    .unwrap();
    std::fs::set_permissions(
        dir.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
}

/// The seed's example: one static binary, compiled from the repository's hello.c.
pub fn scratch_rootfs(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/tests/fixtures/hello.c");
    run(Command::new("cc")
        .args(["-static", "-Os", "-s", "-o"])
        .arg(dir.join("hello"))
        .arg(&src));
}

/// A rootfs holding one static binary built from e2e/fixtures/`source`.
pub fn static_rootfs(dir: &Path, source: &str, binary: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(source);
    run(Command::new("cc")
        .args(["-static", "-Os", "-s", "-o"])
        .arg(dir.join(binary))
        .arg(&src));
}

/// Writes an OCI image layout tarball of `rootfs` named `name` and returns its path.
pub fn build_oci_archive(rootfs: &Path, name: &str, cfg: &ImageConfig, out_dir: &Path) -> PathBuf {
    let layout = out_dir.join(format!("layout-{}", sha256_hex(name.as_bytes())));
    let _ = std::fs::remove_dir_all(&layout);
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let layer_tmp = layout.join("layer.tar");
    run(Command::new("tar")
        .args([
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--sort=name",
            "-C",
        ])
        .arg(rootfs)
        .arg("-cf")
        .arg(&layer_tmp)
        .arg("."));
    let layer = std::fs::read(&layer_tmp).unwrap();
    std::fs::remove_file(&layer_tmp).unwrap();
    let put = |data: &[u8]| -> (String, usize) {
        let d = sha256_hex(data);
        std::fs::write(blobs.join(&d), data).unwrap();
        (format!("sha256:{d}"), data.len())
    };
    let (layer_digest, layer_size) = put(&layer);
    let mut config = json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Env": cfg.env, "Cmd": cfg.cmd },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] }
    });
    if !cfg.user.is_empty() {
        config["config"]["User"] = json!(cfg.user);
    }
    let (config_digest, config_size) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size }]
    });
    let (manifest_digest, manifest_size) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{ "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest_size,
            "annotations": { "io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.rsplit(':').next().unwrap_or("latest") } }]
    });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let archive = out_dir.join(format!("{}.tar", sha256_hex(name.as_bytes())));
    run(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg("."));
    std::fs::remove_dir_all(&layout).unwrap();
    archive
}

/// The Helm chart's installer image: `FROM scratch` plus the static `husk-node-installer` and
/// `containerd-shim-husk-v2` from `static_bin_dir` (scripts/lib.sh `build_static`). Nothing
/// else: the installer needs no shell, no libc and no package manager.
pub fn installer_rootfs(dir: &Path, static_bin_dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for bin in ["husk-node-installer", "containerd-shim-husk-v2"] {
        let src = static_bin_dir.join(bin);
        let data = std::fs::read(&src).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the static binaries are built by scripts/installer-image.sh or the README's test command)",
                src.display()
            )
        });
        assert!(
            !has_interpreter(&data),
            "{} is dynamically linked; the installer image needs static binaries",
            src.display()
        );
        std::fs::write(dir.join(bin), &data).unwrap();
        std::fs::set_permissions(
            dir.join(bin),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
}

pub fn installer_image_config() -> ImageConfig {
    ImageConfig {
        cmd: vec!["/husk-node-installer".into(), "--help".into()],
        env: vec![],
        user: String::new(),
    }
}

/// Whether a 64-bit little-endian ELF asks for a dynamic loader (has a PT_INTERP header).
pub fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        elf.get(o..o + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().unwrap()) == PT_INTERP)
    })
}
