//! The node installer's logic: registering the `husk` runtime handler in containerd's config
//! without clobbering or reordering the operator's config (toml_edit keeps formatting and
//! comments), for config version 2 (containerd 1.6/1.7) and version 3 (containerd 2.x).

pub mod kube;

use std::path::{Path, PathBuf};
use toml_edit::{DocumentMut, Item, Table};

pub const HANDLER: &str = "husk";
/// husk's own runtime type (containerd finds `containerd-shim-husk-v2` on its PATH).
pub const RUNTIME_TYPE: &str = "io.containerd.husk.v2";
/// containerd's runc runtime type, under which husk can also be registered (with
/// `runtime_path` naming husk's shim).
pub const RUNC_RUNTIME_TYPE: &str = "io.containerd.runc.v2";
/// The shim's file name.
pub const SHIM_NAME: &str = "containerd-shim-husk-v2";
/// Marks what the installer wrote, so uninstall removes exactly that.
pub const MARKER: &str = "# managed by husk-node-installer";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{0}")]
    Io(String),
}

/// The schema a containerd config uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// version = 2: containerd 1.6/1.7, CRI plugin "io.containerd.grpc.v1.cri".
    V2,
    /// version = 3: containerd 2.x, CRI runtime plugin "io.containerd.cri.v1.runtime".
    V3,
}

impl Schema {
    pub fn cri_plugin(self) -> &'static str {
        match self {
            Schema::V2 => "io.containerd.grpc.v1.cri",
            Schema::V3 => "io.containerd.cri.v1.runtime",
        }
    }
}

fn cfg_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Config {
        path: path.into(),
        message: message.into(),
    }
}

pub fn parse(path: &Path, text: &str) -> Result<DocumentMut, Error> {
    text.parse::<DocumentMut>()
        .map_err(|e| cfg_err(path, format!("not valid TOML, left untouched: {e}")))
}

/// The schema of a parsed config; an empty file counts as the `default` one.
pub fn schema(path: &Path, doc: &DocumentMut, default: Schema) -> Result<Schema, Error> {
    match doc.get("version").and_then(|v| v.as_integer()) {
        Some(2) => Ok(Schema::V2),
        Some(3) => Ok(Schema::V3),
        Some(v) => Err(cfg_err(path, format!("config version {v} is not supported; husk supports versions 2 (containerd 1.6/1.7) and 3 (containerd 2.x)"))),
        None if doc.iter().next().is_none() => Ok(default),
        None => Err(cfg_err(path, "config has no `version`: a version 1 config; migrate it with `containerd config migrate` first")),
    }
}

/// The runtimes table path for `schema`.
fn runtimes_path(schema: Schema) -> [&'static str; 4] {
    ["plugins", schema.cri_plugin(), "containerd", "runtimes"]
}

/// How the `husk` handler is registered with containerd.
///
/// containerd up to 2.2.6 and 2.3.0–2.3.3 asks only handlers of runtime type
/// `io.containerd.runc.v2` for their features (CRI `Status.runtime_handlers[].features`), so
/// kubelet refuses `hostUsers: false` pods and recursive read-only mounts on a husk handler of
/// its own type there; registered as runc's type with `runtime_path` pointing at husk's shim,
/// containerd introspects husk like runc (containerd#13504 fixed it in 2.4.0, backported to
/// 2.2.7 and 2.3.4). husk's shim accepts runc's options either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// `runtime_type = "io.containerd.runc.v2"`, `runtime_path` = the installed shim.
    RuncType { runtime_path: PathBuf },
    /// `runtime_type = "io.containerd.husk.v2"`.
    Native,
}

impl Registration {
    pub fn name(&self) -> &'static str {
        match self {
            Registration::RuncType { .. } => "runc-type",
            Registration::Native => "native",
        }
    }
    pub fn runtime_type(&self) -> &'static str {
        match self {
            Registration::RuncType { .. } => RUNC_RUNTIME_TYPE,
            Registration::Native => RUNTIME_TYPE,
        }
    }
}

/// A containerd release as `containerd --version` or a node's `containerRuntimeVersion`
/// (`containerd://2.1.4`) show it: the first `major.minor.patch` in the text.
pub fn parse_containerd_version(text: &str) -> Option<(u32, u32, u32)> {
    text.split(|c: char| c.is_whitespace() || c == '/' || c == 'v' || c == '~' || c == '+')
        .find_map(|word| {
            let mut it = word.split(|c: char| !c.is_ascii_digit());
            let nums: Vec<u32> = (0..3)
                .map_while(|_| it.next().and_then(|n| n.parse().ok()))
                .collect();
            (nums.len() == 3 && word.starts_with(|c: char| c.is_ascii_digit()))
                .then(|| (nums[0], nums[1], nums[2]))
        })
}

/// Whether containerd `version` asks handlers of every runtime type for their features
/// (containerd#13504: 2.4.0, 2.2.7 and 2.3.4 on).
pub fn introspects_every_runtime_type(version: (u32, u32, u32)) -> bool {
    match version {
        (2, 2, p) => p >= 7,
        (2, 3, p) => p >= 4,
        (maj, min, _) => (maj, min) >= (2, 4),
    }
}

