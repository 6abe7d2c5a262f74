//! containerd-shim-husk-v2 as a library: the binary (`main.rs`) is a thin layer over these
//! modules. They are public so that the fuzz targets (`fuzz/`) reach the shim's parsers —
//! the command line, `start`'s stdin, the stdio URIs and the output copy — through the same
//! API the binary uses.

pub mod args;
pub mod console;
pub mod events;
pub mod io;
pub mod lifecycle;
pub mod manager;
pub mod metrics;
pub mod mount;
pub mod oom;
pub mod options;
pub mod reaper;
pub mod residency;
pub mod service;
pub mod shim_cgroup;
