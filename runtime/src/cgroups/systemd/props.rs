//! Unit properties (systemd.resource-control(5), org.freedesktop.systemd1(5)): those a
//! container's unit is created with, and the OCI resources translated into properties.
//!
//! Resources are translated once, into cgroup v2 file writes (`v2_writes`); the properties
//! are derived from those writes, so what systemd is told and what husk writes to cgroupfs
//! afterwards (systemd + fs, as runc does) can never disagree. Properties systemd re-applies
//! on `daemon-reload` are exactly these, so a reload restores the container's limits instead
//! of dropping them (runc#3611, runc#4568).

use super::super::Write;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use zbus::zvariant::Value;

/// systemd's "infinity" (USEC_INFINITY, CGROUP_LIMIT_MAX).
pub const INFINITY: u64 = u64::MAX;

/// A property value, in the D-Bus type systemd declares for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropValue {
    /// `b`
    Bool(bool),
    /// `t`
    U64(u64),
    /// `s`
    Str(String),
    /// `as`
    Strs(Vec<String>),
    /// `ay`: a bitmask, byte 0 holding bits 0–7 (AllowedCPUs, AllowedMemoryNodes).
    Bytes(Vec<u8>),
    /// `au`
    Pids(Vec<u32>),
    /// `a(ss)`: (device path or group, access)
    DeviceAllow(Vec<(String, String)>),
}

impl PropValue {
    /// The value as a D-Bus variant.
    pub fn to_value(&self) -> Value<'_> {
        match self {
            PropValue::Bool(b) => Value::from(*b),
            PropValue::U64(n) => Value::from(*n),
            PropValue::Str(s) => Value::from(s.as_str()),
            PropValue::Strs(v) => Value::from(v.clone()),
            PropValue::Bytes(v) => Value::from(v.clone()),
            PropValue::Pids(v) => Value::from(v.clone()),
            PropValue::DeviceAllow(v) => Value::from(v.clone()),
        }
    }
}

/// One property of a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prop {
    pub name: &'static str,
    pub value: PropValue,
}

fn p(name: &'static str, value: PropValue) -> Prop {
    Prop { name, value }
}

/// The minimum systemd versions of the properties that need one (systemd's NEWS).
pub mod min {
    /// `/dev/char/M:m` paths parsed without stat(2), `char-M` groups.
    pub const DEVICE_PATHS: u32 = 240;
    pub const CPU_QUOTA_PERIOD: u32 = 242;
    pub const ALLOWED_CPUS: u32 = 244;
    /// CPUWeight=0 meaning `cpu.idle 1`.
    pub const CPU_IDLE: u32 = 252;
    pub const OOM_POLICY_SCOPE: u32 = 253;
}

/// The properties a container's unit is created with: its place, its first process, the
/// accounting the container's limits need, and (systemd ≥ 253) the OOM policy that
/// `memory.oom.group` asks for — systemd refuses to change it on a running scope, so it is set
/// here or never. `pid` is `None` for a slice (systemd puts no process in a slice itself).
pub fn creation(
    unit: &super::UnitSpec,
    id: &str,
    pid: Option<u32>,
    oom_group: Option<&str>,
    version: u32,
) -> Vec<Prop> {
    let mut v = vec![p(
        "Description",
        PropValue::Str(format!("husk container {id}")),
    )];
    if unit.is_slice() {
        v.push(p("Wants", PropValue::Strs(vec![unit.slice.clone()])));
    } else {
        v.push(p("Slice", PropValue::Str(unit.slice.clone())));
        v.push(p("Delegate", PropValue::Bool(true)));
    }
    if let Some(pid) = pid {
        v.push(p("PIDs", PropValue::Pids(vec![pid])));
    }
    for a in [
        "MemoryAccounting",
        "CPUAccounting",
        "IOAccounting",
        "TasksAccounting",
    ] {
        v.push(p(a, PropValue::Bool(true)));
    }
    v.push(p("DefaultDependencies", PropValue::Bool(false)));
    if version >= min::OOM_POLICY_SCOPE {
        match oom_group.map(str::trim) {
            Some("1") => v.push(p("OOMPolicy", PropValue::Str("kill".into()))),
            Some("0") => v.push(p("OOMPolicy", PropValue::Str("continue".into()))),
            _ => {}
        }
    }
    v
}

