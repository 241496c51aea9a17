//! The operator's overrides of the rule of section 5: capacity overrides, drains and moves
//! of a game node to another cross node (and why a move is refused). Separate from the rule
//! itself, which never moves an assignment once made.

use super::{Allocator, CrossId, ServId};

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

impl Allocator {
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
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assignment, setup};
    use super::*;

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
