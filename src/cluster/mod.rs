//! The cluster logic, sans-IO: sessions, the registry, heartbeat expiry and cross allocation.
//!
//! The reactor feeds it events — a connection opened, a frame payload arrived, a connection
//! closed, time passed — each with `now`, and it answers through an [`Outbox`]: frames to queue
//! for a connection and connections to close. It owns the timer wheel, so tests drive it on a
//! virtual clock with no sockets at all.
//!
//! Session lifecycle (one per TCP connection):
//!
//! ```text
//!  open ──► AwaitAuth ──AUTH ok──► AwaitInfo ──INFO──► Online
//!              │ auth_timeout          │                  │
//!              │ AUTH failed           │ heartbeat timeout, protocol error,
//!              ▼                       ▼ replaced, shutdown, peer closed
//!           Closed ◄───────────────────┴──────────────────┘
//!              │ reactor released the socket (`closed`)
//!              ▼
//!            Free
//! ```
//!
//! A node is registered at AUTH (so duplicates are detected from then on) and is *online* —
//! in the allocator, visible to the handler — from its INFO until its session closes.

pub mod alloc;
mod fold;
pub mod guard;
mod handler_guard;
mod names;
mod operator;
mod role;
mod shared;

pub use role::Role;

use crate::config::{Config, DuplicatePolicy};
use crate::logging::{Clip, Escaped, LineBuf, Peer};
use crate::proto::{
    self, cmd, AuthCode, AuthResult, CrossAssign, CrossInfo, CrossMembers, FrameError, GameInfo,
    Heartbeat, Kick, KickReason, Member, NodeType, StatusPush, StatusReport,
};
use crate::state::{Record, State};
use crate::timer::{TimerId, TimerWheel};
use alloc::{Allocator, Changes, CrossId, PlatId, ServId};
use bytes::Bytes;
use hashbrown::{HashMap, HashSet};
use log::{debug, error, info, warn};
pub use operator::{GameStatus, OperatorError};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// A connection's id, chosen by the caller (the reactor uses its slab key).
pub type ConnId = usize;

/// Timer wheel tick. Heartbeat expiry must land within 1 s of the deadline; 10 ms ticks keep
/// the added delay negligible without waking the loop more often than needed.
pub const TICK_MS: u64 = 10;

/// AUTH failure lines logged per second at most; the rest are counted in the next line.
pub const AUTH_FAIL_LOG_PER_SECOND: u32 = 20;

/// What a timer of the cluster's wheel is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// A session's auth timeout or heartbeat expiry.
    Session(ConnId),
    /// A deadline the reactor set for its own use (admin connections); reported back by
    /// [`Cluster::take_fired_timers`].
    External(usize),
    /// A handler's timer ([`Context::set_timer`]), with its token.
    Handler(u64),
    /// The end of a cross node's CROSS_MEMBERS fold window (`fold.rs`).
    Fold(CrossId),
}

/// A point in time, as the caller sees it: a monotonic clock for deadlines and the wall clock
/// for AUTH windows and `server_time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds (any origin).
    pub mono_ms: u64,
    /// Unix seconds.
    pub unix_secs: u64,
}

/// Where the cluster's decisions go. The reactor implements it over sockets; tests record.
pub trait Outbox {
    /// Queues one whole frame (length header included) for `conn`.
    fn send(&mut self, conn: ConnId, frame: &[u8]);
    /// Closes `conn` once what is queued for it has been offered to the socket.
    fn close(&mut self, conn: ConnId);
    /// Queues `frames` (`count` whole frames) that the same call gives many connections:
    /// an outbox that can should keep a reference, not a copy (one whitelist change for
    /// every game node is then one buffer in memory).
    fn send_shared(&mut self, conn: ConnId, frames: &Bytes, count: u64) {
        let _ = count;
        self.send(conn, frames);
    }
}

/// A node's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeKey {
    /// Game or cross.
    pub node_type: NodeType,
    /// Its node_id.
    pub node_id: u32,
}

impl fmt::Display for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Three pieces, not a nested format: this is in every per-session log line.
        f.write_str(self.node_type.name())?;
        f.write_str(" ")?;
        fmt::Display::fmt(&self.node_id, f)
    }
}

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
    fn node_online(&mut self, _ctx: &mut Context<'_>, _node: NodeKey, _info: &OnlineInfo<'_>) {}
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

/// What a node's INFO said, as [`Handler::node_online`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnlineInfo<'a> {
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
            |s| matches!(s.info, NodeInfo::Game { cross_plat, .. } if cross_plat == plat),
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
        if !cmd::is_app(command) {
            return Err(SendError::NotAppCommand);
        }
        self.scratch.clear();
        let start = proto::frame::begin_frame(self.scratch, command);
        self.scratch.extend_from_slice(body);
        proto::frame::end_frame(self.scratch, start).map_err(|_| SendError::TooLarge)?;
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
        self.scratch.clear();
        let start = proto::frame::begin_frame(self.scratch, command);
        self.scratch.extend_from_slice(body);
        proto::frame::end_frame(self.scratch, start).map_err(|_| SendError::TooLarge)?;
        self.out.send(conn, self.scratch);
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Free,
    AwaitAuth,
    AwaitInfo,
    Online,
    Closed,
}

