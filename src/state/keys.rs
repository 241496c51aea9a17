//! The durable state as keys and values, one key per fact, shared by every backend (the
//! embedded database today, a replicated store next): backends differ only in how a batch of
//! [`Op`]s is applied, never in what the keys mean.
//!
//! | key | value |
//! |---|---|
//! | `assign/<serv_id>` | cross_server_id u32, cross_pos u16 |
//! | `name/<serv_id>` | serv_name (UTF-8, whole) |
//! | `game/<serv_id>` | cross_plat str, open_time u32, addr str |
//! | `cross/<cross_server_id>` | cross_node_name str, cross_plat str, reported capacity u16 |
//! | `capacity/<cross_server_id>` | operator override u16 |
//! | `drain/<cross_server_id>` | empty |
//! | `maintenance/<serv_id>` | empty |
//! | `whitelist/<entry>` | empty |
//! | `whitelist-version` | u32 |
//!
//! Integers are big-endian and `str` is a u16 length then UTF-8, as on the wire. Keys are text
//! so that an operator reading the store sees what each one is.

use super::{CrossFacts, GameFacts, Record, State};
use crate::proto::wire::{put_str, put_u16, put_u32, Reader};

/// One change to the store: put a value, or delete a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key`.
    Delete(Vec<u8>),
}

/// The key of the whitelist's version.
pub const WHITELIST_VERSION: &[u8] = b"whitelist-version";

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

/// The ops that apply `records` (in their order). The whitelist's version is written once,
/// after the entries of the batch.
pub fn ops(records: &[Record]) -> Vec<Op> {
    let mut out = Vec::with_capacity(records.len() + 1);
    let mut version = None;
    for r in records {
        out.push(match r {
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
            Record::WhitelistAdd { version: n, entry } => {
                version = Some(*n);
                Op::Put(key_of("whitelist", entry), Vec::new())
            }
            Record::WhitelistRemove { version: n, entry } => {
                version = Some(*n);
                Op::Delete(key_of("whitelist", entry))
            }
            Record::WhitelistVersion { version: n } => {
                version = Some(*n);
                continue;
            }
            Record::Maintenance { serv, on: true } => {
                Op::Put(key("maintenance", *serv), Vec::new())
            }
            Record::Maintenance { serv, on: false } => Op::Delete(key("maintenance", *serv)),
            Record::Capacity { cross, capacity: 0 } => Op::Delete(key("capacity", *cross)),
            Record::Capacity { cross, capacity } => {
                Op::Put(key("capacity", *cross), capacity.to_be_bytes().to_vec())
            }
            Record::Drain { cross, on: true } => Op::Put(key("drain", *cross), Vec::new()),
            Record::Drain { cross, on: false } => Op::Delete(key("drain", *cross)),
            Record::End { .. } => continue,
        });
    }
    if let Some(n) = version {
        out.push(Op::Put(
            WHITELIST_VERSION.to_vec(),
            n.to_be_bytes().to_vec(),
        ));
    }
    out
}

/// Every op that writes `state` into an empty store (a migration, a test fixture).
pub fn ops_of_state(state: &State) -> Vec<Op> {
    ops(&state.records())
}

/// Loads one stored key into `state`. Unknown keys are an error (a newer version's store, or
/// damage), named with the key.
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
        "assign" => {
            let slot = (r.u32().map_err(e)?, r.u16().map_err(e)?);
            state.assignments.insert(id, slot);
        }
        "name" => {
            let name = std::str::from_utf8(value).map_err(|_| bad("name is not UTF-8"))?;
            state.names.insert(id, name.into());
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
        ] {
            let err = load(&mut s, k, v).expect_err("refused");
            assert!(err.starts_with("key "), "{err}");
        }
    }
}
