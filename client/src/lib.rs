//! attestlog: offline verification of attested builds.

pub mod nitro;
pub mod tlog;