/// Details a node's INFO gave, kept while its session lasts.
#[derive(Debug, Clone)]
pub enum NodeInfo {
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

struct Session {
    phase: Phase,
    key: NodeKey,
    peer: SocketAddr,
    last_heard_ms: u64,
    /// The heartbeat_timeout its AUTH_RESULT announced, in ms: it governs this session even
    /// if a reload changes the setting (the contract: the timeout the node was told).
    heartbeat_timeout_ms: u64,
    connected_unix: u64,
    timer: Option<TimerId>,
    /// The plat field of its AUTH, shared with other sessions that sent the same name.
    auth_plat: Option<Arc<str>>,
    /// Monotonic ms when its INFO made it online (the offline line says how long).
    online_ms: u64,
    info: NodeInfo,
    /// The peer address is on the allowlist (checked first at AUTH).
    allowed: bool,
}

impl Session {
    fn free() -> Self {
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
            info: NodeInfo::None,
            allowed: true,
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
    /// What its INFO said.
    pub info: &'a NodeInfo,
    /// Monotonic ms of the last frame heard.
    pub last_heard_ms: u64,
}

/// Counters for metrics. Plain integers, bumped inline.
#[derive(Debug, Default, Clone)]
pub struct ClusterStats {
    /// AUTH results sent, by code (0..=6).
    pub auth_results: [u64; 8],
    /// Nodes dropped for heartbeat timeout.
    pub heartbeat_timeouts: u64,
    /// Protocol errors (KICK 5).
    pub protocol_errors: u64,
    /// Assignments made (new or moved), once durable.
    pub assignments: u64,
    /// Connections closed unanswered because their address (at accept) or the identity their
    /// AUTH claimed failed AUTH too often.
    pub connections_throttled: u64,
    /// Times an address reached its budget (`auth_fail_limit` × [`guard::ADDRESS_BUDGET_FACTOR`]).
    pub addresses_blocked: u64,
    /// Times an identity (address + node type + node id) reached `auth_fail_limit`.
    pub identities_blocked: u64,
    /// Online game nodes.
    pub online_game: u64,
    /// Online cross nodes.
    pub online_cross: u64,
    /// Handler calls that panicked (caught; the loop kept serving).
    pub handler_panics: u64,
}

/// The whitelist: entries and a version bumped by one per change.
#[derive(Debug, Default)]
pub struct Whitelist {
    /// The version (0 = never changed).
    pub version: u32,
    /// The entries.
    pub entries: HashSet<Box<str>>,
}

/// Announcements held until the journal records behind them are durable.
#[derive(Debug, Default)]
struct Owed {
    /// CROSS_ASSIGN / CROSS_MEMBERS frames, encoded when their event happened (one per
    /// event, as if sent then), in event order.
    frames: Vec<u8>,
    /// (connection, its node, end of its frame in `frames`).
    frame_index: Vec<(ConnId, NodeKey, usize)>,
    /// Game node connections to send STATUS_PUSH + WHITELIST_SNAPSHOT.
    welcome: Vec<ConnId>,
    /// Game nodes whose maintenance flag changed.
    status: Vec<ServId>,
    /// WHITELIST_DELTA frames, encoded once for every game node.
    deltas: Vec<u8>,
}

impl Owed {
    fn is_empty(&self) -> bool {
        self.frame_index.is_empty()
            && self.welcome.is_empty()
            && self.status.is_empty()
            && self.deltas.is_empty()
    }

    /// Drops what was held for a connection that closed, so held memory stays proportional
    /// to the nodes online however long the store cannot be written.
    fn forget(&mut self, conn: ConnId) {
        self.welcome.retain(|&c| c != conn);
        if !self.frame_index.iter().any(|e| e.0 == conn) {
            return;
        }
        let (mut start, mut kept) = (0, 0);
        self.frame_index.retain_mut(|entry| {
            let end = entry.2;
            let keep = entry.0 != conn;
            if keep {
                self.frames.copy_within(start..end, kept);
                kept += end - start;
                entry.2 = kept;
            }
            start = end;
            keep
        });
        self.frames.truncate(kept);
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.frame_index.clear();
        self.welcome.clear();
        self.status.clear();
        self.deltas.clear();
    }
}

/// An [`Outbox`] that holds frames in [`Owed`] instead of sending them (the node keys are
/// filled in by the caller, which can see the sessions).
struct Hold<'a> {
    owed: &'a mut Owed,
}

impl Outbox for Hold<'_> {
    fn send(&mut self, conn: ConnId, frame: &[u8]) {
        self.owed.frames.extend_from_slice(frame);
        let unknown = NodeKey {
            node_type: NodeType::Game,
            node_id: 0,
        };
        self.owed
            .frame_index
            .push((conn, unknown, self.owed.frames.len()));
    }

    fn close(&mut self, _conn: ConnId) {}
}

/// The cluster: every session, the registry and the allocator.
pub struct Cluster {
    tokens: Vec<Box<[u8]>>,
    heartbeat_interval: u16,
    heartbeat_timeout: u16,
    heartbeat_timeout_ms: u64,
    auth_timeout_ms: u64,
    auth_window: u64,
    max_connections: usize,
    duplicate_policy: DuplicatePolicy,
    sessions: Vec<Session>,
    open_connections: usize,
    registry: HashMap<NodeKey, ConnId>,
    /// Online cross nodes by cross_server_id.
    cross_conns: HashMap<CrossId, ConnId>,
    alloc: Allocator,
    /// The one timer wheel of the process: sessions' deadlines and the reactor's own.
    wheel: TimerWheel<Timer>,
    fired_external: Vec<usize>,
    /// Encoding buffer for frames, reused.
    scratch: Vec<u8>,
    changes: Changes,
    /// Records of the batch being accumulated; their announcements wait in `owed`.
    journal: Vec<u8>,
    owed: Owed,
    /// The sequence number the accumulating batch will have.
    next_seq: u64,
    /// The batch handed to the store and what it announces, until it is durable.
    in_flight: Option<(u64, Owed)>,
    /// Every batch up to this one is durable.
    durable_seq: u64,
    /// The last batch holding a whitelist or maintenance change: a game node's welcome
    /// (STATUS_PUSH + WHITELIST_SNAPSHOT) waits until it is durable.
    operator_seq: u64,
    /// False after a failed journal write, until one succeeds.
    writable: bool,
    /// Single login node, or the active or a standby member of a failover group.
    role: Role,
    /// An operator asked the active member to hand over (the reactor tells the store).
    step_down_requested: bool,
    whitelist: Whitelist,
    maintenance: HashSet<ServId>,
    busy_threshold: u32,
    full_threshold: u32,
    /// Bumped whenever a game node's entry in a server list may have changed.
    list_generation: u64,
    /// The buffer the per-session log lines (online, offline) are built in.
    log_line: LineBuf,
    stats: ClusterStats,
    allow: Vec<guard::Cidr>,
    throttle: guard::AuthThrottle,
    /// Budget for AUTH failure log lines (a flood of bad logins cannot flood the log).
    fail_log: guard::LogBudget,
    throttle_window_ms: u64,
    /// The AUTH plats of open sessions, each stored once, freed with its last session.
    auth_plats: names::NamePool,
    /// The whitelist snapshot of the current version, encoded once.
    snapshot: shared::SnapshotCache,
    /// CROSS_MEMBERS fold windows.
    fold: fold::MemberFold,
    /// The monotonic ms of the event being handled (the fold windows' clock).
    clock_ms: u64,
}

