//! The announcements a mutation of the allocator owes ([`Changes`]), and how one event's
//! repeats fold into one frame each. Separate: it is the allocator's output, not its rule.

use super::{CrossId, ServId};

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
