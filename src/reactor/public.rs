//! The players' server list on the reactor's side: answers written from the cache, and a
//! per-turn budget so list traffic cannot hold heartbeats up (the connections themselves are
//! the admin side's, `http_conn.rs`).

use super::http_conn::{AdminConn, AdminSide};
use super::LoginNode;
use crate::admin::http::Request;
use crate::cluster::{Handler, Now};
use log::debug;
use std::io::{self, IoSlice, Write};

/// Bytes of players' list answers written per loop turn at most; requests beyond wait for
/// the next turn, so a heartbeat never waits behind more than this much list traffic.
pub(super) const PUBLIC_BYTES_PER_TURN: usize = 256 << 10;

/// Bodies of the players' list from this size are written from the cache directly (what
/// the socket does not take waits as a shared tail); smaller ones are copied into the
/// output and batched with their neighbours.
const DIRECT_WRITE_MIN: usize = 8 << 10;
/// A public connection takes its next request only while less than this waits in its
/// output and no tail waits: a client that pipelines without reading costs the server at
/// most this plus a reference to a body the cache shares.
const PUBLIC_OUTPUT_PAUSE: usize = 64 << 10;

impl AdminConn {
    /// A public connection waiting for its client to read before it answers more.
    pub(super) fn public_paused(&self) -> bool {
        self.public && (self.tail.is_some() || self.output.len() >= PUBLIC_OUTPUT_PAUSE)
    }

    /// Writes what the socket takes of the tail (call once `output` is empty).
    pub(super) fn flush_tail(&mut self) -> io::Result<()> {
        let Some((body, mut at)) = self.tail.take() else {
            return Ok(());
        };
        while at < body.len() {
            match self.stream.write(&body[at..]) {
                Ok(0) => break,
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if at < body.len() {
            self.tail = Some((body, at));
        }
        Ok(())
    }
}

/// Writes `head` then `body` in as few syscalls as the socket allows. Leaves in `head` what
/// it did not take of it; returns how much of `body` it took.
fn write_head_and_body(
    stream: &mut impl Write,
    head: &mut Vec<u8>,
    body: &[u8],
) -> io::Result<usize> {
    let head_len = head.len();
    let mut written = 0;
    while written < head_len + body.len() {
        let result = if written < head_len {
            stream.write_vectored(&[IoSlice::new(&head[written..]), IoSlice::new(body)])
        } else {
            stream.write(&body[written - head_len..])
        };
        match result {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if written < head_len {
        head.drain(..written);
        Ok(0)
    } else {
        head.clear();
        Ok(written - head_len)
    }
}

impl<H: Handler> LoginNode<H> {
    /// The players' list (no token, on either listener); nothing to hold. On the public
    /// listener a large body goes to the socket straight from the cache, behind what is
    /// queued; what the socket does not take waits as a shared tail, never as a copy.
    pub(super) fn public_answer(&mut self, key: usize, req: &Request, now: Now) {
        let AdminSide {
            conns,
            lists,
            public_budget,
            ..
        } = &mut self.admin;
        let c = &mut conns[key];
        let before = c.output.len();
        let answer = lists.answer(req, &self.cluster, now, req.keep_alive, &mut c.output);
        let body_len = answer.body.as_ref().map_or(0, |b| b.len());
        if c.public {
            let bytes = c.output.len() - before + body_len;
            *public_budget = public_budget.saturating_sub(bytes);
        }
        let mut failed = None;
        match answer.body {
            // No tail waits here: a public connection is not processed while one does.
            Some(body) if c.public && body.len() >= DIRECT_WRITE_MIN => {
                match write_head_and_body(&mut c.stream, &mut c.output, &body) {
                    Ok(taken) if taken < body.len() => c.tail = Some((body, taken)),
                    Ok(_) => {}
                    Err(e) => failed = Some(e),
                }
            }
            Some(body) => c.output.extend_from_slice(&body),
            None => {}
        }
        self.io_stats.public_requests += 1;
        self.io_stats.public_renders = lists.renders();
        c.in_request = false;
        if let Some(t) = c.timer {
            self.cluster
                .move_timer(t, now.mono_ms + super::http_conn::IDLE_TIMEOUT_MS);
        }
        if !req.keep_alive {
            c.close_after_output = true;
        }
        if let Some(e) = failed {
            debug!("public connection {key}: write: {e}");
            self.admin_close(key);
        }
    }

    /// After a flush: a public connection that was paused for its client and no longer is
    /// goes on with its buffered requests next turn (no event will say so).
    pub(super) fn public_resume(&mut self, key: usize, was_paused: bool) {
        let Some(c) = self.admin.conns.get_mut(key) else {
            return;
        };
        if was_paused && !c.public_paused() && !c.input.is_empty() && !c.carried {
            c.carried = true;
            self.admin.carried.push(key);
        }
    }

    /// A new turn's list budget; connections left over from the last one go first.
    pub(super) fn admin_carried(&mut self, now: Now) {
        self.admin.public_budget = PUBLIC_BYTES_PER_TURN;
        let carried = std::mem::take(&mut self.admin.carried);
        for &key in &carried {
            let Some(c) = self.admin.conns.get_mut(key) else {
                continue;
            };
            c.carried = false;
            self.admin_process(key, now);
            self.admin_read(key, now);
            self.admin_flush(key);
        }
        let mut carried = carried;
        carried.clear();
        if self.admin.carried.is_empty() {
            self.admin.carried = carried;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::write_head_and_body;
    use std::io::{self, Write};

    /// A socket that takes `room` bytes, `step` at most per call, then would block.
    struct Tight {
        taken: Vec<u8>,
        room: usize,
        step: usize,
    }

    impl Write for Tight {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.room).min(self.step);
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.taken.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn what_the_socket_does_not_take_is_kept_in_order() {
        let body: Vec<u8> = (0..100u8).collect();
        for room in [0, 3, 5, 6, 50, 104, 105, 200] {
            for step in [1, 4, 7, 1000] {
                let mut sock = Tight {
                    taken: Vec::new(),
                    room,
                    step,
                };
                let mut head = b"HEAD:".to_vec();
                let taken = write_head_and_body(&mut sock, &mut head, &body).expect("no error");
                let mut all = sock.taken.clone();
                assert!(head.is_empty() || taken == 0, "room {room} step {step}");
                all.extend_from_slice(&head);
                all.extend_from_slice(&body[taken..]);
                let mut want = b"HEAD:".to_vec();
                want.extend_from_slice(&body);
                assert_eq!(all, want, "room {room} step {step}");
                assert_eq!(sock.taken.len(), room.min(105), "room {room} step {step}");
            }
        }
    }
}
