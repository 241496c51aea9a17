//! What the engine's nodes do on the protocol: their INFO, when a node counts as online (by
//! group), heartbeats and the ACKs that must echo them, and the ramp that starts connections
//! (crosses first, up to the in-flight cap).

use super::{group_index, Engine, Group, ACK_GRACE, HEARTBEAT};
use crate::stats::sample_process;
use login_node::client::machine::{NodeEvent, NodeInfoSpec, NodeSpec};
use login_node::client::ServerMessage;
use std::time::Instant;

impl Engine {
    pub(super) fn spec(&self, group: Group, id: u32) -> NodeSpec {
        let info = match group {
            Group::Cross => NodeInfoSpec::Cross {
                cross_plat: self.plat_name(),
                cross_server_id: id,
                cross_node_name: format!("cross{id}@127.0.0.1"),
                capacity: self.plan.cross_capacity,
                game_server_list: Vec::new(),
            },
            _ => NodeInfoSpec::Game {
                serv_name: format!("S{id}"),
                open_time: 1_700_000_000,
                cross_plat: self.plat_name(),
                cross_server_id: 0,
                cross_pos: 0,
                addr: format!("10.0.{}.{}:8000", id / 256 % 256, id % 256),
            },
        };
        NodeSpec {
            node_id: id,
            plat: self.plan.plat.clone(),
            token: self.plan.token.clone(),
            info,
        }
    }

    pub(super) fn plat_name(&self) -> String {
        self.plan.plat.clone()
    }

    pub(super) fn events(&mut self, key: usize) {
        loop {
            let Some(n) = self.nodes.get_mut(key) else {
                return;
            };
            let Some(ev) = n.m.poll_event() else { return };
            let group = n.group;
            match ev {
                NodeEvent::Authenticated { .. } => {}
                NodeEvent::AuthRejected(code) => {
                    return self.drop_node(key, Some(format!("auth rejected: code {code}")))
                }
                NodeEvent::Kicked(reason) => {
                    return self.drop_node(key, Some(format!("kicked: reason {reason}")))
                }
                NodeEvent::ProtocolError(e) => {
                    return self.drop_node(key, Some(format!("protocol error: {e}")))
                }
                NodeEvent::Message(msg) => {
                    let awaits_assign = self.plan.await_assign || self.plan.cross_nodes > 0;
                    let now_online = match (&msg, group) {
                        (ServerMessage::CrossMembers(_), Group::Cross) => true,
                        (
                            ServerMessage::CrossAssign { .. },
                            Group::Hold | Group::Pump | Group::Churn,
                        ) => awaits_assign,
                        (
                            ServerMessage::WhitelistSnapshot { last: true, .. },
                            Group::Hold | Group::Pump | Group::Churn,
                        ) => !awaits_assign,
                        _ => false,
                    };
                    if let ServerMessage::HeartbeatAck(ts) = msg {
                        self.ack(key, ts);
                    }
                    if now_online && !self.nodes[key].online {
                        self.came_online(key);
                    }
                }
            }
        }
    }

    /// Sends a heartbeat and remembers its ts for the ACK.
    pub(super) fn beat(&mut self, key: usize, ts: u64) {
        let n = &mut self.nodes[key];
        n.m.send_heartbeat(ts);
        n.unacked.push_back(ts);
    }

    /// An ACK counts only if it echoes the oldest unanswered heartbeat's ts.
    pub(super) fn ack(&mut self, key: usize, ts: u64) {
        let now = self.now_ns();
        match self.nodes[key].unacked.pop_front() {
            Some(sent) if sent == ts => {
                if self.in_window() {
                    self.stats.rtt.record(now.saturating_sub(ts));
                    self.stats.acks += 1;
                }
            }
            Some(_) => self.stats.fail("heartbeat ACK echoed a wrong ts"),
            None => self.stats.fail("heartbeat ACK without a heartbeat"),
        }
        if self.nodes[key].group == Group::Pump && !self.draining {
            self.beat(key, now);
        }
    }

    /// Heartbeats still unanswered, counted once as failures and forgotten.
    pub(super) fn count_unanswered(&mut self) {
        let mut missing = 0;
        for (_, n) in self.nodes.iter_mut() {
            missing += n.unacked.len() as u64;
            n.unacked.clear();
        }
        if missing > 0 {
            *self
                .stats
                .failures
                .entry(format!(
                    "heartbeat never ACKed (within {} s of the end)",
                    ACK_GRACE.as_secs()
                ))
                .or_default() += missing;
        }
    }

