//! The verifier pool: one thread per core that runs the CPU-bound checks of
//! submissions (leaf hash, the dedup lookup, the P-384 verification of the
//! attestation, building the entry), fed by one channel.
//!
//! Not tokio's blocking pool: that grows a thread per waiting task (up to
//! 512), so 64 concurrent submissions meant dozens of threads taking turns
//! on two cores, each hand-off a futex wake-up and a thread switch. Here at
//! most one thread per core verifies; under load a thread finds the next job
//! queued and never sleeps between jobs. A job that panics loses only its
//! own answer ([`WorkerLost`]); the thread goes on.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// A job ran without an answer: it panicked, or the pool has stopped.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("the verifier thread gave no answer (a panic, or the server is stopping)")]
pub struct WorkerLost;

/// Handle to the pool; the threads stop once every clone is dropped and
/// the queue is empty.
#[derive(Clone)]
pub struct VerifierPool {
    jobs: mpsc::Sender<Job>,
}

impl VerifierPool {
    /// Starts one thread per core (`available_parallelism`, at least one).
    pub fn start() -> VerifierPool {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("attestlog-verify-{i}"))
                .spawn(move || work(&queue))
                .expect("cannot start a verifier thread");
        }
        VerifierPool { jobs }
    }

    /// Runs `job` on a verifier thread and returns its result.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, WorkerLost> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = reply.send(job());
            }))
            .map_err(|_| WorkerLost)?;
        answer.await.map_err(|_| WorkerLost)
    }
}

fn work(queue: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        // The lock is held only while taking a job, not while running it.
        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(job) = next else { return };
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!("a verifier job panicked");
        }
    }
}
