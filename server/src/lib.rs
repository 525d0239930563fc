//! attestlog-server: the append-only log of attested builds.
//!
//! Every submission is verified with the `attestlog` library before it is
//! sequenced ([`http`]); the [`sequencer`] batches entries into single
//! SQLite transactions, each closed by a signed checkpoint; [`storage`]
//! keeps entries, C2SP hash tiles and every checkpoint ever signed, and
//! serves proofs from stored hashes; with witnesses configured,
//! [`witnessing`] gets each checkpoint cosigned before it is published.

pub mod cluster;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod migrate;
pub mod pool;
pub mod sequencer;
pub mod storage;
pub mod witnessing;