    pub(super) fn came_online(&mut self, key: usize) {
        let n = &mut self.nodes[key];
        n.online = true;
        let took = n.started.elapsed();
        let group = n.group;
        self.handshaking -= 1;
        if group == Group::Churn {
            self.churn_handshaking -= 1;
        }
        self.online[group_index(group)] += 1;
        match group {
            Group::Cross => self.crosses_online += 1,
            Group::Hold | Group::Pump => {
                self.stats.handshake.record(took.as_nanos() as u64);
                self.stats.handshakes += 1;
            }
            Group::Churn => {}
        }
        match group {
            Group::Cross | Group::Hold => {
                let interval = self.hold_interval_ms(key);
                let gen = self.nodes[key].gen;
                // Spread first heartbeats over the interval (by the node's own generation, a
                // Fibonacci hash) so nodes do not beat in lockstep.
                let phase = (gen as u64).wrapping_mul(2_654_435_761) % interval.max(1);
                self.wheel
                    .insert(self.now_ms() + phase, (key, gen, HEARTBEAT));
            }
            Group::Pump => {
                let now = self.now_ns();
                for _ in 0..self.plan.pipeline {
                    self.beat(key, now);
                }
            }
            Group::Churn => {
                if self.in_window() {
                    self.stats.session.record(took.as_nanos() as u64);
                    self.stats.sessions += 1;
                }
                // Done: close and go again (a new node connects in drop_node).
                self.drop_node(key, None);
            }
        }
    }

    pub(super) fn hold_interval_ms(&self, key: usize) -> u64 {
        match self.plan.hold_interval {
            Some(d) => d.as_millis() as u64,
            None => self
                .nodes
                .get(key)
                .map_or(1000, |n| n.m.heartbeat_interval_ms())
                .max(1),
        }
    }

    /// Starts connections up to the in-flight cap, crosses first.
    pub(super) fn ramp(&mut self) {
        while self.crosses_started < self.plan.cross_nodes && self.handshaking < self.plan.inflight
        {
            let id = self.plan.id_base.wrapping_sub(1_000_000) + self.crosses_started as u32;
            self.crosses_started += 1;
            self.connect(Group::Cross, id, 0);
        }
        if self.crosses_online < self.plan.cross_nodes {
            return;
        }
        if self.ramp_start.is_none() {
            self.ramp_start = Some(Instant::now());
            self.server_at_ramp = self.plan.server_pid.and_then(sample_process);
            for w in 0..self.plan.churn_workers {
                self.churn_connect(w);
            }
        }
        while self.handshaking < self.plan.inflight
            && (self.next_hold < self.plan.hold_nodes || self.next_pump < self.plan.pump_nodes)
        {
            if self.next_hold < self.plan.hold_nodes {
                let id = self.plan.id_base + self.next_hold as u32;
                self.next_hold += 1;
                self.connect(Group::Hold, id, 0);
            } else {
                let id = self.plan.id_base + (self.plan.hold_nodes + self.next_pump) as u32;
                self.next_pump += 1;
                self.connect(Group::Pump, id, 0);
            }
        }
        let everyone = self.plan.hold_nodes + self.plan.pump_nodes;
        let settled = self.next_hold + self.next_pump == everyone
            && self.handshaking <= self.churn_handshaking;
        if settled && self.window_start.is_none() {
            let done = Instant::now();
            self.ramp_done = Some(done);
            self.stats.ramp_secs = self
                .ramp_start
                .map_or(0.0, |s| done.duration_since(s).as_secs_f64());
            let sample = self.plan.server_pid.and_then(sample_process);
            self.stats.server_samples.ramp = self.server_at_ramp.zip(sample);
            if let (Some((c0, r0)), Some((c1, r1))) = (self.server_at_ramp, sample) {
                if self.stats.handshakes > 0 {
                    self.stats.server_cpu_us_handshakes =
                        Some((c1 - c0) * 1e6 / self.stats.handshakes as f64);
                }
                self.stats.server_rss_growth = Some(r1 - r0);
            }
            self.window_start = Some(done);
            if let Some(flag) = &self.window_open {
                flag.store(true, std::sync::atomic::Ordering::Release);
            }
        }
    }
}
