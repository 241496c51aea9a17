//! A node's side of protocol v1 as a sans-IO state machine: no socket, no clock inside.
//!
//! The caller moves bytes and time; the machine decides what to send:
//! - [`NodeMachine::handle_input`] with bytes read from the socket;
//! - [`NodeMachine::transmit`] / [`NodeMachine::advance_transmit`] for bytes to write;
//! - [`NodeMachine::poll_event`] for what happened (authenticated, assigned, kicked, ...);
//! - [`NodeMachine::handle_timeout`] at [`NodeMachine::next_timeout`] to send heartbeats.
//!
//! On creation it queues AUTH; when AUTH_RESULT 0 arrives it queues the node's INFO and, if
//! `auto_heartbeat` is on, a HEARTBEAT every announced interval (ts = the caller's ms clock).

use super::ServerMessage;
use crate::proto::{
    self, auth, Auth, CrossInfo, GameInfo, Heartbeat, Message, NodeType, StatusReport, U32List,
};
use std::collections::VecDeque;

/// What a node says in its INFO frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeInfoSpec {
    /// GAME_INFO fields (serv_id is the node_id).
    Game {
        /// Display name.
        serv_name: String,
        /// Unix seconds it opened.
        open_time: u32,
        /// Its cross platform.
        cross_plat: String,
        /// Reported assignment (0 = none).
        cross_server_id: u32,
        /// Reported slot (0 = none).
        cross_pos: u16,
        /// Address players use.
        addr: String,
    },
    /// CROSS_INFO fields (id is the node_id).
    Cross {
        /// Its platform.
        cross_plat: String,
        /// The id game nodes store.
        cross_server_id: u32,
        /// How game nodes reach it.
        cross_node_name: String,
        /// Capacity (0 = server default).
        capacity: u16,
        /// Servers it currently serves.
        game_server_list: Vec<u32>,
    },
}

/// Who the node is and how it signs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Its node_id.
    pub node_id: u32,
    /// The AUTH plat field.
    pub plat: String,
    /// The shared token.
    pub token: String,
    /// Its INFO (which also fixes the node type).
    pub info: NodeInfoSpec,
}

impl NodeSpec {
    /// The node type its INFO implies.
    pub fn node_type(&self) -> NodeType {
        match self.info {
            NodeInfoSpec::Game { .. } => NodeType::Game,
            NodeInfoSpec::Cross { .. } => NodeType::Cross,
        }
    }
}

/// Something that happened on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// AUTH_RESULT 0: INFO was queued.
    Authenticated {
        /// The server's clock.
        server_time: u32,
        /// Seconds between heartbeats.
        heartbeat_interval: u16,
        /// Seconds of silence before the server drops the node.
        heartbeat_timeout: u16,
    },
    /// AUTH_RESULT with a non-zero code; the server closes the connection.
    AuthRejected(u8),
    /// Any other message from the server after authentication.
    Message(ServerMessage),
    /// KICK with its reason; the server closes the connection.
    Kicked(u8),
    /// The server sent bytes that are not protocol v1; the connection should be closed.
    ProtocolError(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitAuthResult,
    Online,
    Closed,
}

/// The state machine of one node connection.
pub struct NodeMachine {
    spec: NodeSpec,
    phase: Phase,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    sent: usize,
    events: VecDeque<NodeEvent>,
    auto_heartbeat: bool,
    heartbeat_interval_ms: u64,
    next_heartbeat_ms: Option<u64>,
}

impl NodeMachine {
    /// A machine that has queued AUTH signed at `unix_time`. With `auto_heartbeat`, it sends a
    /// heartbeat every interval the server announces, from authentication on.
    pub fn new(spec: NodeSpec, unix_time: u32, auto_heartbeat: bool) -> Self {
        let mut m = NodeMachine {
            phase: Phase::AwaitAuthResult,
            inbuf: Vec::new(),
            outbuf: Vec::with_capacity(128),
            sent: 0,
            events: VecDeque::new(),
            auto_heartbeat,
            heartbeat_interval_ms: 0,
            next_heartbeat_ms: None,
            spec,
        };
        let sign = auth::sign(m.spec.node_id, unix_time, m.spec.token.as_bytes());
        let node_type = m.spec.node_type() as u8;
        let _ = Auth {
            node_type,
            node_id: m.spec.node_id,
            plat: &m.spec.plat,
            time: unix_time,
            sign,
        }
        .encode(&mut m.outbuf);
        m
    }

