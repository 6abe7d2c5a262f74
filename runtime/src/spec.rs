//! Loading and validating config.json: every problem becomes one message naming the field or
//! path, before anything is created.

use crate::error::{Context, Error, Result};
use crate::namespaces::{self, Action, Kind};
use oci_spec::runtime::{Capability, Spec};
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub const CONFIG: &str = "config.json";

/// Parses a spec from JSON. Unknown capability names are dropped with a warning (the runtime
/// spec says to ignore them; oci-spec would reject the whole document).
pub fn parse(data: &[u8], path: &Path) -> Result<Spec> {
    let mut v: serde_json::Value = serde_json::from_slice(data).map_err(|e| Error::Config {
        path: path.into(),
        message: format!("invalid JSON: {e}"),
    })?;
    if let Some(caps) = v
        .pointer_mut("/process/capabilities")
        .and_then(|c| c.as_object_mut())
    {
        for (set, list) in caps.iter_mut() {
            if let Some(arr) = list.as_array_mut() {
                arr.retain(|c| {
                    let ok = c
                        .as_str()
                        .and_then(|s| s.strip_prefix("CAP_"))
                        .is_some_and(|s| Capability::from_str(s).is_ok());
                    if !ok {
                        tracing::warn!(capability = %c, set = %set, "unknown capability ignored");
                    }
                    ok
                });
            }
        }
    }
    serde_json::from_value(v).map_err(|e| Error::Config {
        path: path.into(),
        message: e.to_string(),
    })
}

pub fn load_bundle(bundle: &Path) -> Result<Spec> {
    let path = bundle.join(CONFIG);
    let data = std::fs::read(&path).map_err(|e| Error::Config {
        path: path.clone(),
        message: if e.kind() == std::io::ErrorKind::NotFound {
            "not found (is --bundle right?)".into()
        } else {
            e.to_string()
        },
    })?;
    parse(&data, &path)
}

pub fn rootfs_path(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::spec("root", "is required"))?;
    let p = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    match std::fs::metadata(&p) {
        Ok(m) if m.is_dir() => p
            .canonicalize()
            .ctx(|| format!("root.path {}", p.display())),
        Ok(_) => Err(Error::spec(
            "root.path",
            format!("{} is not a directory", p.display()),
        )),
        Err(e) => Err(Error::spec("root.path", format!("{}: {e}", p.display()))),
    }
}

pub fn validate(spec: &Spec, plan: &[Action]) -> Result<()> {
    let linux = spec.linux().as_ref();
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::spec("process", "is required"))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::spec("process.args", "must not be empty"));
    }
    if !process.cwd().is_absolute() {
        return Err(Error::spec(
            "process.cwd",
            format!("{} must be absolute", process.cwd().display()),
        ));
    }
    if spec.hostname().as_deref().is_some_and(|h| !h.is_empty())
        && !namespaces::creates(plan, Kind::Uts)
    {
        return Err(Error::spec("hostname", "needs a new uts namespace"));
    }
    if namespaces::creates(plan, Kind::User)
        && linux.is_none_or(|l| {
            l.uid_mappings().as_ref().is_none_or(|m| m.is_empty())
                || l.gid_mappings().as_ref().is_none_or(|m| m.is_empty())
        })
    {
        return Err(Error::spec(
            "linux.uidMappings",
            "a new user namespace needs uidMappings and gidMappings",
        ));
    }
    if !namespaces::has(plan, Kind::Mount) || !namespaces::creates(plan, Kind::Mount) {
        return Err(Error::spec(
            "linux.namespaces",
            "husk needs a new mount namespace to build the root filesystem",
        ));
    }
    for (k, _) in linux
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        crate::procfs::sysctl_path(k)?;
        match crate::security::sysctl_namespace(k) {
            Some(ns) if namespaces::isolated(plan, ns) => {}
            Some(ns) => {
                return Err(Error::spec(
                    format!("linux.sysctl.{k}"),
                    format!("needs its own {} namespace", ns.oci_name()),
                ))
            }
            None => {
                return Err(Error::spec(
                    format!("linux.sysctl.{k}"),
                    "is not namespaced and cannot be set for a container",
                ))
            }
        }
    }
    let userns_maps = linux
        .filter(|_| namespaces::creates(plan, Kind::User))
        .map(|l| crate::idmap::Mappings {
            uid: id_mappings(l.uid_mappings()),
            gid: id_mappings(l.gid_mappings()),
        });
    if let Some(m) = &userns_maps {
        crate::idmap::validate("linux.uidMappings", &m.uid)?;
        crate::idmap::validate("linux.gidMappings", &m.gid)?;
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if !m.destination().is_absolute() {
            return Err(Error::spec(
                format!("mounts[{i}].destination"),
                format!("{} must be absolute", m.destination().display()),
            ));
        }
        let o = match crate::mountopts::parse(m.options().as_deref().unwrap_or(&[])) {
            Ok(o) => o,
            Err(e) => {
                return Err(Error::Unsupported {
                    feature: format!("mounts[{i}].options {}", e.0),
                    reason: "not supported by husk yet".into(),
                })
            }
        };
        validate_idmapped_mount(i, m, &o, plan, userns_maps.as_ref())?;
    }
    if let Some(p) = process
        .apparmor_profile()
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        if !crate::security::apparmor_enabled() {
            return Err(Error::Unsupported {
                feature: format!("process.apparmorProfile {p:?}"),
                reason: "AppArmor is not enabled on this host".into(),
            });
        }
    }
    if let Some(s) = process.selinux_label().as_deref().filter(|s| !s.is_empty()) {
        return Err(Error::Unsupported {
            feature: format!("process.selinuxLabel {s:?}"),
            reason: "SELinux is not supported by husk".into(),
        });
    }
    if let Some(adj) = process.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            return Err(Error::spec(
                "process.oomScoreAdj",
                format!("{adj} is outside -1000..1000"),
            ));
        }
    }
    Ok(())
}

