//! What operators change through the admin API, sans-IO: the whitelist, maintenance flags,
//! kicks, capacity overrides, drains and moves. Every change is journaled first; what it
//! announces is held with the journal's other announcements until the records are durable.

use super::alloc::{CrossId, MoveError, ServId};
use super::{Cluster, Handler, NodeDetails, NodeKey, Now, Outbox, Phase};
use crate::proto::{KickReason, NodeType, WhitelistDelta};
use crate::state::{Record, MAX_ENTRY_LEN};
use log::info;
use std::fmt;

/// Why an operator change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorError {
    /// The request names something invalid (HTTP 400).
    BadRequest(String),
    /// No such node (HTTP 404).
    NotFound(String),
    /// The change conflicts with the current state (HTTP 409).
    Conflict(String),
    /// State cannot be made durable right now (HTTP 503).
    Unavailable,
    /// A standby of a failover group takes no changes (HTTP 503): the active member's name.
    NotActive(Option<Box<str>>),
}

impl fmt::Display for OperatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OperatorError::BadRequest(s)
            | OperatorError::NotFound(s)
            | OperatorError::Conflict(s) => f.write_str(s),
            OperatorError::Unavailable => {
                f.write_str("state is not writable (journal write failed); try again later")
            }
            OperatorError::NotActive(active) => write!(
                f,
                "this login node is a standby; send changes to the active member ({})",
                active.as_deref().unwrap_or("being elected")
            ),
        }
    }
}

/// An operator change that was made: what its method returned, and the batch its journal
/// records went into. The admin API answers a change that journaled nothing at once; one that
/// did waits until that batch is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied<T> {
    /// What the change method returned.
    pub value: T,
    /// The sequence number of the batch holding the change's records (durable once
    /// [`Cluster::batch_durable`] reports it), or `None` when the change journaled nothing.
    pub durable_at: Option<u64>,
}

/// A game node's status for server lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GameStatus {
    /// Not connected.
    Offline,
    /// Online, below the busy threshold.
    Normal,
    /// Players online at or above `busy_threshold`.
    Busy,
    /// Players online at or above `full_threshold`.
    Full,
    /// Operator-set maintenance (wins over the others while online).
    Maintenance,
}

impl GameStatus {
    /// The lowercase name used by the admin API.
    pub fn name(self) -> &'static str {
        match self {
            GameStatus::Offline => "offline",
            GameStatus::Normal => "normal",
            GameStatus::Busy => "busy",
            GameStatus::Full => "full",
            GameStatus::Maintenance => "maintenance",
        }
    }
}

/// The status an online game node's player count gives it: normal, busy or full.
pub(super) fn load_status(players: u32, busy: u32, full: u32) -> GameStatus {
    if players >= full {
        GameStatus::Full
    } else if players >= busy {
        GameStatus::Busy
    } else {
        GameStatus::Normal
    }
}

fn check_entry(e: &str) -> Result<(), OperatorError> {
    if e.is_empty() || e.len() > MAX_ENTRY_LEN {
        return Err(OperatorError::BadRequest(format!(
            "whitelist entries must be 1..={MAX_ENTRY_LEN} bytes"
        )));
    }
    Ok(())
}

impl Cluster {
    /// Makes one operator change (`change` calls one of the methods below) and says whether
    /// it journaled anything. A change journals more than its own record when it moves
    /// assignments (a kicked cross node's games are reassigned), so the journal is asked.
    pub fn operator_change<T>(
        &mut self,
        change: impl FnOnce(&mut Cluster) -> Result<T, OperatorError>,
    ) -> Result<Applied<T>, OperatorError> {
        let before = self.journal.len();
        let value = change(self)?;
        let durable_at = (self.journal.len() > before).then_some(self.next_seq);
        Ok(Applied { value, durable_at })
    }

    fn ensure_writable(&self) -> Result<(), OperatorError> {
        if let super::Role::Standby { active } = &self.role {
            return Err(OperatorError::NotActive(active.clone()));
        }
        if self.writable {
            Ok(())
        } else {
            Err(OperatorError::Unavailable)
        }
    }

    /// The derived status of a game node.
    pub fn game_status(&self, serv: ServId) -> GameStatus {
        let key = NodeKey {
            node_type: NodeType::Game,
            node_id: serv,
        };
        let Some(view) = self.node(key) else {
            return GameStatus::Offline;
        };
        if self.maintenance.contains(&serv) {
            return GameStatus::Maintenance;
        }
        let players = match view.info {
            NodeDetails::Game { players_online, .. } => *players_online,
            _ => 0,
        };
        load_status(players, self.busy_threshold, self.full_threshold)
    }

