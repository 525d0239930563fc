//! attestlog: offline verification of attested builds.
