//! The HTTP connections of the loop: the admin API's listener and the players' list listener,
//! their connections and the audit log. Named apart from `src/admin/` (the API itself,
//! sans-IO): this file holds the sockets that feed it.
//!
//! Connection lifecycle: accepted (idle deadline) -> bytes of a request arrive (request
//! deadline: the whole request must arrive within [`REQUEST_TIMEOUT_MS`], so slow headers
//! cannot hold a connection) -> answered (idle deadline again, keep-alive) -> closed on
//! `Connection: close`, an error, a deadline or the peer. A change's response is held until
//! the journal records behind it are durable; requests pipelined behind it wait with it.
//! Reads stop while a response is held or the output is large, so a client that sends
//! without reading cannot grow server memory.

use super::deadline::Deadline;
use super::public::PUBLIC_BYTES_PER_TURN;
use super::{ConnOutbox, LoginNode, ACCEPTS_PER_TURN, ADMIN_BASE, ADMIN_LISTENER, PUBLIC_LISTENER};
use crate::admin::api::{self, Api};
use crate::admin::http::{self, HttpError, Response, MAX_HEAD, MAX_REQUEST};
use crate::admin::public::{PublicLists, PublicSettings};
use crate::cluster::{Handler, Now};
use crate::config::Config;
use crate::logging::Peer;
use crate::timer::TimerId;
use log::{debug, error, info, warn};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Poll, Token};
use slab::Slab;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

/// Most admin connections open at once; more are closed at accept.
pub const MAX_ADMIN_CONNS: usize = 128;
/// Most connections open at once on the players' list listener (counted apart, so a crowd
/// of list readers cannot lock operators out).
pub const MAX_PUBLIC_CONNS: usize = 1024;
/// A request must arrive whole within this many ms of its first byte.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// An idle keep-alive connection is closed after this many ms.
pub const IDLE_TIMEOUT_MS: u64 = 60_000;
/// Reading pauses while this much output waits for the client.
const OUTPUT_PAUSE: usize = 1 << 20;
pub(super) struct AdminConn {
    pub(super) stream: TcpStream,
    peer: SocketAddr,
    pub(super) input: Vec<u8>,
    pub(super) output: Vec<u8>,
    /// A change's response waiting until the batch (by sequence number) holding the change
    /// is durable.
    held: Option<(u64, Vec<u8>)>,
    pub(super) close_after_output: bool,
    pub(super) timer: Option<TimerId>,
    /// The current deadline is the request deadline (a request has started).
    pub(super) in_request: bool,
    /// Accepted on the players' list listener: serves that list only, heads only.
    pub(super) public: bool,
    /// Has requests left over for the next turn (the turn's list budget ran out).
    pub(super) carried: bool,
    /// A shared list body (and how much of it was sent) that follows `output`.
    pub(super) tail: Option<(Arc<[u8]>, usize)>,
}

/// The admin listener, its connections and the audit log.
pub(super) struct AdminSide {
    listener: Option<TcpListener>,
    addr: Option<SocketAddr>,
    pub(super) conns: Slab<AdminConn>,
    audit: Option<File>,
    /// Where `audit` writes, for `GET /api/audit`.
    audit_path: Option<std::path::PathBuf>,
    /// Audit lines of changes not yet handed to the store, with the batch they belong to
    /// (kept apart from the connections: a change is audited even if its client hangs up
    /// first).
    pending_audit: Vec<(u64, SocketAddr, String)>,
    /// The players' list listener (`public_listen`), its address and open connections.
    public_listener: Option<TcpListener>,
    public_addr: Option<SocketAddr>,
    public_open: usize,
    /// The players' server lists, rendered once per change.
    pub(super) lists: PublicLists,
    /// What this turn may still write of list answers, and the connections left over.
    pub(super) public_budget: usize,
    pub(super) carried: Vec<usize>,
}

