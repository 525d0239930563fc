//! The sequencer: turns concurrent submissions into batches, and each batch
//! into one SQLite transaction and one signed checkpoint.
//!
//! A batch closes when it holds `max_entries` or when its first entry has
//! waited `max_age`, whichever comes first. Submissions that arrive while a
//! batch commits wait in the channel and form the next batch, so commits
//! pipeline without ever running two at once. A submitter hears back only
//! after its batch is durable and covered by a signed checkpoint (zero merge
//! delay).

use std::sync::Arc;
use std::time::{Duration, Instant};

use attestlog::tlog::checkpoint::Checkpoint;
use attestlog::tlog::note::NoteSigner;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::storage::{Appended, LogStore, NewEntry};

#[derive(Clone, Copy, Debug)]
pub struct BatchConfig {
    pub max_entries: usize,
    pub max_age: Duration,
}

/// Where a submitted entry landed, and the checkpoint that covers it.
#[derive(Clone, Debug)]
pub struct Sequenced {
    pub appended: Appended,
    pub tree_size: u64,
    pub checkpoint: String,
}

struct Job {
    entry: NewEntry,
    reply: oneshot::Sender<Result<Sequenced, String>>,
}

/// A handle to submit entries. Dropping every handle lets the sequencer
/// finish the batch in flight and stop.
#[derive(Clone)]
pub struct Sequencer {
    jobs: mpsc::Sender<Job>,
}

impl Sequencer {
    /// Starts the sequencer task; await the returned handle after dropping
    /// every [`Sequencer`] to wait for the last batch to commit.
    pub fn start(
        store: Arc<LogStore>,
        signer: Arc<NoteSigner>,
        config: BatchConfig,
        metrics: Arc<Metrics>,
    ) -> (Sequencer, tokio::task::JoinHandle<()>) {
        let (jobs, rx) = mpsc::channel(config.max_entries.max(1) * 64);
        let task = tokio::spawn(run(rx, store, signer, config, metrics));
        (Sequencer { jobs }, task)
    }

    /// Sequences one entry; returns once it is committed and checkpointed.
    pub async fn submit(&self, entry: NewEntry) -> Result<Sequenced, String> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { entry, reply })
            .await
            .map_err(|_| "the sequencer is shutting down".to_string())?;
        answer
            .await
            .map_err(|_| "the sequencer stopped before committing".to_string())?
    }
}

/// Signs the checkpoint body for a tree head.
pub fn sign_checkpoint(signer: &NoteSigner, size: u64, root: [u8; 32]) -> Result<String, String> {
    let body = Checkpoint {
        origin: signer.name().to_string(),
        size,
        root_hash: root,
        extensions: Vec::new(),
    }
    .to_body();
    signer.sign(&body).map_err(|e| e.to_string())
}

async fn run(
    mut rx: mpsc::Receiver<Job>,
    store: Arc<LogStore>,
    signer: Arc<NoteSigner>,
    config: BatchConfig,
    metrics: Arc<Metrics>,
) {
    while let Some(first) = rx.recv().await {
        let opened = Instant::now();
        let deadline = tokio::time::Instant::now() + config.max_age;
        let mut batch = vec![first];
        while batch.len() < config.max_entries {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(job)) => batch.push(job),
                // Closed channel or the batch's age limit: commit what we have.
                Ok(None) | Err(_) => break,
            }
        }
        let (entries, replies): (Vec<NewEntry>, Vec<_>) =
            batch.into_iter().map(|j| (j.entry, j.reply)).unzip();
        let store = Arc::clone(&store);
        let signer = Arc::clone(&signer);
        let committed = tokio::task::spawn_blocking(move || {
            store.append_batch(&entries, &|size, root| sign_checkpoint(&signer, size, root))
        })
        .await;
        let outcome = match committed {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "batch commit failed; nothing was written");
                fail_all(replies, format!("batch commit failed: {e}"));
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "batch task failed");
                fail_all(replies, "batch task failed".into());
                continue;
            }
        };
        let Some(checkpoint) = outcome.checkpoint else {
            fail_all(replies, "log has no checkpoint".into());
            continue;
        };
        metrics.batch_committed(replies.len(), opened.elapsed(), outcome.tree_size);
        tracing::debug!(
            entries = replies.len(),
            size = outcome.tree_size,
            "batch committed"
        );
        for (reply, appended) in replies.into_iter().zip(outcome.entries) {
            let _ = reply.send(Ok(Sequenced {
                appended,
                tree_size: outcome.tree_size,
                checkpoint: checkpoint.clone(),
            }));
        }
    }
}

fn fail_all(replies: Vec<oneshot::Sender<Result<Sequenced, String>>>, why: String) {
    for reply in replies {
        let _ = reply.send(Err(why.clone()));
    }
}