fn limit(v: &str) -> Option<u64> {
    match v.trim() {
        "max" => Some(INFINITY),
        s => s.parse().ok(),
    }
}

/// The properties for cgroup v2 `writes`, and the writes to make afterwards (the same, with
/// `cpu.max`'s quota rounded as systemd stores it). Files systemd has no property for
/// (io.max, hugetlb, memory.oom.group, …) get none; they are still written. The last write of
/// a file wins, as on cgroupfs.
///
/// Errors: a value systemd's property cannot hold (`cpuset.cpus` that is not a CPU list).
pub fn from_writes(writes: &[Write], version: u32) -> Result<(Vec<Prop>, Vec<Write>), String> {
    let mut props: Vec<Prop> = Vec::new();
    let mut set = |pr: Prop| {
        props.retain(|q| q.name != pr.name);
        props.push(pr);
    };
    let mut out = Vec::with_capacity(writes.len());
    let idle = writes
        .iter()
        .rev()
        .find(|w| w.file == "cpu.idle")
        .is_some_and(|w| w.value.trim() == "1")
        && version >= min::CPU_IDLE;
    for w in writes {
        let mut w = w.clone();
        let name = match w.file.as_str() {
            "memory.max" => Some("MemoryMax"),
            "memory.high" => Some("MemoryHigh"),
            "memory.low" => Some("MemoryLow"),
            "memory.min" => Some("MemoryMin"),
            "memory.swap.max" => Some("MemorySwapMax"),
            "pids.max" => Some("TasksMax"),
            _ => None,
        };
        if let Some(name) = name {
            if let Some(n) = limit(&w.value) {
                set(p(name, PropValue::U64(n)));
            }
        }
        match w.file.as_str() {
            "cpu.weight" if !idle => {
                // CPUWeight=0 would mean cpu.idle to systemd (≥ 252); 0 is no weight at all.
                if let Ok(n) = w.value.trim().parse::<u64>() {
                    if n > 0 {
                        set(p("CPUWeight", PropValue::U64(n)));
                    }
                }
            }
            // systemd sets cpu.idle 1 for CPUWeight=0 (and refuses to set it otherwise).
            "cpu.idle" if idle => set(p("CPUWeight", PropValue::U64(0))),
            "cpu.max" => {
                let mut it = w.value.split_whitespace();
                let quota = it.next().unwrap_or("max");
                let period: u64 = it.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
                let (per_sec, rounded) = cpu_quota(quota.parse().ok(), period);
                if version >= min::CPU_QUOTA_PERIOD {
                    set(p("CPUQuotaPeriodUSec", PropValue::U64(period)));
                }
                set(p("CPUQuotaPerSecUSec", PropValue::U64(per_sec)));
                if let Some(q) = rounded {
                    w.value = format!("{q} {period}");
                }
            }
            "cpuset.cpus" | "cpuset.mems" if version >= min::ALLOWED_CPUS => {
                let bits = range_to_bits(&w.value)
                    .map_err(|e| format!("{} {:?}: {e}", w.file, w.value))?;
                let name = if w.file == "cpuset.cpus" {
                    "AllowedCPUs"
                } else {
                    "AllowedMemoryNodes"
                };
                set(p(name, PropValue::Bytes(bits)));
            }
            "io.weight" => {
                if let Some(n) = w.value.trim().strip_prefix("default ") {
                    if let Ok(n) = n.trim().parse() {
                        set(p("IOWeight", PropValue::U64(n)));
                    }
                }
            }
            _ => {}
        }
        out.push(w);
    }
    Ok((props, out))
}

