//! A reconnecting node client for Rust game and cross nodes: one background thread keeps the
//! node logged in (AUTH, INFO, heartbeats at the interval the server announces), reconnects
//! with exponential backoff and jitter when the connection ends, keeps the whitelist as a
//! set the game can query, and reports what happens as [`ClientEvent`]s on a channel.
//!
//! Reconnect, liveness and backoff:
//! - a login node that sends no AUTH_RESULT within [`Options::auth_timeout`], or that is silent
//!   (no frame at all, heartbeat ACKs included) for the heartbeat_timeout its AUTH_RESULT
//!   announced, is taken for dead: the client closes and reconnects;
//! - a write that makes no progress for [`Options::write_timeout`] ends the connection, so
//!   [`NodeClient::stop`] returns within about that long even when the peer does not read;
//! - reconnects wait [`Options::backoff_initial`] (must be non-zero), doubling up to
//!   [`Options::backoff_max`], with jitter; the backoff starts over only after a connection
//!   that stayed online for one announced heartbeat_timeout, so a login node that kicks right
//!   after login does not get a reconnect storm;
//! - a whitelist snapshot replaces the set only once complete; a disconnect discards a partial
//!   one;
//! - with several addresses (the members of a failover group, [`NodeClient::start_group`]),
//!   a connection that ends for any reason but an operator's KICK 3 — AUTH code 7 from a
//!   standby, KICK 6, a refused connection, a silent or vanished login node — goes to the
//!   next address at once; the backoff applies only once every address has failed in a row
//!   (contract §6).
//!
//! The client runs no user code on its thread: events go to the channel, so a consumer that
//! panics only drops the receiver (the thread then keeps the node online until stopped).
//!
//! ```no_run
//! use login_node::client::machine::{NodeInfoSpec, NodeSpec};
//! use login_node::client::node::{ClientEvent, NodeClient, Options};
//!
//! let spec = NodeSpec {
//!     node_id: 1001,
//!     plat: "asia".into(),
//!     token: "s3cret".into(),
//!     info: NodeInfoSpec::Game {
//!         serv_name: "S1001".into(), open_time: 1_700_000_000, cross_plat: "asia".into(),
//!         cross_server_id: 0, cross_pos: 0, addr: "10.0.0.5:8001".into(),
//!     },
//! };
//! let (client, events) =
//!     NodeClient::start("10.0.0.1:7700".parse().unwrap(), spec, Options::default())?;
//! for event in events.iter() {
//!     match event {
//!         ClientEvent::CrossAssign { cross_node_name, .. } => println!("cross node: {cross_node_name}"),
//!         ClientEvent::Maintenance(on) => println!("maintenance: {on}"),
//!         _ => {}
//!     }
//!     if client.is_whitelisted("player-42") { /* let them in during maintenance */ }
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The thread stops on [`NodeClient::stop`] (or when the client is dropped), and on KICK 1
//! (a newer login of the same node replaced this one: reconnecting would fight it).

use super::machine::{NodeEvent, NodeMachine, NodeSpec};
use super::{unix_time, ServerMessage};
use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How the client connects and retries.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bound on one TCP connect.
    pub connect_timeout: Duration,
    /// First wait before reconnecting.
    pub backoff_initial: Duration,
    /// Longest wait between attempts.
    pub backoff_max: Duration,
    /// How long to wait for AUTH_RESULT before taking the login node for dead.
    pub auth_timeout: Duration,
    /// How long one write may make no progress before the connection is dropped.
    pub write_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            auth_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(5),
        }
    }
}

impl Options {
    /// Refuses zero durations (a zero backoff reconnects in a tight loop) and a
    /// `backoff_max` below `backoff_initial`.
    pub fn validate(&self) -> io::Result<()> {
        let bad = |what: &str| {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                what.to_string(),
            ))
        };
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("backoff_initial", self.backoff_initial),
            ("auth_timeout", self.auth_timeout),
            ("write_timeout", self.write_timeout),
        ] {
            if d.is_zero() {
                return bad(&format!("{name} must not be zero"));
            }
        }
        if self.backoff_max < self.backoff_initial {
            return bad("backoff_max must not be below backoff_initial");
        }
        Ok(())
    }
}

