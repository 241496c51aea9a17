//! A failover group's store thread (contract §6): the state lives in etcd under a prefix, one
//! member of the group is active, the others stand by.
//!
//! Election: a lease of `lease_ttl` seconds, then a transaction that creates `<prefix>/leader`
//! = member name attached to it only if the key does not exist. The winner loads the whole
//! state at the key's create revision (paged reads, one consistent picture) and reports
//! [`RoleChange::Active`]; a loser reports [`RoleChange::Standby`], revokes its lease (no
//! zombie candidates) and polls the key until it is gone, then campaigns again.
//!
//! Fencing: every data transaction compares the leader key's create revision with ours, so a
//! member that lost its lease (expired while it was paused, or revoked) can write nothing: a
//! failed compare is [`RoleChange::Lost`], never retried. The thread renews the lease every
//! quarter of its TTL and reports each success ([`RoleChange::Renewed`], with the instant the
//! renewal was *sent*): the loop keeps its own deadline from that, so a paused process notices
//! on its own that it must stop before it sends anything.
//!
//! A batch larger than one transaction is split in event order; each transaction is a valid
//! state on its own (records set facts, a move is recorded before the slot it freed is taken,
//! the whitelist version is written at the end of each transaction). A write that times out
//! may or may not have landed: the batch fails, its frames stay held, and the loop retries the
//! batch from that transaction on (it sets values and nothing after it was sent, so sending it
//! twice changes nothing); the transactions etcd acknowledged are never sent again, since an
//! earlier one replayed would put back values the later ones replaced. Within a transaction a
//! key is written once, with its last value (etcd refuses a key named twice).

use super::etcd::{Campaign, EtcdError, Gateway, TxnOp};
use super::grpc::{Fence, TxnOutcome};
use super::keys::{self, Op, WHITELIST_VERSION};
use super::worker::{Done, Msg, StoreEvent, TxnStat};
use super::{record, Record, State};
use log::{error, info, warn};
use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a group member is configured.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// etcd client URLs.
    pub endpoints: Vec<String>,
    /// Key prefix of the group (no trailing slash).
    pub prefix: String,
    /// This member's name (what standbys and `/healthz` show).
    pub member: String,
    /// Lease TTL in seconds.
    pub lease_ttl: u64,
    /// Most operations etcd takes in one transaction (its `--max-txn-ops`; default
    /// [`DEFAULT_MAX_TXN_OPS`](super::etcd::DEFAULT_MAX_TXN_OPS)).
    pub max_txn_ops: usize,
}

/// What the loop learns about its role.
#[derive(Debug)]
pub enum RoleChange {
    /// Another member is active (`None`: not known yet).
    Standby {
        /// The active member's name.
        active: Option<String>,
    },
    /// This member is active with this state; the lease was granted at `renewed_at`.
    Active {
        /// Which election of this member (batches carry it; an older term's are refused).
        term: u64,
        /// The group's state at the election.
        state: Box<State>,
        /// When the lease's last renewal was sent.
        renewed_at: Instant,
    },
    /// The lease was renewed (the renewal was sent at this instant).
    Renewed {
        /// When the renewal was sent.
        at: Instant,
    },
    /// The role is lost (lease expired, fenced out, step-down); the loop must stop at once.
    Lost {
        /// Why, for the log.
        why: String,
    },
}

/// How long a standby waits between looks at the leader key.
const POLL: Duration = Duration::from_millis(200);
/// After a step-down, how long before this member campaigns again (so another takes over).
const STEP_DOWN_PAUSE: Duration = Duration::from_secs(3);

/// Most bytes of keys and values in one transaction: etcd refuses requests over 1.5 MiB
/// (`--max-request-bytes`); half of it leaves room for the encoding (a third more where a
/// request goes through the JSON gateway's base64).
const MAX_TXN_BYTES: usize = 768 << 10;

