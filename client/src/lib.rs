//! attestlog: offline verification of attested builds.

pub mod nitro;
