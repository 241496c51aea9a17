//! The load engine: one mio poll loop driving many [`NodeMachine`]s, with heartbeat schedules
//! on login-node's own timer wheel. Groups of connections run at once: cross nodes (brought up
//! first), `hold` nodes (heartbeat at the interval), `pump` nodes (K heartbeats in flight) and
//! `churn` workers (connect, auth, info, close, again).
//!
//! Here: the plan, the engine's state, the loop and its timers. The sockets are in [`conn`],
//! what the nodes do on the protocol (online, heartbeats, ACKs, the ramp) in [`schedule`].

mod conn;
mod schedule;

use crate::stats::{sample_process, Stats};
use login_node::client::machine::NodeMachine;
use login_node::timer::TimerWheel;
use mio::net::TcpStream;
use mio::{Events, Poll};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What one run does.
#[derive(Clone, Debug)]
pub struct Plan {
    pub addr: SocketAddr,
    pub token: String,
    pub plat: String,
    pub id_base: u32,
    pub cross_nodes: usize,
    pub cross_capacity: u16,
    /// Game nodes wait for CROSS_ASSIGN to count as online (crosses exist, maybe elsewhere).
    pub await_assign: bool,
    pub hold_nodes: usize,
    /// Heartbeat interval for hold nodes; None = the server's announced interval.
    pub hold_interval: Option<Duration>,
    pub pump_nodes: usize,
    pub pipeline: usize,
    pub churn_workers: usize,
    pub ids_per_worker: u32,
    pub inflight: usize,
    pub hs_timeout: Duration,
    pub warmup: Duration,
    pub duration: Duration,
    pub src_ips: usize,
    pub server_pid: Option<u32>,
    pub quiet: bool,
    pub label: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Group {
    Cross,
    Hold,
    Pump,
    Churn,
}

struct Node {
    stream: TcpStream,
    m: NodeMachine,
    group: Group,
    gen: u32,
    started: Instant,
    online: bool,
    worker: usize,
    /// The ts of each heartbeat sent and not yet ACKed, oldest first (ACKs come in order).
    unacked: VecDeque<u64>,
}

/// How long, once the run is over, outstanding heartbeats may take to be ACKed before each
/// counts as a failure.
const ACK_GRACE: Duration = Duration::from_secs(2);

const HEARTBEAT: u8 = 0;
const HS_TIMEOUT: u8 = 1;

pub struct Engine {
    plan: Plan,
    poll: Poll,
    nodes: slab::Slab<Node>,
    wheel: TimerWheel<(usize, u32, u8)>,
    start: Instant,
    gen: u32,
    connects: u64,
    next_hold: usize,
    next_pump: usize,
    crosses_started: usize,
    crosses_online: usize,
    handshaking: usize,
    /// Of `handshaking`, the churn connections (they never finish the ramp).
    churn_handshaking: usize,
    worker_round: Vec<u32>,
    pub stats: Stats,
    online: [usize; 4],
    ramp_start: Option<Instant>,
    ramp_done: Option<Instant>,
    window_start: Option<Instant>,
    buf: Vec<u8>,
    server_at_ramp: Option<(f64, i64)>,
    server_at_window: Option<(f64, i64)>,
    /// The run is over: no new heartbeats, only waiting for the outstanding ACKs.
    draining: bool,
    /// The parent of worker processes: keep running until this returns true.
    pub keep_running: Option<Box<dyn FnMut() -> bool>>,
    /// Set when the measured window opens (the `public` mode's HTTP load starts then).
    pub window_open: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

fn group_index(g: Group) -> usize {
    g as usize
}

impl Engine {
    pub fn new(plan: Plan) -> io::Result<Engine> {
        let workers = plan.churn_workers;
        Ok(Engine {
            poll: Poll::new()?,
            nodes: slab::Slab::new(),
            wheel: TimerWheel::new(1, 0),
            start: Instant::now(),
            gen: 0,
            connects: 0,
            next_hold: 0,
            next_pump: 0,
            crosses_started: 0,
            crosses_online: 0,
            handshaking: 0,
            churn_handshaking: 0,
            worker_round: vec![0; workers],
            stats: Stats::default(),
            online: [0; 4],
            ramp_start: None,
            ramp_done: None,
            window_start: None,
            buf: vec![0; 64 * 1024],
            server_at_ramp: None,
            server_at_window: None,
            draining: false,
            keep_running: None,
            window_open: None,
            plan,
        })
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn finished(&self) -> bool {
        match self.window_start {
            Some(w) => w.elapsed() >= self.plan.warmup + self.plan.duration,
            None => false,
        }
    }

    fn in_window(&self) -> bool {
        self.window_start.is_some_and(|w| {
            let e = w.elapsed();
            e >= self.plan.warmup && e < self.plan.warmup + self.plan.duration
        })
    }

    fn timers(&mut self) {
        let now = self.now_ms();
        while let Some((_, (key, gen, what))) = self.wheel.poll(now) {
            let ts = self.now_ns();
            if key == usize::MAX {
                // Retry of a failed churn connect.
                if !self.finished() {
                    self.churn_connect(gen as usize);
                }
                continue;
            }
            let Some(n) = self.nodes.get_mut(key) else {
                continue;
            };
            if n.gen != gen {
                continue;
            }
            match what {
                HEARTBEAT if self.draining => {}
                HEARTBEAT => {
                    n.m.send_heartbeat(ts);
                    n.unacked.push_back(ts);
                    let next = now + self.hold_interval_ms(key);
                    self.wheel.insert(next, (key, gen, HEARTBEAT));
                    self.flush(key);
                }
                _ => {
                    if !n.online {
                        self.drop_node(key, Some("handshake timeout".into()));
                    }
                }
            }
        }
    }

    fn progress(&self, last: &mut (Instant, u64, u64, u64)) {
        let (t, acks, sessions, hs) = *last;
        let dt = t.elapsed().as_secs_f64().max(1e-3);
        if !self.plan.quiet {
            eprintln!(
                "{}[{:>4.0}s] online {} (cross {}) handshaking {} | hs/s {:.0} acks/s {:.0} sessions/s {:.0} | failures {}",
                self.plan.label,
                self.start.elapsed().as_secs_f64(),
                self.online[1] + self.online[2],
                self.online[0],
                self.handshaking,
                (self.stats.handshakes - hs) as f64 / dt,
                (self.stats.acks - acks) as f64 / dt,
                (self.stats.sessions - sessions) as f64 / dt,
                self.stats.failure_count()
            );
        }
        *last = (
            Instant::now(),
            self.stats.acks,
            self.stats.sessions,
            self.stats.handshakes,
        );
    }

    /// Runs until the window ends (or, for a parent of workers, until they are done).
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut last = (Instant::now(), 0, 0, 0);
        let ramp_deadline = Instant::now() + self.plan.hs_timeout * 4 + Duration::from_secs(10);
        self.draining = false;
        loop {
            self.ramp();
            self.poll_once(&mut events)?;
            self.tick_window_sample();
            if last.0.elapsed() >= Duration::from_secs(1) {
                self.progress(&mut last);
            }
            let done = match &mut self.keep_running {
                Some(f) => !f(),
                None => self.finished(),
            };
            if done {
                break;
            }
            if self.window_start.is_none() && Instant::now() > ramp_deadline {
                self.stats.fail("ramp did not finish");
                break;
            }
        }
        self.stats.window_secs = self.plan.duration.as_secs_f64();
        self.stats.online_at_end = (self.online[1] + self.online[2]) as u64;
        let end_sample = self.plan.server_pid.and_then(sample_process);
        if let (Some((c0, _)), Some((c1, _))) = (self.server_at_window, end_sample) {
            let ops = self.stats.acks + self.stats.sessions;
            if ops > 0 {
                self.stats.server_cpu_us_window = Some((c1 - c0) * 1e6 / ops as f64);
            }
        }
        self.stats.server_samples.window = self
            .server_at_window
            .zip(end_sample)
            .map(|((c0, _), (c1, _))| (c0, c1));
        // Every heartbeat sent gets its ACK or counts as a failure.
        self.draining = true;
        let grace = Instant::now() + ACK_GRACE;
        while Instant::now() < grace && self.nodes.iter().any(|(_, n)| !n.unacked.is_empty()) {
            self.poll_once(&mut events)?;
        }
        self.count_unanswered();
        Ok(())
    }

    /// One poll: socket events, then due timers.
    fn poll_once(&mut self, events: &mut Events) -> io::Result<()> {
        let timeout = self
            .wheel
            .next_wakeup_ms()
            .map(|at| Duration::from_millis(at.saturating_sub(self.now_ms())))
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100));
        match self.poll.poll(events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            let key = ev.token().0;
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                self.readable(key);
            }
            if ev.is_writable() {
                self.flush(key);
            }
        }
        self.timers();
        Ok(())
    }

    /// Samples the server when the measured window opens (after warm-up).
    pub fn tick_window_sample(&mut self) {
        if self.server_at_window.is_none()
            && self
                .window_start
                .is_some_and(|w| w.elapsed() >= self.plan.warmup)
        {
            self.server_at_window = self.plan.server_pid.and_then(sample_process);
        }
    }
}
