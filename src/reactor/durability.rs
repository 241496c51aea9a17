//! Group commit, asynchronously: at the end of every turn the loop collects the batch the
//! store thread finished (and releases what it announces: frames, the admin API's 200s),
//! then hands it the records accumulated since, if none is in flight. One batch in flight at
//! a time, so a slow commit makes the next batch larger, never the loop slower.
//!
//! With the local database, batches of a stream are also spaced: when records arrived while
//! the previous batch was being committed, the next batch starts [`COMMIT_SPACING_MS`] after
//! the previous one did, so under a stream of changes (a burst of handshakes) one transaction
//! and one fsync cover that long instead of one loop turn. A change that finds nothing in
//! flight and nothing behind it (a quiet spell, or a client that waits for each answer before
//! its next change) is submitted at once. A failover group is not spaced
//! ([`Durability::space_commits`]).
//!
//! A failed batch stays in flight (its frames held, the cluster refusing new assignments and
//! operator changes) and is submitted again every [`JOURNAL_RETRY`]. Without a state directory
//! every batch is durable at once.

use super::deadline::{self, Deadline};
use super::{LoginNode, JOURNAL_RETRY};
use crate::cluster::{Cluster, Handler, Now, Role};
use crate::state::{Batch, Done, StoreEvent, StoreThread};
use crate::timer::TimerId;
use log::{error, info};
use std::time::{Duration, Instant};

/// How long shutdown waits for the store to finish the last batches.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// The least time between the starts of two batches of a stream. 20 ms: a burst of 19,000
/// handshakes then takes ~50 commits, not ~190, and the store thread's CPU halves
/// (docs/PERFORMANCE.md, "A fourth pass"); a change of a stream waits at most this long more
/// for its commit to start (up to 10 ms past it when nothing else wakes the loop: the timer
/// wheel's tick). Changes that come slower than commits (each durable before the next
/// arrives) are not a stream: each is committed on its own, at once.
pub const COMMIT_SPACING_MS: u64 = 20;

/// When the next batch may start.
#[derive(Debug, Default)]
pub(super) struct CommitPacer {
    /// 0: batches are not spaced.
    spacing_ms: u64,
    last_start_ms: Option<u64>,
    /// Records arrived while the last batch was in flight: changes are coming as a stream.
    stream: bool,
}

impl CommitPacer {
    /// `None` when a batch may start now, otherwise the instant (monotonic ms) it may.
    pub(super) fn wait_until(&self, now_ms: u64) -> Option<u64> {
        if !self.stream || self.spacing_ms == 0 {
            return None;
        }
        let at = self.last_start_ms? + self.spacing_ms;
        (now_ms < at).then_some(at)
    }

    /// A batch started now.
    pub(super) fn started(&mut self, now_ms: u64) {
        self.last_start_ms = Some(now_ms);
        self.stream = false;
    }

    /// The batch in flight finished; `behind` says whether records arrived meanwhile.
    pub(super) fn finished(&mut self, behind: bool) {
        self.stream = behind;
    }
}

/// The loop's side of the store.
#[derive(Default)]
pub(super) struct Durability {
    pub(super) store: Option<StoreThread>,
    /// A batch that failed, waiting for its retry (`retry_timer`).
    retry: Option<Batch>,
    /// Set while submitting waits: the retry of a failed batch (or, once the store thread
    /// died, an hour's pause).
    pub(super) retry_timer: Option<TimerId>,
    /// When (monotonic ms) a write failure was last logged.
    error_logged_at: Option<u64>,
    /// The buffers of the last finished batch, reused for the next.
    spare: Batch,
    /// A failover group's active member must stop by then (monotonic ms) unless its lease
    /// is renewed; `lease_timer` wakes the loop for it.
    pub(super) lease_deadline: Option<u64>,
    pub(super) lease_timer: Option<TimerId>,
    /// The term batches are submitted under (a failover group's election; 0 otherwise).
    pub(super) term: u64,
    /// The store thread has ended; logged once.
    dead: bool,
    /// Spaces the batches; `pace_timer` wakes the loop when the next one may start.
    pacer: CommitPacer,
    pub(super) pace_timer: Option<TimerId>,
}

impl Durability {
    /// Spaces the batches of a stream by [`COMMIT_SPACING_MS`]: for the local database, where
    /// a larger batch is fewer transactions and fsyncs. A failover group's transactions are
    /// capped at `--etcd-max-txn-ops` keys, so there larger batches are not fewer
    /// transactions and the wait only lowered the group's handshake rate (0.65-0.71x the
    /// local one with it, 0.84-0.99x without; docs/PERFORMANCE.md).
    pub(super) fn space_commits(&mut self) {
        self.pacer.spacing_ms = COMMIT_SPACING_MS;
    }

