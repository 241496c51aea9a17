//! The admin API's sockets: its listener and connections, in the node's poll loop.
//!
//! Connection lifecycle: accepted (idle deadline) -> bytes of a request arrive (request
//! deadline: the whole request must arrive within [`REQUEST_TIMEOUT_MS`], so slow headers
//! cannot hold a connection) -> answered (idle deadline again, keep-alive) -> closed on
//! `Connection: close`, an error, a deadline or the peer. A change's response is held until
//! the journal records behind it are durable; requests pipelined behind it wait with it.
//! Reads stop while a response is held or the output is large, so a client that sends
//! without reading cannot grow server memory.

use super::{Io, LoginNode, ACCEPTS_PER_TURN, ADMIN_BASE, ADMIN_LISTENER};
use crate::admin::api::{self, Api};
use crate::admin::http::{self, HttpError, Response, MAX_HEAD, MAX_REQUEST};
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

/// Most admin connections open at once; more are closed at accept.
pub const MAX_ADMIN_CONNS: usize = 128;
/// A request must arrive whole within this many ms of its first byte.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// An idle keep-alive connection is closed after this many ms.
pub const IDLE_TIMEOUT_MS: u64 = 60_000;
/// Reading pauses while this much output waits for the client.
const OUTPUT_PAUSE: usize = 1 << 20;

pub(super) struct AdminConn {
    stream: TcpStream,
    peer: SocketAddr,
    input: Vec<u8>,
    output: Vec<u8>,
    /// A change's response (and its audit line) waiting for the journal sync.
    held: Option<Vec<u8>>,
    close_after_output: bool,
    timer: Option<TimerId>,
    /// The current deadline is the request deadline (a request has started).
    in_request: bool,
}

/// The admin listener, its connections and the audit log.
pub(super) struct AdminSide {
    listener: Option<TcpListener>,
    addr: Option<SocketAddr>,
    conns: Slab<AdminConn>,
    audit: Option<File>,
    /// Audit lines of changes waiting for the journal sync (kept apart from the connections:
    /// a change is audited even if its client hangs up first).
    pending_audit: Vec<(SocketAddr, String)>,
    fired: Vec<usize>,
}

impl AdminSide {
    pub(super) fn bind(config: &Config, poll: &Poll) -> io::Result<Self> {
        let mut side = AdminSide {
            listener: None,
            addr: None,
            conns: Slab::new(),
            audit: None,
            pending_audit: Vec::new(),
            fired: Vec::new(),
        };
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
        }
        Ok(side)
    }

    pub(super) fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
    }
}

impl<H: Handler> LoginNode<H> {
    pub(super) fn admin_accept_ready(&mut self, now: Now) {
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(listener) = &self.admin.listener else {
                return;
            };
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    if self.admin.conns.len() >= MAX_ADMIN_CONNS {
                        warn!(
                            "admin: {} connections open; refusing {}",
                            MAX_ADMIN_CONNS,
                            Peer(peer)
                        );
                        continue;
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
                    let timer = self.cluster.set_timer(now.mono_ms + IDLE_TIMEOUT_MS, key);
                    entry.insert(AdminConn {
                        stream,
                        peer,
                        input: Vec::new(),
                        output: Vec::new(),
                        held: None,
                        close_after_output: false,
                        timer: Some(timer),
                        in_request: false,
                    });
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

    fn admin_read(&mut self, key: usize, now: Now) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let Some(c) = self.admin.conns.get_mut(key) else {
                return;
            };
            if c.close_after_output || c.held.is_some() || c.output.len() >= OUTPUT_PAUSE {
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
    fn admin_process(&mut self, key: usize, now: Now) {
        loop {
            let Some(c) = self.admin.conns.get_mut(key) else {
                return;
            };
            if c.held.is_some() || c.close_after_output {
                return;
            }
            let parsed = http::parse_request(&c.input);
            let (req, used) = match parsed {
                Ok(Some(r)) => r,
                Ok(None) => {
                    if c.input.len() > MAX_REQUEST + MAX_HEAD {
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
            let peer = c.peer;
            let journal_before = self.cluster.pending_journal().len();
            let mut frames_out = 0;
            let mut io = Io::between_reads(
                &mut self.conns,
                &mut self.dirty,
                &mut self.reply,
                self.config.max_write_buffer,
                &mut frames_out,
            );
            let outcome = api::handle(
                &req,
                &mut Api {
                    cluster: &mut self.cluster,
                    out: &mut io,
                    handler: &mut self.handler,
                    now,
                    admin_token: &self.config.admin_token,
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
            let what = format!("{} {}", req.method, req.path);
            match outcome.audit {
                Some(change) if self.cluster.pending_journal().len() > journal_before => {
                    // 200 (and the audit line) only once the change is durable.
                    c.held = Some(bytes);
                    self.admin
                        .pending_audit
                        .push((peer, format!("{what} {change}")));
                    return;
                }
                Some(change) => {
                    c.output.extend_from_slice(&bytes);
                    self.audit(peer, &format!("{what} {change}"));
                }
                None => c.output.extend_from_slice(&bytes),
            }
        }
    }

    /// The journal synced: the audit lines of the changes it made durable are written, every
    /// held response goes out, and each connection continues with requests that waited
    /// behind it.
    pub(super) fn admin_release_held(&mut self) {
        for (peer, line) in std::mem::take(&mut self.admin.pending_audit) {
            self.audit(peer, &line);
        }
        let keys: Vec<usize> = self
            .admin
            .conns
            .iter()
            .filter(|(_, c)| c.held.is_some())
            .map(|(k, _)| k)
            .collect();
        if keys.is_empty() {
            return;
        }
        let now = self.now();
        for key in keys {
            let Some(bytes) = self.admin.conns[key].held.take() else {
                continue;
            };
            self.admin.conns[key].output.extend_from_slice(&bytes);
            self.admin_process(key, now);
            self.admin_read(key, now);
            self.admin_flush(key);
        }
    }

    fn audit(&mut self, peer: SocketAddr, line: &str) {
        info!("admin {}: {line}", Peer(peer));
        let Some(file) = &mut self.admin.audit else {
            return;
        };
        let stamp = crate::logging::utc_stamp_string(std::time::SystemTime::now());
        let text = format!("{stamp} {} {line}\n", Peer(peer));
        if let Err(e) = file.write_all(text.as_bytes()) {
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

    fn admin_flush(&mut self, key: usize) {
        let Some(c) = self.admin.conns.get_mut(key) else {
            return;
        };
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
            if c.close_after_output && c.held.is_none() {
                self.admin_close(key);
                return;
            }
            c.output = Vec::new();
        }
    }

    fn admin_close(&mut self, key: usize) {
        if !self.admin.conns.contains(key) {
            return;
        }
        let c = self.admin.conns.remove(key);
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

    /// Deadlines of admin connections that passed.
    pub(super) fn admin_timers_fired(&mut self) {
        self.cluster.take_fired_timers(&mut self.admin.fired);
        let fired = std::mem::take(&mut self.admin.fired);
        for &key in &fired {
            let Some(c) = self.admin.conns.get_mut(key) else {
                continue;
            };
            c.timer = None;
            if c.held.is_some() {
                // Waiting for the journal, not for the client: wait on.
                let t = self
                    .cluster
                    .set_timer(self.now().mono_ms + IDLE_TIMEOUT_MS, key);
                self.admin.conns[key].timer = Some(t);
                continue;
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
        let mut fired = fired;
        fired.clear();
        self.admin.fired = fired;
    }
}
