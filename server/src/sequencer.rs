//! The sequencer: turns concurrent submissions into batches, and each batch
//! into one atomic storage append and one signed checkpoint
//! ([`LogStore::append_batch`], signed with the log's key passed in).
//!
//! A batch closes when it holds `max_entries`, or when no verified
//! submission is queued behind it and either none is still being verified
//! or its first entry has waited `max_age`. The server's default `max_age`
//! is 0: the committer takes what is queued as soon as it is free, so under
//! load the submissions verified during one commit form the next batch and
//! the verifiers never stop for a commit. (Waiting for every submission in
//! verification put a closed loop of clients in lock step: all of them
//! waited for one commit while the cores idled; docs/performance.md.) A
//! lone submission is committed at once either way. Commits never run two
//! at once. A submitter hears back only after its batch is durable and
//! covered by a signed checkpoint (zero merge delay). With witnesses
//! ([`crate::witnessing`]), it also waits until the checkpoint is cosigned
//! by the quorum; if that fails, the batch stays committed and its
//! submitters get [`SequenceError::WitnessQuorum`] (or
//! [`SequenceError::Storage`] when the cosigned checkpoint could not be
//! stored).
//!
//! A batch's rows become visible to the store's readers (so a resubmission
//! finds its leaf) a moment before the store publishes the new size and
//! checkpoint. [`Sequencer::covering`] waits out that moment: it returns
//! once the published tree covers an index, so a resubmission is never
//! answered from a checkpoint that does not contain it.
//!
//! The sequencer also runs what comes before a submission is sequenced, on
//! its verifier pool ([`Sequencer::verify`], one thread per core; see
//! [`crate::pool`]), and computes each entry's inclusion proof against the new
//! tree in the same blocking task as the batch's commit
//! ([`Sequenced::inclusion_proof`]), so a submission hands off to another
//! thread once before its batch and not again after it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attestlog::tlog::note::NoteSigner;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::metrics::Metrics;
use crate::pool::{WorkerLost, WorkerPool};
use crate::storage::{Appended, Hash, LogStore, NewEntry, StorageError};
use crate::witnessing::{PublishError, Witnesses};

/// Why a submission was not sequenced and published.
#[derive(Clone, Debug)]
pub enum SequenceError {
    /// Nothing was committed, or the sequencer is stopping.
    Unavailable(String),
    /// The storage failed; answered as every storage error is
    /// (`ApiError::storage`). Entries a cluster backend sequenced before
    /// the failure stay sequenced and are integrated later.
    Storage(Arc<StorageError>),
    /// A task of the sequencer panicked (the batch may be committed).
    Internal(&'static str),
    /// The entry is committed, but its checkpoint lacks the witness quorum
    /// (the message names the witnesses that failed).
    WitnessQuorum(String),
}

impl std::fmt::Display for SequenceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SequenceError::Unavailable(m) | SequenceError::WitnessQuorum(m) => f.write_str(m),
            SequenceError::Storage(e) => e.fmt(f),
            SequenceError::Internal(m) => f.write_str(m),
        }
    }
}

/// A witness round that did not publish: the quorum missed, or the
/// cosigned checkpoint not stored (a storage error, answered as such).
impl From<PublishError> for SequenceError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::Store(e) => SequenceError::Storage(Arc::new(e)),
            PublishError::StoreTask(_) => {
                SequenceError::Internal("the task storing the cosigned checkpoint failed")
            }
            quorum => SequenceError::WitnessQuorum(quorum.to_string()),
        }
    }
}

type Reply = oneshot::Sender<Result<Sequenced, SequenceError>>;

#[derive(Clone, Copy, Debug)]
pub struct BatchConfig {
    pub max_entries: usize,
    pub max_age: Duration,
}

/// Where a submitted entry landed, and the checkpoint that covers it.
#[derive(Debug)]
pub struct Sequenced {
    pub appended: Appended,
    pub tree_size: u64,
    pub checkpoint: String,
    /// The inclusion proof of `appended.index` at `tree_size`, or why it
    /// could not be read (the entry is committed either way).
    pub inclusion_proof: Result<Vec<Hash>, StorageError>,
}

struct Job {
    entry: NewEntry,
    reply: Reply,
    /// Given up when the sequencer takes the job off the queue.
    ticket: Option<Ticket>,
}

/// Submissions on their way to the sequencer: being verified, or queued.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    none_left: Notify,
}

/// Held by a submission from the moment its body is read until the
/// sequencer takes it (or it is refused), so a batch waits for it.
pub struct Ticket {
    in_flight: Arc<InFlight>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.in_flight.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.in_flight.none_left.notify_one();
        }
    }
}