    /// The node's spec.
    pub fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    /// True after AUTH_RESULT 0 and until the connection closes.
    pub fn is_authenticated(&self) -> bool {
        self.phase == Phase::Online
    }

    /// True once the server refused, kicked or broke the protocol.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The heartbeat interval the server announced (ms), once authenticated.
    pub fn heartbeat_interval_ms(&self) -> u64 {
        self.heartbeat_interval_ms
    }

    /// Bytes waiting to be written.
    pub fn transmit(&self) -> &[u8] {
        &self.outbuf[self.sent..]
    }

    /// `n` bytes of [`Self::transmit`] were written.
    pub fn advance_transmit(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.outbuf.len());
        if self.sent == self.outbuf.len() {
            self.outbuf.clear();
            self.sent = 0;
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] should run next (the caller's ms clock).
    pub fn next_timeout(&self) -> Option<u64> {
        self.next_heartbeat_ms
    }

    /// Sends a heartbeat if one is due.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if let Some(due) = self.next_heartbeat_ms {
            if now_ms >= due && self.phase == Phase::Online {
                self.send_heartbeat(now_ms);
                self.next_heartbeat_ms = Some(now_ms + self.heartbeat_interval_ms.max(1));
            }
        }
    }

    /// Queues a HEARTBEAT with `ts`.
    pub fn send_heartbeat(&mut self, ts: u64) {
        Heartbeat { ts }.encode(&mut self.outbuf);
    }

    /// Queues a STATUS_REPORT.
    pub fn send_status(&mut self, online: u32) {
        StatusReport { online }.encode(&mut self.outbuf);
    }

    /// Queues an application command.
    pub fn send_app(&mut self, command: u16, body: &[u8]) -> Result<(), proto::FrameTooLarge> {
        Message::App { cmd: command, body }.encode(&mut self.outbuf)
    }

    /// Feeds bytes read from the socket.
    pub fn handle_input(&mut self, bytes: &[u8], now_ms: u64) {
        if self.phase == Phase::Closed {
            return;
        }
        // Parse straight from `bytes` when nothing is buffered (the common case: no copy).
        if self.inbuf.is_empty() {
            let used = self.parse(bytes, now_ms);
            if self.phase != Phase::Closed {
                self.inbuf.extend_from_slice(&bytes[used..]);
            }
        } else {
            let mut buf = std::mem::take(&mut self.inbuf);
            buf.extend_from_slice(bytes);
            let used = self.parse(&buf, now_ms);
            buf.drain(..used);
            if self.phase != Phase::Closed {
                self.inbuf = buf;
            }
        }
    }

    fn parse(&mut self, buf: &[u8], now_ms: u64) -> usize {
        let mut at = 0;
        while self.phase != Phase::Closed {
            match proto::parse_frame(&buf[at..], proto::MAX_PAYLOAD) {
                Ok(Some((payload, used))) => {
                    at += used;
                    self.on_frame(payload, now_ms);
                }
                Ok(None) => break,
                Err(e) => self.fail(e.to_string()),
            }
        }
        at
    }

    fn fail(&mut self, why: String) {
        self.phase = Phase::Closed;
        self.next_heartbeat_ms = None;
        self.events.push_back(NodeEvent::ProtocolError(why));
    }

    fn on_frame(&mut self, payload: &[u8], now_ms: u64) {
        let msg = match Message::decode(payload) {
            Ok(m) => m,
            Err(e) => return self.fail(e.to_string()),
        };
        match (self.phase, msg) {
            (Phase::AwaitAuthResult, Message::AuthResult(r)) if r.code == 0 => {
                self.phase = Phase::Online;
                self.heartbeat_interval_ms = r.heartbeat_interval as u64 * 1000;
                if self.auto_heartbeat {
                    self.next_heartbeat_ms = Some(now_ms + self.heartbeat_interval_ms.max(1));
                }
                self.queue_info();
                self.events.push_back(NodeEvent::Authenticated {
                    server_time: r.server_time,
                    heartbeat_interval: r.heartbeat_interval,
                    heartbeat_timeout: r.heartbeat_timeout,
                });
            }
            (Phase::AwaitAuthResult, Message::AuthResult(r)) => {
                self.phase = Phase::Closed;
                self.events.push_back(NodeEvent::AuthRejected(r.code));
            }
            (_, Message::Kick(k)) => {
                self.phase = Phase::Closed;
                self.next_heartbeat_ms = None;
                self.events.push_back(NodeEvent::Kicked(k.reason));
            }
            (Phase::Online, m) => match ServerMessage::from_message(&m) {
                Some(ServerMessage::AuthResult(_)) | None => self.fail(format!("unexpected {m:?}")),
                Some(owned) => self.events.push_back(NodeEvent::Message(owned)),
            },
            (_, m) => self.fail(format!("unexpected before AUTH_RESULT: {m:?}")),
        }
    }

    fn queue_info(&mut self) {
        let id = self.spec.node_id;
        let _ = match &self.spec.info {
            NodeInfoSpec::Game {
                serv_name,
                open_time,
                cross_plat,
                cross_server_id,
                cross_pos,
                addr,
            } => GameInfo {
                serv_id: id,
                serv_name,
                open_time: *open_time,
                cross_plat,
                cross_server_id: *cross_server_id,
                cross_pos: *cross_pos,
                addr,
            }
            .encode(&mut self.outbuf),
            NodeInfoSpec::Cross {
                cross_plat,
                cross_server_id,
                cross_node_name,
                capacity,
                game_server_list,
            } => CrossInfo {
                id,
                cross_plat,
                cross_server_id: *cross_server_id,
                cross_node_name,
                capacity: *capacity,
                game_server_list: U32List::EMPTY,
            }
            .encode_with(game_server_list, &mut self.outbuf),
        };
    }
}

