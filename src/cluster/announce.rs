//! Hold until durable: what the allocator and the operator changed is sent only once the
//! journal records behind it are durable. Frames are encoded when their event happens and
//! held in [`HeldAnnouncements`] until then; [`Cluster::announce`] sends or holds,
//! [`Cluster::send_owed`] releases.

use super::alloc::{Allocator, Changes, ServId};
use super::session::{NodeDetails, Phase};
use super::{alloc, shared, Cluster, ConnId, NodeKey, Outbox};
use crate::proto::{self, CrossAssign, CrossMembers, Member, NodeType, StatusPush};
use bytes::Bytes;
use log::{error, info};

/// Announcements held until the journal records behind them are durable: frames already
/// encoded, welcomes, status pushes and whitelist deltas (the cluster's `owed` field holds the
/// accumulating batch's; the batch in flight carries its own).
#[derive(Debug, Default)]
pub(super) struct HeldAnnouncements {
    /// CROSS_ASSIGN / CROSS_MEMBERS frames, encoded when their event happened (one per
    /// event, as if sent then), in event order.
    pub(super) frames: Vec<u8>,
    /// (connection, its node, end of its frame in `frames`).
    pub(super) frame_index: Vec<(ConnId, NodeKey, usize)>,
    /// Game node connections to send STATUS_PUSH + WHITELIST_SNAPSHOT.
    pub(super) welcome: Vec<ConnId>,
    /// Game nodes whose maintenance flag changed.
    pub(super) status: Vec<ServId>,
    /// WHITELIST_DELTA frames, encoded once for every game node.
    pub(super) deltas: Vec<u8>,
}

impl HeldAnnouncements {
    pub(super) fn is_empty(&self) -> bool {
        self.frame_index.is_empty()
            && self.welcome.is_empty()
            && self.status.is_empty()
            && self.deltas.is_empty()
    }

    /// Drops what was held for a connection that closed, so held memory stays proportional
    /// to the nodes online however long the store cannot be written.
    pub(super) fn forget(&mut self, conn: ConnId) {
        self.welcome.retain(|&c| c != conn);
        if !self.frame_index.iter().any(|e| e.0 == conn) {
            return;
        }
        let (mut start, mut kept) = (0, 0);
        self.frame_index.retain_mut(|entry| {
            let end = entry.2;
            let keep = entry.0 != conn;
            if keep {
                self.frames.copy_within(start..end, kept);
                kept += end - start;
                entry.2 = kept;
            }
            start = end;
            keep
        });
        self.frames.truncate(kept);
    }

    pub(super) fn clear(&mut self) {
        self.frames.clear();
        self.frame_index.clear();
        self.welcome.clear();
        self.status.clear();
        self.deltas.clear();
    }
}

/// An [`Outbox`] that holds frames in [`HeldAnnouncements`] instead of sending them (the
/// node keys are filled in by the caller, which can see the sessions), so one encoder serves
/// both sending now and holding.
struct HoldingOutbox<'a> {
    held: &'a mut HeldAnnouncements,
}

impl Outbox for HoldingOutbox<'_> {
    fn send(&mut self, conn: ConnId, frame: &[u8]) {
        self.held.frames.extend_from_slice(frame);
        let unknown = NodeKey {
            node_type: NodeType::Game,
            node_id: 0,
        };
        self.held
            .frame_index
            .push((conn, unknown, self.held.frames.len()));
    }

    fn close(&mut self, _conn: ConnId) {}
}

impl Cluster {
    /// STATUS_PUSH and the whole WHITELIST_SNAPSHOT for a game node that just came online.
    pub(super) fn welcome(&mut self, conn: ConnId, serv: ServId, out: &mut dyn Outbox) {
        self.scratch.clear();
        StatusPush {
            maintenance: self.maintenance.contains(&serv) as u8,
        }
        .encode(&mut self.scratch);
        let (snapshot, frames) = self.snapshot.get(
            self.whitelist.version,
            self.whitelist.entries.iter().map(|e| &**e),
        );
        if snapshot.len() < shared::SHARE_SNAPSHOT_FROM {
            self.scratch.extend_from_slice(snapshot);
            out.send(conn, &self.scratch);
        } else {
            // Shared by every node welcomed until the next change: one copy in memory.
            out.send(conn, &self.scratch);
            out.send_shared(conn, snapshot, frames);
        }
    }

