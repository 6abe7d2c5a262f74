//! The node installer's logic: registering the `husk` runtime handler in containerd's config
//! without clobbering or reordering the operator's config (toml_edit keeps formatting and
//! comments), for config version 2 (containerd 1.6/1.7) and version 3 (containerd 2.x).

pub mod kube;

use std::path::{Path, PathBuf};
use toml_edit::{DocumentMut, Item, Table, TableLike};

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
    /// `runtime_type = "io.containerd.runc.v2"`, `runtime_path` = the installed shim as
    /// containerd sees it (a host path).
    RuncType { runtime_path: PathBuf },
    /// `runtime_type = "io.containerd.husk.v2"` (containerd finds the shim on its PATH).
    Native,
}

impl Registration {
    /// The name `--registration` takes: `runc-type` or `native`.
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

/// Whether containerd `version` starts a runc-type handler's `runtime_path` for CRI pods:
/// containerd 1.6's CRI does not (containerd#8207: it runs `containerd-shim-runc-v2` from its
/// PATH whatever `runtime_path` says — seen on 1.6.20 — so a husk handler registered as runc's
/// type silently runs its pods on runc; fixed in 1.7.1), and 1.x reports no handler features
/// to kubelet either, so the runc type buys nothing on any 1.x.
pub fn runs_runtime_path(version: (u32, u32, u32)) -> bool {
    version.0 >= 2
}

/// The registration for a node whose containerd is `version` (`None`: unknown): the runc type
/// only where it is needed and works — containerd 2.x before 2.2.7 / 2.3.4, which asks only
/// runc-type handlers for their features and starts `runtime_path` — native everywhere else.
/// An unknown version is native too: pods then always run on husk, and at worst kubelet
/// refuses `hostUsers: false` pods with a clear message, where a runc-type registration on
/// containerd 1.x would run every pod on runc without a word.
pub fn registration_for(version: Option<(u32, u32, u32)>, shim: &Path) -> Registration {
    match version {
        Some(v) if runs_runtime_path(v) && !introspects_every_runtime_type(v) => {
            Registration::RuncType {
                runtime_path: shim.to_path_buf(),
            }
        }
        _ => Registration::Native,
    }
}

/// husk's handler table: the registration's runtime type (+ `runtime_path` for the runc type)
/// and the cgroup driver in its `options` (`SystemdCgroup`, which containerd hands the shim as
/// TOML text in `runtimeoptions.v1.Options.config_body` for the native type, and as runc's
/// `options.Options` for the runc type; husk's shim decodes both).
fn runtime_table(reg: &Registration, driver: Driver) -> Table {
    let mut t = Table::new();
    t.insert("runtime_type", toml_edit::value(reg.runtime_type()));
    if let Registration::RuncType { runtime_path } = reg {
        t.insert(
            "runtime_path",
            toml_edit::value(runtime_path.display().to_string()),
        );
    }
    let mut opts = Table::new();
    opts.insert("SystemdCgroup", toml_edit::value(driver == Driver::Systemd));
    t.insert("options", Item::Table(opts));
    t.decor_mut().set_prefix(format!("\n{MARKER}\n"));
    t
}

/// The cgroup driver of a runtime handler, as kubelet and containerd name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Cgroupfs,
    Systemd,
}

impl Driver {
    /// `cgroupfs` or `systemd`.
    pub fn name(self) -> &'static str {
        match self {
            Driver::Cgroupfs => "cgroupfs",
            Driver::Systemd => "systemd",
        }
    }
}

/// The runtimes table of `doc`, if it has one.
fn runtimes(doc: &DocumentMut, schema: Schema) -> Option<&Item> {
    let mut cur: &Item = doc.as_item();
    for k in runtimes_path(schema) {
        cur = cur.get(k)?;
    }
    Some(cur)
}

