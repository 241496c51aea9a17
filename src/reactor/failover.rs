//! The loop's side of a failover group: it applies what the group's store thread reports
//! (standby, active with the group's state, lease renewed, role lost), keeps its own lease
//! deadline on the monotonic clock, and gives the role up — KICK 6 to every node, nothing held
//! ever sent — as soon as that deadline passes, before it sends anything else. A paused
//! process therefore never outlives its lease: after SIGCONT its first turn demotes it.

use super::deadline;
use super::LoginNode;
use crate::cluster::{Handler, Now, Role};
#[cfg(feature = "etcd")]
use crate::state::group::RoleChange;
#[cfg(feature = "etcd")]
use std::time::{Duration, Instant};

/// The local deadline stops this long before the lease itself would expire in etcd.
#[cfg(feature = "etcd")]
const LEASE_MARGIN: Duration = Duration::from_millis(1000);

impl<H: Handler> LoginNode<H> {
    /// Applies a role change the store thread reported.
    #[cfg(feature = "etcd")]
    pub(super) fn role_changed(&mut self, change: RoleChange, now: Now) {
        match change {
            RoleChange::Standby { active } => self.cluster.set_standby(active.as_deref()),
            RoleChange::Active {
                term,
                state,
                renewed_at,
            } => {
                self.durability.term = term;
                let lease_deadline = self.lease_deadline_after(renewed_at);
                self.set_lease_deadline(lease_deadline);
                if now.mono_ms >= lease_deadline {
                    // Loading took the whole lease: the role may already be another's.
                    if let Some(store) = &self.durability.store {
                        store.step_down();
                    }
                    return;
                }
                self.cluster.promote(*state);
            }
            RoleChange::Renewed { at } => {
                if self.cluster.role() == &Role::Active {
                    self.set_lease_deadline(self.lease_deadline_after(at));
                }
            }
            RoleChange::Lost { why } => self.lose_role(&why, now),
        }
    }

    /// The local lease deadline (monotonic ms) after a renewal at `renewed_at`.
    #[cfg(feature = "etcd")]
    fn lease_deadline_after(&self, renewed_at: Instant) -> u64 {
        let ttl = Duration::from_secs(self.config.lease_ttl);
        let renewed_ms = renewed_at.saturating_duration_since(self.start).as_millis() as u64;
        renewed_ms + ttl.saturating_sub(LEASE_MARGIN).as_millis() as u64
    }

    /// The lease must be renewed by `at_ms`; the wheel wakes the loop then to check.
    #[cfg(feature = "etcd")]
    fn set_lease_deadline(&mut self, at_ms: u64) {
        self.durability.lease_deadline = Some(at_ms);
        let timer = &mut self.durability.lease_timer;
        deadline::arm(&mut self.cluster, timer, at_ms, deadline::Deadline::Lease);
    }

    /// Before the turn sends anything: an active member past its local lease deadline stops
    /// being active now.
    pub(super) fn check_lease(&mut self, now: Now) {
        if self.cluster.role() != &Role::Active {
            return;
        }
        if self
            .durability
            .lease_deadline
            .is_some_and(|d| now.mono_ms >= d)
        {
            self.lose_role("the lease deadline passed without a renewal", now);
            if let Some(store) = &self.durability.store {
                store.step_down(); // the thread stops using the lease too
            }
        }
    }

    /// `POST /api/step-down` asked for a hand-over: stop at once, then let the store revoke.
    pub(super) fn step_down_if_asked(&mut self, now: Now) {
        if !self.cluster.take_step_down() {
            return;
        }
        self.lose_role("an operator asked it to step down", now);
        if let Some(store) = &self.durability.store {
            store.step_down();
        }
    }

    /// KICK 6 to every node, drop what is held (and the batch in flight), answer held admin
    /// changes with 503.
    pub(super) fn lose_role(&mut self, why: &str, now: Now) {
        self.durability.lease_deadline = None;
        deadline::disarm(&mut self.cluster, &mut self.durability.lease_timer);
        self.durability.abandon_batches(&mut self.cluster);
        if self.cluster.role() == &Role::Active {
            self.with_outbox(|cluster, io, handler| cluster.demote(why, now, io, handler));
            self.admin_abandon_held("this login node is no longer the active member of its group");
        }
    }
}
