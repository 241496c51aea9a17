//! A session's lifecycle: a connection opens, its frames are dispatched by phase
//! ([`Cluster::handle_frame`]), and it ends (protocol error, KICK, close). The AUTH and INFO
//! steps live in `auth.rs` and `info.rs`; this file holds the lifecycle around them.

use super::handler::Handler;
use super::session::{NodeDetails, NodeView, Phase, Session};
use super::{admission, handler_guard, operator, Cluster, ConnId, NodeKey, Now, Outbox, Timer};
use crate::logging::Peer;
use crate::proto::{
    self, cmd, DecodeError, FrameError, Heartbeat, Kick, KickReason, Message, MessageError,
    NodeType, StatusReport,
};
use log::{debug, info, warn};
use std::fmt;
use std::net::SocketAddr;

impl Cluster {
    /// The online node `key`, if any.
    pub fn node(&self, key: NodeKey) -> Option<NodeView<'_>> {
        let conn = *self.registry.get(&key)?;
        let s = self
            .sessions
            .get(conn)
            .filter(|s| s.phase == Phase::Online)?;
        Some(s.view())
    }

    /// Every online node.
    pub fn online_nodes(&self) -> impl Iterator<Item = NodeView<'_>> {
        self.sessions
            .iter()
            .filter(|s| s.phase == Phase::Online)
            .map(Session::view)
    }

    /// A connection was accepted. `conn` must not be in use.
    pub fn open(&mut self, conn: ConnId, peer: SocketAddr, now: Now) {
        if self.sessions.len() <= conn {
            self.sessions.resize_with(conn + 1, Session::free);
        }
        let timer = self
            .wheel
            .insert(now.mono_ms + self.auth_timeout_ms, Timer::Session(conn));
        let s = &mut self.sessions[conn];
        debug_assert_eq!(s.phase, Phase::Free, "conn {conn} reused while open");
        *s = Session {
            phase: Phase::AwaitAuth,
            peer,
            last_heard_ms: now.mono_ms,
            connected_unix: now.unix_secs,
            timer: Some(timer),
            allowed: admission::allowed(&self.allow, peer.ip()),
            ..Session::free()
        };
        self.open_connections += 1;
    }

    /// The reactor released `conn`'s socket (peer closed, I/O error, or after [`Outbox::close`]).
    pub fn closed(
        &mut self,
        conn: ConnId,
        now: Now,
        out: &mut dyn Outbox,
        handler: &mut dyn Handler,
    ) {
        let Some(s) = self.sessions.get(conn) else {
            return;
        };
        if s.phase == Phase::Free {
            return;
        }
        if s.phase != Phase::Closed {
            debug!("conn {conn} from {} closed by peer", Peer(s.peer));
        }
        self.end_session(conn, "closed by peer", now, out, handler);
        self.sessions[conn].phase = Phase::Free;
        self.open_connections -= 1;
    }

    /// The reactor's frame parser found a framing error on `conn`.
    pub fn frame_error(
        &mut self,
        conn: ConnId,
        error: FrameError,
        now: Now,
        out: &mut dyn Outbox,
        handler: &mut dyn Handler,
    ) {
        self.protocol_error(conn, &error, now, out, handler);
    }

    /// One frame payload (cmd + body) arrived on `conn`.
    pub fn handle_frame(
        &mut self,
        conn: ConnId,
        payload: &[u8],
        now: Now,
        out: &mut dyn Outbox,
        handler: &mut dyn Handler,
    ) {
        self.clock_ms = now.mono_ms;
        let Some(s) = self.sessions.get_mut(conn) else {
            return;
        };
        let (phase, node_type) = (s.phase, s.key.node_type);
        match phase {
            Phase::Free | Phase::Closed => return,
            Phase::AwaitAuth => {}
            // Any frame refreshes liveness; the timer re-checks this stamp when it fires.
            Phase::AwaitInfo | Phase::Online => s.last_heard_ms = now.mono_ms,
        }
        let (command, _) = proto::split_payload(payload);
        // What this phase does not take is a protocol error however its body reads.
        let expected = phase.accepts(command, node_type);
        // No wildcard over `Message`: a new variant does not compile until it is placed here.
        match Message::decode(payload) {
            Ok(Message::Auth(auth)) if expected => self.on_auth(conn, Ok(auth), now, out, handler),
            Ok(Message::Heartbeat(hb)) if expected => self.ack_heartbeat(conn, hb, out),
            Ok(Message::GameInfo(info)) if expected => {
                self.on_game_info(conn, info, now, out, handler)
            }
            Ok(Message::CrossInfo(info)) if expected => {
                self.on_cross_info(conn, info, now, out, handler)
            }
            Ok(Message::StatusReport(report)) if expected => self.on_status_report(conn, report),
            Ok(Message::App { cmd, body }) if expected => {
                self.on_app_command(conn, cmd, body, now, out, handler)
            }
            // A malformed AUTH is answered (code 6), after the allowlist check.
            Err(MessageError::Body(cmd::AUTH, e)) if expected => {
                self.on_auth(conn, Err(e), now, out, handler)
            }
            Err(MessageError::Body(command, error)) if expected => {
                let why = Malformed { command, error };
                self.protocol_error(conn, &why, now, out, handler)
            }
            // Node-to-login commands this phase does not take.
            Ok(Message::Auth(_)
            | Message::Heartbeat(_)
            | Message::GameInfo(_)
            | Message::CrossInfo(_)
            | Message::StatusReport(_)
            | Message::App { .. })
            // Login-to-node commands: a node never sends them.
            | Ok(Message::AuthResult(_)
            | Message::CrossAssign(_)
            | Message::CrossMembers(_)
            | Message::HeartbeatAck(_)
            | Message::StatusPush(_)
            | Message::WhitelistSnapshot(_)
            | Message::WhitelistDelta(_)
            | Message::Kick(_))
            // Not a command of protocol v1, or one out of place whose body is malformed too.
            | Err(MessageError::UnknownCommand(_) | MessageError::Body(..)) => {
                let why = describe_unexpected(command, phase, node_type);
                self.protocol_error(conn, &why, now, out, handler);
            }
        }
    }

    /// HEARTBEAT_ACK echoing the node's `ts` (any frame already refreshed its liveness).
    fn ack_heartbeat(&mut self, conn: ConnId, heartbeat: Heartbeat, out: &mut dyn Outbox) {
        self.scratch.clear();
        heartbeat.encode_ack(&mut self.scratch);
        out.send(conn, &self.scratch);
    }

    /// A game node's load: the server lists change only when its load status does.
    fn on_status_report(&mut self, conn: ConnId, report: StatusReport) {
        let (busy, full) = (self.busy_threshold, self.full_threshold);
        if let NodeDetails::Game { players_online, .. } = &mut self.sessions[conn].info {
            let before = operator::load_status(*players_online, busy, full);
            *players_online = report.online;
            if operator::load_status(report.online, busy, full) != before {
                self.list_generation += 1;
            }
        }
    }

    /// An application command from an online node, to the handler (a panic is caught).
    fn on_app_command(
        &mut self,
        conn: ConnId,
        command: u16,
        body: &[u8],
        now: Now,
        out: &mut dyn Outbox,
        handler: &mut dyn Handler,
    ) {
        let from = self.sessions[conn].key;
        let panicked = handler_guard::catch(|| {
            let mut ctx = self.context(out, now.mono_ms);
            handler.app_command(&mut ctx, from, command, body);
        });
        if let Some(why) = panicked {
            self.handler_panicked(format_args!("app_command {command:#06x} from {from}"), &why);
        }
    }

    pub(super) fn protocol_error(
        &mut self,
        conn: ConnId,
        why: &dyn fmt::Display,
        now: Now,
        out: &mut dyn Outbox,
        handler: &mut dyn Handler,
    ) {
        let Some(s) = self.sessions.get(conn) else {
            return;
        };
        match s.phase {
            Phase::Free | Phase::Closed => return,
            Phase::AwaitAuth => warn!("conn {conn} from {}: protocol error: {why}", Peer(s.peer)),
            _ => warn!("{} ({}): protocol error: {why}", s.key, Peer(s.peer)),
        }
        self.stats.protocol_errors += 1;
        self.kick(conn, KickReason::ProtocolError, now, out, handler);
    }

    pub(super) fn kick(
        &mut self,
        conn: ConnId,
        reason: KickReason,
        now: Now,
        out: &mut dyn Outbox,
        handler: &mut dyn Handler,
    ) {
        self.scratch.clear();
        Kick {
            reason: reason as u8,
        }
        .encode(&mut self.scratch);
        out.send(conn, &self.scratch);
        out.close(conn);
        self.end_session(conn, reason.describe(), now, out, handler);
    }

    /// Takes the session out of the registry and the allocator; the slot stays `Closed` until
    /// the reactor reports the socket released.
    pub(super) fn end_session(
        &mut self,
        conn: ConnId,
        why: &'static str,
        now: Now,
        out: &mut dyn Outbox,
        handler: &mut dyn Handler,
    ) {
        let s = &mut self.sessions[conn];
        let was = s.phase;
        if matches!(was, Phase::Free | Phase::Closed) {
            return;
        }
        s.phase = Phase::Closed;
        if let Some(t) = s.timer.take() {
            self.wheel.cancel(t);
        }
        self.owed.forget(conn);
        if let Some((_, owed)) = &mut self.in_flight {
            owed.forget(conn);
        }
        if let Some(plat) = s.auth_plat.take() {
            self.auth_plats.release(plat);
        }
        let key = s.key;
        let info = std::mem::replace(&mut s.info, NodeDetails::None);
        let peer = s.peer;
        let online_for = now.mono_ms.saturating_sub(s.online_ms);
        if was == Phase::AwaitAuth || self.registry.get(&key) != Some(&conn) {
            return;
        }
        self.registry.remove(&key);
        if was != Phase::Online {
            return;
        }
        match info {
            NodeDetails::Game { .. } => {
                self.stats.online_game -= 1;
                self.list_generation += 1;
                self.alloc.game_offline(key.node_id)
            }
            NodeDetails::Cross { cross_server_id } => {
                self.stats.online_cross -= 1;
                if self.cross_conns.get(&cross_server_id) == Some(&conn) {
                    self.cross_conns.remove(&cross_server_id);
                    self.alloc.cross_offline(cross_server_id);
                }
            }
            NodeDetails::None => {}
        }
        if log::log_enabled!(log::Level::Info) {
            key.start_line(&mut self.log_line, peer)
                .text(" offline: ")
                .text(why)
                .text(", online ")
                .seconds(online_for);
            info!("{}", self.log_line.as_str());
        }
        let panicked = handler_guard::catch(|| {
            let mut ctx = self.context(out, now.mono_ms);
            handler.node_offline(&mut ctx, key);
        });
        if let Some(why) = panicked {
            self.handler_panicked(format_args!("node_offline of {key}"), &why);
        }
    }
}

