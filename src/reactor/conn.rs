//! A node connection and its read/write path: the [`Outbox`] the cluster writes into
//! (replies gathered for one write, other frames queued), the read path that decodes every
//! whole frame in place in the read buffer and keeps only a partial tail, and the flush and
//! release at the end of a turn.

use super::partial::{append_partial, frame_size};
use super::queue::WriteQueue;
use super::{LoginNode, READS_PER_TURN};
use crate::admin::metrics::IoStats;
use crate::cluster::{Cluster, ConnId, Handler, Now, Outbox};
use crate::proto::{self, FrameError};
use log::{debug, warn};
use mio::net::TcpStream;
use slab::Slab;
use std::io::{self, Read, Write};

pub(super) struct Conn {
    pub(super) stream: TcpStream,
    /// The bytes of an incomplete frame; empty (no allocation) between frames.
    pub(super) partial: Vec<u8>,
    /// Frames the socket has not taken yet; empty (no allocation) when caught up.
    pub(super) out: WriteQueue,
    pub(super) closing: bool,
    /// In the reactor's dirty list (to flush or close at the end of the turn).
    pub(super) dirty: bool,
    /// In the reactor's list of connections to read again next turn.
    pub(super) read_pending: bool,
}

impl Conn {
    /// Queues bytes the socket has not taken. With a backlog already past `cap` the peer is
    /// not reading: the connection is marked for closing instead, so a connection holds at
    /// most `cap` plus one burst.
    fn enqueue(&mut self, conn: ConnId, bytes: &[u8], cap: usize) {
        if !self.backlog_full(conn, bytes.len(), cap) {
            self.out.push(bytes);
        }
    }

    /// [`Conn::enqueue`] for frames shared with other connections: queued without a copy.
    fn enqueue_shared(&mut self, conn: ConnId, bytes: &bytes::Bytes, cap: usize) {
        if !self.backlog_full(conn, bytes.len(), cap) {
            self.out.push_shared(bytes.clone());
        }
    }

    /// True (and the connection marked for closing) when the queue is already past `cap`.
    fn backlog_full(&mut self, conn: ConnId, more: usize, cap: usize) -> bool {
        if self.out.len() <= cap {
            return false;
        }
        warn!(
            "conn {conn}: {} bytes queued, peer is not reading; dropping it",
            self.out.len() + more
        );
        self.closing = true;
        true
    }
}

/// The [`Outbox`] the cluster writes into during one event: frames for the connection being
/// read gather in `reply` (one write when its frames are done), frames for any other go to
/// that connection's write queue.
pub(super) struct ConnOutbox<'a> {
    pub(super) conns: &'a mut Slab<Conn>,
    pub(super) dirty: &'a mut Vec<ConnId>,
    /// The connection whose frames are being handled: its replies go to `reply`.
    pub(super) current: Option<ConnId>,
    pub(super) reply: &'a mut Vec<u8>,
    pub(super) max_write_buffer: usize,
    pub(super) frames_out: &'a mut u64,
}

impl<'a> ConnOutbox<'a> {
    /// An outbox for work outside a connection's read (timers, closes, shutdown): every frame
    /// goes to its connection's queue.
    pub(super) fn between_reads(
        conns: &'a mut Slab<Conn>,
        dirty: &'a mut Vec<ConnId>,
        reply: &'a mut Vec<u8>,
        max_write_buffer: usize,
        frames_out: &'a mut u64,
    ) -> Self {
        ConnOutbox {
            conns,
            dirty,
            current: None,
            reply,
            max_write_buffer,
            frames_out,
        }
    }

    pub(super) fn mark_dirty(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(conn) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(conn);
            }
        }
    }

    pub(super) fn is_closing(&self, conn: ConnId) -> bool {
        self.conns.get(conn).is_none_or(|c| c.closing)
    }
}

impl Outbox for ConnOutbox<'_> {
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