    /// The role is lost: nothing pending will be retried.
    pub(super) fn abandon_batches(&mut self, cluster: &mut Cluster) {
        self.retry = None;
        deadline::disarm(cluster, &mut self.retry_timer);
        // Whatever is still in flight belongs to the term that ended.
        self.term = u64::MAX;
    }
}

impl<H: Handler> LoginNode<H> {
    /// Collects what the store reported (finished batches, role changes), then submits the
    /// next batch (end of every turn).
    pub(super) fn drive_store(&mut self, now: Now) {
        let Some(store) = &self.durability.store else {
            // Memory only: durable at once.
            let mut buf = std::mem::take(&mut self.durability.spare.records);
            if let Some(seq) = self.cluster.take_batch(&mut buf) {
                self.with_outbox(|cluster, io, _| cluster.batch_durable(seq, io));
                self.admin_release_held(seq, None, now);
            }
            buf.clear();
            self.durability.spare.records = buf;
            return;
        };
        let mut events = Vec::new();
        while let Some(event) = store.try_event() {
            events.push(event);
        }
        for event in events {
            self.store_event(event, now);
        }
        if !self.durability.dead && self.durability.store.as_ref().is_some_and(|s| !s.alive()) {
            self.durability.dead = true;
            self.store_thread_died(now);
            self.lose_role("the store thread stopped", now);
            self.admin_abandon_held("the state store stopped: nothing more can be made durable");
        }
        self.step_down_if_asked(now);
        self.check_lease(now);
        self.submit_next(now);
    }

    fn submit_next(&mut self, now: Now) {
        if self.durability.store.is_none() || self.durability.retry_timer.is_some() {
            return;
        }
        if let Some(batch) = self.durability.retry.take() {
            self.submit(batch, now);
            return;
        }
        if self.cluster.batch_in_flight() || matches!(self.cluster.role(), Role::Standby { .. }) {
            return;
        }
        if self.cluster.pending_journal().is_empty() {
            return;
        }
        if let Some(at) = self.durability.pacer.wait_until(now.mono_ms) {
            if self.durability.pace_timer.is_none() {
                self.io_stats.batches_spaced += 1;
                let timer = &mut self.durability.pace_timer;
                deadline::arm(&mut self.cluster, timer, at, Deadline::CommitPace);
            }
            return;
        }
        let mut batch = std::mem::take(&mut self.durability.spare);
        let Some(seq) = self.cluster.take_batch(&mut batch.records) else {
            self.durability.spare = batch;
            return;
        };
        self.durability.pacer.started(now.mono_ms);
        batch.seq = seq;
        batch.term = self.durability.term;
        batch.audit.clear();
        batch.audit_written = false;
        batch.txns_written = 0;
        self.admin_audit_lines(seq, &mut batch.audit, now);
        self.submit(batch, now);
    }

    fn submit(&mut self, batch: Batch, now: Now) {
        let submitted = self
            .durability
            .store
            .as_ref()
            .is_some_and(|store| store.submit(batch));
        if !submitted {
            self.store_thread_died(now);
        }
    }

    fn store_event(&mut self, event: StoreEvent, now: Now) {
        match event {
            StoreEvent::Done(done) => self.batch_finished(done, now),
            #[cfg(feature = "etcd")]
            StoreEvent::Role(change) => self.role_changed(change, now),
        }
    }

    fn batch_finished(&mut self, done: Done, now: Now) {
        let Done {
            mut batch,
            result,
            elapsed,
            txns,
        } = done;
        for t in &txns {
            self.io_stats.txn_seconds.observe(t.elapsed.as_secs_f64());
            self.io_stats.txn_ops.observe(t.ops as f64);
        }
        if batch.term != self.durability.term {
            // Of a term that ended (the role was lost meanwhile): its frames are gone, and it
            // is never retried.
            return;
        }
        match result {
            Ok(()) => {
                self.io_stats.fsyncs += 1;
                let behind = !self.cluster.pending_journal().is_empty();
                self.durability.pacer.finished(behind);
                self.io_stats.fsync_seconds.observe(elapsed.as_secs_f64());
                if self.durability.error_logged_at.take().is_some() {
                    info!("state: writes succeed again");
                }
                let seq = batch.seq;
                self.with_outbox(|cluster, io, _| cluster.batch_durable(seq, io));
                self.admin_release_held(seq, Some(&batch.audit), now);
                batch.records.clear();
                batch.audit.clear();
                self.durability.spare = batch;
            }
            Err(e) => {
                self.io_stats.fsync_failures += 1;
                let log_now = self
                    .durability
                    .error_logged_at
                    .is_none_or(|at| now.mono_ms.saturating_sub(at) >= 60_000);
                if log_now {
                    let dir = self.durability.store.as_ref().map(|s| s.dir().to_owned());
                    error!(
                        "state {}: write failed: {e}; retrying every {} s",
                        dir.unwrap_or_default().display(),
                        JOURNAL_RETRY.as_secs()
                    );
                    self.durability.error_logged_at = Some(now.mono_ms);
                }
                self.cluster.journal_failed();
                self.durability.retry = Some(batch);
                self.wait_before_submitting(now.mono_ms + JOURNAL_RETRY.as_millis() as u64);
            }
        }
    }