fn describe_unexpected(command: u16, phase: Phase, node_type: NodeType) -> String {
    if phase == Phase::AwaitAuth {
        return format!("command {command:#06x} before AUTH");
    }
    match command {
        cmd::AUTH => "second AUTH".to_string(),
        cmd::GAME_INFO | cmd::CROSS_INFO if phase == Phase::Online => "second INFO".to_string(),
        cmd::GAME_INFO | cmd::CROSS_INFO => format!(
            "command {command:#06x} is not the INFO of a {} node",
            node_type.name()
        ),
        cmd::STATUS_REPORT if node_type == NodeType::Cross => {
            "STATUS_REPORT from a cross node".to_string()
        }
        c if cmd::is_app(c) => format!("application command {c:#06x} before INFO"),
        c if (0x0001..=0x0FFF).contains(&c) && phase == Phase::AwaitInfo => {
            format!("command {c:#06x} before INFO")
        }
        c if (0x0001..=0x0FFF).contains(&c) => format!("unknown command {c:#06x}"),
        c => format!("command {c:#06x} outside 0x0001..0x7FFF"),
    }
}

/// A frame its phase takes whose body does not decode: "GAME_INFO: <what is wrong>" (a
/// malformed AUTH is not one: it is answered with code 6).
struct Malformed {
    command: u16,
    error: DecodeError,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.command {
            cmd::GAME_INFO => "GAME_INFO",
            cmd::CROSS_INFO => "CROSS_INFO",
            cmd::HEARTBEAT => "HEARTBEAT",
            cmd::STATUS_REPORT => "STATUS_REPORT",
            other => return write!(f, "command {other:#06x}: {}", self.error),
        };
        write!(f, "{name}: {}", self.error)
    }
}
