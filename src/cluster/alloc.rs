//! Cross allocation (contract section 5) as plain data: game and cross records, per-platform
//! rankings of online cross nodes and FIFO waiting queues. Every mutation records what must be
//! announced in [`Changes`]; the cluster turns those into CROSS_ASSIGN / CROSS_MEMBERS frames.
//!
//! Records outlive connections: a game node's assignment (cross_server_id, cross_pos) and a
//! cross node's members stay when either goes offline, so a restart of any party changes
//! nothing. Only an operator move changes an assignment once made.
//!
//! Complexity: picking a cross node is O(log n) in the platform's online cross nodes (a
//! `BTreeSet` ordered by most free slots, then lowest id); the lowest free slot is found from
//! a per-cross "everything below is taken" hint, amortised O(log n).

use hashbrown::HashMap;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A game node's serv_id (= its node_id).
pub type ServId = u32;
/// A cross node's cross_server_id.
pub type CrossId = u32;
/// An interned platform name.
pub type PlatId = u32;

/// Distinct cross platforms interned at most. Records refer to them for good (an assignment
/// outlives every connection), so their number and size are bounded instead of freed.
pub const MAX_PLATFORMS: usize = 65_536;
/// Bytes of platform names interned at most (each name counted with a 32-byte overhead).
pub const MAX_PLATFORM_BYTES: usize = 4 << 20;

/// The platform table is full: a new cross_plat is refused (a clear protocol error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformsFull;

/// Platform names interned to small ids, so records hold 4 bytes instead of a string. Each
/// name is stored once (the id map and the id-to-name list share it).
#[derive(Default)]
pub struct Platforms {
    ids: HashMap<Arc<str>, PlatId>,
    names: Vec<Arc<str>>,
    bytes: usize,
}

impl Platforms {
    /// The id of `name`, interning it on first sight; a new name past [`MAX_PLATFORMS`] or
    /// [`MAX_PLATFORM_BYTES`] is refused.
    pub fn intern(&mut self, name: &str) -> Result<PlatId, PlatformsFull> {
        if let Some(id) = self.ids.get(name) {
            return Ok(*id);
        }
        let cost = name.len() + 32;
        if self.names.len() >= MAX_PLATFORMS || self.bytes + cost > MAX_PLATFORM_BYTES {
            return Err(PlatformsFull);
        }
        self.bytes += cost;
        let id = self.names.len() as PlatId;
        let name: Arc<str> = Arc::from(name);
        self.names.push(Arc::clone(&name));
        self.ids.insert(name, id);
        Ok(id)
    }

    /// The id of `name` if it was ever interned.
    pub fn get(&self, name: &str) -> Option<PlatId> {
        self.ids.get(name).copied()
    }

    /// The name of an interned id ("" for an unknown id).
    pub fn name(&self, id: PlatId) -> &str {
        self.names.get(id as usize).map_or("", |s| s)
    }
}

/// What the login node knows of a game node, online or not.
#[derive(Debug, Clone, Default)]
pub struct GameRecord {
    /// Last serv_name heard; empty if it never connected (adopted from a cross node's list).
    pub name: Box<str>,
    /// Its cross assignment: (cross_server_id, cross_pos).
    pub assignment: Option<(CrossId, u16)>,
    /// Online (INFO received on a live connection).
    pub online: bool,
    /// The cross_plat of its last GAME_INFO.
    pub plat: Option<PlatId>,
    /// The open_time of its last GAME_INFO.
    pub open_time: u32,
    /// The player address of its last GAME_INFO.
    pub addr: Box<str>,
    /// Its place in its platform's waiting queue, while it waits.
    waiting: Option<u64>,
}

impl GameRecord {
    /// True while it is online and waiting for a free slot.
    pub fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }
}

/// What the login node knows of a cross node, online or not.
#[derive(Debug, Clone, Default)]
pub struct CrossRecord {
    /// Its platform; `None` until it has connected.
    pub plat: Option<PlatId>,
    /// Its name; `None` until it has connected (game nodes assigned to it wait till then).
    pub name: Option<Box<str>>,
    /// Effective capacity: the operator's override, else the reported one (0 = the default).
    pub capacity: u16,
    /// The capacity its CROSS_INFO reported (0 = the default), kept for when an override is cleared.
    pub reported_capacity: u16,
    /// Draining: keeps its members but is never picked for a new game node.
    pub draining: bool,
    /// Online (CROSS_INFO received on a live connection).
    pub online: bool,
    /// Members by slot.
    pub members: BTreeMap<u16, ServId>,
    /// Every slot below this is taken.
    lowest_free_hint: u16,
    /// Its key in its platform's ranking while online.
    ranked: Option<(Reverse<u32>, CrossId)>,
}

