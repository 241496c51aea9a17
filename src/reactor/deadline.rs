//! The reactor's own deadlines, on the cluster's timer wheel like every other deadline (so the
//! poll timeout is the wheel's next wake-up, nothing merged by hand): an HTTP connection's
//! request or idle deadline, the pause in accepting after the process ran out of descriptors,
//! the retry of a failed journal write, the spacing of journal batches, and a failover
//! member's lease. The wheel hands the reactor back a `usize` key; [`Deadline`] says what each
//! key stands for.

use super::LoginNode;
use crate::cluster::{Cluster, Handler, Now};
use crate::timer::TimerId;

/// What one of the reactor's timers is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Deadline {
    /// The request or idle deadline of the HTTP connection with this slab key.
    Http(usize),
    /// Accepting may be tried again after running out of file descriptors.
    AcceptRetry,
    /// A failed journal batch is submitted again.
    JournalRetry,
    /// The next journal batch may start (batches are spaced).
    CommitPace,
    /// A failover group's active member must have renewed its lease by now.
    Lease,
}

/// The keys at the top of the range name the loop's single deadlines; HTTP connection keys
/// (slab keys, at most a few thousand) stay far below them.
const ACCEPT_RETRY_KEY: usize = usize::MAX;
const JOURNAL_RETRY_KEY: usize = usize::MAX - 1;
const LEASE_KEY: usize = usize::MAX - 2;
const COMMIT_PACE_KEY: usize = usize::MAX - 3;

impl Deadline {
    /// The key the wheel carries for this deadline.
    pub(super) fn key(self) -> usize {
        match self {
            Deadline::Http(key) => key,
            Deadline::AcceptRetry => ACCEPT_RETRY_KEY,
            Deadline::JournalRetry => JOURNAL_RETRY_KEY,
            Deadline::Lease => LEASE_KEY,
            Deadline::CommitPace => COMMIT_PACE_KEY,
        }
    }

    /// The deadline a fired key stands for.
    fn of_key(key: usize) -> Self {
        match key {
            ACCEPT_RETRY_KEY => Deadline::AcceptRetry,
            JOURNAL_RETRY_KEY => Deadline::JournalRetry,
            LEASE_KEY => Deadline::Lease,
            COMMIT_PACE_KEY => Deadline::CommitPace,
            key => Deadline::Http(key),
        }
    }
}

/// Sets the deadline `what` at `at_ms`: the timer in `timer` moves if it is still scheduled,
/// otherwise a new one is scheduled (so one deadline never has two timers).
pub(super) fn arm(cluster: &mut Cluster, timer: &mut Option<TimerId>, at_ms: u64, what: Deadline) {
    if let Some(id) = *timer {
        if cluster.move_timer(id, at_ms) {
            return;
        }
    }
    *timer = Some(cluster.set_timer(at_ms, what.key()));
}

/// Clears the deadline in `timer`, if one is set.
pub(super) fn disarm(cluster: &mut Cluster, timer: &mut Option<TimerId>) {
    if let Some(id) = timer.take() {
        cluster.cancel_timer(id);
    }
}

impl<H: Handler> LoginNode<H> {
    /// Handles the reactor's deadlines that passed this turn (after the cluster's own timers).
    pub(super) fn deadlines_passed(&mut self, now: Now) {
        self.cluster.take_fired_timers(&mut self.fired_deadlines);
        let mut fired = std::mem::take(&mut self.fired_deadlines);
        for &key in &fired {
            match Deadline::of_key(key) {
                Deadline::Http(key) => self.http_deadline_passed(key, now),
                Deadline::AcceptRetry => {
                    self.accept_retry = None;
                    self.accept_ready(now);
                }
                // The batch waiting for it is submitted by this turn's `drive_store`.
                Deadline::JournalRetry => self.durability.retry_timer = None,
                // Likewise the batch that waited for the spacing.
                Deadline::CommitPace => self.durability.pace_timer = None,
                Deadline::Lease => {
                    self.durability.lease_timer = None;
                    self.check_lease(now);
                }
            }
        }
        // The list keeps its capacity for the next turn.
        fired.clear();
        self.fired_deadlines = fired;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_deadline_comes_back_from_its_key() {
        for d in [
            Deadline::Http(0),
            Deadline::Http(1_151),
            Deadline::AcceptRetry,
            Deadline::JournalRetry,
            Deadline::Lease,
            Deadline::CommitPace,
        ] {
            assert_eq!(Deadline::of_key(d.key()), d);
        }
    }
}
