//! Which unit a `slice:prefix:name` cgroupsPath names, and where its cgroup is.
//!
//! The form is runc's `--systemd-cgroup` syntax, which containerd's CRI builds for every pod
//! whose cgroup parent ends in `.slice` (`<parent basename>:cri-containerd:<container id>`).
//! Slice names expand the way systemd nests them (systemd.slice(5)): each `-` opens a deeper
//! level, so `kubepods-burstable-pod1.slice` lives at
//! `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice`.

use crate::error::{Error, Result};
use std::path::PathBuf;

/// The slice a container goes to when the path leaves it empty (runc's default too).
pub const DEFAULT_SLICE: &str = "system.slice";
/// The unit prefix of a container whose spec has no cgroupsPath: its unit is
/// `husk-<id>.scope` in `system.slice`, so `systemctl` shows which runtime made it (runc uses
/// `runc-<id>.scope` for the same case).
pub const DEFAULT_PREFIX: &str = "husk";

/// A container's unit: a transient scope in `slice`, or (when the path's name ends in
/// `.slice`) a slice of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitSpec {
    /// The unit name: `prefix-name.scope`, or `name` when it is a slice.
    pub name: String,
    /// The parent slice (`Slice=` of a scope, `Wants=` of a slice).
    pub slice: String,
}

impl UnitSpec {
    /// Parses a cgroupsPath for the systemd driver. Empty: `system.slice:husk:<id>`; an empty
    /// slice is `system.slice` (runc's rules, runc/docs/systemd.md).
    ///
    /// Errors (field `linux.cgroupsPath`): not three `:`-separated parts, an empty name, an
    /// invalid slice name, or a unit name systemd would refuse (unit_name_is_valid: at most
    /// 255 characters of `[A-Za-z0-9:_.\-@]`... without `@` for these types).
    pub fn parse(raw: &str, id: &str) -> Result<UnitSpec> {
        let bad = |m: String| Error::spec("linux.cgroupsPath", m);
        let (slice, prefix, name) = if raw.is_empty() {
            (DEFAULT_SLICE, DEFAULT_PREFIX, id)
        } else {
            let parts: Vec<&str> = raw.split(':').collect();
            let [slice, prefix, name] = parts[..] else {
                return Err(bad(format!(
                    "{raw:?}: the systemd cgroup driver expects \"slice:prefix:name\""
                )));
            };
            (slice, prefix, name)
        };
        if name.is_empty() {
            return Err(bad(format!("{raw:?}: the name part is empty")));
        }
        let slice = if slice.is_empty() {
            DEFAULT_SLICE
        } else {
            slice
        };
        expand_slice(slice).map_err(|e| bad(format!("{raw:?}: {e}")))?;
        let unit = if name.ends_with(".slice") {
            expand_slice(name).map_err(|e| bad(format!("{raw:?}: {e}")))?;
            name.to_string()
        } else if prefix.is_empty() {
            format!("{name}.scope")
        } else {
            format!("{prefix}-{name}.scope")
        };
        if !valid_unit_name(&unit) {
            return Err(bad(format!(
                "{raw:?}: {unit:?} is not a valid systemd unit name (at most 255 characters of \
                 letters, digits, ':', '_', '.', '-' and '\\')"
            )));
        }
        Ok(UnitSpec {
            name: unit,
            slice: slice.to_string(),
        })
    }

    /// Is the unit a slice (no processes of its own in systemd's model)?
    pub fn is_slice(&self) -> bool {
        self.name.ends_with(".slice")
    }

    /// The unit's cgroup below the cgroup2 root: the expanded slice, then the scope; a slice
    /// unit's place follows from its own name.
    pub fn cgroup(&self) -> PathBuf {
        let rel = if self.is_slice() {
            expand_slice(&self.name).expect("validated by parse")
        } else {
            format!(
                "{}/{}",
                expand_slice(&self.slice).expect("validated by parse"),
                self.name
            )
        };
        PathBuf::from(rel.trim_start_matches('/'))
    }
}