/// The ops of `records` as transactions of at most `max_ops` ops and [`MAX_TXN_BYTES`], in
/// event order, each ending with the whitelist version it reached (if it changed the
/// whitelist). A key changed twice within one transaction is written once, with its last
/// value (etcd refuses a transaction naming a key twice, and the transaction is atomic, so
/// the earlier value is never seen); across transactions every change stays, in order, so
/// each prefix of them is a state the cluster was in.
pub fn chunks(records: &[Record], max_ops: usize) -> Vec<Vec<TxnOp>> {
    let mut out = Vec::new();
    let mut chunk = Chunk::default();
    for r in records {
        // One record is at most one data op (~200 KB at most: three 64 KB strings), plus the
        // version for a whitelist change.
        let (op, version) = keys::op(r);
        if let Some(op) = op {
            let size = op.key().len()
                + match &op {
                    Op::Put(_, v) => v.len(),
                    Op::Delete(_) => 0,
                };
            if chunk.bytes + size > MAX_TXN_BYTES && !chunk.ops.is_empty() {
                chunk.close(&mut out);
            }
            chunk.push(op, size);
        }
        if version.is_some() {
            chunk.version = version;
        }
        // Room for the whitelist version and the order key (see Fence).
        if chunk.ops.len() >= max_ops - 2 {
            chunk.close(&mut out);
        }
    }
    chunk.close(&mut out);
    out
}

/// The transaction being filled by [`chunks`].
#[derive(Default)]
struct Chunk {
    ops: Vec<TxnOp>,
    /// Where each key is in `ops`.
    at: hashbrown::HashMap<Vec<u8>, usize>,
    bytes: usize,
    version: Option<u32>,
}

impl Chunk {
    fn push(&mut self, op: Op, size: usize) {
        let op = match op {
            Op::Put(k, v) => TxnOp::Put(k, v),
            Op::Delete(k) => TxnOp::Delete(k),
        };
        // Bytes are counted for every op, even one that replaces an earlier one: a bound,
        // never an undercount.
        self.bytes += size;
        let key = match &op {
            TxnOp::Put(k, _) | TxnOp::Delete(k) | TxnOp::DeletePrefix(k) => k.clone(),
        };
        match self.at.entry(key) {
            hashbrown::hash_map::Entry::Occupied(e) => self.ops[*e.get()] = op,
            hashbrown::hash_map::Entry::Vacant(e) => {
                e.insert(self.ops.len());
                self.ops.push(op);
            }
        }
    }

    fn close(&mut self, out: &mut Vec<Vec<TxnOp>>) {
        if let Some(v) = self.version.take() {
            self.ops.push(TxnOp::Put(
                WHITELIST_VERSION.to_vec(),
                v.to_be_bytes().to_vec(),
            ));
        }
        if !self.ops.is_empty() {
            out.push(std::mem::take(&mut self.ops));
        }
        self.at.clear();
        self.bytes = 0;
    }
}

/// Transactions that rewrite the earlier layout's pieces as one `server/` key per game node:
/// first every node's new key (from the loaded state, so each is whole), then one transaction
/// that deletes the three kinds of pieces by prefix. A crash part-way leaves nodes with both
/// layouts, and on load a `server/` key wins over its pieces, so every node stays whole; the
/// next member to take over finishes the job.
fn split_rewrite(state: &State, max_ops: usize) -> Vec<Vec<TxnOp>> {
    let mut out = Vec::new();
    let mut txn = Vec::new();
    let mut bytes = 0;
    for server in state.servers() {
        let (Some(Op::Put(k, v)), _) = keys::op(&Record::Server(server)) else {
            continue;
        };
        // Room for the order key (see Fence).
        if txn.len() + 2 > max_ops || bytes + k.len() + v.len() > MAX_TXN_BYTES {
            out.push(std::mem::take(&mut txn));
            bytes = 0;
        }
        bytes += k.len() + v.len();
        txn.push(TxnOp::Put(k, v));
    }
    out.push(txn);
    out.push(
        keys::SPLIT_KINDS
            .iter()
            .map(|kind| TxnOp::DeletePrefix(format!("{kind}/").into_bytes()))
            .collect(),
    );
    out.retain(|t| !t.is_empty());
    out
}

enum Exit {
    /// The loop is gone: revoke and end the thread.
    Shutdown,
    /// The role is lost; campaign again (after `pause`).
    Lost(String, Duration),
}

struct Member {
    cfg: GroupConfig,
    gw: Gateway,
    leader_key: Vec<u8>,
    /// `<prefix>/order`: written by every data transaction, compared by the next.
    order_key: Vec<u8>,
    /// The revision of the order key's last write we know of (this term).
    order_rev: i64,
    data_prefix: Vec<u8>,
    rx: Receiver<Msg>,
    tx: Sender<StoreEvent>,
    wake: Box<dyn Fn() + Send>,
    audit: Option<File>,
    fault: Option<Arc<AtomicBool>>,
    /// Elections won so far.
    term: u64,
}

