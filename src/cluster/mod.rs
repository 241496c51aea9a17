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
//!
//! This file holds the shared types and the [`Cluster`] itself (construction, reload, the
//! read-only accessors). The rest is one file per concern, each an `impl Cluster` block or
//! types below it: `session` (per-connection types), `lifecycle` (frame dispatch, the end of a
//! session), `auth` and `info` (the two login steps), `handler` (the embedder API), `timers`,
//! `announce` (hold until durable), `batch` (the store's batches), `facts` (journaling what
//! INFOs say), `admission`, `alloc`, `operator`, `role`, `fold`, `shared`, `names`.

pub mod admission;
pub mod alloc;
mod announce;
mod auth;
mod batch;
mod facts;
mod fold;
mod handler;
mod handler_guard;
mod info;
mod lifecycle;
mod names;
mod operator;
mod role;
mod session;
mod shared;
mod timers;

use announce::HeldAnnouncements;
pub use handler::{Context, Handler, NoHandler, ReportedInfo, SendError};
pub use role::Role;
pub use session::{NodeDetails, NodeView};
use session::{Phase, Session};

use crate::config::{Config, DuplicatePolicy};
use crate::logging::LineBuf;
use crate::net::Cidr;
use crate::proto::{KickReason, NodeType};
use crate::state::State;
use crate::timer::TimerWheel;
use alloc::{Allocator, Changes, CrossId, ServId};
use bytes::Bytes;
use hashbrown::{HashMap, HashSet};
use log::info;
pub use operator::{Applied, GameStatus, OperatorError};
use std::fmt;
use std::net::SocketAddr;

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
    /// One of the reactor's own deadlines (its HTTP connections', accept and journal retries,
    /// the lease), by the key it chose; reported back by [`Cluster::take_fired_timers`].
    Reactor(usize),
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

impl NodeKey {
    /// Starts a per-session log line in `line`: "game 7 (10.0.0.1:4000)".
    fn start_line(self, line: &mut LineBuf, peer: SocketAddr) -> &mut LineBuf {
        line.start()
            .text(self.node_type.name())
            .text(" ")
            .num(self.node_id)
            .text(" (")
            .peer(peer)
            .text(")")
    }
}

impl fmt::Display for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Three pieces, not a nested format: this is in every per-session log line.
        f.write_str(self.node_type.name())?;
        f.write_str(" ")?;
        fmt::Display::fmt(&self.node_id, f)
    }
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
    /// Times an address reached its budget (`auth_fail_limit` × [`admission::ADDRESS_BUDGET_FACTOR`]).
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
    /// Keys of the reactor's deadlines that fired, until it takes them.
    fired_reactor: Vec<usize>,
    /// Encoding buffer for frames, reused.
    scratch: Vec<u8>,
    changes: Changes,
    /// Records of the batch being accumulated; their announcements wait in `owed`.
    journal: Vec<u8>,
    owed: HeldAnnouncements,
    /// The sequence number the accumulating batch will have.
    next_seq: u64,
    /// The batch handed to the store and what it announces, until it is durable.
    in_flight: Option<(u64, HeldAnnouncements)>,
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
    allow: Vec<Cidr>,
    throttle: admission::AuthThrottle,
    /// Budget for AUTH failure log lines (a flood of bad logins cannot flood the log).
    fail_log: admission::LogBudget,
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
            fired_reactor: Vec::new(),
            scratch: Vec::with_capacity(256),
            changes: Changes::default(),
            journal: Vec::new(),
            owed: HeldAnnouncements::default(),
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
            throttle: admission::AuthThrottle::new(
                config.auth_fail_limit,
                config.auth_fail_window as u64 * 1000,
            ),
            fail_log: admission::LogBudget::new(AUTH_FAIL_LOG_PER_SECOND),
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

    /// When [`Self::handle_timeout`] should next run (monotonic ms), if any timer is set.
    pub fn next_timeout(&self) -> Option<u64> {
        self.wheel.next_wakeup_ms()
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

    /// Game nodes of a platform waiting for a slot (for tests and the admin surface).
    pub fn waiting(&self, cross_plat: &str) -> Vec<ServId> {
        match self.alloc.platforms.get(cross_plat) {
            Some(p) => self.alloc.waiting(p).collect(),
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;
