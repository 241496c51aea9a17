//! The durable state as keys and values, shared by every backend (the embedded database, an
//! etcd group): backends differ only in how a batch of [`Op`]s is applied, never in what the
//! keys mean.
//!
//! | key | value |
//! |---|---|
//! | `server/<serv_id>` | one game node's whole entry: flags u8, then name str, then cross_plat str, open_time u32, addr str, then cross_server_id u32, cross_pos u16, each group present if its flag is set ([`ServerRecord::encode_parts`]) |
//! | `cross/<cross_server_id>` | cross_node_name str, cross_plat str, reported capacity u16 |
//! | `capacity/<cross_server_id>` | operator override u16 |
//! | `drain/<cross_server_id>` | empty |
//! | `maintenance/<serv_id>` | empty |
//! | `whitelist/<entry>` | empty |
//! | `whitelist-version` | u32 |
//!
//! Integers are big-endian and `str` is a u16 length then UTF-8, as on the wire. Keys are text
//! so that an operator reading the store sees what each one is.
//!
//! One key per game node, not one per fact: a new node arriving is one key written, not three
//! (its name, its facts and its slot), which is what a store pays for (an SQLite row, and in
//! etcd ~100 µs per key). Stores written before kept the three as `assign/<serv_id>` (cross
//! u32, pos u16), `name/<serv_id>` (the name, whole) and `game/<serv_id>` (plat str,
//! open_time u32, addr str): [`load`] still reads them ([`is_split_layout`]), and each backend
//! rewrites them as `server/` keys once, when it opens such a store. Keys load in key order,
//! so a `server/` key (after `assign/`, `game/` and `name/`) wins over any leftover piece.

use super::record::ServerRecord;
use super::{CrossFacts, GameFacts, Record, State};
use crate::proto::wire::{put_str, put_u16, put_u32, Reader};
use hashbrown::HashSet;

/// One change to the store: put a value, or delete a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key`.
    Delete(Vec<u8>),
}

impl Op {
    /// The key it changes.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put(k, _) | Op::Delete(k) => k,
        }
    }
}

/// The key of the whitelist's version.
pub const WHITELIST_VERSION: &[u8] = b"whitelist-version";

/// The kinds of the earlier layout's three keys per game node.
pub const SPLIT_KINDS: [&str; 3] = ["assign", "game", "name"];

/// `<kind>/<id>`. Built by hand (with `itoa`'s digits) rather than `format!`: the store thread
/// builds one per record, and the formatting machinery cost more than the SQLite row (callgrind).
fn key(kind: &str, id: u32) -> Vec<u8> {
    key_of(kind, itoa::Buffer::new().format(id))
}

/// `<kind>/<name>`.
fn key_of(kind: &str, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(kind.len() + 1 + name.len());
    k.extend_from_slice(kind.as_bytes());
    k.push(b'/');
    k.extend_from_slice(name.as_bytes());
    k
}

/// The `server/` key of game node `serv`.
pub fn server_key(serv: u32) -> Vec<u8> {
    key("server", serv)
}

/// Room for one `server/<serv_id>` key, reused from key to key (no allocation per row).
#[derive(Default)]
pub struct KeyBuf {
    text: String,
}

impl KeyBuf {
    /// `server/<serv>`, as text.
    pub fn server(&mut self, serv: u32) -> &str {
        self.text.clear();
        self.text.push_str("server/");
        self.text.push_str(itoa::Buffer::new().format(serv));
        &self.text
    }
}

/// True for a key of the earlier layout (`assign/`, `game/`, `name/`), which a backend rewrites
/// as `server/` keys when it opens the store.
pub fn is_split_layout(key: &[u8]) -> bool {
    SPLIT_KINDS.iter().any(|kind| {
        key.len() > kind.len() && key.starts_with(kind.as_bytes()) && key[kind.len()] == b'/'
    })
}