/// Runs a member's store thread until the loop drops its end of the channel.
pub(super) fn run(
    cfg: GroupConfig,
    rx: Receiver<Msg>,
    tx: Sender<StoreEvent>,
    wake: Box<dyn Fn() + Send>,
    audit: Option<File>,
) {
    // A call that hangs (an etcd member without a leader during its election) must not
    // outlast the renewals: a quarter of the TTL, then the next endpoint is tried.
    let timeout = Duration::from_millis((cfg.lease_ttl * 1000 / 4).max(500));
    let mut m = Member {
        gw: Gateway::new(&cfg.endpoints, timeout),
        leader_key: format!("{}/leader", cfg.prefix).into_bytes(),
        order_key: format!("{}/order", cfg.prefix).into_bytes(),
        order_rev: 0,
        data_prefix: format!("{}/state/", cfg.prefix).into_bytes(),
        cfg,
        rx,
        tx,
        wake,
        audit,
        fault: None,
        term: 0,
    };
    let mut last_holder: Option<String> = Some(String::from("\0")); // nothing reported yet
    loop {
        match m.candidate(&mut last_holder) {
            Some(Exit::Shutdown) => return,
            Some(Exit::Lost(why, pause)) => {
                m.report(StoreEvent::Role(RoleChange::Lost { why }));
                last_holder = Some(String::from("\0"));
                if m.wait(pause).is_err() {
                    return;
                }
            }
            None => {}
        }
    }
}

impl Member {
    fn report(&self, ev: StoreEvent) {
        if self.tx.send(ev).is_ok() {
            (self.wake)();
        }
    }