    /// Adds (`add` = true) or removes whitelist entries; each change bumps the version by one.
    /// Returns the entries that changed the list and the version after.
    pub fn whitelist_change(
        &mut self,
        entries: &[&str],
        add: bool,
    ) -> Result<(usize, u32), OperatorError> {
        self.ensure_writable()?;
        for e in entries {
            check_entry(e)?;
        }
        let mut changed = 0;
        for &e in entries {
            let did = if add {
                !self.whitelist.entries.contains(e) && self.whitelist.entries.insert(e.into())
            } else {
                self.whitelist.entries.remove(e)
            };
            if !did {
                continue;
            }
            changed += 1;
            self.operator_seq = self.next_seq;
            self.whitelist.version = self.whitelist.version.wrapping_add(1);
            let version = self.whitelist.version;
            let record = if add {
                Record::WhitelistAdd {
                    version,
                    entry: e.into(),
                }
            } else {
                Record::WhitelistRemove {
                    version,
                    entry: e.into(),
                }
            };
            record.encode_in_batch(&mut self.journal);
            // The entry is at most MAX_ENTRY_LEN bytes: it always fits a frame.
            let _ = WhitelistDelta {
                version,
                op: if add { 1 } else { 2 },
                entry: e,
            }
            .encode(&mut self.owed.deltas);
        }
        Ok((changed, self.whitelist.version))
    }

    /// Sets a game node's maintenance flag (known or not: operators may flag a node before it
    /// starts). Returns whether it changed.
    pub fn set_maintenance(&mut self, serv: ServId, on: bool) -> Result<bool, OperatorError> {
        self.ensure_writable()?;
        let changed = if on {
            self.maintenance.insert(serv)
        } else {
            self.maintenance.remove(&serv)
        };
        if changed {
            self.operator_seq = self.next_seq;
            self.list_generation += 1;
            Record::Maintenance { serv, on }.encode_in_batch(&mut self.journal);
            self.owed.status.push(serv);
            info!("game {serv}: maintenance {}", if on { "on" } else { "off" });
        }
        Ok(changed)
    }

    /// KICK 3 to an online node.
    pub fn operator_kick(
        &mut self,
        node: NodeKey,
        now: Now,
        out: &mut dyn Outbox,
        handler: &mut dyn Handler,
    ) -> Result<(), OperatorError> {
        let online = self
            .registry
            .get(&node)
            .is_some_and(|&c| self.sessions[c].phase == Phase::Online);
        if !online || !self.kick_node(node, KickReason::Operator, now, out, handler) {
            return Err(OperatorError::NotFound(format!("{node} is not online")));
        }
        Ok(())
    }

    /// Overrides a cross node's capacity (0 clears the override). Waiting game nodes may be
    /// assigned at once.
    pub fn set_cross_capacity(
        &mut self,
        cross: CrossId,
        capacity: u16,
        out: &mut dyn Outbox,
    ) -> Result<(), OperatorError> {
        self.ensure_writable()?;
        if !self.alloc.set_capacity(cross, capacity) {
            return Err(OperatorError::NotFound(format!("no cross node {cross}")));
        }
        Record::Capacity { cross, capacity }.encode_in_batch(&mut self.journal);
        info!("cross {cross}: capacity override {capacity} (0 = none)");
        self.announce(out);
        Ok(())
    }

    /// Starts or stops draining a cross node: it keeps its members, takes no new ones.
    pub fn set_cross_drain(
        &mut self,
        cross: CrossId,
        on: bool,
        out: &mut dyn Outbox,
    ) -> Result<(), OperatorError> {
        self.ensure_writable()?;
        if !self.alloc.set_drain(cross, on) {
            return Err(OperatorError::NotFound(format!("no cross node {cross}")));
        }
        Record::Drain { cross, on }.encode_in_batch(&mut self.journal);
        info!("cross {cross}: drain {}", if on { "on" } else { "off" });
        self.announce(out);
        Ok(())
    }

    /// Moves a game node to another cross node of its platform (slot `pos`, 0 = lowest free).
    /// Returns the new (cross, pos).
    pub fn move_game(
        &mut self,
        serv: ServId,
        cross: CrossId,
        pos: u16,
        out: &mut dyn Outbox,
    ) -> Result<(CrossId, u16), OperatorError> {
        self.ensure_writable()?;
        self.alloc
            .move_game(serv, cross, pos)
            .map_err(|e| match e {
                MoveError::UnknownGame | MoveError::UnknownCross => {
                    OperatorError::NotFound(e.describe().into())
                }
                MoveError::OtherPlatform => OperatorError::BadRequest(e.describe().into()),
                _ => OperatorError::Conflict(e.describe().into()),
            })?;
        let to = self
            .alloc
            .game(serv)
            .and_then(|g| g.assignment)
            .unwrap_or((cross, pos));
        info!(
            "game {serv}: moved by operator to cross {} slot {}",
            to.0, to.1
        );
        self.announce(out);
        Ok(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn cluster() -> Cluster {
        let now = Now {
            mono_ms: 0,
            unix_secs: 1_700_000_000,
        };
        Cluster::new(&Config::default(), now)
    }

    #[test]
    fn a_change_names_the_batch_it_journaled_into_and_a_no_op_names_none() {
        let mut c = cluster();
        let seq = c.pending_seq();
        let added = c.operator_change(|c| c.whitelist_change(&["alice"], true));
        assert_eq!(
            added,
            Ok(Applied {
                value: (1, 1),
                durable_at: Some(seq)
            })
        );
        let again = c.operator_change(|c| c.whitelist_change(&["alice"], true));
        assert_eq!(
            again,
            Ok(Applied {
                value: (0, 1),
                durable_at: None
            })
        );
        let flag = c.operator_change(|c| c.set_maintenance(7, false));
        assert_eq!(flag.map(|a| a.durable_at), Ok(None), "already off");
        let refused = c.operator_change(|c| c.whitelist_change(&[""], true));
        assert!(refused.is_err());
    }
}
