//! The reactor: one single-threaded mio poll loop, the only code that touches sockets.
//!
//! Per loop turn:
//! 1. `poll` (timeout = the timer wheel's next deadline), then read the clock once.
//! 2. Listener ready: accept until WouldBlock (at most [`ACCEPTS_PER_TURN`], so a connection
//!    storm cannot starve live nodes), register each socket once for READABLE | WRITABLE
//!    (edge-triggered: no re-registration syscalls later), open its session.
//! 3. Connection readable: read into the reactor's one scratch buffer, decode every complete
//!    frame in place and hand it to the cluster; replies to that connection collect in one
//!    reply buffer and go out in a single write after its frames are done. A partial frame's
//!    bytes move into the connection, which otherwise holds no buffer at all. At most
//!    [`READS_PER_TURN`] reads per connection per turn; a connection with more waiting is
//!    revisited next turn.
//! 4. Timers: the cluster fires auth timeouts and heartbeat expiry.
//! 5. Flush: frames queued for other connections are written; connections marked for closing
//!    are closed (after one attempt to write what they were sent, e.g. their KICK). Sockets
//!    are only released here, at the end of the turn, so a slab key is never reused while
//!    events for its old socket may still be in this turn's batch.
//!
//! Frames for a connection whose socket does not take them wait in its write queue. A frame
//! for a connection whose queue is already past `max_write_buffer` means the peer is not
//! reading, and it is dropped. The check is on the backlog, not on the burst: one large
//! burst (a bulk whitelist change) is taken whole by a node that keeps reading.
//!
//! Durability (`durability.rs`): between the timers and the flush, the records the turn
//! produced go to the store thread as one batch (group commit; one batch in flight, the next
//! turns accumulate the following one); when the thread reports the batch durable (waking the
//! loop), the cluster releases the frames that announce it (CROSS_ASSIGN, CROSS_MEMBERS,
//! STATUS_PUSH, WHITELIST_DELTA) and the admin API its 200s. A failed write is retried every
//! second; meanwhile heartbeats go on.
//!
//! The admin API (`admin.rs`) shares the loop: its own listener, connections in their own
//! slab, deadlines on the cluster's wheel.

mod admin;
mod durability;
mod failover;
mod notify;
mod partial;
mod public;
mod queue;

use crate::admin::metrics::IoStats;
use crate::cluster::{Cluster, ConnId, Handler, NoHandler, Now, Outbox};
use crate::config::{Config, ConfigError};
use crate::logging::Peer;
use crate::proto::{self, FrameError};
use crate::state::{Db, StoreThread};
use log::{debug, error, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use partial::append_partial;
use queue::WriteQueue;
use slab::Slab;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);
const SIGNALS: Token = Token(usize::MAX - 2);
const ADMIN_LISTENER: Token = Token(usize::MAX - 3);
const PUBLIC_LISTENER: Token = Token(usize::MAX - 4);
/// Admin connections use tokens from here up (node connections' slab keys stay far below).
const ADMIN_BASE: usize = usize::MAX / 2;
/// How long after a failed journal write the next attempt is made.
const JOURNAL_RETRY: Duration = Duration::from_secs(1);

/// Connections accepted per turn before live connections get their turn.
pub const ACCEPTS_PER_TURN: usize = 256;
/// Read calls per connection per turn.
pub const READS_PER_TURN: usize = 4;
/// The scratch read buffer: room for a whole maximal frame plus a large read.
const SCRATCH_LEN: usize = 256 * 1024;
/// How long shutdown waits for KICK frames to drain.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(1000);
/// How long accepting pauses after the process ran out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

struct Conn {
    stream: TcpStream,
    /// The bytes of an incomplete frame; empty (no allocation) between frames.
    partial: Vec<u8>,
    /// Frames the socket has not taken yet; empty (no allocation) when caught up.
    out: WriteQueue,
    closing: bool,
    /// In the reactor's dirty list (to flush or close at the end of the turn).
    dirty: bool,
    /// In the reactor's list of connections to read again next turn.
    read_pending: bool,
}

impl Conn {
    /// Queues bytes the socket has not taken. With a backlog already past `cap` the peer is
    /// not reading: the connection is marked for closing instead, so a connection holds at
    /// most `cap` plus one burst.
    fn enqueue(&mut self, conn: ConnId, bytes: &[u8], cap: usize) {
        if self.out.len() > cap {
            warn!(
                "conn {conn}: {} bytes queued, peer is not reading; dropping it",
                self.out.len() + bytes.len()
            );
            self.closing = true;
        } else {
            self.out.push(bytes);
        }
    }

