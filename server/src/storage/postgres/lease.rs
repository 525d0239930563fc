//! The integrator lease and the notifications of a PostgreSQL cluster.
//!
//! # Lease
//! One row (`lease`: holder, epoch, expires_at). [`Lease::acquire`] runs
//! `UPDATE lease ... WHERE expires_at < now() OR holder = me RETURNING
//! epoch`: it takes an expired lease (the epoch goes up by one) or renews
//! its own (same epoch), with [`LEASE_TTL`] from PostgreSQL's clock. The
//! holder re-asks after [`RENEW_AFTER`] (a third of the TTL), so a live
//! holder never lets it lapse; a dead one is replaced within the TTL plus
//! the others' retry period. The epoch held is what the integrator's head
//! update is fenced by (`append.rs`): the lease is an optimisation of who
//! works, the fence is what makes a stale integrator harmless.
//!
//! # Notifications
//! A dedicated connection `LISTEN`s on `attestlog_sequenced` (a frontend
//! committed entries: the integrator has work) and `attestlog_integrated`
//! (the head moved: waiting submitters and readers refresh). Each
//! notification bumps a counter; [`Events::wait`] blocks on a condition
//! variable with a timeout, so a lost notification or a dropped listener
//! costs at most one poll period. The listener is reconnected on demand.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::storage::{Event, StorageError};

/// How long a lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(5);
/// A holder renews its lease once this old.
pub const RENEW_AFTER: Duration = Duration::from_millis(1_500);

/// While another process holds the lease, this process asks PostgreSQL for
/// it at most this often: a frontend waiting for integrations asks at every
/// wake-up, which would otherwise be one `UPDATE lease` per batch.
pub const ASK_EVERY: Duration = Duration::from_millis(250);

/// The channel the integrator notifies after moving the head.
pub const INTEGRATED_CHANNEL: &str = "attestlog_integrated";

/// This process's view of the lease.
pub struct Lease {
    /// Unique per process: host, pid and start time.
    pub holder: String,
    /// `(epoch, when the renewing statement was sent)` while held.
    held: Mutex<Option<(i64, Instant)>>,
    /// When PostgreSQL last said another process holds it.
    refused: Mutex<Option<Instant>>,
}

impl Lease {
    pub fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        Lease {
            holder: format!("{host}/{}/{nanos:x}", std::process::id()),
            held: Mutex::new(None),
            refused: Mutex::new(None),
        }
    }

    /// The epoch this process holds, if it renewed within [`RENEW_AFTER`].
    pub fn fresh(&self) -> Option<i64> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.filter(|(_, at)| at.elapsed() < RENEW_AFTER)
            .map(|(e, _)| e)
    }

    /// The epoch held, if the lease has not expired by the local clock
    /// (the fence in PostgreSQL decides; this only saves useless work).
    pub fn epoch(&self) -> Option<i64> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.filter(|(_, at)| at.elapsed() < LEASE_TTL)
            .map(|(e, _)| e)
    }

    /// Whether another process held the lease less than [`ASK_EVERY`] ago.
    pub fn recently_refused(&self) -> bool {
        let r = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        r.is_some_and(|at| at.elapsed() < ASK_EVERY)
    }

    /// Notes that PostgreSQL just refused the lease.
    pub fn refused_now(&self) {
        *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    pub fn forget(&self) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Acquires or renews the lease; `Some(epoch)` if this process holds it.
    pub async fn acquire(&self, client: &Client) -> Result<Option<i64>, StorageError> {
        let sent = Instant::now();
        let ttl = LEASE_TTL.as_secs_f64();
        let row = client
            .query_opt(
                "UPDATE lease SET \
                   epoch = CASE WHEN holder = $1 THEN epoch ELSE epoch + 1 END, \
                   holder = $1, \
                   expires_at = now() + make_interval(secs => $2) \
                 WHERE expires_at < now() OR holder = $1 \
                 RETURNING epoch",
                &[&self.holder, &ttl],
            )
            .await?;
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        *held = match row {
            Some(r) => Some((r.try_get(0)?, sent)),
            None => None,
        };
        Ok(held.map(|(e, _)| e))
    }

    /// Gives the lease up so another process can take it at once.
    pub async fn release(&self, client: &Client) -> Result<(), StorageError> {
        self.forget();
        client
            .execute(
                "UPDATE lease SET expires_at = '-infinity' WHERE holder = $1",
                &[&self.holder],
            )
            .await?;
        Ok(())
    }
}

/// Counters of the notifications received, with a condition variable, and
/// the largest size each kind of notification carried.
#[derive(Default)]
pub struct Events {
    counts: Mutex<Counts>,
    changed: Condvar,
}

#[derive(Default)]
struct Counts {
    seen: [u64; 2],
    /// The largest payload (a size, `Conn::commit_with`) per event.
    hint: [u64; 2],
}

fn slot(event: Event) -> usize {
    match event {
        Event::Sequenced => 0,
        Event::Integrated => 1,
    }
}

impl Events {
    /// Counts a notification on `channel` whose payload is `payload`
    /// (unknown channels wake everyone; a payload that is not a size is
    /// only counted).
    pub fn notified(&self, channel: &str, payload: &str) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let slots: &[usize] = match channel {
            super::sequence::SEQUENCED_CHANNEL => &[0],
            INTEGRATED_CHANNEL => &[1],
            _ => &[0, 1],
        };
        let size = payload.parse::<u64>().ok();
        for &i in slots {
            c.seen[i] += 1;
            if let Some(size) = size {
                c.hint[i] = c.hint[i].max(size);
            }
        }
        self.changed.notify_all();
    }

    /// The largest size a notification of `event` carried: a size some
    /// committed transaction reached (entries sequenced, or the published
    /// head). A lower bound that lags when notifications are missed, never
    /// more than what is committed.
    pub fn hint(&self, event: Event) -> u64 {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).hint[slot(event)]
    }

    pub fn count(&self, event: Event) -> u64 {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).seen[slot(event)]
    }

    /// Blocks until the count of `event` is not `seen`, or `timeout`.
    pub fn wait(&self, event: Event, seen: u64, timeout: Duration) {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .changed
            .wait_timeout_while(c, timeout, |c| c.seen[slot(event)] == seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::postgres::sequence::SEQUENCED_CHANNEL;

    #[test]
    fn hints_keep_the_largest_size_per_channel() {
        let e = Events::default();
        assert_eq!(e.hint(Event::Sequenced), 0);
        e.notified(SEQUENCED_CHANNEL, "17");
        e.notified(SEQUENCED_CHANNEL, "9"); // late delivery: never goes back
        e.notified(INTEGRATED_CHANNEL, "5");
        e.notified(INTEGRATED_CHANNEL, "not a size"); // counted, no hint
        e.notified(INTEGRATED_CHANNEL, "");
        assert_eq!(e.hint(Event::Sequenced), 17);
        assert_eq!(e.hint(Event::Integrated), 5);
        assert_eq!(e.count(Event::Sequenced), 2);
        assert_eq!(e.count(Event::Integrated), 3);
        // A closed listener wakes everyone without a size.
        e.notified("", "");
        assert_eq!(e.count(Event::Sequenced), 3);
        assert_eq!(e.hint(Event::Sequenced), 17);
    }
}
