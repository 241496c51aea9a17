//! Loading durable state into the allocator at start-up (assignments, capacity overrides,
//! drains, what game and cross nodes last said of themselves). Separate: it writes records
//! directly, outside the rule, and owes no announcements.

use super::{Allocator, CrossId, CrossRecord, ServId};

impl Allocator {
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
}
