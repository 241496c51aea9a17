//! The loop's side of a failover group: it applies what the group's store thread reports
//! (standby, active with the group's state, lease renewed, role lost), keeps its own lease
//! deadline on the monotonic clock, and gives the role up — KICK 6 to every node, nothing held
//! ever sent — as soon as that deadline passes, before it sends anything else. A paused
//! process therefore never outlives its lease: after SIGCONT its first turn demotes it.

use super::LoginNode;
use crate::cluster::{Handler, Now, Role};
#[cfg(feature = "etcd")]
use crate::state::group::RoleChange;
use std::time::{Duration, Instant};

/// The local deadline stops this long before the lease itself would expire in etcd.
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
                self.durability.lease_deadline = Some(self.lease_deadline_after(renewed_at));
                if Instant::now() >= self.lease_deadline_after(renewed_at) {
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
                    self.durability.lease_deadline = Some(self.lease_deadline_after(at));
                }
            }
            RoleChange::Lost { why } => self.lose_role(&why, now),
        }
    }

    fn lease_deadline_after(&self, renewed_at: Instant) -> Instant {
        let ttl = Duration::from_secs(self.config.lease_ttl);
        renewed_at + ttl.saturating_sub(LEASE_MARGIN)
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
            .is_some_and(|d| Instant::now() >= d)
        {
            self.lose_role("the lease deadline passed without a renewal", now);
            if let Some(store) = &self.durability.store {
                store.step_down(); // the thread stops using the lease too
            }
        }
    }

    /// How long the loop may sleep before the lease deadline must be checked.
    pub(super) fn lease_wait(&self) -> Option<Duration> {
        if self.cluster.role() != &Role::Active {
            return None;
        }
        self.durability
            .lease_deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
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
        self.durability.abandon_batches();
        if self.cluster.role() == &Role::Active {
            self.with_outbox(|cluster, io, handler| cluster.demote(why, now, io, handler));
            self.admin_abandon_held("this login node is no longer the active member of its group");
        }
    }
}