#[cfg(test)]
mod tests {
    //! The client machine against the real cluster logic, on a virtual clock: no sockets.
    use super::*;
    use crate::cluster::{Cluster, ConnId, NoHandler, Now, Outbox};
    use crate::config::Config;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Wires {
        to_node: HashMap<ConnId, Vec<u8>>,
        closed: Vec<ConnId>,
    }

    impl Outbox for Wires {
        fn send(&mut self, conn: ConnId, frame: &[u8]) {
            self.to_node
                .entry(conn)
                .or_default()
                .extend_from_slice(frame);
        }
        fn close(&mut self, conn: ConnId) {
            self.closed.push(conn);
        }
    }

    const T0: u32 = 1_700_000_000;

    struct Pair {
        server: Cluster,
        wires: Wires,
        nodes: Vec<NodeMachine>,
        now: Now,
    }

    impl Pair {
        fn new() -> Pair {
            let cfg = Config {
                token: "tok".into(),
                heartbeat_interval: 5,
                heartbeat_timeout: 12,
                ..Config::default()
            };
            let now = Now {
                mono_ms: 0,
                unix_secs: T0 as u64,
            };
            Pair {
                server: Cluster::new(&cfg, now),
                wires: Wires::default(),
                nodes: Vec::new(),
                now,
            }
        }

        fn add(&mut self, spec: NodeSpec, token_ok: bool) -> usize {
            let mut spec = spec;
            if !token_ok {
                spec.token = "bad".into();
            }
            let conn = self.nodes.len();
            self.server
                .open(conn, "127.0.0.1:9".parse().expect("addr"), self.now);
            self.nodes.push(NodeMachine::new(spec, T0, true));
            conn
        }

        /// Moves bytes both ways until nothing moves.
        fn pump(&mut self) {
            loop {
                let mut moved = false;
                for conn in 0..self.nodes.len() {
                    if self.wires.closed.contains(&conn) {
                        continue;
                    }
                    let bytes = self.nodes[conn].transmit().to_vec();
                    if !bytes.is_empty() {
                        self.nodes[conn].advance_transmit(bytes.len());
                        let mut at = 0;
                        while let Ok(Some((payload, used))) =
                            proto::parse_frame(&bytes[at..], 65535)
                        {
                            self.server.handle_frame(
                                conn,
                                payload,
                                self.now,
                                &mut self.wires,
                                &mut NoHandler,
                            );
                            at += used;
                        }
                        moved = true;
                    }
                }
                // The end of a reactor turn: the journal is durable, announcements go out.
                if !self.server.pending_journal().is_empty() {
                    self.server.journal_synced(&mut self.wires);
                }
                for (conn, bytes) in std::mem::take(&mut self.wires.to_node) {
                    self.nodes[conn].handle_input(&bytes, self.now.mono_ms);
                    moved = true;
                }
                if !moved {
                    break;
                }
            }
        }