    /// Sends what the allocator owes, or holds it until the journal is durable.
    pub(super) fn announce(&mut self, out: &mut dyn Outbox) {
        self.alloc.take_changes(&mut self.changes);
        self.fold
            .apply(&mut self.changes.members, self.clock_ms, &mut self.wheel);
        self.journal_settled();
        let mut changes = std::mem::take(&mut self.changes);
        if self.journal.is_empty() && self.in_flight.is_none() {
            self.send_changes(&changes, out);
        } else {
            // Encoded now, sent once durable (and after what is in flight, to keep the order):
            // each event keeps its own frames.
            let mut owed = std::mem::take(&mut self.owed);
            let first = owed.frame_index.len();
            self.send_changes(&changes, &mut HoldingOutbox { held: &mut owed });
            for entry in &mut owed.frame_index[first..] {
                entry.1 = self.sessions[entry.0].key;
            }
            self.owed = owed;
        }
        changes.assign.clear();
        changes.members.clear();
        self.changes = changes;
    }

    /// Sends everything held for the journal, in the order nodes expect: whitelist deltas and
    /// status to nodes already welcomed, then the welcomes, then assignments and members.
    pub(super) fn send_owed(&mut self, owed: &mut HeldAnnouncements, out: &mut dyn Outbox) {
        if self.operator_seq > self.durable_seq && !owed.welcome.is_empty() {
            // A whitelist or maintenance change made since is not durable yet: a welcome now
            // would show it. The welcomes (and their nodes' frames, to keep their order)
            // wait for the next batch.
            self.defer_welcomes(owed);
        }
        if !owed.deltas.is_empty() {
            // Encoded once, shared by every game node's write queue.
            let count = shared::count_frames(&owed.deltas);
            let deltas = Bytes::from(std::mem::take(&mut owed.deltas));
            for s in &self.sessions {
                if let (Phase::Online, NodeDetails::Game { welcomed: true, .. }) =
                    (s.phase, &s.info)
                {
                    if let Some(&conn) = self.registry.get(&s.key) {
                        out.send_shared(conn, &deltas, count);
                    }
                }
            }
        }
        for &serv in &owed.status {
            let key = NodeKey {
                node_type: NodeType::Game,
                node_id: serv,
            };
            let Some(&conn) = self.registry.get(&key) else {
                continue;
            };
            if let (Phase::Online, NodeDetails::Game { welcomed: true, .. }) =
                (self.sessions[conn].phase, &self.sessions[conn].info)
            {
                self.scratch.clear();
                StatusPush {
                    maintenance: self.maintenance.contains(&serv) as u8,
                }
                .encode(&mut self.scratch);
                out.send(conn, &self.scratch);
            }
        }
        for &conn in &owed.welcome {
            let s = &mut self.sessions[conn];
            let NodeDetails::Game { welcomed, .. } = &mut s.info else {
                continue;
            };
            if s.phase != Phase::Online || *welcomed {
                continue;
            }
            *welcomed = true;
            let serv = s.key.node_id;
            self.welcome(conn, serv, out);
        }
        let mut start = 0;
        for &(conn, key, end) in &owed.frame_index {
            // Held frames may outlive their connection (a failed sync): check it is the same node.
            let same = self.registry.get(&key) == Some(&conn)
                && self
                    .sessions
                    .get(conn)
                    .is_some_and(|s| s.phase == Phase::Online);
            if same {
                out.send(conn, &owed.frames[start..end]);
            }
            start = end;
        }
    }

