//! Mounting the rootfs containerd hands to Create (overlay, bind, …) onto bundle/rootfs.

use containerd_shim_protos::api::Mount;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::path::Path;

pub fn mount_rootfs(mounts: &[Mount], target: &Path) -> Result<(), String> {
    if mounts.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(target).map_err(|e| format!("create {}: {e}", target.display()))?;
    for (i, m) in mounts.iter().enumerate() {
        let opts = husk_runtime::mountopts::parse(&m.options)
            .map_err(|e| format!("rootfs[{i}]: option {}", e.0))?;
        let typ = m.type_.as_str();
        let bind = typ == "bind" || opts.is_bind();
        let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
        let flags = opts.flags - MsFlags::MS_REMOUNT;
        let r = if bind {
            mount(
                Some(m.source.as_str()),
                target,
                None::<&str>,
                MsFlags::MS_BIND | (flags & MsFlags::MS_REC),
                None::<&str>,
            )
            .and_then(|_| {
                if flags.contains(MsFlags::MS_RDONLY) {
                    mount(
                        None::<&str>,
                        target,
                        None::<&str>,
                        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
                        None::<&str>,
                    )
                } else {
                    Ok(())
                }
            })
        } else {
            mount(Some(m.source.as_str()), target, Some(typ), flags, data)
        };
        r.map_err(|e| {
            format!(
                "mount rootfs[{i}] {typ} {} on {}: {e}",
                m.source,
                target.display()
            )
        })?;
    }
    Ok(())
}

/// Unmounts everything stacked on `target` (best effort: it may not be mounted at all).
pub fn unmount_rootfs(target: &Path) {
    for _ in 0..32 {
        if umount2(target, MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
}