    /// Waits `d`, answering batches (which a non-active member cannot take). Err: shutdown.
    fn wait(&mut self, d: Duration) -> Result<(), ()> {
        let until = Instant::now() + d;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            match self.rx.recv_timeout(left) {
                Ok(Msg::Batch(batch)) => {
                    let result = Err(io::Error::other("not the active member of the group"));
                    let done = Done {
                        batch,
                        result,
                        elapsed: Duration::ZERO,
                        txns: Vec::new(),
                    };
                    self.report(StoreEvent::Done(done));
                }
                Ok(Msg::Fault(f)) => self.fault = Some(f),
                Ok(Msg::StepDown) => {}
                Err(RecvTimeoutError::Timeout) => return Ok(()),
                Err(RecvTimeoutError::Disconnected) => return Err(()),
            }
        }
    }

    /// One campaign: `None` after losing it (another member holds the key), an exit after
    /// holding the role.
    fn candidate(&mut self, last_holder: &mut Option<String>) -> Option<Exit> {
        let sent = Instant::now();
        let lease = match self.gw.grant(self.cfg.lease_ttl) {
            Ok(l) => l,
            Err(e) => {
                warn!("group {}: cannot campaign: {e}", self.cfg.prefix);
                return self
                    .wait(Duration::from_millis(500))
                    .err()
                    .map(|()| Exit::Shutdown);
            }
        };
        let leader_key = self.leader_key.clone();
        match self.gw.campaign(&leader_key, &self.cfg.member, lease) {
            Ok(Campaign::Won { create_revision }) => {
                let exit = self.active(lease, create_revision, sent);
                let _ = self.gw.revoke(lease);
                Some(exit)
            }
            Ok(Campaign::Lost { holder }) => {
                let _ = self.gw.revoke(lease);
                if last_holder.as_deref() != Some(holder.as_str()) {
                    let active = (!holder.is_empty()).then(|| holder.clone());
                    info!(
                        "group {}: standing by; active member: {}",
                        self.cfg.prefix,
                        active.as_deref().unwrap_or("(changing)")
                    );
                    self.report(StoreEvent::Role(RoleChange::Standby { active }));
                    *last_holder = Some(holder);
                }
                // Watch the key until it is gone, then campaign again.
                loop {
                    if self.wait(POLL).is_err() {
                        return Some(Exit::Shutdown);
                    }
                    match self.gw.get(&leader_key) {
                        Ok(None) => return None,
                        Ok(Some(v)) => {
                            let holder = String::from_utf8_lossy(&v).into_owned();
                            if last_holder.as_deref() != Some(holder.as_str()) {
                                self.report(StoreEvent::Role(RoleChange::Standby {
                                    active: Some(holder.clone()),
                                }));
                                *last_holder = Some(holder);
                            }
                        }
                        Err(e) => warn!("group {}: {e}", self.cfg.prefix),
                    }
                }
            }
            Err(e) => {
                let _ = self.gw.revoke(lease);
                warn!("group {}: campaign failed: {e}", self.cfg.prefix);
                self.wait(Duration::from_millis(500))
                    .err()
                    .map(|()| Exit::Shutdown)
            }
        }
    }

    /// Holds the role until it is lost or the loop goes away.
    fn active(&mut self, lease: i64, fence: i64, granted_at: Instant) -> Exit {
        self.term += 1;
        let term = self.term;
        let started = Instant::now();
        let prefix = self.data_prefix.clone();
        let every = renewal_interval(self.cfg.lease_ttl);
        let mut next_renewal = granted_at + every;
        let mut renewed_at = granted_at;
        // Where the group's writes stand: our first transaction must follow the last one
        // anybody made (the previous member's, fenced by its own election).
        self.order_rev = match self.gw.last_write(&self.order_key) {
            Ok(last) => last.map_or(0, |(revision, _)| revision),
            Err(e) => {
                let why = format!("reading the write order: {e}");
                error!("group {}: {why}; standing down", self.cfg.prefix);
                return Exit::Lost(why, Duration::from_secs(1));
            }
        };
        let state = match self.load(&prefix, fence, lease, &mut next_renewal, &mut renewed_at) {
            Ok(s) => s,
            Err(why) => {
                error!("group {}: {why}; standing down", self.cfg.prefix);
                return Exit::Lost(why, Duration::from_secs(1));
            }
        };
        info!(
            "group {}: active as {} ({} assignments, {} whitelist entries loaded in {} ms)",
            self.cfg.prefix,
            self.cfg.member,
            state.assignments.len(),
            state.whitelist.len(),
            started.elapsed().as_millis()
        );
        self.report(StoreEvent::Role(RoleChange::Active {
            term,
            state: Box::new(state),
            renewed_at,
        }));
        loop {
            let left = next_renewal.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Msg::Batch(batch)) if batch.term != term => {
                    // Decided under an earlier term: another member may have held the role
                    // since, so it is never written.
                    let done = Done {
                        batch,
                        result: Err(io::Error::other("a batch of an earlier term")),
                        elapsed: Duration::ZERO,
                        txns: Vec::new(),
                    };
                    self.report(StoreEvent::Done(done));
                }
                Ok(Msg::Batch(mut batch)) => {
                    let start = Instant::now();
                    let mut txns = Vec::new();
                    let result =
                        self.commit(&mut batch, lease, fence, &mut next_renewal, &mut txns);
                    let fenced = matches!(&result, Err(Fenced::Out(_)));
                    let done = Done {
                        batch,
                        result: result.map_err(|f| match f {
                            Fenced::Out(why) | Fenced::Io(why) => io::Error::other(why),
                        }),
                        elapsed: start.elapsed(),
                        txns,
                    };
                    self.report(StoreEvent::Done(done));
                    if fenced {
                        return Exit::Lost(
                            "another member holds the role (a write was fenced out)".into(),
                            Duration::ZERO,
                        );
                    }
                }
                Ok(Msg::Fault(f)) => self.fault = Some(f),
                Ok(Msg::StepDown) => {
                    return Exit::Lost("stepped down".into(), STEP_DOWN_PAUSE);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(why) = self.renew(lease, &mut next_renewal) {
                        return Exit::Lost(why, Duration::ZERO);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Exit::Shutdown,
            }
        }
    }

    /// Renews the lease; Err when it has expired.
    fn renew(&mut self, lease: i64, next: &mut Instant) -> Result<(), String> {
        let sent = Instant::now();
        let every = renewal_interval(self.cfg.lease_ttl);
        match self.gw.keepalive(lease) {
            Ok(Some(_)) => {
                *next = sent + every;
                self.report(StoreEvent::Role(RoleChange::Renewed { at: sent }));
                Ok(())
            }
            Ok(None) => Err("the lease expired".into()),
            Err(e) => {
                // etcd unreachable: try again soon; the loop's own deadline decides.
                warn!("group {}: lease renewal failed: {e}", self.cfg.prefix);
                *next = Instant::now() + Duration::from_millis(300);
                Ok(())
            }
        }
    }

    /// Reads the whole state at `revision`, renewing the lease between pages (a large state
    /// takes longer to read than a lease lasts).
    fn load(
        &mut self,
        prefix: &[u8],
        revision: i64,
        lease: i64,
        next_renewal: &mut Instant,
        renewed_at: &mut Instant,
    ) -> Result<State, String> {
        let mut kvs = Vec::new();
        let mut from = Some(prefix.to_vec());
        let mut page = super::etcd::PAGE;
        while let Some(at) = from {
            if Instant::now() >= *next_renewal {
                let sent = Instant::now();
                self.renew(lease, next_renewal)?;
                *renewed_at = sent;
            }
            from = match self.gw.range_page(prefix, &at, revision, page, &mut kvs) {
                Ok(next) => next,
                Err(EtcdError::TooLarge(why)) if page > 1 => {
                    page /= 2;
                    info!("group {}: {why}; pages of {page} keys", self.cfg.prefix);
                    Some(at)
                }
                Err(e) => return Err(format!("loading the state: {e}")),
            };
        }
        let mut state = State::default();
        let mut pieces = 0;
        for (k, v) in kvs {
            keys::load(&mut state, &k, &v).map_err(|e| format!("loading the state: {e}"))?;
            pieces += keys::is_split_layout(&k) as usize;
        }
        state
            .check()
            .map_err(|e| format!("the group's state breaks an invariant: {e}"))?;
        if pieces > 0 {
            for (i, txn) in split_rewrite(&state, self.cfg.max_txn_ops)
                .into_iter()
                .enumerate()
            {
                if Instant::now() >= *next_renewal {
                    let sent = Instant::now();
                    self.renew(lease, next_renewal)?;
                    *renewed_at = sent;
                }
                let id = txn_id(revision, u64::MAX, i);
                self.write_txn(revision, &id, &txn).map_err(|e| match e {
                    Fenced::Out(why) | Fenced::Io(why) => format!("rewriting the state: {why}"),
                })?;
            }
            info!(
                "group {}: {pieces} keys of the earlier layout (assign/, name/, game/) rewritten as one server/ key per game node",
                self.cfg.prefix
            );
        }
        Ok(state)
    }

    fn commit(
        &mut self,
        batch: &mut super::Batch,
        lease: i64,
        fence: i64,
        next_renewal: &mut Instant,
        txns: &mut Vec<TxnStat>,
    ) -> Result<(), Fenced> {
        if self
            .fault
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
        {
            return Err(Fenced::Io("injected fault".into()));
        }
        if !batch.audit.is_empty() && !batch.audit_written {
            if let Some(f) = &mut self.audit {
                f.write_all(&batch.audit)
                    .and_then(|_| f.sync_data())
                    .map_err(|e| Fenced::Io(format!("audit log: {e}")))?;
            }
            batch.audit_written = true;
        }
        let records =
            record::decode_batch(&batch.records).map_err(|c| Fenced::Io(format!("batch {c}")))?;
        let chunks = chunks(&records, self.cfg.max_txn_ops);
        let seq = batch.seq;
        write_remaining(batch, &chunks, |index, chunk| {
            if Instant::now() >= *next_renewal {
                self.renew(lease, next_renewal).map_err(Fenced::Out)?;
            }
            let sent = Instant::now();
            self.write_txn(fence, &txn_id(fence, seq, index), chunk)?;
            txns.push(TxnStat {
                ops: chunk.len(),
                elapsed: sent.elapsed(),
            });
            Ok(())
        })
    }

    /// One fenced transaction, `id` its name in the order key: `Ok` once it is applied (now,
    /// or by an earlier copy of it whose answer was lost); [`Fenced::Out`] when the role is
    /// lost, or the group's writes moved on without this member (never retried).
    fn write_txn(&mut self, fence: i64, id: &[u8], ops: &[TxnOp]) -> Result<(), Fenced> {
        let f = Fence {
            leader_key: &self.leader_key,
            create_revision: fence,
            order_key: &self.order_key,
            order_revision: self.order_rev,
            id,
        };
        match self.gw.fenced_txn(&f, &self.data_prefix, ops) {
            Ok(outcome) => {
                self.order_rev = settle(outcome, fence, id, self.order_rev)?;
                Ok(())
            }
            Err(e @ EtcdError::Refused(_)) | Err(e @ EtcdError::Bad(_)) => {
                let hint = if e.to_string().contains("too many operations") {
                    format!(
                        " (transactions of up to {} operations: etcd's --max-txn-ops is lower than --etcd-max-txn-ops)",
                        self.cfg.max_txn_ops
                    )
                } else {
                    String::new()
                };
                error!("group {}: write refused: {e}{hint}", self.cfg.prefix);
                Err(Fenced::Io(e.to_string()))
            }
            Err(e) => Err(Fenced::Io(e.to_string())),
        }
    }
}