/// `CPUQuotaPerSecUSec` for a quota (µs per `period` µs; `None` = unlimited): systemd keeps the
/// quota as a whole percent of a CPU, so a quota that is not a multiple of 10 ms per second is
/// rounded up to one (runc does the same), and the quota written to `cpu.max` is changed to
/// match so a daemon-reload leaves it as it was. Returns (per-second value, rounded quota if
/// changed).
pub fn cpu_quota(quota: Option<i64>, period: u64) -> (u64, Option<u64>) {
    let period = if period == 0 { 100_000 } else { period };
    match quota {
        Some(q) if q > 0 => {
            let per_sec = q as u64 * 1_000_000 / period;
            if per_sec.is_multiple_of(10_000) {
                (per_sec, None)
            } else {
                let per_sec = (per_sec / 10_000 + 1) * 10_000;
                (per_sec, Some(per_sec * period / 1_000_000))
            }
        }
        _ => (INFINITY, None),
    }
}

/// A cpuset list (`0-3,8`) as systemd's bitmask: little-endian bytes, byte 0 = CPUs 0–7 (the
/// byte order runc once got wrong, runc#3611).
pub fn range_to_bits(list: &str) -> Result<Vec<u8>, String> {
    let mut bytes: Vec<u8> = Vec::new();
    for part in list
        .trim()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let (lo, hi): (usize, usize) = match (lo.parse(), hi.parse()) {
            (Ok(a), Ok(b)) if a <= b && b < 8192 => (a, b),
            _ => return Err(format!("{part:?} is not a CPU or node range")),
        };
        if bytes.len() <= hi / 8 {
            bytes.resize(hi / 8 + 1, 0);
        }
        for bit in lo..=hi {
            bytes[bit / 8] |= 1 << (bit % 8);
        }
    }
    if bytes.is_empty() {
        return Err(format!("{list:?} names no CPU or node"));
    }
    Ok(bytes)
}

/// The device properties for the container's rules (OCI order, the last match decides, as
/// the devices cgroup does): `DeviceAllow` entries **before** `DevicePolicy=strict` (systemd
/// otherwise marks every such unit `NeedDaemonReload`, runc#4568), after an empty
/// `DeviceAllow` that drops what the unit had.
///
/// systemd can only hold an allow-list of whole devices, `char-MAJOR`/`block-MAJOR` groups and
/// `char-*`/`block-*`. A rule set it cannot express exactly (an allow-by-default list, a deny
/// carved out of a broader allow, a `*:n` rule, systemd < 240) gets no device restriction from
/// systemd (`DevicePolicy=auto`, no entries): husk's own device program on the cgroup enforces
/// the exact rules either way, and systemd leaves programs it did not attach in place on a
/// reload.
pub fn devices(rules: &[LinuxDeviceCgroup], version: u32) -> Vec<Prop> {
    let open = || {
        vec![
            p("DeviceAllow", PropValue::DeviceAllow(vec![])),
            p("DevicePolicy", PropValue::Str("auto".into())),
        ]
    };
    if version < min::DEVICE_PATHS {
        return open();
    }
    match allow_list(rules) {
        Some(list) => vec![
            p("DeviceAllow", PropValue::DeviceAllow(vec![])),
            p("DeviceAllow", PropValue::DeviceAllow(list)),
            p("DevicePolicy", PropValue::Str("strict".into())),
        ],
        None => open(),
    }
}

/// One allow entry under construction: (type 'c'|'b', major, minor; None = any), access bits.
type Entry = (char, Option<i64>, Option<i64>, String);

fn overlaps(a: &Entry, t: char, major: Option<i64>, minor: Option<i64>) -> bool {
    a.0 == t
        && (a.1.is_none() || major.is_none() || a.1 == major)
        && (a.2.is_none() || minor.is_none() || a.2 == minor)
}

