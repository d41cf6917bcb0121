//! The job: the TOML spec (parsed with positions for errors), the ops (one file
//! each, one variant of [`ops::OpSpec`]), lowering to one DataFusion logical
//! plan, and the manifest that commits a run.

pub mod lower;
pub mod manifest;
pub mod ops;
pub mod spec;

pub use lower::{lower, LoweredJob};
pub use spec::{JobSpec, LoadedSpec};
