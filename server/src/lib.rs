//! attestlog-server library: the log server's building blocks.
//!
//! Only the storage layer exists so far; see [`storage`].

pub mod storage;