    fn store_thread_died(&mut self, now: Now) {
        error!("state: the store thread has stopped; nothing more can be made durable");
        self.cluster.journal_failed();
        self.wait_before_submitting(now.mono_ms + 3_600_000);
    }

    /// Nothing is submitted before `at_ms` (the deadline's timer wakes the loop then).
    fn wait_before_submitting(&mut self, at_ms: u64) {
        let timer = &mut self.durability.retry_timer;
        deadline::arm(&mut self.cluster, timer, at_ms, Deadline::JournalRetry);
    }

    /// At shutdown: waits for the batch in flight and writes what is still pending, so what
    /// they announce goes out with the KICKs (bounded by [`SHUTDOWN_WAIT`]).
    pub(super) fn finish_store(&mut self) {
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        deadline::disarm(&mut self.cluster, &mut self.durability.retry_timer);
        // What is pending is written without waiting for the spacing.
        deadline::disarm(&mut self.cluster, &mut self.durability.pace_timer);
        self.durability.pacer.spacing_ms = 0;
        if let Some(batch) = self.durability.retry.take() {
            if let Some(store) = &self.durability.store {
                store.submit(batch);
            }
        }
        loop {
            // Past the loop: each wait for the store is a turn of its own.
            let now = self.now();
            self.submit_next(now);
            if !self.cluster.batch_in_flight() {
                self.drive_store(now); // memory-only mode: releases at once
                return;
            }
            // An active group member waits no longer than its lease: past it the role is
            // another's, so the KICK 6 of the hand-over goes out then, not after SHUTDOWN_WAIT.
            self.check_lease(now);
            if matches!(self.cluster.role(), Role::Standby { .. }) {
                return; // the role is lost: nothing held is sent
            }
            let mut wait = deadline.saturating_duration_since(Instant::now());
            if let Some(lease) = self.durability.lease_deadline {
                wait = wait.min(Duration::from_millis(lease.saturating_sub(now.mono_ms)));
            }
            let store = self.durability.store.as_ref();
            let Some(event) = store.and_then(|s| s.wait_event(wait)) else {
                if store.is_some() && Instant::now() < deadline {
                    continue; // the lease deadline came first (checked above)
                }
                error!("state: the last batch did not finish within {SHUTDOWN_WAIT:?}");
                return;
            };
            let failed = matches!(&event, StoreEvent::Done(d) if d.result.is_err());
            self.store_event(event, now);
            if failed || matches!(self.cluster.role(), Role::Standby { .. }) {
                return; // logged; what it announces is not sent
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spaced() -> CommitPacer {
        CommitPacer {
            spacing_ms: COMMIT_SPACING_MS,
            ..CommitPacer::default()
        }
    }

    #[test]
    fn without_a_spacing_a_stream_is_not_held_back() {
        let mut pacer = CommitPacer::default();
        pacer.started(5);
        pacer.finished(true);
        assert_eq!(pacer.wait_until(6), None);
    }

    #[test]
    fn a_batch_starts_at_once_unless_records_came_while_the_last_was_in_flight() {
        let mut pacer = spaced();
        assert_eq!(
            pacer.wait_until(5),
            None,
            "the first batch waits for nothing"
        );
        pacer.started(5);
        // A client waiting for each answer: nothing arrived during the commit.
        pacer.finished(false);
        assert_eq!(pacer.wait_until(7), None);
        pacer.started(7);
        // A stream: records arrived while the batch was in flight.
        pacer.finished(true);
        assert_eq!(pacer.wait_until(9), Some(7 + COMMIT_SPACING_MS));
        assert_eq!(
            pacer.wait_until(6 + COMMIT_SPACING_MS),
            Some(7 + COMMIT_SPACING_MS)
        );
        assert_eq!(pacer.wait_until(7 + COMMIT_SPACING_MS), None);
        pacer.started(7 + COMMIT_SPACING_MS);
        pacer.finished(true);
        // A commit slower than the spacing: the next batch goes when it finishes.
        assert_eq!(pacer.wait_until(8 + COMMIT_SPACING_MS * 2), None);
    }
}