impl AdminSide {
    pub(super) fn bind(config: &Config, poll: &Poll) -> io::Result<Self> {
        let mut side = AdminSide {
            listener: None,
            addr: None,
            conns: Slab::new(),
            audit: None,
            audit_path: None,
            pending_audit: Vec::new(),
            public_listener: None,
            public_addr: None,
            public_open: 0,
            lists: PublicLists::new(PublicSettings::of(config)),
            public_budget: PUBLIC_BYTES_PER_TURN,
            carried: Vec::new(),
        };
        if let Some(addr) = config.public_listen {
            let mut listener = TcpListener::bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("public_listen {addr}: {e}")))?;
            side.public_addr = Some(listener.local_addr()?);
            poll.registry()
                .register(&mut listener, PUBLIC_LISTENER, Interest::READABLE)?;
            side.public_listener = Some(listener);
        }
        let Some(addr) = config.admin_listen else {
            return Ok(side);
        };
        let mut listener = match TcpListener::bind(addr) {
            Ok(l) => l,
            Err(e) if addr == crate::config::DEFAULT_ADMIN_LISTEN => {
                // Several instances on one host with default settings: the node port matters
                // more than the admin API.
                error!("admin API disabled: cannot bind the default admin_listen {addr}: {e}; set --admin-listen to another address");
                return Ok(side);
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("admin_listen {addr}: {e}"),
                ))
            }
        };
        side.addr = Some(listener.local_addr()?);
        poll.registry()
            .register(&mut listener, ADMIN_LISTENER, Interest::READABLE)?;
        side.listener = Some(listener);
        if let Some(path) = config.audit_path() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| {
                    io::Error::new(e.kind(), format!("audit_log {}: {e}", path.display()))
                })?;
            side.audit = Some(file);
            side.audit_path = Some(path);
        }
        Ok(side)
    }

    /// A second descriptor of the audit log, for the store thread.
    pub(super) fn audit_file(&self) -> io::Result<Option<File>> {
        self.audit.as_ref().map(File::try_clone).transpose()
    }

    pub(super) fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    pub(super) fn public_addr(&self) -> Option<SocketAddr> {
        self.public_addr
    }

    /// Connections with requests left over for the next turn.
    pub(super) fn has_carried(&self) -> bool {
        !self.carried.is_empty()
    }
}