/// What a fenced transaction's outcome means: the order key's new last write, or why this
/// member must stop (another holds the role; or the group's writes moved on without it,
/// which no member of a fenced group can make happen but is never papered over).
fn settle(outcome: TxnOutcome, fence: i64, id: &[u8], order_rev: i64) -> Result<i64, Fenced> {
    match outcome {
        TxnOutcome::Applied { revision } => Ok(revision),
        TxnOutcome::NotApplied { leader_created, .. } if leader_created != Some(fence) => {
            Err(Fenced::Out("fenced out".into()))
        }
        // An earlier copy of this transaction landed; its answer was lost.
        TxnOutcome::NotApplied {
            order: Some((revision, value)),
            ..
        } if value == id => Ok(revision),
        TxnOutcome::NotApplied { order, .. } => Err(Fenced::Out(format!(
            "the group's writes moved on without this member (order key written at {:?}, expected {order_rev})",
            order.map(|(revision, _)| revision)
        ))),
    }
}

/// A data transaction's name: the term's fence, the batch's sequence number, the
/// transaction's index in the batch (unique for the group: fences are etcd revisions).
fn txn_id(fence: i64, batch: u64, index: usize) -> Vec<u8> {
    let mut id = Vec::with_capacity(20);
    id.extend_from_slice(&fence.to_be_bytes());
    id.extend_from_slice(&batch.to_be_bytes());
    id.extend_from_slice(&(index as u32).to_be_bytes());
    id
}

