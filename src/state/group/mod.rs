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
//! failed compare is [`RoleChange::Lost`], never retried. It also compares the last write of
//! `<prefix>/order` with the one we made (or found when we took over) and writes its own name
//! there, so a copy of a transaction that reaches etcd late (a paused etcd member, a resend
//! after a timeout) is refused rather than applied after newer ones; a refused resend whose
//! first copy landed finds its own name there and carries on. The thread renews the lease every
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

mod txns;

pub use txns::chunks;
use txns::{settle, split_rewrite, txn_id, write_remaining, Fenced};

use super::etcd::{Campaign, EtcdError, Gateway, TxnOp};
use super::grpc::{Fence, TxnOutcome};
use super::keys;
use super::worker::{Done, Msg, StoreEvent, TxnStat};
use super::{record, State};
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
                    let fenced = match &result {
                        Err(Fenced::Out(why)) => Some(why.clone()),
                        _ => None,
                    };
                    let done = Done {
                        batch,
                        result: result.map_err(|f| match f {
                            Fenced::Out(why) | Fenced::Io(why) => io::Error::other(why),
                        }),
                        elapsed: start.elapsed(),
                        txns,
                    };
                    self.report(StoreEvent::Done(done));
                    if let Some(why) = fenced {
                        return Exit::Lost(format!("a write was refused: {why}"), Duration::ZERO);
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
                let resent = matches!(outcome, TxnOutcome::NotApplied { .. });
                self.order_rev = settle(outcome, fence, id, self.order_rev)?;
                if resent {
                    info!(
                        "group {}: a resent transaction had landed already (its first answer was lost); carrying on",
                        self.cfg.prefix
                    );
                }
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

/// The lease is renewed four times per TTL, so one or two failed renewals (an etcd election)
/// still leave time before the local deadline.
fn renewal_interval(ttl: u64) -> Duration {
    Duration::from_millis(ttl * 1000 / 4)
}