/// What happened, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// Logged in; the node's INFO is sent and heartbeats run.
    Online {
        /// Seconds between heartbeats the server asked for.
        heartbeat_interval: u16,
    },
    /// AUTH refused with this code; the client retries after its backoff.
    AuthRejected(u8),
    /// (Game nodes) the cross node to use.
    CrossAssign {
        /// cross_server_id.
        cross_server_id: u32,
        /// How to reach the cross node.
        cross_node_name: String,
        /// Its platform.
        cross_plat: String,
        /// This node's slot.
        cross_pos: u16,
    },
    /// (Cross nodes) the full member list: (serv_id, serv_name, cross_pos).
    CrossMembers(Vec<(u32, String, u16)>),
    /// (Game nodes) the operator-set maintenance flag.
    Maintenance(bool),
    /// (Game nodes) a whole whitelist arrived; [`NodeClient::is_whitelisted`] answers from it.
    WhitelistLoaded {
        /// Its version.
        version: u32,
        /// Entries.
        entries: usize,
    },
    /// (Game nodes) one whitelist change, already applied to the local set.
    WhitelistChanged {
        /// Version after the change.
        version: u32,
        /// True for an addition, false for a removal.
        added: bool,
        /// The entry.
        entry: String,
    },
    /// An application command (0x1000..=0x7FFF) from the login node.
    App {
        /// Command.
        cmd: u16,
        /// Body.
        body: Vec<u8>,
    },
    /// KICK with its reason; the connection is gone.
    Kicked(u8),
    /// The connection ended or could not be made; the next attempt is in `retry_in`.
    Disconnected {
        /// Why.
        reason: String,
        /// The backoff before the next attempt.
        retry_in: Duration,
    },
    /// The thread ended (stop, or KICK 1).
    Stopped,
}

enum Command {
    App(u16, Vec<u8>),
    Status(u32),
    Stop,
}

#[derive(Default)]
struct Whitelist {
    version: u32,
    entries: HashSet<String>,
    /// A snapshot being received (its version, and the entries of its frames so far). It
    /// replaces `entries` only when its `last` frame arrives; a disconnect discards it.
    loading: Option<(u32, HashSet<String>)>,
}

impl Whitelist {
    /// One WHITELIST_SNAPSHOT frame; true when it completed a snapshot.
    fn snapshot_frame(&mut self, version: u32, last: bool, entries: Vec<String>) -> bool {
        // A frame of another version starts a new snapshot: never merge two.
        if self.loading.as_ref().is_some_and(|(v, _)| *v != version) {
            self.loading = None;
        }
        let (_, set) = self
            .loading
            .get_or_insert_with(|| (version, HashSet::new()));
        set.extend(entries);
        if !last {
            return false;
        }
        if let Some((_, set)) = self.loading.take() {
            self.entries = set;
        }
        self.version = version;
        true
    }
}

/// A node kept logged in by a background thread.
pub struct NodeClient {
    commands: Sender<Command>,
    whitelist: Arc<Mutex<Whitelist>>,
    thread: Option<JoinHandle<()>>,
}

impl NodeClient {
    /// Starts the thread; events arrive on the returned channel. Fails (`InvalidInput`) on
    /// options [`Options::validate`] refuses.
    pub fn start(
        addr: SocketAddr,
        spec: NodeSpec,
        options: Options,
    ) -> io::Result<(NodeClient, Receiver<ClientEvent>)> {
        NodeClient::start_group(vec![addr], spec, options)
    }

    /// Like [`Self::start`] with the addresses of every member of a failover group: the
    /// client moves on to the next address when a connection ends (see the module docs).
    /// Fails (`InvalidInput`) on an empty list.
    pub fn start_group(
        addrs: Vec<SocketAddr>,
        spec: NodeSpec,
        options: Options,
    ) -> io::Result<(NodeClient, Receiver<ClientEvent>)> {
        options.validate()?;
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no login node address",
            ));
        }
        let (commands, command_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let whitelist = Arc::new(Mutex::new(Whitelist::default()));
        let shared = whitelist.clone();
        let thread = std::thread::spawn(move || {
            Worker {
                addr: addrs[0],
                addrs,
                failed_in_a_row: 0,
                spec,
                options,
                commands: command_rx,
                events: event_tx,
                whitelist: shared,
                pending: Vec::new(),
            }
            .run()
        });
        Ok((
            NodeClient {
                commands,
                whitelist,
                thread: Some(thread),
            },
            events,
        ))
    }

    /// True when `entry` is on the whitelist as last received.
    pub fn is_whitelisted(&self, entry: &str) -> bool {
        self.whitelist
            .lock()
            .map(|w| w.entries.contains(entry))
            .unwrap_or(false)
    }

    /// The whitelist version last applied.
    pub fn whitelist_version(&self) -> u32 {
        self.whitelist.lock().map(|w| w.version).unwrap_or(0)
    }

    /// Sends an application command (0x1000..=0x7FFF) once online (queued until then).
    pub fn send_app(&self, cmd: u16, body: &[u8]) {
        let _ = self.commands.send(Command::App(cmd, body.to_vec()));
    }

    /// (Game nodes) reports players online (STATUS_REPORT).
    pub fn report_players(&self, online: u32) {
        let _ = self.commands.send(Command::Status(online));
    }

    /// Stops the thread (closing the connection) and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for NodeClient {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Worker {
    /// The address of the current (or next) connection.
    addr: SocketAddr,
    /// Every login node address; `addr` is one of them.
    addrs: Vec<SocketAddr>,
    /// Connections that failed since one got online (the backoff waits for a whole round).
    failed_in_a_row: usize,
    spec: NodeSpec,
    options: Options,
    commands: Receiver<Command>,
    events: Sender<ClientEvent>,
    whitelist: Arc<Mutex<Whitelist>>,
    /// Commands received while offline, sent once online.
    pending: Vec<Command>,
}