    /// Moves `owed`'s welcomes, and the frames held for those connections, in front of what
    /// the accumulating batch holds.
    fn defer_welcomes(&mut self, owed: &mut HeldAnnouncements) {
        let mut moved = HeldAnnouncements {
            welcome: std::mem::take(&mut owed.welcome),
            ..HeldAnnouncements::default()
        };
        let (mut start, mut kept) = (0, 0);
        let frames = std::mem::take(&mut owed.frames);
        let mut remaining = Vec::with_capacity(frames.len());
        owed.frame_index.retain_mut(|entry| {
            let end = entry.2;
            let frame = &frames[start..end];
            start = end;
            if moved.welcome.contains(&entry.0) {
                moved.frames.extend_from_slice(frame);
                moved
                    .frame_index
                    .push((entry.0, entry.1, moved.frames.len()));
                false
            } else {
                remaining.extend_from_slice(frame);
                kept += frame.len();
                entry.2 = kept;
                true
            }
        });
        owed.frames = remaining;
        let later = std::mem::take(&mut self.owed);
        let offset = moved.frames.len();
        moved.frames.extend_from_slice(&later.frames);
        moved.frame_index.extend(
            later
                .frame_index
                .iter()
                .map(|&(c, k, e)| (c, k, e + offset)),
        );
        moved.welcome.extend_from_slice(&later.welcome);
        moved.status = later.status;
        moved.deltas = later.deltas;
        self.owed = moved;
    }

    /// CROSS_ASSIGN to online game nodes whose cross node's name is known, CROSS_MEMBERS to
    /// online cross nodes.
    fn send_changes(&mut self, changes: &Changes, out: &mut dyn Outbox) {
        for &serv in &changes.assign {
            let Some(&conn) = self.registry.get(&NodeKey {
                node_type: NodeType::Game,
                node_id: serv,
            }) else {
                continue;
            };
            if self.sessions[conn].phase != Phase::Online {
                continue;
            }
            let Some((cross_id, pos)) = self.alloc.game(serv).and_then(|g| g.assignment) else {
                continue;
            };
            let Some(cross) = self.alloc.cross(cross_id) else {
                continue;
            };
            let Some(name) = cross.name.as_deref() else {
                continue;
            };
            let plat = cross.plat.map_or("", |p| self.alloc.platforms.name(p));
            self.scratch.clear();
            let msg = CrossAssign {
                cross_server_id: cross_id,
                cross_node_name: name,
                cross_plat: plat,
                cross_pos: pos,
            };
            if msg.encode(&mut self.scratch).is_ok() {
                out.send(conn, &self.scratch);
                info!("game {serv}: assigned to cross {cross_id} slot {pos}");
            }
        }
        for &cross_id in &changes.members {
            let Some(&conn) = self.cross_conns.get(&cross_id) else {
                continue;
            };
            let Some(cross) = self.alloc.cross(cross_id) else {
                continue;
            };
            let scratch = &mut self.scratch;
            scratch.clear();
            if encode_members(&self.alloc, cross, true, scratch).is_err() {
                // Names do not fit one frame: the ids and slots matter most.
                error!("cross {cross_id}: member list exceeds one frame; sending it without names");
                if encode_members(&self.alloc, cross, false, scratch).is_err() {
                    error!("cross {cross_id}: member list exceeds one frame even without names; not sent");
                    continue;
                }
            }
            out.send(conn, &self.scratch);
        }
    }
}

fn encode_members(
    alloc: &Allocator,
    cross: &alloc::CrossRecord,
    names: bool,
    out: &mut Vec<u8>,
) -> Result<(), proto::FrameTooLarge> {
    let members = cross.members.iter().map(|(&pos, &serv)| Member {
        serv_id: serv,
        serv_name: if names {
            alloc.game(serv).map_or("", |g| &g.name)
        } else {
            ""
        },
        cross_pos: pos,
    });
    CrossMembers::encode(members, out)
}