/// The registration for a node whose containerd is `version` (`None`: unknown): native where
/// containerd introspects it, runc type everywhere else (every containerd from 1.6 accepts it).
pub fn registration_for(version: Option<(u32, u32, u32)>, shim: &Path) -> Registration {
    match version {
        Some(v) if introspects_every_runtime_type(v) => Registration::Native,
        _ => Registration::RuncType {
            runtime_path: shim.to_path_buf(),
        },
    }
}

/// husk's runtime table: its type, `runtime_path` for the runc type, and `SystemdCgroup` in
/// its options when the node's runc uses the systemd cgroup driver, so husk follows it.
fn runtime_table(reg: &Registration, systemd_cgroup: bool) -> Table {
    let mut t = Table::new();
    t.insert("runtime_type", toml_edit::value(reg.runtime_type()));
    if let Registration::RuncType { runtime_path } = reg {
        t.insert(
            "runtime_path",
            toml_edit::value(runtime_path.display().to_string()),
        );
    }
    if systemd_cgroup {
        let mut o = Table::new();
        o.insert("SystemdCgroup", toml_edit::value(true));
        t.insert("options", Item::Table(o));
    }
    t.decor_mut().set_prefix(format!("\n{MARKER}\n"));
    t
}

/// Whether `existing` is husk's table as `reg` and `systemd_cgroup` want it.
fn is_registered(existing: &Item, reg: &Registration, systemd_cgroup: bool) -> bool {
    let s = |k: &str| existing.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let path_ok = match reg {
        Registration::RuncType { runtime_path } => {
            s("runtime_path") == Some(runtime_path.display().to_string())
        }
        Registration::Native => s("runtime_path").is_none(),
    };
    let systemd = existing
        .get("options")
        .and_then(|o| o.get("SystemdCgroup"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    s("runtime_type").as_deref() == Some(reg.runtime_type()) && path_ok && systemd == systemd_cgroup
}

/// The cgroup driver the config asks runc to use (`SystemdCgroup` in the options of any
/// runtime but husk's own).
pub fn uses_systemd_cgroup(doc: &DocumentMut, schema: Schema) -> bool {
    let mut cur: &Item = doc.as_item();
    for k in runtimes_path(schema) {
        match cur.get(k) {
            Some(i) => cur = i,
            None => return false,
        }
    }
    cur.as_table_like()
        .map(|rts| {
            rts.iter()
                .filter(|(name, _)| *name != HANDLER)
                .any(|(_, rt)| {
                    rt.get("options")
                        .and_then(|o| o.get("SystemdCgroup"))
                        .and_then(|v| v.as_bool())
                        .unwrap_or(false)
                })
        })
        .unwrap_or(false)
}

/// Adds the husk handler registered as `reg` (following the systemd cgroup driver of the
/// config's other runtimes), or rewrites one registered otherwise. Returns true if the
/// document changed (false: already there as asked).
pub fn add_handler(doc: &mut DocumentMut, schema: Schema, reg: &Registration) -> bool {
    let systemd = uses_systemd_cgroup(doc, schema);
    if doc.get("version").is_none() {
        doc.insert(
            "version",
            toml_edit::value(if schema == Schema::V3 { 3 } else { 2 }),
        );
    }
    let mut cur = doc.as_table_mut();
    for k in runtimes_path(schema) {
        let entry = cur.entry(k).or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        cur = entry
            .as_table_mut()
            .expect("containerd config sections are tables");
    }
    if let Some(existing) = cur.get(HANDLER) {
        if is_registered(existing, reg, systemd) {
            return false;
        }
    }
    cur.insert(HANDLER, Item::Table(runtime_table(reg, systemd)));
    true
}

/// Removes the husk handler if the installer wrote it. Returns true if the document changed.
pub fn remove_handler(doc: &mut DocumentMut, schema: Schema) -> bool {
    let mut cur = doc.as_table_mut();
    for k in runtimes_path(schema) {
        match cur.get_mut(k).and_then(|i| i.as_table_mut()) {
            Some(t) => cur = t,
            None => return false,
        }
    }
    let ours = cur
        .get(HANDLER)
        .and_then(|i| i.as_table())
        .is_some_and(|t| {
            t.decor()
                .prefix()
                .and_then(|p| p.as_str())
                .is_some_and(|p| p.contains(MARKER))
        });
    ours && cur.remove(HANDLER).is_some()
}

/// A drop-in holding only the husk handler (containerd 2.x merges drop-ins per key), following
/// the systemd cgroup driver when the main config uses it.
pub fn drop_in(schema: Schema, reg: &Registration, systemd_cgroup: bool) -> String {
    let mut doc = DocumentMut::new();
    doc.insert(
        "version",
        toml_edit::value(if schema == Schema::V3 { 3 } else { 2 }),
    );
    let mut cur = doc.as_table_mut();
    for k in runtimes_path(schema) {
        let entry = cur.entry(k).or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        cur = entry.as_table_mut().expect("new tables");
    }
    cur.insert(HANDLER, Item::Table(runtime_table(reg, systemd_cgroup)));
    format!("{MARKER}\n{doc}")
}

/// Whether the drop-in text `text` registers husk as `reg` wants.
fn drop_in_registers(text: &str, schema: Schema, reg: &Registration, systemd_cgroup: bool) -> bool {
    let Ok(doc) = text.parse::<DocumentMut>() else {
        return false;
    };
    let mut cur: &Item = doc.as_item();
    for k in runtimes_path(schema) {
        match cur.get(k) {
            Some(i) => cur = i,
            None => return false,
        }
    }
    cur.get(HANDLER)
        .is_some_and(|h| is_registered(h, reg, systemd_cgroup))
}

/// Whether containerd already loads files from `dir` through its `imports`.
pub fn imports_cover(doc: &DocumentMut, file: &Path) -> bool {
    let Some(arr) = doc.get("imports").and_then(|i| i.as_array()) else {
        return false;
    };
    arr.iter().filter_map(|v| v.as_str()).any(|pat| {
        let pat = Path::new(pat);
        pat == file
            || (pat.file_name().and_then(|n| n.to_str()) == Some("*.toml")
                && pat.parent() == file.parent())
    })
}

/// The plan for one config file.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to do: the handler is registered.
    AlreadyInstalled,
    /// Write the config itself (containerd 1.x drop-ins replace whole plugin sections, so v2
    /// configs are edited in place, with a backup).
    InPlace(String),
    /// Write a drop-in file (and the config with an `imports` entry, if it needs one).
    DropIn {
        file: PathBuf,
        content: String,
        config: Option<String>,
    },
}

/// Decides how to register the handler as `reg` in `config` (whose text is `text`).
pub fn plan_install(
    config: &Path,
    text: &str,
    default: Schema,
    drop_in_dir: Option<&Path>,
    reg: &Registration,
) -> Result<(Plan, Schema), Error> {
    let mut doc = parse(config, text)?;
    let schema = schema(config, &doc, default)?;
    let mut probe = doc.clone();
    if !add_handler(&mut probe, schema, reg) {
        return Ok((Plan::AlreadyInstalled, schema));
    }
    if let (Schema::V3, Some(dir)) = (schema, drop_in_dir) {
        let file = dir.join("husk.toml");
        let systemd = uses_systemd_cgroup(&doc, schema);
        if std::fs::read_to_string(&file).is_ok_and(|t| drop_in_registers(&t, schema, reg, systemd))
            && imports_cover(&doc, &file)
        {
            return Ok((Plan::AlreadyInstalled, schema));
        }
        let config_text = if imports_cover(&doc, &file) {
            None
        } else {
            let mut arr = doc
                .get("imports")
                .and_then(|i| i.as_array())
                .cloned()
                .unwrap_or_default();
            arr.push(file.display().to_string());
            doc.insert("imports", toml_edit::value(arr));
            Some(doc.to_string())
        };
        return Ok((
            Plan::DropIn {
                file,
                content: drop_in(schema, reg, systemd),
                config: config_text,
            },
            schema,
        ));
    }
    add_handler(&mut doc, schema, reg);
    let out = doc.to_string();
    // Validate: what we write must parse and hold the handler.
    let check = parse(config, &out)?;
    let mut again = check.clone();
    if add_handler(&mut again, schema, reg) {
        return Err(cfg_err(
            config,
            "internal error: the edited config does not hold the husk handler",
        ));
    }
    Ok((Plan::InPlace(out), schema))
}

/// Writes `text` to `path` atomically (temp file + rename).
pub fn write_atomic(path: &Path, text: &[u8]) -> Result<(), Error> {
    let tmp = path.with_file_name(format!(
        ".{}.husk-tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    std::fs::write(&tmp, text).map_err(|e| Error::Io(format!("write {}: {e}", tmp.display())))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        Error::Io(format!(
            "rename {} to {}: {e}",
            tmp.display(),
            path.display()
        ))
    })
}

/// Copies the shim into `dir` under a temporary name and renames it into place, so a running
/// shim's binary is never overwritten in place ("text file busy").
pub fn install_binary(src: &Path, dir: &Path, name: &str) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Io(format!("create {}: {e}", dir.display())))?;
    let dst = dir.join(name);
    let tmp = dir.join(format!(".{name}.husk-tmp"));
    std::fs::copy(src, &tmp)
        .map_err(|e| Error::Io(format!("copy {} to {}: {e}", src.display(), tmp.display())))?;
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| Error::Io(e.to_string()))?;
    std::fs::rename(&tmp, &dst)
        .map_err(|e| Error::Io(format!("rename into {}: {e}", dst.display())))?;
    Ok(dst)
}

/// Processes of running husk shims (pods still on husk).
pub fn running_shims() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let argv0 = cmd.split(|b| *b == 0).next()?;
            argv0.ends_with(b"containerd-shim-husk-v2").then_some(pid)
        })
        .collect()
}