/// `linux.uidMappings`-style entries as (containerID, hostID, size).
pub fn id_mappings(
    m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>,
) -> Vec<crate::idmap::IdMapping> {
    m.iter()
        .flatten()
        .map(|x| (x.container_id(), x.host_id(), x.size()))
        .collect()
}

/// The mappings an idmapped mount asks for: its own `uidMappings`/`gidMappings`, or `None`
/// for an `idmap`/`ridmap` mount without them (it takes the container's user namespace maps).
pub fn mount_mappings(m: &oci_spec::runtime::Mount) -> Option<crate::idmap::Mappings> {
    let (uid, gid) = (id_mappings(m.uid_mappings()), id_mappings(m.gid_mappings()));
    (!uid.is_empty() || !gid.is_empty()).then_some(crate::idmap::Mappings { uid, gid })
}

/// Whether mount `m` (options `o`) is idmapped: it has mappings or `idmap`/`ridmap`.
pub fn is_idmapped(m: &oci_spec::runtime::Mount, o: &crate::mountopts::MountOptions) -> bool {
    o.idmap.is_some() || mount_mappings(m).is_some()
}

/// An idmapped mount (runtime spec 1.2 config.md, `idmap`/`ridmap` and mount `uidMappings`):
/// a bind mount; both maps or neither; maps the kernel accepts; without maps, a container user
/// namespace to take them from; and, with a user namespace of the container's own, host ids
/// inside it (outside, its processes would see files as owned by the overflow id 65534 and
/// could not write them). The last check for a joined user namespace happens at create, once
/// its maps can be read.
fn validate_idmapped_mount(
    i: usize,
    m: &oci_spec::runtime::Mount,
    o: &crate::mountopts::MountOptions,
    plan: &[Action],
    userns: Option<&crate::idmap::Mappings>,
) -> Result<()> {
    if !is_idmapped(m, o) {
        return Ok(());
    }
    let field = |f: &str| format!("mounts[{i}].{f}");
    if !(o.is_bind() || m.typ().as_deref() == Some("bind")) {
        return Err(Error::spec(
            field("options"),
            format!(
                "{} is idmapped (uidMappings/gidMappings, idmap or ridmap), which only a bind \
                 mount can be",
                m.destination().display()
            ),
        ));
    }
    let Some(maps) = mount_mappings(m) else {
        if !namespaces::has(plan, Kind::User) {
            return Err(Error::spec(
                field("options"),
                "idmap/ridmap without uidMappings and gidMappings takes the container's user \
                 namespace mappings, but the container has no user namespace",
            ));
        }
        return Ok(());
    };
    if maps.uid.is_empty() || maps.gid.is_empty() {
        return Err(Error::spec(
            field(if maps.uid.is_empty() {
                "uidMappings"
            } else {
                "gidMappings"
            }),
            "uidMappings and gidMappings must be given together",
        ));
    }
    crate::idmap::validate(&field("uidMappings"), &maps.uid)?;
    crate::idmap::validate(&field("gidMappings"), &maps.gid)?;
    if let Some(ns) = userns {
        check_within(i, &maps, ns, "linux.uidMappings", "linux.gidMappings")?;
    }
    Ok(())
}

