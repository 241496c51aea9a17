//! Durable state: what must survive a restart (cross assignments, every game and cross node
//! ever heard from, the whitelist, maintenance flags, operator capacity overrides and drain
//! flags).
//!
//! The data path: the cluster appends [`Record`]s (in event order) to its pending batch while
//! it handles a loop turn, and holds every frame that announces them (CROSS_ASSIGN,
//! CROSS_MEMBERS, STATUS_PUSH, WHITELIST_DELTA, the admin API's 200). At the end of the turn
//! the reactor hands the batch to the [`worker`] thread (one batch in flight; the next turns
//! accumulate the following one), which makes it durable as one transaction and wakes the
//! loop; only then are the held frames released.
//!
//! - [`record`]: the record bytes (the batch format, and the files of earlier versions).
//! - [`keys`]: the state as keys and values, shared by every backend (one key per fact).
//! - [`db`]: the embedded database (SQLite in WAL mode): one file, one transaction per batch.
//! - [`legacy`]: reads a state directory written by the journal of earlier versions, once.
//! - [`worker`]: the store thread.
//! - [`State`]: the plain data a start-up load produces, handed to the cluster.

pub mod db;
#[cfg(feature = "etcd")]
pub mod etcd;
#[cfg(feature = "etcd")]
pub mod group;
#[cfg(feature = "etcd")]
pub mod grpc;
pub mod keys;
pub mod legacy;
pub mod record;
pub mod worker;

pub use db::{Db, StoreError};
pub use record::{Corrupt, Record, MAX_ENTRY_LEN};
pub use worker::{Batch, Done, StoreEvent, StoreThread, TxnStat};

use hashbrown::{HashMap, HashSet};

/// What a game node's last GAME_INFO said of itself.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GameFacts {
    /// cross_plat.
    pub plat: Box<str>,
    /// open_time.
    pub open_time: u32,
    /// The address players use.
    pub addr: Box<str>,
}

/// What a cross node's last CROSS_INFO said of itself.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CrossFacts {
    /// cross_node_name.
    pub name: Box<str>,
    /// cross_plat.
    pub plat: Box<str>,
    /// The capacity it reported (0 = the default).
    pub capacity: u16,
}

/// Everything the durable state holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct State {
    /// serv_id -> (cross_server_id, cross_pos).
    pub assignments: HashMap<u32, (u32, u16)>,
    /// serv_id -> last serv_name heard.
    pub names: HashMap<u32, Box<str>>,
    /// Whitelist version (0 = never changed).
    pub whitelist_version: u32,
    /// Whitelist entries.
    pub whitelist: HashSet<Box<str>>,
    /// Game nodes in maintenance.
    pub maintenance: HashSet<u32>,
    /// Operator capacity overrides by cross_server_id.
    pub capacity: HashMap<u32, u16>,
    /// Draining cross nodes.
    pub draining: HashSet<u32>,
    /// serv_id -> what its last GAME_INFO said.
    pub games: HashMap<u32, GameFacts>,
    /// cross_server_id -> what its last CROSS_INFO said.
    pub crosses: HashMap<u32, CrossFacts>,
}

impl State {
    /// Applies one record. Replaying a record that is already reflected changes nothing.
    pub fn apply(&mut self, record: &Record) {
        match record {
            Record::Assign { serv, cross, pos } => {
                self.assignments.insert(*serv, (*cross, *pos));
            }
            Record::Name { serv, name } => {
                self.names.insert(*serv, name.clone());
            }
            Record::WhitelistAdd { version, entry } => {
                if *version > self.whitelist_version {
                    self.whitelist.insert(entry.clone());
                    self.whitelist_version = *version;
                }
            }
            Record::WhitelistRemove { version, entry } => {
                if *version > self.whitelist_version {
                    self.whitelist.remove(entry);
                    self.whitelist_version = *version;
                }
            }
            Record::WhitelistVersion { version } => {
                self.whitelist_version = self.whitelist_version.max(*version)
            }
            Record::Maintenance { serv, on } => {
                if *on {
                    self.maintenance.insert(*serv);
                } else {
                    self.maintenance.remove(serv);
                }
            }
            Record::Capacity { cross, capacity } => {
                if *capacity == 0 {
                    self.capacity.remove(cross);
                } else {
                    self.capacity.insert(*cross, *capacity);
                }
            }
            Record::Drain { cross, on } => {
                if *on {
                    self.draining.insert(*cross);
                } else {
                    self.draining.remove(cross);
                }
            }
            Record::Game {
                serv,
                plat,
                open_time,
                addr,
            } => {
                self.games.insert(
                    *serv,
                    GameFacts {
                        plat: plat.clone(),
                        open_time: *open_time,
                        addr: addr.clone(),
                    },
                );
            }
            Record::Cross {
                cross,
                name,
                plat,
                capacity,
            } => {
                self.crosses.insert(
                    *cross,
                    CrossFacts {
                        name: name.clone(),
                        plat: plat.clone(),
                        capacity: *capacity,
                    },
                );
            }
            Record::Server(s) => {
                match &s.name {
                    Some(name) => self.names.insert(s.serv, name.clone()),
                    None => self.names.remove(&s.serv),
                };
                match &s.facts {
                    Some(facts) => self.games.insert(s.serv, facts.clone()),
                    None => self.games.remove(&s.serv),
                };
                match s.slot {
                    Some(slot) => self.assignments.insert(s.serv, slot),
                    None => self.assignments.remove(&s.serv),
                };
            }
            Record::End { .. } => {}
        }
    }