/// The op that one record makes (`None` for a record that only carries the whitelist's
/// version, or a snapshot's end), and the whitelist version it produces (a backend that splits
/// a batch into several transactions writes the version at the end of each).
pub fn op(r: &Record) -> (Option<Op>, Option<u32>) {
    let op = match r {
        Record::Server(s) => {
            let mut v = Vec::with_capacity(32);
            s.encode_parts(&mut v);
            Op::Put(server_key(s.serv), v)
        }
        // The earlier layout's pieces (read from the files of earlier versions): written as
        // such, loaded as such, rewritten as `server/` keys when the store is next opened.
        Record::Assign { serv, cross, pos } => {
            let mut v = Vec::with_capacity(6);
            put_u32(&mut v, *cross);
            put_u16(&mut v, *pos);
            Op::Put(key("assign", *serv), v)
        }
        Record::Name { serv, name } => Op::Put(key("name", *serv), name.as_bytes().to_vec()),
        Record::Game {
            serv,
            plat,
            open_time,
            addr,
        } => {
            let mut v = Vec::with_capacity(8 + plat.len() + addr.len());
            put_str(&mut v, plat);
            put_u32(&mut v, *open_time);
            put_str(&mut v, addr);
            Op::Put(key("game", *serv), v)
        }
        Record::Cross {
            cross,
            name,
            plat,
            capacity,
        } => {
            let mut v = Vec::with_capacity(6 + plat.len() + name.len());
            put_str(&mut v, name);
            put_str(&mut v, plat);
            put_u16(&mut v, *capacity);
            Op::Put(key("cross", *cross), v)
        }
        Record::WhitelistAdd { version, entry } => {
            return (
                Some(Op::Put(key_of("whitelist", entry), Vec::new())),
                Some(*version),
            )
        }
        Record::WhitelistRemove { version, entry } => {
            return (Some(Op::Delete(key_of("whitelist", entry))), Some(*version))
        }
        Record::WhitelistVersion { version } => return (None, Some(*version)),
        Record::Maintenance { serv, on: true } => Op::Put(key("maintenance", *serv), Vec::new()),
        Record::Maintenance { serv, on: false } => Op::Delete(key("maintenance", *serv)),
        Record::Capacity { cross, capacity: 0 } => Op::Delete(key("capacity", *cross)),
        Record::Capacity { cross, capacity } => {
            Op::Put(key("capacity", *cross), capacity.to_be_bytes().to_vec())
        }
        Record::Drain { cross, on: true } => Op::Put(key("drain", *cross), Vec::new()),
        Record::Drain { cross, on: false } => Op::Delete(key("drain", *cross)),
        Record::End { .. } => return (None, None),
    };
    (Some(op), None)
}

/// The ops that apply `records` (in their order) as one transaction: one op per key changed,
/// the last record's (a new node's facts and then its slot, in one batch, are one row), and
/// the whitelist's version once, after the entries of the batch.
pub fn ops(records: &[Record]) -> Vec<Op> {
    let mut out = Vec::with_capacity(records.len() + 1);
    let mut version = None;
    for r in records {
        let (op, v) = op(r);
        out.extend(op);
        version = v.or(version);
    }
    last_op_per_key(&mut out);
    if let Some(n) = version {
        out.push(Op::Put(
            WHITELIST_VERSION.to_vec(),
            n.to_be_bytes().to_vec(),
        ));
    }
    out
}

/// Keeps, for each key, only its last op (in one transaction the earlier ones are overwritten
/// anyway; etcd refuses a transaction naming a key twice).
pub fn last_op_per_key(ops: &mut Vec<Op>) {
    if ops.len() < 2 {
        return;
    }
    let keep: Vec<bool> = {
        let mut seen: HashSet<&[u8]> = HashSet::with_capacity(ops.len());
        ops.iter().rev().map(|op| seen.insert(op.key())).collect()
    };
    if keep.iter().all(|&k| k) {
        return;
    }
    let mut keep = keep.into_iter().rev();
    ops.retain(|_| keep.next().unwrap_or(true));
}

/// Every op that writes `state` into an empty store (a migration, a test fixture): one
/// `server/` key per game node.
pub fn ops_of_state(state: &State) -> Vec<Op> {
    let mut records: Vec<Record> = state.servers().map(Record::Server).collect();
    records.extend(state.records().into_iter().filter(|r| {
        !matches!(
            r,
            Record::Assign { .. } | Record::Name { .. } | Record::Game { .. }
        )
    }));
    ops(&records)
}

