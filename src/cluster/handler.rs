//! The embedder API: the [`Handler`] hooks, what they are told ([`ReportedInfo`]) and what
//! they may do ([`Context`]). Separate from the session logic so an embedder reads one small
//! file, and so the cluster's own state is reachable from a handler only through `Context`.

use super::alloc::{Allocator, CrossId};
use super::session::{NodeDetails, Phase, Session};
use super::{Cluster, ConnId, NodeKey, Outbox, Timer};
use crate::proto::{self, cmd, NodeType};
use crate::timer::{TimerId, TimerWheel};
use hashbrown::HashMap;
use log::{debug, error};
use std::fmt;

/// Hooks for an embedding application. Every method has a default that does nothing, so
/// `impl Handler for MyApp {}` compiles. Handlers run on the poll loop's thread, inline:
/// keep them short (no blocking I/O); use [`Context::set_timer`] for later work.
///
/// A panic inside a handler call is caught at that call: it is logged (error level) with the
/// event and node, counted in `/metrics` (`login_node_handler_panics_total`), and the loop
/// keeps serving every node; the event that panicked is not handled further, and the
/// handler's own state is whatever the panic left. (Built with `panic = "abort"`, the process
/// aborts instead.)
pub trait Handler {
    /// A node sent its INFO and is online; `info` is what its INFO said.
    fn node_online(&mut self, _ctx: &mut Context<'_>, _node: NodeKey, _info: &ReportedInfo<'_>) {}
    /// An online node went offline (closed, kicked, timed out, replaced).
    fn node_offline(&mut self, _ctx: &mut Context<'_>, _node: NodeKey) {}
    /// An online node sent an application command (0x1000..=0x7FFF).
    /// The default drops it, logged at debug level (contract §4).
    fn app_command(&mut self, _ctx: &mut Context<'_>, from: NodeKey, cmd: u16, body: &[u8]) {
        debug!(
            "{from}: application command {cmd:#06x} ({} bytes) dropped: no handler",
            body.len()
        );
    }
    /// A timer set with [`Context::set_timer`] fired, with the token it was set with.
    fn timer(&mut self, _ctx: &mut Context<'_>, _token: u64) {}
}

/// What a node reported in its INFO (GAME_INFO or CROSS_INFO), borrowed from the frame for
/// the [`Handler::node_online`] call. What the login node keeps afterwards is
/// [`NodeDetails`] (in [`NodeView::info`](super::NodeView::info)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportedInfo<'a> {
    /// A game node's GAME_INFO.
    Game {
        /// serv_name.
        serv_name: &'a str,
        /// Its cross platform.
        cross_plat: &'a str,
        /// The address players use.
        addr: &'a str,
        /// Unix seconds it opened.
        open_time: u32,
    },
    /// A cross node's CROSS_INFO.
    Cross {
        /// cross_server_id.
        cross_server_id: u32,
        /// How game nodes reach it.
        cross_node_name: &'a str,
        /// Its platform.
        cross_plat: &'a str,
        /// The capacity it reported (0 = the login node's default).
        capacity: u16,
    },
}

/// The handler used when the embedder has none: application commands are ignored.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHandler;

impl Handler for NoHandler {}

/// Why [`Context::send`] did not queue a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The node is not online.
    NotOnline,
    /// Only application commands (0x1000..=0x7FFF) may be sent by a handler.
    NotAppCommand,
    /// The body does not fit in one frame.
    TooLarge,
}

/// What a [`Handler`] may do while handling an event: send application commands to one
/// node, a platform's game nodes or every node, look nodes up, and set timers on the login
/// node's own timer wheel.
pub struct Context<'a> {
    registry: &'a HashMap<NodeKey, ConnId>,
    sessions: &'a [Session],
    out: &'a mut dyn Outbox,
    scratch: &'a mut Vec<u8>,
    alloc: &'a Allocator,
    cross_conns: &'a HashMap<CrossId, ConnId>,
    wheel: &'a mut TimerWheel<Timer>,
    now_ms: u64,
}