    /// Every game node the state knows of, as one whole record each (its name, facts and
    /// slot: what its `server/` key holds), in no particular order.
    pub fn servers(&self) -> impl Iterator<Item = record::ServerRecord> + '_ {
        let mut seen = HashSet::new();
        let ids = self.names.keys().chain(self.games.keys());
        ids.chain(self.assignments.keys())
            .filter(move |&&serv| seen.insert(serv))
            .map(|&serv| record::ServerRecord {
                serv,
                name: self.names.get(&serv).cloned(),
                facts: self.games.get(&serv).cloned(),
                slot: self.assignments.get(&serv).copied(),
            })
    }

    /// Checks that no slot is held by two game nodes (a replay that finds one refuses to start).
    pub fn check(&self) -> Result<(), String> {
        let mut held: HashMap<(u32, u16), u32> = HashMap::with_capacity(self.assignments.len());
        for (&serv, &slot) in &self.assignments {
            if let Some(other) = held.insert(slot, serv) {
                return Err(format!(
                    "cross {} slot {} is held by both game {} and game {}",
                    slot.0,
                    slot.1,
                    other.min(serv),
                    other.max(serv)
                ));
            }
        }
        Ok(())
    }

    /// The whole state as records that set every fact (whitelist entries with version 0,
    /// then the version), in no particular order.
    pub fn records(&self) -> Vec<Record> {
        let mut out = Vec::new();
        for (&serv, &(cross, pos)) in &self.assignments {
            out.push(Record::Assign { serv, cross, pos });
        }
        for (&serv, name) in &self.names {
            let name = name.clone();
            out.push(Record::Name { serv, name });
        }
        for (&serv, g) in &self.games {
            let (plat, open_time, addr) = (g.plat.clone(), g.open_time, g.addr.clone());
            out.push(Record::Game {
                serv,
                plat,
                open_time,
                addr,
            });
        }
        for (&cross, c) in &self.crosses {
            let (name, plat, capacity) = (c.name.clone(), c.plat.clone(), c.capacity);
            out.push(Record::Cross {
                cross,
                name,
                plat,
                capacity,
            });
        }
        for entry in &self.whitelist {
            let entry = entry.clone();
            out.push(Record::WhitelistAdd { version: 0, entry });
        }
        out.push(Record::WhitelistVersion {
            version: self.whitelist_version,
        });
        for &serv in &self.maintenance {
            out.push(Record::Maintenance { serv, on: true });
        }
        for (&cross, &capacity) in &self.capacity {
            out.push(Record::Capacity { cross, capacity });
        }
        for &cross in &self.draining {
            out.push(Record::Drain { cross, on: true });
        }
        out
    }

    /// Appends the whole state as snapshot records of the earlier file format (ending with
    /// [`Record::End`]); tests and the fuzzers write legacy snapshots with it.
    #[doc(hidden)]
    pub fn encode_snapshot(&self, out: &mut Vec<u8>) {
        let records = self.records();
        records.iter().for_each(|r| r.encode(out));
        Record::End {
            count: records.len() as u64,
        }
        .encode(out);
    }

    /// Rebuilds a state from legacy snapshot records (entries carry version 0 there).
    pub(crate) fn load_snapshot(records: &[Record]) -> State {
        let mut state = State::default();
        for r in records {
            match r {
                Record::WhitelistAdd { entry, .. } => {
                    state.whitelist.insert(entry.clone());
                }
                other => state.apply(other),
            }
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaying_a_journal_twice_changes_nothing() {
        let records = [
            Record::Assign {
                serv: 1,
                cross: 10,
                pos: 1,
            },
            Record::WhitelistAdd {
                version: 1,
                entry: "a".into(),
            },
            Record::WhitelistAdd {
                version: 2,
                entry: "b".into(),
            },
            Record::WhitelistRemove {
                version: 3,
                entry: "a".into(),
            },
            Record::Assign {
                serv: 1,
                cross: 11,
                pos: 4,
            },
            Record::Maintenance { serv: 1, on: true },
        ];
        let mut once = State::default();
        records.iter().for_each(|r| once.apply(r));
        let mut twice = once.clone();
        records.iter().for_each(|r| twice.apply(r));
        assert_eq!(once, twice);
        assert_eq!(once.assignments[&1], (11, 4));
        assert_eq!(once.whitelist_version, 3);
        assert!(once.whitelist.contains("b") && !once.whitelist.contains("a"));
    }

    #[test]
    fn snapshot_round_trips_and_check_finds_double_slots() {
        let mut s = State::default();
        s.assignments.insert(1, (10, 1));
        s.assignments.insert(2, (10, 2));
        s.names.insert(1, "one".into());
        s.whitelist.insert("x".into());
        s.whitelist_version = 9;
        s.maintenance.insert(2);
        s.capacity.insert(10, 5);
        s.draining.insert(10);
        let mut bytes = record::SNAPSHOT_MAGIC.to_vec();
        s.encode_snapshot(&mut bytes);
        let scan = record::scan(&bytes, record::SNAPSHOT_MAGIC).expect("scan");
        assert_eq!(State::load_snapshot(&scan.records), s);
        assert!(s.check().is_ok());
        s.assignments.insert(3, (10, 2));
        assert!(s.check().unwrap_err().contains("slot 2"));
    }
}