/// Writes the transactions of `batch` it has not written yet (`txns` are its records'
/// transactions, which a retry computes again, the same), counting each one the store
/// acknowledged. A retry after a failure resends the transaction whose outcome was unknown
/// (safe: nothing after it was sent, and it sets values) and goes on from there; it never
/// replays an acknowledged one, which would put back values later ones replaced (a slot a
/// later transaction gave to another node, held twice).
fn write_remaining(
    batch: &mut super::Batch,
    txns: &[Vec<TxnOp>],
    mut write: impl FnMut(usize, &[TxnOp]) -> Result<(), Fenced>,
) -> Result<(), Fenced> {
    for (index, txn) in txns.iter().enumerate().skip(batch.txns_written) {
        write(index, txn)?;
        batch.txns_written += 1;
    }
    Ok(())
}

/// The lease is renewed four times per TTL, so one or two failed renewals (an etcd election)
/// still leave time before the local deadline.
fn renewal_interval(ttl: u64) -> Duration {
    Duration::from_millis(ttl * 1000 / 4)
}

#[derive(Debug)]
enum Fenced {
    /// The role is lost: never retry.
    Out(String),
    /// Unknown outcome or refused: the loop may retry the batch.
    Io(String),
}

#[cfg(test)]
mod tests {
    use super::super::etcd::DEFAULT_MAX_TXN_OPS;
    use super::*;

