//! Draining the cluster's one timer wheel: firing the due timers (auth timeouts, heartbeat
//! expiry, handler timers, fold windows) and the deadlines the reactor keeps on it for its own
//! connections. Separate because every other part only inserts into the wheel; this is the
//! one place that drains it.

use super::handler::Handler;
use super::session::Phase;
use super::{handler_guard, Cluster, Now, Outbox, Timer};
use crate::logging::Peer;
use crate::proto::KickReason;
use crate::timer::TimerId;
use log::info;

impl Cluster {
    /// Fires every timer due at `now`: auth timeouts and heartbeat expiry.
    pub fn handle_timeout(&mut self, now: Now, out: &mut dyn Outbox, handler: &mut dyn Handler) {
        self.clock_ms = now.mono_ms;
        let mut folded_due = false;
        while let Some((_, timer)) = self.wheel.poll(now.mono_ms) {
            let conn = match timer {
                Timer::Session(conn) => conn,
                Timer::Reactor(key) => {
                    self.fired_reactor.push(key);
                    continue;
                }
                Timer::Handler(token) => {
                    let panicked = handler_guard::catch(|| {
                        let mut ctx = self.context(out, now.mono_ms);
                        handler.timer(&mut ctx, token);
                    });
                    if let Some(why) = panicked {
                        self.handler_panicked(format_args!("timer {token}"), &why);
                    }
                    continue;
                }
                Timer::Fold(cross) => {
                    folded_due |= self.fold.fired(cross);
                    continue;
                }
            };
            let Some(s) = self.sessions.get_mut(conn) else {
                continue;
            };
            s.timer = None;
            match s.phase {
                Phase::AwaitAuth => {
                    info!(
                        "conn {conn} from {}: no AUTH within auth_timeout, closing",
                        Peer(s.peer)
                    );
                    out.close(conn);
                    self.end_session(conn, "no AUTH", now, out, handler);
                }
                Phase::AwaitInfo | Phase::Online => {
                    // One ms past: both instants are floored to the ms, and the contract says
                    // no earlier than heartbeat_timeout after the last frame.
                    let deadline = s.last_heard_ms + s.heartbeat_timeout_ms + 1;
                    if deadline <= now.mono_ms {
                        info!(
                            "{} ({}): silent for {} s, kicking",
                            s.key,
                            Peer(s.peer),
                            s.heartbeat_timeout_ms / 1000
                        );
                        self.stats.heartbeat_timeouts += 1;
                        self.kick(conn, KickReason::HeartbeatTimeout, now, out, handler);
                    } else {
                        // Lazy refresh: heartbeats only stamped the session; re-arm now.
                        s.timer = Some(self.wheel.insert(deadline, Timer::Session(conn)));
                    }
                }
                Phase::Free | Phase::Closed => {}
            }
        }
        if folded_due {
            // Fold windows ended with changes: the current lists go out now.
            self.announce(out);
        }
    }

    /// Sets a deadline on the cluster's wheel for the caller's own use; when it passes,
    /// [`Self::handle_timeout`] reports `key` through [`Self::take_fired_timers`].
    pub fn set_timer(&mut self, at_ms: u64, key: usize) -> TimerId {
        self.wheel.insert(at_ms, Timer::Reactor(key))
    }

    /// Moves a timer set with [`Self::set_timer`]; false if it already fired.
    pub fn move_timer(&mut self, id: TimerId, at_ms: u64) -> bool {
        self.wheel.reschedule(id, at_ms)
    }

    /// Cancels a timer set with [`Self::set_timer`].
    pub fn cancel_timer(&mut self, id: TimerId) {
        self.wheel.cancel(id);
    }

    /// The keys of the caller's timers that fired, in order.
    pub fn take_fired_timers(&mut self, into: &mut Vec<usize>) {
        into.append(&mut self.fired_reactor);
    }
}
