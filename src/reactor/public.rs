//! The players' server list on the reactor's side: answers written from the cache, and a
//! per-turn budget so list traffic cannot hold heartbeats up (the connections themselves are
//! the admin side's, `admin.rs`).

use super::admin::AdminSide;
use super::LoginNode;
use crate::admin::http::Request;
use crate::cluster::{Handler, Now};
use log::debug;
use std::io::{self, IoSlice, Write};

/// Bytes of players' list answers written per loop turn at most; requests beyond wait for
/// the next turn, so a heartbeat never waits behind more than this much list traffic.
pub(super) const PUBLIC_BYTES_PER_TURN: usize = 256 << 10;

/// Bodies of the players' list from this size are written from the cache directly.
const DIRECT_WRITE_MIN: usize = 8 << 10;

/// Writes `head` then `body` in as few syscalls as the socket allows; leaves in `head`
/// whatever it did not take (the rest of the head, then the rest of the body).
fn write_head_and_body(stream: &mut impl Write, head: &mut Vec<u8>, body: &[u8]) -> io::Result<()> {
    let mut written = 0;
    let total = head.len() + body.len();
    while written < total {
        let result = if written < head.len() {
            stream.write_vectored(&[IoSlice::new(&head[written..]), IoSlice::new(body)])
        } else {
            stream.write(&body[written - head.len()..])
        };
        match result {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if written < head.len() {
        head.drain(..written);
        head.extend_from_slice(body);
    } else {
        let from = written - head.len();
        head.clear();
        head.extend_from_slice(&body[from..]);
    }
    Ok(())
}

impl<H: Handler> LoginNode<H> {
    /// The players' list (no token, on either listener); nothing to hold. A large body goes
    /// to the socket straight from the cache when nothing is queued before it (one copy
    /// less per answer); only what the socket did not take is copied into the output.
    pub(super) fn public_answer(&mut self, key: usize, req: &Request, now: Now) {
        let AdminSide {
            conns,
            lists,
            public_budget,
            ..
        } = &mut self.admin;
        let c = &mut conns[key];
        let direct = c.output.is_empty();
        let before = c.output.len();
        let answer = lists.answer(req, &self.cluster, now, req.keep_alive, &mut c.output);
        if c.public {
            let bytes = c.output.len() - before + answer.body.len();
            *public_budget = public_budget.saturating_sub(bytes);
        }
        let mut failed = None;
        if direct && answer.body.len() >= DIRECT_WRITE_MIN {
            if let Err(e) = write_head_and_body(&mut c.stream, &mut c.output, answer.body) {
                failed = Some(e);
            }
        } else {
            c.output.extend_from_slice(answer.body);
        }
        self.io_stats.public_requests += 1;
        self.io_stats.public_renders = lists.renders();
        c.in_request = false;
        if let Some(t) = c.timer {
            self.cluster
                .move_timer(t, now.mono_ms + super::admin::IDLE_TIMEOUT_MS);
        }
        if !req.keep_alive {
            c.close_after_output = true;
        }
        if let Some(e) = failed {
            debug!("public connection {key}: write: {e}");
            self.admin_close(key);
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
                write_head_and_body(&mut sock, &mut head, &body).expect("no error");
                let mut all = sock.taken.clone();
                all.extend_from_slice(&head);
                let mut want = b"HEAD:".to_vec();
                want.extend_from_slice(&body);
                assert_eq!(all, want, "room {room} step {step}");
                assert_eq!(sock.taken.len(), room.min(105), "room {room} step {step}");
            }
        }
    }
}