/// A handle to submit entries. Dropping every handle lets the sequencer
/// finish the batch in flight and stop.
#[derive(Clone)]
pub struct Sequencer {
    jobs: mpsc::Sender<Job>,
    in_flight: Arc<InFlight>,
    /// The store's tree size after the latest commit (published by then).
    committed: watch::Receiver<u64>,
    /// The store, whose published size also grows by other processes'
    /// integrations in cluster mode.
    store: Arc<LogStore>,
    verifiers: WorkerPool,
}

impl Sequencer {
    /// Starts the sequencer task; await the returned handle after dropping
    /// every [`Sequencer`] to wait for the last batch to commit.
    pub fn start(
        store: Arc<LogStore>,
        signer: Arc<NoteSigner>,
        config: BatchConfig,
        metrics: Arc<Metrics>,
        witnesses: Option<Arc<Witnesses>>,
    ) -> (Sequencer, tokio::task::JoinHandle<()>) {
        let (jobs, rx) = mpsc::channel(config.max_entries.max(1) * 64);
        let in_flight = Arc::new(InFlight::default());
        let (committed_tx, committed) = watch::channel(store.tree_size());
        let task = tokio::spawn(run(
            rx,
            Arc::clone(&in_flight),
            Committer {
                store: Arc::clone(&store),
                signer,
                config,
                metrics,
                witnesses,
                committed: committed_tx,
            },
        ));
        (
            Sequencer {
                jobs,
                in_flight,
                committed,
                store,
                verifiers: WorkerPool::start("verify", crate::pool::cores()),
            },
            task,
        )
    }

    /// Returns once a commit has published a tree that covers `index` (at
    /// once if one has), for an entry already found in the store: its batch
    /// is committed, but the store may not have published it yet.
    /// In cluster mode the entry may be another frontend's, integrated by
    /// another process: the store's published size (kept current by
    /// `crate::cluster`) is polled too, up to
    /// [`INTEGRATION_WAIT`](crate::storage::cluster::INTEGRATION_WAIT).
    pub async fn covering(&self, index: u64) -> Result<(), SequenceError> {
        use crate::storage::cluster::{INTEGRATION_WAIT, POLL};
        let mut committed = self.committed.clone();
        let deadline = tokio::time::Instant::now() + INTEGRATION_WAIT;
        loop {
            if *committed.borrow_and_update() > index || self.store.tree_size() > index {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SequenceError::Storage(Arc::new(
                    StorageError::IntegrationTimeout {
                        index,
                        waited: INTEGRATION_WAIT,
                    },
                )));
            }
            if let Ok(Err(_)) = tokio::time::timeout(POLL, committed.changed()).await {
                return Err(SequenceError::Unavailable(
                    "the sequencer stopped before publishing the entry".into(),
                ));
            }
        }
    }

    /// Announces a submission that will probably be submitted soon, so the
    /// open batch waits for it (up to its age limit).
    pub fn ticket(&self) -> Ticket {
        self.in_flight.count.fetch_add(1, Ordering::AcqRel);
        Ticket {
            in_flight: Arc::clone(&self.in_flight),
        }
    }

    /// Runs `job` on the verifier pool (one thread per core): the
    /// CPU-bound and blocking work of a submission before [`Self::submit`].
    pub async fn verify<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, WorkerLost> {
        self.verifiers.run(job).await
    }

    /// Sequences one entry; returns once it is committed and checkpointed
    /// (and, with witnesses, the checkpoint is cosigned by the quorum).
    pub async fn submit(
        &self,
        ticket: Ticket,
        entry: NewEntry,
    ) -> Result<Sequenced, SequenceError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                entry,
                reply,
                ticket: Some(ticket),
            })
            .await
            .map_err(|_| SequenceError::Unavailable("the sequencer is shutting down".into()))?;
        answer.await.map_err(|_| {
            SequenceError::Unavailable("the sequencer stopped before committing".into())
        })?
    }
}

