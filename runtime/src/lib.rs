//! husk's native OCI runtime core: namespaces, cgroups (v1 and v2), mounts and pivot_root,
//! capabilities, seccomp and the container lifecycle — no runc anywhere. The `husk` CLI and
//! the containerd shim are thin layers over [`Runtime`] and [`Container`].
//!
//! Any binary that embeds this crate must call [`run_helper_if_requested`] first thing in
//! `main`: containers are set up by a re-exec of the binary in helper mode.

pub mod cgroups;
pub mod channel;
pub mod container;
pub mod error;
pub mod features;
pub mod fork;
pub mod fsmount;
pub mod hooks;
pub mod idmap;
pub mod inroot;
pub mod lifecycle;
pub mod mountopts;
pub mod namespaces;
pub mod process;
pub mod procfs;
pub mod rootfs;
pub mod seccomp;
pub mod security;
pub mod selfexe;
pub mod signal;
pub mod spec;
pub mod state;
pub mod tty;

pub use container::{Container, CreateOptions, ExecOptions, Runtime, StdioFds};
pub use error::{Error, Result};
pub use process::run_helper_if_requested;
pub use signal::Signal;
pub use state::{OciState, Status};

/// The OCI runtime spec version husk implements.
pub const OCI_VERSION: &str = "1.2.0";
