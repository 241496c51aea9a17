//! Journaling of facts: what a GAME_INFO or CROSS_INFO says that the durable record does not
//! hold yet, and the assignments the allocator settled, appended to the accumulating batch.

use super::alloc::ServId;
use super::Cluster;
use crate::proto::{CrossInfo, GameInfo};
use crate::state::Record;

impl Cluster {
    /// Records what a GAME_INFO says that the durable record does not hold yet (its name,
    /// platform, open_time and address), so a restart knows every game node ever heard from.
    pub(super) fn journal_game_facts(&mut self, serv: ServId, info: &GameInfo<'_>) {
        let known = self.alloc.game(serv);
        if known.map_or("", |g| &*g.name) != info.serv_name {
            Record::Name {
                serv,
                name: info.serv_name.into(),
            }
            .encode(&mut self.journal);
        }
        let same = known.is_some_and(|g| {
            g.plat.map(|p| self.alloc.platforms.name(p)) == Some(info.cross_plat)
                && g.open_time == info.open_time
                && *g.addr == *info.addr
        });
        if !same {
            Record::Game {
                serv,
                plat: info.cross_plat.into(),
                open_time: info.open_time,
                addr: info.addr.into(),
            }
            .encode(&mut self.journal);
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
            .encode(&mut self.journal);
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
            // The name is journaled by GAME_INFO itself (journal_game_facts).
            Record::Assign { serv, cross, pos }.encode(&mut self.journal);
            self.stats.assignments += 1;
        }
        self.changes.settled.clear();
    }
}