impl Cluster {
    /// A cluster with the node-facing settings of `config`, its clock starting at `now`.
    pub fn new(config: &Config, now: Now) -> Self {
        Cluster {
            tokens: config.tokens(),
            heartbeat_interval: config.heartbeat_interval,
            heartbeat_timeout: config.heartbeat_timeout,
            heartbeat_timeout_ms: config.heartbeat_timeout as u64 * 1000,
            auth_timeout_ms: config.auth_timeout_ms,
            auth_window: config.auth_window as u64,
            max_connections: config.max_connections,
            duplicate_policy: config.duplicate_policy,
            sessions: Vec::new(),
            open_connections: 0,
            registry: HashMap::new(),
            cross_conns: HashMap::new(),
            alloc: Allocator::new(config.default_capacity),
            wheel: TimerWheel::new(TICK_MS, now.mono_ms),
            fired_external: Vec::new(),
            scratch: Vec::with_capacity(256),
            changes: Changes::default(),
            journal: Vec::new(),
            owed: Owed::default(),
            next_seq: 1,
            in_flight: None,
            durable_seq: 0,
            operator_seq: 0,
            writable: true,
            role: if config.etcd.is_empty() {
                Role::Single
            } else {
                Role::Standby { active: None }
            },
            step_down_requested: false,
            whitelist: Whitelist::default(),
            maintenance: HashSet::new(),
            busy_threshold: config.busy_threshold,
            full_threshold: config.full_threshold,
            list_generation: 0,
            log_line: LineBuf::default(),
            stats: ClusterStats::default(),
            allow: config.allow.clone(),
            throttle: guard::AuthThrottle::new(
                config.auth_fail_limit,
                config.auth_fail_window as u64 * 1000,
            ),
            fail_log: guard::LogBudget::new(AUTH_FAIL_LOG_PER_SECOND),
            throttle_window_ms: config.auth_fail_window as u64 * 1000,
            auth_plats: names::NamePool::default(),
            snapshot: shared::SnapshotCache::default(),
            fold: fold::MemberFold::default(),
            clock_ms: now.mono_ms,
        }
    }

    /// Loads durable state replayed at start-up. Call once, before any connection opens.
    pub fn restore(&mut self, state: State) {
        let State {
            assignments,
            mut names,
            whitelist_version,
            whitelist,
            maintenance,
            capacity,
            draining,
            games,
            crosses,
        } = state;
        // Cross nodes first: their names, platforms and capacities, then the overrides.
        for (cross, facts) in &crosses {
            self.alloc
                .restore_cross_facts(*cross, &facts.name, &facts.plat, facts.capacity);
        }
        for (serv, facts) in &games {
            self.alloc
                .restore_game(*serv, &facts.plat, facts.open_time, &facts.addr);
        }
        for (serv, (cross, pos)) in assignments {
            let name = names.remove(&serv);
            self.alloc.restore(serv, cross, pos, name.as_deref());
        }
        let crosses: HashSet<u32> = capacity.keys().chain(draining.iter()).copied().collect();
        for cross in crosses {
            self.alloc.restore_cross(
                cross,
                capacity.get(&cross).copied(),
                draining.contains(&cross),
            );
        }
        for (serv, name) in names {
            // Game nodes heard from but never assigned.
            self.alloc.restore_name(serv, &name);
        }
        self.whitelist = Whitelist {
            version: whitelist_version,
            entries: whitelist,
        };
        self.snapshot.clear();
        self.maintenance = maintenance;
        self.list_generation += 1;
    }

    /// Applies the reloadable settings of `config` (SIGHUP).
    pub fn reconfigure(&mut self, config: &Config) {
        self.tokens = config.tokens();
        self.heartbeat_interval = config.heartbeat_interval;
        self.heartbeat_timeout = config.heartbeat_timeout;
        self.heartbeat_timeout_ms = config.heartbeat_timeout as u64 * 1000;
        self.auth_timeout_ms = config.auth_timeout_ms;
        self.auth_window = config.auth_window as u64;
        self.max_connections = config.max_connections;
        self.duplicate_policy = config.duplicate_policy;
        if (self.busy_threshold, self.full_threshold)
            != (config.busy_threshold, config.full_threshold)
        {
            self.busy_threshold = config.busy_threshold;
            self.full_threshold = config.full_threshold;
            self.list_generation += 1;
        }
        self.allow = config.allow.clone();
        self.throttle_window_ms = config.auth_fail_window as u64 * 1000;
        self.throttle
            .reconfigure(config.auth_fail_limit, self.throttle_window_ms);
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &ClusterStats {
        &self.stats
    }

    /// The whitelist.
    pub fn whitelist(&self) -> &Whitelist {
        &self.whitelist
    }

    /// True when a game node is flagged for maintenance.
    pub fn in_maintenance(&self, serv: ServId) -> bool {
        self.maintenance.contains(&serv)
    }

    /// Records of the batch being accumulated (not yet handed to the store).
    pub fn pending_journal(&self) -> &[u8] {
        &self.journal
    }

    /// False while the store cannot be written: no new assignments, operator changes refused.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The sequence number the accumulating batch will have: a change made now is durable
    /// once [`Self::batch_durable`] has been called with this number (or a later one).
    pub fn pending_seq(&self) -> u64 {
        self.next_seq
    }

    /// Every batch up to this sequence number is durable.
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// True while a batch is with the store.
    pub fn batch_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Hands the accumulated records to the store: swaps them into `into` (which should be
    /// empty; its buffer is reused) and returns the batch's sequence number. `None` while a
    /// batch is in flight (one at a time: the next turns accumulate the following batch) or
    /// when nothing is pending.
    pub fn take_batch(&mut self, into: &mut Vec<u8>) -> Option<u64> {
        if self.in_flight.is_some() || self.journal.is_empty() {
            return None;
        }
        into.clear();
        std::mem::swap(&mut self.journal, into);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight = Some((seq, std::mem::take(&mut self.owed)));
        Some(seq)
    }

    /// The batch `seq` is durable: send what it announces (and what waited behind it without
    /// records of its own).
    pub fn batch_durable(&mut self, seq: u64, out: &mut dyn Outbox) {
        let Some((in_flight, mut owed)) = self.in_flight.take() else {
            return;
        };
        if in_flight != seq {
            // Not the batch in flight (one of a state since forgotten): release nothing.
            self.in_flight = Some((in_flight, owed));
            return;
        }
        self.durable_seq = seq;
        self.send_owed(&mut owed, out);
        if self.journal.is_empty() {
            // Frames held only to keep their order behind the batch: nothing else to wait for.
            let mut behind = std::mem::take(&mut self.owed);
            self.send_owed(&mut behind, out);
        }
        if self.owed.is_empty() {
            owed.clear();
            self.owed = owed; // keep the buffers for the next batch
        }
        if !self.writable {
            info!("state is writable again: assigning waiting game nodes");
            self.writable = true;
            // New assignments for the waiting: their records join the accumulating batch.
            self.alloc.set_allow_new(true);
            self.announce(out);
        }
    }

    /// The pending records are durable (for callers that write synchronously, and tests): the
    /// batch in flight, then the accumulated one.
    pub fn journal_synced(&mut self, out: &mut dyn Outbox) {
        if let Some((seq, _)) = self.in_flight {
            self.batch_durable(seq, out);
        }
        let mut buf = Vec::new();
        if let Some(seq) = self.take_batch(&mut buf) {
            self.batch_durable(seq, out);
        }
    }

    /// Writing the batch in flight failed: it stays in flight (the caller retries it) with
    /// what it announces, and no new assignments are made until a write succeeds.
    pub fn journal_failed(&mut self) {
        if self.writable {
            error!("state is not writable: new assignments and operator changes are refused until a write succeeds");
            self.writable = false;
            self.alloc.set_allow_new(false);
        }
    }

    /// Bytes held for durability (frames and deltas of both batches), for metrics and tests.
    pub fn held_bytes(&self) -> usize {
        let of = |o: &Owed| o.frames.len() + o.deltas.len() + o.welcome.len() * 8;
        of(&self.owed) + self.in_flight.as_ref().map_or(0, |(_, o)| of(o))
    }

    /// Open TCP connections on the node port.
    pub fn open_connections(&self) -> usize {
        self.open_connections
    }

    /// Registered nodes (authenticated, not closed).
    pub fn registered(&self) -> usize {
        self.registry.len()
    }

    /// A number that changes whenever a game node's entry in a server list may have changed
    /// (online, offline, name, address, open time, maintenance, or its load crossing
    /// `busy_threshold` / `full_threshold`). Caches of rendered lists compare it.
    pub fn list_generation(&self) -> u64 {
        self.list_generation
    }

    /// The allocator's records (read-only).
    pub fn allocator(&self) -> &Allocator {
        &self.alloc
    }

    /// The online node `key`, if any.
    pub fn node(&self, key: NodeKey) -> Option<NodeView<'_>> {
        let conn = *self.registry.get(&key)?;
        let s = self
            .sessions
            .get(conn)
            .filter(|s| s.phase == Phase::Online)?;
        Some(NodeView {
            key,
            peer: s.peer,
            connected_unix: s.connected_unix,
            plat: s.auth_plat.as_deref().unwrap_or(""),
            info: &s.info,
            last_heard_ms: s.last_heard_ms,
        })
    }

    /// Every online node.
    pub fn online_nodes(&self) -> impl Iterator<Item = NodeView<'_>> {
        self.sessions
            .iter()
            .filter(|s| s.phase == Phase::Online)
            .map(|s| NodeView {
                key: s.key,
                peer: s.peer,
                connected_unix: s.connected_unix,
                plat: s.auth_plat.as_deref().unwrap_or(""),
                info: &s.info,
                last_heard_ms: s.last_heard_ms,
            })
    }

