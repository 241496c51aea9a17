//! Journaling of facts: what a GAME_INFO or CROSS_INFO says that the durable record does not
//! hold yet, and the assignments the allocator settled, appended to the accumulating batch.

use super::alloc::ServId;
use super::Cluster;
use crate::proto::{CrossInfo, GameInfo};
use crate::state::{record, Record};

impl Cluster {
    /// Records what a GAME_INFO says that the durable record does not hold yet (its name,
    /// platform, open_time and address), so a restart knows every game node ever heard from.
    /// The record carries the node's whole entry (the store keeps one key per game node); its
    /// slot is the one already journaled, since every earlier change was settled when the
    /// event that made it ended.
    pub(super) fn journal_game_facts(&mut self, serv: ServId, info: &GameInfo<'_>) {
        let known = self.alloc.game(serv);
        let same_name = known.is_some_and(|g| *g.name == *info.serv_name);
        let same_facts = known.is_some_and(|g| {
            g.plat.map(|p| self.alloc.platforms.name(p)) == Some(info.cross_plat)
                && g.open_time == info.open_time
                && *g.addr == *info.addr
        });
        if same_name && same_facts {
            return;
        }
        let facts = (info.cross_plat, info.open_time, info.addr);
        let slot = known.and_then(|g| g.assignment);
        record::encode_server_in_batch(
            &mut self.journal,
            serv,
            Some(info.serv_name),
            Some(facts),
            slot,
        );
        if !same_facts {
            self.alloc
                .restore_game(serv, info.cross_plat, info.open_time, info.addr);
        }
    }

    /// Records what a CROSS_INFO says that the durable record does not hold yet.
    pub(super) fn journal_cross_facts(&mut self, info: &CrossInfo<'_>) {
        let same = self.alloc.cross(info.cross_server_id).is_some_and(|c| {
            c.name.as_deref() == Some(info.cross_node_name)
                && c.plat.map(|p| self.alloc.platforms.name(p)) == Some(info.cross_plat)
                && c.reported_capacity == info.capacity
        });
        if !same {
            Record::Cross {
                cross: info.cross_server_id,
                name: info.cross_node_name.into(),
                plat: info.cross_plat.into(),
                capacity: info.capacity,
            }
            .encode_in_batch(&mut self.journal);
        }
    }

    /// Journals the assignments the allocator just settled.
    pub(super) fn journal_settled(&mut self) {
        for &serv in &self.changes.settled {
            let Some(g) = self.alloc.game(serv) else {
                continue;
            };
            let Some((cross, pos)) = g.assignment else {
                continue;
            };
            // The whole entry, from what the allocator holds: its name and facts are the ones
            // journal_game_facts (or the start-up load) gave it. A node that never sent a
            // GAME_INFO (adopted from a cross node's list) has no platform and so no facts.
            let name = (!g.name.is_empty()).then_some(&*g.name);
            let plat = g.plat.map(|p| self.alloc.platforms.name(p));
            let facts = plat.map(|plat| (plat, g.open_time, &*g.addr));
            record::encode_server_in_batch(
                &mut self.journal,
                serv,
                name,
                facts,
                Some((cross, pos)),
            );
            self.stats.assignments += 1;
        }
        self.changes.settled.clear();
    }
}
