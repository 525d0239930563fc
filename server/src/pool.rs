//! [`WorkerPool`]: a fixed set of threads fed by one queue, for blocking or
//! CPU-bound work that async handlers hand off. The server runs two: the
//! verifier pool (the checks of submissions, one thread per core) and, on
//! SQLite, the read pool (the reads that miss the in-memory caches).
//!
//! Not tokio's blocking pool: that grows a thread per waiting task (up to
//! 512), so 64 concurrent requests meant dozens of threads taking turns on
//! two cores, each hand-off a futex wake-up and a thread switch, and each
//! thread's malloc arena keeping its own high-water mark. Here at most
//! `threads` run; under load a thread finds the next job queued and never
//! sleeps between jobs. That suits work bounded by the CPU or the page
//! cache (verification, SQLite reads), not waits on a network: a backend
//! that reads over the network keeps tokio's pool (`AppState::reads`).
//!
//! A job that panics loses only its own answer ([`WorkerLost`]); the thread
//! goes on. The threads stop once every handle is dropped and the queue is
//! empty.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// A job ran without an answer: it panicked, or the pool has stopped.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("the {0} thread gave no answer (a panic, or the server is stopping)")]
pub struct WorkerLost(pub &'static str);

/// Handle to the pool.
#[derive(Clone)]
pub struct WorkerPool {
    name: &'static str,
    jobs: mpsc::Sender<Job>,
}

/// The number of cores (`available_parallelism`, at least one): the
/// threads a pool of one thread per core starts.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl WorkerPool {
    /// Starts `threads` (at least one) threads named `attestlog-{name}-{i}`.
    pub fn start(name: &'static str, threads: usize) -> WorkerPool {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("attestlog-{name}-{i}"))
                .spawn(move || work(name, &queue))
                .expect("cannot start a worker thread");
        }
        WorkerPool { name, jobs }
    }

    /// Runs `job` on one of the pool's threads and returns its result.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, WorkerLost> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = reply.send(job());
            }))
            .map_err(|_| WorkerLost(self.name))?;
        answer.await.map_err(|_| WorkerLost(self.name))
    }
}

fn work(name: &str, queue: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        // The lock is held only while taking a job, not while running it.
        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(job) = next else { return };
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!(pool = name, "a worker job panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_survives_a_panic() {
        let pool = WorkerPool::start("test", 2);
        assert_eq!(pool.run(|| 6 * 7).await.unwrap(), 42);
        let lost = pool.run(|| -> u8 { panic!("job panics") }).await;
        assert_eq!(
            lost.unwrap_err().to_string(),
            "the test thread gave no answer (a panic, or the server is stopping)"
        );
        // Both threads still run jobs after the panic.
        let answers = futures_util::future::join_all((0..8).map(|i| pool.run(move || i * 2))).await;
        let answers: Vec<i32> = answers.into_iter().map(Result::unwrap).collect();
        assert_eq!(answers, (0..8).map(|i| i * 2).collect::<Vec<_>>());
    }
}