impl CrossRecord {
    /// Free slots: capacity minus members, never below zero.
    pub fn free(&self) -> u32 {
        (self.capacity as usize).saturating_sub(self.members.len()) as u32
    }

    fn lowest_free_slot(&mut self) -> Option<u16> {
        let mut pos = self.lowest_free_hint.max(1);
        while self.members.contains_key(&pos) {
            pos = pos.checked_add(1)?;
        }
        self.lowest_free_hint = pos;
        Some(pos)
    }

    fn take_slot(&mut self, pos: u16, serv: ServId) {
        self.members.insert(pos, serv);
    }

    fn release_slot(&mut self, pos: u16) {
        self.members.remove(&pos);
        if pos < self.lowest_free_hint {
            self.lowest_free_hint = pos;
        }
    }
}

#[derive(Default)]
struct Platform {
    /// Online cross nodes of this platform: most free first, ties to the lowest id.
    ranking: BTreeSet<(Reverse<u32>, CrossId)>,
    /// Waiting game nodes in arrival order.
    waiting: BTreeMap<u64, ServId>,
}

/// Announcements owed after a mutation. Drained by the cluster after every event.
#[derive(Debug, Default)]
pub struct Changes {
    /// Game nodes to (re)send CROSS_ASSIGN to, if online and their cross node's name is known.
    pub assign: Vec<ServId>,
    /// Cross nodes to send CROSS_MEMBERS to, if online.
    pub members: Vec<CrossId>,
    /// Game nodes whose assignment changed (to make durable before it is announced).
    pub settled: Vec<ServId>,
}

impl Changes {
    /// True when nothing is owed.
    pub fn is_empty(&self) -> bool {
        self.assign.is_empty() && self.members.is_empty() && self.settled.is_empty()
    }

    /// Removes repeats (several changes of one event fold into one frame each).
    pub fn dedup(&mut self) {
        self.assign.sort_unstable();
        self.assign.dedup();
        self.members.sort_unstable();
        self.members.dedup();
        // Settled assignments keep their event order: a move that frees a slot is recorded
        // before the waiting node that takes it, so every prefix of the records is valid.
        dedup_in_order(&mut self.settled);
    }
}

/// Removes repeats, keeping each value's first place.
fn dedup_in_order(v: &mut Vec<ServId>) {
    if v.len() <= 32 {
        let mut i = 0;
        while i < v.len() {
            if v[..i].contains(&v[i]) {
                v.remove(i);
            } else {
                i += 1;
            }
        }
    } else {
        let mut seen = hashbrown::HashSet::with_capacity(v.len());
        v.retain(|x| seen.insert(*x));
    }
}

/// Why an operator move was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveError {
    /// No such game node.
    UnknownGame,
    /// No such cross node.
    UnknownCross,
    /// The requested slot is held by another game node.
    SlotTaken,
    /// The target cross node has no free slot.
    NoFreeSlot,
    /// The target cross node is draining.
    Draining,
    /// The target cross node serves another platform.
    OtherPlatform,
}

impl MoveError {
    /// A sentence for operators.
    pub fn describe(self) -> &'static str {
        match self {
            MoveError::UnknownGame => "no such game node",
            MoveError::UnknownCross => "no such cross node",
            MoveError::SlotTaken => "that slot is held by another game node",
            MoveError::NoFreeSlot => "the cross node has no free slot",
            MoveError::Draining => "the cross node is draining",
            MoveError::OtherPlatform => "the cross node serves another platform",
        }
    }
}

/// The allocator: all records and the rule of section 5.
pub struct Allocator {
    /// Interned platform names.
    pub platforms: Platforms,
    plat_state: Vec<Platform>,
    games: HashMap<ServId, GameRecord>,
    crosses: HashMap<CrossId, CrossRecord>,
    default_capacity: u16,
    /// Operator capacity overrides, applied whenever the cross node (re)connects.
    overrides: HashMap<CrossId, u16>,
    /// False while state cannot be made durable: no new assignments are made.
    allow_new: bool,
    next_seq: u64,
    changes: Changes,
}

