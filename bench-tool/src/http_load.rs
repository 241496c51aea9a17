//! The `public` mode's HTTP side: keep-alive connections asking for the players' server list
//! (`GET /public/servers/<plat>`) at a paced total rate, on a thread of its own, while the
//! engine holds nodes heartbeating on the main thread.

use crate::hist::Hist;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to ask for, how often.
#[derive(Clone, Debug)]
pub struct HttpPlan {
    pub addr: SocketAddr,
    pub path: String,
    pub conns: usize,
    /// Requests per second over all connections; `None`: as fast as they are answered.
    pub rate: Option<f64>,
    /// Requests in flight per connection at most (pipelined).
    pub depth: usize,
    /// Send `If-None-Match` with the last ETag seen (a cache revalidating): mostly 304s.
    pub conditional: bool,
}

/// What was measured between `go` and `stop`.
#[derive(Default)]
pub struct HttpStats {
    pub requests: u64,
    pub ok: u64,
    pub not_modified: u64,
    pub other: u64,
    pub body_bytes: u64,
    pub latency: Hist,
    pub secs: f64,
    pub errors: u64,
    /// Requests the pacing wanted to send while every connection had `depth` in flight.
    pub behind: u64,
}

struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    sent: VecDeque<Instant>,
    etag: Option<String>,
    dead: bool,
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

impl Conn {
    fn request(&mut self, path: &str, conditional: bool) {
        let _ = write!(self.output, "GET {path} HTTP/1.1\r\nHost: bench\r\n");
        if let (true, Some(tag)) = (conditional, &self.etag) {
            let _ = write!(self.output, "If-None-Match: {tag}\r\n");
        }
        self.output.extend_from_slice(b"\r\n");
        self.sent.push_back(Instant::now());
    }

    fn flush(&mut self) {
        while !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(0) => break,
                Ok(n) => {
                    self.output.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.dead = true;
                    break;
                }
            }
        }
    }

    /// Reads and takes every whole response; `count` says whether they are measured.
    fn read(&mut self, buf: &mut [u8], stats: &mut HttpStats, count: bool) {
        loop {
            match self.stream.read(buf) {
                Ok(0) => {
                    self.dead = true;
                    return;
                }
                Ok(n) => self.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
        let mut at = 0;
        loop {
            let rest = &self.input[at..];
            let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
                break;
            };
            let head = String::from_utf8_lossy(&rest[..end]);
            let status: u16 = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let len: usize = if status == 304 {
                0
            } else {
                header(&head, "Content-Length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            if rest.len() < end + 4 + len {
                break;
            }
            if let Some(tag) = header(&head, "ETag") {
                if self.etag.as_deref() != Some(tag) {
                    self.etag = Some(tag.to_string());
                }
            }
            at += end + 4 + len;
            let sent = self.sent.pop_front();
            if count {
                stats.requests += 1;
                match status {
                    200 => stats.ok += 1,
                    304 => stats.not_modified += 1,
                    _ => stats.other += 1,
                }
                stats.body_bytes += len as u64;
                if let Some(t) = sent {
                    stats.latency.record(t.elapsed().as_nanos() as u64);
                }
            }
        }
        self.input.drain(..at);
    }
}

/// Runs until `stop`: connects at once, asks only while `go` is set, measures from the first
/// `go` to `stop`.
pub fn run(plan: &HttpPlan, go: &AtomicBool, stop: &AtomicBool) -> io::Result<HttpStats> {
    // Lower this thread's priority so that, sharing a core with the engine, it does not delay
    // the heartbeats whose RTT the run reports (on Linux the nice value is per thread).
    // SAFETY: setpriority only reads its integer arguments; who = 0 is the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(plan.conns);
    for i in 0..plan.conns {
        let std = std::net::TcpStream::connect(plan.addr)?;
        std.set_nonblocking(true)?;
        std.set_nodelay(true)?;
        let mut stream = TcpStream::from_std(std);
        poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns.push(Conn {
            stream,
            input: Vec::new(),
            output: Vec::new(),
            sent: VecDeque::new(),
            etag: None,
            dead: false,
        });
    }
    let mut stats = HttpStats::default();
    let mut events = Events::with_capacity(256);
    let mut buf = vec![0u8; 256 * 1024];
    let mut started: Option<Instant> = None;
    let mut credit = 0.0f64;
    let mut last = Instant::now();
    let mut next = 0usize;
    let depth = plan.depth.max(1);
    while !stop.load(Ordering::Acquire) {
        poll.poll(&mut events, Some(Duration::from_millis(1)))
            .or_else(|e| {
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        let measuring = go.load(Ordering::Acquire);
        if measuring && started.is_none() {
            started = Some(Instant::now());
            last = Instant::now();
        }
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            c.read(&mut buf, &mut stats, measuring);
        }
        if measuring {
            let now = Instant::now();
            let mut want = match plan.rate {
                Some(rate) => {
                    credit = (credit + rate * now.duration_since(last).as_secs_f64())
                        .min(rate.max(1.0) * 0.05);
                    credit as u64
                }
                None => u64::MAX,
            };
            last = now;
            let mut idle_rounds = 0;
            let n = conns.len();
            while want > 0 && idle_rounds < n {
                let c = &mut conns[next % n];
                next += 1;
                if c.dead || c.sent.len() >= depth {
                    idle_rounds += 1;
                    continue;
                }
                idle_rounds = 0;
                c.request(&plan.path, plan.conditional);
                want -= 1;
                credit -= 1.0;
            }
            if plan.rate.is_some() && want > 0 {
                stats.behind += want;
                credit -= want as f64;
            }
        }
        for c in conns.iter_mut() {
            c.flush();
        }
        if conns.iter().all(|c| c.dead) {
            stats.errors += 1;
            break;
        }
    }
    stats.errors += conns.iter().filter(|c| c.dead).count() as u64;
    stats.secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    Ok(stats)
}

/// Runs `run` on a thread; returns the flags and the handle.
pub fn spawn(
    plan: HttpPlan,
) -> (
    Arc<AtomicBool>,
    Arc<AtomicBool>,
    std::thread::JoinHandle<io::Result<HttpStats>>,
) {
    let go = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (g, s) = (go.clone(), stop.clone());
    let handle = std::thread::spawn(move || run(&plan, &g, &s));
    (go, stop, handle)
}