impl<H: Handler> LoginNode<H> {
    pub(super) fn write_ready(&mut self, conn: ConnId) {
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

    pub(super) fn read_ready(&mut self, conn: ConnId, now: Now) {
        let max_frame = self.config.max_frame;
        let LoginNode {
            conns,
            cluster,
            handler,
            read_buf,
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
        let mut io = ConnOutbox {
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

        // A partial frame from an earlier turn: read what it still needs (through the read
        // buffer, so it only ever holds bytes that arrived) until it is whole.
        if !io.conns[conn].partial.is_empty() {
            match fill_partial(
                &mut io.conns[conn],
                read_buf,
                max_frame,
                &mut calls,
                bytes_in,
            ) {
                PartialRead::Complete => {
                    *frames_in += 1;
                    let frame = std::mem::take(&mut io.conns[conn].partial);
                    cluster.handle_frame(conn, &frame[proto::HEADER_LEN..], now, &mut io, handler);
                }
                PartialRead::Incomplete => drained = true,
                PartialRead::Eof => eof = true,
                PartialRead::BadHeader(e) => cluster.frame_error(conn, e, now, &mut io, handler),
                PartialRead::Failed(e) => {
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
            let space = &mut read_buf[filled..];
            let asked = space.len();
            match io.conns[conn].stream.read(space) {
                Ok(0) => eof = true,
                Ok(n) => {
                    *bytes_in += n as u64;
                    let total = filled + n;
                    let consumed = dispatch(
                        &read_buf[..total],
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
                        read_buf.copy_within(consumed..total, 0);
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
            append_partial(&mut io.conns[conn].partial, &read_buf[..filled]);
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
    pub(super) fn flush_dirty(&mut self, now: Now, linger: bool) {
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
    pub(super) fn release(&mut self, conn: ConnId, now: Now) {
        if !self.conns.contains(conn) {
            return;
        }
        // Dropping the stream closes the descriptor, which also removes it from epoll.
        drop(self.conns.remove(conn));
        self.with_outbox(|cluster, io, handler| cluster.closed(conn, now, io, handler));
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
    io: &mut ConnOutbox<'_>,
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

/// What reading the rest of a connection's partial frame came to.
enum PartialRead {
    /// The frame is whole (in `Conn::partial`).
    Complete,
    /// The socket has nothing more now; the frame is still incomplete.
    Incomplete,
    /// The peer closed.
    Eof,
    /// The header the bytes spell is invalid.
    BadHeader(FrameError),
    /// The read failed.
    Failed(io::Error),
}

/// Reads what `c.partial`'s frame still needs, through `read_buf`, so the partial buffer holds
/// only bytes that arrived (never the declared length, never zero-filled).
fn fill_partial(
    c: &mut Conn,
    read_buf: &mut [u8],
    max_frame: usize,
    calls: &mut usize,
    bytes_in: &mut u64,
) -> PartialRead {
    loop {
        let have = c.partial.len();
        let need = if have < proto::HEADER_LEN {
            proto::HEADER_LEN - have
        } else {
            match proto::parse_frame(&c.partial, max_frame) {
                Ok(Some(_)) => return PartialRead::Complete,
                Ok(None) => frame_size([c.partial[0], c.partial[1]]) - have,
                Err(e) => return PartialRead::BadHeader(e),
            }
        };
        let want = need.min(read_buf.len());
        *calls += 1;
        match c.stream.read(&mut read_buf[..want]) {
            Ok(0) => return PartialRead::Eof,
            Ok(n) => {
                *bytes_in += n as u64;
                append_partial(&mut c.partial, &read_buf[..n]);
                if n < want && c.partial.len() >= proto::HEADER_LEN {
                    return PartialRead::Incomplete;
                }
            }
            Err(e) => {
                return match e.kind() {
                    io::ErrorKind::WouldBlock => PartialRead::Incomplete,
                    io::ErrorKind::Interrupted => continue,
                    _ => PartialRead::Failed(e),
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
        at += frame_size([bytes[at], bytes[at + 1]]);
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests;
