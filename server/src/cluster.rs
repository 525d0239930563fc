//! The background worker of a server on a cluster backend
//! (`--storage postgres://... --objects ...`).
//!
//! - A frontend (with a signer) competes for the integrator lease every
//!   [`RENEW_AFTER`]; while it holds it, it integrates whatever any frontend
//!   sequenced, woken by `attestlog_sequenced` notifications (with a short
//!   poll as fallback), renews the lease, and copies the head's partial
//!   tiles and checkpoint to the bucket at most every
//!   [`FLUSH_EVERY`](crate::storage::postgres::FLUSH_EVERY) (and once more
//!   when it stops). While another process holds it, it only follows the
//!   published head.
//! - A reader (`--read-only`, no signer) follows the published head:
//!   [`LogStore::refresh`] on every `attestlog_integrated` notification,
//!   and at least every [`FOLLOW_POLL`].
//!
//! Failures (PostgreSQL or the object store down) are logged and retried
//! after `RETRY`; the worker never exits on its own, so the server
//! recovers by itself when the service is back. An integrator whose
//! integration fails gives the lease up and stays out of the competition
//! for [`BACKOFF`], so a process that can still reach both services takes
//! over instead of the log stalling behind one that cannot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use attestlog::tlog::note::NoteSigner;

use crate::storage::cluster::POLL;
use crate::storage::postgres::RENEW_AFTER;
use crate::storage::{Event, LogStore};

/// How often a follower refreshes without a notification.
pub const FOLLOW_POLL: Duration = Duration::from_secs(1);
/// Pause after a failed step.
const RETRY: Duration = Duration::from_millis(500);
/// How long a failed integrator leaves the lease to others.
pub const BACKOFF: Duration = Duration::from_secs(3);

/// The running worker; [`Worker::stop`] ends it and gives the lease up.
pub struct Worker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    store: Arc<LogStore>,
}

impl Worker {
    /// Starts the worker for `store` if its backend is a cluster one
    /// (`Ok(None)` otherwise). With `signer` it integrates. An error is the
    /// operating system refusing the thread: a cluster process without its
    /// worker would never integrate nor follow, so the caller stops.
    pub fn start(
        store: Arc<LogStore>,
        signer: Option<Arc<NoteSigner>>,
    ) -> std::io::Result<Option<Worker>> {
        if store.backend().cluster().is_none() {
            return Ok(None);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("attestlog-cluster".into())
            .spawn({
                let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
                move || run(&store, signer.as_deref(), &stop)
            })?;
        Ok(Some(Worker {
            stop,
            thread: Some(thread),
            store,
        }))
    }

    /// Stops the worker, flushes the bucket if this process holds the
    /// lease, and releases the lease.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(c) = self.store.backend().cluster() {
            if c.holds_lease() {
                if let Err(e) = c.flush(true) {
                    tracing::warn!(error = %e, "could not flush the bucket's head at stop");
                }
            }
            c.release_lease();
        }
    }
}

fn run(store: &LogStore, signer: Option<&NoteSigner>, stop: &AtomicBool) {
    let Some(cluster) = store.backend().cluster() else {
        return;
    };
    let mut backoff_until: Option<Instant> = None;
    // The Integrated counter at the follower's last refresh: a change means
    // it was woken by a notification.
    let mut notified = u64::MAX;
    while !stop.load(Ordering::Acquire) {
        let compete = backoff_until.is_none_or(|t| Instant::now() >= t);
        let holds = match signer {
            Some(_) if compete => cluster.lease().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "integrator lease check failed");
                false
            }),
            _ => false,
        };
        match (holds, signer) {
            (true, Some(signer)) => {
                let seen = cluster.events(Event::Sequenced);
                let before = store.tree_size();
                let behind = match store.integrate(signer) {
                    Ok(size) => {
                        if let Err(e) = cluster.flush(false) {
                            tracing::warn!(error = %e, "bucket flush failed; retrying");
                        }
                        // A step bounded by MAX_INTEGRATE or its bytes may
                        // have left known entries behind; anything sequenced
                        // since `seen` ends the wait below at once.
                        size > before && cluster.sequenced_hint() > size
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "integration failed; leaving the lease to others for a while");
                        cluster.release_lease();
                        backoff_until = Some(Instant::now() + BACKOFF);
                        std::thread::sleep(RETRY);
                        false
                    }
                };
                if !behind {
                    cluster.wait(Event::Sequenced, seen, POLL);
                }
            }
            _ => {
                let seen = cluster.events(Event::Integrated);
                let told = cluster.notified_size(notified);
                notified = seen;
                if let Err(e) = store.refresh_to(told) {
                    tracing::warn!(error = %e, "following the published head failed; retrying");
                }
                let period = if signer.is_some() {
                    RENEW_AFTER
                } else {
                    FOLLOW_POLL
                };
                cluster.wait(Event::Integrated, seen, period);
            }
        }
    }
}
