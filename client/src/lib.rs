//! attestlog: offline verification of attested builds.

pub mod tlog;
