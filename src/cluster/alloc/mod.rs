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

//!
//! The rule lives here (records, rankings, queues, online/offline); its neighbours hold the
//! platform table (`platforms`), the announcements owed (`changes`), the operator's
//! overrides (`overrides`) and the start-up restore (`restore`).

mod changes;
mod overrides;
mod platforms;
mod restore;
#[cfg(test)]
mod testing;

pub use changes::Changes;
pub use overrides::MoveError;
pub use platforms::{Platforms, PlatformsFull, MAX_PLATFORMS, MAX_PLATFORM_BYTES};

use hashbrown::HashMap;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

/// A game node's serv_id (= its node_id).
pub type ServId = u32;
/// A cross node's cross_server_id.
pub type CrossId = u32;
/// An interned platform name.
pub type PlatId = u32;

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
    use super::testing::{assignment, changes, setup};

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
}