    /// When [`Self::handle_timeout`] should next run (monotonic ms), if any timer is set.
    pub fn next_timeout(&self) -> Option<u64> {
        self.wheel.next_wakeup_ms()
    }

    fn throttle_window_secs(&self) -> u64 {
        self.throttle_window_ms / 1000
    }

    /// Whether a connection from `peer` may be opened at all: false while its address is
    /// blocked for failing AUTH too often (the reactor then closes it without a word).
    pub fn admits(&mut self, peer: SocketAddr, now: Now) -> bool {
        if self.throttle.is_blocked(peer.ip(), now.mono_ms) {
            self.stats.connections_throttled += 1;
            return false;
        }
        true
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
            allowed: guard::allowed(&self.allow, peer.ip()),
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
        let phase = s.phase;
        let (command, body) = proto::split_payload(payload);
        match phase {
            Phase::Free | Phase::Closed => {}
            Phase::AwaitAuth => {
                if command == cmd::AUTH {
                    self.on_auth(conn, body, now, out, handler);
                } else {
                    self.protocol_error(
                        conn,
                        &format_args!("command {command:#06x} before AUTH"),
                        now,
                        out,
                        handler,
                    );
                }
            }
            Phase::AwaitInfo | Phase::Online => {
                // Any frame refreshes liveness; the timer re-checks this stamp when it fires.
                s.last_heard_ms = now.mono_ms;
                let node_type = s.key.node_type;
                match (command, phase, node_type) {
                    (cmd::HEARTBEAT, _, _) => match Heartbeat::decode(body) {
                        Ok(hb) => {
                            let mut ack = [0u8; 12];
                            ack[..4].copy_from_slice(&[0, 10, 0x80, 0x04]);
                            ack[4..].copy_from_slice(&hb.ts.to_be_bytes());
                            out.send(conn, &ack);
                        }
                        Err(e) => self.protocol_error(
                            conn,
                            &format_args!("HEARTBEAT: {e}"),
                            now,
                            out,
                            handler,
                        ),
                    },
                    (cmd::GAME_INFO, Phase::AwaitInfo, NodeType::Game) => {
                        self.on_game_info(conn, body, now, out, handler)
                    }
                    (cmd::CROSS_INFO, Phase::AwaitInfo, NodeType::Cross) => {
                        self.on_cross_info(conn, body, now, out, handler)
                    }
                    (cmd::STATUS_REPORT, Phase::Online, NodeType::Game) => {
                        match StatusReport::decode(body) {
                            Ok(r) => {
                                let (busy, full) = (self.busy_threshold, self.full_threshold);
                                if let NodeInfo::Game { players_online, .. } =
                                    &mut self.sessions[conn].info
                                {
                                    let before = operator::load_status(*players_online, busy, full);
                                    *players_online = r.online;
                                    if operator::load_status(r.online, busy, full) != before {
                                        self.list_generation += 1;
                                    }
                                }
                            }
                            Err(e) => self.protocol_error(
                                conn,
                                &format_args!("STATUS_REPORT: {e}"),
                                now,
                                out,
                                handler,
                            ),
                        }
                    }
                    (c, Phase::Online, _) if cmd::is_app(c) => {
                        let from = self.sessions[conn].key;
                        let panicked = handler_guard::catch(|| {
                            let mut ctx = self.context(out, now.mono_ms);
                            handler.app_command(&mut ctx, from, c, body);
                        });
                        if let Some(why) = panicked {
                            self.handler_panicked(
                                format_args!("app_command {c:#06x} from {from}"),
                                &why,
                            );
                        }
                    }
                    (c, _, _) => {
                        let why = describe_unexpected(c, phase, node_type);
                        self.protocol_error(conn, &why, now, out, handler);
                    }
                }
            }
        }
    }