    /// [`Conn::enqueue`] for frames shared with other connections: queued without a copy.
    fn enqueue_shared(&mut self, conn: ConnId, bytes: &bytes::Bytes, cap: usize) {
        if self.out.len() > cap {
            warn!(
                "conn {conn}: {} bytes queued, peer is not reading; dropping it",
                self.out.len() + bytes.len()
            );
            self.closing = true;
        } else {
            self.out.push_shared(bytes.clone());
        }
    }
}

/// Stops a running [`LoginNode`] from any thread.
#[derive(Clone)]
pub struct ShutdownHandle {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    /// Asks the node to shut down: KICK 4 to every node, a brief flush, then `run` returns.
    pub fn shutdown(&self) {
        self.flag.store(true, Ordering::Release);
        if let Err(e) = self.waker.wake() {
            error!("shutdown: could not wake the poll loop: {e}");
        }
    }
}

/// The [`Outbox`] the cluster writes into during one event.
struct Io<'a> {
    conns: &'a mut Slab<Conn>,
    dirty: &'a mut Vec<ConnId>,
    /// The connection whose frames are being handled: its replies go to `reply`.
    current: Option<ConnId>,
    reply: &'a mut Vec<u8>,
    max_write_buffer: usize,
    frames_out: &'a mut u64,
}

impl<'a> Io<'a> {
    /// An outbox for work outside a connection's read (timers, closes, shutdown): every frame
    /// goes to its connection's queue.
    fn between_reads(
        conns: &'a mut Slab<Conn>,
        dirty: &'a mut Vec<ConnId>,
        reply: &'a mut Vec<u8>,
        max_write_buffer: usize,
        frames_out: &'a mut u64,
    ) -> Self {
        Io {
            conns,
            dirty,
            current: None,
            reply,
            max_write_buffer,
            frames_out,
        }
    }

    fn mark_dirty(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(conn) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(conn);
            }
        }
    }

    fn is_closing(&self, conn: ConnId) -> bool {
        self.conns.get(conn).is_none_or(|c| c.closing)
    }
}

impl Outbox for Io<'_> {
    fn send(&mut self, conn: ConnId, frame: &[u8]) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        if c.closing {
            return;
        }
        *self.frames_out += count_frames(frame);
        if self.current == Some(conn) && c.out.is_empty() {
            self.reply.extend_from_slice(frame);
            return;
        }
        c.enqueue(conn, frame, self.max_write_buffer);
        self.mark_dirty(conn);
    }

    fn send_shared(&mut self, conn: ConnId, frames: &bytes::Bytes, count: u64) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        if c.closing {
            return;
        }
        *self.frames_out += count;
        if self.current == Some(conn) && !self.reply.is_empty() {
            // The replies so far go first: into the queue, ahead of the shared frames; later
            // replies of this turn queue behind them (the queue is no longer empty).
            c.out.push(self.reply);
            self.reply.clear();
        }
        c.enqueue_shared(conn, frames, self.max_write_buffer);
        self.mark_dirty(conn);
    }

    fn close(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(conn) {
            c.closing = true;
        }
        self.mark_dirty(conn);
    }
}

/// A login node: the listener, every connection and the cluster, driven by [`LoginNode::run`]
/// on the caller's thread.
pub struct LoginNode<H: Handler = NoHandler> {
    config: Config,
    poll: Poll,
    events: Events,
    listener: TcpListener,
    local_addr: SocketAddr,
    conns: Slab<Conn>,
    cluster: Cluster,
    handler: H,
    scratch: Box<[u8]>,
    reply: Vec<u8>,
    dirty: Vec<ConnId>,
    pending_reads: Vec<ConnId>,
    accept_more: bool,
    accept_retry_at: Option<Instant>,
    emfile_logged_at: Option<Instant>,
    shutdown: Arc<AtomicBool>,
    waker: Arc<Waker>,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    start: Instant,
    durability: durability::Durability,
    admin: admin::AdminSide,
    io_stats: IoStats,
    reload: Option<Reload>,
}

/// Re-reads the configuration on SIGHUP (the binary re-parses its arguments and file).
pub type Reload = Box<dyn FnMut() -> Result<Config, ConfigError> + Send>;

/// Binds a TCP listener with a deep backlog (mio's own bind uses 1024; a burst of reconnecting
/// nodes overflows that and waits a full second to retry).
fn bind_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or(4096);
    if somaxconn < 4096 {
        warn!("net.core.somaxconn is {somaxconn}: the listen backlog is capped there; 4096 or more is recommended");
    }
    // The kernel caps the backlog at somaxconn; ask for at least 4096.
    socket.listen(somaxconn.max(4096))?;
    Ok(socket.into())
}