/// Mount `i`'s maps must point at host ids of the container's user namespace `ns`.
pub fn check_within(
    i: usize,
    maps: &crate::idmap::Mappings,
    ns: &crate::idmap::Mappings,
    uid_what: &str,
    gid_what: &str,
) -> Result<()> {
    for (f, inner, outer, what) in [
        ("uidMappings", &maps.uid, &ns.uid, uid_what),
        ("gidMappings", &maps.gid, &ns.gid, gid_what),
    ] {
        if let Some((a, b)) = crate::idmap::uncovered(inner, outer) {
            return Err(Error::spec(
                format!("mounts[{i}].{f}"),
                format!(
                    "host ids {a}-{b} are outside the container's user namespace ({what}: {}); \
                     its processes would see those files as owned by nobody (65534)",
                    outer
                        .iter()
                        .map(|(c, h, s)| format!("{c}:{h}:{s}"))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            ));
        }
    }
    Ok(())
}

/// The spec as created, kept with the state (exec and hooks need it; the bundle may change).
pub fn save_config(dir: &Path, spec: &Spec) -> Result<()> {
    let p = dir.join(CONFIG);
    std::fs::write(&p, serde_json::to_vec(spec).expect("spec serialises"))
        .ctx(|| format!("write {}", p.display()))
}

pub fn load_saved(dir: &Path) -> Result<Spec> {
    let p = dir.join(CONFIG);
    let data = std::fs::read(&p).ctx(|| format!("read {}", p.display()))?;
    parse(&data, &p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},
        "linux":{"namespaces":[{"type":"mount"},{"type":"pid"}]}}"#;

    #[test]
    fn malformed_json_names_the_file_and_position() {
        let e = parse(b"{\"ociVersion\": ", Path::new("/b/config.json"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/b/config.json: invalid JSON"), "{e}");
    }

    #[test]
    fn unknown_capabilities_are_dropped() {
        let s = MIN.replace(
            r#""cwd":"/","#,
            r#""cwd":"/","capabilities":{"bounding":["CAP_CHOWN","CAP_BOGUS"]},"#,
        );
        let spec = parse(s.as_bytes(), Path::new("c")).unwrap();
        assert_eq!(
            spec.process()
                .as_ref()
                .unwrap()
                .capabilities()
                .as_ref()
                .unwrap()
                .bounding()
                .as_ref()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn unknown_namespace_type_is_rejected() {
        let s = MIN.replace(r#"{"type":"pid"}"#, r#"{"type":"pidd"}"#);
        let e = parse(s.as_bytes(), Path::new("config.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("pidd"), "{e}");
    }

    #[test]
    fn validation_names_fields() {
        let spec = parse(MIN.as_bytes(), Path::new("c")).unwrap();
        let plan = namespaces::plan(
            spec.linux()
                .as_ref()
                .unwrap()
                .namespaces()
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        validate(&spec, &plan).unwrap();
        let s = MIN.replace(r#""linux":{"#, r#""hostname":"h","linux":{"#);
        let spec = parse(s.as_bytes(), Path::new("c")).unwrap();
        assert!(validate(&spec, &plan)
            .unwrap_err()
            .to_string()
            .contains("hostname"));
        let s = MIN.replace(
            r#""linux":{"#,
            r#""linux":{"sysctl":{"vm.swappiness":"1"},"#,
        );
        let spec = parse(s.as_bytes(), Path::new("c")).unwrap();
        assert!(validate(&spec, &plan)
            .unwrap_err()
            .to_string()
            .contains("vm.swappiness"));
        let s = MIN.replace(r#"["sh"]"#, "[]");
        let spec = parse(s.as_bytes(), Path::new("c")).unwrap();
        assert!(validate(&spec, &plan)
            .unwrap_err()
            .to_string()
            .contains("process.args"));
    }
}
