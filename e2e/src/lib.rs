//! The husk test bed: a private containerd (own socket, root and state directories, the husk
//! runtime configured next to runc) and offline OCI images. It only talks to containerd
//! through public interfaces (ctr here; CRI gRPC in the CRI suite).

pub mod bed;
pub mod cri;
pub mod env;
pub mod images;
pub mod node;
pub mod probe;
pub mod profile;
pub mod shim_api;
pub mod soak;
pub mod stream;
pub mod suite;

pub use bed::TestBed;