/// The store thread of a failover group member (contract §6).
#[cfg(feature = "etcd")]
fn spawn_group(
    config: &Config,
    member: String,
    audit: Option<std::fs::File>,
    wake: Box<dyn Fn() + Send>,
) -> io::Result<StoreThread> {
    let cfg = crate::state::group::GroupConfig {
        endpoints: config.etcd.clone(),
        prefix: config.etcd_prefix.clone(),
        member,
        lease_ttl: config.lease_ttl,
        max_txn_ops: config.etcd_max_txn_ops as usize,
    };
    info!(
        "failover group {} on {}: member {}, lease {} s; standing by until elected",
        cfg.prefix,
        cfg.endpoints.join(","),
        cfg.member,
        cfg.lease_ttl
    );
    StoreThread::spawn_group(cfg, audit, wake)
}

#[cfg(not(feature = "etcd"))]
fn spawn_group(
    _config: &Config,
    _member: String,
    _audit: Option<std::fs::File>,
    _wake: Box<dyn Fn() + Send>,
) -> io::Result<StoreThread> {
    Err(io::Error::other(
        "--etcd: this build has no failover support (the `etcd` cargo feature is off)",
    ))
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

impl LoginNode<NoHandler> {
    /// Binds the node port of `config`; application commands are ignored.
    pub fn bind(config: Config) -> io::Result<Self> {
        LoginNode::with_handler(config, NoHandler)
    }

    /// A builder for setting a node up in code, starting from [`Config::default`].
    ///
    /// ```no_run
    /// use login_node::{Context, Handler, LoginNode, NodeKey};
    ///
    /// struct Echo;
    /// impl Handler for Echo {
    ///     fn app_command(&mut self, ctx: &mut Context<'_>, from: NodeKey, cmd: u16, body: &[u8]) {
    ///         let _ = ctx.send(from, cmd, body);
    ///     }
    /// }
    ///
    /// let mut node = LoginNode::builder()
    ///     .listen("0.0.0.0:7700".parse().unwrap())
    ///     .token("a-long-random-secret")
    ///     .heartbeat(10, 30)
    ///     .state_dir(Some("/var/lib/my-game/login".into()))
    ///     .admin(Some("127.0.0.1:7701".parse().unwrap()), "another-long-secret")
    ///     .handler(Echo)
    ///     .build()?;
    /// node.run()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn builder() -> Builder<NoHandler> {
        Builder {
            config: Config::default(),
            handler: NoHandler,
        }
    }
}

/// Sets up a [`LoginNode`] in code: every [`Config`] field has a setter or comes from
/// [`Builder::config`]; [`Builder::build`] validates the result as the binary does.
pub struct Builder<H: Handler = NoHandler> {
    config: Config,
    handler: H,
}

impl<H: Handler> Builder<H> {
    /// Replaces the whole configuration (setters after this change single fields of it).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The node port address.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.listen = addr;
        self
    }

    /// The shared AUTH token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.config.token = token.into();
        self
    }

    /// A second accepted token during a rotation (`None` to stop accepting it).
    pub fn previous_token(mut self, token: Option<String>) -> Self {
        self.config.previous_token = token;
        self
    }

    /// Heartbeat interval announced to nodes and the silence after which they are dropped.
    pub fn heartbeat(mut self, interval_secs: u16, timeout_secs: u16) -> Self {
        self.config.heartbeat_interval = interval_secs;
        self.config.heartbeat_timeout = timeout_secs;
        self
    }

    /// The durable state directory (`None`: state in memory only).
    pub fn state_dir(mut self, dir: Option<std::path::PathBuf>) -> Self {
        self.config.state_dir = dir;
        self
    }

    /// The admin API's address (`None`: no admin API) and bearer token.
    pub fn admin(mut self, listen: Option<SocketAddr>, token: impl Into<String>) -> Self {
        self.config.admin_listen = listen;
        self.config.admin_token = token.into();
        self
    }

    /// Peer addresses allowed on the node port (empty: all).
    pub fn allow(mut self, blocks: Vec<crate::net::Cidr>) -> Self {
        self.config.allow = blocks;
        self
    }

    /// Capacity of a cross node that reports 0.
    pub fn default_capacity(mut self, capacity: u16) -> Self {
        self.config.default_capacity = capacity;
        self
    }

    /// The embedder's handler.
    pub fn handler<H2: Handler>(self, handler: H2) -> Builder<H2> {
        Builder {
            config: self.config,
            handler,
        }
    }

    /// Validates the configuration (as the binary does: an error names the key), opens the
    /// state directory and binds the listeners.
    pub fn build(self) -> io::Result<LoginNode<H>> {
        LoginNode::with_handler(self.config, self.handler)
    }
}