    #[test]
    fn a_large_batch_splits_in_order_with_the_version_closing_each_transaction() {
        let mut records = vec![Record::Assign {
            serv: 1,
            cross: 10,
            pos: 1,
        }];
        for i in 0..300u32 {
            records.push(Record::WhitelistAdd {
                version: i + 1,
                entry: format!("p{i}").into(),
            });
        }
        let txns = chunks(&records, DEFAULT_MAX_TXN_OPS);
        assert!(txns.iter().all(|t| t.len() <= DEFAULT_MAX_TXN_OPS));
        assert_eq!(txns.len(), 3);
        // An etcd that takes larger transactions gets fewer of them, the same ops in order.
        let wide = chunks(&records, 1000);
        assert_eq!(wide.len(), 1);
        let ops = |t: &[Vec<TxnOp>]| -> Vec<TxnOp> {
            t.iter()
                .flatten()
                .filter(|op| !matches!(op, TxnOp::Put(k, _) if k == WHITELIST_VERSION))
                .cloned()
                .collect()
        };
        assert_eq!(ops(&wide), ops(&txns));
        // Replaying the transactions one by one: after each, the version counts the entries.
        let mut applied: Vec<TxnOp> = Vec::new();
        for t in &txns {
            applied.extend(t.iter().cloned());
            let entries = applied
                .iter()
                .filter(|op| matches!(op, TxnOp::Put(k, _) if k.starts_with(b"whitelist/")))
                .count() as u32;
            let version = t.iter().rev().find_map(|op| match op {
                TxnOp::Put(k, v) if k == WHITELIST_VERSION => {
                    Some(u32::from_be_bytes(v[..4].try_into().expect("u32")))
                }
                _ => None,
            });
            assert_eq!(version, Some(entries));
        }
        assert_eq!(
            applied[0],
            TxnOp::Put(b"assign/1".to_vec(), vec![0, 0, 0, 10, 0, 1])
        );
        assert!(txns.iter().all(|t| t
            .iter()
            .filter(|op| key_of(op) == WHITELIST_VERSION)
            .count()
            == 1));
    }

    #[test]
    fn long_names_split_transactions_by_bytes() {
        let records: Vec<Record> = (0..40u32)
            .map(|serv| Record::Name {
                serv,
                name: "n".repeat(60_000).into(),
            })
            .collect();
        let txns = chunks(&records, 1_000_000);
        assert!(txns.len() >= 3, "{} transactions", txns.len());
        for t in &txns {
            let bytes: usize = t
                .iter()
                .map(|op| match op {
                    TxnOp::Put(k, v) => k.len() + v.len(),
                    TxnOp::Delete(k) | TxnOp::DeletePrefix(k) => k.len(),
                })
                .sum();
            assert!(bytes <= MAX_TXN_BYTES, "{bytes} bytes in one transaction");
        }
        assert_eq!(txns.iter().map(Vec::len).sum::<usize>(), 40);
    }

    fn slot(serv: u32, cross: u32, pos: u16) -> Record {
        Record::Server(record::ServerRecord {
            serv,
            slot: Some((cross, pos)),
            ..Default::default()
        })
    }

    fn key_of(op: &TxnOp) -> &[u8] {
        match op {
            TxnOp::Put(k, _) | TxnOp::Delete(k) | TxnOp::DeletePrefix(k) => k,
        }
    }

    #[test]
    fn a_key_changed_twice_is_written_once_per_transaction_and_in_order_across_them() {
        // Game 1 moves 10/1 -> 10/2, game 2 takes 10/1, game 1 moves again to 10/3.
        let records = [slot(1, 10, 2), slot(2, 10, 1), slot(1, 10, 3)];
        let one = chunks(&records, DEFAULT_MAX_TXN_OPS);
        assert_eq!(one.len(), 1);
        let keys: Vec<&[u8]> = one[0].iter().map(key_of).collect();
        assert_eq!(keys, [&b"server/1"[..], b"server/2"]);
        assert_eq!(
            one[0][0],
            TxnOp::Put(b"server/1".to_vec(), vec![4, 0, 0, 0, 10, 0, 3])
        );
        // Cut after every op (max 3 = one op and room for the version and the order key): each change stays,
        // in event order, so the state after each transaction is one the cluster was in
        // (game 1 left 10/1 before game 2 took it).
        let cut = chunks(&records, 3);
        assert_eq!(cut.len(), 3);
        assert_eq!(
            cut.iter().map(|t| key_of(&t[0])).collect::<Vec<_>>(),
            [&b"server/1"[..], b"server/2", b"server/1"]
        );
        for t in one.iter().chain(&cut) {
            let mut seen = hashbrown::HashSet::new();
            assert!(t.iter().all(|op| seen.insert(key_of(op))), "{t:?}");
        }
    }