/// The rules as an allow-list of systemd `DeviceAllow` entries, or `None` when systemd cannot
/// express them exactly.
fn allow_list(rules: &[LinuxDeviceCgroup]) -> Option<Vec<(String, String)>> {
    let num = |n: Option<i64>| n.filter(|v| *v >= 0);
    let access = |r: &LinuxDeviceCgroup| {
        let a = r.access().clone().unwrap_or_else(|| "rwm".into());
        let mut s: String = "rwm".chars().filter(|c| a.contains(*c)).collect();
        if s.is_empty() {
            s = "rwm".into();
        }
        s
    };
    // The rules after the last one that covers every device with every access decide; with
    // no such rule everything starts denied (the v1 devices cgroup's rule, husk's program).
    let covers_all = |r: &LinuxDeviceCgroup| {
        matches!(r.typ(), None | Some(LinuxDeviceType::A))
            && num(r.major()).is_none()
            && num(r.minor()).is_none()
            && access(r) == "rwm"
    };
    let start = rules.iter().rposition(covers_all);
    if let Some(i) = start {
        if rules[i].allow() {
            return None; // allow by default: systemd has no deny entries
        }
    }
    let rest = &rules[start.map_or(0, |i| i + 1)..];
    let mut list: Vec<Entry> = Vec::new();
    for r in rest {
        let types: &[char] = match r.typ() {
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => &['c'],
            Some(LinuxDeviceType::B) => &['b'],
            Some(LinuxDeviceType::P) => continue, // fifos are not device-controlled
            None | Some(LinuxDeviceType::A) => &['c', 'b'],
        };
        let (major, minor) = (num(r.major()), num(r.minor()));
        if major.is_none() && minor.is_some() {
            return None; // "*:n" has no systemd form
        }
        let acc = access(r);
        for &t in types {
            if r.allow() {
                match list
                    .iter_mut()
                    .find(|e| e.0 == t && e.1 == major && e.2 == minor)
                {
                    Some(e) => {
                        e.3 = "rwm"
                            .chars()
                            .filter(|c| e.3.contains(*c) || acc.contains(*c))
                            .collect()
                    }
                    None => list.push((t, major, minor, acc.clone())),
                }
            } else {
                // A deny can only remove access from an entry for exactly the same devices,
                // and only when no broader entry still grants it.
                for e in list.iter_mut() {
                    if !overlaps(e, t, major, minor) {
                        continue;
                    }
                    let exact = e.1 == major && e.2 == minor;
                    let shared = e.3.chars().any(|c| acc.contains(c));
                    if !exact && shared {
                        return None;
                    }
                    if exact {
                        e.3.retain(|c| !acc.contains(c));
                    }
                }
                list.retain(|e| !e.3.is_empty());
            }
        }
    }
    Some(
        list.into_iter()
            .map(|(t, major, minor, acc)| {
                let group = if t == 'c' { "char" } else { "block" };
                let path = match (major, minor) {
                    (None, _) => format!("{group}-*"),
                    (Some(m), None) => format!("{group}-{m}"),
                    (Some(m), Some(n)) => format!("/dev/{group}/{m}:{n}"),
                };
                (path, acc)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::super::UnitSpec;
    use super::*;
    use crate::cgroups::{v2_writes, with_default_devices};
    use oci_spec::runtime::LinuxResources;
    use zbus::zvariant::Type;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    fn get<'a>(props: &'a [Prop], name: &str) -> &'a PropValue {
        &props
            .iter()
            .rfind(|p| p.name == name)
            .unwrap_or_else(|| panic!("no {name} in {props:?}"))
            .value
    }

    #[test]
    fn creation_properties_of_a_cri_scope() {
        let u = UnitSpec::parse("kubepods-pod1.slice:cri-containerd:c1", "c1").unwrap();
        let v = creation(&u, "c1", Some(42), Some("1"), 257);
        assert_eq!(
            get(&v, "Slice"),
            &PropValue::Str("kubepods-pod1.slice".into())
        );
        assert_eq!(get(&v, "Delegate"), &PropValue::Bool(true));
        assert_eq!(get(&v, "PIDs"), &PropValue::Pids(vec![42]));
        assert_eq!(get(&v, "DefaultDependencies"), &PropValue::Bool(false));
        assert_eq!(get(&v, "OOMPolicy"), &PropValue::Str("kill".into()));
        for a in [
            "MemoryAccounting",
            "CPUAccounting",
            "IOAccounting",
            "TasksAccounting",
        ] {
            assert_eq!(get(&v, a), &PropValue::Bool(true));
        }
        // systemd < 253 cannot take OOMPolicy on a scope: left out.
        let v = creation(&u, "c1", Some(42), Some("1"), 252);
        assert!(!v.iter().any(|p| p.name == "OOMPolicy"));
        // A slice unit: Wants= its parent, no PIDs, no Delegate.
        let u = UnitSpec::parse("a.slice:x:a-b.slice", "x").unwrap();
        let v = creation(&u, "x", None, None, 257);
        assert_eq!(get(&v, "Wants"), &PropValue::Strs(vec!["a.slice".into()]));
        assert!(!v
            .iter()
            .any(|p| p.name == "PIDs" || p.name == "Delegate" || p.name == "Slice"));
    }

    #[test]
    fn resources_become_properties_matching_the_writes() {
        let r = res(
            r#"{"memory":{"limit":67108864,"swap":134217728,"reservation":1024},
            "cpu":{"shares":1024,"quota":12345,"period":100000,"cpus":"0-1,10","mems":"0"},
            "pids":{"limit":10},
            "blockIO":{"weight":500},
            "unified":{"memory.high":"50000000","memory.min":"4096","memory.oom.group":"1"}}"#,
        );
        let (props, writes) = from_writes(&v2_writes(&r).unwrap(), 257).unwrap();
        assert_eq!(get(&props, "MemoryMax"), &PropValue::U64(67108864));
        assert_eq!(get(&props, "MemorySwapMax"), &PropValue::U64(67108864));
        assert_eq!(get(&props, "MemoryLow"), &PropValue::U64(1024));
        assert_eq!(get(&props, "MemoryHigh"), &PropValue::U64(50000000));
        assert_eq!(get(&props, "MemoryMin"), &PropValue::U64(4096));
        assert_eq!(get(&props, "CPUWeight"), &PropValue::U64(100));
        assert_eq!(get(&props, "TasksMax"), &PropValue::U64(10));
        assert_eq!(get(&props, "IOWeight"), &PropValue::U64(4950));
        // 12345 µs per 100 ms = 123450 µs/s, rounded up to 130000 (13 %): cpu.max follows.
        assert_eq!(get(&props, "CPUQuotaPerSecUSec"), &PropValue::U64(130_000));
        assert_eq!(get(&props, "CPUQuotaPeriodUSec"), &PropValue::U64(100_000));
        let cpu_max = writes.iter().find(|w| w.file == "cpu.max").unwrap();
        assert_eq!(cpu_max.value, "13000 100000");
        // Little-endian bitmask: CPUs 0,1 in byte 0, CPU 10 in byte 1.
        assert_eq!(
            get(&props, "AllowedCPUs"),
            &PropValue::Bytes(vec![0b11, 0b100])
        );
        assert_eq!(
            get(&props, "AllowedMemoryNodes"),
            &PropValue::Bytes(vec![1])
        );
        assert!(!props.iter().any(|p| p.name == "OOMPolicy"));
        // Everything is still written to cgroupfs.
        assert!(writes.iter().any(|w| w.file == "memory.oom.group"));
        assert_eq!(writes.len(), v2_writes(&r).unwrap().len());
    }

    #[test]
    fn unlimited_values_and_version_gates() {
        let r =
            res(r#"{"memory":{"limit":-1},"cpu":{"quota":-1,"period":50000},"pids":{"limit":-1}}"#);
        let (props, writes) = from_writes(&v2_writes(&r).unwrap(), 257).unwrap();
        assert_eq!(get(&props, "MemoryMax"), &PropValue::U64(INFINITY));
        assert_eq!(get(&props, "TasksMax"), &PropValue::U64(INFINITY));
        assert_eq!(get(&props, "CPUQuotaPerSecUSec"), &PropValue::U64(INFINITY));
        assert_eq!(get(&props, "CPUQuotaPeriodUSec"), &PropValue::U64(50_000));
        assert_eq!(
            writes.iter().find(|w| w.file == "cpu.max").unwrap().value,
            "max 50000"
        );
        // systemd 241: no period property; 243: no AllowedCPUs (still written to cgroupfs).
        let r = res(r#"{"cpu":{"quota":20000,"cpus":"1"}}"#);
        let (props, writes) = from_writes(&v2_writes(&r).unwrap(), 241).unwrap();
        assert!(!props
            .iter()
            .any(|p| p.name == "CPUQuotaPeriodUSec" || p.name == "AllowedCPUs"));
        assert_eq!(get(&props, "CPUQuotaPerSecUSec"), &PropValue::U64(200_000));
        assert!(writes.iter().any(|w| w.file == "cpuset.cpus"));
        // cpu.idle=1 is CPUWeight=0 from 252 on, and wins over a weight.
        let r = res(r#"{"cpu":{"shares":2048},"unified":{"cpu.idle":"1"}}"#);
        let (props, _) = from_writes(&v2_writes(&r).unwrap(), 257).unwrap();
        assert_eq!(get(&props, "CPUWeight"), &PropValue::U64(0));
        let (props, _) = from_writes(&v2_writes(&r).unwrap(), 251).unwrap();
        assert_eq!(get(&props, "CPUWeight"), &PropValue::U64(174));
        // A weight of 0 is never sent as CPUWeight=0 (which systemd reads as cpu.idle).
        let w0 = [crate::cgroups::w("", "cpu.weight", "0")];
        let (props, _) = from_writes(&w0, 257).unwrap();
        assert!(props.is_empty(), "{props:?}");
        // The last write of a file wins, as on cgroupfs (unified after the typed field).
        let r = res(r#"{"memory":{"limit":1000},"unified":{"memory.max":"2000"}}"#);
        let (props, _) = from_writes(&v2_writes(&r).unwrap(), 257).unwrap();
        assert_eq!(get(&props, "MemoryMax"), &PropValue::U64(2000));
        assert_eq!(props.iter().filter(|p| p.name == "MemoryMax").count(), 1);
    }

    #[test]
    fn cpu_quota_rounding() {
        assert_eq!(cpu_quota(Some(50_000), 100_000), (500_000, None));
        assert_eq!(cpu_quota(Some(1), 100_000), (10_000, Some(1000)));
        assert_eq!(cpu_quota(Some(12_345), 50_000), (250_000, Some(12_500)));
        assert_eq!(cpu_quota(None, 100_000), (INFINITY, None));
        assert_eq!(cpu_quota(Some(0), 100_000), (INFINITY, None));
    }

    #[test]
    fn bitmasks_are_little_endian() {
        assert_eq!(range_to_bits("0").unwrap(), vec![1]);
        assert_eq!(range_to_bits("7").unwrap(), vec![0x80]);
        assert_eq!(range_to_bits("8").unwrap(), vec![0, 1]);
        // runc#3611: "10-23" must be bytes 0x00 0xfc 0xff, not big-endian.
        assert_eq!(range_to_bits("10-23").unwrap(), vec![0x00, 0xfc, 0xff]);
        assert_eq!(range_to_bits(" 0-1, 4 ").unwrap(), vec![0b10011]);
        for bad in ["", "a", "3-1", "1-", "99999"] {
            assert!(range_to_bits(bad).is_err(), "{bad:?}");
        }
    }

    fn rules(json: &str) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn default_device_rules_become_an_allow_list_before_the_policy() {
        let all = with_default_devices(Some(&res(
            r#"{"devices":[{"allow":false,"access":"rwm"}]}"#,
        )));
        let v = devices(all.devices().as_ref().unwrap(), 257);
        let names: Vec<&str> = v.iter().map(|p| p.name).collect();
        assert_eq!(names, ["DeviceAllow", "DeviceAllow", "DevicePolicy"]);
        assert_eq!(v[0].value, PropValue::DeviceAllow(vec![]));
        assert_eq!(v[2].value, PropValue::Str("strict".into()));
        let PropValue::DeviceAllow(list) = &v[1].value else {
            panic!()
        };
        let has = |path: &str, acc: &str| list.iter().any(|(p, a)| p == path && a == acc);
        assert!(has("char-*", "m") && has("block-*", "m"), "{list:?}");
        assert!(
            has("/dev/char/1:3", "rwm") && has("/dev/char/10:200", "rwm"),
            "{list:?}"
        );
        assert!(has("char-136", "rwm"), "{list:?}");
        assert_eq!(list.len(), 12, "{list:?}");
    }

    #[test]
    fn device_rules_systemd_cannot_hold_leave_it_open() {
        let open = |v: &[Prop]| {
            v.iter().any(|p| p.value == PropValue::Str("auto".into()))
                && v.iter().all(|p| p.value != PropValue::Str("strict".into()))
        };
        // privileged: allow everything
        assert!(open(&devices(
            &rules(r#"[{"allow":true,"access":"rwm"}]"#),
            257
        )));
        // allow by default with a deny
        assert!(open(&devices(
            &rules(
                r#"[{"allow":true,"access":"rwm"},{"allow":false,"type":"c","major":1,"minor":3}]"#
            ),
            257
        )));
        // a deny carved out of a broader allow
        assert!(open(&devices(
            &rules(
                r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","access":"rwm"},{"allow":false,"type":"c","major":1,"minor":3,"access":"r"}]"#
            ),
            257
        )));
        // *:n
        assert!(open(&devices(
            &rules(
                r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","minor":3,"access":"r"}]"#
            ),
            257
        )));
        assert!(open(&devices(
            &rules(r#"[{"allow":false,"access":"rwm"}]"#),
            239
        )));
        // An exact deny after an exact allow is expressible.
        let v = devices(
            &rules(
                r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},{"allow":false,"type":"c","major":1,"minor":3,"access":"w"},{"allow":true,"type":"b","major":8,"access":"r"}]"#,
            ),
            257,
        );
        assert_eq!(
            v[1].value,
            PropValue::DeviceAllow(vec![
                ("/dev/char/1:3".into(), "rm".into()),
                ("block-8".into(), "r".into())
            ])
        );
        // The deny-all alone: strict with nothing allowed.
        let v = devices(&rules(r#"[{"allow":false,"access":"rwm"}]"#), 257);
        assert_eq!(v[1].value, PropValue::DeviceAllow(vec![]));
        assert_eq!(v[2].value, PropValue::Str("strict".into()));
    }

    #[test]
    fn dbus_signatures_are_systemds() {
        let sig = |v: PropValue| v.to_value().value_signature().to_string();
        assert_eq!(sig(PropValue::Bool(true)), "b");
        assert_eq!(sig(PropValue::U64(1)), "t");
        assert_eq!(sig(PropValue::Str("x".into())), "s");
        assert_eq!(sig(PropValue::Strs(vec!["a".into()])), "as");
        assert_eq!(sig(PropValue::Bytes(vec![1])), "ay");
        assert_eq!(sig(PropValue::Pids(vec![1])), "au");
        assert_eq!(sig(PropValue::DeviceAllow(vec![])), "a(ss)");
        // StartTransientUnit(ssa(sv)a(sa(sv))), SetUnitProperties(sba(sv)).
        type Props<'a> = Vec<(&'a str, Value<'a>)>;
        assert_eq!(
            <(&str, &str, Props, Vec<(&str, Props)>)>::SIGNATURE.to_string(),
            "(ssa(sv)a(sa(sv)))"
        );
        assert_eq!(<(&str, bool, Props)>::SIGNATURE.to_string(), "(sba(sv))");
    }
}