impl<H: Handler> LoginNode<H> {
    /// Binds the node port of `config`, handing application events to `handler`. The
    /// configuration is first checked by [`Config::validate`], as the binary checks its own
    /// (an `InvalidInput` error names the key).
    pub fn with_handler(config: Config, handler: H) -> io::Result<Self> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.0))?;
        let poll = Poll::new()?;
        let mut listener = TcpListener::from_std(bind_listener(config.listen)?);
        let local_addr = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let start = Instant::now();
        let now = Now {
            mono_ms: 0,
            unix_secs: unix_now(),
        };
        let mut cluster = Cluster::new(&config, now);
        let db = match &config.state_dir {
            // A failover group keeps its state in etcd (the state directory holds only the
            // audit log then).
            Some(dir) if !config.etcd.is_empty() => {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
                None
            }
            _ if !config.etcd.is_empty() => None,
            Some(dir) => {
                let (db, state) = Db::open(dir).map_err(io::Error::other)?;
                info!(
                    "state {}: {} assignments, whitelist version {} ({} entries), {} in maintenance",
                    dir.display(),
                    state.assignments.len(),
                    state.whitelist_version,
                    state.whitelist.len(),
                    state.maintenance.len()
                );
                cluster.restore(state);
                Some(db)
            }
            None => {
                warn!("no state directory: assignments, whitelist and flags live in memory only");
                None
            }
        };
        let admin = admin::AdminSide::bind(&config, &poll)?;
        let mut durability = durability::Durability::default();
        let wake = waker.clone();
        let wake: Box<dyn Fn() + Send> = Box::new(move || {
            let _ = wake.wake();
        });
        if let Some(db) = db {
            durability.store = Some(StoreThread::spawn(db, admin.audit_file()?, wake)?);
        } else if !config.etcd.is_empty() {
            let member = config
                .member_name
                .clone()
                .unwrap_or_else(|| local_addr.to_string());
            durability.store = Some(spawn_group(&config, member, admin.audit_file()?, wake)?);
        }
        Ok(LoginNode {
            cluster,
            durability,
            admin,
            io_stats: IoStats::default(),
            reload: None,
            config,
            poll,
            events: Events::with_capacity(1024),
            listener,
            local_addr,
            conns: Slab::new(),
            handler,
            scratch: vec![0u8; SCRATCH_LEN].into_boxed_slice(),
            reply: Vec::with_capacity(4096),
            dirty: Vec::new(),
            pending_reads: Vec::new(),
            accept_more: false,
            accept_retry_at: None,
            emfile_logged_at: None,
            shutdown: Arc::new(AtomicBool::new(false)),
            waker,
            signals: None,
            start,
        })
    }

    /// The address the node port is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the admin API is bound to, if it is enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.local_addr()
    }

    /// The address of the players' server list listener (`public_listen`), if set.
    pub fn public_addr(&self) -> Option<SocketAddr> {
        self.admin.public_addr()
    }

    /// Makes SIGHUP (after [`Self::handle_signals`]) re-read the configuration with `reload`
    /// and apply its reloadable keys.
    pub fn set_reload(&mut self, reload: Reload) {
        self.reload = Some(reload);
    }

    /// Test hook: while `switch` is true, state writes fail as on a full disk.
    #[doc(hidden)]
    pub fn inject_journal_fault(&mut self, switch: Arc<AtomicBool>) {
        if let Some(store) = &self.durability.store {
            store.inject_fault(switch);
        }
    }

    /// A handle that stops [`Self::run`] from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            flag: self.shutdown.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Makes SIGTERM and SIGINT shut the node down gracefully, and SIGHUP reload the
    /// configuration (see [`Self::set_reload`]).
    pub fn handle_signals(&mut self) -> io::Result<()> {
        let mut signals = signal_hook_mio::v1_0::Signals::new([
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGHUP,
        ])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// The cluster state (read-only).
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The embedder's handler.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    fn now(&self) -> Now {
        self.now_at(Instant::now())
    }

    /// `now` for a monotonic instant already read (one clock read per loop turn).
    fn now_at(&self, at: Instant) -> Now {
        Now {
            mono_ms: at.saturating_duration_since(self.start).as_millis() as u64,
            unix_secs: unix_now(),
        }
    }

    /// Runs the loop until shutdown (signal or [`ShutdownHandle`]); returns after every node
    /// was sent KICK 4 and the connections are closed.
    pub fn run(&mut self) -> io::Result<()> {
        match self.admin.local_addr() {
            Some(a) => info!(
                "login node listening on {}, admin API on {a}",
                self.local_addr
            ),
            None => info!(
                "login node listening on {} (admin API off)",
                self.local_addr
            ),
        }
        if let Some(a) = self.admin.public_addr() {
            info!("players' server list on {a} (GET /public/servers/<plat>)");
        }
        // The start-up lines reach stderr before systemd is told ready, and before the loop
        // blocks in its first poll with no node to wake it.
        log::logger().flush();
        notify::notify("READY=1\nSTATUS=serving");
        let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        if events.capacity() == 0 {
            // A panic escaped an earlier run() before the buffer was put back.
            events = Events::with_capacity(1024);
        }
        let result = self.run_loop(&mut events);
        self.events = events;
        notify::notify("STOPPING=1");
        result?;
        // The batch in flight, and one last attempt at what is pending: what they announce
        // goes out with the KICKs if they succeed.
        self.finish_store();
        if self.cluster.role() != &crate::cluster::Role::Single {
            // A group member hands over: KICK 6 (connect to another member), then the store
            // thread revokes the lease as it ends, so a standby takes over at once.
            let now = self.now();
            self.lose_role("shutting down", now);
            self.durability.store = None;
        }
        self.shutdown_all();
        Ok(())
    }

    fn run_loop(&mut self, events: &mut Events) -> io::Result<()> {
        loop {
            let timeout = self.poll_timeout();
            // Once per turn, and never a line left buffered while the loop blocks.
            log::logger().flush();
            if let Err(e) = self.poll.poll(events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let turn_start = Instant::now();
            let now = self.now_at(turn_start);
            // A group member past its lease deadline (a paused process waking up) stops
            // being active before it handles any event: nothing it answers may predate that.
            self.check_lease(now);
            // Connections that hit the read cap last turn read again after this turn's events.
            let carried = std::mem::take(&mut self.pending_reads);
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_ready(now),
                    WAKER => {}
                    SIGNALS => self.signals_ready(),
                    ADMIN_LISTENER => self.admin_accept_ready(now, false),
                    PUBLIC_LISTENER => self.admin_accept_ready(now, true),
                    Token(t) if t >= ADMIN_BASE => self.admin_ready(t - ADMIN_BASE, event, now),
                    Token(conn) => {
                        if event.is_writable() {
                            self.write_ready(conn);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read_ready(conn, now);
                        }
                    }
                }
            }
            self.read_carried(carried, now);
            self.turn_end(now);
            self.io_stats
                .loop_seconds
                .observe(turn_start.elapsed().as_secs_f64());
            if self.shutdown.load(Ordering::Acquire) {
                return Ok(());
            }
        }
    }

    /// Work that does not wait for an event: accepts past the per-turn cap, reads past it,
    /// timers, then the flush.
    fn turn_end(&mut self, now: Now) {
        if self.accept_more || self.accept_retry_at.is_some_and(|t| Instant::now() >= t) {
            self.accept_more = false;
            self.accept_retry_at = None;
            self.accept_ready(now);
        }
        self.with_outbox(|cluster, io, handler| cluster.handle_timeout(now, io, handler));
        self.admin_timers_fired();
        self.admin_carried(now);
        self.drive_store(now);
        self.flush_dirty(now, false);
    }

    /// Runs `f` with the cluster, an outbox over every connection (outside a read) and the
    /// handler: the fields borrowed apart, so the cluster can send while it decides.
    fn with_outbox<R>(&mut self, f: impl FnOnce(&mut Cluster, &mut Io<'_>, &mut H) -> R) -> R {
        let mut io = Io::between_reads(
            &mut self.conns,
            &mut self.dirty,
            &mut self.reply,
            self.config.max_write_buffer,
            &mut self.io_stats.frames_out,
        );
        f(&mut self.cluster, &mut io, &mut self.handler)
    }

    fn read_carried(&mut self, mut carried: Vec<ConnId>, now: Now) {
        for &conn in &carried {
            if let Some(c) = self.conns.get_mut(conn) {
                c.read_pending = false;
            }
        }
        for &conn in &carried {
            self.read_ready(conn, now);
        }
        // Keep whichever list has capacity, to avoid reallocating every turn.
        carried.clear();
        if self.pending_reads.is_empty() && carried.capacity() > self.pending_reads.capacity() {
            self.pending_reads = carried;
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if self.accept_more
            || !self.pending_reads.is_empty()
            || !self.dirty.is_empty()
            || self.admin.has_carried()
        {
            return Some(Duration::ZERO);
        }
        let journal_wait = match (self.store_retry_wait(), self.lease_wait()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if journal_wait == Some(Duration::ZERO) {
            return journal_wait;
        }
        let now_ms = self.start.elapsed().as_millis() as u64;
        let mut timeout = self
            .cluster
            .next_timeout()
            .map(|at| Duration::from_millis(at.saturating_sub(now_ms)));
        if let Some(at) = self.accept_retry_at {
            let d = at.saturating_duration_since(Instant::now());
            timeout = Some(timeout.map_or(d, |t| t.min(d)));
        }
        if let Some(d) = journal_wait {
            timeout = Some(timeout.map_or(d, |t| t.min(d)));
        }
        timeout
    }

    fn signals_ready(&mut self) {
        if let Some(signals) = &mut self.signals {
            let mut reload = false;
            for sig in signals.pending() {
                if sig == signal_hook::consts::SIGHUP {
                    reload = true;
                } else {
                    info!("signal {sig} received: shutting down");
                    self.shutdown.store(true, Ordering::Release);
                }
            }
            if reload {
                self.reload_config();
            }
        }
    }

    /// SIGHUP: re-reads the configuration and applies its reloadable keys. A bad file is
    /// rejected whole; the running configuration stays.
    fn reload_config(&mut self) {
        let Some(reload) = &mut self.reload else {
            warn!("SIGHUP: no configuration source to reload from (started without one)");
            return;
        };
        // Judged against the listeners actually bound, not the file's own addresses.
        let bound = (self.local_addr, self.admin.local_addr());
        let new = match reload().and_then(|c| c.check_dev_tokens(bound.0, bound.1).map(|()| c)) {
            Ok(c) => c,
            Err(e) => {
                error!("SIGHUP: configuration rejected, keeping the running one: {e}");
                self.io_stats.reloads_rejected += 1;
                return;
            }
        };
        self.io_stats.reloads_applied += 1;
        let changes = self.config.changed_keys(&new);
        if changes.is_empty() {
            info!("SIGHUP: configuration reloaded, nothing changed");
            return;
        }
        let mut applied = self.config.clone();
        for &(key, restart) in &changes {
            if restart {
                warn!("SIGHUP: {key} changed but needs a restart; the running value stays");
            } else {
                info!("SIGHUP: {key} changed");
            }
        }
        applied.apply_reloadable(&new);
        self.admin
            .lists
            .reconfigure(crate::admin::public::PublicSettings::of(&applied));
        log::set_max_level(applied.log_level.filter());
        self.cluster.reconfigure(&applied);
        self.config = applied;
    }

    fn accept_ready(&mut self, now: Now) {
        for _ in 0..ACCEPTS_PER_TURN {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    if !self.cluster.admits(peer, now) {
                        // Blocked for failing AUTH: closed at once, counted, not logged.
                        drop(stream);
                        continue;
                    }
                    // Small frames must not wait for Nagle's algorithm.
                    if let Err(e) = stream.set_nodelay(true) {
                        debug!("set_nodelay for {peer}: {e}");
                    }
                    let entry = self.conns.vacant_entry();
                    let conn = entry.key();
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        Token(conn),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        warn!("cannot register connection from {peer}: {e}");
                        continue;
                    }
                    entry.insert(Conn {
                        stream,
                        partial: Vec::new(),
                        out: WriteQueue::default(),
                        closing: false,
                        dirty: false,
                        read_pending: false,
                    });
                    debug!("conn {conn} from {}: connected", Peer(peer));
                    self.cluster.open(conn, peer, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_fd_exhaustion(&e) => {
                    // The pending connection stays in the backlog; retrying at once would spin.
                    let t = Instant::now();
                    if self
                        .emfile_logged_at
                        .is_none_or(|at| t.duration_since(at) >= Duration::from_secs(1))
                    {
                        error!(
                            "accept: {e} ({} connections open); pausing accepts for {} ms",
                            self.conns.len(),
                            ACCEPT_BACKOFF.as_millis()
                        );
                        self.emfile_logged_at = Some(t);
                    }
                    self.accept_retry_at = Some(t + ACCEPT_BACKOFF);
                    return;
                }
                Err(e) => debug!("accept: {e}"),
            }
        }
        self.accept_more = true;
    }

    fn write_ready(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        if c.out.is_empty() {
            return;
        }
        if let Err(e) = c.out.flush_to(&mut c.stream, &mut self.io_stats.bytes_out) {
            debug!("conn {conn}: write: {e}");
            c.closing = true;
        }
        if (c.closing || c.out.is_empty()) && !c.dirty {
            c.dirty = true;
            self.dirty.push(conn);
        }
    }

    fn read_ready(&mut self, conn: ConnId, now: Now) {
        let max_frame = self.config.max_frame;
        let LoginNode {
            conns,
            cluster,
            handler,
            scratch,
            reply,
            dirty,
            pending_reads,
            config,
            io_stats,
            ..
        } = self;
        match conns.get(conn) {
            Some(c) if !c.closing && !c.read_pending => {}
            _ => return,
        }
        let IoStats {
            frames_in,
            frames_out,
            bytes_in,
            bytes_out,
            ..
        } = io_stats;
        let mut io = Io {
            conns,
            dirty,
            current: Some(conn),
            reply,
            max_write_buffer: config.max_write_buffer,
            frames_out,
        };
        let mut filled = 0usize;
        let mut calls = 0usize;
        let mut eof = false;
        let mut drained = false;

        // A partial frame from an earlier turn: read what it still needs (through the scratch
        // buffer, so it only ever holds bytes that arrived) until it is whole.
        if !io.conns[conn].partial.is_empty() {
            match fill_partial(
                &mut io.conns[conn],
                scratch,
                max_frame,
                &mut calls,
                bytes_in,
            ) {
                Fill::Complete => {
                    *frames_in += 1;
                    let frame = std::mem::take(&mut io.conns[conn].partial);
                    cluster.handle_frame(conn, &frame[proto::HEADER_LEN..], now, &mut io, handler);
                }
                Fill::Incomplete => drained = true,
                Fill::Eof => eof = true,
                Fill::BadHeader(e) => cluster.frame_error(conn, e, now, &mut io, handler),
                Fill::Failed(e) => {
                    debug!("conn {conn}: read: {e}");
                    io.close(conn);
                }
            }
        }

        while !drained && !eof && !io.is_closing(conn) {
            if calls == READS_PER_TURN {
                // Fairness: more may be waiting, but other connections go first.
                let c = &mut io.conns[conn];
                c.read_pending = true;
                pending_reads.push(conn);
                break;
            }
            calls += 1;
            let space = &mut scratch[filled..];
            let asked = space.len();
            match io.conns[conn].stream.read(space) {
                Ok(0) => eof = true,
                Ok(n) => {
                    *bytes_in += n as u64;
                    let total = filled + n;
                    let consumed = dispatch(
                        &scratch[..total],
                        conn,
                        max_frame,
                        now,
                        cluster,
                        &mut io,
                        handler,
                        frames_in,
                    );
                    filled = total - consumed;
                    if filled > 0 {
                        scratch.copy_within(consumed..total, 0);
                    }
                    // A short read drained the socket: edge-triggered epoll reports the next
                    // arrival, so the extra read that would only return WouldBlock is skipped.
                    drained = n < asked;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => drained = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("conn {conn}: read: {e}");
                    io.close(conn);
                }
            }
        }
        if filled > 0 && !io.is_closing(conn) {
            // Only the bytes received: a declared length reserves nothing.
            append_partial(&mut io.conns[conn].partial, &scratch[..filled]);
        }
        if eof {
            debug!("conn {conn}: peer closed");
            io.close(conn);
        }
        // One write for every reply this connection earned in this turn.
        if !reply.is_empty() {
            let c = &mut conns[conn];
            let mut written = 0;
            if !c.closing || c.out.is_empty() {
                loop {
                    match c.stream.write(&reply[written..]) {
                        Ok(0) => break,
                        Ok(n) => {
                            *bytes_out += n as u64;
                            written += n;
                            if written == reply.len() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            debug!("conn {conn}: write: {e}");
                            c.closing = true;
                            break;
                        }
                    }
                }
            }
            if written < reply.len() && !c.closing {
                // The socket is full: queue the rest; WRITABLE will tell when to continue.
                c.enqueue(conn, &reply[written..], config.max_write_buffer);
            }
            reply.clear();
            if c.closing && !c.dirty {
                c.dirty = true;
                dirty.push(conn);
            }
        }
    }

    /// Writes what is queued for dirty connections and closes those marked for closing.
    /// With `linger`, a closing connection with bytes still queued stays open (shutdown).
    fn flush_dirty(&mut self, now: Now, linger: bool) {
        while let Some(conn) = self.dirty.pop() {
            let Some(c) = self.conns.get_mut(conn) else {
                continue;
            };
            c.dirty = false;
            if !c.out.is_empty() {
                if let Err(e) = c.out.flush_to(&mut c.stream, &mut self.io_stats.bytes_out) {
                    debug!("conn {conn}: write: {e}");
                    c.out.release();
                }
            }
            if c.out.is_empty() {
                // Idle connections hold no buffers.
                c.out.release();
            }
            if c.closing && (!linger || c.out.is_empty()) {
                self.release(conn, now);
            }
        }
    }

    /// Closes the socket and tells the cluster.
    fn release(&mut self, conn: ConnId, now: Now) {
        if !self.conns.contains(conn) {
            return;
        }
        // Dropping the stream closes the descriptor, which also removes it from epoll.
        drop(self.conns.remove(conn));
        self.with_outbox(|cluster, io, handler| cluster.closed(conn, now, io, handler));
    }

    fn shutdown_all(&mut self) {
        let now = self.now();
        info!(
            "shutting down: {} connections, {} registered nodes",
            self.conns.len(),
            self.cluster.registered()
        );
        if let Err(e) = self.poll.registry().deregister(&mut self.listener) {
            debug!("deregister listener: {e}");
        }
        self.with_outbox(|cluster, io, handler| cluster.shutdown(now, io, handler));
        self.flush_dirty(now, true);
        let deadline = Instant::now() + SHUTDOWN_FLUSH;
        let mut events = Events::with_capacity(256);
        while !self.conns.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if self.poll.poll(&mut events, Some(left)).is_err() {
                break;
            }
            for event in events.iter() {
                let Token(conn) = event.token();
                if event.is_writable() {
                    self.write_ready(conn);
                }
                if event.is_read_closed() || event.is_error() {
                    if let Some(c) = self.conns.get_mut(conn) {
                        // The peer is gone: nothing more will be delivered.
                        c.out.release();
                        if !c.dirty {
                            c.dirty = true;
                            self.dirty.push(conn);
                        }
                    }
                }
            }
            self.flush_dirty(now, true);
        }
        let left: Vec<ConnId> = self.conns.iter().map(|(k, _)| k).collect();
        if !left.is_empty() {
            warn!(
                "shutdown: {} connections did not take their KICK in time",
                left.len()
            );
        }
        for conn in left {
            self.release(conn, now);
        }
        info!("shutdown complete");
        log::logger().flush();
    }
}