impl Allocator {
    /// An empty allocator; cross nodes reporting capacity 0 get `default_capacity`.
    pub fn new(default_capacity: u16) -> Self {
        Allocator {
            platforms: Platforms::default(),
            plat_state: Vec::new(),
            games: HashMap::new(),
            crosses: HashMap::new(),
            default_capacity,
            overrides: HashMap::new(),
            allow_new: true,
            next_seq: 0,
            changes: Changes::default(),
        }
    }

    /// Forgets every record (a failover member that lost its role, or is about to load the
    /// group's state).
    pub fn reset(&mut self) {
        *self = Allocator::new(self.default_capacity);
    }

    /// The record of a game node.
    pub fn game(&self, serv: ServId) -> Option<&GameRecord> {
        self.games.get(&serv)
    }

    /// The record of a cross node.
    pub fn cross(&self, id: CrossId) -> Option<&CrossRecord> {
        self.crosses.get(&id)
    }

    /// Every cross record.
    pub fn crosses(&self) -> impl Iterator<Item = (CrossId, &CrossRecord)> {
        self.crosses.iter().map(|(k, v)| (*k, v))
    }

    /// The waiting game nodes of a platform, in queue order.
    pub fn waiting(&self, plat: PlatId) -> impl Iterator<Item = ServId> + '_ {
        self.plat_state
            .get(plat as usize)
            .into_iter()
            .flat_map(|p| p.waiting.values().copied())
    }

    /// Takes the announcements owed so far, deduplicated.
    pub fn take_changes(&mut self, into: &mut Changes) {
        std::mem::swap(&mut self.changes, into);
        into.dedup();
        self.changes.assign.clear();
        self.changes.members.clear();
        self.changes.settled.clear();
    }

    /// Every game record.
    pub fn games(&self) -> impl Iterator<Item = (ServId, &GameRecord)> {
        self.games.iter().map(|(k, v)| (*k, v))
    }

    /// The platforms that have state (a waiting queue or ranked cross nodes).
    pub fn platform_ids(&self) -> impl Iterator<Item = PlatId> + '_ {
        0..self.plat_state.len() as PlatId
    }

    /// The operator's capacity override of a cross node.
    pub fn capacity_override(&self, id: CrossId) -> Option<u16> {
        self.overrides.get(&id).copied()
    }

    /// Allows or stops new assignments (state not writable). Allowing again assigns the
    /// waiting game nodes of every platform.
    pub fn set_allow_new(&mut self, allow: bool) {
        if self.allow_new == allow {
            return;
        }
        self.allow_new = allow;
        if allow {
            for plat in 0..self.plat_state.len() as PlatId {
                self.drain_waiting(plat);
            }
        }
    }

    /// Restores a durable assignment at start-up (the game node is offline until it connects).
    pub fn restore(&mut self, serv: ServId, cross: CrossId, pos: u16, name: Option<&str>) {
        let default_capacity = self.default_capacity;
        let rec = self.crosses.entry(cross).or_insert_with(|| CrossRecord {
            capacity: default_capacity,
            ..Default::default()
        });
        rec.take_slot(pos, serv);
        let game = self.games.entry(serv).or_default();
        game.assignment = Some((cross, pos));
        if let Some(name) = name {
            game.name = name.into();
        }
    }

    /// Restores a durable drain flag or capacity override at start-up.
    pub fn restore_cross(&mut self, id: CrossId, capacity: Option<u16>, draining: bool) {
        let default_capacity = self.default_capacity;
        let rec = self.crosses.entry(id).or_insert_with(|| CrossRecord {
            capacity: default_capacity,
            ..Default::default()
        });
        rec.draining = draining;
        if let Some(c) = capacity {
            rec.capacity = c;
            self.overrides.insert(id, c);
        }
    }

    /// Sets what a game node's GAME_INFO said of itself (at start-up from the durable
    /// record, or when a GAME_INFO changes it).
    pub fn restore_game(&mut self, serv: ServId, plat: &str, open_time: u32, addr: &str) {
        // Durable platforms were admitted under the same bound, so they fit again.
        let plat = self.platforms.intern(plat).ok();
        let game = self.games.entry(serv).or_default();
        if game.waiting.is_none() && plat.is_some() {
            game.plat = plat;
        }
        game.open_time = open_time;
        if *game.addr != *addr {
            game.addr = addr.into();
        }
    }

    /// Restores the last name of a game node at start-up.
    pub fn restore_name(&mut self, serv: ServId, name: &str) {
        self.games.entry(serv).or_default().name = name.into();
    }

    /// Restores what a cross node's last CROSS_INFO said at start-up: it is known (offline),
    /// so its members are told its name as soon as they return.
    pub fn restore_cross_facts(&mut self, id: CrossId, name: &str, plat: &str, reported: u16) {
        let plat = self.platforms.intern(plat).ok();
        let capacity = match self.overrides.get(&id) {
            Some(&c) => c,
            None if reported == 0 => self.default_capacity,
            None => reported,
        };
        let rec = self.crosses.entry(id).or_default();
        rec.name = Some(name.into());
        rec.plat = plat;
        rec.reported_capacity = reported;
        rec.capacity = capacity;
    }

    fn plat_mut(&mut self, plat: PlatId) -> &mut Platform {
        let idx = plat as usize;
        if self.plat_state.len() <= idx {
            self.plat_state.resize_with(idx + 1, Platform::default);
        }
        &mut self.plat_state[idx]
    }

    /// A game node's GAME_INFO: `cross_plat` (interned), and the assignment it reports.
    pub fn game_online(
        &mut self,
        serv: ServId,
        name: &str,
        plat: PlatId,
        reported: (CrossId, u16),
    ) {
        let rec = self.games.entry(serv).or_default();
        let renamed = *rec.name != *name;
        if renamed {
            rec.name = name.into();
        }
        rec.online = true;
        rec.plat = Some(plat);
        if let Some((cross, _)) = rec.assignment {
            // The record wins over the report; it is sent again.
            if renamed {
                self.changes.members.push(cross);
            }
            self.changes.assign.push(serv);
            return;
        }
        let (reported_cross, reported_pos) = reported;
        if reported_cross != 0 {
            self.adopt(serv, reported_cross, reported_pos);
            return;
        }
        if !self.assign_best(serv, plat) {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.plat_mut(plat).waiting.insert(seq, serv);
            if let Some(rec) = self.games.get_mut(&serv) {
                rec.waiting = Some(seq);
            }
        }
    }

    /// A game node went offline: it keeps its assignment but leaves the waiting queue.
    pub fn game_offline(&mut self, serv: ServId) {
        let Some(rec) = self.games.get_mut(&serv) else {
            return;
        };
        rec.online = false;
        if let (Some(seq), Some(plat)) = (rec.waiting.take(), rec.plat) {
            self.plat_mut(plat).waiting.remove(&seq);
        }
    }

    /// A cross node's CROSS_INFO. `capacity` 0 means the default.
    pub fn cross_online(
        &mut self,
        id: CrossId,
        plat: PlatId,
        name: &str,
        capacity: u16,
        listed: impl IntoIterator<Item = ServId>,
    ) {
        let reported = capacity;
        let capacity = match self.overrides.get(&id) {
            Some(&c) => c,
            None if capacity == 0 => self.default_capacity,
            None => capacity,
        };
        self.unrank(id);
        let rec = self.crosses.entry(id).or_default();
        rec.reported_capacity = reported;
        let renamed = rec.name.as_deref() != Some(name);
        if renamed {
            rec.name = Some(name.into());
        }
        rec.plat = Some(plat);
        rec.capacity = capacity;
        rec.online = true;
        if renamed {
            // Members that waited for the name, or hold an old one, get CROSS_ASSIGN now.
            self.changes.assign.extend(rec.members.values().copied());
        }
        for serv in listed {
            let has_record = self
                .games
                .get(&serv)
                .is_some_and(|g| g.assignment.is_some());
            if !has_record {
                self.adopt(serv, id, 0);
            }
        }
        self.changes.members.push(id);
        self.rank(id);
        self.drain_waiting(plat);
    }

    /// A cross node went offline: it keeps its members; it is no longer picked.
    pub fn cross_offline(&mut self, id: CrossId) {
        self.unrank(id);
        if let Some(rec) = self.crosses.get_mut(&id) {
            rec.online = false;
        }
    }

    /// Operator: override a cross node's capacity (0 = clear the override: back to what it
    /// reported). Waiting nodes may be assigned. False for an unknown cross node.
    pub fn set_capacity(&mut self, id: CrossId, capacity: u16) -> bool {
        let Some(rec) = self.crosses.get_mut(&id) else {
            return false;
        };
        rec.capacity = if capacity != 0 {
            self.overrides.insert(id, capacity);
            capacity
        } else {
            self.overrides.remove(&id);
            match rec.reported_capacity {
                0 => self.default_capacity,
                c => c,
            }
        };
        let plat = rec.plat;
        self.rerank(id);
        if let Some(plat) = plat {
            self.drain_waiting(plat);
        }
        true
    }

    /// Operator: start or stop draining a cross node. False for an unknown cross node.
    pub fn set_drain(&mut self, id: CrossId, on: bool) -> bool {
        let Some(rec) = self.crosses.get_mut(&id) else {
            return false;
        };
        rec.draining = on;
        let plat = rec.plat;
        self.rerank(id);
        if let (false, Some(plat)) = (on, plat) {
            self.drain_waiting(plat);
        }
        true
    }

    /// Operator: move a game node to `to` (slot `pos`, or the lowest free one if 0).
    /// Moves into a full cross node are refused; the game node's old slot is freed.
    pub fn move_game(&mut self, serv: ServId, to: CrossId, pos: u16) -> Result<(), MoveError> {
        let old = self
            .games
            .get(&serv)
            .ok_or(MoveError::UnknownGame)?
            .assignment;
        let game_plat = self.games.get(&serv).and_then(|g| g.plat);
        let target = self.crosses.get_mut(&to).ok_or(MoveError::UnknownCross)?;
        if target.draining {
            return Err(MoveError::Draining);
        }
        if let (Some(a), Some(b)) = (game_plat, target.plat) {
            if a != b {
                return Err(MoveError::OtherPlatform);
            }
        }
        let same_cross = old.is_some_and(|(c, _)| c == to);
        if !same_cross && target.free() == 0 {
            return Err(MoveError::NoFreeSlot);
        }
        if pos != 0 {
            if let Some(holder) = target.members.get(&pos) {
                if *holder != serv {
                    return Err(MoveError::SlotTaken);
                }
            }
        }
        let old_plat = old
            .and_then(|(c, _)| self.crosses.get(&c))
            .and_then(|c| c.plat);
        self.release(serv);
        let target = self.crosses.get_mut(&to).ok_or(MoveError::UnknownCross)?;
        let pos = if pos != 0 {
            pos
        } else {
            target.lowest_free_slot().ok_or(MoveError::NoFreeSlot)?
        };
        self.settle(serv, to, pos);
        // The slot it left is capacity that just appeared: the waiting get it, in order.
        if let Some(plat) = old_plat {
            self.drain_waiting(plat);
        }
        Ok(())
    }

    /// Adopts a reported assignment: the reported slot if free (even past capacity), else the
    /// lowest free one. Never refused for capacity.
    fn adopt(&mut self, serv: ServId, cross: CrossId, reported_pos: u16) {
        let rec = self.crosses.entry(cross).or_insert_with(|| CrossRecord {
            capacity: self.default_capacity,
            ..Default::default()
        });
        let pos = if reported_pos != 0 && !rec.members.contains_key(&reported_pos) {
            reported_pos
        } else {
            match rec.lowest_free_slot() {
                Some(p) => p,
                None => return, // all 65,535 slots taken: nothing can be recorded
            }
        };
        self.settle(serv, cross, pos);
    }

    /// Picks the cross node with the most free slots in `plat`; false if none has one.
    fn assign_best(&mut self, serv: ServId, plat: PlatId) -> bool {
        let Some(&(Reverse(free), cross)) = self
            .plat_state
            .get(plat as usize)
            .and_then(|p| p.ranking.first())
        else {
            return false;
        };
        if free == 0 || !self.allow_new {
            return false;
        }
        let Some(pos) = self
            .crosses
            .get_mut(&cross)
            .and_then(|c| c.lowest_free_slot())
        else {
            return false;
        };
        self.settle(serv, cross, pos);
        true
    }

    /// Records `serv` at (`cross`, `pos`) and owes the announcements.
    fn settle(&mut self, serv: ServId, cross: CrossId, pos: u16) {
        if let Some(rec) = self.crosses.get_mut(&cross) {
            rec.take_slot(pos, serv);
        }
        let game = self.games.entry(serv).or_default();
        game.assignment = Some((cross, pos));
        if let (Some(seq), Some(plat)) = (game.waiting.take(), game.plat) {
            self.plat_mut(plat).waiting.remove(&seq);
        }
        self.rerank(cross);
        self.changes.assign.push(serv);
        self.changes.members.push(cross);
        self.changes.settled.push(serv);
    }

    /// Frees `serv`'s slot, if it has one.
    fn release(&mut self, serv: ServId) {
        let Some((cross, pos)) = self.games.get_mut(&serv).and_then(|g| g.assignment.take()) else {
            return;
        };
        if let Some(rec) = self.crosses.get_mut(&cross) {
            rec.release_slot(pos);
        }
        self.rerank(cross);
        self.changes.members.push(cross);
    }

    /// Assigns waiting game nodes of `plat` in arrival order while free slots remain.
    fn drain_waiting(&mut self, plat: PlatId) {
        loop {
            let Some(p) = self.plat_state.get(plat as usize) else {
                return;
            };
            let Some((_, &serv)) = p.waiting.first_key_value() else {
                return;
            };
            if !self.assign_best(serv, plat) {
                return;
            }
        }
    }

    fn unrank(&mut self, id: CrossId) {
        let Some(rec) = self.crosses.get_mut(&id) else {
            return;
        };
        if let (Some(key), Some(plat)) = (rec.ranked.take(), rec.plat) {
            self.plat_mut(plat).ranking.remove(&key);
        }
    }

    fn rank(&mut self, id: CrossId) {
        let Some(rec) = self.crosses.get_mut(&id) else {
            return;
        };
        let (true, false, Some(plat)) = (rec.online, rec.draining, rec.plat) else {
            return;
        };
        let key = (Reverse(rec.free()), id);
        rec.ranked = Some(key);
        self.plat_mut(plat).ranking.insert(key);
    }

    fn rerank(&mut self, id: CrossId) {
        self.unrank(id);
        self.rank(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(a: &mut Allocator) -> Changes {
        let mut c = Changes::default();
        a.take_changes(&mut c);
        c
    }

    fn setup() -> (Allocator, PlatId) {
        let mut a = Allocator::new(4);
        let p = a.platforms.intern("p1").expect("room");
        (a, p)
    }

    fn assignment(a: &Allocator, serv: ServId) -> Option<(CrossId, u16)> {
        a.game(serv).and_then(|g| g.assignment)
    }

    #[test]
    fn platform_names_are_stored_once_and_bounded() {
        let mut p = Platforms::default();
        let a = p.intern("p1").expect("room");
        assert_eq!(p.intern("p1"), Ok(a), "known names are found, not added");
        assert!(Arc::ptr_eq(
            &p.names[a as usize],
            p.ids.get_key_value("p1").expect("in").0
        ));
        let big = "b".repeat(60_000);
        let mut added = 0;
        while p.intern(&format!("{added}{big}")).is_ok() {
            added += 1;
        }
        assert!(p.bytes <= MAX_PLATFORM_BYTES);
        assert_eq!(
            added,
            (MAX_PLATFORM_BYTES - 34) / 60_033,
            "refused once full"
        );
        assert_eq!(p.intern("p1"), Ok(a), "known names still work when full");
    }

    #[test]
    fn picks_most_free_then_lowest_id_then_lowest_slot() {
        let (mut a, p) = setup();
        a.cross_online(20, p, "c20", 3, []);
        a.cross_online(10, p, "c10", 3, []);
        changes(&mut a);
        a.game_online(1, "g1", p, (0, 0));
        assert_eq!(
            assignment(&a, 1),
            Some((10, 1)),
            "tie -> lowest cross_server_id"
        );
        let c = changes(&mut a);
        assert_eq!((c.assign, c.members), (vec![1], vec![10]));
        a.game_online(2, "g2", p, (0, 0));
        assert_eq!(
            assignment(&a, 2),
            Some((20, 1)),
            "20 has more free slots now"
        );
        a.game_online(3, "g3", p, (0, 0));
        assert_eq!(assignment(&a, 3), Some((10, 2)));
    }

    #[test]
    fn default_capacity_applies_to_zero() {
        let (mut a, p) = setup();
        a.cross_online(1, p, "c", 0, []);
        assert_eq!(a.cross(1).map(|c| c.capacity), Some(4));
    }

    #[test]
    fn only_crosses_of_the_same_platform_are_picked() {
        let (mut a, p) = setup();
        let q = a.platforms.intern("p2").expect("room");
        a.cross_online(1, q, "other", 10, []);
        a.game_online(5, "g", p, (0, 0));
        assert_eq!(assignment(&a, 5), None);
        assert!(a.game(5).is_some_and(|g| g.is_waiting()));
    }

    #[test]
    fn waiting_queue_is_fifo_and_drains_when_capacity_appears() {
        let (mut a, p) = setup();
        a.cross_online(1, p, "c1", 1, []);
        a.game_online(100, "a", p, (0, 0));
        for s in [3, 1, 2] {
            a.game_online(s, "w", p, (0, 0));
        }
        assert_eq!(a.waiting(p).collect::<Vec<_>>(), [3, 1, 2]);
        changes(&mut a);
        a.cross_online(2, p, "c2", 2, []);
        assert_eq!(assignment(&a, 3), Some((2, 1)));
        assert_eq!(assignment(&a, 1), Some((2, 2)));
        assert_eq!(assignment(&a, 2), None);
        assert_eq!(a.waiting(p).collect::<Vec<_>>(), [2]);
        let c = changes(&mut a);
        assert_eq!(c.assign, [1, 3]);
        assert_eq!(c.members, [2]);
        a.set_capacity(1, 2);
        assert_eq!(assignment(&a, 2), Some((1, 2)));
        assert_eq!(a.waiting(p).count(), 0);
    }

    #[test]
    fn a_waiting_node_that_leaves_queues_again_at_the_end() {
        let (mut a, p) = setup();
        a.game_online(1, "a", p, (0, 0));
        a.game_online(2, "b", p, (0, 0));
        a.game_offline(1);
        assert_eq!(a.waiting(p).collect::<Vec<_>>(), [2]);
        a.game_online(1, "a", p, (0, 0));
        assert_eq!(a.waiting(p).collect::<Vec<_>>(), [2, 1]);
    }

    #[test]
    fn offline_members_keep_their_slots_and_records_survive_reconnects() {
        let (mut a, p) = setup();
        a.cross_online(1, p, "c1", 2, []);
        a.game_online(1, "a", p, (0, 0));
        a.game_offline(1);
        a.cross_offline(1);
        a.cross_online(1, p, "c1", 2, []);
        a.game_online(2, "b", p, (0, 0));
        assert_eq!(
            assignment(&a, 2),
            Some((1, 2)),
            "slot 1 still held by offline game 1"
        );
        // Game 1 returns reporting nothing: the record wins.
        a.game_online(1, "a", p, (0, 0));
        assert_eq!(assignment(&a, 1), Some((1, 1)));
        assert!(changes(&mut a).assign.contains(&1));
    }

    #[test]
    fn record_wins_over_report() {
        let (mut a, p) = setup();
        a.cross_online(1, p, "c1", 2, []);
        a.cross_online(2, p, "c2", 2, []);
        a.game_online(7, "g", p, (0, 0));
        assert_eq!(assignment(&a, 7), Some((1, 1)));
        a.game_offline(7);
        changes(&mut a);
        a.game_online(7, "g", p, (2, 2));
        assert_eq!(assignment(&a, 7), Some((1, 1)));
        assert_eq!(changes(&mut a).assign, [7], "record sent again");
        assert!(a.cross(2).is_some_and(|c| c.members.is_empty()));
    }

    #[test]
    fn adoption_keeps_reported_slot_if_free_else_lowest_free() {
        let (mut a, p) = setup();
        a.cross_online(1, p, "c1", 2, []);
        a.game_online(10, "a", p, (1, 2));
        assert_eq!(assignment(&a, 10), Some((1, 2)));
        a.game_online(11, "b", p, (1, 2));
        assert_eq!(
            assignment(&a, 11),
            Some((1, 1)),
            "slot 2 taken -> lowest free"
        );
        // Past capacity: kept if nobody holds it, never refused for capacity.
        a.game_online(12, "c", p, (1, 9));
        assert_eq!(assignment(&a, 12), Some((1, 9)));
        a.game_online(13, "d", p, (1, 9));
        assert_eq!(assignment(&a, 13), Some((1, 3)));
        assert_eq!(
            a.cross(1).map(|c| c.free()),
            Some(0),
            "free never below zero"
        );
    }

    #[test]
    fn adoption_to_an_unknown_cross_waits_for_its_name() {
        let (mut a, p) = setup();
        a.game_online(10, "a", p, (77, 3));
        assert_eq!(assignment(&a, 10), Some((77, 3)));
        assert!(a.cross(77).is_some_and(|c| c.name.is_none() && !c.online));
        changes(&mut a);
        a.cross_online(77, p, "c77", 5, []);
        let c = changes(&mut a);
        assert_eq!(c.assign, [10], "CROSS_ASSIGN owed once the name is known");
        assert_eq!(c.members, [77]);
    }

    #[test]
    fn cross_list_adopts_unrecorded_servers_in_order_at_lowest_free_slots() {
        let (mut a, p) = setup();
        a.cross_online(2, p, "c2", 4, []);
        a.game_online(5, "e", p, (0, 0)); // recorded at (2, 1)
        a.cross_offline(2);
        a.cross_online(1, p, "c1", 4, [30, 5, 20, 30]);
        assert_eq!(assignment(&a, 30), Some((1, 1)));
        assert_eq!(assignment(&a, 20), Some((1, 2)));
        assert_eq!(
            assignment(&a, 5),
            Some((2, 1)),
            "record wins over the cross node's list"
        );
        assert_eq!(
            a.game(30).map(|g| g.name.as_ref()),
            Some(""),
            "never connected: empty name"
        );
    }

    #[test]
    fn a_waiting_node_listed_by_a_cross_is_adopted_and_leaves_the_queue() {
        let (mut a, p) = setup();
        a.game_online(9, "w", p, (0, 0));
        assert!(a.game(9).is_some_and(|g| g.is_waiting()));
        a.cross_online(1, p, "c1", 4, [9]);
        assert_eq!(assignment(&a, 9), Some((1, 1)));
        assert_eq!(a.waiting(p).count(), 0);
    }

    #[test]
    fn rename_owes_members_to_the_cross() {
        let (mut a, p) = setup();
        a.cross_online(1, p, "c1", 4, []);
        a.game_online(9, "old", p, (0, 0));
        a.game_offline(9);
        changes(&mut a);
        a.game_online(9, "new", p, (0, 0));
        assert_eq!(changes(&mut a).members, [1]);
        a.game_offline(9);
        a.game_online(9, "new", p, (0, 0));
        assert!(
            changes(&mut a).members.is_empty(),
            "same name: no new member list"
        );
    }

    #[test]
    fn lowest_free_slot_reuses_released_slots() {
        let (mut a, p) = setup();
        a.cross_online(1, p, "c1", 3, []);
        a.cross_online(2, p, "c2", 3, []);
        for s in 1..=3 {
            a.game_online(s, "g", p, (0, 0));
        }
        // 1 -> (1,1), 2 -> (2,1), 3 -> (1,2)
        assert_eq!(a.move_game(1, 2, 0), Ok(()));
        assert_eq!(assignment(&a, 1), Some((2, 2)));
        a.game_online(4, "g", p, (0, 0));
        assert_eq!(
            assignment(&a, 4),
            Some((1, 1)),
            "freed slot 1 is the lowest again"
        );
    }

    #[test]
    fn moves_are_checked() {
        let (mut a, p) = setup();
        a.cross_online(1, p, "c1", 1, []);
        a.cross_online(2, p, "c2", 1, []);
        a.game_online(1, "a", p, (0, 0));
        a.game_online(2, "b", p, (0, 0));
        assert_eq!(a.move_game(1, 2, 0), Err(MoveError::NoFreeSlot));
        assert_eq!(a.move_game(9, 2, 0), Err(MoveError::UnknownGame));
        assert_eq!(a.move_game(1, 9, 0), Err(MoveError::UnknownCross));
        a.set_capacity(2, 3);
        assert_eq!(a.move_game(1, 2, 1), Err(MoveError::SlotTaken));
        assert_eq!(a.move_game(1, 2, 3), Ok(()));
        assert_eq!(assignment(&a, 1), Some((2, 3)));
    }

    #[test]
    fn a_slot_freed_by_a_move_goes_to_the_oldest_waiting_node() {
        // Found by tests/properties.rs: a waiting node stayed queued beside a free slot.
        let (mut a, p) = setup();
        a.cross_online(1, p, "c1", 1, []);
        a.game_online(10, "a", p, (0, 0)); // takes 1/1: cross 1 is full
        a.game_online(11, "b", p, (9, 0)); // adopted by cross 9, never online (not ranked)
        a.game_online(12, "c", p, (0, 0));
        a.game_online(13, "d", p, (0, 0));
        assert_eq!(a.waiting(p).collect::<Vec<_>>(), [12, 13]);
        // The operator moves 10 to cross 9: its slot on cross 1 goes to the oldest waiter.
        assert_eq!(a.move_game(10, 9, 0), Ok(()));
        assert_eq!(assignment(&a, 12), Some((1, 1)));
        assert_eq!(a.waiting(p).collect::<Vec<_>>(), [13]);
    }
}
