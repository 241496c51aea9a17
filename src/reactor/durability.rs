//! Group commit, asynchronously: at the end of every turn the loop collects the batch the
//! store thread finished (and releases what it announces: frames, the admin API's 200s),
//! then hands it the records accumulated since, if none is in flight. One batch in flight at
//! a time, so a slow commit makes the next batch larger, never the loop slower.
//!
//! A failed batch stays in flight (its frames held, the cluster refusing new assignments and
//! operator changes) and is submitted again every [`JOURNAL_RETRY`]. Without a state directory
//! every batch is durable at once.

use super::{LoginNode, JOURNAL_RETRY};
use crate::cluster::{Handler, Now, Role};
use crate::state::{Batch, Done, StoreEvent, StoreThread};
use log::{error, info};
use std::time::{Duration, Instant};

/// How long shutdown waits for the store to finish the last batches.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// The loop's side of the store.
#[derive(Default)]
pub(super) struct Durability {
    pub(super) store: Option<StoreThread>,
    /// A batch that failed, waiting for its retry at `retry_at`.
    retry: Option<Batch>,
    pub(super) retry_at: Option<Instant>,
    error_logged_at: Option<Instant>,
    /// The buffers of the last finished batch, reused for the next.
    spare: Batch,
    /// A failover group's active member must stop by then unless its lease is renewed.
    pub(super) lease_deadline: Option<Instant>,
    /// The term batches are submitted under (a failover group's election; 0 otherwise).
    pub(super) term: u64,
    /// The store thread has ended; logged once.
    dead: bool,
}

impl Durability {
    /// The role is lost: nothing pending will be retried.
    pub(super) fn abandon_batches(&mut self) {
        self.retry = None;
        self.retry_at = None;
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
                self.admin_release_held(seq, None);
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
            self.store_thread_died();
            self.lose_role("the store thread stopped", now);
            self.admin_abandon_held("the state store stopped: nothing more can be made durable");
        }
        self.step_down_if_asked(now);
        self.check_lease(now);
        self.submit_next();
    }

    fn submit_next(&mut self) {
        if self.durability.store.is_none() {
            return;
        }
        if let Some(at) = self.durability.retry_at {
            if Instant::now() < at {
                return;
            }
            if let Some(batch) = self.durability.retry.take() {
                self.durability.retry_at = None;
                self.submit(batch);
                return;
            }
        }
        if self.cluster.batch_in_flight() || matches!(self.cluster.role(), Role::Standby { .. }) {
            return;
        }
        let mut batch = std::mem::take(&mut self.durability.spare);
        let Some(seq) = self.cluster.take_batch(&mut batch.records) else {
            self.durability.spare = batch;
            return;
        };
        batch.seq = seq;
        batch.term = self.durability.term;
        batch.audit.clear();
        batch.audit_written = false;
        self.admin_audit_lines(seq, &mut batch.audit);
        self.submit(batch);
    }

    fn submit(&mut self, batch: Batch) {
        let submitted = self
            .durability
            .store
            .as_ref()
            .is_some_and(|store| store.submit(batch));
        if !submitted {
            self.store_thread_died();
        }
    }

    fn store_event(&mut self, event: StoreEvent, now: Now) {
        match event {
            StoreEvent::Done(done) => self.batch_finished(done),
            #[cfg(feature = "etcd")]
            StoreEvent::Role(change) => self.role_changed(change, now),
        }
        #[cfg(not(feature = "etcd"))]
        let _ = now; // only role changes need the turn's clock
    }

    fn batch_finished(&mut self, done: Done) {
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
                self.io_stats.fsync_seconds.observe(elapsed.as_secs_f64());
                if self.durability.error_logged_at.take().is_some() {
                    info!("state: writes succeed again");
                }
                let seq = batch.seq;
                self.with_outbox(|cluster, io, _| cluster.batch_durable(seq, io));
                self.admin_release_held(seq, Some(&batch.audit));
                batch.records.clear();
                batch.audit.clear();
                self.durability.spare = batch;
            }
            Err(e) => {
                self.io_stats.fsync_failures += 1;
                let now = Instant::now();
                let log_now = self
                    .durability
                    .error_logged_at
                    .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60));
                if log_now {
                    let dir = self.durability.store.as_ref().map(|s| s.dir().to_owned());
                    error!(
                        "state {}: write failed: {e}; retrying every {} s",
                        dir.unwrap_or_default().display(),
                        JOURNAL_RETRY.as_secs()
                    );
                    self.durability.error_logged_at = Some(now);
                }
                self.cluster.journal_failed();
                self.durability.retry = Some(batch);
                self.durability.retry_at = Some(now + JOURNAL_RETRY);
            }
        }
    }

    fn store_thread_died(&mut self) {
        error!("state: the store thread has stopped; nothing more can be made durable");
        self.cluster.journal_failed();
        self.durability.retry_at = Some(Instant::now() + Duration::from_secs(3600));
    }

    /// At shutdown: waits for the batch in flight and writes what is still pending, so what
    /// they announce goes out with the KICKs (bounded by [`SHUTDOWN_WAIT`]).
    pub(super) fn finish_store(&mut self) {
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        self.durability.retry_at = None;
        if let Some(batch) = self.durability.retry.take() {
            if let Some(store) = &self.durability.store {
                store.submit(batch);
            }
        }
        let now = self.now();
        loop {
            self.submit_next();
            if !self.cluster.batch_in_flight() {
                self.drive_store(now); // memory-only mode: releases at once
                return;
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            let store = self.durability.store.as_ref();
            let Some(event) = store.and_then(|s| s.wait_event(wait)) else {
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

    /// When the loop must wake for a retry of a failed batch, if one waits.
    pub(super) fn store_retry_wait(&self) -> Option<Duration> {
        self.durability
            .retry_at
            .map(|at| at.saturating_duration_since(Instant::now()))
    }
}
