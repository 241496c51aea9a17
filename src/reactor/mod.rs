//! The reactor: one single-threaded mio poll loop, the only code that touches sockets.
//!
//! Per loop turn:
//! 1. `poll` (timeout = the timer wheel's next deadline: every deadline is on it), then read
//!    the clock once; the whole turn, and the next poll's timeout, use that `now`.
//! 2. Listener ready: accept until WouldBlock (at most [`ACCEPTS_PER_TURN`], so a connection
//!    storm cannot starve live nodes), register each socket once for READABLE | WRITABLE
//!    (edge-triggered: no re-registration syscalls later), open its session.
//! 3. Connection readable: read into the reactor's one read buffer, decode every complete
//!    frame in place and hand it to the cluster; replies to that connection collect in one
//!    reply buffer and go out in a single write after its frames are done. A partial frame's
//!    bytes move into the connection, which otherwise holds no buffer at all. At most
//!    [`READS_PER_TURN`] reads per connection per turn; a connection with more waiting is
//!    revisited next turn.
//! 4. Timers: the cluster fires auth timeouts and heartbeat expiry, then the reactor's own
//!    deadlines (`deadline.rs`: HTTP connections, accept and journal retries, the lease).
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
//! The admin API (`http_conn.rs`) shares the loop: its own listener, connections in their own
//! slab, deadlines on the cluster's wheel.
//!
//! Files: this one holds the node and the loop (poll, accept, the end of a turn);
//! `builder.rs` sets a node up, `lifecycle.rs` runs and stops it (signals, reload, shutdown),
//! `conn.rs` is a node connection's read/write path (with `partial.rs` and `queue.rs`),
//! `http_conn.rs` and `public.rs` the HTTP connections, `durability.rs` and `failover.rs` the
//! store thread's side, `deadline.rs` the reactor's timers.

mod builder;
mod conn;
mod deadline;
mod durability;
mod failover;
mod http_conn;
mod lifecycle;
mod notify;
mod partial;
mod public;
mod queue;

use crate::admin::metrics::IoStats;
use crate::cluster::{Cluster, ConnId, Handler, NoHandler, Now};
use crate::config::{Config, ConfigError};
use crate::logging::Peer;
use crate::timer::TimerId;
pub use builder::{Builder, ShutdownHandle};
use conn::{Conn, ConnOutbox};
use deadline::Deadline;
pub use durability::COMMIT_SPACING_MS;
use log::{debug, error, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use queue::WriteQueue;
use slab::Slab;
use std::io;
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

/// Accepted connections inherit the listener's `TCP_NODELAY` (Linux copies the option from
/// the listening socket; tested in `builder`), so it is not set again on each.
const ACCEPTED_HAVE_NODELAY: bool = cfg!(target_os = "linux");

/// Connections accepted per turn before live connections get their turn.
pub const ACCEPTS_PER_TURN: usize = 256;
/// Read calls per connection per turn.
pub const READS_PER_TURN: usize = 4;
/// The read buffer (every connection reads through it): room for a whole maximal frame plus
/// a large read.
const READ_BUF_LEN: usize = 256 * 1024;
/// How long shutdown waits for KICK frames to drain.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(1000);
/// How long accepting pauses (ms) after the process ran out of file descriptors.
const ACCEPT_BACKOFF_MS: u64 = 100;

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
    read_buf: Box<[u8]>,
    reply: Vec<u8>,
    dirty: Vec<ConnId>,
    pending_reads: Vec<ConnId>,
    accept_more: bool,
    /// The deadline after which accepting is tried again (out of descriptors).
    accept_retry: Option<TimerId>,
    /// When (monotonic ms) running out of descriptors was last logged.
    emfile_logged_at: Option<u64>,
    /// The reactor's deadlines that fired this turn (kept for its capacity).
    fired_deadlines: Vec<usize>,
    shutdown: Arc<AtomicBool>,
    waker: Arc<Waker>,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    start: Instant,
    durability: durability::Durability,
    admin: http_conn::AdminSide,
    io_stats: IoStats,
    reload: Option<Reload>,
}

/// Re-reads the configuration on SIGHUP (the binary re-parses its arguments and file).
pub type Reload = Box<dyn FnMut() -> Result<Config, ConfigError> + Send>;

fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

impl<H: Handler> LoginNode<H> {
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

    fn run_loop(&mut self, events: &mut Events) -> io::Result<()> {
        loop {
            // The wait is measured from now, not from the turn's start: a long turn, or a
            // poll interrupted by SIGSTOP/SIGCONT (EINTR), must not push every deadline back
            // by its length. This read only sizes the wait; decisions use the turn's `now`.
            let timeout = self.poll_timeout(self.start.elapsed().as_millis() as u64);
            // Once per turn, and never a line left buffered while the loop blocks.
            log::logger().flush();
            if let Err(e) = self.poll.poll(events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            // The turn's one clock read: everything the turn decides sees this `now`.
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
    /// timers (the cluster's, then the reactor's), then the flush.
    fn turn_end(&mut self, now: Now) {
        if self.accept_more {
            self.accept_more = false;
            self.accept_ready(now);
        }
        self.with_outbox(|cluster, io, handler| cluster.handle_timeout(now, io, handler));
        self.deadlines_passed(now);
        self.admin_carried(now);
        self.drive_store(now);
        self.flush_dirty(now, false);
    }

    /// Runs `f` with the cluster, an outbox over every connection (outside a read) and the
    /// handler: the fields borrowed apart, so the cluster can send while it decides.
    fn with_outbox<R>(
        &mut self,
        f: impl FnOnce(&mut Cluster, &mut ConnOutbox<'_>, &mut H) -> R,
    ) -> R {
        let mut io = ConnOutbox::between_reads(
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

    /// How long the next poll may block: not at all with work left over, else until the
    /// wheel's next deadline (every deadline is on it), counted from `now_ms` (monotonic).
    fn poll_timeout(&self, now_ms: u64) -> Option<Duration> {
        if self.accept_more
            || !self.pending_reads.is_empty()
            || !self.dirty.is_empty()
            || self.admin.has_carried()
        {
            return Some(Duration::ZERO);
        }
        self.cluster
            .next_timeout()
            .map(|at| Duration::from_millis(at.saturating_sub(now_ms)))
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
                    if !ACCEPTED_HAVE_NODELAY {
                        if let Err(e) = stream.set_nodelay(true) {
                            debug!("set_nodelay for {peer}: {e}");
                        }
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
                    let t = now.mono_ms;
                    if self
                        .emfile_logged_at
                        .is_none_or(|at| t.saturating_sub(at) >= 1000)
                    {
                        error!(
                            "accept: {e} ({} connections open); pausing accepts for {} ms",
                            self.conns.len(),
                            ACCEPT_BACKOFF_MS
                        );
                        self.emfile_logged_at = Some(t);
                    }
                    deadline::arm(
                        &mut self.cluster,
                        &mut self.accept_retry,
                        t + ACCEPT_BACKOFF_MS,
                        Deadline::AcceptRetry,
                    );
                    return;
                }
                Err(e) => debug!("accept: {e}"),
            }
        }
        self.accept_more = true;
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
