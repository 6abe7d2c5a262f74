//! Builds the Helm chart's installer image as an OCI archive: `FROM scratch` with the static
//! husk binaries only. scripts/installer-image.sh builds the binaries and runs this; import the
//! result with `ctr -n k8s.io images import` or copy it to a registry
//! (`skopeo copy oci-archive:FILE docker://REGISTRY/husk/husk-installer:TAG`).

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut bin_dir, mut out, mut name) = (None, None, None);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--bin-dir" => bin_dir = Some(PathBuf::from(value())),
            "--out" => out = Some(PathBuf::from(value())),
            "--name" => name = Some(value()),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let bin_dir = bin_dir.unwrap_or_else(|| usage("--bin-dir is required"));
    let out = out.unwrap_or_else(|| usage("--out is required"));
    let name = name.unwrap_or_else(|| {
        format!(
            "docker.io/husk/husk-installer:{}",
            env!("CARGO_PKG_VERSION")
        )
    });
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("rootfs");
    husk_e2e::images::installer_rootfs(&rootfs, &bin_dir);
    let archive = husk_e2e::images::build_oci_archive(
        &rootfs,
        &name,
        &husk_e2e::images::installer_image_config(),
        work.path(),
    );
    std::fs::copy(&archive, &out).unwrap_or_else(|e| panic!("write {}: {e}", out.display()));
    println!("{name} -> {}", out.display());
}

fn usage(msg: &str) -> ! {
    eprintln!("husk-installer-image: {msg}\nusage: husk-installer-image --bin-dir DIR --out FILE.tar [--name REF]");
    std::process::exit(2)
}
