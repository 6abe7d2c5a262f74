//! Typed errors of the runtime core. Every syscall failure carries what was being done and on
//! which path or field, so a user sees one clear message.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "invalid container id {0:?}: use letters, digits, '_', '-', '.' and '+' (at most 1024)"
    )]
    InvalidId(String),
    #[error("container {0:?} already exists")]
    AlreadyExists(String),
    #[error("container {0:?} does not exist")]
    NotFound(String),
    /// A verb the container's state does not allow (`lifecycle`'s table, runc's words).
    #[error(transparent)]
    IllegalState(#[from] crate::lifecycle::IllegalTransition),
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    /// A bad command-line argument (not the bundle's fault).
    #[error("{0}")]
    Usage(String),
    #[error("config.json: {field}: {message}")]
    Spec { field: String, message: String },
    #[error("{feature} is not supported by this kernel: {reason}")]
    Unsupported { feature: String, reason: String },
    #[error("{context}: {source}")]
    Sys {
        context: String,
        #[source]
        source: nix::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cgroup {path}: {message}")]
    Cgroup { path: String, message: String },
    /// The systemd cgroup driver: D-Bus unreachable, a unit refused or its job failed.
    #[error("systemd: {0}")]
    Systemd(String),
    #[error("seccomp: {0}")]
    Seccomp(String),
    #[error("hook {path}: {message}")]
    Hook { path: PathBuf, message: String },
    #[error("container init failed: {0}")]
    Init(String),
}

impl Error {
    pub fn spec(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Spec {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Attaches a human context to nix and io results: `mount(...).ctx(|| format!("mount {dst}"))`.
pub trait Context<T> {
    fn ctx<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, nix::Error> {
    fn ctx<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|source| Error::Sys {
            context: f().into(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn ctx<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: f().into(),
            source,
        })
    }
}
