//! How a batch becomes etcd transactions, sans-IO: split in event order under etcd's limits,
//! each key once per transaction, resumed after a failure without replaying what etcd
//! acknowledged, and what a fenced transaction's outcome means. The thread that sends them is
//! [`super`].

use crate::state::etcd::TxnOp;
use crate::state::grpc::TxnOutcome;
use crate::state::keys::{self, Op, WHITELIST_VERSION};
use crate::state::{Record, State};

/// Most bytes of keys and values in one transaction: etcd refuses requests over 1.5 MiB
/// (`--max-request-bytes`); half of it leaves room for the encoding (a third more where a
/// request goes through the JSON gateway's base64).
pub(super) const MAX_TXN_BYTES: usize = 768 << 10;

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
pub(super) fn split_rewrite(state: &State, max_ops: usize) -> Vec<Vec<TxnOp>> {
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

/// What a fenced transaction's outcome means: the order key's new last write, or why this
/// member must stop (another holds the role; or the group's writes moved on without it,
/// which no member of a fenced group can make happen but is never papered over).
pub(super) fn settle(
    outcome: TxnOutcome,
    fence: i64,
    id: &[u8],
    order_rev: i64,
) -> Result<i64, Fenced> {
    match outcome {
        TxnOutcome::Applied { revision } => Ok(revision),
        TxnOutcome::NotApplied { leader_created, .. } if leader_created != Some(fence) => {
            Err(Fenced::Out("fenced out (another member holds the role)".into()))
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
pub(super) fn txn_id(fence: i64, batch: u64, index: usize) -> Vec<u8> {
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
pub(super) fn write_remaining(
    batch: &mut crate::state::Batch,
    txns: &[Vec<TxnOp>],
    mut write: impl FnMut(usize, &[TxnOp]) -> Result<(), Fenced>,
) -> Result<(), Fenced> {
    for (index, txn) in txns.iter().enumerate().skip(batch.txns_written) {
        write(index, txn)?;
        batch.txns_written += 1;
    }
    Ok(())
}

#[derive(Debug)]
pub(super) enum Fenced {
    /// The role is lost: never retry.
    Out(String),
    /// Unknown outcome or refused: the loop may retry the batch.
    Io(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::etcd::DEFAULT_MAX_TXN_OPS;
    use crate::state::record;

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
        let mut batch = crate::state::Batch::default();
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
                matches!(settle(lost, 7, &id, 41), Err(Fenced::Out(why)) if why.starts_with("fenced out"))
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