impl<H: Handler> LoginNode<H> {
    /// Accepts on the admin listener, or (`public`) on the players' list listener.
    pub(super) fn admin_accept_ready(&mut self, now: Now, public: bool) {
        for _ in 0..ACCEPTS_PER_TURN {
            let listener = if public {
                &self.admin.public_listener
            } else {
                &self.admin.listener
            };
            let Some(listener) = listener else {
                return;
            };
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    let side = &self.admin;
                    let (open, cap) = if public {
                        (side.public_open, MAX_PUBLIC_CONNS)
                    } else {
                        (side.conns.len() - side.public_open, MAX_ADMIN_CONNS)
                    };
                    if open >= cap {
                        // A crowd on the public list is normal; on the admin API it is news.
                        if public {
                            debug!(
                                "public list: {cap} connections open; refusing {}",
                                Peer(peer)
                            );
                        } else {
                            warn!("admin: {cap} connections open; refusing {}", Peer(peer));
                        }
                        continue;
                    }
                    if public {
                        // A list is several segments: its last one must not wait for an ACK.
                        let _ = stream.set_nodelay(true);
                    }
                    let entry = self.admin.conns.vacant_entry();
                    let key = entry.key();
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        Token(ADMIN_BASE + key),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        warn!("admin: cannot register {}: {e}", Peer(peer));
                        continue;
                    }
                    let timer = self
                        .cluster
                        .set_timer(now.mono_ms + IDLE_TIMEOUT_MS, Deadline::Http(key).key());
                    entry.insert(AdminConn {
                        stream,
                        peer,
                        input: Vec::new(),
                        output: Vec::new(),
                        held: None,
                        close_after_output: false,
                        timer: Some(timer),
                        in_request: false,
                        public,
                        carried: false,
                        tail: None,
                    });
                    if public {
                        self.admin.public_open += 1;
                    }
                    debug!("admin: connection {key} from {}", Peer(peer));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors or similar: the next event retries.
                    debug!("admin accept: {e}");
                    return;
                }
            }
        }
    }

    pub(super) fn admin_ready(&mut self, key: usize, event: &Event, now: Now) {
        if !self.admin.conns.contains(key) {
            return;
        }
        // Any event may end a pause (output drained): process what is buffered, then read.
        // With nothing waiting the read costs one WouldBlock.
        let _ = event;
        self.admin_process(key, now);
        self.admin_read(key, now);
        self.admin_flush(key);
    }

    pub(super) fn admin_read(&mut self, key: usize, now: Now) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let Some(c) = self.admin.conns.get_mut(key) else {
                return;
            };
            if c.close_after_output
                || c.held.is_some()
                || c.carried
                || c.public_paused()
                || c.output.len() >= OUTPUT_PAUSE
            {
                // Paused: edge-triggered readiness is re-reported only on new data, so the
                // release path calls `admin_process` (and reads) itself.
                break;
            }
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    self.admin_close(key);
                    return;
                }
                Ok(n) => {
                    if c.input.is_empty() && !c.in_request {
                        c.in_request = true;
                        if let Some(t) = c.timer {
                            self.cluster.move_timer(t, now.mono_ms + REQUEST_TIMEOUT_MS);
                        }
                    }
                    let c = &mut self.admin.conns[key];
                    c.input.extend_from_slice(&buf[..n]);
                    self.admin_process(key, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("admin connection {key}: read: {e}");
                    self.admin_close(key);
                    return;
                }
            }
        }
    }

    /// Answers every whole request in the input, until one must wait for the journal.
    pub(super) fn admin_process(&mut self, key: usize, now: Now) {
        loop {
            let Some(c) = self.admin.conns.get_mut(key) else {
                return;
            };
            if c.held.is_some() || c.close_after_output || c.carried || c.public_paused() {
                return;
            }
            if c.public && self.admin.public_budget == 0 {
                c.carried = true;
                self.admin.carried.push(key);
                return;
            }
            let parsed = http::parse_request(&c.input);
            let (req, used) = match parsed {
                Ok(Some(r)) => r,
                Ok(None) => {
                    let limit = if c.public {
                        MAX_HEAD
                    } else {
                        MAX_REQUEST + MAX_HEAD
                    };
                    if c.input.len() > limit {
                        self.admin_fail(key, HttpError::TooLarge);
                    }
                    return;
                }
                Err(e) => {
                    self.admin_fail(key, e);
                    return;
                }
            };
            c.input.drain(..used);
            if c.public || req.path == "/public" || req.path.starts_with("/public/") {
                self.public_answer(key, &req, now);
                continue;
            }
            let peer = c.peer;
            let mut frames_out = 0;
            let mut io = ConnOutbox::between_reads(
                &mut self.conns,
                &mut self.dirty,
                &mut self.reply,
                self.config.max_write_buffer,
                &mut frames_out,
            );
            let viewer_token = self.config.viewer_token.as_deref();
            let by = api::access(&req, &self.config.admin_token, viewer_token)
                .map_or("-", api::Access::name);
            let outcome = api::handle(
                &req,
                &mut Api {
                    cluster: &mut self.cluster,
                    out: &mut io,
                    handler: &mut self.handler,
                    now,
                    admin_token: &self.config.admin_token,
                    viewer_token,
                    audit_log: self.admin.audit_path.as_deref(),
                    io: &self.io_stats,
                    peer,
                },
            );
            self.io_stats.admin_requests += 1;
            self.io_stats.frames_out += frames_out;
            let mut bytes = Vec::with_capacity(256 + outcome.response.body.len());
            outcome.response.write(req.keep_alive, &mut bytes);
            let c = &mut self.admin.conns[key];
            // Bytes left behind this request are the start of the next one: its deadline
            // runs from now, as if they had just arrived.
            c.in_request = !c.input.is_empty();
            if let Some(t) = c.timer {
                let wait = if c.in_request {
                    REQUEST_TIMEOUT_MS
                } else {
                    IDLE_TIMEOUT_MS
                };
                self.cluster.move_timer(t, now.mono_ms + wait);
            }
            if !req.keep_alive {
                c.close_after_output = true;
            }
            // The role of the token (never its value) names who made the change.
            let what = format!("{by} {} {}", req.method, req.path);
            match (outcome.audit, outcome.durable_at) {
                (Some(change), Some(seq)) => {
                    // 200 only once the change is durable; its audit line is written (and
                    // synced) by the store just before the change.
                    c.held = Some((seq, bytes));
                    self.admin
                        .pending_audit
                        .push((seq, peer, format!("{what} {change}")));
                    return;
                }
                (Some(change), None) => {
                    c.output.extend_from_slice(&bytes);
                    self.audit(peer, &format!("{what} {change}"), now);
                }
                (None, _) => c.output.extend_from_slice(&bytes),
            }
        }
    }

    /// The audit lines of the batch `seq` (and earlier), stamped, for the store to write
    /// before the batch itself.
    pub(super) fn admin_audit_lines(&mut self, seq: u64, out: &mut Vec<u8>, now: Now) {
        if self.admin.pending_audit.is_empty() {
            return; // no stamp to format on the turns without admin changes
        }
        let stamp = audit_stamp(now);
        self.admin.pending_audit.retain(|(s, peer, line)| {
            if *s > seq {
                return true;
            }
            out.extend_from_slice(format!("{stamp} {} {line}\n", Peer(*peer)).as_bytes());
            false
        });
    }

    /// The batch `seq` is durable: its audit lines are logged (`written`: the store already
    /// wrote them to the audit log; `None`: there is no store, they are written now), every
    /// response held for it goes out, and each connection continues with requests that waited
    /// behind it.
    pub(super) fn admin_release_held(&mut self, seq: u64, written: Option<&[u8]>, now: Now) {
        match written {
            Some(text) => {
                for line in String::from_utf8_lossy(text).lines() {
                    info!("admin audit: {line}");
                }
            }
            None => {
                let lines: Vec<_> = self.admin.pending_audit.drain(..).collect();
                for (_, peer, line) in lines {
                    self.audit(peer, &line, now);
                }
            }
        }
        let keys: Vec<usize> = self
            .admin
            .conns
            .iter()
            .filter(|(_, c)| c.held.as_ref().is_some_and(|(s, _)| *s <= seq))
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            let Some((_, bytes)) = self.admin.conns[key].held.take() else {
                continue;
            };
            self.admin.conns[key].output.extend_from_slice(&bytes);
            self.admin_process(key, now);
            self.admin_read(key, now);
            self.admin_flush(key);
        }
    }

    /// The changes held for durability will never be made durable here (the role is lost):
    /// each waiting client gets 503 with `why`, and their audit lines are dropped.
    pub(super) fn admin_abandon_held(&mut self, why: &str) {
        self.admin.pending_audit.clear();
        let keys: Vec<usize> = self
            .admin
            .conns
            .iter()
            .filter(|(_, c)| c.held.is_some())
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            let c = &mut self.admin.conns[key];
            c.held = None;
            Response::error(503, why).write(false, &mut c.output);
            c.close_after_output = true;
            self.admin_flush(key);
        }
    }

    fn audit(&mut self, peer: SocketAddr, line: &str, now: Now) {
        info!("admin {}: {line}", Peer(peer));
        let Some(file) = &mut self.admin.audit else {
            return;
        };
        let stamp = audit_stamp(now);
        let text = format!("{stamp} {} {line}\n", Peer(peer));
        if let Err(e) = file
            .write_all(text.as_bytes())
            .and_then(|_| file.sync_data())
        {
            error!("audit log: {e}");
        }
    }

    fn admin_fail(&mut self, key: usize, e: HttpError) {
        let c = &mut self.admin.conns[key];
        debug!("admin {}: {}", Peer(c.peer), e.message());
        Response::error(e.status(), e.message()).write(false, &mut c.output);
        c.input = Vec::new();
        c.close_after_output = true;
        self.admin_flush(key);
    }

    pub(super) fn admin_flush(&mut self, key: usize) {
        let Some(c) = self.admin.conns.get_mut(key) else {
            return;
        };
        let was_paused = c.public_paused();
        let mut written = 0;
        while written < c.output.len() {
            match c.stream.write(&c.output[written..]) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("admin connection {key}: write: {e}");
                    self.admin_close(key);
                    return;
                }
            }
        }
        c.output.drain(..written);
        if c.output.is_empty() {
            if let Err(e) = c.flush_tail() {
                debug!("admin connection {key}: write: {e}");
                self.admin_close(key);
                return;
            }
            if c.tail.is_none() {
                if c.close_after_output && c.held.is_none() {
                    self.admin_close(key);
                    return;
                }
                c.output = Vec::new();
            }
        }
        self.public_resume(key, was_paused);
    }

    pub(super) fn admin_close(&mut self, key: usize) {
        if !self.admin.conns.contains(key) {
            return;
        }
        let c = self.admin.conns.remove(key);
        if c.public {
            self.admin.public_open -= 1;
        }
        if let Some(t) = c.timer {
            self.cluster.cancel_timer(t);
        }
        if c.held.is_some() {
            // The change stays in the journal queue (and is audited when durable); only the
            // client's answer is lost.
            warn!(
                "admin {}: closed before its change was durable",
                Peer(c.peer)
            );
        }
        debug!("admin: connection {key} closed");
    }

    /// The request or idle deadline of connection `key` passed.
    pub(super) fn http_deadline_passed(&mut self, key: usize, now: Now) {
        let Some(c) = self.admin.conns.get_mut(key) else {
            return;
        };
        c.timer = None;
        if c.held.is_some() {
            // Waiting for the journal, not for the client: wait on.
            let t = self
                .cluster
                .set_timer(now.mono_ms + IDLE_TIMEOUT_MS, Deadline::Http(key).key());
            self.admin.conns[key].timer = Some(t);
            return;
        }
        if c.in_request {
            info!(
                "admin {}: request not complete within {} s; closing",
                Peer(c.peer),
                REQUEST_TIMEOUT_MS / 1000
            );
        }
        self.admin_close(key);
    }
}

/// An audit line's stamp: the turn's wall clock (whole seconds, as the stamp shows).
fn audit_stamp(now: Now) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(now.unix_secs);
    crate::logging::utc_stamp_string(at)
}