/// How a session ended.
enum End {
    Retry(String),
    Stop,
}

/// A small xorshift generator for jitter (no dependency for one random number a retry).
fn jitter(seed: &mut u64) -> f64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    (*seed >> 11) as f64 / (1u64 << 53) as f64
}

impl Worker {
    fn emit(&self, e: ClientEvent) {
        let _ = self.events.send(e);
    }

    fn run(mut self) {
        let mut backoff = self.options.backoff_initial;
        let mut seed = (self.spec.node_id as u64) << 32 | unix_time() as u64 | 1;
        loop {
            let (end, stayed_online) = self.session();
            // A snapshot cut off by the disconnect is never merged into the next one.
            if let Ok(mut w) = self.whitelist.lock() {
                w.loading = None;
            }
            let reason = match end {
                End::Stop => break,
                End::Retry(reason) => reason,
            };
            if stayed_online {
                backoff = self.options.backoff_initial;
            }
            if self.addrs.len() > 1 && !reason.starts_with("kicked, reason 3") {
                // The next member of the group, at once until every one has failed in a row.
                let at = self.addrs.iter().position(|a| *a == self.addr).unwrap_or(0);
                self.addr = self.addrs[(at + 1) % self.addrs.len()];
                self.failed_in_a_row += 1;
                if self.failed_in_a_row < self.addrs.len() {
                    self.emit(ClientEvent::Disconnected {
                        reason,
                        retry_in: Duration::ZERO,
                    });
                    continue;
                }
                self.failed_in_a_row = 0;
            }
            // Full jitter in [backoff/2, backoff]: reconnecting nodes spread out.
            let wait = backoff.mul_f64(0.5 + 0.5 * jitter(&mut seed));
            self.emit(ClientEvent::Disconnected {
                reason,
                retry_in: wait,
            });
            backoff = (backoff * 2).min(self.options.backoff_max);
            let deadline = Instant::now() + wait;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match self.commands.recv_timeout(left) {
                    Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => {
                        self.emit(ClientEvent::Stopped);
                        return;
                    }
                    Ok(other) => self.pending.push(other),
                    Err(RecvTimeoutError::Timeout) => break,
                }
            }
        }
        self.emit(ClientEvent::Stopped);
    }

    /// One connection, from connect to its end; also says whether it stayed online for the
    /// announced heartbeat timeout (the backoff starts over only then).
    fn session(&mut self) -> (End, bool) {
        let mut online_since = None;
        let mut silence_limit = Duration::MAX;
        let end = self.connection(&mut online_since, &mut silence_limit);
        let stayed = online_since.is_some_and(|at: Instant| at.elapsed() >= silence_limit);
        (end, stayed)
    }

    /// Drives one connection; records when it got online and the announced silence limit.
    fn connection(
        &mut self,
        online_since: &mut Option<Instant>,
        silence_limit: &mut Duration,
    ) -> End {
        let mut stream = match TcpStream::connect_timeout(&self.addr, self.options.connect_timeout)
        {
            Ok(s) => s,
            Err(e) => return End::Retry(format!("connect {}: {e}", self.addr)),
        };
        let _ = stream.set_nodelay(true);
        // A short read timeout lets one thread interleave reads, commands and heartbeats.
        // The write timeout bounds a write to a peer that does not read (and so stop()).
        if let Err(e) = stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .and_then(|()| stream.set_write_timeout(Some(self.options.write_timeout)))
        {
            return End::Retry(e.to_string());
        }
        let start = Instant::now();
        let mut m = NodeMachine::new(self.spec.clone(), unix_time(), true);
        let mut online = false;
        let mut last_input = start;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let now_ms = start.elapsed().as_millis() as u64;
            if !online && start.elapsed() >= self.options.auth_timeout {
                return End::Retry(format!(
                    "no AUTH_RESULT within {:?}",
                    self.options.auth_timeout
                ));
            }
            if online && last_input.elapsed() >= *silence_limit {
                return End::Retry(format!(
                    "login node silent for {} s (its heartbeat timeout)",
                    silence_limit.as_secs()
                ));
            }
            m.handle_timeout(now_ms);
            if online {
                for c in std::mem::take(&mut self.pending) {
                    match c {
                        Command::App(cmd, body) => {
                            let _ = m.send_app(cmd, &body);
                        }
                        Command::Status(n) => m.send_status(n),
                        Command::Stop => return End::Stop,
                    }
                }
            }
            loop {
                match self.commands.try_recv() {
                    Ok(Command::Stop) | Err(mpsc::TryRecvError::Disconnected) => return End::Stop,
                    Ok(other) => self.pending.push(other),
                    Err(mpsc::TryRecvError::Empty) => break,
                }
            }
            let out = m.transmit();
            if !out.is_empty() {
                let n = out.len();
                if let Err(e) = stream.write_all(out) {
                    return End::Retry(format!("write: {e}"));
                }
                m.advance_transmit(n);
            }
            match stream.read(&mut buf) {
                Ok(0) => return End::Retry("closed by the login node".into()),
                Ok(n) => {
                    last_input = Instant::now();
                    m.handle_input(&buf[..n], start.elapsed().as_millis() as u64)
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return End::Retry(format!("read: {e}")),
            }
            while let Some(event) = m.poll_event() {
                match event {
                    NodeEvent::Authenticated {
                        heartbeat_interval,
                        heartbeat_timeout,
                        ..
                    } => {
                        online = true;
                        self.failed_in_a_row = 0;
                        *online_since = Some(Instant::now());
                        *silence_limit = Duration::from_secs(heartbeat_timeout.max(1).into());
                        self.emit(ClientEvent::Online { heartbeat_interval });
                    }
                    NodeEvent::AuthRejected(code) => {
                        self.emit(ClientEvent::AuthRejected(code));
                        return End::Retry(format!("AUTH refused with code {code}"));
                    }
                    NodeEvent::Kicked(reason) => {
                        self.emit(ClientEvent::Kicked(reason));
                        if reason == 1 {
                            return End::Stop;
                        }
                        return End::Retry(format!("kicked, reason {reason}"));
                    }
                    NodeEvent::ProtocolError(why) => {
                        return End::Retry(format!("protocol error: {why}"))
                    }
                    NodeEvent::Message(msg) => self.on_message(msg),
                }
            }
        }
    }

    fn on_message(&mut self, msg: ServerMessage) {
        let event = match msg {
            ServerMessage::CrossAssign {
                cross_server_id,
                cross_node_name,
                cross_plat,
                cross_pos,
            } => ClientEvent::CrossAssign {
                cross_server_id,
                cross_node_name,
                cross_plat,
                cross_pos,
            },
            ServerMessage::CrossMembers(m) => ClientEvent::CrossMembers(m),
            ServerMessage::StatusPush(flag) => ClientEvent::Maintenance(flag == 1),
            ServerMessage::WhitelistSnapshot {
                version,
                last,
                entries,
            } => {
                let Ok(mut w) = self.whitelist.lock() else {
                    return;
                };
                if !w.snapshot_frame(version, last, entries) {
                    return;
                }
                ClientEvent::WhitelistLoaded {
                    version,
                    entries: w.entries.len(),
                }
            }
            ServerMessage::WhitelistDelta { version, op, entry } => {
                let Ok(mut w) = self.whitelist.lock() else {
                    return;
                };
                if version <= w.version {
                    return; // already in the snapshot
                }
                w.version = version;
                let added = op == 1;
                if added {
                    w.entries.insert(entry.clone());
                } else {
                    w.entries.remove(&entry);
                }
                ClientEvent::WhitelistChanged {
                    version,
                    added,
                    entry,
                }
            }
            ServerMessage::App { cmd, body } => ClientEvent::App { cmd, body },
            ServerMessage::AuthResult(_) | ServerMessage::HeartbeatAck(_) => return,
            ServerMessage::Kick(_) => return,
        };
        self.emit(event);
    }
}