/// Decodes and dispatches every complete frame in `buf`; returns the bytes consumed. Stops
/// (consuming everything) once the connection is closing: nothing after a fatal frame counts.
// The hot path takes its parts as separate borrows of the node's fields, not `&mut self`.
#[allow(clippy::too_many_arguments)]
fn dispatch(
    buf: &[u8],
    conn: ConnId,
    max_frame: usize,
    now: Now,
    cluster: &mut Cluster,
    io: &mut Io<'_>,
    handler: &mut dyn Handler,
    frames_in: &mut u64,
) -> usize {
    let mut at = 0;
    loop {
        match proto::parse_frame(&buf[at..], max_frame) {
            Ok(Some((payload, used))) => {
                *frames_in += 1;
                cluster.handle_frame(conn, payload, now, io, handler);
                at += used;
                if io.is_closing(conn) {
                    return buf.len();
                }
            }
            Ok(None) => return at,
            Err(e) => {
                cluster.frame_error(conn, e, now, io, handler);
                return buf.len();
            }
        }
    }
}

enum Fill {
    Complete,
    Incomplete,
    Eof,
    BadHeader(FrameError),
    Failed(io::Error),
}

/// Reads what `c.partial`'s frame still needs, through `scratch`, so the partial buffer holds
/// only bytes that arrived (never the declared length, never zero-filled).
fn fill_partial(
    c: &mut Conn,
    scratch: &mut [u8],
    max_frame: usize,
    calls: &mut usize,
    bytes_in: &mut u64,
) -> Fill {
    loop {
        let have = c.partial.len();
        let need = if have < proto::HEADER_LEN {
            proto::HEADER_LEN - have
        } else {
            match proto::parse_frame(&c.partial, max_frame) {
                Ok(Some(_)) => return Fill::Complete,
                Ok(None) => {
                    proto::HEADER_LEN + u16::from_be_bytes([c.partial[0], c.partial[1]]) as usize
                        - have
                }
                Err(e) => return Fill::BadHeader(e),
            }
        };
        let want = need.min(scratch.len());
        *calls += 1;
        match c.stream.read(&mut scratch[..want]) {
            Ok(0) => return Fill::Eof,
            Ok(n) => {
                *bytes_in += n as u64;
                append_partial(&mut c.partial, &scratch[..n]);
                if n < want && c.partial.len() >= proto::HEADER_LEN {
                    return Fill::Incomplete;
                }
            }
            Err(e) => {
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Fill::Incomplete,
                    io::ErrorKind::Interrupted => continue,
                    _ => Fill::Failed(e),
                };
            }
        }
    }
}

/// Frames in a buffer of whole frames (one for almost every send).
fn count_frames(bytes: &[u8]) -> u64 {
    let mut n = 0;
    let mut at = 0;
    while at + proto::HEADER_LEN <= bytes.len() {
        at += proto::HEADER_LEN + u16::from_be_bytes([bytes[at], bytes[at + 1]]) as usize;
        n += 1;
    }
    n
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
