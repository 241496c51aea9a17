//! The batch bookkeeping between the cluster and the store: records accumulate, one batch at
//! a time is handed over ([`Cluster::take_batch`]), and its durability
//! ([`Cluster::batch_durable`]) or failure ([`Cluster::journal_failed`]) decides what is sent
//! and whether new assignments are made.

use super::announce::HeldAnnouncements;
use super::{Cluster, Outbox};
use log::{error, info};

impl Cluster {
    /// Records of the batch being accumulated (not yet handed to the store).
    pub fn pending_journal(&self) -> &[u8] {
        &self.journal
    }

    /// False while the store cannot be written: no new assignments, operator changes refused.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The sequence number the accumulating batch will have: a change made now is durable
    /// once [`Self::batch_durable`] has been called with this number (or a later one).
    pub fn pending_seq(&self) -> u64 {
        self.next_seq
    }

    /// Every batch up to this sequence number is durable.
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// True while a batch is with the store.
    pub fn batch_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Hands the accumulated records to the store: swaps them into `into` (which should be
    /// empty; its buffer is reused) and returns the batch's sequence number. `None` while a
    /// batch is in flight (one at a time: the next turns accumulate the following batch) or
    /// when nothing is pending.
    pub fn take_batch(&mut self, into: &mut Vec<u8>) -> Option<u64> {
        if self.in_flight.is_some() || self.journal.is_empty() {
            return None;
        }
        into.clear();
        std::mem::swap(&mut self.journal, into);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight = Some((seq, std::mem::take(&mut self.owed)));
        Some(seq)
    }

    /// The batch `seq` is durable: send what it announces (and what waited behind it without
    /// records of its own).
    pub fn batch_durable(&mut self, seq: u64, out: &mut dyn Outbox) {
        let Some((in_flight, mut owed)) = self.in_flight.take() else {
            return;
        };
        if in_flight != seq {
            // Not the batch in flight (one of a state since forgotten): release nothing.
            self.in_flight = Some((in_flight, owed));
            return;
        }
        self.durable_seq = seq;
        self.send_owed(&mut owed, out);
        if self.journal.is_empty() {
            // Frames held only to keep their order behind the batch: nothing else to wait for.
            let mut behind = std::mem::take(&mut self.owed);
            self.send_owed(&mut behind, out);
        }
        if self.owed.is_empty() {
            owed.clear();
            self.owed = owed; // keep the buffers for the next batch
        }
        if !self.writable {
            info!("state is writable again: assigning waiting game nodes");
            self.writable = true;
            // New assignments for the waiting: their records join the accumulating batch.
            self.alloc.set_allow_new(true);
            self.announce(out);
        }
    }

    /// The pending records are durable (for callers that write synchronously, and tests): the
    /// batch in flight, then the accumulated one.
    pub fn journal_synced(&mut self, out: &mut dyn Outbox) {
        if let Some((seq, _)) = self.in_flight {
            self.batch_durable(seq, out);
        }
        let mut buf = Vec::new();
        if let Some(seq) = self.take_batch(&mut buf) {
            self.batch_durable(seq, out);
        }
    }

    /// Writing the batch in flight failed: it stays in flight (the caller retries it) with
    /// what it announces, and no new assignments are made until a write succeeds.
    pub fn journal_failed(&mut self) {
        if self.writable {
            error!("state is not writable: new assignments and operator changes are refused until a write succeeds");
            self.writable = false;
            self.alloc.set_allow_new(false);
        }
    }

    /// Bytes held for durability (frames and deltas of both batches), for metrics and tests.
    pub fn held_bytes(&self) -> usize {
        let of = |o: &HeldAnnouncements| o.frames.len() + o.deltas.len() + o.welcome.len() * 8;
        of(&self.owed) + self.in_flight.as_ref().map_or(0, |(_, o)| of(o))
    }
}
