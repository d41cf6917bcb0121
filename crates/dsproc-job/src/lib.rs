//! The job: the TOML spec (parsed with positions for errors), the ops (one file
//! each, listed once in the [`ops`] registry), lowering to one DataFusion logical
//! plan, the manifest that commits a run, and the spec reference generated from
//! the option structs' docs.

pub mod checks;
pub mod lower;
pub mod manifest;
pub mod ops;
pub mod reference;
pub mod schedule;
pub mod spec;
#[cfg(test)]
mod spec_fuzz;

pub use lower::{lower, LoweredJob};
pub use spec::{JobSpec, LoadedSpec};