    #[test]
    fn the_earlier_layout_is_rewritten_whole_nodes_first_then_the_pieces_deleted() {
        let mut state = State::default();
        for serv in 1..=50u32 {
            state.assignments.insert(serv, (10, serv as u16));
            state.names.insert(serv, format!("s{serv}").into());
        }
        let txns = split_rewrite(&state, 16);
        assert!(txns.iter().all(|t| !t.is_empty() && t.len() <= 16));
        let (last, puts) = txns.split_last().expect("transactions");
        let deletes: Vec<&TxnOp> = last.iter().collect();
        assert_eq!(
            deletes,
            [
                &TxnOp::DeletePrefix(b"assign/".to_vec()),
                &TxnOp::DeletePrefix(b"game/".to_vec()),
                &TxnOp::DeletePrefix(b"name/".to_vec())
            ]
        );
        // Every node once, whole, before any piece is deleted.
        let mut rebuilt = State::default();
        for op in puts.iter().flatten() {
            let TxnOp::Put(k, v) = op else {
                panic!("only puts before the deletes: {op:?}")
            };
            keys::load(&mut rebuilt, k, v).expect("loads");
        }
        assert_eq!(rebuilt, state);
    }

    #[test]
    fn a_retried_batch_resumes_at_the_transaction_whose_outcome_was_unknown() {
        // Found by review: game 1 moves 10/1 -> 10/3 and game 2 takes 10/1 (one transaction),
        // then game 2 moves on to 10/4 and game 3 takes 10/1 (the next). The second one is
        // applied but its answer lost; a retry that replayed the first would put game 2 back
        // on 10/1, which game 3 holds.
        let records = [
            slot(1, 10, 3),
            slot(2, 10, 1),
            slot(2, 10, 4),
            slot(3, 10, 1),
        ];
        let txns = chunks(&records, 4);
        assert_eq!(txns.len(), 2);
        let mut store: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = Default::default();
        let mut sent = Vec::new();
        let mut batch = super::super::Batch::default();
        let mut write = |txn: &[TxnOp], lose_answer: bool| {
            sent.push(txn.to_vec());
            for op in txn {
                if let TxnOp::Put(k, v) = op {
                    store.insert(k.clone(), v.clone());
                }
            }
            let mut state = State::default();
            for (k, v) in &store {
                keys::load(&mut state, k, v).expect("loads");
            }
            state.check().expect("every state etcd is left in loads");
            match lose_answer {
                true => Err(Fenced::Io("timed out".into())),
                false => Ok(()),
            }
        };
        let first = write_remaining(&mut batch, &txns, |i, t| write(t, i == 1));
        assert!(first.is_err());
        assert_eq!(batch.txns_written, 1);
        write_remaining(&mut batch, &txns, |_, t| write(t, false)).expect("retry");
        assert_eq!(batch.txns_written, 2);
        assert_eq!(sent, [txns[0].clone(), txns[1].clone(), txns[1].clone()]);
    }

    #[test]
    fn a_transaction_refused_by_the_order_fence_is_told_apart_from_one_that_landed() {
        let id = txn_id(7, 3, 1);
        let not_applied = |leader_created, order| TxnOutcome::NotApplied {
            leader_created,
            order,
        };
        assert_eq!(
            settle(TxnOutcome::Applied { revision: 50 }, 7, &id, 41).ok(),
            Some(50)
        );
        // Our own earlier copy landed (its answer lost): carry on from its revision.
        let landed = not_applied(Some(7), Some((44, id.clone())));
        assert_eq!(settle(landed, 7, &id, 41).ok(), Some(44));
        // Another election since, or the key gone: the role is lost.
        for lost in [
            not_applied(Some(9), Some((44, id.clone()))),
            not_applied(None, None),
        ] {
            assert!(
                matches!(settle(lost, 7, &id, 41), Err(Fenced::Out(why)) if why == "fenced out")
            );
        }
        // Our role, but the order key holds another transaction: never written over.
        let other = not_applied(Some(7), Some((44, txn_id(7, 2, 0))));
        assert!(
            matches!(settle(other, 7, &id, 41), Err(Fenced::Out(why)) if why.contains("moved on"))
        );
        assert_eq!(id.len(), 20);
        assert_ne!(txn_id(7, 3, 1), txn_id(8, 3, 1));
    }
}
