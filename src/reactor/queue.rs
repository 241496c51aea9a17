//! A connection's write queue: frames its socket has not taken yet. Frames copied in (a KICK, a
//! reply that did not fit) collect in an owned tail; frames shared by many connections (one
//! whitelist change for every game node) are queued as reference-counted [`Bytes`], so N
//! connections waiting for the same burst hold one copy of it, not N.

use bytes::{Buf, Bytes};
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

/// Slices offered to one `writev`.
const IOVECS: usize = 64;

/// Bytes waiting for one socket. Idle (the usual case) it is one null pointer: a connection
/// that is caught up holds no buffer and no queue.
#[derive(Default)]
pub(super) struct WriteQueue {
    inner: Option<Box<Pending>>,
}

/// What is waiting, in order: the chunks, then the tail.
#[derive(Default)]
struct Pending {
    chunks: VecDeque<Bytes>,
    tail: Vec<u8>,
    len: usize,
}

impl WriteQueue {
    /// Bytes waiting.
    pub(super) fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |p| p.len)
    }

    /// Nothing waiting.
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn pending(&mut self) -> &mut Pending {
        self.inner.get_or_insert_with(Box::default)
    }

    /// Queues a copy of `bytes`.
    pub(super) fn push(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let p = self.pending();
        p.tail.extend_from_slice(bytes);
        p.len += bytes.len();
    }

    /// Queues `bytes` without copying them (another reference to the same buffer).
    pub(super) fn push_shared(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        let p = self.pending();
        p.seal_tail();
        p.len += bytes.len();
        p.chunks.push_back(bytes);
    }

    /// Drops everything waiting and frees the buffers.
    pub(super) fn release(&mut self) {
        self.inner = None;
    }

    /// Writes until the queue is empty or `w` would block; counts what was written.
    pub(super) fn flush_to(&mut self, w: &mut impl Write, bytes_out: &mut u64) -> io::Result<()> {
        let Some(p) = self.inner.as_mut() else {
            return Ok(());
        };
        p.seal_tail();
        while p.len > 0 {
            let mut slices = [IoSlice::new(&[]); IOVECS];
            let mut n = 0;
            for (slot, chunk) in slices.iter_mut().zip(&p.chunks) {
                *slot = IoSlice::new(chunk);
                n += 1;
            }
            match w.write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    *bytes_out += written as u64;
                    p.consume(written);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Pending {
    /// Moves the tail into the chunks (no copy: the vector becomes a `Bytes`).
    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            self.chunks
                .push_back(Bytes::from(std::mem::take(&mut self.tail)));
        }
    }

    /// Drops the first `n` bytes of the chunks.
    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if front.len() > n {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.chunks.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes at most `room` bytes in total, then would block.
    struct Sink {
        got: Vec<u8>,
        room: usize,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.room - self.got.len());
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn copied_and_shared_bytes_leave_in_order_across_partial_writes() {
        let shared = Bytes::from(vec![7u8; 1000]);
        let mut q = WriteQueue::default();
        q.push(b"ab");
        q.push_shared(shared.clone());
        q.push(b"cd");
        q.push_shared(shared.clone());
        assert_eq!(q.len(), 2004);
        let mut sink = Sink {
            got: Vec::new(),
            room: 501,
        };
        let mut out = 0;
        q.flush_to(&mut sink, &mut out)
            .expect("would block, not fail");
        assert_eq!((out, q.len()), (501, 1503));
        sink.room = usize::MAX;
        q.flush_to(&mut sink, &mut out).expect("flushes");
        assert!(q.is_empty());
        let mut want = b"ab".to_vec();
        want.extend_from_slice(&shared);
        want.extend_from_slice(b"cd");
        want.extend_from_slice(&shared);
        assert_eq!(sink.got, want);
    }

    #[test]
    fn shared_bytes_are_not_copied() {
        let shared = Bytes::from(vec![1u8; 4096]);
        let mut a = WriteQueue::default();
        let mut b = WriteQueue::default();
        a.push_shared(shared.clone());
        b.push_shared(shared.clone());
        for q in [&a, &b] {
            let p = q.inner.as_ref().expect("pending");
            assert_eq!(p.chunks[0].as_ptr(), shared.as_ptr());
        }
        a.release();
        assert!(
            a.is_empty() && a.inner.is_none(),
            "released: no buffer left"
        );
        assert_eq!(
            std::mem::size_of::<WriteQueue>(),
            std::mem::size_of::<usize>(),
            "an idle queue is one pointer"
        );
    }
}
