//! The cluster's role in a failover group (contract §6): a single login node, the active
//! member, or a standby. A standby answers every AUTH that passes the signature and time
//! checks with code 7 and holds no state; the active member holds the group's state, loaded at
//! its election ([`Cluster::promote`]); a member that loses the role sends KICK 6 to every node
//! and forgets everything it held, sending nothing the store has not accepted
//! ([`Cluster::demote`]).

use super::announce::HeldAnnouncements;
use super::handler::Handler;
use super::session::Phase;
use super::{Cluster, Now, Outbox, Whitelist};
use crate::proto::KickReason;
use crate::state::State;
use log::{info, warn};

/// Where this login node stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not in a group: the local state directory (or memory).
    Single,
    /// The active member of its group.
    Active,
    /// A standby; the active member's name when known.
    Standby {
        /// The active member's name.
        active: Option<Box<str>>,
    },
}

impl Role {
    /// The name `/healthz` and the metrics show.
    pub fn name(&self) -> &'static str {
        match self {
            Role::Single => "single",
            Role::Active => "active",
            Role::Standby { .. } => "standby",
        }
    }
}

impl Cluster {
    /// The role.
    pub fn role(&self) -> &Role {
        &self.role
    }

    /// Another member is active (`None`: not known yet). Ignored while active: the role is
    /// given up only through [`Self::demote`].
    pub fn set_standby(&mut self, active: Option<&str>) {
        if self.role != Role::Active {
            self.role = Role::Standby {
                active: active.map(Into::into),
            };
        }
    }

    /// This member became active with the group's `state`: it replaces whatever was held.
    pub fn promote(&mut self, state: State) {
        self.forget_state();
        self.restore(state);
        self.role = Role::Active;
        info!("active member of the group: accepting nodes");
    }

    /// The role is lost: KICK 6 to every node past AUTH, every held frame dropped (never
    /// sent), the state forgotten; AUTHs get code 7 from now on.
    pub fn demote(&mut self, why: &str, now: Now, out: &mut dyn Outbox, handler: &mut dyn Handler) {
        if self.role != Role::Active {
            return;
        }
        warn!("no longer the active member of the group ({why}): KICK 6 to every node");
        self.role = Role::Standby { active: None };
        for conn in 0..self.sessions.len() {
            if matches!(self.sessions[conn].phase, Phase::AwaitInfo | Phase::Online) {
                self.kick(conn, KickReason::NotActive, now, out, handler);
            }
        }
        self.forget_state();
    }

    /// Asks for a hand-over (`POST /api/step-down`); false unless active.
    pub fn request_step_down(&mut self) -> bool {
        if self.role != Role::Active {
            return false;
        }
        self.step_down_requested = true;
        true
    }

    /// Whether a step-down was asked for since the last call.
    pub fn take_step_down(&mut self) -> bool {
        std::mem::take(&mut self.step_down_requested)
    }

    fn forget_state(&mut self) {
        self.alloc.reset();
        self.whitelist = Whitelist::default();
        self.maintenance.clear();
        self.journal.clear();
        self.owed = HeldAnnouncements::default();
        self.in_flight = None;
        self.durable_seq = self.next_seq - 1;
        self.operator_seq = 0;
        self.writable = true;
        self.cross_conns.clear();
    }
}