/// systemd's unit name rule for these types (no instance `@`): 1–255 characters of
/// `[A-Za-z0-9:_.\-]` plus `\` escapes, a known suffix.
fn valid_unit_name(n: &str) -> bool {
    let stem = n
        .strip_suffix(".scope")
        .or_else(|| n.strip_suffix(".slice"));
    n.len() <= 255
        && stem.is_some_and(|s| !s.is_empty())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || ":_.-\\".contains(c))
}

/// The cgroup path of slice `name` (`a-b-c.slice` → `/a.slice/a-b.slice/a-b-c.slice`;
/// `-.slice`, the root slice, → `/`). Errors: no `.slice` suffix, a `/`, an empty component
/// (`a--b.slice`, `-a.slice`).
pub fn expand_slice(name: &str) -> std::result::Result<String, String> {
    let invalid = || format!("{name:?} is not a valid slice name");
    let stem = name.strip_suffix(".slice").ok_or_else(invalid)?;
    if stem.is_empty() || name.contains('/') {
        return Err(invalid());
    }
    if stem == "-" {
        return Ok("/".into());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if part.is_empty() {
            return Err(invalid());
        }
        path.push('/');
        path.push_str(&prefix);
        path.push_str(part);
        path.push_str(".slice");
        prefix.push_str(part);
        prefix.push('-');
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_expand_as_systemd_nests_them() {
        assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
        assert_eq!(expand_slice("-.slice").unwrap(), "/");
        assert_eq!(
            expand_slice("kubepods-burstable-pod1234_5678.slice").unwrap(),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice"
        );
        for bad in [
            "",
            ".slice",
            "a",
            "a.scope",
            "a--b.slice",
            "-a.slice",
            "a/b.slice",
        ] {
            assert!(expand_slice(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn cri_paths_become_scopes_in_the_pod_slice() {
        // What containerd sends for a Burstable pod under kubelet's systemd driver.
        let u = UnitSpec::parse(
            "kubepods-burstable-pod7f0a_11.slice:cri-containerd:0123abcd",
            "0123abcd",
        )
        .unwrap();
        assert_eq!(u.name, "cri-containerd-0123abcd.scope");
        assert_eq!(u.slice, "kubepods-burstable-pod7f0a_11.slice");
        assert!(!u.is_slice());
        assert_eq!(
            u.cgroup(),
            PathBuf::from(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7f0a_11.slice/\
                 cri-containerd-0123abcd.scope"
            )
        );
    }

    #[test]
    fn defaults_and_slice_units() {
        let u = UnitSpec::parse("", "web").unwrap();
        assert_eq!(
            (u.name.as_str(), u.slice.as_str()),
            ("husk-web.scope", "system.slice")
        );
        assert_eq!(u.cgroup(), PathBuf::from("system.slice/husk-web.scope"));
        let u = UnitSpec::parse(":runc:web", "web").unwrap();
        assert_eq!(
            (u.name.as_str(), u.slice.as_str()),
            ("runc-web.scope", "system.slice")
        );
        let u = UnitSpec::parse("machine.slice::web", "web").unwrap();
        assert_eq!(u.name, "web.scope");
        // A name ending in .slice is a slice unit; its place comes from its own name.
        let u = UnitSpec::parse("a.slice:ignored:a-b.slice", "x").unwrap();
        assert!(u.is_slice());
        assert_eq!(u.name, "a-b.slice");
        assert_eq!(u.cgroup(), PathBuf::from("a.slice/a-b.slice"));
        let u = UnitSpec::parse("-.slice:p:n", "n").unwrap();
        assert_eq!(u.cgroup(), PathBuf::from("p-n.scope"));
    }

    #[test]
    fn bad_paths_name_the_field() {
        for bad in [
            "/kubepods/burstable/pod1/c1",
            "a.slice:b",
            "a.slice:b:c:d",
            "a.slice:p:",
            "notaslice:p:n",
            "a--b.slice:p:n",
            "system.slice:p:bad+id",
            "system.slice:p:bad/id",
        ] {
            let e = UnitSpec::parse(bad, "x").unwrap_err().to_string();
            assert!(e.contains("linux.cgroupsPath"), "{bad}: {e}");
        }
        let long = format!("system.slice:p:{}", "x".repeat(250));
        assert!(UnitSpec::parse(&long, "x").is_err());
    }
}