/// Loads one stored key into `state`. Unknown keys are an error (a newer version's store, or
/// damage), named with the key. Keys must come in key order (see the module's doc).
pub fn load(state: &mut State, key: &[u8], value: &[u8]) -> Result<(), String> {
    let bad = |why: &str| format!("key {:?}: {why}", String::from_utf8_lossy(key));
    if key == WHITELIST_VERSION {
        let v: [u8; 4] = value.try_into().map_err(|_| bad("not a u32"))?;
        state.whitelist_version = u32::from_be_bytes(v);
        return Ok(());
    }
    let text = std::str::from_utf8(key).map_err(|_| bad("not UTF-8"))?;
    let (kind, id) = text.split_once('/').ok_or_else(|| bad("no kind"))?;
    if kind == "whitelist" {
        state.whitelist.insert(id.into());
        return Ok(());
    }
    let id: u32 = id.parse().map_err(|_| bad("id is not a u32"))?;
    let mut r = Reader::new(value);
    let e = |e: crate::proto::wire::DecodeError| bad(&e.to_string());
    match kind {
        "server" => {
            let entry = ServerRecord::decode_parts(id, &mut r).map_err(|why| bad(&why))?;
            state.apply(&Record::Server(entry));
        }
        "assign" => {
            let slot = (r.u32().map_err(e)?, r.u16().map_err(e)?);
            state.assignments.insert(id, slot);
        }
        "name" => {
            let name = std::str::from_utf8(value).map_err(|_| bad("name is not UTF-8"))?;
            state.names.insert(id, name.into());
            return Ok(());
        }
        "game" => {
            let facts = GameFacts {
                plat: r.str().map_err(e)?.into(),
                open_time: r.u32().map_err(e)?,
                addr: r.str().map_err(e)?.into(),
            };
            state.games.insert(id, facts);
        }
        "cross" => {
            let facts = CrossFacts {
                name: r.str().map_err(e)?.into(),
                plat: r.str().map_err(e)?.into(),
                capacity: r.u16().map_err(e)?,
            };
            state.crosses.insert(id, facts);
        }
        "capacity" => {
            state.capacity.insert(id, r.u16().map_err(e)?);
        }
        "drain" => {
            state.draining.insert(id);
        }
        "maintenance" => {
            state.maintenance.insert(id);
        }
        _ => return Err(bad("unknown kind")),
    }
    if !r.remaining().is_empty() {
        return Err(bad(&format!(
            "{} bytes after the value",
            r.remaining().len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Applies ops to a plain map, as any backend would.
    fn apply(store: &mut BTreeMap<Vec<u8>, Vec<u8>>, ops: &[Op]) {
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    store.insert(k.clone(), v.clone());
                }
                Op::Delete(k) => {
                    store.remove(k);
                }
            }
        }
    }

    fn loaded(store: &BTreeMap<Vec<u8>, Vec<u8>>) -> State {
        let mut state = State::default();
        for (k, v) in store {
            load(&mut state, k, v).expect("loads");
        }
        state
    }

    #[test]
    fn records_through_keys_give_the_state_records_give() {
        let records = vec![
            Record::Assign {
                serv: 1,
                cross: 10,
                pos: 1,
            },
            Record::Name {
                serv: 1,
                name: "s1".into(),
            },
            Record::Game {
                serv: 1,
                plat: "asia".into(),
                open_time: 5,
                addr: "a:1".into(),
            },
            Record::Cross {
                cross: 10,
                name: "c@h".into(),
                plat: "asia".into(),
                capacity: 3,
            },
            Record::WhitelistAdd {
                version: 1,
                entry: "a/b c".into(),
            },
            Record::WhitelistAdd {
                version: 2,
                entry: "x".into(),
            },
            Record::WhitelistRemove {
                version: 3,
                entry: "x".into(),
            },
            Record::Maintenance { serv: 1, on: true },
            Record::Maintenance { serv: 2, on: true },
            Record::Maintenance { serv: 2, on: false },
            Record::Capacity {
                cross: 10,
                capacity: 7,
            },
            Record::Capacity {
                cross: 11,
                capacity: 7,
            },
            Record::Capacity {
                cross: 11,
                capacity: 0,
            },
            Record::Drain {
                cross: 10,
                on: true,
            },
        ];
        let mut expected = State::default();
        records.iter().for_each(|r| expected.apply(r));
        let mut store = BTreeMap::new();
        apply(&mut store, &ops(&records));
        assert_eq!(loaded(&store), expected);
        // Applying a batch twice changes nothing (a write retried after a timeout).
        apply(&mut store, &ops(&records));
        assert_eq!(loaded(&store), expected);
        // The whole state written into an empty store reads back the same.
        let mut fresh = BTreeMap::new();
        apply(&mut fresh, &ops_of_state(&expected));
        assert_eq!(loaded(&fresh), expected);
    }

    fn server(serv: u32, name: &str, slot: Option<(u32, u16)>) -> Record {
        Record::Server(ServerRecord {
            serv,
            name: Some(name.into()),
            facts: Some(GameFacts {
                plat: "asia".into(),
                open_time: 5,
                addr: "a:1".into(),
            }),
            slot,
        })
    }

    #[test]
    fn a_game_node_is_one_key_and_one_batch_writes_it_once() {
        // A new node: its facts, then its slot (as the cluster journals them), then another
        // node, then the first one's name changing: two keys, each with its last value.
        let records = [
            server(1, "s1", None),
            server(1, "s1", Some((10, 1))),
            server(2, "s2", Some((10, 2))),
            server(1, "s1 renamed", Some((10, 1))),
        ];
        let written = ops(&records);
        let keys: Vec<&[u8]> = written.iter().map(Op::key).collect();
        assert_eq!(keys, [&b"server/2"[..], b"server/1"]);
        let mut store = BTreeMap::new();
        apply(&mut store, &written);
        let mut expected = State::default();
        records.iter().for_each(|r| expected.apply(r));
        assert_eq!(loaded(&store), expected);
        assert_eq!(expected.names[&1], "s1 renamed".into());
        // A whitelist entry added and removed in one batch is one delete, then the version.
        let wl = ops(&[
            Record::WhitelistAdd {
                version: 1,
                entry: "x".into(),
            },
            Record::WhitelistRemove {
                version: 2,
                entry: "x".into(),
            },
        ]);
        assert_eq!(
            wl,
            [
                Op::Delete(b"whitelist/x".to_vec()),
                Op::Put(WHITELIST_VERSION.to_vec(), vec![0, 0, 0, 2])
            ]
        );
    }

    #[test]
    fn the_earlier_layout_loads_and_a_server_key_wins_over_its_pieces() {
        let pieces = [
            Record::Assign {
                serv: 1,
                cross: 10,
                pos: 1,
            },
            Record::Name {
                serv: 1,
                name: "old".into(),
            },
            Record::Game {
                serv: 3,
                plat: "eu".into(),
                open_time: 9,
                addr: "b:2".into(),
            },
        ];
        let mut store = BTreeMap::new();
        apply(&mut store, &ops(&pieces));
        assert!(store.keys().all(|k| is_split_layout(k)));
        let mut expected = State::default();
        pieces.iter().for_each(|r| expected.apply(r));
        assert_eq!(loaded(&store), expected);
        // A rewrite that stopped part-way: node 1 has both; its server/ key is the truth.
        apply(&mut store, &ops(&[server(1, "new", Some((10, 4)))]));
        let state = loaded(&store);
        assert_eq!(state.names[&1], "new".into());
        assert_eq!(state.assignments[&1], (10, 4));
        assert_eq!(state.games[&3].plat, "eu".into());
        // Writing the whole state uses the new layout only.
        let fresh = ops_of_state(&state);
        assert!(fresh.iter().all(|op| !is_split_layout(op.key())));
        let mut rewritten = BTreeMap::new();
        apply(&mut rewritten, &fresh);
        assert_eq!(loaded(&rewritten), state);
        assert!(!is_split_layout(b"assignment/1") && !is_split_layout(b"name"));
    }

    #[test]
    fn damaged_keys_and_values_are_errors_naming_the_key() {
        let mut s = State::default();
        for (k, v) in [
            (&b"assign/1"[..], &[0u8, 0, 0][..]),
            (b"assign/x", &[0, 0, 0, 1, 0, 1]),
            (b"nonsense/1", b""),
            (b"nokind", b""),
            (b"whitelist-version", b"\x01"),
            (b"\xff/1", b""),
            (b"server/1", &[8]),
            (b"server/1", &[4, 0, 0]),
            (b"server/1", &[0, 0]),
            (b"drain/1", b"x"),
        ] {
            let err = load(&mut s, k, v).expect_err("refused");
            assert!(err.starts_with("key "), "{err}");
        }
    }
}