    /// Fires every timer due at `now`: auth timeouts and heartbeat expiry.
    pub fn handle_timeout(&mut self, now: Now, out: &mut dyn Outbox, handler: &mut dyn Handler) {
        self.clock_ms = now.mono_ms;
        let mut folded_due = false;
        while let Some((_, timer)) = self.wheel.poll(now.mono_ms) {
            let conn = match timer {
                Timer::Session(conn) => conn,
                Timer::External(key) => {
                    self.fired_external.push(key);
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
        self.wheel.insert(at_ms, Timer::External(key))
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
        into.append(&mut self.fired_external);
    }

    /// Sends KICK `reason` to `node` and closes it. False if it is not registered.
    pub fn kick_node(
        &mut self,
        node: NodeKey,
        reason: KickReason,
        now: Now,
        out: &mut dyn Outbox,
        handler: &mut dyn Handler,
    ) -> bool {
        let Some(&conn) = self.registry.get(&node) else {
            return false;
        };
        info!("{node}: kicked ({})", reason.describe());
        self.kick(conn, reason, now, out, handler);
        true
    }

    /// Shutdown: KICK 4 to every registered node, and every connection closes.
    pub fn shutdown(&mut self, now: Now, out: &mut dyn Outbox, handler: &mut dyn Handler) {
        for conn in 0..self.sessions.len() {
            match self.sessions[conn].phase {
                Phase::AwaitInfo | Phase::Online => {
                    self.kick(conn, KickReason::Shutdown, now, out, handler)
                }
                Phase::AwaitAuth => {
                    out.close(conn);
                    self.end_session(conn, "shutdown", now, out, handler);
                }
                Phase::Free | Phase::Closed => {}
            }
        }
    }

    fn auth_result(&mut self, conn: ConnId, code: AuthCode, now: Now, out: &mut dyn Outbox) {
        self.stats.auth_results[(code as usize).min(7)] += 1;
        self.scratch.clear();
        AuthResult {
            code: code as u8,
            server_time: now.unix_secs.min(u32::MAX as u64) as u32,
            heartbeat_interval: self.heartbeat_interval,
            heartbeat_timeout: self.heartbeat_timeout,
        }
        .encode(&mut self.scratch);
        out.send(conn, &self.scratch);
    }

    /// Fails an AUTH with `code`: AUTH_RESULT, then close.
    fn refuse(
        &mut self,
        conn: ConnId,
        code: AuthCode,
        who: &dyn fmt::Display,
        now: Now,
        out: &mut dyn Outbox,
        handler: &mut dyn Handler,
    ) {
        let peer = self.sessions[conn].peer;
        if let Some(suppressed) = self.fail_log.take(now.mono_ms) {
            let more = if suppressed > 0 {
                format!(" ({suppressed} more refusals not logged)")
            } else {
                String::new()
            };
            warn!(
                "conn {conn} from {}: AUTH {who} refused: code {} ({}){more}",
                Peer(peer),
                code as u8,
                code.describe()
            );
        }
        let counts = matches!(
            code,
            AuthCode::BadSignature
                | AuthCode::BadTime
                | AuthCode::AddressNotAllowed
                | AuthCode::BadRequest
        );
        if counts && self.throttle.fail(peer.ip(), now.mono_ms) == guard::Failure::Blocked {
            self.stats.addresses_blocked += 1;
            warn!(
                "{}: too many failed AUTHs; its connections are refused for up to {} s",
                peer.ip(),
                self.throttle_window_secs()
            );
        }
        self.auth_result(conn, code, now, out);
        out.close(conn);
        self.end_session(conn, "AUTH refused", now, out, handler);
    }

    /// Counts a bad signature or time against the identity the AUTH claimed.
    fn identity_failed(&mut self, claimed: guard::Identity, key: &NodeKey, now: Now) {
        if self.throttle.fail_identity(claimed, now.mono_ms) == guard::Failure::IdentityBlocked {
            self.stats.identities_blocked += 1;
            warn!(
                "{key} from {}: too many failed AUTHs; its AUTHs are closed unanswered for up to {} s",
                claimed.ip,
                self.throttle_window_secs()
            );
        }
    }

    fn on_auth(
        &mut self,
        conn: ConnId,
        body: &[u8],
        now: Now,
        out: &mut dyn Outbox,
        handler: &mut dyn Handler,
    ) {
        // Check order is the contract's: address (4, looked up at accept), well-formed (6),
        // signature (1), time window (2), duplicate (3), capacity (5).
        if !self.sessions[conn].allowed {
            let who = format_args!("(address not on the allowlist)");
            return self.refuse(conn, AuthCode::AddressNotAllowed, &who, now, out, handler);
        }
        let auth = match proto::Auth::decode(body) {
            Ok(a) => a,
            Err(e) => {
                return self.refuse(
                    conn,
                    AuthCode::BadRequest,
                    &format_args!("(malformed: {e})"),
                    now,
                    out,
                    handler,
                )
            }
        };
        let Some(node_type) = NodeType::from_u8(auth.node_type) else {
            let who = format_args!("(unknown node_type {})", auth.node_type);
            return self.refuse(conn, AuthCode::BadRequest, &who, now, out, handler);
        };
        let key = NodeKey {
            node_type,
            node_id: auth.node_id,
        };
        let claimed = guard::Identity {
            ip: self.sessions[conn].peer.ip(),
            node_type: auth.node_type,
            node_id: auth.node_id,
        };
        if self.throttle.identity_blocked(&claimed, now.mono_ms) {
            // Told nothing new, and no signature is checked: closed without a word.
            self.stats.connections_throttled += 1;
            out.close(conn);
            return self.end_session(conn, "AUTH throttled", now, out, handler);
        }
        if !proto::auth::verify(auth.node_id, auth.time, &auth.sign, &self.tokens) {
            self.identity_failed(claimed, &key, now);
            return self.refuse(conn, AuthCode::BadSignature, &key, now, out, handler);
        }
        if (auth.time as u64).abs_diff(now.unix_secs) > self.auth_window {
            self.identity_failed(claimed, &key, now);
            return self.refuse(
                conn,
                AuthCode::BadTime,
                &format_args!("{key} (time {})", auth.time),
                now,
                out,
                handler,
            );
        }
        if let Role::Standby { active } = &self.role {
            let active = active.as_deref().unwrap_or("unknown").to_string();
            let who = format_args!("{key} (standby; the active member is {active})");
            return self.refuse(conn, AuthCode::Standby, &who, now, out, handler);
        }
        let existing = self.registry.get(&key).copied();
        if existing.is_some() && self.duplicate_policy == DuplicatePolicy::Reject {
            return self.refuse(conn, AuthCode::Duplicate, &key, now, out, handler);
        }
        if existing.is_none() && self.open_connections > self.max_connections {
            return self.refuse(conn, AuthCode::ServerFull, &key, now, out, handler);
        }
        if let Some(old) = existing {
            info!(
                "{key}: new login from {} replaces the one from {}",
                Peer(self.sessions[conn].peer),
                Peer(self.sessions[old].peer)
            );
            self.kick(old, KickReason::Replaced, now, out, handler);
        }
        let plat = self.auth_plats.get(auth.plat);
        self.registry.insert(key, conn);
        let deadline = now.mono_ms + self.heartbeat_timeout_ms;
        let s = &mut self.sessions[conn];
        s.phase = Phase::AwaitInfo;
        s.key = key;
        s.auth_plat = Some(plat);
        s.last_heard_ms = now.mono_ms;
        s.heartbeat_timeout_ms = self.heartbeat_timeout_ms;
        match s.timer {
            Some(t) => {
                self.wheel.reschedule(t, deadline);
            }
            None => s.timer = Some(self.wheel.insert(deadline, Timer::Session(conn))),
        }
        debug!(
            "{key} from {}: authenticated (plat \"{}\")",
            Peer(s.peer),
            Escaped(auth.plat)
        );
        self.auth_result(conn, AuthCode::Ok, now, out);
    }

    fn on_game_info(
        &mut self,
        conn: ConnId,
        body: &[u8],
        now: Now,
        out: &mut dyn Outbox,
        handler: &mut dyn Handler,
    ) {
        let info = match GameInfo::decode(body) {
            Ok(i) => i,
            Err(e) => {
                return self.protocol_error(
                    conn,
                    &format_args!("GAME_INFO: {e}"),
                    now,
                    out,
                    handler,
                )
            }
        };
        let key = self.sessions[conn].key;
        if info.serv_id != key.node_id {
            let why = format_args!("GAME_INFO serv_id {} differs from node_id", info.serv_id);
            return self.protocol_error(conn, &why, now, out, handler);
        }
        let Ok(plat) = self.alloc.platforms.intern(info.cross_plat) else {
            return self.platforms_full(conn, "GAME_INFO", info.cross_plat, now, out, handler);
        };
        // Welcome now, or after the pending records are durable (the snapshot and status
        // must not show what is not durable yet).
        let welcome_now = self.operator_seq <= self.durable_seq;
        let s = &mut self.sessions[conn];
        s.phase = Phase::Online;
        s.online_ms = now.mono_ms;
        s.info = NodeInfo::Game {
            open_time: info.open_time,
            cross_plat: plat,
            addr: info.addr.into(),
            players_online: 0,
            welcomed: welcome_now,
        };
        self.stats.online_game += 1;
        self.list_generation += 1;
        if log::log_enabled!(log::Level::Info) {
            self.log_line
                .start()
                .text(key.node_type.name())
                .text(" ")
                .num(key.node_id)
                .text(" (")
                .peer(s.peer)
                .text(") online: plat ")
                .quoted(s.auth_plat.as_deref().unwrap_or(""))
                .text(" serv_name ")
                .quoted(info.serv_name)
                .text(" cross_plat ")
                .quoted(info.cross_plat)
                .text(" addr ")
                .quoted(info.addr)
                .text(" open_time ")
                .num(info.open_time)
                .text(" reports cross ")
                .num(info.cross_server_id)
                .text("/")
                .num(info.cross_pos);
            info!("{}", self.log_line.as_str());
        }
        // Operator state first (maintenance, whitelist), then the assignment.
        if welcome_now {
            self.welcome(conn, key.node_id, out);
        } else {
            self.owed.welcome.push(conn);
        }
        self.journal_game_facts(key.node_id, &info);
        self.alloc.game_online(
            key.node_id,
            info.serv_name,
            plat,
            (info.cross_server_id, info.cross_pos),
        );
        let online = OnlineInfo::Game {
            serv_name: info.serv_name,
            cross_plat: info.cross_plat,
            addr: info.addr,
            open_time: info.open_time,
        };
        self.went_online(key, &online, now, out, handler);
    }

    fn on_cross_info(
        &mut self,
        conn: ConnId,
        body: &[u8],
        now: Now,
        out: &mut dyn Outbox,
        handler: &mut dyn Handler,
    ) {
        let info = match CrossInfo::decode(body) {
            Ok(i) => i,
            Err(e) => {
                return self.protocol_error(
                    conn,
                    &format_args!("CROSS_INFO: {e}"),
                    now,
                    out,
                    handler,
                )
            }
        };
        let key = self.sessions[conn].key;
        if info.id != key.node_id {
            let why = format_args!("CROSS_INFO id {} differs from node_id", info.id);
            return self.protocol_error(conn, &why, now, out, handler);
        }
        if info.cross_server_id == 0 {
            // 0 means "none" in GAME_INFO: game nodes told it would read it as no assignment.
            let why =
                "CROSS_INFO cross_server_id 0 (0 means none; a cross node needs a non-zero id)";
            return self.protocol_error(conn, &why, now, out, handler);
        }
        let Ok(plat) = self.alloc.platforms.intern(info.cross_plat) else {
            return self.platforms_full(conn, "CROSS_INFO", info.cross_plat, now, out, handler);
        };
        if let Some(&other) = self.cross_conns.get(&info.cross_server_id) {
            // Two live processes claiming one cross_server_id: the newer one wins, as a
            // duplicate login would.
            warn!(
                "{key}: cross_server_id {} is already served by {}; replacing it",
                info.cross_server_id, self.sessions[other].key
            );
            self.kick(other, KickReason::Replaced, now, out, handler);
        }
        let s = &mut self.sessions[conn];
        s.phase = Phase::Online;
        s.online_ms = now.mono_ms;
        s.info = NodeInfo::Cross {
            cross_server_id: info.cross_server_id,
        };
        info!(
            "{key} ({}) online: plat \"{}\" cross_server_id {} cross_node_name \"{}\" cross_plat \"{}\" capacity {} lists {} servers",
            Peer(s.peer),
            Escaped(s.auth_plat.as_deref().unwrap_or("")),
            info.cross_server_id,
            Escaped(info.cross_node_name),
            Escaped(info.cross_plat),
            info.capacity,
            info.game_server_list.len()
        );
        self.cross_conns.insert(info.cross_server_id, conn);
        self.stats.online_cross += 1;
        self.journal_cross_facts(&info);
        // Its first list goes out at once, whatever window an earlier connection left open.
        self.fold.reset(info.cross_server_id, &mut self.wheel);
        self.alloc.cross_online(
            info.cross_server_id,
            plat,
            info.cross_node_name,
            info.capacity,
            info.game_server_list.iter(),
        );
        let online = OnlineInfo::Cross {
            cross_server_id: info.cross_server_id,
            cross_node_name: info.cross_node_name,
            cross_plat: info.cross_plat,
            capacity: info.capacity,
        };
        self.went_online(key, &online, now, out, handler);
    }

    /// The tail of every INFO: announce the allocator's changes, then tell the handler.
    fn went_online(
        &mut self,
        key: NodeKey,
        info: &OnlineInfo<'_>,
        now: Now,
        out: &mut dyn Outbox,
        handler: &mut dyn Handler,
    ) {
        self.announce(out);
        let panicked = handler_guard::catch(|| {
            let mut ctx = self.context(out, now.mono_ms);
            handler.node_online(&mut ctx, key, info);
        });
        if let Some(why) = panicked {
            self.handler_panicked(format_args!("node_online of {key}"), &why);
        }
    }

    /// Logs and counts a handler call that panicked (see [`Handler`]).
    fn handler_panicked(&mut self, what: fmt::Arguments<'_>, why: &str) {
        self.stats.handler_panics += 1;
        error!("handler panicked in {what}: {why}; the event is dropped, serving goes on");
    }

    /// A handler's view of the cluster for one event.
    fn context<'a>(&'a mut self, out: &'a mut dyn Outbox, now_ms: u64) -> Context<'a> {
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

    /// STATUS_PUSH and the whole WHITELIST_SNAPSHOT for a game node that just came online.
    fn welcome(&mut self, conn: ConnId, serv: ServId, out: &mut dyn Outbox) {
        self.scratch.clear();
        StatusPush {
            maintenance: self.maintenance.contains(&serv) as u8,
        }
        .encode(&mut self.scratch);
        let (snapshot, frames) = self.snapshot.get(
            self.whitelist.version,
            self.whitelist.entries.iter().map(|e| &**e),
        );
        if snapshot.len() < shared::SHARE_SNAPSHOT_FROM {
            self.scratch.extend_from_slice(snapshot);
            out.send(conn, &self.scratch);
        } else {
            // Shared by every node welcomed until the next change: one copy in memory.
            out.send(conn, &self.scratch);
            out.send_shared(conn, snapshot, frames);
        }
    }

    /// Records what a GAME_INFO says that the durable record does not hold yet (its name,
    /// platform, open_time and address), so a restart knows every game node ever heard from.
    fn journal_game_facts(&mut self, serv: ServId, info: &GameInfo<'_>) {
        let known = self.alloc.game(serv);
        if known.map_or("", |g| &*g.name) != info.serv_name {
            Record::Name {
                serv,
                name: info.serv_name.into(),
            }
            .encode(&mut self.journal);
        }
        let same = known.is_some_and(|g| {
            g.plat.map(|p| self.alloc.platforms.name(p)) == Some(info.cross_plat)
                && g.open_time == info.open_time
                && *g.addr == *info.addr
        });
        if !same {
            Record::Game {
                serv,
                plat: info.cross_plat.into(),
                open_time: info.open_time,
                addr: info.addr.into(),
            }
            .encode(&mut self.journal);
            self.alloc
                .restore_game(serv, info.cross_plat, info.open_time, info.addr);
        }
    }

    /// Records what a CROSS_INFO says that the durable record does not hold yet.
    fn journal_cross_facts(&mut self, info: &CrossInfo<'_>) {
        let same = self.alloc.cross(info.cross_server_id).is_some_and(|c| {
            c.name.as_deref() == Some(info.cross_node_name)
                && c.plat.map(|p| self.alloc.platforms.name(p)) == Some(info.cross_plat)
                && c.reported_capacity == info.capacity
        });
        if !same {
            Record::Cross {
                cross: info.cross_server_id,
                name: info.cross_node_name.into(),
                plat: info.cross_plat.into(),
                capacity: info.capacity,
            }
            .encode(&mut self.journal);
        }
    }

    /// Journals the assignments the allocator just settled.
    fn journal_settled(&mut self) {
        for &serv in &self.changes.settled {
            let Some(g) = self.alloc.game(serv) else {
                continue;
            };
            let Some((cross, pos)) = g.assignment else {
                continue;
            };
            // The name is journaled by GAME_INFO itself (journal_game_facts).
            Record::Assign { serv, cross, pos }.encode(&mut self.journal);
            self.stats.assignments += 1;
        }
        self.changes.settled.clear();
    }

    /// Sends what the allocator owes, or holds it until the journal is durable.
    fn announce(&mut self, out: &mut dyn Outbox) {
        self.alloc.take_changes(&mut self.changes);
        self.fold
            .apply(&mut self.changes.members, self.clock_ms, &mut self.wheel);
        self.journal_settled();
        let mut changes = std::mem::take(&mut self.changes);
        if self.journal.is_empty() && self.in_flight.is_none() {
            self.send_changes(&changes, out);
        } else {
            // Encoded now, sent once durable (and after what is in flight, to keep the order):
            // each event keeps its own frames.
            let mut owed = std::mem::take(&mut self.owed);
            let first = owed.frame_index.len();
            self.send_changes(&changes, &mut Hold { owed: &mut owed });
            for entry in &mut owed.frame_index[first..] {
                entry.1 = self.sessions[entry.0].key;
            }
            self.owed = owed;
        }
        changes.assign.clear();
        changes.members.clear();
        self.changes = changes;
    }

    /// Sends everything held for the journal, in the order nodes expect: whitelist deltas and
    /// status to nodes already welcomed, then the welcomes, then assignments and members.
    fn send_owed(&mut self, owed: &mut Owed, out: &mut dyn Outbox) {
        if self.operator_seq > self.durable_seq && !owed.welcome.is_empty() {
            // A whitelist or maintenance change made since is not durable yet: a welcome now
            // would show it. The welcomes (and their nodes' frames, to keep their order)
            // wait for the next batch.
            self.defer_welcomes(owed);
        }
        if !owed.deltas.is_empty() {
            // Encoded once, shared by every game node's write queue.
            let count = shared::count_frames(&owed.deltas);
            let deltas = Bytes::from(std::mem::take(&mut owed.deltas));
            for s in &self.sessions {
                if let (Phase::Online, NodeInfo::Game { welcomed: true, .. }) = (s.phase, &s.info) {
                    if let Some(&conn) = self.registry.get(&s.key) {
                        out.send_shared(conn, &deltas, count);
                    }
                }
            }
        }
        for &serv in &owed.status {
            let key = NodeKey {
                node_type: NodeType::Game,
                node_id: serv,
            };
            let Some(&conn) = self.registry.get(&key) else {
                continue;
            };
            if let (Phase::Online, NodeInfo::Game { welcomed: true, .. }) =
                (self.sessions[conn].phase, &self.sessions[conn].info)
            {
                self.scratch.clear();
                StatusPush {
                    maintenance: self.maintenance.contains(&serv) as u8,
                }
                .encode(&mut self.scratch);
                out.send(conn, &self.scratch);
            }
        }
        for &conn in &owed.welcome {
            let s = &mut self.sessions[conn];
            let NodeInfo::Game { welcomed, .. } = &mut s.info else {
                continue;
            };
            if s.phase != Phase::Online || *welcomed {
                continue;
            }
            *welcomed = true;
            let serv = s.key.node_id;
            self.welcome(conn, serv, out);
        }
        let mut start = 0;
        for &(conn, key, end) in &owed.frame_index {
            // Held frames may outlive their connection (a failed sync): check it is the same node.
            let same = self.registry.get(&key) == Some(&conn)
                && self
                    .sessions
                    .get(conn)
                    .is_some_and(|s| s.phase == Phase::Online);
            if same {
                out.send(conn, &owed.frames[start..end]);
            }
            start = end;
        }
    }

    /// Moves `owed`'s welcomes, and the frames held for those connections, in front of what
    /// the accumulating batch holds.
    fn defer_welcomes(&mut self, owed: &mut Owed) {
        let mut moved = Owed {
            welcome: std::mem::take(&mut owed.welcome),
            ..Owed::default()
        };
        let (mut start, mut kept) = (0, 0);
        let frames = std::mem::take(&mut owed.frames);
        let mut remaining = Vec::with_capacity(frames.len());
        owed.frame_index.retain_mut(|entry| {
            let end = entry.2;
            let frame = &frames[start..end];
            start = end;
            if moved.welcome.contains(&entry.0) {
                moved.frames.extend_from_slice(frame);
                moved
                    .frame_index
                    .push((entry.0, entry.1, moved.frames.len()));
                false
            } else {
                remaining.extend_from_slice(frame);
                kept += frame.len();
                entry.2 = kept;
                true
            }
        });
        owed.frames = remaining;
        let later = std::mem::take(&mut self.owed);
        let offset = moved.frames.len();
        moved.frames.extend_from_slice(&later.frames);
        moved.frame_index.extend(
            later
                .frame_index
                .iter()
                .map(|&(c, k, e)| (c, k, e + offset)),
        );
        moved.welcome.extend_from_slice(&later.welcome);
        moved.status = later.status;
        moved.deltas = later.deltas;
        self.owed = moved;
    }

    /// CROSS_ASSIGN to online game nodes whose cross node's name is known, CROSS_MEMBERS to
    /// online cross nodes.
    fn send_changes(&mut self, changes: &Changes, out: &mut dyn Outbox) {
        for &serv in &changes.assign {
            let Some(&conn) = self.registry.get(&NodeKey {
                node_type: NodeType::Game,
                node_id: serv,
            }) else {
                continue;
            };
            if self.sessions[conn].phase != Phase::Online {
                continue;
            }
            let Some((cross_id, pos)) = self.alloc.game(serv).and_then(|g| g.assignment) else {
                continue;
            };
            let Some(cross) = self.alloc.cross(cross_id) else {
                continue;
            };
            let Some(name) = cross.name.as_deref() else {
                continue;
            };
            let plat = cross.plat.map_or("", |p| self.alloc.platforms.name(p));
            self.scratch.clear();
            let msg = CrossAssign {
                cross_server_id: cross_id,
                cross_node_name: name,
                cross_plat: plat,
                cross_pos: pos,
            };
            if msg.encode(&mut self.scratch).is_ok() {
                out.send(conn, &self.scratch);
                info!("game {serv}: assigned to cross {cross_id} slot {pos}");
            }
        }
        for &cross_id in &changes.members {
            let Some(&conn) = self.cross_conns.get(&cross_id) else {
                continue;
            };
            let Some(cross) = self.alloc.cross(cross_id) else {
                continue;
            };
            let scratch = &mut self.scratch;
            scratch.clear();
            if encode_members(&self.alloc, cross, true, scratch).is_err() {
                // Names do not fit one frame: the ids and slots matter most.
                error!("cross {cross_id}: member list exceeds one frame; sending it without names");
                if encode_members(&self.alloc, cross, false, scratch).is_err() {
                    error!("cross {cross_id}: member list exceeds one frame even without names; not sent");
                    continue;
                }
            }
            out.send(conn, &self.scratch);
        }
    }

    /// A new cross_plat that the platform table has no room for: a protocol error that says so.
    fn platforms_full(
        &mut self,
        conn: ConnId,
        frame: &str,
        cross_plat: &str,
        now: Now,
        out: &mut dyn Outbox,
        handler: &mut dyn Handler,
    ) {
        let why = format_args!(
            "{frame}: new cross_plat {:?} refused: the platform table is full ({} names or {} bytes)",
            Clip(cross_plat),
            alloc::MAX_PLATFORMS,
            alloc::MAX_PLATFORM_BYTES
        );
        self.protocol_error(conn, &why, now, out, handler);
    }

    fn protocol_error(
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

    fn kick(
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
    fn end_session(
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
        let info = std::mem::replace(&mut s.info, NodeInfo::None);
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
            NodeInfo::Game { .. } => {
                self.stats.online_game -= 1;
                self.list_generation += 1;
                self.alloc.game_offline(key.node_id)
            }
            NodeInfo::Cross { cross_server_id } => {
                self.stats.online_cross -= 1;
                if self.cross_conns.get(&cross_server_id) == Some(&conn) {
                    self.cross_conns.remove(&cross_server_id);
                    self.alloc.cross_offline(cross_server_id);
                }
            }
            NodeInfo::None => {}
        }
        if log::log_enabled!(log::Level::Info) {
            self.log_line
                .start()
                .text(key.node_type.name())
                .text(" ")
                .num(key.node_id)
                .text(" (")
                .peer(peer)
                .text(") offline: ")
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

    /// Game nodes of a platform waiting for a slot (for tests and the admin surface).
    pub fn waiting(&self, cross_plat: &str) -> Vec<ServId> {
        match self.alloc.platforms.get(cross_plat) {
            Some(p) => self.alloc.waiting(p).collect(),
            None => Vec::new(),
        }
    }
}

fn encode_members(
    alloc: &Allocator,
    cross: &alloc::CrossRecord,
    names: bool,
    out: &mut Vec<u8>,
) -> Result<(), proto::FrameTooLarge> {
    let members = cross.members.iter().map(|(&pos, &serv)| Member {
        serv_id: serv,
        serv_name: if names {
            alloc.game(serv).map_or("", |g| &g.name)
        } else {
            ""
        },
        cross_pos: pos,
    });
    CrossMembers::encode(members, out)
}

fn describe_unexpected(command: u16, phase: Phase, node_type: NodeType) -> String {
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

#[cfg(test)]
mod tests;