/// Collects one batch after its first job: see the module doc for when it
/// closes.
async fn collect(
    first: Job,
    rx: &mut mpsc::Receiver<Job>,
    in_flight: &InFlight,
    config: BatchConfig,
) -> Vec<Job> {
    let deadline = tokio::time::Instant::now() + config.max_age;
    // Jobs taken off the queue give up their tickets, so the count left is
    // the submissions still being verified or queued.
    let take = |mut job: Job| {
        job.ticket = None;
        job
    };
    let mut batch = vec![take(first)];
    loop {
        while batch.len() < config.max_entries {
            match rx.try_recv() {
                Ok(job) => batch.push(take(job)),
                Err(_) => break,
            }
        }
        let full = batch.len() >= config.max_entries;
        if full || in_flight.count.load(Ordering::Acquire) == 0 {
            return batch;
        }
        tokio::select! {
            next = tokio::time::timeout_at(deadline, rx.recv()) => match next {
                Ok(Some(job)) => batch.push(take(job)),
                // Closed channel or the batch's age limit: commit what we have.
                Ok(None) | Err(_) => return batch,
            },
            () = in_flight.none_left.notified() => {}
        }
    }
}

/// What the sequencer task commits with.
struct Committer {
    store: Arc<LogStore>,
    signer: Arc<NoteSigner>,
    config: BatchConfig,
    metrics: Arc<Metrics>,
    witnesses: Option<Arc<Witnesses>>,
    /// Told the tree size after each commit ([`Sequencer::covering`]).
    committed: watch::Sender<u64>,
}

async fn run(mut rx: mpsc::Receiver<Job>, in_flight: Arc<InFlight>, committer: Committer) {
    let Committer {
        store,
        signer,
        config,
        metrics,
        witnesses,
        committed: published_size,
    } = committer;
    while let Some(first) = rx.recv().await {
        let opened = Instant::now();
        let batch = collect(first, &mut rx, &in_flight, config).await;
        let (entries, replies): (Vec<NewEntry>, Vec<_>) =
            batch.into_iter().map(|j| (j.entry, j.reply)).unzip();
        let st = Arc::clone(&store);
        let signer = Arc::clone(&signer);
        let committed = tokio::task::spawn_blocking(move || {
            let outcome = st.append_batch(&entries, &*signer)?;
            // Against the size the checkpoint signs (none: the batch fails below).
            let proofs = match &outcome.checkpoint {
                Some(signed) => prove(&st, &outcome.entries, signed.size),
                None => Vec::new(),
            };
            Ok::<_, StorageError>((outcome, proofs))
        })
        .await;
        let (outcome, mut proofs) = match committed {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "batch commit failed");
                fail_all(replies, SequenceError::Storage(Arc::new(e)));
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "batch task failed");
                fail_all(replies, SequenceError::Internal("batch task failed"));
                continue;
            }
        };
        let Some(signed) = outcome.checkpoint else {
            fail_all(
                replies,
                SequenceError::Unavailable("log has no checkpoint".into()),
            );
            continue;
        };
        let (mut tree_size, mut checkpoint) = (signed.size, signed.note);
        // append_batch returns after the store has published the new size.
        published_size.send_replace(outcome.tree_size);
        metrics.batch_committed(replies.len(), opened.elapsed());
        tracing::debug!(
            entries = replies.len(),
            size = outcome.tree_size,
            "batch committed"
        );
        if let Some(w) = &witnesses {
            // The batch is durable; publish it only with the quorum.
            match w.publish(&store, tree_size, &checkpoint).await {
                Ok((size, note)) if size == tree_size => checkpoint = note,
                // A larger cosigned tree was published: prove against it.
                Ok((size, note)) => {
                    (tree_size, checkpoint) = (size, note);
                    let st = Arc::clone(&store);
                    let entries = outcome.entries.clone();
                    proofs = match tokio::task::spawn_blocking(move || prove(&st, &entries, size))
                        .await
                    {
                        Ok(proofs) => proofs,
                        Err(e) => {
                            tracing::error!(error = %e, "proof task failed");
                            fail_all(replies, SequenceError::Internal("proof task failed"));
                            continue;
                        }
                    };
                }
                Err(failure) => {
                    tracing::error!(size = tree_size, error = %failure, "checkpoint not published");
                    fail_all(replies, failure.into());
                    continue;
                }
            }
        }
        for ((reply, appended), inclusion_proof) in
            replies.into_iter().zip(outcome.entries).zip(proofs)
        {
            let _ = reply.send(Ok(Sequenced {
                appended,
                tree_size,
                checkpoint: checkpoint.clone(),
                inclusion_proof,
            }));
        }
    }
}

/// Each entry's inclusion proof at `size`, read while the new tree is fresh
/// in memory.
fn prove(
    store: &LogStore,
    entries: &[Appended],
    size: u64,
) -> Vec<Result<Vec<Hash>, StorageError>> {
    entries
        .iter()
        .map(|a| store.inclusion_proof(a.index, size))
        .collect()
}

fn fail_all(replies: Vec<Reply>, error: SequenceError) {
    for reply in replies {
        let _ = reply.send(Err(error.clone()));
    }
}
