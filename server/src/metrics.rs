//! Prometheus metrics, served as text at `/metrics`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

pub struct Metrics {
    registry: Registry,
    submissions: Family<Labels, Counter>,
    batch_size: Histogram,
    batch_seconds: Histogram,
    time_to_checkpoint: Histogram,
    tree_size: Gauge<u64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("attestlog");
        let submissions = Family::<Labels, Counter>::default();
        registry.register(
            "submissions",
            "Entry submissions by result (accepted, duplicate, or the refusal code)",
            submissions.clone(),
        );
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "batch_entries",
            "Entries per committed batch",
            batch_size.clone(),
        );
        let batch_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "batch_seconds",
            "Time from a batch opening to its signed checkpoint being committed",
            batch_seconds.clone(),
        );
        let time_to_checkpoint = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "time_to_checkpoint_seconds",
            "Time from a submission arriving to its answer with a signed checkpoint",
            time_to_checkpoint.clone(),
        );
        // Set when scraped (`render`): the store's published size.
        let tree_size = Gauge::<u64, AtomicU64>::default();
        registry.register("tree_size", "Entries in the log", tree_size.clone());
        Metrics {
            registry,
            submissions,
            batch_size,
            batch_seconds,
            time_to_checkpoint,
            tree_size,
        }
    }

    /// Counts a submission's outcome: "accepted", "duplicate" or an error code.
    pub fn submission(&self, result: &'static str) {
        self.submissions
            .get_or_create(&vec![("result", result)])
            .inc();
    }

    pub fn answered_with_checkpoint(&self, elapsed: Duration) {
        self.time_to_checkpoint.observe(elapsed.as_secs_f64());
    }

    pub fn batch_committed(&self, entries: usize, elapsed: Duration) {
        self.batch_size.observe(entries as f64);
        self.batch_seconds.observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition, with `tree_size` the published size
    /// now (on a cluster follower or a `--read-only` replica the log grows
    /// by another process's integrations, not by this one's batches).
    pub fn render(&self, tree_size: u64) -> String {
        self.tree_size.set(tree_size);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