impl Context<'_> {
    /// The monotonic clock of this event, in ms (the same clock timers use).
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Calls [`Handler::timer`] with `token` after `after_ms` (10 ms resolution; timers due
    /// in the same tick fire in no particular order). A timer is never due at once: even with
    /// `after_ms` 0 it fires on a later tick, so a timer that re-arms itself from
    /// [`Handler::timer`] runs once per loop turn instead of stalling the loop.
    pub fn set_timer(&mut self, after_ms: u64, token: u64) -> TimerId {
        self.wheel
            .insert(self.now_ms + after_ms.max(1), Timer::Handler(token))
    }

    /// Cancels a timer set with [`Self::set_timer`] that has not fired; true if it did. An id
    /// whose timer already fired or was cancelled is stale and cancels nothing.
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        if !matches!(self.wheel.payload(id), Some(Timer::Handler(_))) {
            return false;
        }
        self.wheel.cancel(id).is_some()
    }

    /// The online cross node that serves game node `serv_id`, if it has an assignment and
    /// that cross node is online.
    pub fn cross_of(&self, serv_id: u32) -> Option<NodeKey> {
        let (cross, _) = self.alloc.game(serv_id)?.assignment?;
        let conn = *self.cross_conns.get(&cross)?;
        Some(self.sessions.get(conn)?.key)
    }

    /// The game nodes assigned to cross node `cross_server_id` (online or not), by slot.
    pub fn members_of(&self, cross_server_id: u32) -> Vec<(u16, u32)> {
        self.alloc
            .cross(cross_server_id)
            .map(|c| c.members.iter().map(|(&p, &s)| (p, s)).collect())
            .unwrap_or_default()
    }

    /// Sends an application command to every online game node whose GAME_INFO named
    /// `cross_plat`; returns how many got it.
    pub fn send_to_platform(
        &mut self,
        cross_plat: &str,
        command: u16,
        body: &[u8],
    ) -> Result<usize, SendError> {
        let Some(plat) = self.alloc.platforms.get(cross_plat) else {
            return Ok(0);
        };
        self.send_where(
            command,
            body,
            |s| matches!(s.info, NodeDetails::Game { cross_plat, .. } if cross_plat == plat),
        )
    }

    /// Sends an application command to every online node (of `node_type`, or all);
    /// returns how many got it.
    pub fn send_to_all(
        &mut self,
        node_type: Option<NodeType>,
        command: u16,
        body: &[u8],
    ) -> Result<usize, SendError> {
        self.send_where(command, body, |s| {
            node_type.is_none_or(|t| s.key.node_type == t)
        })
    }

    fn send_where(
        &mut self,
        command: u16,
        body: &[u8],
        select: impl Fn(&Session) -> bool,
    ) -> Result<usize, SendError> {
        self.encode_app(command, body)?;
        let mut sent = 0;
        for (conn, s) in self.sessions.iter().enumerate() {
            if s.phase == Phase::Online && select(s) {
                self.out.send(conn, self.scratch);
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// True when `node` is online (INFO received, connection alive).
    pub fn is_online(&self, node: NodeKey) -> bool {
        self.online_conn(node).is_some()
    }

    fn online_conn(&self, node: NodeKey) -> Option<ConnId> {
        let conn = *self.registry.get(&node)?;
        (self.sessions.get(conn)?.phase == Phase::Online).then_some(conn)
    }

    /// Sends an application command to an online node.
    pub fn send(&mut self, to: NodeKey, command: u16, body: &[u8]) -> Result<(), SendError> {
        if !cmd::is_app(command) {
            return Err(SendError::NotAppCommand);
        }
        let conn = self.online_conn(to).ok_or(SendError::NotOnline)?;
        self.encode_app(command, body)?;
        self.out.send(conn, self.scratch);
        Ok(())
    }

    /// Encodes one application command frame into the scratch buffer, through the shared
    /// frame builder.
    fn encode_app(&mut self, command: u16, body: &[u8]) -> Result<(), SendError> {
        if !cmd::is_app(command) {
            return Err(SendError::NotAppCommand);
        }
        self.scratch.clear();
        let start = proto::frame::begin_frame(self.scratch, command);
        self.scratch.extend_from_slice(body);
        proto::frame::end_frame(self.scratch, start).map_err(|_| SendError::TooLarge)
    }
}

impl Cluster {
    /// Logs and counts a handler call that panicked (see [`Handler`]).
    pub(super) fn handler_panicked(&mut self, what: fmt::Arguments<'_>, why: &str) {
        self.stats.handler_panics += 1;
        error!("handler panicked in {what}: {why}; the event is dropped, serving goes on");
    }

    /// A handler's view of the cluster for one event.
    pub(super) fn context<'a>(&'a mut self, out: &'a mut dyn Outbox, now_ms: u64) -> Context<'a> {
        Context {
            registry: &self.registry,
            sessions: &self.sessions,
            out,
            scratch: &mut self.scratch,
            alloc: &self.alloc,
            cross_conns: &self.cross_conns,
            wheel: &mut self.wheel,
            now_ms,
        }
    }
}