/// The runc handler whose cgroup driver husk follows, and that driver: containerd's own choice
/// of the handler that decides the driver it reports to kubelet (internal/cri/server
/// `getCgroupDriver`): the default handler (`default_runtime_name`, default `runc`) when it
/// is runc-typed, else the runc-typed handlers by name. `SystemdCgroup` unset, or no runc
/// handler in the file (containerd's built-in `runc` then), is the cgroupfs driver. husk's own
/// handler never counts, even registered as runc's type: its driver follows this one.
pub fn runc_driver(doc: &DocumentMut, schema: Schema) -> (Option<String>, Driver) {
    let Some(cur) = runtimes(doc, schema) else {
        return (None, Driver::Cgroupfs);
    };
    let default = doc
        .get("plugins")
        .and_then(|p| p.get(schema.cri_plugin()))
        .and_then(|c| c.get("containerd"))
        .and_then(|c| c.get("default_runtime_name"))
        .and_then(|v| v.as_str())
        .unwrap_or("runc")
        .to_string();
    let Some(rts) = cur.as_table_like() else {
        return (None, Driver::Cgroupfs);
    };
    let is_runc =
        |rt: &Item| rt.get("runtime_type").and_then(|v| v.as_str()) == Some(RUNC_RUNTIME_TYPE);
    let mut names: Vec<&str> = rts
        .iter()
        .filter(|(n, rt)| *n != HANDLER && is_runc(rt))
        .map(|(n, _)| n)
        .collect();
    names.sort();
    if let Some(i) = names.iter().position(|n| *n == default) {
        let d = names.remove(i);
        names.insert(0, d);
    }
    let Some(name) = names.first() else {
        return (None, Driver::Cgroupfs);
    };
    let systemd = rts
        .get(name)
        .and_then(|rt| rt.get("options"))
        .and_then(|o| o.get("SystemdCgroup"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    (
        Some(name.to_string()),
        if systemd {
            Driver::Systemd
        } else {
            Driver::Cgroupfs
        },
    )
}

/// The registration and driver of a husk handler table (`None`: not one husk's installer
/// would write: neither the native type without `runtime_path`, nor the runc type with one).
fn table_registration(h: &dyn TableLike) -> Option<(Registration, Driver)> {
    let s = |k: &str| h.get(k).and_then(|v| v.as_str());
    let reg = match (s("runtime_type")?, s("runtime_path")) {
        (RUNTIME_TYPE, None) => Registration::Native,
        (RUNC_RUNTIME_TYPE, Some(p)) => Registration::RuncType {
            runtime_path: p.into(),
        },
        _ => return None,
    };
    let driver = match h
        .get("options")
        .and_then(|o| o.get("SystemdCgroup"))
        .and_then(|v| v.as_bool())
    {
        Some(true) => Driver::Systemd,
        _ => Driver::Cgroupfs,
    };
    Some((reg, driver))
}

/// How the husk handler in `doc` is registered and with which driver, if it is there.
pub fn husk_registration(doc: &DocumentMut, schema: Schema) -> Option<(Registration, Driver)> {
    table_registration(runtimes(doc, schema)?.get(HANDLER)?.as_table_like()?)
}

/// The driver the husk handler in `doc` is configured with, if it is there (either
/// registration).
pub fn husk_driver(doc: &DocumentMut, schema: Schema) -> Option<Driver> {
    husk_registration(doc, schema).map(|(_, d)| d)
}

/// Whether `existing` is husk's handler table registered as `reg` with `driver`.
pub fn is_registered(existing: &Item, reg: &Registration, driver: Driver) -> bool {
    existing
        .as_table_like()
        .and_then(table_registration)
        .is_some_and(|(r, d)| r == *reg && d == driver)
}

/// Adds the husk handler registered as `reg` with `driver`, or brings the one there in step:
/// the registration's keys (`runtime_type`, `runtime_path`) and `options.SystemdCgroup` are
/// set in place, whatever else the table holds stays. Returns true if the document changed
/// (false: already registered so, with that driver).
pub fn add_handler(
    doc: &mut DocumentMut,
    schema: Schema,
    reg: &Registration,
    driver: Driver,
) -> bool {
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
    let Some(existing) = cur.get_mut(HANDLER).and_then(|i| i.as_table_mut()) else {
        cur.insert(HANDLER, Item::Table(runtime_table(reg, driver)));
        return true;
    };
    if table_registration(existing).is_some_and(|(r, d)| r == *reg && d == driver) {
        return false;
    }
    // An `options` that is no table (a hand edit) is replaced: containerd would refuse it.
    if !existing.get("options").is_some_and(|o| o.is_table_like()) {
        existing.insert("options", Item::Table(Table::new()));
    }
    existing.insert("runtime_type", toml_edit::value(reg.runtime_type()));
    match reg {
        Registration::RuncType { runtime_path } => {
            existing.insert(
                "runtime_path",
                toml_edit::value(runtime_path.display().to_string()),
            );
        }
        Registration::Native => {
            existing.remove("runtime_path");
        }
    }
    let opts = existing
        .get_mut("options")
        .and_then(|o| o.as_table_like_mut())
        .expect("options is a table");
    opts.insert("SystemdCgroup", toml_edit::value(driver == Driver::Systemd));
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

/// A drop-in holding only the husk handler (containerd 2.x merges drop-ins per key).
pub fn drop_in(schema: Schema, reg: &Registration, driver: Driver) -> String {
    let mut doc = DocumentMut::new();
    add_handler(&mut doc, schema, reg, driver);
    format!("{MARKER}\n{doc}")
}

/// Whether the drop-in text `text` registers husk as `reg` with `driver`.
pub fn drop_in_registers(text: &str, schema: Schema, reg: &Registration, driver: Driver) -> bool {
    text.parse::<DocumentMut>()
        .ok()
        .and_then(|d| husk_registration(&d, schema))
        .is_some_and(|(r, d)| r == *reg && d == driver)
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

/// What `plan_install` decided, with the cgroup driver and the runc handler it follows.
#[derive(Debug, PartialEq, Eq)]
pub struct Decision {
    pub plan: Plan,
    pub schema: Schema,
    pub driver: Driver,
    /// The runc handler the driver was read from (`None`: containerd's built-in runc).
    pub runc_handler: Option<String>,
}

/// Decides how to register the handler as `reg` in `config` (whose text is `text`), with the
/// cgroup driver the node's runc handler uses (`runc_driver`), so husk's containers land where
/// runc's do and where kubelet looks for them. A handler already registered so, with that
/// driver, is `AlreadyInstalled`; one registered otherwise (the other registration, another
/// shim path, the other driver) is rewritten.
pub fn plan_install(
    config: &Path,
    text: &str,
    default: Schema,
    drop_in_dir: Option<&Path>,
    reg: &Registration,
) -> Result<Decision, Error> {
    let mut doc = parse(config, text)?;
    let schema = schema(config, &doc, default)?;
    let (runc_handler, driver) = runc_driver(&doc, schema);
    let decided = |plan| Decision {
        plan,
        schema,
        driver,
        runc_handler: runc_handler.clone(),
    };
    let mut probe = doc.clone();
    if !add_handler(&mut probe, schema, reg, driver) {
        return Ok(decided(Plan::AlreadyInstalled));
    }
    if let (Schema::V3, Some(dir)) = (schema, drop_in_dir) {
        let file = dir.join("husk.toml");
        let current = std::fs::read_to_string(&file)
            .is_ok_and(|t| drop_in_registers(&t, schema, reg, driver));
        if current && imports_cover(&doc, &file) {
            return Ok(decided(Plan::AlreadyInstalled));
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
        return Ok(decided(Plan::DropIn {
            file,
            content: drop_in(schema, reg, driver),
            config: config_text,
        }));
    }
    add_handler(&mut doc, schema, reg, driver);
    let out = doc.to_string();
    // Validate: what we write must parse and hold the handler, registered so, with that driver.
    let check = parse(config, &out)?;
    if !husk_registration(&check, schema).is_some_and(|(r, d)| r == *reg && d == driver) {
        return Err(cfg_err(
            config,
            "internal error: the edited config does not hold the husk handler as registered",
        ));
    }
    Ok(decided(Plan::InPlace(out)))
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
            argv0.ends_with(SHIM_NAME.as_bytes()).then_some(pid)
        })
        .collect()
}
