//! The node installer's logic: registering the `husk` runtime handler in containerd's config
//! without clobbering or reordering the operator's config (toml_edit keeps formatting and
//! comments), for config version 2 (containerd 1.6/1.7) and version 3 (containerd 2.x).

pub mod kube;

use std::path::{Path, PathBuf};
use toml_edit::{DocumentMut, Item, Table};

pub const HANDLER: &str = "husk";
pub const RUNTIME_TYPE: &str = "io.containerd.husk.v2";
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

/// The husk handler's table: its runtime type and the cgroup driver in its `options`
/// (`SystemdCgroup`, which containerd hands the shim as TOML text in
/// `runtimeoptions.v1.Options.config_body`).
fn runtime_table(driver: Driver) -> Table {
    let mut t = Table::new();
    t.insert("runtime_type", toml_edit::value(RUNTIME_TYPE));
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

/// The runc handler whose cgroup driver husk follows, and that driver: containerd's own choice
/// of the handler that decides the driver it reports to kubelet (internal/cri/server
/// `getCgroupDriver`): the default handler (`default_runtime_name`, default `runc`) when it
/// is runc-typed, else the runc-typed handlers by name. `SystemdCgroup` unset, or no runc
/// handler in the file (containerd's built-in `runc` then), is the cgroupfs driver.
pub fn runc_driver(doc: &DocumentMut, schema: Schema) -> (Option<String>, Driver) {
    let mut cur: &Item = doc.as_item();
    for k in runtimes_path(schema) {
        match cur.get(k) {
            Some(i) => cur = i,
            None => return (None, Driver::Cgroupfs),
        }
    }
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
    let is_runc = |rt: &Item| {
        rt.get("runtime_type").and_then(|v| v.as_str()) == Some("io.containerd.runc.v2")
    };
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

/// The driver the husk handler in `doc` is configured with, if it is there.
pub fn husk_driver(doc: &DocumentMut, schema: Schema) -> Option<Driver> {
    let mut cur: &Item = doc.as_item();
    for k in runtimes_path(schema) {
        cur = cur.get(k)?;
    }
    let h = cur.get(HANDLER)?;
    (h.get("runtime_type").and_then(|v| v.as_str()) == Some(RUNTIME_TYPE)).then(|| {
        match h
            .get("options")
            .and_then(|o| o.get("SystemdCgroup"))
            .and_then(|v| v.as_bool())
        {
            Some(true) => Driver::Systemd,
            _ => Driver::Cgroupfs,
        }
    })
}

/// Adds the husk handler with `driver`, or sets the driver of the one there. Returns true if
/// the document changed (false: already there with that driver).
pub fn add_handler(doc: &mut DocumentMut, schema: Schema, driver: Driver) -> bool {
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
    if let Some(existing) = cur.get_mut(HANDLER).and_then(|i| i.as_table_mut()) {
        if existing.get("runtime_type").and_then(|v| v.as_str()) == Some(RUNTIME_TYPE) {
            let want = driver == Driver::Systemd;
            let opts = existing.entry("options").or_insert_with(|| {
                let mut t = Table::new();
                t.set_implicit(false);
                Item::Table(t)
            });
            let Some(opts) = opts.as_table_like_mut() else {
                return false;
            };
            if opts.get("SystemdCgroup").and_then(|v| v.as_bool()) == Some(want) {
                return false;
            }
            opts.insert("SystemdCgroup", toml_edit::value(want));
            return true;
        }
    }
    cur.insert(HANDLER, Item::Table(runtime_table(driver)));
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
pub fn drop_in(schema: Schema, driver: Driver) -> String {
    let mut doc = DocumentMut::new();
    add_handler(&mut doc, schema, driver);
    format!("{MARKER}\n{doc}")
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

/// Decides how to register the handler in `config` (whose text is `text`), with the cgroup
/// driver the node's runc handler uses (`runc_driver`), so husk's containers land where
/// runc's do and where kubelet looks for them.
pub fn plan_install(
    config: &Path,
    text: &str,
    default: Schema,
    drop_in_dir: Option<&Path>,
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
    if !add_handler(&mut probe, schema, driver) {
        return Ok(decided(Plan::AlreadyInstalled));
    }
    if let (Schema::V3, Some(dir)) = (schema, drop_in_dir) {
        let file = dir.join("husk.toml");
        let current = std::fs::read_to_string(&file)
            .ok()
            .filter(|t| t.contains(RUNTIME_TYPE))
            .and_then(|t| t.parse::<DocumentMut>().ok())
            .and_then(|d| husk_driver(&d, schema));
        if current == Some(driver) && imports_cover(&doc, &file) {
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
            content: drop_in(schema, driver),
            config: config_text,
        }));
    }
    add_handler(&mut doc, schema, driver);
    let out = doc.to_string();
    // Validate: what we write must parse and hold the handler with that driver.
    let check = parse(config, &out)?;
    let mut again = check.clone();
    if add_handler(&mut again, schema, driver) {
        return Err(cfg_err(
            config,
            "internal error: the edited config does not hold the husk handler",
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
            argv0.ends_with(b"containerd-shim-husk-v2").then_some(pid)
        })
        .collect()
}
