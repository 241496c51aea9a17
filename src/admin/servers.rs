//! The game servers of one platform as server lists show them, shared by the operators'
//! `GET /api/servers` and the players' `GET /public/servers/<plat>`.
//!
//! [`platform_servers`] is the one place that decides which servers a platform lists and
//! where their fields come from, so a change in what the cluster remembers about offline
//! servers is made here only.

use crate::cluster::alloc::ServId;
use crate::cluster::{Cluster, GameStatus, NodeDetails, NodeKey};
use crate::proto::NodeType;

/// One game server of a platform's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEntry<'a> {
    /// serv_id.
    pub id: ServId,
    /// Its serv_name ("" if it never said).
    pub name: &'a str,
    /// The address players use; `None` while it is offline.
    pub addr: Option<&'a str>,
    /// Unix seconds it opened (or opens); `None` while it is offline.
    pub open_time: Option<u32>,
    /// Its status from connection, maintenance flag and player count.
    pub status: GameStatus,
}

/// The game servers of platform `plat` that the login node knows, online or not, by id.
/// Empty for a platform it never heard of.
///
/// The known servers are the allocator's game records: every game node that ever sent a
/// GAME_INFO (durable across restarts); an offline one is listed with the address and open
/// time its last GAME_INFO gave.
pub fn platform_servers<'a>(cluster: &'a Cluster, plat: &str) -> Vec<ServerEntry<'a>> {
    let alloc = cluster.allocator();
    let Some(plat_id) = alloc.platforms.get(plat) else {
        return Vec::new();
    };
    let mut list: Vec<ServerEntry<'a>> = alloc
        .games()
        .filter(|(_, g)| g.plat == Some(plat_id))
        .map(|(id, g)| {
            let key = NodeKey {
                node_type: NodeType::Game,
                node_id: id,
            };
            let (addr, open_time) = match cluster.node(key).map(|n| n.info) {
                Some(NodeDetails::Game {
                    addr, open_time, ..
                }) => (Some(&**addr), Some(*open_time)),
                _ => (Some(&*g.addr), Some(g.open_time)),
            };
            ServerEntry {
                id,
                name: &g.name,
                addr,
                open_time,
                status: cluster.game_status(id),
            }
        })
        .collect();
    list.sort_unstable_by_key(|e| e.id);
    list
}