        fn advance(&mut self, ms: u64) {
            let end = self.now.mono_ms + ms;
            while self.now.mono_ms < end {
                self.now.mono_ms = (self.now.mono_ms + 100).min(end);
                for n in &mut self.nodes {
                    n.handle_timeout(self.now.mono_ms);
                }
                self.server
                    .handle_timeout(self.now, &mut self.wires, &mut NoHandler);
                self.pump();
            }
        }

        fn events(&mut self, conn: usize) -> Vec<NodeEvent> {
            std::iter::from_fn(|| self.nodes[conn].poll_event()).collect()
        }
    }

    fn game(id: u32) -> NodeSpec {
        NodeSpec {
            node_id: id,
            plat: "dev".into(),
            token: "tok".into(),
            info: NodeInfoSpec::Game {
                serv_name: format!("S{id}"),
                open_time: 1,
                cross_plat: "p".into(),
                cross_server_id: 0,
                cross_pos: 0,
                addr: String::new(),
            },
        }
    }

    fn cross(id: u32, cap: u16) -> NodeSpec {
        NodeSpec {
            node_id: id,
            plat: "dev".into(),
            token: "tok".into(),
            info: NodeInfoSpec::Cross {
                cross_plat: "p".into(),
                cross_server_id: id,
                cross_node_name: format!("c{id}"),
                capacity: cap,
                game_server_list: vec![],
            },
        }
    }

    #[test]
    fn handshake_assignment_and_heartbeats_on_a_virtual_clock() {
        let mut p = Pair::new();
        let x = p.add(cross(90, 2), true);
        let g = p.add(game(1), true);
        p.pump();
        assert!(matches!(
            p.events(x).as_slice(),
            [
                NodeEvent::Authenticated { .. },
                NodeEvent::Message(ServerMessage::CrossMembers(_)),
                ..
            ]
        ));
        let ev = p.events(g);
        assert!(matches!(
            ev[0],
            NodeEvent::Authenticated {
                heartbeat_interval: 5,
                heartbeat_timeout: 12,
                ..
            }
        ));
        assert!(ev.contains(&NodeEvent::Message(ServerMessage::CrossAssign {
            cross_server_id: 90,
            cross_node_name: "c90".into(),
            cross_plat: "p".into(),
            cross_pos: 1
        })));
        // An hour of virtual time: automatic heartbeats keep both alive, ACKs echo the ts.
        p.advance(3_600_000);
        let acks: Vec<_> = p
            .events(g)
            .into_iter()
            .filter(|e| matches!(e, NodeEvent::Message(ServerMessage::HeartbeatAck(_))))
            .collect();
        assert_eq!(acks.len(), 720, "one every 5 s");
        assert!(p.wires.closed.is_empty());
    }

    #[test]
    fn a_node_without_heartbeats_is_kicked_and_the_machine_says_so() {
        let mut p = Pair::new();
        let g = p.add(game(1), true);
        p.nodes[g] = NodeMachine::new(game(1), T0, false);
        p.pump();
        p.events(g);
        // The login node kicks past the timeout: 1 ms (its clock is read in whole ms), on its
        // wheel's next 10 ms tick.
        p.advance(12_010);
        assert_eq!(p.events(g), [NodeEvent::Kicked(2)]);
        assert!(p.nodes[g].is_closed());
    }

    #[test]
    fn a_bad_token_is_rejected() {
        let mut p = Pair::new();
        let g = p.add(game(1), false);
        p.pump();
        assert_eq!(p.events(g), [NodeEvent::AuthRejected(1)]);
    }

    #[test]
    fn split_input_and_garbage() {
        let mut m = NodeMachine::new(game(1), T0, false);
        let mut frame = Vec::new();
        proto::AuthResult {
            code: 0,
            server_time: T0,
            heartbeat_interval: 1,
            heartbeat_timeout: 3,
        }
        .encode(&mut frame);
        for b in &frame {
            m.handle_input(&[*b], 0);
        }
        assert!(matches!(
            m.poll_event(),
            Some(NodeEvent::Authenticated { .. })
        ));
        assert!(!m.transmit().is_empty(), "AUTH and INFO queued");
        m.handle_input(&[0, 0], 0);
        assert!(matches!(m.poll_event(), Some(NodeEvent::ProtocolError(_))));
        assert!(m.is_closed());
    }
}
