//! What the cluster keeps per connection: the session's [`Phase`] and which commands each
//! phase takes, the [`Session`] record, what it knows of the node ([`NodeDetails`]) and the
//! read-only [`NodeView`] embedders get. Types only, below the handler API and the state
//! machine (`lifecycle.rs`) that both use them, so no import circle forms.

use super::alloc::{CrossId, PlatId};
use super::NodeKey;
use crate::proto::{cmd, NodeType};
use crate::timer::TimerId;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Free,
    AwaitAuth,
    AwaitInfo,
    Online,
    Closed,
}

impl Phase {
    /// Whether a session in this phase takes `command` from a node of `node_type`.
    pub(super) fn accepts(self, command: u16, node_type: NodeType) -> bool {
        let info = match node_type {
            NodeType::Game => cmd::GAME_INFO,
            NodeType::Cross => cmd::CROSS_INFO,
        };
        match self {
            Phase::Free | Phase::Closed => false,
            Phase::AwaitAuth => command == cmd::AUTH,
            Phase::AwaitInfo => command == cmd::HEARTBEAT || command == info,
            Phase::Online => {
                command == cmd::HEARTBEAT
                    || cmd::is_app(command)
                    || (command == cmd::STATUS_REPORT && node_type == NodeType::Game)
            }
        }
    }
}

/// What the login node keeps about a node while its session lasts: the details its INFO gave,
/// plus what it learned since (players online, whether the node was welcomed). Not the INFO
/// as the node sent it: that is [`super::ReportedInfo`], borrowed for
/// [`super::Handler::node_online`] only; nor what a client sends
/// ([`crate::client::machine::NodeInfoSpec`]).
#[derive(Debug, Clone)]
pub enum NodeDetails {
    /// No INFO yet.
    None,
    /// From GAME_INFO.
    Game {
        /// Unix seconds the game server opened.
        open_time: u32,
        /// Its cross_plat, interned.
        cross_plat: PlatId,
        /// Address players use.
        addr: Box<str>,
        /// Players online, from its last STATUS_REPORT.
        players_online: u32,
        /// It has been sent its STATUS_PUSH and WHITELIST_SNAPSHOT (so deltas may follow).
        welcomed: bool,
    },
    /// From CROSS_INFO.
    Cross {
        /// Its cross_server_id.
        cross_server_id: CrossId,
    },
}

pub(super) struct Session {
    pub(super) phase: Phase,
    pub(super) key: NodeKey,
    pub(super) peer: SocketAddr,
    pub(super) last_heard_ms: u64,
    /// The heartbeat_timeout its AUTH_RESULT announced, in ms: it governs this session even
    /// if a reload changes the setting (the contract: the timeout the node was told).
    pub(super) heartbeat_timeout_ms: u64,
    pub(super) connected_unix: u64,
    pub(super) timer: Option<TimerId>,
    /// The plat field of its AUTH, shared with other sessions that sent the same name.
    pub(super) auth_plat: Option<Arc<str>>,
    /// Monotonic ms when its INFO made it online (the offline line says how long).
    pub(super) online_ms: u64,
    pub(super) info: NodeDetails,
    /// The peer address is on the allowlist (checked first at AUTH).
    pub(super) allowed: bool,
}

impl Session {
    pub(super) fn free() -> Self {
        Session {
            phase: Phase::Free,
            key: NodeKey {
                node_type: NodeType::Game,
                node_id: 0,
            },
            peer: SocketAddr::from(([0, 0, 0, 0], 0)),
            last_heard_ms: 0,
            heartbeat_timeout_ms: 0,
            connected_unix: 0,
            timer: None,
            auth_plat: None,
            online_ms: 0,
            info: NodeDetails::None,
            allowed: true,
        }
    }

    /// The read-only view embedders and the admin surface get (the session's key is its
    /// registry key).
    pub(super) fn view(&self) -> NodeView<'_> {
        NodeView {
            key: self.key,
            peer: self.peer,
            connected_unix: self.connected_unix,
            plat: self.auth_plat.as_deref().unwrap_or(""),
            info: &self.info,
            last_heard_ms: self.last_heard_ms,
        }
    }
}

/// A read-only view of one online node, for embedders and the admin surface.
#[derive(Debug, Clone)]
pub struct NodeView<'a> {
    /// Identity.
    pub key: NodeKey,
    /// Peer address.
    pub peer: SocketAddr,
    /// Unix seconds it connected.
    pub connected_unix: u64,
    /// Its AUTH plat.
    pub plat: &'a str,
    /// What the login node keeps about it (its INFO's details, load, welcome state).
    pub info: &'a NodeDetails,
    /// Monotonic ms of the last frame heard.
    pub last_heard_ms: u64,
}
